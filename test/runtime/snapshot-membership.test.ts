/**
 * Snapshots (log compaction, restart from a snapshot, InstallSnapshot to a lagging follower, crash
 * consistency of what storage returns at load) and membership changes of the runtime `RaftNode`.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  EntryType,
  ManualClock,
  MemoryNetwork,
  MemoryStorage,
  RaftLeaseError,
  RaftNode,
  nodeId,
  type Entry,
  type HardState,
  type LogIndex,
  type Message,
  type PersistBatch,
  type PersistentState,
  type RaftNodeOptions,
  type Snapshot,
  type SnapshotMetadata,
  type StateMachine,
  type Storage,
  type Term,
} from '../../src/index.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (value: string): Uint8Array => encoder.encode(value);

type Pair = readonly [index: number, command: string];

/** What the state machine looked like when `snapshot()` was called. */
interface SnapshotCall {
  readonly state: Pair[];
  readonly data: Uint8Array;
  /** Applies that were started but not finished at that moment. */
  readonly appliesInFlight: number;
  /** The node's own applied index at that moment (null before the node is attached). */
  readonly nodeAppliedIndex: number | null;
}

interface RestoreCall {
  readonly data: Uint8Array;
  readonly metadata: SnapshotMetadata;
  /** How many `apply` calls this state machine had seen before the restore. */
  readonly appliesBefore: number;
  readonly state: Pair[];
}

/**
 * A state machine whose state is the list of (index, command) it applied. A snapshot is that list as
 * JSON. Optionally asynchronous: `apply` then settles a microtask later, so the runtime's async
 * apply path is exercised (and `snapshot()` can be checked not to run while an apply is pending).
 */
class ListMachine implements StateMachine<string> {
  state: Pair[] = [];
  applyCount = 0;
  appliesInFlight = 0;
  readonly snapshotCalls: SnapshotCall[] = [];
  readonly restoreCalls: RestoreCall[] = [];
  /** Set after start, to look at the node from inside `snapshot()`. */
  node: RaftNode<string> | null = null;

  constructor(private readonly asyncApply = false) {}

  apply(command: Uint8Array, index: LogIndex): string | Promise<string> {
    this.applyCount++;
    const commandText = decoder.decode(command);
    const finish = (): string => {
      this.state.push([index, commandText]);
      return `${index}:${commandText}`;
    };
    if (!this.asyncApply) return finish();
    this.appliesInFlight++;
    return Promise.resolve().then(() => {
      this.appliesInFlight--;
      return finish();
    });
  }

  snapshot(): Uint8Array {
    const data = encodeState(this.state);
    this.snapshotCalls.push({ state: this.state.slice(), data, appliesInFlight: this.appliesInFlight, nodeAppliedIndex: this.node?.status().appliedIndex ?? null });
    return data;
  }

  restore(data: Uint8Array, metadata: SnapshotMetadata): void {
    this.restoreCalls.push({ data, metadata, appliesBefore: this.applyCount, state: decodeState(data) });
    this.state = decodeState(data);
  }

  commands(): string[] {
    return this.state.map(([, command]) => command);
  }
}

function encodeState(state: readonly Pair[]): Uint8Array {
  return encoder.encode(JSON.stringify(state));
}

function decodeState(data: Uint8Array): Pair[] {
  return JSON.parse(decoder.decode(data)) as Pair[];
}

/** A MemoryStorage that records the snapshots it is asked to store. */
class RecordingStorage extends MemoryStorage {
  readonly savedSnapshots: { readonly snapshot: Snapshot; readonly compactIndex: LogIndex }[] = [];
  readonly installedSnapshots: Snapshot[] = [];

  override saveSnapshot(snapshot: Snapshot, compactIndex: LogIndex): Promise<void> {
    this.savedSnapshots.push({ snapshot, compactIndex });
    return super.saveSnapshot(snapshot, compactIndex);
  }

  override persist(batch: PersistBatch): Promise<void> {
    if (batch.snapshot !== null) this.installedSnapshots.push(batch.snapshot);
    return super.persist(batch);
  }
}

type NodeOverrides = Partial<Omit<RaftNodeOptions<string>, 'id' | 'transport' | 'storage' | 'clock' | 'stateMachine'>>;

/** RaftNodes on one ManualClock and one MemoryNetwork (with the wire codec, as a real transport). */
class Harness {
  readonly clock = new ManualClock();
  readonly network = new MemoryNetwork({ encode: true });
  readonly nodes = new Map<string, RaftNode<string>>();
  readonly storages = new Map<string, RecordingStorage>();
  readonly machines = new Map<string, ListMachine>();
  readonly fatalErrors: Error[] = [];
  /** InstallSnapshot messages seen on the wire, by receiver. */
  readonly snapshotChunks: Message[] = [];

  constructor(readonly defaults: NodeOverrides = {}) {
    // Watch the wire for snapshot chunks without changing delivery.
    const deliver = this.network.deliver.bind(this.network);
    this.network.deliver = (message: Message): void => {
      if (message.type === 'InstallSnapshot') this.snapshotChunks.push(message);
      deliver(message);
    };
  }

  /** Starts (or restarts, on its kept storage) node `id` with a fresh state machine. */
  async start(id: string, voters: readonly string[], overrides: NodeOverrides & { readonly machine?: ListMachine } = {}): Promise<RaftNode<string>> {
    const storage = this.storages.get(id) ?? new RecordingStorage();
    this.storages.set(id, storage);
    const { machine = new ListMachine(), ...rest } = overrides;
    this.machines.set(id, machine);
    const node = await RaftNode.start<string>({
      id,
      voters,
      transport: this.network.connect(nodeId(id)),
      storage,
      clock: this.clock,
      stateMachine: machine,
      seed: 1000 + Number(id.replace(/\D/g, '')),
      onFatalError: (error) => this.fatalErrors.push(error),
      ...this.defaults,
      ...rest,
    });
    machine.node = node;
    this.nodes.set(id, node);
    return node;
  }

