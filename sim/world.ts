/**
 * The simulated world: virtual time, a network, disks, clocks and processes, all driven by one seeded
 * PRNG and one event queue. The nodes in it run the production `RaftNode` through the runtime's
 * `Transport`, `Clock` and `Storage` interfaces.
 *
 * @module
 */
import {
  decodeMessage,
  encodeMessage,
  invariant,
  randomIntBelow,
  type Entry,
  type HardState,
  type LogIndex,
  type Message,
  type Prng,
  type Snapshot,
  type Term,
} from '../src/raft/index.js';
import type { Clock, MessageHandler, PersistBatch, PersistentState, Storage, Timer, Transport } from '../src/runtime/index.js';
import { EventQueue } from './event-queue.js';
import type { FaultConfig } from './faults.js';

/** Nanoseconds per millisecond. */
export const NS_PER_MS = 1_000_000;

/** What the world does at a scheduled time. */
export type WorldEvent =
  | { readonly kind: 'timer'; readonly node: number; readonly timer: SimTimer }
  | { readonly kind: 'deliver'; readonly node: number; readonly from: number; readonly bytes: Uint8Array | null; readonly message: Message }
  | { readonly kind: 'disk'; readonly node: number; readonly incarnation: number; readonly write: PendingWrite }
  | { readonly kind: 'action'; readonly node: number | null; readonly label: string; readonly run: () => void };

/** A timer set by a node's clock. */
export interface SimTimer {
  readonly incarnation: number;
  /** Due time on the node's own clock, in nanoseconds. */
  readonly localDueNs: number;
  readonly callback: () => void;
  done: boolean;
}

/** A timer as handed to the node: its own handle, so that setting one allocates a single object. */
class PendingTimer implements SimTimer, Timer {
  done = false;

  constructor(
    readonly incarnation: number,
    readonly localDueNs: number,
    readonly callback: () => void,
    private readonly pending: Set<SimTimer>,
  ) {}

  cancel(): void {
    this.done = true;
    this.pending.delete(this);
  }
}

/** What a node asked its disk to write: a Ready batch, or a snapshot it took with a compaction. */
export type DiskOperation =
  | { readonly kind: 'batch'; readonly batch: PersistBatch }
  | { readonly kind: 'snapshot'; readonly snapshot: Snapshot; readonly compactIndex: LogIndex };

/** A disk write waiting for its simulated latency. */
export interface PendingWrite {
  readonly operation: DiskOperation;
  readonly resolve: () => void;
  done: boolean;
}

/** The durable contents of one node's disk. Survives crashes. */
export class SimDisk {
  hardState: HardState = { term: 0 as Term, vote: null, commit: 0 as LogIndex };
  snapshot: Snapshot | null = null;
  /** Log entries from `firstIndex` on, contiguous. */
  entries: Entry[] = [];
  firstIndex = 1;
  /** Term of the entry at `firstIndex - 1` (0 for an uncompacted log). */
  baseTerm = 0;
  /** Writes issued and not yet complete, oldest first. */
  readonly inFlight: PendingWrite[] = [];
  /** When the last issued write completes: writes complete in issue order. */
  lastCompletionNs = 0;

  /** Index of the last stored entry (the compaction point when the log is empty). */
  lastIndex(): number {
    return this.firstIndex + this.entries.length - 1;
  }

  /** Term of the stored entry at `index`, if known. */
  termAt(index: number): number | undefined {
    if (index === this.firstIndex - 1) return this.baseTerm;
    return this.entries[index - this.firstIndex]?.term;
  }

  /** Makes an operation durable. */
  apply(operation: DiskOperation): void {
    if (operation.kind === 'snapshot') {
      this.storeSnapshot(operation.snapshot);
      this.compact(operation.compactIndex);
      return;
    }
    const batch = operation.batch;
    if (batch.snapshot !== null) {
      // A snapshot from the leader replaces the whole log.
      this.snapshot = batch.snapshot;
      this.entries = [];
      this.firstIndex = batch.snapshot.metadata.index + 1;
      this.baseTerm = batch.snapshot.metadata.term;
    }
    this.appendEntries(batch.entries);
    if (batch.hardState !== null) this.hardState = batch.hardState;
  }

