/**
 * In-process implementations of {@link Transport} and {@link Storage}, for tests, examples and
 * benchmarks of the protocol without I/O.
 *
 * @module
 */
import { decodeMessage, encodeMessage, invariant, type Entry, type HardState, type LogIndex, type Message, type NodeId, type Snapshot, type Term } from '../raft/index.js';
import type { MessageHandler, PersistBatch, PersistentState, Storage, Transport } from './interfaces.js';

/** Options of a {@link MemoryNetwork}. */
export interface MemoryNetworkOptions {
  /**
   * Encode and decode every message with the wire codec, as a real transport would. Slower; catches
   * messages the codec cannot carry.
   */
  readonly encode?: boolean;
  /** Most messages queued for delivery across the network; beyond it messages are dropped. */
  readonly maxQueuedMessages?: number;
}

/**
 * Connects {@link MemoryTransport}s in one process. Messages are delivered asynchronously (as a
 * microtask), in send order per link. Links can be cut to simulate partitions.
 *
 * @example
 * ```ts
 * const network = new MemoryNetwork();
 * const transport = network.connect(nodeId('n1'));
 * ```
 */
export class MemoryNetwork {
  private readonly handlers = new Map<NodeId, MessageHandler>();
  private readonly cutLinks = new Set<string>();
  private readonly encode: boolean;
  private readonly maxQueuedMessages: number;
  private queued = 0;
  /** Messages dropped because a link was cut, a node was absent or the queue was full. */
  droppedMessages = 0;

  constructor(options: MemoryNetworkOptions = {}) {
    this.encode = options.encode ?? false;
    this.maxQueuedMessages = options.maxQueuedMessages ?? 1_000_000;
  }

  /** A transport for node `id`. */
  connect(id: NodeId): MemoryTransport {
    return new MemoryTransport(this, id);
  }

  /** Cuts delivery from `from` to `to` (one direction). */
  cut(from: NodeId, to: NodeId): void {
    this.cutLinks.add(`${from}\u0000${to}`);
  }

  /** Cuts both directions between every node of `group` and every node outside it. */
  isolate(group: readonly NodeId[], others: readonly NodeId[]): void {
    for (const a of group) {
      for (const b of others) {
        this.cut(a, b);
        this.cut(b, a);
      }
    }
  }

  /** Restores every link. */
  heal(): void {
    this.cutLinks.clear();
  }

  /** @internal */
  register(id: NodeId, handler: MessageHandler): void {
    this.handlers.set(id, handler);
  }

  /** @internal */
  unregister(id: NodeId): void {
    this.handlers.delete(id);
  }

  /** @internal */
  deliver(message: Message): void {
    if (this.cutLinks.has(`${message.from}\u0000${message.to}`) || this.queued >= this.maxQueuedMessages) {
      this.droppedMessages++;
      return;
    }
    const carried = this.encode ? decodeMessage(encodeMessage(message)) : message;
    this.queued++;
    queueMicrotask(() => {
      this.queued--;
      const handler = this.handlers.get(carried.to);
      if (handler === undefined) this.droppedMessages++;
      else handler(carried);
    });
  }
}

/** One node's end of a {@link MemoryNetwork}. */
export class MemoryTransport implements Transport {
  private closed = false;

  constructor(
    private readonly network: MemoryNetwork,
    private readonly id: NodeId,
  ) {}

  listen(handler: MessageHandler): void {
    this.network.register(this.id, handler);
  }

  send(message: Message): void {
    if (!this.closed) this.network.deliver(message);
  }

  close(): Promise<void> {
    this.closed = true;
    this.network.unregister(this.id);
    return Promise.resolve();
  }
}

const INITIAL_HARD_STATE: HardState = Object.freeze({ term: 0 as Term, vote: null, commit: 0 as LogIndex });

/**
 * Storage in memory. "Durable" for as long as the object lives: hand the same instance to a new
 * `RaftNode` to model a process restart that kept its disk.
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = INITIAL_HARD_STATE;
  private storedSnapshot: Snapshot | null = null;
  /** Entries after `firstIndex - 1`, contiguous. */
  private entries: Entry[] = [];
  /** Index of `entries[0]`. */
  private firstIndex = 1;
  /** Batches written so far (each one models an fsync). */
  persistCount = 0;

  load(): Promise<PersistentState> {
    return Promise.resolve(this.contents());
  }

  persist(batch: PersistBatch): Promise<void> {
    if (batch.snapshot !== null) {
      // A snapshot from the leader replaces the whole log.
      this.storedSnapshot = batch.snapshot;
      this.entries = [];
      this.firstIndex = batch.snapshot.metadata.index + 1;
    }
    const first = batch.entries[0];
    if (first !== undefined) {
      const end = this.firstIndex + this.entries.length;
      invariant(first.index <= end && first.index >= this.firstIndex, () => `persist would leave a gap: first index ${first.index}, stored ${this.firstIndex}..${end - 1}`);
      this.entries.length = first.index - this.firstIndex;
      for (const entry of batch.entries) this.entries.push(entry);
    }
    if (batch.hardState !== null) this.hardState = batch.hardState;
    this.persistCount++;
    return Promise.resolve();
  }

  saveSnapshot(snapshot: Snapshot, compactIndex: LogIndex): Promise<void> {
    invariant(compactIndex <= snapshot.metadata.index, () => `compacting to ${compactIndex} beyond the snapshot at ${snapshot.metadata.index}`);
    if (this.storedSnapshot === null || snapshot.metadata.index > this.storedSnapshot.metadata.index) this.storedSnapshot = snapshot;
    const drop = Math.min(this.entries.length, compactIndex - this.firstIndex + 1);
    if (drop > 0) {
      this.entries = this.entries.slice(drop);
      this.firstIndex += drop;
    }
    this.persistCount++;
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** What is stored now, for tests. */
  contents(): PersistentState {
    return { hardState: this.hardState, entries: this.entries.slice(), snapshot: this.storedSnapshot };
  }
}