  node(id: string): RaftNode<string> {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  machine(id: string): ListMachine {
    const machine = this.machines.get(id);
    if (machine === undefined) throw new Error(`no state machine for ${id}`);
    return machine;
  }

  storage(id: string): RecordingStorage {
    const storage = this.storages.get(id);
    if (storage === undefined) throw new Error(`no storage for ${id}`);
    return storage;
  }

  leaders(): RaftNode<string>[] {
    return [...this.nodes.values()].filter((node) => node.status().role === 'Leader');
  }

  /** Advances virtual time until exactly one leader exists among `among` (bounded). */
  async waitForLeader(among: readonly string[] = [...this.nodes.keys()], maxMs = 10_000): Promise<RaftNode<string>> {
    for (let waited = 0; waited <= maxMs; waited += 100) {
      const leaders = this.leaders().filter((node) => among.includes(node.id));
      const [only] = leaders;
      if (only !== undefined && leaders.length === 1) return only;
      await this.clock.advance(100);
    }
    throw new Error(`no leader among ${among.join(', ')} within ${maxMs} ms of virtual time`);
  }

  /** Advances virtual time in small steps until `condition` holds (bounded). */
  async until(condition: () => boolean, what: string, maxMs = 10_000): Promise<void> {
    for (let waited = 0; !condition(); waited += 10) {
      if (waited >= maxMs) throw new Error(`${what}: not within ${maxMs} ms of virtual time`);
      await this.clock.advance(10);
    }
  }

  /** Resolves `promise` while advancing virtual time in steps (bounded); rethrows its rejection. */
  async settle<T>(promise: Promise<T>, maxMs = 10_000): Promise<T> {
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    promise.then(
      (value) => (outcome = { ok: true, value }),
      (error: unknown) => (outcome = { ok: false, error }),
    );
    await this.until(() => outcome !== undefined, 'promise did not settle', maxMs);
    if (outcome === undefined) throw new Error('unreachable');
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  /** Proposes `commands` on `node` in one burst and waits for all of them. */
  async proposeAll(node: RaftNode<string>, commands: readonly string[]): Promise<void> {
    const results = await this.settle(Promise.all(commands.map((command) => node.propose(text(command)))));
    results.forEach((applied, position) => {
      expect(applied.result).toBe(`${applied.index}:${commands[position] ?? ''}`);
    });
  }

  async stopAll(): Promise<void> {
    for (const node of this.nodes.values()) await node.stop({ transferLeadership: false });
  }
}

const commandsFrom = (prefix: string, count: number, first = 1): string[] => Array.from({ length: count }, (_, position) => `${prefix}${first + position}`);

let harness: Harness | undefined;
afterEach(async () => {
  const current = harness;
  harness = undefined;
  if (current === undefined) return;
  await current.stopAll();
  expect(current.fatalErrors).toEqual([]);
});


const SMALL_SNAPSHOTS = { intervalEntries: 10, trailingEntries: 3 } as const;
const THREE = ['n1', 'n2', 'n3'];

/** Starts n1..n3 and returns a leader that has committed an entry of its term (so it may change membership). */
async function startThree(h: Harness, overrides: NodeOverrides & { readonly asyncApply?: boolean } = {}): Promise<RaftNode<string>> {
  const { asyncApply = false, ...rest } = overrides;
  for (const id of THREE) await h.start(id, THREE, { ...rest, machine: new ListMachine(asyncApply) });
  const leader = await h.waitForLeader();
  await h.proposeAll(leader, ['warm-up']);
  return leader;
}

function followersOf(h: Harness, leader: RaftNode<string>): RaftNode<string>[] {
  return [...h.nodes.values()].filter((node) => node !== leader && node.status().role === 'Follower');
}

function first<T>(values: readonly T[]): T {
  const [value] = values;
  if (value === undefined) throw new Error('empty');
  return value;
}

describe('snapshot policy', () => {
  it('snapshots every 10 applied entries, between applies, and trims the stored log to the trailing entries', async () => {
    harness = new Harness({ snapshots: SMALL_SNAPSHOTS });
    const h = harness;
    // Asynchronous applies: a snapshot must still never be taken while one is in progress.
    for (const id of THREE) await h.start(id, THREE, { machine: new ListMachine(true) });
    const leader = await h.waitForLeader();
    const commands = commandsFrom('c', 50);
    const statusSnapshotIndexes: number[] = [];
    for (let batch = 0; batch < 5; batch++) {
      await h.proposeAll(leader, commands.slice(batch * 10, batch * 10 + 10));
      statusSnapshotIndexes.push(leader.status().snapshotIndex);
    }
    const last = leader.status().lastIndex;
    await h.until(() => THREE.every((id) => h.node(id).status().appliedIndex === last), 'every node applies everything');
    // status().snapshotIndex advances as the leader compacts.
    for (let position = 1; position < statusSnapshotIndexes.length; position++) {
      expect(statusSnapshotIndexes[position]).toBeGreaterThan(statusSnapshotIndexes[position - 1] ?? Number.POSITIVE_INFINITY);
    }

    for (const id of THREE) {
      const node = h.node(id);
      const machine = h.machine(id);
      const storage = h.storage(id);
      const status = node.status();
      expect(machine.commands()).toEqual(commands);
      const saved = storage.savedSnapshots;
      // 51 entries (a no-op and 50 commands), one snapshot per 10 applied.
      expect(saved.length).toBeGreaterThanOrEqual(4);
      expect(machine.snapshotCalls).toHaveLength(saved.length);
      let previousIndex = 0;
      saved.forEach(({ snapshot, compactIndex }, position) => {
        const { index } = snapshot.metadata;
        expect(index - previousIndex).toBeGreaterThanOrEqual(SMALL_SNAPSHOTS.intervalEntries);
        previousIndex = index;
        expect(compactIndex).toBe(Math.max(0, index - SMALL_SNAPSHOTS.trailingEntries));
        expect(snapshot.metadata.membership).toEqual({ voters: THREE, learners: [] });
        expect(snapshot.metadata.term).toBe(status.term);
        // snapshot() ran between applies: nothing in flight, the node had applied exactly the snapshot's
        // index, and the state it serialized is everything applied up to that index.
        const call = machine.snapshotCalls[position];
        expect(call?.appliesInFlight).toBe(0);
        expect(call?.nodeAppliedIndex).toBe(index);
        expect(call?.data).toBe(snapshot.data);
        expect(call?.state).toEqual(machine.state.filter(([applied]) => applied <= index));
        expect(decodeState(snapshot.data)).toEqual(machine.state.filter(([applied]) => applied <= index));
      });
      const latest = saved.at(-1)?.snapshot;
      const stored = storage.contents();
      expect(stored.snapshot).toBe(latest);
      const snapshotIndex = latest?.metadata.index ?? 0;
      // The stored log starts at most `trailingEntries` before the snapshot and runs to the last entry.
      const firstStored = stored.entries[0]?.index ?? 0;
      expect(firstStored).toBeGreaterThanOrEqual(snapshotIndex - SMALL_SNAPSHOTS.trailingEntries + 1);
      expect(firstStored).toBeLessThanOrEqual(snapshotIndex + 1);
      expect(stored.entries.map((entry) => entry.index)).toEqual(range(firstStored, status.lastIndex));
      expect(stored.entries.length).toBeLessThan(SMALL_SNAPSHOTS.intervalEntries + SMALL_SNAPSHOTS.trailingEntries + 1);
      // The status reports a compaction point within the trailing window of the newest snapshot.
      expect(status.snapshotIndex).toBeGreaterThanOrEqual(snapshotIndex - SMALL_SNAPSHOTS.trailingEntries);
      expect(status.snapshotIndex).toBeLessThanOrEqual(snapshotIndex);
    }
  });

  it('a snapshot is also due after intervalBytes of payload, whatever the entry count', async () => {
    harness = new Harness({ snapshots: { intervalEntries: 1_000, intervalBytes: 100, trailingEntries: 0 } });
    const h = harness;
    const leader = await startThree(h);
    await h.proposeAll(leader, ['x'.repeat(60), 'y'.repeat(60)]);
    await h.proposeAll(leader, ['z']);
    const saved = h.storage(leader.id).savedSnapshots;
    expect(saved.map(({ snapshot }) => decodeState(snapshot.data).map(([, command]) => command.slice(0, 1)))).toEqual([['w', 'x', 'y']]);
    // trailingEntries 0: the log is compacted right up to the snapshot.
    const snapshotIndex = first(saved).snapshot.metadata.index;
    expect(first(saved).compactIndex).toBe(snapshotIndex);
    expect(h.storage(leader.id).contents().entries[0]?.index).toBe(snapshotIndex + 1);
  });

  it('rejects invalid policies with a ConfigError naming the field', async () => {
    const attempt = (snapshots: RaftNodeOptions<string>['snapshots'], stateMachine: StateMachine<string> = new ListMachine()): Promise<RaftNode<string>> =>
      RaftNode.start<string>({
        id: 'n1',
        voters: ['n1'],
        transport: new MemoryNetwork().connect(nodeId('n1')),
        storage: new MemoryStorage(),
        clock: new ManualClock(),
        stateMachine,
        ...(snapshots === undefined ? {} : { snapshots }),
      });
    await expect(attempt({ intervalEntries: 0 })).rejects.toMatchObject({ code: 'InvalidConfig', field: 'snapshots.intervalEntries' });
    await expect(attempt({ intervalBytes: 1.5 })).rejects.toMatchObject({ field: 'snapshots.intervalBytes' });
    await expect(attempt({ trailingEntries: -1 })).rejects.toMatchObject({ field: 'snapshots.trailingEntries' });
    await expect(attempt({ intervalEntries: Number.NaN })).rejects.toMatchObject({ field: 'snapshots.intervalEntries' });
    await expect(attempt({}, { apply: () => '' })).rejects.toMatchObject({ field: 'snapshots' });
    await expect(attempt({}, { apply: () => '', snapshot: () => new Uint8Array() })).rejects.toBeInstanceOf(ConfigError);
    // Without a policy, a state machine lacking snapshot()/restore() is fine; so is `false`.
    const plain = await attempt(undefined, { apply: () => '' });
    await plain.stop();
    const disabled = await attempt(false, { apply: () => '' });
    await disabled.stop();
  });
});

function range(from: number, to: number): number[] {
  return Array.from({ length: Math.max(0, to - from + 1) }, (_, position) => from + position);
}

describe('restart from a snapshot', () => {
  it('restores the state machine once from the stored snapshot before any apply, then re-applies only the entries after it', async () => {
    harness = new Harness({ snapshots: SMALL_SNAPSHOTS });
    const h = harness;
    const leader = await startThree(h);
    // Four rounds of 10 commands, each replicated everywhere before the next, then 4 more: every node
    // snapshots at the end of each round and holds the last 4 entries only in its log.
    const commands = ['warm-up', ...commandsFrom('c', 44)];
    for (let round = 0; round < 5; round++) {
      await h.proposeAll(leader, commands.slice(1 + round * 10, 11 + round * 10));
      const roundEnd = leader.status().lastIndex;
      await h.until(() => THREE.every((id) => h.node(id).status().appliedIndex === roundEnd), 'every node applies the round');
    }
    const last = leader.status().lastIndex;
    const victim = first(followersOf(h, leader)).id;
    const before = h.node(victim).status();
    const storedSnapshot = h.storage(victim).contents().snapshot;
    if (storedSnapshot === null || storedSnapshot === undefined) throw new Error('the follower stored no snapshot');
    const snapshotIndex = storedSnapshot.metadata.index;
    expect(snapshotIndex).toBeLessThan(last);
    await h.node(victim).stop();

    const fresh = new ListMachine();
    const restarted = await h.start(victim, THREE, { machine: fresh });
    expect(fresh.restoreCalls).toHaveLength(1);
    const restoreCall = first(fresh.restoreCalls);
    expect(restoreCall.appliesBefore).toBe(0);
    expect(restoreCall.metadata).toEqual(storedSnapshot.metadata);
    expect(decoder.decode(restoreCall.data)).toBe(decoder.decode(storedSnapshot.data));
    // Right after start, the node stands at the snapshot: nothing after it is applied yet.
    expect(restarted.status().appliedIndex).toBe(snapshotIndex);
    expect(restarted.status().lastIndex).toBe(before.lastIndex);
    expect(restarted.status().term).toBe(before.term);
    expect(fresh.applyCount).toBe(0);

    await h.until(() => restarted.status().appliedIndex === last, 'the restarted node re-applies its log');
    expect(fresh.commands()).toEqual(commands);
    expect(fresh.state).toEqual(h.machine(leader.id).state);
    // Only the entries after the snapshot went through apply().
    expect(fresh.applyCount).toBe(h.machine(leader.id).state.filter(([index]) => index > snapshotIndex).length);

    await h.proposeAll(leader, ['after-restart-1', 'after-restart-2']);
    await h.until(() => restarted.status().appliedIndex === leader.status().lastIndex, 'the restarted node applies new entries');
    expect(fresh.commands().slice(-2)).toEqual(['after-restart-1', 'after-restart-2']);
    expect(fresh.state).toEqual(h.machine(leader.id).state);
  });
});

describe('InstallSnapshot to a follower the leader compacted past', () => {
  it('a cut-off follower receives the snapshot in many 16-byte chunks, restores it, catches up and applies new entries', async () => {
    harness = new Harness({ snapshots: SMALL_SNAPSHOTS, raft: { maxSnapshotChunkBytes: 16 } });
    const h = harness;
    const leader = await startThree(h);
    const lagging = first(followersOf(h, leader));
    const laggingMachine = h.machine(lagging.id);
    const lastBefore = lagging.status().lastIndex;
    h.network.isolate([lagging.id], THREE.filter((id) => id !== lagging.id).map(nodeId));
    await h.proposeAll(leader, commandsFrom('c', 30));
    // The leader compacted past everything the lagging follower holds.
    expect(leader.status().snapshotIndex).toBeGreaterThan(lastBefore + 1);
    expect(lagging.status().lastIndex).toBe(lastBefore);
    expect(laggingMachine.restoreCalls).toEqual([]);

    h.network.heal();
    await h.until(() => lagging.status().appliedIndex === leader.status().lastIndex, 'the lagging follower catches up');
    expect(laggingMachine.restoreCalls).toHaveLength(1);
    const restoreCall = first(laggingMachine.restoreCalls);
    const leaderSnapshot = h.storage(leader.id).savedSnapshots.find(({ snapshot }) => snapshot.metadata.index === restoreCall.metadata.index)?.snapshot;
    if (leaderSnapshot === undefined) throw new Error(`the leader took no snapshot at ${restoreCall.metadata.index}`);
    expect(restoreCall.metadata).toEqual(leaderSnapshot.metadata);
    expect(decoder.decode(restoreCall.data)).toBe(decoder.decode(leaderSnapshot.data));
    // The follower stored the snapshot it installed, replacing its log.
    expect(h.storage(lagging.id).installedSnapshots.map((snapshot) => snapshot.metadata)).toEqual([leaderSnapshot.metadata]);

    // The transfer took many chunks of at most 16 bytes, covering the snapshot contiguously.
    const chunks = h.snapshotChunks.filter((message) => message.to === lagging.id && message.type === 'InstallSnapshot');
    const total = leaderSnapshot.data.byteLength;
    expect(total).toBeGreaterThan(16 * 4);
    expect(chunks.length).toBeGreaterThanOrEqual(Math.ceil(total / 16));
    let covered = 0;
    for (const chunk of chunks) {
      if (chunk.type !== 'InstallSnapshot') continue;
      expect(chunk.data.byteLength).toBeLessThanOrEqual(16);
      expect(chunk.totalBytes).toBe(total);
      expect(chunk.offset).toBeLessThanOrEqual(covered);
      covered = Math.max(covered, chunk.offset + chunk.data.byteLength);
    }
    expect(covered).toBe(total);
    expect(chunks.filter((chunk) => chunk.type === 'InstallSnapshot' && chunk.done)).not.toHaveLength(0);

    // It applied the entries after the snapshot and holds the leader's state.
    expect(laggingMachine.state).toEqual(h.machine(leader.id).state);
    await h.proposeAll(leader, ['after-install']);
    await h.until(() => lagging.status().appliedIndex === leader.status().lastIndex, 'the follower applies new entries');
    expect(laggingMachine.commands().at(-1)).toBe('after-install');
    expect(laggingMachine.state).toEqual(h.machine(leader.id).state);
  });

  it('a follower that was down while the leader compacted gets the snapshot when it restarts, and keeps it across another restart', async () => {
    harness = new Harness({ snapshots: SMALL_SNAPSHOTS });
    const h = harness;
    const leader = await startThree(h);
    const down = first(followersOf(h, leader)).id;
    await h.node(down).stop();
    await h.proposeAll(leader, commandsFrom('c', 25));
    expect(h.storage(down).contents().snapshot ?? null).toBeNull();

    const machine = new ListMachine();
    const restarted = await h.start(down, THREE, { machine });
    expect(machine.restoreCalls).toEqual([]);
    await h.until(() => restarted.status().appliedIndex === leader.status().lastIndex, 'the restarted follower catches up');
    expect(machine.restoreCalls).toHaveLength(1);
    expect(first(machine.restoreCalls).appliesBefore).toBe(machine.applyCount - machine.state.filter(([index]) => index > first(machine.restoreCalls).metadata.index).length);
    expect(machine.state).toEqual(h.machine(leader.id).state);
    const installed = h.storage(down).contents().snapshot;
    expect(installed?.metadata).toEqual(first(machine.restoreCalls).metadata);

    // The installed snapshot is durable: a second restart restores from it without the leader.
    await restarted.stop();
    const again = new ListMachine();
    const second = await h.start(down, THREE, { machine: again });
    expect(again.restoreCalls.map((call) => call.metadata)).toEqual([installed?.metadata]);
    await h.proposeAll(leader, ['after-second-restart']);
    await h.until(() => second.status().appliedIndex === leader.status().lastIndex, 'the follower applies new entries');
    expect(again.state).toEqual(h.machine(leader.id).state);
  });
});

/**
 * A Storage that starts from arbitrary contents (what a crash left behind) and then follows the
 * documented semantics: a batch with a snapshot replaces the snapshot and the whole log; otherwise
 * entries replace the stored suffix from `entries[0].index` (or are appended); `saveSnapshot`
 * discards entries up to `compactIndex`.
 */
class ScriptedStorage implements Storage {
  readonly batches: PersistBatch[] = [];
  readonly savedSnapshots: { readonly snapshot: Snapshot; readonly compactIndex: LogIndex }[] = [];
  private hardState: HardState;
  private snapshot: Snapshot | null;
  private entries: Entry[];

  constructor(initial: PersistentState) {
    this.hardState = initial.hardState;
    this.snapshot = initial.snapshot ?? null;
    this.entries = initial.entries.slice();
  }

  load(): Promise<PersistentState> {
    return Promise.resolve(this.contents());
  }

  persist(batch: PersistBatch): Promise<void> {
    this.batches.push(batch);
    if (batch.snapshot !== null) {
      this.snapshot = batch.snapshot;
      this.entries = [];
    }
    const firstNew = batch.entries[0];
    if (firstNew !== undefined) this.entries = [...this.entries.filter((stored) => stored.index < firstNew.index), ...batch.entries];
    if (batch.hardState !== null) this.hardState = batch.hardState;
    return Promise.resolve();
  }

  saveSnapshot(snapshot: Snapshot, compactIndex: LogIndex): Promise<void> {
    this.savedSnapshots.push({ snapshot, compactIndex });
    if (this.snapshot === null || snapshot.metadata.index > this.snapshot.metadata.index) this.snapshot = snapshot;
    this.entries = this.entries.filter((stored) => stored.index > compactIndex);
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  contents(): PersistentState {
    return { hardState: this.hardState, snapshot: this.snapshot, entries: this.entries.slice() };
  }
}

const entry = (index: number, entryTerm: number, command: string): Entry => ({ index: index as LogIndex, term: entryTerm as Term, type: EntryType.Normal, data: text(command) });
const hardState = (currentTerm: number, commit: number): HardState => ({ term: currentTerm as Term, vote: nodeId('solo'), commit: commit as LogIndex });

describe('what storage returns at load is made consistent with its snapshot', () => {
  // The snapshot covers indexes 1..5 (term 2): the state after applying a..e.
  const snapshotState: Pair[] = [[1, 'a'], [2, 'b'], [3, 'c'], [4, 'd'], [5, 'e']];
  const snapshot: Snapshot = {
    metadata: { index: 5 as LogIndex, term: 2 as Term, membership: { voters: [nodeId('solo')], learners: [] } },
    data: encodeState(snapshotState),
  };
  const clock = new ManualClock();

  async function startSolo(storage: Storage, machine: StateMachine<string>): Promise<RaftNode<string>> {
    return RaftNode.start<string>({
      id: 'solo',
      voters: ['solo'],
      transport: new MemoryNetwork().connect(nodeId('solo')),
      storage,
      clock,
      stateMachine: machine,
      seed: 5,
      snapshots: false,
      onFatalError: (error) => {
        throw error;
      },
    });
  }

  /** Lets the node apply what it has committed, then become leader of its one-node cluster and commit its log. */
  async function leadAndCommit(node: RaftNode<string>): Promise<void> {
    for (let waited = 0; node.status().role !== 'Leader' || node.status().appliedIndex < node.status().lastIndex; waited += 100) {
      if (waited > 10_000) throw new Error('the single node did not lead and commit');
      await clock.advance(100);
    }
  }

  it('(a) keeps stored entries that still include the snapshot index with the same term, and skips the covered ones', async () => {
    const storage = new ScriptedStorage({ hardState: hardState(2, 7), snapshot, entries: [entry(3, 1, 'c'), entry(4, 2, 'd'), entry(5, 2, 'e'), entry(6, 2, 'f'), entry(7, 2, 'g'), entry(8, 2, 'h')] });
    const machine = new ListMachine();
    const node = await startSolo(storage, machine);
    expect(machine.restoreCalls.map((call) => [call.metadata, call.appliesBefore])).toEqual([[snapshot.metadata, 0]]);
    expect(node.status()).toMatchObject({ lastIndex: 8, appliedIndex: 5, commitIndex: 7, snapshotIndex: 5 });
    // The first pass applies the entries committed before the crash, from right after the snapshot.
    await clock.advance(100);
    expect(machine.state).toEqual([...snapshotState, [6, 'f'], [7, 'g']]);
    await leadAndCommit(node);
    expect(machine.state).toEqual([...snapshotState, [6, 'f'], [7, 'g'], [8, 'h']]);
    await node.stop();
  });

  it('(b) drops old entries whose entry at the snapshot index has another term: the log continues right after the snapshot', async () => {
    // A crash interrupted the write of a snapshot from the leader: the snapshot is there, the old
    // (conflicting, uncommitted) log was not discarded yet.
    const storage = new ScriptedStorage({ hardState: hardState(2, 3), snapshot, entries: [1, 2, 3, 4, 5, 6, 7].map((index) => entry(index, 1, `old-${index}`)) });
    const machine = new ListMachine();
    const node = await startSolo(storage, machine);
    expect(machine.restoreCalls.map((call) => [call.metadata, call.appliesBefore])).toEqual([[snapshot.metadata, 0]]);
    expect(node.status()).toMatchObject({ lastIndex: 5, appliedIndex: 5, commitIndex: 5, snapshotIndex: 5 });
    await leadAndCommit(node);
    // Nothing of the old log was applied; the new leader's no-op went right after the snapshot.
    expect(machine.state).toEqual(snapshotState);
    expect(node.status().lastIndex).toBe(6);
    expect(storage.batches.flatMap((batch) => batch.entries.map((stored) => [stored.index, stored.type]))).toEqual([[6, EntryType.Noop]]);
    const applied = await settleOn(clock, node.propose(text('new')));
    expect(applied).toEqual({ index: 7, result: '7:new' });
    expect(machine.state).toEqual([...snapshotState, [7, 'new']]);
    await node.stop();
  });

  it('(b′) drops stored entries that end before the snapshot', async () => {
    const storage = new ScriptedStorage({ hardState: hardState(1, 2), snapshot, entries: [entry(1, 1, 'a'), entry(2, 1, 'b'), entry(3, 1, 'stale')] });
    const machine = new ListMachine();
    const node = await startSolo(storage, machine);
    expect(node.status()).toMatchObject({ lastIndex: 5, appliedIndex: 5 });
    await leadAndCommit(node);
    expect(machine.state).toEqual(snapshotState);
    expect(machine.applyCount).toBe(0);
    await node.stop();
  });

  // Regression: the stale entries must be dropped from storage too, not only in memory; otherwise
  // entries written after the start would sit next to them and be discarded with them at the next
  // load (a follower would forget entries it acknowledged).
  it('(b) the entries written after such a start survive a second restart', async () => {
    const storage = new ScriptedStorage({ hardState: hardState(2, 3), snapshot, entries: [1, 2, 3, 4, 5, 6, 7].map((index) => entry(index, 1, `old-${index}`)) });
    const node = await startSolo(storage, new ListMachine());
    await leadAndCommit(node);
    expect(await settleOn(clock, node.propose(text('new')))).toEqual({ index: 7, result: '7:new' });
    await node.stop();
    const machine = new ListMachine();
    const again = await startSolo(storage, machine);
    // Entry 7 is stored; its commit was learned after the write and a commit-only change is not
    // written, so the node learns it again once it leads.
    expect(again.status()).toMatchObject({ lastIndex: 7, commitIndex: 6 });
    await leadAndCommit(again);
    expect(machine.state).toEqual([...snapshotState, [7, 'new']]);
    await again.stop();
  });

  it('(c) keeps entries that start exactly at the snapshot index + 1', async () => {
    const storage = new ScriptedStorage({ hardState: hardState(2, 6), snapshot, entries: [entry(6, 2, 'f'), entry(7, 2, 'g')] });
    const machine = new ListMachine();
    const node = await startSolo(storage, machine);
    expect(machine.restoreCalls.map((call) => call.appliesBefore)).toEqual([0]);
    expect(node.status()).toMatchObject({ lastIndex: 7, appliedIndex: 5, commitIndex: 6 });
    await clock.advance(100);
    expect(machine.state).toEqual([...snapshotState, [6, 'f']]);
    await leadAndCommit(node);
    expect(machine.state).toEqual([...snapshotState, [6, 'f'], [7, 'g']]);
    await node.stop();
  });

  it('a snapshot without entries: the node starts at the snapshot and continues after it', async () => {
    const storage = new ScriptedStorage({ hardState: hardState(2, 5), snapshot, entries: [] });
    const machine = new ListMachine();
    const node = await startSolo(storage, machine);
    expect(node.status()).toMatchObject({ lastIndex: 5, appliedIndex: 5, commitIndex: 5 });
    await leadAndCommit(node);
    const applied = await settleOn(clock, node.propose(text('next')));
    expect(applied.index).toBe(7);
    expect(machine.state).toEqual([...snapshotState, [7, 'next']]);
    await node.stop();
  });
});

/** Resolves `promise` while advancing `clock` in steps (bounded). */
async function settleOn<T>(clock: ManualClock, promise: Promise<T>, maxMs = 10_000): Promise<T> {
  let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  promise.then(
    (value) => (outcome = { ok: true, value }),
    (error: unknown) => (outcome = { ok: false, error }),
  );
  for (let waited = 0; outcome === undefined; waited += 10) {
    if (waited >= maxMs) throw new Error(`not settled within ${maxMs} ms of virtual time`);
    await clock.advance(10);
  }
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

describe('state machines without snapshot() and restore()', () => {
  it('never compacts: storage keeps every entry and no snapshot', async () => {
    const clock = new ManualClock();
    const storage = new RecordingStorage();
    const applied: string[] = [];
    const node = await RaftNode.start<string>({
      id: 'solo',
      voters: ['solo'],
      transport: new MemoryNetwork().connect(nodeId('solo')),
      storage,
      clock,
      stateMachine: { apply: (command) => (applied.push(decoder.decode(command)), 'ok') },
      seed: 9,
    });
    await clock.advance(3_000);
    expect(node.status().role).toBe('Leader');
    // Far more entries than any small policy would allow, with payloads over any small byte interval.
    const commands = commandsFrom('x'.repeat(100), 60);
    await settleOn(clock, Promise.all(commands.map((command) => node.propose(text(command)))));
    expect(applied).toEqual(commands);
    const stored = storage.contents();
    expect(stored.snapshot).toBeNull();
    expect(storage.savedSnapshots).toEqual([]);
    expect(stored.entries.map((stored) => stored.index)).toEqual(range(1, node.status().lastIndex));
    expect(node.status().snapshotIndex).toBe(0);
    await node.stop();
  });

  it('with `snapshots: false`, even a state machine that can snapshot is never asked to', async () => {
    harness = new Harness({ snapshots: false });
    const h = harness;
    const leader = await startThree(h);
    await h.proposeAll(leader, commandsFrom('c', 30));
    for (const id of THREE) {
      expect(h.machine(id).snapshotCalls).toEqual([]);
      expect(h.storage(id).contents().snapshot).toBeNull();
      expect(h.storage(id).contents().entries[0]?.index).toBe(1);
    }
  });

  it('a node whose storage holds a snapshot but whose state machine has no restore() fails to start with a ConfigError', async () => {
    const storage = new MemoryStorage();
    const snapshot: Snapshot = { metadata: { index: 3 as LogIndex, term: 1 as Term, membership: { voters: [nodeId('n1')], learners: [] } }, data: text('[]') };
    await storage.persist({ snapshot, hardState: { term: 1 as Term, vote: null, commit: 3 as LogIndex }, entries: [] });
    let applies = 0;
    const start = RaftNode.start({
      id: 'n1',
      voters: ['n1'],
      transport: new MemoryNetwork().connect(nodeId('n1')),
      storage,
      clock: new ManualClock(),
      stateMachine: { apply: () => ++applies, snapshot: () => new Uint8Array() },
      snapshots: false,
    });
    await expect(start).rejects.toBeInstanceOf(ConfigError);
    await expect(start).rejects.toMatchObject({ code: 'InvalidConfig', field: 'stateMachine' });
    expect(applies).toBe(0);
  });
});

describe('membership changes', () => {
  it('adds a voter that started with voters: [], removes a follower, and refuses invalid or concurrent changes', async () => {
    harness = new Harness();
    const h = harness;
    const leader = await startThree(h);
    await h.proposeAll(leader, commandsFrom('before-', 5));

    // A joining node knows no members and never campaigns on its own.
    const joiner = await h.start('n4', []);
    await h.clock.advance(3_000);
    expect(joiner.status()).toMatchObject({ role: 'Follower', term: 0, membership: { voters: [], learners: [] } });
    expect(leader.status().role).toBe('Leader');

    const added = await h.settle(leader.addVoter('n4'));
    expect(added.membership).toEqual({ voters: [...THREE, 'n4'], learners: [] });
    expect(leader.status().membership).toEqual(added.membership);
    expect(leader.status().appliedIndex).toBeGreaterThanOrEqual(added.index);
    // The new voter has every entry (it was caught up before its promotion) and applies new ones.
    await h.proposeAll(leader, ['after-join']);
    const afterJoin = leader.status().lastIndex;
    await h.until(() => joiner.status().appliedIndex === afterJoin, 'n4 applies everything');
    expect(h.machine('n4').commands()).toEqual(h.machine(leader.id).commands());
    expect(h.machine('n4').commands()).toEqual(['warm-up', ...commandsFrom('before-', 5), 'after-join']);
    expect(joiner.status().membership).toEqual(added.membership);
    expect(leader.status().followers.n4?.match).toBe(afterJoin);

    // Only the leader changes membership.
    const follower = first(followersOf(h, leader));
    const notLeader = await follower.changeMembership({ kind: 'RemoveNode', node: 'n4' }).catch((error: unknown) => error);
    expect(notLeader).toBeInstanceOf(RaftLeaseError);
    expect(notLeader).toMatchObject({ code: 'NotLeader', leaderHint: leader.id });
    // Promoting a node that is not a learner (a voter, or a stranger) makes no sense.
    await expect(leader.changeMembership({ kind: 'PromoteLearner', node: 'n4' })).rejects.toMatchObject({ code: 'InvalidMembershipChange' });
    await expect(leader.changeMembership({ kind: 'PromoteLearner', node: 'n9' })).rejects.toMatchObject({ code: 'InvalidMembershipChange' });
    await expect(leader.changeMembership({ kind: 'AddLearner', node: follower.id })).rejects.toMatchObject({ code: 'InvalidMembershipChange' });
    await expect(leader.changeMembership({ kind: 'RemoveNode', node: 'n9' })).rejects.toMatchObject({ code: 'InvalidMembershipChange' });

    // One change at a time: a second one while the first is uncommitted is refused.
    const removed = follower.id;
    const removal = leader.changeMembership({ kind: 'RemoveNode', node: removed });
    await expect(leader.changeMembership({ kind: 'AddLearner', node: 'n5' })).rejects.toMatchObject({ code: 'MembershipChangeInProgress' });
    const afterRemoval = await h.settle(removal);
    const remaining = [...THREE, 'n4'].filter((id) => id !== removed);
    expect(afterRemoval.membership).toEqual({ voters: remaining, learners: [] });
    await h.until(() => remaining.every((id) => h.node(id).status().appliedIndex >= afterRemoval.index), 'the others apply the removal');
    for (const id of remaining) {
      expect(h.node(id).status().membership.voters).not.toContain(removed);
      expect(h.node(id).status().membership.learners).not.toContain(removed);
    }
    expect(leader.status().followers[removed]).toBeUndefined();

    // The cluster goes on without the removed node, which cannot disrupt it while it runs on.
    const termBefore = leader.status().term;
    await h.clock.advance(5_000);
    expect(leader.status()).toMatchObject({ role: 'Leader', term: termBefore });
    await h.proposeAll(leader, ['after-removal']);
    const lastIndex = leader.status().lastIndex;
    await h.until(() => remaining.every((id) => h.node(id).status().appliedIndex === lastIndex), 'the remaining nodes apply new entries');
    expect(h.machine(removed).commands()).not.toContain('after-removal');
  });

  it('refuses to promote a learner that has not caught up, and times out a change that cannot commit', async () => {
    harness = new Harness();
    const h = harness;
    const leader = await startThree(h);
    // n5 never starts: it stays a learner with nothing.
    const asLearner = await h.settle(leader.changeMembership({ kind: 'AddLearner', node: 'n5' }));
    expect(asLearner.membership).toEqual({ voters: THREE, learners: ['n5'] });
    await expect(leader.changeMembership({ kind: 'PromoteLearner', node: 'n5' })).rejects.toMatchObject({ code: 'LearnerNotCaughtUp' });
    // addVoter keeps retrying the promotion until its deadline, then gives up with a typed error.
    const startedAt = h.clock.nowMs();
    let gaveUpAt = Number.NaN;
    const addVoter = await h
      .settle(
        leader.addVoter('n5', { timeoutMs: 1_000 }).finally(() => {
          gaveUpAt = h.clock.nowMs();
        }),
        5_000,
      )
      .catch((error: unknown) => error);
    expect(addVoter).toBeInstanceOf(RaftLeaseError);
    // At its deadline it reports the last refusal (LearnerNotCaughtUp); Timeout would do as well.
    expect(['LearnerNotCaughtUp', 'Timeout']).toContain((addVoter as RaftLeaseError).code);
    expect(gaveUpAt - startedAt).toBeGreaterThanOrEqual(1_000);
    expect(gaveUpAt - startedAt).toBeLessThanOrEqual(1_200);
    expect(leader.status().membership).toEqual({ voters: THREE, learners: ['n5'] });
    // A learner can be removed.
    const removed = await h.settle(leader.changeMembership({ kind: 'RemoveNode', node: 'n5' }));
    expect(removed.membership).toEqual({ voters: THREE, learners: [] });

    // A leader cut off from its quorum cannot commit a change: it times out.
    h.network.isolate([leader.id], THREE.filter((id) => id !== leader.id).map(nodeId));
    const stranded = leader.changeMembership({ kind: 'AddLearner', node: 'n6' }, { timeoutMs: 500 }).catch((error: unknown) => error);
    await h.clock.advance(800);
    expect(await stranded).toMatchObject({ code: 'Timeout' });
  });

  it('a pending change rejects with Stopped when the node stops', async () => {
    harness = new Harness();
    const h = harness;
    const leader = await startThree(h);
    h.network.isolate([leader.id], THREE.filter((id) => id !== leader.id).map(nodeId));
    const pending = leader.changeMembership({ kind: 'AddLearner', node: 'n6' }).catch((error: unknown) => error);
    await leader.stop({ transferLeadership: false });
    expect(await pending).toMatchObject({ code: 'Stopped' });
    await expect(leader.changeMembership({ kind: 'AddLearner', node: 'n7' })).rejects.toMatchObject({ code: 'Stopped' });
  });

  it('a learner joining after the leader compacted receives the snapshot, learns the membership and becomes a voter', async () => {
    harness = new Harness({ snapshots: SMALL_SNAPSHOTS, raft: { maxSnapshotChunkBytes: 64 } });
    const h = harness;
    const leader = await startThree(h);
    await h.proposeAll(leader, commandsFrom('c', 30));
    expect(leader.status().snapshotIndex).toBeGreaterThan(1);
    const joiner = await h.start('n4', []);
    const added = await h.settle(leader.addVoter('n4'));
    expect(added.membership.voters).toContain('n4');
    await h.until(() => joiner.status().appliedIndex >= added.index, 'n4 applies its promotion');
    const machine = h.machine('n4');
    expect(machine.restoreCalls).toHaveLength(1);
    const restoreCall = first(machine.restoreCalls);
    expect(restoreCall.appliesBefore).toBe(0);
    expect(restoreCall.metadata.membership).toEqual({ voters: THREE, learners: [] });
    expect(joiner.status().membership).toEqual({ voters: [...THREE, 'n4'], learners: [] });
    await h.proposeAll(leader, ['after-join']);
    await h.until(() => joiner.status().appliedIndex === leader.status().lastIndex, 'n4 applies new entries');
    expect(machine.state).toEqual(h.machine(leader.id).state);

    // Restarted with voters: [] again, it knows the membership from its snapshot and log.
    await joiner.stop();
    const restarted = await h.start('n4', []);
    expect(restarted.status().membership).toEqual({ voters: [...THREE, 'n4'], learners: [] });
  });
});

describe('removing the leader', () => {
  it('the leader steps down once its removal commits; the remaining voters elect a new leader that commits', async () => {
    harness = new Harness();
    const h = harness;
    const oldLeader = await startThree(h);
    await h.proposeAll(oldLeader, ['before']);
    const remaining = THREE.filter((id) => id !== oldLeader.id);

    const change = oldLeader.changeMembership({ kind: 'RemoveNode', node: oldLeader.id });
    // It leads until the change commits (thesis §4.2.2).
    expect(oldLeader.status().role).toBe('Leader');
    let roleWhenApplied: string | undefined;
    const removal = await h.settle(
      change.then((outcome) => {
        roleWhenApplied = oldLeader.status().role;
        return outcome;
      }),
    );
    expect(removal.membership).toEqual({ voters: remaining, learners: [] });
    expect(roleWhenApplied).toBe('Follower');
    expect(oldLeader.status()).toMatchObject({ role: 'Follower', leader: null });
    expect(oldLeader.status().commitIndex).toBeGreaterThanOrEqual(removal.index);
    expect(oldLeader.status().membership.voters).not.toContain(oldLeader.id);

    const newLeader = await h.waitForLeader(remaining);
    expect(remaining).toContain(newLeader.id);
    expect(newLeader.status().membership).toEqual({ voters: remaining, learners: [] });
    await h.proposeAll(newLeader, ['after-1', 'after-2']);
    const lastIndex = newLeader.status().lastIndex;
    await h.until(() => remaining.every((id) => h.node(id).status().appliedIndex === lastIndex), 'the remaining voters apply new entries');
    for (const id of remaining) expect(h.machine(id).commands()).toEqual(['warm-up', 'before', 'after-1', 'after-2']);
    // The removed node never campaigns again: it stays a follower and the new leader keeps its term.
    const term = newLeader.status().term;
    await h.clock.advance(5_000);
    expect(oldLeader.status().role).toBe('Follower');
    expect(h.leaders().map((node) => node.id)).toEqual([newLeader.id]);
    expect(newLeader.status().term).toBe(term);
    expect(h.machine(oldLeader.id).commands()).toEqual(['warm-up', 'before']);
  });
});
