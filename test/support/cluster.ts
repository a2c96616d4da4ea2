/**
 * A hand-driven cluster of pure {@link RawNode}s for tests: messages sit in a queue until the test
 * delivers them, storage is an in-memory copy written synchronously, nothing happens on its own.
 */
import {
  EntryType,
  RawNode,
  SeededPrng,
  resolveRaftConfig,
  type Entry,
  type ForwardedProposalOutcome,
  type HardState,
  type LogIndex,
  type Message,
  type NodeId,
  type RaftOptions,
  type ReadState,
  type Term,
} from '../../src/raft/index.js';

/** What a node has made durable. */
export interface StoredState {
  hardState: HardState;
  entries: Entry[];
}

export const INITIAL_HARD_STATE: HardState = { term: 0 as Term, vote: null, commit: 0 as LogIndex };

const MAX_DELIVERY_ROUNDS = 10_000;

export class TestCluster {
  readonly nodes = new Map<NodeId, RawNode>();
  readonly stored = new Map<NodeId, StoredState>();
  readonly applied = new Map<NodeId, Entry[]>();
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
    for (const id of this.ids) this.stored.set(id, { hardState: INITIAL_HARD_STATE, entries: [] });
    for (const id of this.ids) this.start(id);
  }

  /** (Re)starts a node from what it stored. */
  start(id: NodeId | string, overrides: Partial<RaftOptions> = {}): RawNode {
    const nodeIdValue = id as NodeId;
    const stored = this.mustStored(nodeIdValue);
    const config = resolveRaftConfig({ id: nodeIdValue, voters: this.ids, ...this.options, ...overrides });
    const node = new RawNode({
      config,
      prng: new SeededPrng(this.seed * 1000 + this.ids.indexOf(nodeIdValue)),
      hardState: stored.hardState,
      entries: stored.entries,
      applied: 0 as LogIndex,
    });
    this.nodes.set(nodeIdValue, node);
    this.applied.set(nodeIdValue, []);
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
      if (ready.hardState !== null) stored.hardState = ready.hardState;
      if (ready.entries.length > 0) {
        const first = ready.entries[0];
        if (first !== undefined) stored.entries.length = first.index - 1;
        stored.entries.push(...ready.entries);
      }
      this.queue.push(...ready.messagesAfterPersist);
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

  /** Drops every queued message. */
  dropAll(): void {
    for (const message of this.queue) this.trace.push(`drop ${describeMessage(message)}`);
    this.queue = [];
  }

  leaders(): NodeId[] {
    return [...this.nodes.entries()].filter(([, node]) => node.status().role === 'Leader').map(([id]) => id);
  }

  appliedData(id: string): string[] {
    return (this.applied.get(id as NodeId) ?? []).filter((e) => e.type === EntryType.Normal).map((e) => new TextDecoder().decode(e.data));
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
  }
}

export function describeEntry(entry: Entry): string {
  const text = entry.type === EntryType.Noop ? 'noop' : new TextDecoder().decode(entry.data);
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
