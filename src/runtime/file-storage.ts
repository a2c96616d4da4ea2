/**
 * {@link Storage} on the local file system, for production nodes: a write-ahead log in segment files
 * and a snapshot file, with one synchronous write per Ready batch.
 *
 * ## Directory layout
 *
 * ```text
 * <directory>/
 *   LOCK                         pid of the process using the directory (see "Locking")
 *   snapshot                     the newest durable snapshot; absent until the first one
 *   snapshot.tmp                 a snapshot being written; removed at the next start
 *   wal/
 *     00000000000000000001.seg   write-ahead log segments, named by sequence number (20 digits)
 *     00000000000000000002.seg
 * ```
 *
 * ## Records
 *
 * Segments and the snapshot file are sequences of records, each framed as:
 *
 * ```text
 * offset 0   u32 LE  CRC-32 (IEEE, as zlib) of bytes 4 .. 9 + payloadLength
 * offset 4   u32 LE  payloadLength (bytes after the 9-byte frame header; at least 1)
 * offset 8   u8      record type: 1 segment header, 2 batch, 3 snapshot
 * offset 9   payload, msgpack
 * ```
 *
 * The checksum covers the length and the type, so a damaged length is caught like damaged data.
 * Payloads (msgpack arrays):
 * - segment header (type 1, the first record of every segment):
 *   `[formatVersion, sequence, previousSequence, resetAfter, hardState]`. `resetAfter` is null, or
 *   `[index, term]` when the segment starts a fresh log after that snapshot index (the first segment
 *   of a new directory resets after `[0, 0]`); `hardState` is `[term, vote, commit]` as of the
 *   segment's creation, so deleting older segments never loses the hard state.
 * - batch (type 2, one per `persist`: the whole Ready batch is one record, so a crash keeps all of it
 *   or none): `[hardState | null, firstIndex, [[term, type, data], …]]`. Entries starting at or
 *   below the last stored index replace the stored suffix from there (the truncation is implied).
 * - snapshot (type 3, the only record of the `snapshot` file):
 *   `[formatVersion, metadata, walStartSequence, firstLogIndex, data]` where `metadata` is
 *   {@link encodeSnapshotMetadata}'s bytes, `walStartSequence` the first segment that belongs with
 *   this snapshot (older ones are obsolete) and `firstLogIndex` the first log index still stored.
 *
 * ## Durability and crash atomicity
 *
 * - `persist` without a snapshot appends one batch record with one durable write (group commit). The
 *   active segment is opened with `O_DSYNC` and grows in 1 MiB steps of zeros written (durably)
 *   ahead of the records, so a record overwrites space the file already has and its write is
 *   durable without a file-size update: the cost of an `fdatasync`, not an `fsync` with a journal
 *   commit. (Without `O_DSYNC`, as on Windows, each write is followed by `fdatasync`.) A record of
 *   1 MiB or more that does not fit goes past the end instead of over zeros written first (without
 *   `O_DSYNC` it is then fully fsynced). When the active segment
 *   would exceed `segmentSizeBytes`, its zeros are cut off (truncate, fsync) and a new segment is
 *   started: its header is written and fsynced, and the `wal` directory fsynced, before the batch
 *   goes in. Only the last segment ever ends in zeros; `close()` cuts them too.
 * - `persist` with a snapshot (an install from the leader) starts a new segment whose header resets
 *   the log after the snapshot, appends the batch's entries to it and fsyncs it; then writes the
 *   snapshot to `snapshot.tmp`, fsyncs it, renames it over `snapshot` and fsyncs the directory. The
 *   rename is the commit point: before it, the new segment is an uncommitted install (the snapshot
 *   file names an older segment as its start) and is deleted at recovery, leaving the old state;
 *   after it, segments older than the new one are obsolete.
 * - `saveSnapshot` writes the snapshot the same way (tmp, fsync, rename, directory fsync), naming as
 *   its start the first segment that holds any entry after `compactIndex`; only then are older
 *   segments deleted. A crash before the rename keeps the old snapshot and the full log; after it,
 *   the new snapshot with a log that continues after it (leftover old segments are ignored and
 *   deleted at the next start).
 *
 * ## Recovery
 *
 * `load()` (or the first write, if it comes first) reads the snapshot and the segments from the
 * snapshot's start segment on. An invalid record in the *last* segment with no valid record after
 * it is the torn tail of a write that never completed (short record, checksum mismatch, trailing
 * zeros): the segment is truncated there and a warning logged (at info level when the rest is all
 * zeros, which is what preallocation leaves after every crash). Nothing acknowledged is lost, because
 * `persist` resolves only once the record is durable. Any other damage — an invalid record followed by
 * a valid one, a damaged segment that is not the last, a record whose checksum holds but whose
 * contents do not decode, a missing segment, a damaged snapshot file — fails with
 * `RaftLeaseError('StorageFailed')` naming the file and byte offset, and the node does not start:
 * silently dropping acknowledged entries could lose committed data. (A torn last record whose payload
 * happens to contain a whole valid record — user data that embeds this format — is therefore also
 * refused rather than truncated; that errs on the safe side.)
 *
 * ## Locking
 *
 * `open` creates `LOCK` exclusively (a hard link of a file holding the pid, so the lock never exists
 * without its contents). A lock whose process is gone (`process.kill(pid, 0)` fails with `ESRCH`) is
 * stale and taken over. Two processes taking over the same stale lock at the same instant can both
 * succeed (there is no portable `flock` in Node); a reused pid makes a stale lock look alive (remove
 * `LOCK` by hand once no raftlease process uses the directory). Network file systems are not supported.
 *
 * @module
 */
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, mkdir, open, readFile, readdir, rename, stat, truncate, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Packr, Unpackr } from 'msgpackr';
import { pino, type Logger } from 'pino';
import {
  ConfigError,
  InvariantError,
  RaftLeaseError,
  decodeSnapshotMetadata,
  encodeSnapshotMetadata,
  invariant,
  type Entry,
  type HardState,
  type LogIndex,
  type NodeId,
  type Snapshot,
  type SnapshotMetadata,
  type Term,
} from '../raft/index.js';
import type { PersistBatch, PersistentState, Storage } from './interfaces.js';

/** Options of {@link FileStorage.open}. */
export interface FileStorageOptions {
  /**
   * A segment is closed and a new one started once the next batch would take it past this size.
   * A single batch larger than this gets a segment of its own. Default 64 MiB.
   */
  readonly segmentSizeBytes?: number;
  /**
   * Largest record payload written or read. A length field above it is refused before anything is
   * allocated; a `persist` batch whose record would exceed it is refused. Default 128 MiB, above
   * the Raft core's default cap on uncommitted bytes (64 MiB), which bounds a Ready batch.
   */
  readonly maxRecordBytes?: number;
  /** Largest snapshot (its `data`) written or read. Default 1 GiB, the Raft core's default. */
  readonly maxSnapshotBytes?: number;
  /** Where to log recovery actions (torn tails truncated, leftover files removed). Default: silent. */
  readonly logger?: Logger;
}

/** Default {@link FileStorageOptions.segmentSizeBytes}. */
export const DEFAULT_SEGMENT_SIZE_BYTES = 64 * 1024 * 1024;
/** Default {@link FileStorageOptions.maxRecordBytes}. */
export const DEFAULT_MAX_RECORD_BYTES = 128 * 1024 * 1024;
/** Default {@link FileStorageOptions.maxSnapshotBytes}. */
export const DEFAULT_MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024;
/** Version of the segment and snapshot payload layouts; a file of another version is refused. */
export const FILE_STORAGE_FORMAT_VERSION = 1;