  /** Writes entries, replacing any stored suffix from the first one's index. */
  appendEntries(entries: readonly Entry[]): void {
    const first = entries[0];
    if (first === undefined) return;
    invariant(first.index >= this.firstIndex && first.index <= this.lastIndex() + 1, () => `disk write at ${first.index} leaves a gap (stored ${this.firstIndex}..${this.lastIndex()})`);
    this.entries.length = first.index - this.firstIndex;
    for (const entry of entries) this.entries.push(entry);
  }

  /** Stores a snapshot without touching the log (the first half of either snapshot write). */
  storeSnapshot(snapshot: Snapshot): void {
    if (this.snapshot === null || snapshot.metadata.index > this.snapshot.metadata.index) this.snapshot = snapshot;
  }

  private compact(compactIndex: LogIndex): void {
    const drop = Math.min(this.entries.length, compactIndex - this.firstIndex + 1);
    if (drop <= 0) return;
    this.baseTerm = this.entries[drop - 1]?.term ?? this.baseTerm;
    this.entries = this.entries.slice(drop);
    this.firstIndex += drop;
  }
}

/** Per-node simulated clock parameters. */
export interface ClockModel {
  /** Offset from true time at true time 0, in nanoseconds (may be negative). */
  offsetNs: number;
  /** Rate error in parts per million: the clock advances (1 + driftPpm/10^6) ns per true ns. */
  driftPpm: number;
  /** Sum of forward jumps so far, in nanoseconds. */
  jumpedNs: number;
}

/** Local clock reading (ns) of `model` at true time `trueNs`. */
export function localTimeNs(model: ClockModel, trueNs: number): number {
  return model.offsetNs + trueNs + Math.trunc((trueNs * model.driftPpm) / 1_000_000) + model.jumpedNs;
}

/** True time at which `model` reads `localNs` (the first true ns at or after it). */
export function trueTimeAtLocalNs(model: ClockModel, localNs: number): number {
  const withoutOffset = localNs - model.offsetNs - model.jumpedNs;
  // Invert local = t + t·d/10^6: t = local·10^6 / (10^6 + d), rounded up so the timer is never early.
  return Math.ceil((withoutOffset * 1_000_000) / (1_000_000 + model.driftPpm));
}

/** Bounds on one simulation run. */
export const MAX_EVENTS_DEFAULT = 20_000_000;

/** Everything a node in the world needs, for one incarnation. */
export interface NodeSlot {
  readonly id: string;
  readonly index: number;
  readonly disk: SimDisk;
  readonly clock: ClockModel;
  /** Increases at every crash; events of an old incarnation are discarded. */
  incarnation: number;
  alive: boolean;
  /** True time until which the process is paused (0 when running). */
  pausedUntilNs: number;
  handler: MessageHandler | null;
  /** Timers of the current incarnation not yet fired or cancelled (re-scheduled on clock jumps). */
  readonly timers: Set<SimTimer>;
}

/** The world. */
export class World {
  nowNs = 0;
  /** Events processed so far. */
  steps = 0;
  readonly queue = new EventQueue<WorldEvent>();
  readonly nodes: NodeSlot[];
  /** Cut links, as `from * 1000 + to`. */
  readonly cutLinks = new Set<number>();
  /** Whether faults are injected (false in the liveness phase). */
  faultsActive = true;
  readonly trace: string[] | null;
  private readonly indexById: ReadonlyMap<string, number>;
  readonly stats = { messagesSent: 0, messagesDropped: 0, messagesDuplicated: 0, diskWrites: 0, crashes: 0, pauses: 0, partitions: 0, clockJumps: 0, membershipChanges: 0 };

