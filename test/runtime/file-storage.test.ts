/**
 * FileStorage: the same semantics as MemoryStorage across reopens, crash atomicity at every write
 * point (torn tails truncated, everything acknowledged kept, other corruption refused with the file
 * and offset), snapshot and install crash points, segment rollover and removal, the directory lock,
 * and a RaftNode cluster restarted from its directories.
 */
import { spawn, spawnSync } from 'node:child_process';
import { appendFile, mkdtemp, readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import {
  EntryType,
  FileStorage,
  InvariantError,
  MemoryNetwork,
  MemoryStorage,
  RaftLeaseError,
  RaftNode,
  SystemClock,
  nodeId,
  type Entry,
  type FileStorageOptions,
  type HardState,
  type LogIndex,
  type NodeId,
  type PersistBatch,
  type PersistentState,
  type Snapshot,
  type SnapshotMetadata,
  type StateMachine,
  type Storage,
  type Term,
} from '../../src/index.js';

// ---------------------------------------------------------------------------------------------
// Fixtures

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const directories: string[] = [];
const openStorages: FileStorage[] = [];

afterEach(async () => {
  for (const storage of openStorages.splice(0)) await storage.close().catch(() => undefined);
  for (const directory of directories.splice(0)) await rm(directory, { recursive: true, force: true });
});

async function tempDirectory(): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'raftlease-file-storage-'));
  directories.push(directory);
  return directory;
}

async function openStorage(directory: string, options: FileStorageOptions = {}): Promise<FileStorage> {
  const storage = await FileStorage.open(directory, options);
  openStorages.push(storage);
  return storage;
}

async function reopen(storage: FileStorage, options: FileStorageOptions = {}): Promise<FileStorage> {
  await storage.close();
  return openStorage(storage.directory, options);
}

function entry(index: number, entryTerm: number, text = `e${index}t${entryTerm}`): Entry {
  return { index: index as LogIndex, term: entryTerm as Term, type: EntryType.Normal, data: encoder.encode(text) };
}

function entries(from: number, to: number, entryTerm: number, text?: string): Entry[] {
  const list: Entry[] = [];
  for (let index = from; index <= to; index++) list.push(entry(index, entryTerm, text === undefined ? undefined : `${text}${index}`));
  return list;
}

function hardState(hardStateTerm: number, commit: number, vote: string | null = 'n1'): HardState {
  return { term: hardStateTerm as Term, vote: vote as NodeId | null, commit: commit as LogIndex };
}

function snapshot(index: number, snapshotTerm: number, text = `state@${index}`): Snapshot {
  const metadata: SnapshotMetadata = { index: index as LogIndex, term: snapshotTerm as Term, membership: { voters: [nodeId('n1'), nodeId('n2')], learners: [] } };
  return { metadata, data: encoder.encode(text) };
}

function batch(parts: Partial<PersistBatch>): PersistBatch {
  return { snapshot: parts.snapshot ?? null, hardState: parts.hardState ?? null, entries: parts.entries ?? [] };
}

/** A storage-independent view of a load() result (plain arrays instead of byte views). */
function normalize(state: PersistentState): unknown {
  return {
    hardState: { term: state.hardState.term, vote: state.hardState.vote, commit: state.hardState.commit },
    entries: state.entries.map((item) => ({ index: item.index, term: item.term, type: item.type, data: Array.from(item.data) })),
    snapshot: state.snapshot === undefined || state.snapshot === null ? null : { metadata: state.snapshot.metadata, data: Array.from(state.snapshot.data) },
  };
}

/** A pino logger that keeps its records, to check what recovery reported. */
function capturingLogger(): { logger: Logger; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.length > 0) records.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: pino({ level: 'info' }, stream), records };
}

/** Lets the logger's stream deliver what was logged. */
async function flushLogs(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
}

async function segmentNames(directory: string): Promise<string[]> {
  return (await readdir(join(directory, 'wal'))).filter((name) => name.endsWith('.seg')).sort();
}

/** Every file of the data directory (LOCK aside), by relative path. */
async function captureFiles(directory: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of await readdir(directory)) if (name !== 'wal' && name !== 'LOCK') files.set(name, await readFile(join(directory, name)));
  for (const name of await readdir(join(directory, 'wal'))) files.set(join('wal', name), await readFile(join(directory, 'wal', name)));
  return files;
}

/** Makes the data directory hold exactly `files` (what a power loss left on disk). */
async function restoreFiles(directory: string, files: Map<string, Buffer>): Promise<void> {
  for (const name of await readdir(directory)) if (name !== 'wal' && name !== 'LOCK') await unlink(join(directory, name));
  for (const name of await readdir(join(directory, 'wal'))) await unlink(join(directory, 'wal', name));
  for (const [name, bytes] of files) await writeFile(join(directory, name), bytes);
}

async function expectStorageFailed(promise: Promise<unknown>, pattern: RegExp): Promise<RaftLeaseError> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(RaftLeaseError);
  const failure = error as RaftLeaseError;
  expect(failure.code).toBe('StorageFailed');
  expect(failure.message).toMatch(pattern);
  return failure;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// The record format as documented in src/runtime/file-storage.ts, implemented independently here.