/** Bytes before a record's payload: CRC-32, payload length, type. */
const RECORD_HEADER_BYTES = 9;
/** The largest value a u32 length field can hold. */
const MAX_U32 = 0xffff_ffff;
/** Room in the snapshot record for everything but `data` (metadata names at most a few hundred nodes). */
const SNAPSHOT_OVERHEAD_BYTES = 1024 * 1024;
/** Smallest allowed `segmentSizeBytes`: a segment header and a small batch. */
const MIN_SEGMENT_SIZE_BYTES = 128;
/** Smallest allowed `maxRecordBytes`: a segment header must always fit. */
const MIN_MAX_RECORD_BYTES = 1024;
/**
 * The active segment grows in steps of this many zero bytes, written ahead of the records that will
 * overwrite them. A record then lands in space the file already has, so making it durable needs no
 * file-size (metadata) update: `O_DSYNC` (or `fdatasync`) instead of a full `fsync`, which on ext4
 * also keeps concurrent writers out of each other's journal commits.
 */
const PREALLOCATION_STEP_BYTES = 1024 * 1024;
/**
 * Flags of the active segment: writes return once durable (`O_DSYNC`), so one system call appends a
 * record. Where the platform has no `O_DSYNC` (Windows) each append is followed by `fdatasync`.
 */
const SYNC_WRITE_FLAG: number | undefined = fsConstants.O_DSYNC;
/** Attempts `open` makes to take the lock (each after removing a stale one) before giving up. */
const MAX_LOCK_ATTEMPTS = 3;

const LOCK_FILE = 'LOCK';
const SNAPSHOT_FILE = 'snapshot';
const SNAPSHOT_TMP_FILE = 'snapshot.tmp';
const WAL_DIRECTORY = 'wal';
const SEGMENT_NAME = /^(\d{20})\.seg$/;

const RecordType = {
  SegmentHeader: 1,
  Batch: 2,
  Snapshot: 3,
} as const;
type RecordType = (typeof RecordType)[keyof typeof RecordType];

const WAL_RECORD_TYPES: readonly number[] = [RecordType.SegmentHeader, RecordType.Batch];
const SNAPSHOT_RECORD_TYPES: readonly number[] = [RecordType.Snapshot];

const INITIAL_HARD_STATE: HardState = Object.freeze({ term: 0 as Term, vote: null, commit: 0 as LogIndex });

const packr = new Packr({ useRecords: false, variableMapSize: true });
// copyBuffers: entry data must not alias (and pin) a whole segment's read buffer.
const unpackr = new Unpackr({ useRecords: false, copyBuffers: true, mapsAsObjects: false });
// The snapshot's data is most of its file's buffer: aliasing it saves a copy of the largest object.
const aliasingUnpackr = new Unpackr({ useRecords: false, copyBuffers: false, mapsAsObjects: false });

/** One live segment (at or after the snapshot's start segment). */
interface Segment {
  readonly sequence: number;
  readonly path: string;
  /** Highest entry index any batch in it wrote (0 if none): it may be deleted once compaction passes this. */
  maxIndexWritten: number;
}

/** What the storage knows about the files once recovered. Invariant: `firstIndex <= nextIndex`. */
interface WalState {
  hardState: HardState;
  /** First log index stored (entries below it are covered by the snapshot). */
  firstIndex: number;
  /** Last stored index + 1. */
  nextIndex: number;
  snapshotMetadata: SnapshotMetadata | null;
  /** The segment the snapshot file names as its start (the oldest live one). */
  walStartSequence: number;
  /** Live segments, oldest first; the last one is active (appended to). Never empty. */
  segments: Segment[];
  active: FileHandle;
  /** Bytes of the active segment that hold records: the next record goes here. */
  activeSizeBytes: number;
  /** Length of the active segment's file: records plus the zeros written ahead of them. */
  activeAllocatedBytes: number;
  /** Whether the active segment holds a batch besides its header (an empty one is never rolled over). */
  activeHasBatches: boolean;
  /** Sequence number of the next segment: above every one ever seen in the directory. */
  nextSequence: number;
}

/** What the snapshot file holds. */
interface StoredSnapshot {
  readonly snapshot: Snapshot;
  readonly walStartSequence: number;
  readonly firstLogIndex: number;
}

/** A file to delete at recovery, and why. */
interface Removal {
  readonly path: string;
  readonly reason: string;
}

/** The outcome of reading the directory: the state, and what recovery must repair. */
interface Scan {
  readonly state: PersistentState;
  readonly hardState: HardState;
  readonly firstIndex: number;
  readonly nextIndex: number;
  readonly stored: StoredSnapshot | null;
  /** Live segments that survive the repairs, oldest first (possibly none in a new directory). */
  readonly segments: (Segment & { readonly validBytes: number; readonly hasBatches: boolean })[];
  readonly removals: Removal[];
  readonly tornTail: { readonly path: string; readonly offset: number; readonly fileBytes: number; readonly zeros: boolean } | null;
  readonly snapshotTmpExists: boolean;
  readonly maxSequenceSeen: number;
}

interface ResolvedOptions {
  readonly segmentSizeBytes: number;
  readonly maxRecordBytes: number;
  readonly maxSnapshotBytes: number;
}

/**
 * Durable storage in a directory: a write-ahead log of segment files and a snapshot file. See the
 * module documentation for the layout, record format, crash guarantees and recovery rules.
 *
 * Operations run one at a time in call order. After a failed write or fsync the storage refuses
 * every further write (nothing is known about durability any more); reopen it to recover.
 *
 * @example
 * ```ts
 * const storage = await FileStorage.open('/var/lib/raftlease/n1', { logger });
 * const node = await RaftNode.start({ id: 'n1', voters, transport, storage, clock, stateMachine });
 * // …
 * await node.stop(); // closes the storage, which releases the directory's lock
 * ```
 */