  constructor(
    readonly prng: Prng,
    readonly faults: FaultConfig,
    nodeIds: readonly string[],
    readonly encodeMessages: boolean,
    traceEnabled: boolean,
  ) {
    this.trace = traceEnabled ? [] : null;
    this.indexById = new Map(nodeIds.map((id, index) => [id, index]));
    this.nodes = nodeIds.map((id, index) => ({
      id,
      index,
      disk: new SimDisk(),
      clock: {
        offsetNs: faults.clockOffsetMaxMs > 0 ? (randomIntBelow(prng, 2 * faults.clockOffsetMaxMs + 1) - faults.clockOffsetMaxMs) * NS_PER_MS : 0,
        driftPpm: faults.driftMaxPpm > 0 ? randomIntBelow(prng, 2 * faults.driftMaxPpm + 1) - faults.driftMaxPpm : 0,
        jumpedNs: 0,
      },
      incarnation: 0,
      alive: false,
      pausedUntilNs: 0,
      handler: null,
      timers: new Set<SimTimer>(),
    }));
  }

  /** Uniform integer in [min, max]. */
  between(min: number, max: number): number {
    return min + randomIntBelow(this.prng, max - min + 1);
  }

  /** True with probability `perMille`/1000. */
  chancePerMille(perMille: number): boolean {
    return perMille > 0 && randomIntBelow(this.prng, 1000) < perMille;
  }

  /** Appends a line to the trace (when tracing). */
  record(line: () => string): void {
    if (this.trace !== null) this.trace.push(`${this.nowNs} ${line()}`);
  }

  node(index: number): NodeSlot {
    const slot = this.nodes[index];
    if (slot === undefined) throw new RangeError(`no node ${index}`);
    return slot;
  }

  /** Schedules an action at `delayNs` from now. */
  schedule(delayNs: number, label: string, node: number | null, run: () => void): void {
    this.queue.push(this.nowNs + Math.max(0, delayNs), { kind: 'action', node, label, run });
  }

  // -------------------------------------------------------------------------------------------
  // Interfaces handed to RaftNode

  /** The clock of node `index`'s current incarnation. */
  clockFor(index: number): Clock {
    const slot = this.node(index);
    const incarnation = slot.incarnation;
    return {
      nowMs: () => localTimeNs(slot.clock, this.nowNs) / NS_PER_MS,
      setTimer: (delayMs: number, callback: () => void): Timer => {
        const localDueNs = localTimeNs(slot.clock, this.nowNs) + Math.max(0, Math.round(delayMs * NS_PER_MS));
        if (slot.incarnation !== incarnation) return { cancel: () => undefined };
        const timer = new PendingTimer(incarnation, localDueNs, callback, slot.timers);
        slot.timers.add(timer);
        this.scheduleTimer(slot, timer);
        return timer;
      },
    };
  }

  private scheduleTimer(slot: NodeSlot, timer: SimTimer): void {
    const dueNs = Math.max(this.nowNs, trueTimeAtLocalNs(slot.clock, timer.localDueNs));
    this.queue.push(dueNs, { kind: 'timer', node: slot.index, timer });
  }

  /** Moves node `index`'s clock forward by `jumpNs` (timers due by the new reading fire at once). */
  jumpClock(index: number, jumpNs: number): void {
    const slot = this.node(index);
    slot.clock.jumpedNs += jumpNs;
    this.stats.clockJumps++;
    // Pending timers are due earlier in true time now; queue them again (the stale copy is skipped
    // because the timer fires only once).
    for (const timer of slot.timers) this.scheduleTimer(slot, timer);
  }

  /** The transport of node `index`'s current incarnation. */
  transportFor(index: number): Transport {
    const slot = this.node(index);
    const incarnation = slot.incarnation;
    return {
      listen: (handler) => {
        if (slot.incarnation === incarnation) slot.handler = handler;
      },
      send: (message) => {
        if (slot.incarnation === incarnation && slot.alive) this.send(index, message);
      },
      close: () => {
        if (slot.incarnation === incarnation) slot.handler = null;
        return Promise.resolve();
      },
    };
  }

