/**
 * A hand-driven cluster of pure {@link RawNode}s for tests: messages sit in a queue until the test
 * delivers them, storage is an in-memory copy written synchronously, nothing happens on its own.
 */
import {
  EntryType,
  RawNode,
  SeededPrng,
  resolveRaftConfig,
  decodeMembership,
  type Entry,
  type ForwardedProposalOutcome,
  type HardState,
  type LogIndex,
  type Message,
  type NodeId,
  type RaftOptions,
  type MembershipChange,
  type ReadState,
  type Ready,
  type Snapshot,
  type Term,
} from '../../src/raft/index.js';

/** What a node has made durable. */
export interface StoredState {
  hardState: HardState;
  /** The stored snapshot; `entries` continue right after it. */
  snapshot: Snapshot | null;
  entries: Entry[];
}

export const INITIAL_HARD_STATE: HardState = { term: 0 as Term, vote: null, commit: 0 as LogIndex };

const MAX_DELIVERY_ROUNDS = 10_000;

export class TestCluster {
  readonly nodes = new Map<NodeId, RawNode>();
  readonly stored = new Map<NodeId, StoredState>();
  readonly applied = new Map<NodeId, Entry[]>();
  /** Snapshots each node installed from a leader, in order. */
  readonly installs = new Map<NodeId, Snapshot[]>();
  /** Texts of the entries a node's "state machine" got from a restored snapshot (applied before `applied`). */
  readonly restored = new Map<NodeId, string[]>();
  /** Per-node bootstrap voters, for nodes that joined with a different list (see {@link addNode}). */
  private readonly bootstrapVoters = new Map<NodeId, NodeId[]>();
  /** Answers each node received to the proposals it forwarded, in arrival order. */
  readonly forwardedOutcomes = new Map<NodeId, ForwardedProposalOutcome[]>();
  /** Read states each node reported, in order. */
  readonly readStates = new Map<NodeId, ReadState[]>();
  /** Messages sent and not yet delivered, in send order. */
  queue: Message[] = [];
  /** Request ids of forwarded proposals; unique per cluster. */
  private lastRequestId = 0;
  /** Every line the cluster logged (for transcripts). */
  readonly trace: string[] = [];
  /** Pairs of nodes that cannot reach each other, as "from->to". */
  private readonly cut = new Set<string>();
  private readonly ids: NodeId[];
  private readonly options: Partial<RaftOptions>;
  private readonly seed: number;

  constructor(idList: readonly string[], options: Partial<RaftOptions> & { seed?: number } = {}) {
    const { seed = 1, ...raftOptions } = options;
    this.ids = idList.map((id) => id as NodeId);
    this.options = raftOptions;
    this.seed = seed;
    for (const id of this.ids) this.stored.set(id, { hardState: INITIAL_HARD_STATE, snapshot: null, entries: [] });
    for (const id of this.ids) this.start(id);
  }

  /** Starts a new, empty node that knows no members (`voters: []`): it waits to be added. */
  addNode(id: string): RawNode {
    const nodeIdValue = id as NodeId;
    this.stored.set(nodeIdValue, { hardState: INITIAL_HARD_STATE, snapshot: null, entries: [] });
    this.bootstrapVoters.set(nodeIdValue, []);
    return this.start(nodeIdValue);
  }

  /** Proposes a membership change on `id` and handles its Ready. */
  changeMembership(id: string, kind: MembershipChange['kind'], node: string): ReturnType<RawNode['proposeMembershipChange']> {
    const outcome = this.node(id).proposeMembershipChange({ kind, node: node as NodeId });
    this.flush(id);
    return outcome;
  }

  /**
   * Snapshots node `id`'s state machine at its applied index and compacts its log up to
   * `compactIndex` (default: the snapshot index), as the runtime does. The "state machine" is the
   * list of applied texts; the snapshot is its JSON.
   */
  compact(id: string, compactIndex?: number): LogIndex {
    const node = this.node(id);
    const stored = this.mustStored(id as NodeId);
    const index = node.status().appliedIndex;
    const snapshot: Snapshot = { metadata: node.snapshotMetadata(index), data: new TextEncoder().encode(JSON.stringify(this.appliedData(id))) };
    stored.snapshot = snapshot;
    const upTo = node.compact(snapshot, (compactIndex ?? index) as LogIndex);
    stored.entries = stored.entries.filter((entry) => entry.index > index);
    return upTo;
  }

  /** (Re)starts a node from what it stored. */
  start(id: NodeId | string, overrides: Partial<RaftOptions> = {}): RawNode {
    const nodeIdValue = id as NodeId;
    const stored = this.mustStored(nodeIdValue);
    const voters = this.bootstrapVoters.get(nodeIdValue) ?? this.ids;
    const config = resolveRaftConfig({ id: nodeIdValue, voters, ...this.options, ...overrides });
    const node = new RawNode({
      config,
      prng: new SeededPrng(this.seed * 1000 + this.ids.indexOf(nodeIdValue)),
      hardState: stored.hardState,
      entries: stored.entries,
      applied: stored.snapshot?.metadata.index ?? (0 as LogIndex),
      snapshot: stored.snapshot,
    });
    this.nodes.set(nodeIdValue, node);
    this.applied.set(nodeIdValue, []);
    this.restored.set(nodeIdValue, stored.snapshot === null ? [] : (JSON.parse(new TextDecoder().decode(stored.snapshot.data)) as string[]));
    return node;
  }