export class FileStorage implements Storage {
  /** Absolute path of the data directory. */
  readonly directory: string;
  private readonly walDirectory: string;
  private readonly options: ResolvedOptions;
  private readonly logger: Logger;
  private wal: WalState | null = null;
  private status: 'open' | 'failed' | 'closed' = 'open';
  private failure: unknown = null;
  /** Tail of the chain that runs operations one at a time. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(directory: string, options: ResolvedOptions, logger: Logger) {
    this.directory = directory;
    this.walDirectory = join(directory, WAL_DIRECTORY);
    this.options = options;
    this.logger = logger;
  }

  /**
   * Opens (creating if needed) the data directory and takes its lock. Throws {@link ConfigError} for
   * invalid options and `RaftLeaseError('StorageFailed')` when another live process holds the lock
   * or the directory cannot be created. Recovery happens in {@link FileStorage.load}.
   */
  static async open(directory: string, options: FileStorageOptions = {}): Promise<FileStorage> {
    if (typeof directory !== 'string' || directory.length === 0) throw new ConfigError('directory', 'must be a non-empty path');
    const resolved = resolveOptions(options);
    const logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'file-storage' });
    const absolute = resolve(directory);
    try {
      const firstCreated = await mkdir(join(absolute, WAL_DIRECTORY), { recursive: true });
      // Directories just created must themselves be durable entries of their parents.
      if (firstCreated !== undefined) {
        // Bounded by the path's depth: each round moves one level up until the first created one.
        for (let path = join(absolute, WAL_DIRECTORY); dirname(path) !== path; path = dirname(path)) {
          await fsyncDirectory(dirname(path));
          if (path === firstCreated) break;
        }
      }
    } catch (error) {
      throw new RaftLeaseError('StorageFailed', `cannot create data directory ${absolute}: ${describe(error)}`, { cause: error });
    }
    await acquireLock(absolute, logger);
    return new FileStorage(absolute, resolved, logger);
  }

  /**
   * Reads everything stored, first repairing what a crash left behind (see the module
   * documentation). Throws `RaftLeaseError('StorageFailed')` naming the file and byte offset for
   * corruption that is not a torn tail.
   */
  load(): Promise<PersistentState> {
    return this.enqueue(async () => {
      this.checkUsable();
      if (this.wal === null) return this.recover();
      // A later load (the runtime loads once) re-reads the files, which recovery left consistent.
      return (await this.scan()).state;
    });
  }

  /** Durably writes one batch with one fsync (see the module documentation for snapshot installs). */
  persist(batch: PersistBatch): Promise<void> {
    return this.enqueue(async () => {
      this.checkUsable();
      const wal = this.wal ?? (await this.recoverState());
      if (batch.snapshot !== null) await this.installSnapshot(wal, batch.snapshot, batch);
      else await this.appendBatch(wal, batch);
    });
  }

  /**
   * Durably stores a snapshot (temporary file, fsync, rename, directory fsync), then deletes the
   * segments that hold only entries at or below `compactIndex`.
   */
  saveSnapshot(snapshot: Snapshot, compactIndex: LogIndex): Promise<void> {
    return this.enqueue(async () => {
      invariant(compactIndex <= snapshot.metadata.index, () => `compacting to ${compactIndex} beyond the snapshot at ${snapshot.metadata.index}`);
      this.checkUsable();
      const wal = this.wal ?? (await this.recoverState());
      await this.compact(wal, snapshot, compactIndex);
    });
  }

  /** Closes the active segment and releases the directory's lock. Idempotent. */
  close(): Promise<void> {
    return this.enqueue(async () => {
      if (this.status === 'closed') return;
      const wasOpen = this.status === 'open';
      this.status = 'closed';
      const wal = this.wal;
      this.wal = null;
      try {
        // A clean close leaves no preallocated zeros behind (recovery would remove them anyway).
        if (wal !== null && wasOpen) await this.trimActive(wal);
        await wal?.active.close();
      } finally {
        await releaseLock(this.directory);
      }
    });
  }

  private enqueue<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.queue.then(operation);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private checkUsable(): void {
    if (this.status === 'closed') throw new RaftLeaseError('StorageFailed', `storage in ${this.directory} is closed`);
    if (this.status === 'failed') {
      throw new RaftLeaseError('StorageFailed', `storage in ${this.directory} failed earlier (${describe(this.failure)}); reopen it to recover`, { cause: this.failure });
    }
  }

  /** Runs a write; any failure leaves the storage failed, since nothing is known about durability. */
  private async writing<T>(what: string, operation: () => Promise<T>): Promise<T> {
    try {
      return await operation();
    } catch (error) {
      this.status = 'failed';
      this.failure = error;
      if (error instanceof RaftLeaseError || error instanceof InvariantError) throw error;
      throw new RaftLeaseError('StorageFailed', `${what} in ${this.directory} failed: ${describe(error)}`, { cause: error });
    }
  }

  private async recover(): Promise<PersistentState> {
    const scan = await this.scan();
    await this.repairAndOpen(scan);
    return scan.state;
  }

  private async recoverState(): Promise<WalState> {
    await this.recover();
    invariant(this.wal !== null, 'recovery left no write-ahead log state');
    return this.wal;
  }

  /** Applies what {@link FileStorage.scan} found to repair, then opens the active segment. */
  private async repairAndOpen(scan: Scan): Promise<void> {
    await this.writing('recovery', async () => {
      if (scan.snapshotTmpExists) {
        await unlinkIfExists(join(this.directory, SNAPSHOT_TMP_FILE));
        this.logger.info({ file: join(this.directory, SNAPSHOT_TMP_FILE) }, 'removed a snapshot left unfinished by a crash');
      }
      for (const removal of scan.removals) {
        await unlinkIfExists(removal.path);
        this.logger.warn({ file: removal.path, reason: removal.reason }, 'removed a write-ahead log segment');
      }
      const torn = scan.tornTail;
      if (torn !== null) {
        await truncate(torn.path, torn.offset);
        await fsyncFile(torn.path);
        const details = { file: torn.path, offset: torn.offset, droppedBytes: torn.fileBytes - torn.offset, trailingZeros: torn.zeros };
        // Zeros are what preallocation leaves after every crash: routine, so not a warning.
        if (torn.zeros) this.logger.info(details, 'truncated zeros at the end of the write-ahead log (preallocated space, or a write the crash interrupted; never acknowledged)');
        else this.logger.warn(details, 'truncated the torn tail of the write-ahead log (a write the crash interrupted; it was never acknowledged)');
      }
      // Deletions must be durable before new segments name their predecessors (see the header chain).
      if (scan.removals.length > 0 || scan.snapshotTmpExists) {
        await fsyncDirectory(this.walDirectory);
        await fsyncDirectory(this.directory);
      }
      const last = scan.segments.at(-1);
      const segments: Segment[] = scan.segments.map(({ sequence, path, maxIndexWritten }) => ({ sequence, path, maxIndexWritten }));
      let nextSequence = scan.maxSequenceSeen + 1;
      if (last === undefined) {
        // A new directory (or one whose only segment never got its header): start the log.
        invariant(scan.stored === null, 'a snapshot without its start segment passed the scan');
        const sequence = nextSequence++;
        const created = await this.createSegment(sequence, 0, { index: 0, term: 0 }, scan.hardState);
        this.wal = {
          hardState: scan.hardState,
          firstIndex: scan.firstIndex,
          nextIndex: scan.nextIndex,
          snapshotMetadata: null,
          walStartSequence: sequence,
          segments: [{ sequence, path: created.path, maxIndexWritten: 0 }],
          active: created.handle,
          activeSizeBytes: created.sizeBytes,
          activeAllocatedBytes: created.sizeBytes,
          activeHasBatches: false,
          nextSequence,
        };
        return;
      }
      const active = await open(last.path, activeSegmentFlags());
      this.wal = {
        hardState: scan.hardState,
        firstIndex: scan.firstIndex,
        nextIndex: scan.nextIndex,
        snapshotMetadata: scan.stored?.snapshot.metadata ?? null,
        walStartSequence: segments[0]?.sequence ?? last.sequence,
        segments,
        active,
        activeSizeBytes: last.validBytes,
        // Recovery truncated the file to its records (a zero tail counts as torn).
        activeAllocatedBytes: last.validBytes,
        activeHasBatches: last.hasBatches,
        nextSequence,
      };
    });
  }

  /**
   * Reads the snapshot and the live segments and replays them. Changes nothing on disk: the repairs
   * it finds (a torn tail, leftover segments) are returned for {@link FileStorage.repairAndOpen}.
   */
  private async scan(): Promise<Scan> {
    const stored = await this.readSnapshotFile();
    const snapshotTmpExists = await exists(join(this.directory, SNAPSHOT_TMP_FILE));
    let names: string[];
    try {
      names = await readdir(this.walDirectory);
    } catch (error) {
      throw new RaftLeaseError('StorageFailed', `cannot list ${this.walDirectory}: ${describe(error)}`, { cause: error });
    }
    const files = names
      .map((name) => SEGMENT_NAME.exec(name))
      .filter((match) => match !== null)
      .map((match) => ({ sequence: Number(match[1]), path: join(this.walDirectory, match[0]) }))
      .sort((a, b) => a.sequence - b.sequence);
    const maxSequenceSeen = files.at(-1)?.sequence ?? 0;
    const walStartSequence = stored?.walStartSequence ?? 0;
    const removals: Removal[] = files.filter((file) => file.sequence < walStartSequence).map((file) => ({ path: file.path, reason: `obsolete: older than segment ${walStartSequence}, where the snapshot's log starts` }));
    const candidates = files.filter((file) => file.sequence >= walStartSequence);
    if (stored !== null && candidates[0]?.sequence !== walStartSequence) {
      throw new RaftLeaseError('StorageFailed', `${join(this.directory, SNAPSHOT_FILE)} names segment ${segmentName(walStartSequence)} as the start of its log, but ${join(this.walDirectory, segmentName(walStartSequence))} is missing`);
    }

    let hardState = INITIAL_HARD_STATE;
    const replay = new LogReplay();
    const segments: Scan['segments'][number][] = [];
    let tornTail: Scan['tornTail'] = null;
    for (let position = 0; position < candidates.length; position++) {
      const file = candidates[position];
      invariant(file !== undefined, 'segment list changed while scanning');
      const isLast = position === candidates.length - 1;
      const bytes = await readWholeFile(file.path);
      const headerRead = readRecordAt(bytes, 0, this.options.maxRecordBytes, WAL_RECORD_TYPES);
      if (headerRead.kind === 'invalid' || headerRead.type !== RecordType.SegmentHeader) {
        const reason = headerRead.kind === 'invalid' ? headerRead.reason : `record type ${headerRead.type} where the segment header belongs`;
        // Only a segment that nothing committed yet may lose its header: the newest one, while
        // being created (its header is fsynced before anything is appended to it).
        const committedStart = stored !== null && position === 0;
        if (headerRead.kind === 'invalid' && isLast && !committedStart && !hasValidRecordAfter(bytes, 1, this.options.maxRecordBytes, WAL_RECORD_TYPES)) {
          removals.push({ path: file.path, reason: `torn segment header (${reason}): the crash interrupted its creation` });
          break;
        }
        throw corruption(file.path, 0, reason);
      }
      const header = decodeAt(file.path, 0, () => decodeSegmentHeader(headerRead.payload));
      if (header.sequence !== file.sequence) throw corruption(file.path, 0, `segment header names sequence ${header.sequence}`);
      const previous = candidates[position - 1];
      if (previous === undefined) {
        if (stored === null && header.resetAfter?.index !== 0) {
          throw corruption(file.path, 0, 'the oldest segment does not start the log (no snapshot covers what came before): earlier segments are missing');
        }
        replay.start(header.resetAfter);
      } else {
        if (header.previousSequence !== previous.sequence) {
          throw corruption(file.path, 0, `segment header names ${segmentName(header.previousSequence)} as its predecessor, but the directory holds ${segmentName(previous.sequence)}: a segment is missing`);
        }
        if (header.resetAfter !== null) {
          // A snapshot install whose snapshot file was never renamed into place: not committed.
          if (!isLast) throw corruption(file.path, 0, 'a segment that resets the log for an uncommitted snapshot install is followed by others');
          removals.push({ path: file.path, reason: `uncommitted install of the snapshot at index ${header.resetAfter.index}: the crash came before the snapshot file was renamed` });
          break;
        }
      }
      hardState = header.hardState;
      let offset = headerRead.endOffset;
      let maxIndexWritten = 0;
      let hasBatches = false;
      while (offset < bytes.length) {
        const read = readRecordAt(bytes, offset, this.options.maxRecordBytes, WAL_RECORD_TYPES);
        if (read.kind === 'invalid') {
          if (isLast && !hasValidRecordAfter(bytes, offset + 1, this.options.maxRecordBytes, WAL_RECORD_TYPES)) {
            tornTail = { path: file.path, offset, fileBytes: bytes.length, zeros: bytes.subarray(offset).every((byte) => byte === 0) };
            break;
          }
          throw corruption(file.path, offset, `${read.reason}, and valid records follow`);
        }
        if (read.type !== RecordType.Batch) throw corruption(file.path, offset, 'a segment header in the middle of a segment');
        const recordOffset = offset;
        const batch = decodeAt(file.path, recordOffset, () => decodeBatch(read.payload));
        if (batch.entries.length > 0) {
          const problem = replay.apply(batch.firstIndex, batch.entries);
          if (problem !== null) throw corruption(file.path, recordOffset, problem);
          maxIndexWritten = Math.max(maxIndexWritten, batch.firstIndex + batch.entries.length - 1);
        }
        if (batch.hardState !== null) hardState = batch.hardState;
        hasBatches = true;
        offset = read.endOffset;
      }
      segments.push({ sequence: file.sequence, path: file.path, maxIndexWritten, validBytes: offset, hasBatches });
    }

    const firstIndex = stored?.firstLogIndex ?? 1;
    const finished = replay.finish(firstIndex);
    if (typeof finished === 'string') throw new RaftLeaseError('StorageFailed', `the write-ahead log in ${this.walDirectory} is inconsistent: ${finished}`);
    return {
      state: { hardState, entries: finished.entries, snapshot: stored?.snapshot ?? null },
      hardState,
      firstIndex,
      nextIndex: finished.nextIndex,
      stored,
      segments,
      removals,
      tornTail,
      snapshotTmpExists,
      maxSequenceSeen,
    };
  }

  /** Appends one batch record (after starting a new segment if the active one is full), one fsync. */
  private async appendBatch(wal: WalState, batch: PersistBatch): Promise<void> {
    const first = batch.entries[0];
    if (first !== undefined) checkAppend(wal.firstIndex, wal.nextIndex, batch.entries);
    if (batch.hardState === null && first === undefined) return;
    const record = this.encodeBatchRecord(batch.hardState, batch.entries);
    await this.writing('persisting a batch', async () => {
      if (wal.activeHasBatches && wal.activeSizeBytes + record.byteLength > this.options.segmentSizeBytes) await this.rollOver(wal, null, wal.hardState);
      await this.appendRecord(wal, record);
    });
    if (batch.hardState !== null) wal.hardState = batch.hardState;
    if (first !== undefined) this.noteEntries(wal, first.index, batch.entries.length);
  }

  /**
   * A snapshot from the leader replaces the snapshot and the whole log: a new segment resetting the
   * log after it (with the batch's hard state and entries) is made durable, then the snapshot file
   * is renamed into place naming that segment as its start — the commit point.
   */
  private async installSnapshot(wal: WalState, snapshot: Snapshot, batch: PersistBatch): Promise<void> {
    const snapshotIndex = snapshot.metadata.index;
    if (batch.entries.length > 0) checkAppend(snapshotIndex + 1, snapshotIndex + 1, batch.entries);
    this.checkSnapshotSize(snapshot);
    const hardState = batch.hardState ?? wal.hardState;
    const record = batch.entries.length > 0 ? this.encodeBatchRecord(null, batch.entries) : null;
    const obsolete = wal.segments.slice();
    await this.writing('installing a snapshot', async () => {
      const segment = await this.rollOver(wal, { index: snapshotIndex, term: snapshot.metadata.term }, hardState);
      if (record !== null) await this.appendRecord(wal, record);
      await this.writeSnapshotFile(snapshot, segment.sequence, snapshotIndex + 1);
    });
    wal.hardState = hardState;
    wal.snapshotMetadata = snapshot.metadata;
    wal.firstIndex = snapshotIndex + 1;
    wal.nextIndex = snapshotIndex + 1;
    wal.segments = wal.segments.filter((segment) => !obsolete.includes(segment));
    wal.walStartSequence = wal.segments[0]?.sequence ?? wal.walStartSequence;
    const first = batch.entries[0];
    if (first !== undefined) this.noteEntries(wal, first.index, batch.entries.length);
    await this.removeObsolete(obsolete);
  }

  /** `saveSnapshot`: the snapshot file first (the commit point), then the segments it made obsolete. */
  private async compact(wal: WalState, snapshot: Snapshot, compactIndex: LogIndex): Promise<void> {
    const newer = wal.snapshotMetadata === null || snapshot.metadata.index > wal.snapshotMetadata.index;
    // As MemoryStorage: entries up to compactIndex go, but never past the end of the log.
    const firstIndex = Math.max(wal.firstIndex, Math.min(wal.nextIndex, compactIndex + 1));
    // The oldest segment that may hold a live entry; the active one if none does.
    let keepFrom = wal.segments.findIndex((segment) => segment.maxIndexWritten >= firstIndex);
    if (keepFrom < 0) keepFrom = wal.segments.length - 1;
    const startSegment = wal.segments[keepFrom];
    invariant(startSegment !== undefined, 'no live segment');
    if (!newer && firstIndex === wal.firstIndex && startSegment.sequence === wal.walStartSequence) return;
    if (newer) this.checkSnapshotSize(snapshot);
    await this.writing('saving a snapshot', async () => {
      // An older snapshot than the stored one is not stored (as MemoryStorage), but the compaction is.
      const toStore = newer ? snapshot : (await this.readSnapshotFile())?.snapshot;
      invariant(toStore !== undefined, 'the stored snapshot vanished');
      await this.writeSnapshotFile(toStore, startSegment.sequence, firstIndex);
    });
    if (newer) wal.snapshotMetadata = snapshot.metadata;
    wal.firstIndex = firstIndex;
    wal.walStartSequence = startSegment.sequence;
    const obsolete = wal.segments.slice(0, keepFrom);
    wal.segments = wal.segments.slice(keepFrom);
    await this.removeObsolete(obsolete);
  }

  private noteEntries(wal: WalState, firstIndex: number, count: number): void {
    const lastIndex = firstIndex + count - 1;
    wal.nextIndex = lastIndex + 1;
    const active = wal.segments.at(-1);
    invariant(active !== undefined, 'no active segment');
    active.maxIndexWritten = Math.max(active.maxIndexWritten, lastIndex);
  }

  private encodeBatchRecord(hardState: HardState | null, entries: readonly Entry[]): Buffer {
    const payload = packr.pack([
      hardState === null ? null : hardStateFields(hardState),
      entries[0]?.index ?? 0,
      entries.map((entry) => [entry.term, entry.type, entry.data]),
    ]);
    if (payload.byteLength > this.options.maxRecordBytes) {
      throw new RaftLeaseError('StorageFailed', `a batch of ${entries.length} entries encodes to ${payload.byteLength} bytes, above maxRecordBytes (${this.options.maxRecordBytes}); raise maxRecordBytes or lower the Raft core's maxUncommittedBytes`);
    }
    return encodeRecord(RecordType.Batch, payload);
  }

  private checkSnapshotSize(snapshot: Snapshot): void {
    if (snapshot.data.byteLength > this.options.maxSnapshotBytes) {
      throw new RaftLeaseError('StorageFailed', `a snapshot of ${snapshot.data.byteLength} bytes is above maxSnapshotBytes (${this.options.maxSnapshotBytes})`);
    }
  }

  /**
   * Writes a record at the end of the active segment, durably: one `O_DSYNC` write (or a write and
   * `fdatasync`). A record that does not fit first extends the preallocated space, unless it is at
   * least a preallocation step itself: that one is written past the end (without `O_DSYNC`, then
   * fully fsynced, since the file size changes).
   */
  private async appendRecord(wal: WalState, record: Uint8Array): Promise<void> {
    const endBytes = wal.activeSizeBytes + record.byteLength;
    if (endBytes > wal.activeAllocatedBytes && record.byteLength < PREALLOCATION_STEP_BYTES) await this.preallocate(wal, endBytes);
    const growsFile = endBytes > wal.activeAllocatedBytes;
    await writeFully(wal.active, record, wal.activeSizeBytes);
    // O_DSYNC made the write durable with the file size it implies.
    if (SYNC_WRITE_FLAG === undefined) await (growsFile ? wal.active.sync() : wal.active.datasync());
    wal.activeAllocatedBytes = Math.max(wal.activeAllocatedBytes, endBytes);
    wal.activeSizeBytes = endBytes;
    wal.activeHasBatches = true;
  }

  /**
   * Extends the active segment with zeros to at least `endBytes` (to the next multiple of the
   * preallocation step, but not past the segment size unless the record needs it), durably, file size
   * included.
   */
  private async preallocate(wal: WalState, endBytes: number): Promise<void> {
    // To the next multiple of the step (the file then grows in whole steps).
    const nextStepBytes = (Math.floor(wal.activeAllocatedBytes / PREALLOCATION_STEP_BYTES) + 1) * PREALLOCATION_STEP_BYTES;
    const targetBytes = Math.max(endBytes, Math.min(nextStepBytes, this.options.segmentSizeBytes));
    // Bounded: each round writes up to one step of zeros; the target is at most a step past the end.
    for (let offset = wal.activeAllocatedBytes; offset < targetBytes; offset += PREALLOCATION_STEP_BYTES) {
      const length = Math.min(PREALLOCATION_STEP_BYTES, targetBytes - offset);
      await writeFully(wal.active, zeroBlock().subarray(0, length), offset);
    }
    // O_DSYNC made each write durable with the size it implies; without it, fsync for the size.
    if (SYNC_WRITE_FLAG === undefined) await wal.active.sync();
    wal.activeAllocatedBytes = targetBytes;
  }

  /** Cuts the preallocated zeros off the active segment (before it stops being the last one, or at close). */
  private async trimActive(wal: WalState): Promise<void> {
    if (wal.activeAllocatedBytes <= wal.activeSizeBytes) return;
    await wal.active.truncate(wal.activeSizeBytes);
    await wal.active.sync();
    wal.activeAllocatedBytes = wal.activeSizeBytes;
  }

  /** Starts a new active segment (durably: header fsynced, then the directory). */
  private async rollOver(wal: WalState, resetAfter: { index: number; term: number } | null, hardState: HardState): Promise<Segment> {
    const sequence = wal.nextSequence++;
    const previous = wal.segments.at(-1);
    invariant(previous !== undefined, 'no active segment');
    // Only the last segment may end in zeros (recovery refuses damage to any other), so the old one
    // loses its preallocated space before the new one exists.
    await this.trimActive(wal);
    const created = await this.createSegment(sequence, previous.sequence, resetAfter, hardState);
    const old = wal.active;
    const segment: Segment = { sequence, path: created.path, maxIndexWritten: 0 };
    wal.segments.push(segment);
    wal.active = created.handle;
    wal.activeSizeBytes = created.sizeBytes;
    wal.activeAllocatedBytes = created.sizeBytes;
    wal.activeHasBatches = false;
    await old.close();
    return segment;
  }

  private async createSegment(sequence: number, previousSequence: number, resetAfter: { index: number; term: number } | null, hardState: HardState): Promise<{ path: string; handle: FileHandle; sizeBytes: number }> {
    const path = join(this.walDirectory, segmentName(sequence));
    const header = encodeRecord(
      RecordType.SegmentHeader,
      packr.pack([FILE_STORAGE_FORMAT_VERSION, sequence, previousSequence, resetAfter === null ? null : [resetAfter.index, resetAfter.term], hardStateFields(hardState)]),
    );
    const handle = await open(path, activeSegmentFlags() | fsConstants.O_CREAT | fsConstants.O_EXCL);
    try {
      await writeFully(handle, header, 0);
      await handle.sync();
      await fsyncDirectory(this.walDirectory);
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    return { path, handle, sizeBytes: header.byteLength };
  }

  /** Writes the snapshot file: temporary file, fsync, rename over the old one, directory fsync. */
  private async writeSnapshotFile(snapshot: Snapshot, walStartSequence: number, firstLogIndex: number): Promise<void> {
    const payload = packr.pack([FILE_STORAGE_FORMAT_VERSION, encodeSnapshotMetadata(snapshot.metadata), walStartSequence, firstLogIndex, snapshot.data]);
    const header = recordHeader(RecordType.Snapshot, payload);
    const tmpPath = join(this.directory, SNAPSHOT_TMP_FILE);
    const handle = await open(tmpPath, 'w');
    try {
      await writeFully(handle, header, 0);
      await writeFully(handle, payload, header.byteLength);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmpPath, join(this.directory, SNAPSHOT_FILE));
    await fsyncDirectory(this.directory);
  }

  /** Reads and validates the snapshot file; null when there is none. */
  private async readSnapshotFile(): Promise<StoredSnapshot | null> {
    const path = join(this.directory, SNAPSHOT_FILE);
    let sizeBytes: number;
    try {
      sizeBytes = (await stat(path)).size;
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return null;
      throw new RaftLeaseError('StorageFailed', `cannot read ${path}: ${describe(error)}`, { cause: error });
    }
    const limitBytes = RECORD_HEADER_BYTES + this.options.maxSnapshotBytes + SNAPSHOT_OVERHEAD_BYTES;
    // Checked before reading, so a damaged or foreign file cannot make us allocate without bound.
    if (sizeBytes > limitBytes) throw corruption(path, 0, `the snapshot file is ${sizeBytes} bytes, above the ${limitBytes}-byte limit that maxSnapshotBytes (${this.options.maxSnapshotBytes}) allows`);
    const bytes = await readWholeFile(path);
    const read = readRecordAt(bytes, 0, bytes.length, SNAPSHOT_RECORD_TYPES);
    if (read.kind === 'invalid') throw corruption(path, 0, read.reason);
    if (read.endOffset !== bytes.length) throw corruption(path, read.endOffset, `${bytes.length - read.endOffset} unexpected bytes after the snapshot record`);
    const stored = decodeAt(path, 0, () => decodeSnapshotRecord(read.payload));
    if (stored.snapshot.data.byteLength > this.options.maxSnapshotBytes) {
      throw new RaftLeaseError('StorageFailed', `${path} holds a snapshot of ${stored.snapshot.data.byteLength} bytes, above maxSnapshotBytes (${this.options.maxSnapshotBytes})`);
    }
    return stored;
  }

  /** Deletes segments the snapshot file no longer names; a failure only leaves them for the next start. */
  private async removeObsolete(segments: readonly Segment[]): Promise<void> {
    for (const segment of segments) {
      try {
        await unlinkIfExists(segment.path);
      } catch (error) {
        this.logger.warn({ file: segment.path, err: error }, 'could not delete an obsolete segment; the next start removes it');
      }
    }
  }
}