const CRC_TABLE = Array.from({ length: 256 }, (_, byte) => {
  let value = byte;
  for (let bit = 0; bit < 8; bit++) value = value & 1 ? 0xedb88320 ^ (value >>> 1) : value >>> 1;
  return value >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = (CRC_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return ~crc >>> 0;
}

function frameRecord(type: number, payload: Uint8Array): Buffer {
  const record = Buffer.alloc(9 + payload.byteLength);
  record.writeUInt32LE(payload.byteLength, 4);
  record[8] = type;
  record.set(payload, 9);
  record.writeUInt32LE(crc32(record.subarray(4)), 0);
  return record;
}

/** Byte offsets at which the records of a segment start, following the length fields. */
/** Where the records of a segment end: the zeros preallocated after them (if any) excluded. */
function recordsEnd(bytes: Buffer): number {
  let offset = 0;
  // Bounded: each round moves past one record.
  while (offset + 9 <= bytes.length) {
    const length = bytes.readUInt32LE(offset + 4);
    if (length === 0 || offset + 9 + length > bytes.length) break;
    offset += 9 + length;
  }
  return offset;
}

/**
 * `files` as they are once every segment's preallocated zeros are cut off, as a rollover does to the
 * active segment before it creates the next one.
 */
function withoutPreallocation(files: Map<string, Buffer>): Map<string, Buffer> {
  return new Map([...files].map(([name, bytes]) => [name, name.startsWith('wal') ? bytes.subarray(0, recordsEnd(bytes)) : bytes]));
}

function recordOffsets(bytes: Buffer): number[] {
  const offsets: number[] = [];
  for (let offset = 0; offset < bytes.length; offset += 9 + bytes.readUInt32LE(offset + 4)) offsets.push(offset);
  return offsets;
}

// ---------------------------------------------------------------------------------------------
// Semantics shared with MemoryStorage

type Step =
  | { readonly persist: PersistBatch }
  | { readonly saveSnapshot: readonly [Snapshot, number] }
  | { readonly fails: PersistBatch };

interface Scenario {
  readonly name: string;
  readonly steps: readonly Step[];
}

/** What both storages must agree on, step by step. */
const SCENARIOS: readonly Scenario[] = [
  {
    name: 'stores hard state alone, then with entries',
    steps: [{ persist: batch({ hardState: hardState(1, 0, null) }) }, { persist: batch({ hardState: hardState(2, 0), entries: entries(1, 3, 2) }) }, { persist: batch({ hardState: hardState(2, 3) }) }],
  },
  {
    name: 'replaces a conflicting suffix from its first index',
    steps: [{ persist: batch({ entries: entries(1, 5, 1) }) }, { persist: batch({ entries: entries(3, 4, 2) }) }, { persist: batch({ entries: entries(5, 6, 3) }) }, { persist: batch({ entries: entries(1, 1, 4) }) }],
  },
  {
    name: 'appends right after the last entry, and rewrites the last entry alone',
    steps: [{ persist: batch({ entries: entries(1, 2, 1) }) }, { persist: batch({ entries: entries(3, 3, 1) }) }, { persist: batch({ entries: entries(3, 3, 2, 'again') }) }],
  },
  {
    name: 'installs a snapshot from the leader, replacing the whole log and the snapshot',
    steps: [
      { persist: batch({ hardState: hardState(1, 2), entries: entries(1, 5, 1) }) },
      { persist: batch({ snapshot: snapshot(3, 2), hardState: hardState(2, 3), entries: entries(4, 6, 2) }) },
      { persist: batch({ entries: entries(7, 8, 2) }) },
      { persist: batch({ snapshot: snapshot(2, 1) }) },
      { persist: batch({ entries: entries(3, 3, 3) }) },
    ],
  },
  {
    name: 'installs a snapshot beyond the log, then continues after it',
    steps: [{ persist: batch({ entries: entries(1, 2, 1) }) }, { persist: batch({ snapshot: snapshot(10, 3) }) }, { persist: batch({ entries: entries(11, 12, 3) }) }],
  },
  {
    name: 'saveSnapshot compacts up to compactIndex and keeps the entries after it',
    steps: [
      { persist: batch({ hardState: hardState(1, 8), entries: entries(1, 10, 1) }) },
      { saveSnapshot: [snapshot(8, 1), 5] },
      { persist: batch({ entries: entries(9, 12, 2) }) },
      { saveSnapshot: [snapshot(10, 2), 10] },
    ],
  },
  {
    name: 'saveSnapshot with an older snapshot keeps the stored one but still compacts',
    steps: [{ persist: batch({ entries: entries(1, 10, 1) }) }, { saveSnapshot: [snapshot(8, 1), 2] }, { saveSnapshot: [snapshot(6, 1, 'older'), 4] }, { saveSnapshot: [snapshot(8, 1, 'same index'), 6] }],
  },
  {
    name: 'saveSnapshot beyond the end of the log drops every entry, and the log continues at its end',
    steps: [{ persist: batch({ entries: entries(1, 3, 1) }) }, { saveSnapshot: [snapshot(5, 1), 5] }, { persist: batch({ entries: entries(4, 5, 2) }) }],
  },
  {
    name: "takes the runtime's repair: the stored snapshot again, with the entries that continue it",
    steps: [
      { persist: batch({ entries: entries(1, 6, 1) }) },
      { saveSnapshot: [snapshot(4, 1), 2] },
      { persist: batch({ snapshot: snapshot(4, 1), entries: entries(5, 6, 1) }) },
    ],
  },
  {
    name: 'compacts exactly up to a segment boundary (with the reopened copy, one batch per segment)',
    steps: [
      { persist: batch({ entries: entries(1, 4, 1, 'a payload long enough for its own segment ') }) },
      { persist: batch({ entries: entries(5, 8, 1, 'a payload long enough for its own segment ') }) },
      { saveSnapshot: [snapshot(4, 1), 3] },
      { saveSnapshot: [snapshot(5, 1), 4] },
    ],
  },
  {
    name: 'after compaction, replays a truncation that reaches below the oldest kept segment',
    steps: [
      { persist: batch({ entries: entries(1, 4, 1) }) },
      { persist: batch({ entries: entries(5, 10, 1) }) },
      { persist: batch({ entries: entries(3, 12, 2) }) },
      { saveSnapshot: [snapshot(9, 2), 8] },
      { persist: batch({ entries: entries(13, 13, 2) }) },
    ],
  },
  {
    name: 'refuses entries that would leave a gap or reach below the compacted log',
    steps: [
      { persist: batch({ entries: entries(1, 3, 1) }) },
      { fails: batch({ entries: entries(5, 5, 1) }) },
      { saveSnapshot: [snapshot(3, 1), 2] },
      { fails: batch({ entries: entries(2, 2, 2) }) },
    ],
  },
];

async function runStep(storage: Storage, step: Step): Promise<void> {
  if ('persist' in step) await storage.persist(step.persist);
  else if ('saveSnapshot' in step) await storage.saveSnapshot(step.saveSnapshot[0], step.saveSnapshot[1] as LogIndex);
  // MemoryStorage throws synchronously, FileStorage rejects: both are the same to an awaiting caller.
  else await expect((async () => storage.persist(step.fails))()).rejects.toBeInstanceOf(InvariantError);
}

describe('FileStorage: the same semantics as MemoryStorage', () => {
  for (const scenario of SCENARIOS) {
    it(scenario.name, async () => {
      const model = new MemoryStorage();
      const directory = await tempDirectory();
      // Without reopening, and with a reopen (and a tiny segment size, so rollovers) after every step.
      let kept = await openStorage(directory);
      const reopenedDirectory = await tempDirectory();
      const options = { segmentSizeBytes: 128 };
      let reopened = await openStorage(reopenedDirectory, options);
      expect(normalize(await kept.load())).toEqual(normalize(await model.load()));
      expect(normalize(await reopened.load())).toEqual(normalize(await model.load()));
      for (const step of scenario.steps) {
        await runStep(model, step);
        await runStep(kept, step);
        await runStep(reopened, step);
        const expected = normalize(model.contents());
        expect(normalize(await kept.load())).toEqual(expected);
        reopened = await reopen(reopened, options);
        expect(normalize(await reopened.load())).toEqual(expected);
      }
      kept = await reopen(kept);
      expect(normalize(await kept.load())).toEqual(normalize(model.contents()));
    });
  }

  it('starts empty in a new directory, creating it', async () => {
    const directory = join(await tempDirectory(), 'nested', 'data');
    const storage = await openStorage(directory);
    expect(normalize(await storage.load())).toEqual(normalize(await new MemoryStorage().load()));
    expect(await segmentNames(directory)).toEqual(['00000000000000000001.seg']);
  });

  it('recovers on the first write when load() was not called first', async () => {
    const directory = await tempDirectory();
    let storage = await openStorage(directory);
    await storage.persist(batch({ hardState: hardState(1, 0), entries: entries(1, 2, 1) }));
    storage = await reopen(storage);
    await storage.persist(batch({ entries: entries(3, 3, 1) }));
    storage = await reopen(storage);
    expect((await storage.load()).entries.map((item) => item.index)).toEqual([1, 2, 3]);
  });

  it('keeps entry bytes, types and large payloads exactly', async () => {
    const storage = await openStorage(await tempDirectory());
    await storage.load();
    const big = new Uint8Array(300_000).map((_, position) => (position * 7) & 0xff);
    const written: Entry[] = [
      { index: 1 as LogIndex, term: 1 as Term, type: EntryType.Noop, data: new Uint8Array(0) },
      { index: 2 as LogIndex, term: 1 as Term, type: EntryType.Normal, data: big },
      { index: 3 as LogIndex, term: 2 as Term, type: EntryType.ConfChange, data: new Uint8Array([0, 255, 1]) },
    ];
    await storage.persist(batch({ hardState: hardState(2 ** 40, 3, 'a-node-with-a-long-name'), entries: written }));
    const loaded = await (await reopen(storage)).load();
    expect(normalize(loaded)).toEqual(normalize({ hardState: hardState(2 ** 40, 3, 'a-node-with-a-long-name'), entries: written, snapshot: null }));
    expect(loaded.entries[1]?.data).toBeInstanceOf(Uint8Array);
  });
});

// ---------------------------------------------------------------------------------------------
// Crashes

/** What {@link persistAndRecord} wrote. */
interface Recorded {
  /** Size of the newest segment after each acknowledged persist (0 before it existed); [0] is after load(). */
  readonly sizes: number[];
  /** What MemoryStorage held after each persist: what a crash right after it must load. */
  readonly expected: unknown[];
  /** Path of the newest segment, its final bytes, and every file of the directory at the end. */
  readonly segment: string;
  readonly bytes: Buffer;
  readonly files: Map<string, Buffer>;
}

/** Persists `count` batches (every third overwriting the previous entry: a truncation) and records each step. */
async function persistAndRecord(directory: string, count: number, options: FileStorageOptions = {}): Promise<Recorded> {
  const model = new MemoryStorage();
  const storage = await openStorage(directory, options);
  await storage.load();
  const captures = [await captureFiles(directory)];
  const expected = [normalize(model.contents())];
  for (let step = 1; step <= count; step++) {
    const first = step % 3 === 0 ? step - 1 : step;
    const next = batch({ hardState: hardState(step, first - 1), entries: entries(first, step, step, 'x'.repeat(step * 3)) });
    await storage.persist(next);
    await model.persist(next);
    captures.push(await captureFiles(directory));
    expected.push(normalize(model.contents()));
  }
  await storage.close();
  const name = join('wal', (await segmentNames(directory)).at(-1) ?? '');
  const files = await captureFiles(directory);
  // The active segment holds preallocated zeros while open: an acknowledged write ends where its records do.
  return { sizes: captures.map((capture) => recordsEnd(capture.get(name) ?? Buffer.alloc(0))), expected, segment: join(directory, name), bytes: files.get(name) ?? Buffer.alloc(0), files };
}

describe('FileStorage: crash at every write point', () => {
  for (const [label, count, options] of [
    ['the only segment', 8, {}],
    ['the newest segment after rollovers (its header included)', 12, { segmentSizeBytes: 200 }],
  ] as const) {
    it(`keeps exactly what was acknowledged when ${label} is cut at every byte offset`, async () => {
      const directory = await tempDirectory();
      const { sizes, expected, segment, bytes, files } = await persistAndRecord(directory, count, options);
      if (options.segmentSizeBytes !== undefined) expect(sizes.filter((size) => size === 0).length).toBeGreaterThan(3);
      const headerBytes = recordOffsets(bytes)[1] ?? 0;
      const name = join('wal', segment.slice(directory.length + 1 + 4));
      for (let offset = 0; offset <= bytes.length; offset++) {
        await restoreFiles(directory, new Map([...files, [name, bytes.subarray(0, offset)]]));
        const { logger, records } = capturingLogger();
        const reopened = await openStorage(directory, { ...options, logger });
        // The last step whose acknowledged write lies wholly within the cut (for a cut inside the
        // first segment's header, the directory's creation: nothing stored).
        const acknowledged = Math.max(0, sizes.filter((size) => size <= offset).length - 1);
        expect(normalize(await reopened.load()), `cut at byte ${offset}`).toEqual(expected[acknowledged]);
        await reopened.close();
        await flushLogs();
        // A segment's header is durable before any batch goes in, so a cut batch leaves the header.
        const boundary = Math.max(sizes[acknowledged] ?? -1, headerBytes);
        const torn = records.filter((record) => typeof record.msg === 'string' && record.msg.includes('torn tail'));
        const removed = records.filter((record) => typeof record.reason === 'string' && record.reason.startsWith('torn segment header'));
        if (offset < headerBytes) {
          // The segment's creation was interrupted: it is removed, and the log goes on before it.
          expect(removed).toMatchObject([{ file: segment }]);
          expect(await segmentNames(directory)).not.toContain(segment.slice(-24));
          continue;
        }
        expect((await stat(segment)).size).toBe(boundary);
        if (offset === boundary) expect(torn).toEqual([]);
        else expect(torn).toMatchObject([{ file: segment, offset: boundary, droppedBytes: offset - boundary }]);
      }
    });
  }

  it('treats any damaged byte of the last record as a torn write, and refuses damage to an earlier record', async () => {
    const directory = await tempDirectory();
    const { expected, segment, bytes } = await persistAndRecord(directory, 5);
    const segmentName = join('wal', '00000000000000000001.seg');
    const offsets = recordOffsets(bytes);
    const last = offsets.at(-1) ?? 0;
    for (let position = last; position < bytes.length; position++) {
      const damaged = Buffer.from(bytes);
      damaged[position] = (damaged[position] ?? 0) ^ 0xff;
      await restoreFiles(directory, new Map([[segmentName, damaged]]));
      const storage = await openStorage(directory);
      expect(normalize(await storage.load()), `byte ${position} flipped`).toEqual(expected[4]);
      await storage.close();
      expect((await stat(segment)).size).toBe(last);
    }
    // Every record before the last one, the segment header included: refused, naming file and offset.
    for (let record = 0; record < offsets.length - 1; record++) {
      const start = offsets[record] ?? 0;
      const end = offsets[record + 1] ?? 0;
      for (let position = start; position < end; position++) {
        const damaged = Buffer.from(bytes);
        damaged[position] = (damaged[position] ?? 0) ^ 0x01;
        await restoreFiles(directory, new Map([[segmentName, damaged]]));
        const storage = await openStorage(directory);
        await expectStorageFailed(storage.load(), new RegExp(`${escapeRegExp(segment)} is corrupt at byte offset ${start}:`));
        await storage.close();
        // Refused means untouched: the damaged file is still whole for an operator to inspect.
        expect(await readFile(segment)).toEqual(damaged);
      }
    }
  });

  it('truncates trailing zeros (a preallocated or partly flushed tail) and logs it at info level', async () => {
    const directory = await tempDirectory();
    const { expected, segment, bytes } = await persistAndRecord(directory, 3);
    await restoreFiles(directory, new Map([[join('wal', '00000000000000000001.seg'), Buffer.concat([bytes, Buffer.alloc(4096)])]]));
    const { logger, records } = capturingLogger();
    let storage = await openStorage(directory, { logger });
    expect(normalize(await storage.load())).toEqual(expected[3]);
    await flushLogs();
    expect(records).toContainEqual(expect.objectContaining({ level: 30, file: segment, offset: bytes.length, droppedBytes: 4096, trailingZeros: true }));
    // Appending after the repair continues the log where it was cut.
    await storage.persist(batch({ entries: entries(4, 4, 9) }));
    storage = await reopen(storage);
    const loaded = await storage.load();
    expect(loaded.entries.map((item) => item.index)).toEqual([1, 2, 3, 4]);
  });

  it('refuses a last record whose checksum holds but whose contents do not decode', async () => {
    const directory = await tempDirectory();
    const { segment, bytes } = await persistAndRecord(directory, 2);
    // 0xc1 is never valid msgpack; the frame is otherwise perfect, so this is not a torn write.
    await restoreFiles(directory, new Map([[join('wal', '00000000000000000001.seg'), Buffer.concat([bytes, frameRecord(2, new Uint8Array([0xc1]))])]]));
    const storage = await openStorage(directory);
    await expectStorageFailed(storage.load(), new RegExp(`${escapeRegExp(segment)} is corrupt at byte offset ${bytes.length}: a record with a valid checksum does not decode`));
  });

  it('refuses a length field above the limit in the middle of the log, before reading the record', async () => {
    const directory = await tempDirectory();
    const { segment, bytes } = await persistAndRecord(directory, 3);
    const offsets = recordOffsets(bytes);
    const target = offsets[1] ?? 0;
    const damaged = Buffer.from(bytes);
    damaged.writeUInt32LE(0xfffffff0, target + 4);
    await restoreFiles(directory, new Map([[join('wal', '00000000000000000001.seg'), damaged]]));
    const storage = await openStorage(directory, { maxRecordBytes: 4096 });
    await expectStorageFailed(storage.load(), new RegExp(`${escapeRegExp(segment)} is corrupt at byte offset ${target}: record length 4294967280 is above the 4096-byte limit`));
  });

  it('refuses damage to a segment that is not the last one, even at its end', async () => {
    const directory = await tempDirectory();
    let storage = await openStorage(directory, { segmentSizeBytes: 200 });
    await storage.load();
    for (let index = 1; index <= 12; index++) await storage.persist(batch({ entries: [entry(index, 1, 'y'.repeat(40))] }));
    await storage.close();
    const names = await segmentNames(directory);
    expect(names.length).toBeGreaterThanOrEqual(3);
    const files = await captureFiles(directory);
    const first = join('wal', names[0] ?? '');
    const firstBytes = files.get(first) ?? Buffer.alloc(0);
    const lastRecord = recordOffsets(firstBytes).at(-1) ?? 0;

    const cut = new Map(files);
    cut.set(first, firstBytes.subarray(0, firstBytes.length - 3));
    await restoreFiles(directory, cut);
    storage = await openStorage(directory);
    await expectStorageFailed(storage.load(), new RegExp(`${escapeRegExp(join(directory, first))} is corrupt at byte offset ${lastRecord}: short record`));
    await storage.close();

    const flipped = new Map(files);
    const damaged = Buffer.from(firstBytes);
    damaged[damaged.length - 1] = (damaged[damaged.length - 1] ?? 0) ^ 0x10;
    flipped.set(first, damaged);
    await restoreFiles(directory, flipped);
    storage = await openStorage(directory);
    await expectStorageFailed(storage.load(), new RegExp(`${escapeRegExp(join(directory, first))} is corrupt at byte offset ${lastRecord}: checksum mismatch`));
    await storage.close();

    const missing = new Map(files);
    missing.delete(join('wal', names[1] ?? ''));
    await restoreFiles(directory, missing);
    storage = await openStorage(directory);
    await expectStorageFailed(storage.load(), /a segment is missing/);
    await storage.close();

    const headless = new Map(files);
    headless.delete(first);
    await restoreFiles(directory, headless);
    storage = await openStorage(directory);
    await expectStorageFailed(storage.load(), /earlier segments are missing/);
  });

  it('refuses a damaged snapshot file, naming it', async () => {
    const directory = await tempDirectory();
    let storage = await openStorage(directory);
    await storage.load();
    await storage.persist(batch({ entries: entries(1, 4, 1) }));
    await storage.saveSnapshot(snapshot(3, 1, 'x'.repeat(100)), 2 as LogIndex);
    await storage.close();
    const files = await captureFiles(directory);
    const snapshotBytes = files.get('snapshot') ?? Buffer.alloc(0);
    const snapshotPath = join(directory, 'snapshot');

    for (const [label, damaged, pattern] of [
      ['flipped', Buffer.from(snapshotBytes).fill(0x41, 60, 61), /at byte offset 0: checksum mismatch/],
      ['cut', snapshotBytes.subarray(0, snapshotBytes.length - 1), /at byte offset 0: short record/],
      ['extended', Buffer.concat([snapshotBytes, Buffer.alloc(1)]), new RegExp(`at byte offset ${snapshotBytes.length}: 1 unexpected bytes`)],
      ['emptied', Buffer.alloc(0), /at byte offset 0: short record/],
    ] as const) {
      await restoreFiles(directory, new Map([...files, ['snapshot', damaged]]));
      storage = await openStorage(directory);
      const error = await expectStorageFailed(storage.load(), pattern);
      expect(error.message, label).toContain(`${snapshotPath} is corrupt`);
      await storage.close();
    }

    await restoreFiles(directory, new Map([...files, ['snapshot', snapshotBytes]]));
    storage = await openStorage(directory, { maxSnapshotBytes: 10 });
    await expectStorageFailed(storage.load(), /above maxSnapshotBytes \(10\)/);
    await storage.close();

    await restoreFiles(directory, new Map([...files].filter(([name]) => name === 'snapshot')));
    storage = await openStorage(directory);
    await expectStorageFailed(storage.load(), /names segment \d+\.seg as the start of its log, but .* is missing/);
  });
});

describe('FileStorage: preallocated write-ahead log', () => {
  const MiB = 1024 * 1024;

  it('writes records into zeros written ahead of them, and leaves only records after a clean close', async () => {
    const directory = await tempDirectory();
    let storage = await openStorage(directory);
    await storage.load();
    for (let index = 1; index <= 5; index++) await storage.persist(batch({ hardState: hardState(1, index - 1), entries: [entry(index, 1)] }));
    const name = join('wal', (await segmentNames(directory))[0] ?? '');
    const open = (await captureFiles(directory)).get(name) ?? Buffer.alloc(0);
    // One preallocation step, of which the records use the start.
    expect(open.length).toBe(MiB);
    const end = recordsEnd(open);
    expect(recordOffsets(open.subarray(0, end))).toHaveLength(6);
    expect(open.subarray(end).every((byte) => byte === 0)).toBe(true);
    storage = await reopen(storage);
    expect((await stat(join(directory, name))).size).toBe(end);
    expect((await storage.load()).entries.map((item) => item.index)).toEqual([1, 2, 3, 4, 5]);
  });

  it('after a crash keeps every acknowledged write, cuts the zeros (logged at info) and appends where the records end', async () => {
    const directory = await tempDirectory();
    const model = new MemoryStorage();
    const storage = await openStorage(directory);
    await storage.load();
    for (let index = 1; index <= 4; index++) {
      const next = batch({ hardState: hardState(2, index - 1), entries: [entry(index, 2)] });
      await storage.persist(next);
      await model.persist(next);
    }
    // A power loss now: the files as the disk holds them, preallocated zeros included.
    const crashed = await captureFiles(directory);
    await storage.close();
    await restoreFiles(directory, crashed);
    const name = join('wal', (await segmentNames(directory))[0] ?? '');
    const end = recordsEnd(crashed.get(name) ?? Buffer.alloc(0));
    const { logger, records } = capturingLogger();
    let reopened = await openStorage(directory, { logger });
    expect(normalize(await reopened.load())).toEqual(normalize(model.contents()));
    await flushLogs();
    expect(records).toContainEqual(expect.objectContaining({ level: 30, offset: end, droppedBytes: MiB - end, trailingZeros: true }));
    expect(records.filter((record) => record.level === 40)).toEqual([]);
    const next = batch({ hardState: hardState(2, 4), entries: [entry(5, 2)] });
    await reopened.persist(next);
    await model.persist(next);
    reopened = await reopen(reopened);
    expect(normalize(await reopened.load())).toEqual(normalize(model.contents()));
  });

  it('grows the active segment step by step, and cuts its zeros before a rollover makes it an older segment', async () => {
    const directory = await tempDirectory();
    const model = new MemoryStorage();
    const options = { segmentSizeBytes: 3 * MiB };
    let storage = await openStorage(directory, options);
    await storage.load();
    // About 7 MiB of 20 KiB batches: several preallocation steps per segment, and rollovers.
    for (let index = 1; index <= 350; index++) {
      const next = batch({ hardState: hardState(1, index - 1), entries: [entry(index, 1, 'p'.repeat(20 * 1024))] });
      await storage.persist(next);
      await model.persist(next);
    }
    const names = await segmentNames(directory);
    expect(names.length).toBeGreaterThanOrEqual(3);
    const files = await captureFiles(directory);
    for (const [position, segment] of names.entries()) {
      const bytes = files.get(join('wal', segment)) ?? Buffer.alloc(0);
      const end = recordsEnd(bytes);
      if (position < names.length - 1) expect(bytes.length, `older segment ${segment}`).toBe(end);
      else expect(bytes.length).toBeGreaterThan(end);
      expect(bytes.length).toBeLessThanOrEqual(options.segmentSizeBytes);
    }
    // A crash with the active segment preallocated loses nothing acknowledged.
    await storage.close();
    await restoreFiles(directory, files);
    storage = await openStorage(directory, options);
    expect(normalize(await storage.load())).toEqual(normalize(model.contents()));
  });

  it('writes a record of a preallocation step or more past the end, and recovers it', async () => {
    const directory = await tempDirectory();
    const model = new MemoryStorage();
    let storage = await openStorage(directory);
    await storage.load();
    for (const [index, size] of [[1, 100], [2, 3 * MiB], [3, 100], [4, MiB]] as const) {
      const next = batch({ hardState: hardState(1, index - 1), entries: [entry(index, 1, 'b'.repeat(size))] });
      await storage.persist(next);
      await model.persist(next);
    }
    const crashed = await captureFiles(directory);
    await storage.close();
    await restoreFiles(directory, crashed);
    storage = await openStorage(directory);
    expect(normalize(await storage.load())).toEqual(normalize(model.contents()));
  });
});

describe('FileStorage: snapshot crash points', () => {
  /** A log of 30 entries in several segments: the state before the snapshot is saved. */
  async function prepare(directory: string, model: MemoryStorage): Promise<FileStorage> {
    const storage = await openStorage(directory, { segmentSizeBytes: 300 });
    await storage.load();
    for (let index = 1; index <= 30; index += 3) {
      const next = batch({ hardState: hardState(1, index - 1), entries: entries(index, index + 2, 1, 'z'.repeat(20)) });
      await storage.persist(next);
      await model.persist(next);
    }
    return storage;
  }

  it('saveSnapshot: a crash before the rename keeps the old snapshot and the full log', async () => {
    const directory = await tempDirectory();
    const model = new MemoryStorage();
    const storage = await prepare(directory, model);
    const before = await captureFiles(directory);
    const expectedBefore = normalize(model.contents());
    await storage.saveSnapshot(snapshot(20, 1), 18 as LogIndex);
    await storage.close();
    const after = await captureFiles(directory);
    // The new snapshot fully written as snapshot.tmp (or half of it), never renamed.
    for (const tmp of [after.get('snapshot') ?? Buffer.alloc(0), (after.get('snapshot') ?? Buffer.alloc(0)).subarray(0, 20)]) {
      await restoreFiles(directory, new Map([...before, ['snapshot.tmp', tmp]]));
      const reopened = await openStorage(directory);
      expect(normalize(await reopened.load())).toEqual(expectedBefore);
      await reopened.close();
      expect((await readdir(directory)).includes('snapshot.tmp')).toBe(false);
    }
  });

  it('saveSnapshot: a crash after the rename, before old segments are removed, loads the new snapshot', async () => {
    const directory = await tempDirectory();
    const model = new MemoryStorage();
    const storage = await prepare(directory, model);
    const before = await captureFiles(directory);
    const segmentsBefore = await segmentNames(directory);
    await storage.saveSnapshot(snapshot(20, 1), 18 as LogIndex);
    await model.saveSnapshot(snapshot(20, 1), 18 as LogIndex);
    const segmentsAfter = await segmentNames(directory);
    expect(segmentsAfter.length).toBeLessThan(segmentsBefore.length);
    await storage.close();
    const after = await captureFiles(directory);
    const { logger, records } = capturingLogger();
    await restoreFiles(directory, new Map([...before, ...after]));
    const reopened = await openStorage(directory, { logger });
    expect(normalize(await reopened.load())).toEqual(normalize(model.contents()));
    expect(await segmentNames(directory)).toEqual(segmentsAfter);
    await flushLogs();
    expect(records.filter((record) => String(record.reason).startsWith('obsolete'))).toHaveLength(segmentsBefore.length - segmentsAfter.length);
  });

  it('install from the leader: a crash before the rename keeps the old state and drops the new segment', async () => {
    const directory = await tempDirectory();
    const model = new MemoryStorage();
    const storage = await prepare(directory, model);
    // The install's rollover first cuts the preallocated zeros off the old active segment.
    const before = withoutPreallocation(await captureFiles(directory));
    const expectedBefore = normalize(model.contents());
    const install = batch({ snapshot: snapshot(40, 3), hardState: hardState(3, 40, 'n2'), entries: entries(41, 42, 3) });
    await storage.persist(install);
    await model.persist(install);
    await storage.close();
    const after = await captureFiles(directory);
    const newSegment = [...after.keys()].find((name) => name.startsWith('wal') && !before.has(name));
    expect(newSegment).toBeDefined();
    const withNewSegment = new Map([...before, [newSegment ?? '', after.get(newSegment ?? '') ?? Buffer.alloc(0)], ['snapshot.tmp', after.get('snapshot') ?? Buffer.alloc(0)]]);
    await restoreFiles(directory, withNewSegment);
    let reopened = await openStorage(directory);
    expect(normalize(await reopened.load())).toEqual(expectedBefore);
    expect(await segmentNames(directory)).not.toContain(newSegment?.slice(4));
    // The log goes on from the old state; a later start must not mistake anything for the install.
    await reopened.persist(batch({ entries: entries(31, 31, 2) }));
    reopened = await reopen(reopened);
    expect((await reopened.load()).entries.at(-1)?.index).toBe(31);
    await reopened.close();

    // After the rename (old segments still there): the install, whole.
    await restoreFiles(directory, new Map([...before, ...after]));
    reopened = await openStorage(directory);
    expect(normalize(await reopened.load())).toEqual(normalize(model.contents()));
    expect(await segmentNames(directory)).toEqual([newSegment?.slice(4)]);
  });

  it('rolls segments over at the size limit and removes those wholly compacted', async () => {
    const directory = await tempDirectory();
    const model = new MemoryStorage();
    const options = { segmentSizeBytes: 256 };
    let storage = await openStorage(directory, options);
    await storage.load();
    for (let index = 1; index <= 60; index++) {
      const next = batch({ hardState: hardState(1, index - 1), entries: [entry(index, 1, 'w'.repeat(30))] });
      await storage.persist(next);
      await model.persist(next);
    }
    const names = await segmentNames(directory);
    expect(names.length).toBeGreaterThan(5);
    for (const name of names.slice(0, -1)) expect((await stat(join(directory, 'wal', name))).size).toBeLessThanOrEqual(256);
    storage = await reopen(storage, options);
    expect(normalize(await storage.load())).toEqual(normalize(model.contents()));

    await storage.saveSnapshot(snapshot(50, 1), 45 as LogIndex);
    await model.saveSnapshot(snapshot(50, 1), 45 as LogIndex);
    const remaining = await segmentNames(directory);
    expect(remaining.length).toBeLessThan(names.length);
    expect(remaining.at(-1)).toBe(names.at(-1));
    expect(normalize(await storage.load())).toEqual(normalize(model.contents()));
    storage = await reopen(storage, options);
    expect(normalize(await storage.load())).toEqual(normalize(model.contents()));
    // The hard state survived the removal of the segments that recorded it.
    expect((await storage.load()).hardState.commit).toBe(59);

    await storage.saveSnapshot(snapshot(60, 1), 60 as LogIndex);
    await model.saveSnapshot(snapshot(60, 1), 60 as LogIndex);
    expect(await segmentNames(directory)).toEqual([names.at(-1)]);
    storage = await reopen(storage, options);
    expect(normalize(await storage.load())).toEqual(normalize(model.contents()));
  });
});

// ---------------------------------------------------------------------------------------------
// Lock, options, limits

describe('FileStorage: the directory lock', () => {
  it('refuses a second open while the first holds the lock, and close releases it', async () => {
    const directory = await tempDirectory();
    const first = await openStorage(directory);
    await expectStorageFailed(FileStorage.open(directory), new RegExp(`data directory ${escapeRegExp(directory)} is in use by process ${process.pid}`));
    expect((await readFile(join(directory, 'LOCK'), 'utf8')).trim()).toBe(String(process.pid));
    await first.close();
    await expect(readFile(join(directory, 'LOCK'))).rejects.toThrow();
    const second = await openStorage(directory);
    await second.load();
    expect((await readdir(directory)).filter((name) => name.startsWith('LOCK'))).toEqual(['LOCK']);
  });

  it('refuses a directory locked by another live process', async () => {
    const directory = await tempDirectory();
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
    try {
      const pid = child.pid ?? 0;
      await writeFile(join(directory, 'LOCK'), `${pid}\n`);
      await expectStorageFailed(FileStorage.open(directory), new RegExp(`is in use by process ${pid} `));
    } finally {
      child.kill();
    }
  });

  it('takes over a stale lock whose process is gone', async () => {
    const directory = await tempDirectory();
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    await writeFile(join(directory, 'LOCK'), `${gone}\n`);
    const { logger, records } = capturingLogger();
    const storage = await openStorage(directory, { logger });
    expect((await readFile(join(directory, 'LOCK'), 'utf8')).trim()).toBe(String(process.pid));
    await storage.load();
    await flushLogs();
    expect(records).toContainEqual(expect.objectContaining({ pid: gone, msg: expect.stringContaining('stale lock') as unknown }));
  });

  it('refuses a lock file that does not hold a pid', async () => {
    const directory = await tempDirectory();
    await writeFile(join(directory, 'LOCK'), 'garbage');
    await expectStorageFailed(FileStorage.open(directory), /does not hold a pid/);
  });

  it('refuses every operation after close', async () => {
    const storage = await openStorage(await tempDirectory());
    await storage.load();
    await storage.close();
    await storage.close();
    await expectStorageFailed(storage.load(), /is closed/);
    await expectStorageFailed(storage.persist(batch({ entries: entries(1, 1, 1) })), /is closed/);
  });
});

describe('FileStorage: options and limits', () => {
  it('validates options with errors naming the field', async () => {
    const directory = await tempDirectory();
    for (const [options, field] of [
      [{ segmentSizeBytes: 0 }, 'segmentSizeBytes'],
      [{ segmentSizeBytes: 1.5 }, 'segmentSizeBytes'],
      [{ segmentSizeBytes: Number.NaN }, 'segmentSizeBytes'],
      [{ maxRecordBytes: 10 }, 'maxRecordBytes'],
      [{ maxRecordBytes: 2 ** 32 }, 'maxRecordBytes'],
      [{ maxSnapshotBytes: -1 }, 'maxSnapshotBytes'],
      [{ maxSnapshotBytes: 2 ** 40 }, 'maxSnapshotBytes'],
    ] as const) {
      const error: unknown = await FileStorage.open(directory, options).then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(error).toMatchObject({ code: 'InvalidConfig', field });
    }
    await expect(FileStorage.open('')).rejects.toMatchObject({ code: 'InvalidConfig', field: 'directory' });
    // Nothing was locked by the refused opens.
    await (await openStorage(directory)).load();
  });

  it('refuses a batch above maxRecordBytes and a snapshot above maxSnapshotBytes, and writes nothing', async () => {
    const directory = await tempDirectory();
    let storage = await openStorage(directory, { maxRecordBytes: 1024, maxSnapshotBytes: 100 });
    await storage.load();
    await storage.persist(batch({ entries: entries(1, 1, 1) }));
    await expectStorageFailed(storage.persist(batch({ entries: [entry(2, 1, 'q'.repeat(2000))] })), /above maxRecordBytes \(1024\)/);
    await expectStorageFailed(storage.saveSnapshot(snapshot(1, 1, 'q'.repeat(101)), 1 as LogIndex), /above maxSnapshotBytes \(100\)/);
    // A refusal is not a failed write: the storage goes on.
    await storage.persist(batch({ entries: entries(2, 2, 1) }));
    storage = await reopen(storage);
    expect((await storage.load()).entries.map((item) => item.index)).toEqual([1, 2]);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: FileStorage behaves as MemoryStorage under any sequence of operations and reopens

type Command =
  | { readonly kind: 'append'; readonly back: number; readonly count: number; readonly bytes: number }
  | { readonly kind: 'hardState'; readonly term: number; readonly commit: number }
  | { readonly kind: 'install'; readonly ahead: number; readonly count: number }
  | { readonly kind: 'saveSnapshot'; readonly back: number; readonly compactBack: number }
  | { readonly kind: 'reopen' }
  | { readonly kind: 'crash'; readonly payload: Uint8Array; readonly keptPerMille: number };

const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('append' as const), back: fc.nat(4), count: fc.integer({ min: 1, max: 4 }), bytes: fc.nat(80) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('hardState' as const), term: fc.nat(9), commit: fc.nat(40) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('install' as const), ahead: fc.integer({ min: -3, max: 6 }), count: fc.nat(3) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('saveSnapshot' as const), back: fc.integer({ min: -2, max: 6 }), compactBack: fc.nat(5) }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'reopen' as const }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('crash' as const), payload: fc.uint8Array({ minLength: 1, maxLength: 60 }), keptPerMille: fc.integer({ min: 0, max: 999 }) }),
  },
);