  node(id: string): RawNode {
    const node = this.nodes.get(id as NodeId);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  /** Handles every pending Ready of a node, synchronously, queueing its messages. */
  flush(id: NodeId | string): void {
    const node = this.node(id);
    const stored = this.mustStored(id as NodeId);
    for (let round = 0; round < 1000 && node.hasReady(); round++) {
      const ready = node.ready();
      this.queue.push(...ready.messages);
      if (ready.snapshot !== null) {
        stored.snapshot = ready.snapshot;
        stored.entries = [];
      }
      if (ready.hardState !== null) stored.hardState = ready.hardState;
      if (ready.entries.length > 0) {
        const first = ready.entries[0];
        if (first !== undefined) stored.entries.length = Math.max(0, first.index - (stored.entries[0]?.index ?? first.index));
        stored.entries.push(...ready.entries);
      }
      this.queue.push(...ready.messagesAfterPersist);
      if (ready.snapshot !== null) {
        this.trace.push(`${id} restores snapshot ${ready.snapshot.metadata.index}@${ready.snapshot.metadata.term}`);
        this.restored.set(id as NodeId, JSON.parse(new TextDecoder().decode(ready.snapshot.data)) as string[]);
        this.applied.set(id as NodeId, []);
        this.installs.set(id as NodeId, [...(this.installs.get(id as NodeId) ?? []), ready.snapshot]);
      }
      this.applied.get(id as NodeId)?.push(...ready.committedEntries);
      if (ready.readStates.length > 0) {
        const states = this.readStates.get(id as NodeId) ?? [];
        states.push(...ready.readStates);
        this.readStates.set(id as NodeId, states);
      }
      if (ready.forwardedOutcomes.length > 0) {
        const outcomes = this.forwardedOutcomes.get(id as NodeId) ?? [];
        outcomes.push(...ready.forwardedOutcomes);
        this.forwardedOutcomes.set(id as NodeId, outcomes);
      }
      node.advance();
    }
  }

  flushAll(): void {
    for (const id of this.nodes.keys()) this.flush(id);
  }

  tick(id: string, times = 1): void {
    for (let i = 0; i < times; i++) {
      this.node(id).tick();
      this.flush(id);
    }
  }

  campaign(id: string): void {
    this.node(id).campaign();
    this.flush(id);
  }

  propose(id: string, text: string): ReturnType<RawNode['propose']> {
    const outcome = this.node(id).propose(new TextEncoder().encode(text), ++this.lastRequestId);
    this.flush(id);
    return outcome;
  }

  partition(...groups: (readonly string[])[]): void {
    this.cut.clear();
    for (const group of groups) {
      for (const other of groups) {
        if (other === group) continue;
        for (const a of group) for (const b of other) this.cut.add(`${a}->${b}`);
      }
    }
  }

  /** Cuts one direction only. */
  cutOneWay(from: string, to: string): void {
    this.cut.add(`${from}->${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  /** Delivers queued messages (and everything they cause) until the network is quiet. */
  deliverAll(filter: (message: Message) => boolean = () => true): number {
    let delivered = 0;
    for (let round = 0; round < MAX_DELIVERY_ROUNDS && this.queue.length > 0; round++) {
      const batch = this.queue;
      this.queue = [];
      for (const message of batch) {
        if (!filter(message)) continue;
        if (this.deliverOne(message)) delivered++;
      }
    }
    if (this.queue.length > 0) throw new Error('network did not quiesce');
    return delivered;
  }

  /** Delivers one message if its link is up (dropping it otherwise). */
  deliverOne(message: Message): boolean {
    if (this.cut.has(`${message.from}->${message.to}`) || !this.nodes.has(message.to)) {
      this.trace.push(`drop ${describeMessage(message)}`);
      return false;
    }
    this.trace.push(describeMessage(message));
    this.node(message.to).step(message);
    this.flush(message.to);
    return true;
  }

  /** Delivers queued messages that match (and the matching messages they cause); the rest stay queued. */
  deliverWhere(predicate: (message: Message) => boolean): number {
    let delivered = 0;
    for (let round = 0; round < MAX_DELIVERY_ROUNDS; round++) {
      const batch = this.queue.filter(predicate);
      if (batch.length === 0) return delivered;
      this.queue = this.queue.filter((message) => !predicate(message));
      for (const message of batch) if (this.deliverOne(message)) delivered++;
    }
    throw new Error('selective delivery did not quiesce');
  }

  /** Removes and returns the first queued message that matches. */
  take(predicate: (message: Message) => boolean): Message {
    const position = this.queue.findIndex(predicate);
    const message = position < 0 ? undefined : this.queue.splice(position, 1)[0];
    if (message === undefined) throw new Error(`no queued message matches; queue: ${this.queue.map(describeMessage).join(' | ')}`);
    return message;
  }

  /** Drops every queued message. */
  dropAll(): void {
    for (const message of this.queue) this.trace.push(`drop ${describeMessage(message)}`);
    this.queue = [];
  }

  leaders(): NodeId[] {
    return [...this.nodes.entries()].filter(([, node]) => node.status().role === 'Leader').map(([id]) => id);
  }

  /** Texts of the normal entries node `id`'s state machine holds: restored from a snapshot, then applied. */
  appliedData(id: string): string[] {
    const applied = (this.applied.get(id as NodeId) ?? []).filter((e) => e.type === EntryType.Normal).map((e) => new TextDecoder().decode(e.data));
    return [...(this.restored.get(id as NodeId) ?? []), ...applied];
  }

  private mustStored(id: NodeId): StoredState {
    const stored = this.stored.get(id);
    if (stored === undefined) throw new Error(`no node ${id}`);
    return stored;
  }
}

/** One-line, stable rendering of a message, for transcripts. */
export function describeMessage(message: Message): string {
  const head = `${message.from}->${message.to} ${message.type} term=${message.term}`;
  switch (message.type) {
    case 'VoteRequest':
      return `${head}${message.preVote ? ' pre' : ''}${message.leadershipTransfer ? ' transfer' : ''} last=${message.lastLogIndex}@${message.lastLogTerm}`;
    case 'VoteResponse':
      return `${head}${message.preVote ? ' pre' : ''} ${message.granted ? 'granted' : 'rejected'}`;
    case 'AppendRequest':
      return `${head} prev=${message.prevLogIndex}@${message.prevLogTerm} commit=${message.leaderCommit} entries=[${message.entries.map(describeEntry).join(' ')}]`;
    case 'AppendResponse':
      return message.success
        ? `${head} ok index=${message.index}`
        : `${head} reject index=${message.index} hint=${message.rejectHintIndex}@${message.rejectHintTerm}`;
    case 'Heartbeat':
      return `${head} commit=${message.commit}${message.context === 0 ? '' : ` read=${message.context}`}`;
    case 'HeartbeatResponse':
      return `${head}${message.context === 0 ? '' : ` read=${message.context}`}`;
    case 'TimeoutNow':
      return head;
    case 'ReadIndexRequest':
      return `${head} request=${message.requestId}`;
    case 'ReadIndexResponse':
      return `${head} request=${message.requestId} ${message.refusal ?? `index=${message.index}`}`;
    case 'ProposeRequest':
      return `${head} request=${message.requestId} data=${new TextDecoder().decode(message.data)}`;
    case 'ProposeResponse':
      return `${head} request=${message.requestId} ${message.refusal ?? `index=${message.index}@${message.entryTerm}`}`;
    case 'InstallSnapshot':
      return `${head} snapshot=${message.metadata.index}@${message.metadata.term} bytes=${message.offset}..${message.offset + message.data.byteLength}/${message.totalBytes}${message.done ? ' done' : ''}`;
    case 'SnapshotResponse':
      return `${head} snapshot=${message.snapshotIndex} received=${message.receivedBytes}${message.gap ? ' gap' : ''}`;
  }
}

export function describeEntry(entry: Entry): string {
  let text: string;
  if (entry.type === EntryType.Noop) text = 'noop';
  else if (entry.type === EntryType.ConfChange) {
    const membership = decodeMembership(entry.data);
    text = `conf(voters=${membership.voters.join(',')}${membership.learners.length > 0 ? ` learners=${membership.learners.join(',')}` : ''})`;
  } else text = new TextDecoder().decode(entry.data);
  return `${entry.index}@${entry.term}:${text}`;
}

/** A three-node cluster in which n1 was elected and its no-op committed everywhere. */
export function electedCluster(options: Partial<RaftOptions> & { seed?: number } = {}): TestCluster {
  const cluster = new TestCluster(['n1', 'n2', 'n3'], options);
  cluster.campaign('n1');
  cluster.deliverAll();
  cluster.tick('n1');
  cluster.deliverAll();
  if (cluster.leaders().join() !== 'n1') throw new Error(`expected n1 to lead, leaders: ${cluster.leaders().join(', ')}`);
  return cluster;
}

/** Most Readies {@link drain} handles before declaring the node runaway. */
const MAX_READY_ROUNDS = 100;

/** Handles every pending Ready of a lone node (as a runtime would, with instant storage) and returns them. */
export function drain(node: RawNode): Ready[] {
  const readys: Ready[] = [];
  for (let round = 0; round < MAX_READY_ROUNDS && node.hasReady(); round++) {
    readys.push(node.ready());
    node.advance();
  }
  if (node.hasReady()) throw new Error(`node still has work after ${MAX_READY_ROUNDS} Readies`);
  return readys;
}