/**
 * Replays entry records into one contiguous log. It starts either anchored (the segment resets the
 * log after a snapshot index: records must continue from there) or free (the oldest live segment of
 * a compacted log: the first record sets where the replayed log starts, and a record starting below
 * it replaces it, since what it overwrote lay in deleted segments).
 */
class LogReplay {
  private entries: Entry[] = [];
  /** Index of `entries[0]`; null until known. */
  private base: number | null = null;
  /** Lowest index a record may start at when anchored. */
  private floor: number | null = null;

  start(resetAfter: { readonly index: number } | null): void {
    if (resetAfter === null) return;
    this.base = resetAfter.index + 1;
    this.floor = resetAfter.index + 1;
  }

  /** Applies one record's entries; returns a description of the inconsistency, or null. */
  apply(firstIndex: number, entries: readonly Entry[]): string | null {
    if (this.base === null) {
      this.base = firstIndex;
      this.entries = entries.slice();
      return null;
    }
    const next = this.base + this.entries.length;
    if (firstIndex > next) return `entries start at index ${firstIndex}, leaving a gap after index ${next - 1}`;
    if (firstIndex < this.base) {
      if (this.floor !== null) return `entries start at index ${firstIndex}, before index ${this.floor} where the log restarted after a snapshot`;
      this.base = firstIndex;
      this.entries = entries.slice();
      return null;
    }
    this.entries.length = firstIndex - this.base;
    for (const entry of entries) this.entries.push(entry);
    return null;
  }