describe('FileStorage: property', () => {
  it('loads what MemoryStorage holds after any sequence of persist, saveSnapshot and reopen', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(commandArbitrary, { minLength: 1, maxLength: 25 }), fc.constantFrom(128, 256, 1024), async (commands, segmentSizeBytes) => {
        const directory = join(await tempDirectory(), `run-${run++}`);
        const options = { segmentSizeBytes };
        const model = new MemoryStorage();
        let storage = await openStorage(directory, options);
        await storage.load();
        // The model's first stored index and next index, to generate only valid operations.
        let firstIndex = 1;
        let nextIndex = 1;
        let termNow = 1;
        try {
          for (const command of commands) {
            switch (command.kind) {
              case 'append': {
                const start = Math.max(firstIndex, nextIndex - command.back);
                termNow++;
                const next = batch({ entries: entries(start, start + command.count - 1, termNow, 'p'.repeat(command.bytes)) });
                await model.persist(next);
                await storage.persist(next);
                nextIndex = start + command.count;
                break;
              }
              case 'hardState': {
                const next = batch({ hardState: hardState(command.term, command.commit, command.term % 2 === 0 ? null : 'n2') });
                await model.persist(next);
                await storage.persist(next);
                break;
              }
              case 'install': {
                const index = Math.max(1, nextIndex - 1 + command.ahead);
                termNow++;
                const next = batch({ snapshot: snapshot(index, termNow), hardState: hardState(termNow, index), entries: entries(index + 1, index + command.count, termNow) });
                await model.persist(next);
                await storage.persist(next);
                firstIndex = index + 1;
                nextIndex = index + 1 + command.count;
                break;
              }
              case 'saveSnapshot': {
                const index = Math.max(1, nextIndex - 1 - command.back);
                const compactIndex = Math.max(0, index - command.compactBack);
                await model.saveSnapshot(snapshot(index, termNow), compactIndex as LogIndex);
                await storage.saveSnapshot(snapshot(index, termNow), compactIndex as LogIndex);
                firstIndex = Math.max(firstIndex, Math.min(nextIndex, compactIndex + 1));
                break;
              }
              case 'reopen':
                storage = await reopen(storage, options);
                break;
              case 'crash': {
                // Power loss during a write that was never acknowledged: part of a record at the end.
                await storage.close();
                const record = frameRecord(2, command.payload);
                const newest = join(directory, 'wal', (await segmentNames(directory)).at(-1) ?? '');
                await appendFile(newest, record.subarray(0, Math.floor((record.length * command.keptPerMille) / 1000)));
                storage = await openStorage(directory, options);
                break;
              }
            }
            expect(normalize(await storage.load())).toEqual(normalize(model.contents()));
          }
          storage = await reopen(storage, options);
          expect(normalize(await storage.load())).toEqual(normalize(model.contents()));
        } finally {
          await storage.close();
        }
      }),
      { numRuns: 100 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// A real cluster

type Applied = readonly [index: number, command: string];

/** Records (index, command) pairs; snapshots are that list as JSON. */
class ListMachine implements StateMachine<string> {
  state: Applied[] = [];

  apply(command: Uint8Array, index: LogIndex): string {
    const text = decoder.decode(command);
    this.state.push([index, text]);
    return text;
  }

  snapshot(): Uint8Array {
    return encoder.encode(JSON.stringify(this.state));
  }

  restore(data: Uint8Array): void {
    this.state = JSON.parse(decoder.decode(data)) as Applied[];
  }

  commands(): string[] {
    return this.state.map(([, command]) => command);
  }
}

/** Polls until `condition` holds (real time, bounded). */
async function eventually(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  for (let waitedMs = 0; !condition(); waitedMs += 10) {
    if (waitedMs >= timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 10));
  }
}

describe('FileStorage under RaftNode', () => {
  it('a 3-node cluster commits, stops, restarts from its directories and applies every committed entry again', async () => {
    const ids = ['n1', 'n2', 'n3'];
    const root = await tempDirectory();
    const fatalErrors: Error[] = [];
    const startCluster = async (): Promise<{ nodes: RaftNode<string>[]; machines: ListMachine[] }> => {
      const network = new MemoryNetwork({ encode: true });
      const clock = new SystemClock();
      const nodes: RaftNode<string>[] = [];
      const machines: ListMachine[] = [];
      for (const [position, id] of ids.entries()) {
        const machine = new ListMachine();
        machines.push(machine);
        const storage = await openStorage(join(root, id), { segmentSizeBytes: 512 });
        nodes.push(
          await RaftNode.start<string>({
            id,
            voters: ids,
            transport: network.connect(nodeId(id)),
            storage,
            clock,
            stateMachine: machine,
            tickIntervalMs: 10,
            seed: 11 + position,
            // Small intervals so that snapshots, compaction and segment removal all happen.
            snapshots: { intervalEntries: 8, trailingEntries: 3 },
            onFatalError: (error) => fatalErrors.push(error),
          }),
        );
      }
      return { nodes, machines };
    };
    const leaderOf = (nodes: RaftNode<string>[]): RaftNode<string> | undefined => nodes.find((node) => node.status().role === 'Leader');

    const first = await startCluster();
    await eventually(() => leaderOf(first.nodes) !== undefined, 'a leader');
    const expected: string[] = [];
    for (let round = 0; round < 60; round++) {
      const leader = leaderOf(first.nodes);
      if (leader === undefined) throw new Error('lost the leader');
      const command = `cmd-${round}`;
      await leader.propose(encoder.encode(command));
      expected.push(command);
    }
    await eventually(() => first.machines.every((machine) => machine.commands().length === expected.length), 'every node to apply everything');
    for (const machine of first.machines) expect(machine.commands()).toEqual(expected);
    for (const node of first.nodes) await node.stop({ transferLeadership: false });
    // Every node took snapshots, and compaction removed the oldest segments.
    for (const id of ids) {
      expect((await stat(join(root, id, 'snapshot'))).size).toBeGreaterThan(0);
      expect(await segmentNames(join(root, id))).not.toContain('00000000000000000001.seg');
    }

    const second = await startCluster();
    await eventually(() => second.machines.every((machine) => machine.commands().length >= expected.length), 'every node to apply the committed entries again');
    for (const machine of second.machines) expect(machine.commands().slice(0, expected.length)).toEqual(expected);
    await eventually(() => leaderOf(second.nodes) !== undefined, 'a leader after the restart');
    const leader = leaderOf(second.nodes);
    const applied = await leader?.propose(encoder.encode('after-restart'));
    expect(applied?.result).toBe('after-restart');
    for (const node of second.nodes) await node.stop({ transferLeadership: false });
    expect(fatalErrors).toEqual([]);
  });
});