  /** Called for every message a node sends, before the network touches it (checkers). */
  onSend: ((from: NodeSlot, message: Message) => void) | null = null;

  private send(from: number, message: Message): void {
    this.onSend?.(this.node(from), message);
    const to = this.indexById.get(message.to);
    if (to === undefined) return;
    this.stats.messagesSent++;
    const bytes = this.encodeMessages ? encodeMessage(message) : null;
    const copies = this.faultsActive && this.chancePerMille(this.faults.duplicatePerMille) ? 2 : 1;
    if (copies === 2) this.stats.messagesDuplicated++;
    for (let copy = 0; copy < copies; copy++) {
      if (this.faultsActive && this.chancePerMille(this.faults.dropPerMille)) {
        this.stats.messagesDropped++;
        continue;
      }
      const long = this.faultsActive && this.chancePerMille(this.faults.longDelayPerMille);
      const delayMs = long ? this.between(this.faults.delayMaxMs, Math.max(this.faults.delayMaxMs, this.faults.longDelayMaxMs)) : this.between(this.faults.delayMinMs, this.faults.delayMaxMs);
      // Sub-millisecond jitter so that messages sent together do not all arrive at the same instant.
      const delayNs = delayMs * NS_PER_MS + randomIntBelow(this.prng, NS_PER_MS);
      this.queue.push(this.nowNs + delayNs, { kind: 'deliver', node: to, from, bytes, message });
    }
  }

  /** Delivers a message now, if its link is up and its target is running. */
  deliver(event: Extract<WorldEvent, { kind: 'deliver' }>): void {
    const slot = this.node(event.node);
    if (this.cutLinks.has(event.from * 1000 + event.node) || !slot.alive || slot.handler === null) {
      this.stats.messagesDropped++;
      if (this.trace !== null) this.record(() => `drop ${this.node(event.from).id}->${slot.id} ${event.message.type}`);
      return;
    }
    const message = event.bytes === null ? event.message : decodeMessage(event.bytes);
    if (this.trace !== null) this.record(() => `recv ${this.node(event.from).id}->${slot.id} ${message.type} term=${message.term}`);
    slot.handler(message);
  }

  /** The storage of node `index`'s current incarnation. */
  storageFor(index: number): Storage {
    const slot = this.node(index);
    const incarnation = slot.incarnation;
    return {
      load: (): Promise<PersistentState> => Promise.resolve({ hardState: slot.disk.hardState, entries: slot.disk.entries.slice(), snapshot: slot.disk.snapshot }),
      persist: (batch: PersistBatch): Promise<void> => this.write(slot, index, incarnation, { kind: 'batch', batch }),
      saveSnapshot: (snapshot: Snapshot, compactIndex: LogIndex): Promise<void> => this.write(slot, index, incarnation, { kind: 'snapshot', snapshot, compactIndex }),
      close: () => Promise.resolve(),
    };
  }

  private write(slot: NodeSlot, index: number, incarnation: number, operation: DiskOperation): Promise<void> {
    return new Promise<void>((resolve) => {
      if (slot.incarnation !== incarnation) return;
      const write: PendingWrite = { operation, resolve, done: false };
      slot.disk.inFlight.push(write);
      this.stats.diskWrites++;
      const latencyNs = this.between(this.faults.diskLatencyMinMs * NS_PER_MS, Math.max(1, this.faults.diskLatencyMaxMs * NS_PER_MS));
      // Writes complete in issue order: never before the previous one.
      const completionNs = Math.max(this.nowNs + latencyNs, slot.disk.lastCompletionNs);
      slot.disk.lastCompletionNs = completionNs;
      this.queue.push(completionNs, { kind: 'disk', node: index, incarnation, write });
    });
  }
}