  /** The log from `firstIndex` on, or a description of why it cannot be. */
  finish(firstIndex: number): { entries: Entry[]; nextIndex: number } | string {
    if (this.base === null) return { entries: [], nextIndex: firstIndex };
    const nextIndex = this.base + this.entries.length;
    if (this.entries.length > 0 && this.base > firstIndex) return `the replayed log starts at index ${this.base}, but entries from ${firstIndex} should be stored: segments are missing`;
    if (nextIndex < firstIndex) return `the replayed log ends at index ${nextIndex - 1}, before its first index ${firstIndex}`;
    return { entries: this.entries.slice(Math.max(0, firstIndex - this.base)), nextIndex };
  }
}

/** The same checks as MemoryStorage: entries continue (or overwrite a suffix of) the stored log. */
function checkAppend(firstIndex: number, nextIndex: number, entries: readonly Entry[]): void {
  const first = entries[0];
  invariant(first !== undefined, 'checkAppend without entries');
  invariant(first.index <= nextIndex && first.index >= firstIndex, () => `persist would leave a gap: first index ${first.index}, stored ${firstIndex}..${nextIndex - 1}`);
  for (let position = 1; position < entries.length; position++) {
    const entry = entries[position];
    invariant(entry?.index === first.index + position, () => `persist batch is not contiguous at position ${position}`);
  }
}

function resolveOptions(options: FileStorageOptions): ResolvedOptions {
  const integerIn = (field: keyof ResolvedOptions, value: number | undefined, fallback: number, min: number, max: number): number => {
    const resolved = value ?? fallback;
    if (typeof resolved !== 'number' || !Number.isSafeInteger(resolved) || resolved < min || resolved > max) {
      throw new ConfigError(field, `must be an integer in [${min}, ${max}], got ${String(resolved)}`);
    }
    return resolved;
  };
  return {
    segmentSizeBytes: integerIn('segmentSizeBytes', options.segmentSizeBytes, DEFAULT_SEGMENT_SIZE_BYTES, MIN_SEGMENT_SIZE_BYTES, MAX_U32),
    maxRecordBytes: integerIn('maxRecordBytes', options.maxRecordBytes, DEFAULT_MAX_RECORD_BYTES, MIN_MAX_RECORD_BYTES, MAX_U32 - RECORD_HEADER_BYTES),
    maxSnapshotBytes: integerIn('maxSnapshotBytes', options.maxSnapshotBytes, DEFAULT_MAX_SNAPSHOT_BYTES, 1, MAX_U32 - RECORD_HEADER_BYTES - SNAPSHOT_OVERHEAD_BYTES),
  };
}

// ---------------------------------------------------------------------------------------------
// Records

/** CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zlib's `crc32`. */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let value = byte;
    for (let bit = 0; bit < 8; bit++) value = value & 1 ? 0xedb88320 ^ (value >>> 1) : value >>> 1;
    table[byte] = value >>> 0;
  }
  return table;
})();

/** CRC-32 of `bytes`, continuing from `previous` (the CRC of what came before). */
function crc32(bytes: Uint8Array, previous = 0): number {
  let crc = ~previous >>> 0;
  for (let position = 0; position < bytes.length; position++) {
    crc = (CRC_TABLE[(crc ^ (bytes[position] ?? 0)) & 0xff] ?? 0) ^ (crc >>> 8);
  }
  return ~crc >>> 0;
}

/** The 9-byte frame header of a record carrying `payload`. */
function recordHeader(type: RecordType, payload: Uint8Array): Buffer {
  invariant(payload.byteLength >= 1 && payload.byteLength <= MAX_U32 - RECORD_HEADER_BYTES, () => `record payload of ${payload.byteLength} bytes`);
  const header = Buffer.alloc(RECORD_HEADER_BYTES);
  header.writeUInt32LE(payload.byteLength, 4);
  header[8] = type;
  header.writeUInt32LE(crc32(payload, crc32(header.subarray(4))), 0);
  return header;
}

/** A whole record in one buffer, so that it is one write. */
function encodeRecord(type: RecordType, payload: Uint8Array): Buffer {
  return Buffer.concat([recordHeader(type, payload), payload]);
}

type RecordRead = { readonly kind: 'record'; readonly type: number; readonly payload: Buffer; readonly endOffset: number } | { readonly kind: 'invalid'; readonly reason: string };

/** Reads and checks the record at `offset`: its length against the limit first, then its checksum. */
function readRecordAt(bytes: Buffer, offset: number, maxPayloadBytes: number, types: readonly number[]): RecordRead {
  const remaining = bytes.length - offset;
  if (remaining < RECORD_HEADER_BYTES) return { kind: 'invalid', reason: `short record: ${remaining} bytes where a ${RECORD_HEADER_BYTES}-byte record header belongs` };
  const payloadBytes = bytes.readUInt32LE(offset + 4);
  if (payloadBytes > maxPayloadBytes) return { kind: 'invalid', reason: `record length ${payloadBytes} is above the ${maxPayloadBytes}-byte limit` };
  if (payloadBytes === 0) return { kind: 'invalid', reason: 'record length 0' };
  if (payloadBytes > remaining - RECORD_HEADER_BYTES) return { kind: 'invalid', reason: `short record: length ${payloadBytes} but ${remaining - RECORD_HEADER_BYTES} bytes follow the header` };
  const type = bytes[offset + 8] ?? 0;
  if (!types.includes(type)) return { kind: 'invalid', reason: `unknown record type ${type}` };
  const endOffset = offset + RECORD_HEADER_BYTES + payloadBytes;
  const stored = bytes.readUInt32LE(offset);
  const computed = crc32(bytes.subarray(offset + 4, endOffset));
  if (stored !== computed) return { kind: 'invalid', reason: `checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})` };
  return { kind: 'record', type, payload: bytes.subarray(offset + RECORD_HEADER_BYTES, endOffset), endOffset };
}

/**
 * Whether a valid record starts anywhere at or after `from`: what tells a torn tail (nothing valid
 * after the damage) from damage in the middle of the log (acknowledged records after it).
 */
function hasValidRecordAfter(bytes: Buffer, from: number, maxPayloadBytes: number, types: readonly number[]): boolean {
  for (let offset = from; offset + RECORD_HEADER_BYTES < bytes.length; offset++) {
    // Cheap tests first: most offsets fail on the type or the length before any checksum is computed.
    if (!types.includes(bytes[offset + 8] ?? 0)) continue;
    const payloadBytes = bytes.readUInt32LE(offset + 4);
    if (payloadBytes === 0 || payloadBytes > maxPayloadBytes || payloadBytes > bytes.length - offset - RECORD_HEADER_BYTES) continue;
    if (readRecordAt(bytes, offset, maxPayloadBytes, types).kind === 'record') return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Payloads

/** A payload that does not have the expected shape. */
class FormatError extends Error {}

function decodeAt<T>(path: string, offset: number, decode: () => T): T {
  try {
    return decode();
  } catch (error) {
    throw corruption(path, offset, `a record with a valid checksum does not decode: ${describe(error)}`, error);
  }
}

function unpackArray(payload: Uint8Array, what: string, unpacker: Unpackr = unpackr): unknown[] {
  let value: unknown;
  try {
    value = unpacker.unpack(payload);
  } catch (error) {
    throw new FormatError(`${what} is not valid msgpack (${describe(error)})`);
  }
  if (!Array.isArray(value)) throw new FormatError(`${what} is not an array`);
  return value;
}

function field(values: readonly unknown[], position: number, name: string): unknown {
  if (position >= values.length) throw new FormatError(`missing ${name}`);
  return values[position];
}

function integerField(values: readonly unknown[], position: number, name: string): number {
  const value = field(values, position, name);
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new FormatError(`${name} is not a non-negative safe integer`);
  return value;
}

function bytesField(values: readonly unknown[], position: number, name: string): Uint8Array {
  const value = field(values, position, name);
  if (!(value instanceof Uint8Array)) throw new FormatError(`${name} is not binary`);
  // A plain Uint8Array view (msgpackr returns Buffers), as callers of load() handed in.
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

function arrayField(values: readonly unknown[], position: number, name: string): readonly unknown[] {
  const value = field(values, position, name);
  if (!Array.isArray(value)) throw new FormatError(`${name} is not an array`);
  return value;
}

function checkLength(values: readonly unknown[], expected: number, what: string): void {
  if (values.length !== expected) throw new FormatError(`${what} has ${values.length} fields, expected ${expected}`);
}

function checkVersion(values: readonly unknown[], what: string): void {
  const version = integerField(values, 0, `${what} format version`);
  if (version !== FILE_STORAGE_FORMAT_VERSION) throw new FormatError(`${what} format version ${version}, expected ${FILE_STORAGE_FORMAT_VERSION}`);
}

function hardStateFields(hardState: HardState): unknown[] {
  return [hardState.term, hardState.vote, hardState.commit];
}

function decodeHardState(value: unknown): HardState {
  if (!Array.isArray(value)) throw new FormatError('hard state is not an array');
  checkLength(value, 3, 'hard state');
  const hardStateTerm = integerField(value, 0, 'hard state term') as Term;
  const vote: unknown = value[1];
  if (vote !== null && (typeof vote !== 'string' || vote.length === 0)) throw new FormatError('hard state vote is neither null nor a node id');
  const commit = integerField(value, 2, 'hard state commit') as LogIndex;
  return { term: hardStateTerm, vote: vote as NodeId | null, commit };
}

interface SegmentHeader {
  readonly sequence: number;
  readonly previousSequence: number;
  readonly resetAfter: { readonly index: number; readonly term: number } | null;
  readonly hardState: HardState;
}

function decodeSegmentHeader(payload: Uint8Array): SegmentHeader {
  const values = unpackArray(payload, 'segment header');
  checkLength(values, 5, 'segment header');
  checkVersion(values, 'segment header');
  const sequence = integerField(values, 1, 'sequence');
  const previousSequence = integerField(values, 2, 'previous sequence');
  const reset = field(values, 3, 'resetAfter');
  let resetAfter: SegmentHeader['resetAfter'] = null;
  if (reset !== null) {
    if (!Array.isArray(reset)) throw new FormatError('resetAfter is neither null nor an array');
    checkLength(reset, 2, 'resetAfter');
    resetAfter = { index: integerField(reset, 0, 'resetAfter index'), term: integerField(reset, 1, 'resetAfter term') };
  }
  return { sequence, previousSequence, resetAfter, hardState: decodeHardState(field(values, 4, 'hard state')) };
}

interface Batch {
  readonly hardState: HardState | null;
  readonly firstIndex: number;
  readonly entries: Entry[];
}

function decodeBatch(payload: Uint8Array): Batch {
  const values = unpackArray(payload, 'batch');
  checkLength(values, 3, 'batch');
  const hardStateValue = field(values, 0, 'hard state');
  const hardState = hardStateValue === null ? null : decodeHardState(hardStateValue);
  const firstIndex = integerField(values, 1, 'first index');
  const list = arrayField(values, 2, 'entries');
  if (list.length > 0 && firstIndex < 1) throw new FormatError('entries start at index 0');
  const entries: Entry[] = [];
  for (let position = 0; position < list.length; position++) {
    const fields = list[position];
    if (!Array.isArray(fields)) throw new FormatError(`entries[${position}] is not an array`);
    checkLength(fields, 3, `entries[${position}]`);
    const entryTerm = integerField(fields, 0, `entries[${position}].term`) as Term;
    const type = integerField(fields, 1, `entries[${position}].type`);
    if (type !== 0 && type !== 1 && type !== 2) throw new FormatError(`entries[${position}] has unknown type ${type}`);
    entries.push({ index: (firstIndex + position) as LogIndex, term: entryTerm, type, data: bytesField(fields, 2, `entries[${position}].data`) });
  }
  return { hardState, firstIndex, entries };
}

function decodeSnapshotRecord(payload: Uint8Array): StoredSnapshot {
  const values = unpackArray(payload, 'snapshot record', aliasingUnpackr);
  checkLength(values, 5, 'snapshot record');
  checkVersion(values, 'snapshot record');
  const metadata = decodeSnapshotMetadata(bytesField(values, 1, 'metadata'));
  const walStartSequence = integerField(values, 2, 'wal start sequence');
  const firstLogIndex = integerField(values, 3, 'first log index');
  if (walStartSequence < 1) throw new FormatError('wal start sequence 0');
  if (firstLogIndex < 1) throw new FormatError('first log index 0');
  return { snapshot: { metadata, data: bytesField(values, 4, 'data') }, walStartSequence, firstLogIndex };
}

// ---------------------------------------------------------------------------------------------
// Files

function segmentName(sequence: number): string {
  return `${String(sequence).padStart(20, '0')}.seg`;
}

function corruption(path: string, offset: number, reason: string, cause?: unknown): RaftLeaseError {
  return new RaftLeaseError(
    'StorageFailed',
    `${path} is corrupt at byte offset ${offset}: ${reason}. Refusing to start rather than lose acknowledged data; restore this node's data directory from a replica or a backup`,
    cause === undefined ? undefined : { cause },
  );
}

async function readWholeFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new RaftLeaseError('StorageFailed', `cannot read ${path}: ${describe(error)}`, { cause: error });
  }
}

/** Open flags of the active segment: read-write, and `O_DSYNC` where the platform has it. */
function activeSegmentFlags(): number {
  return fsConstants.O_RDWR | (SYNC_WRITE_FLAG ?? 0);
}

let zeros: Buffer | null = null;

/** One preallocation step of zeros, allocated once. */
function zeroBlock(): Buffer {
  zeros ??= Buffer.alloc(PREALLOCATION_STEP_BYTES);
  return zeros;
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let written = 0;
  // Bounded: each round writes at least one byte or throws.
  while (written < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.byteLength - written, position + written);
    if (bytesWritten <= 0) throw new Error(`write made no progress at byte ${position + written}`);
    written += bytesWritten;
  }
}

async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a directory's entries (created, renamed, removed files) durable. A no-op on Windows, which cannot. */
async function fsyncDirectory(path: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return false;
    throw new RaftLeaseError('StorageFailed', `cannot stat ${path}: ${describe(error)}`, { cause: error });
  }
}

async function unlinkIfExists(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if (errorCode(error) !== 'ENOENT') throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Lock

async function acquireLock(directory: string, logger: Logger): Promise<void> {
  const lockPath = join(directory, LOCK_FILE);
  // Linked into place complete, so a LOCK file never exists without its pid.
  const candidatePath = join(directory, `${LOCK_FILE}.${process.pid}.${randomUUID()}.tmp`);
  try {
    await writeFile(candidatePath, `${process.pid}\n`);
    for (let attempt = 1; attempt <= MAX_LOCK_ATTEMPTS; attempt++) {
      try {
        await link(candidatePath, lockPath);
        return;
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw error;
      }
      const owner = await readLockOwner(lockPath);
      if (owner === null) continue; // Released between our attempt and the read: try again.
      if (processIsAlive(owner)) {
        throw new RaftLeaseError('StorageFailed', `data directory ${directory} is in use by process ${owner} (lock file ${lockPath})`);
      }
      logger.warn({ file: lockPath, pid: owner }, 'taking over a stale lock left by a process that is gone');
      await unlinkIfExists(lockPath);
    }
    throw new RaftLeaseError('StorageFailed', `could not take the lock ${lockPath} in ${MAX_LOCK_ATTEMPTS} attempts: other processes keep taking it`);
  } catch (error) {
    if (error instanceof RaftLeaseError) throw error;
    throw new RaftLeaseError('StorageFailed', `cannot lock data directory ${directory}: ${describe(error)}`, { cause: error });
  } finally {
    await unlinkIfExists(candidatePath).catch(() => undefined);
  }
}

/** The pid in a lock file, or null if the file is gone. */
async function readLockOwner(lockPath: string): Promise<number | null> {
  let text: string;
  try {
    text = await readFile(lockPath, 'utf8');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return null;
    throw error;
  }
  const trimmed = text.trim();
  const pid = Number(trimmed);
  if (!/^\d+$/.test(trimmed) || !Number.isSafeInteger(pid) || pid < 1) {
    throw new RaftLeaseError('StorageFailed', `lock file ${lockPath} does not hold a pid; if no raftlease process uses the directory, remove it`);
  }
  return pid;
}

function processIsAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return errorCode(error) === 'EPERM';
  }
}

async function releaseLock(directory: string): Promise<void> {
  try {
    await unlinkIfExists(join(directory, LOCK_FILE));
  } catch (error) {
    throw new RaftLeaseError('StorageFailed', `cannot remove the lock file of ${directory}: ${describe(error)}`, { cause: error });
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  const code = error.code;
  return typeof code === 'string' ? code : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}
