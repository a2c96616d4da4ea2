/**
 * The built-in workload: a linearizable key-value register store (read, write, compare-and-set per
 * key) replicated through Raft, driven by simulated clients that record a history.
 *
 * @module
 */
import { Packr, Unpackr } from 'msgpackr';
import { RaftLeaseError } from '../src/raft/index.js';
import type { StateMachine } from '../src/runtime/index.js';
import type { HistoryEvent } from './linearizability.js';

/** A value in the store; null means absent. */
export type KvValue = string | number | null;

/** A command of the key-value state machine. */
export type KvCommand =
  | { readonly f: 'read'; readonly key: string }
  | { readonly f: 'write'; readonly key: string; readonly value: KvValue }
  | { readonly f: 'cas'; readonly key: string; readonly expected: KvValue; readonly value: KvValue };

/** What applying a command returned: the value read, or whether a write or CAS took effect. */
export type KvResult = { readonly f: 'read'; readonly value: KvValue } | { readonly f: 'write' } | { readonly f: 'cas'; readonly applied: boolean };

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

/**
 * Commands (a few dozen bytes) are decoded from one reused buffer: msgpackr builds a DataView for
 * every new input array, which cost more than decoding the command, and every node decodes every
 * command it applies. Nothing decoded aliases the buffer (commands hold only strings and numbers).
 */
const DECODE_SCRATCH_BYTES = 1024;
const decodeScratch = new Uint8Array(DECODE_SCRATCH_BYTES);

/** Encodes a command for the log. */
export function encodeKvCommand(command: KvCommand): Uint8Array {
  switch (command.f) {
    case 'read':
      return packr.pack(['r', command.key]);
    case 'write':
      return packr.pack(['w', command.key, command.value]);
    case 'cas':
      return packr.pack(['c', command.key, command.expected, command.value]);
  }
}

function isValue(value: unknown): value is KvValue {
  return value === null || typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}

/** Decodes a command; null for anything malformed (the state machine ignores it deterministically). */
export function decodeKvCommand(bytes: Uint8Array): KvCommand | null {
  let value: unknown;
  try {
    if (bytes.byteLength <= DECODE_SCRATCH_BYTES) {
      decodeScratch.set(bytes);
      value = unpackr.unpack(decodeScratch, bytes.byteLength);
    } else {
      value = unpackr.unpack(bytes);
    }
  } catch {
    return null;
  }
  if (!Array.isArray(value) || typeof value[1] !== 'string') return null;
  const [tag, key, a, b] = value as [unknown, string, unknown, unknown];
  if (tag === 'r' && value.length === 2) return { f: 'read', key };
  if (tag === 'w' && value.length === 3 && isValue(a)) return { f: 'write', key, value: a };
  if (tag === 'c' && value.length === 4 && isValue(a) && isValue(b)) return { f: 'cas', key, expected: a, value: b };
  return null;
}

/** The replicated register store. Deterministic: no clock, no randomness. */
export class KvStateMachine implements StateMachine<KvResult | null> {
  private readonly values = new Map<string, KvValue>();

  /** The current value of `key` on this replica (for reads served after a read index). */
  get(key: string): KvValue {
    return this.values.get(key) ?? null;
  }

  apply(command: Uint8Array): KvResult | null {
    const decoded = decodeKvCommand(command);
    if (decoded === null) return null;
    switch (decoded.f) {
      case 'read':
        return { f: 'read', value: this.values.get(decoded.key) ?? null };
      case 'write':
        this.values.set(decoded.key, decoded.value);
        return { f: 'write' };
      case 'cas': {
        const current = this.values.get(decoded.key) ?? null;
        if (current !== decoded.expected) return { f: 'cas', applied: false };
        this.values.set(decoded.key, decoded.value);
        return { f: 'cas', applied: true };
      }
    }
  }

  /** The whole store, keys sorted so equal states give byte-identical snapshots. */
  snapshot(): Uint8Array {
    const keys = [...this.values.keys()].sort();
    return packr.pack(keys.map((key) => [key, this.values.get(key) ?? null]));
  }

  /** Replaces the store with a snapshot's contents. Throws on bytes that are not a kv snapshot. */
  restore(data: Uint8Array): void {
    const decoded: unknown = unpackr.unpack(data);
    if (!Array.isArray(decoded)) throw new TypeError('kv snapshot is not an array');
    this.values.clear();
    for (const pair of decoded as unknown[]) {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || !isValue(pair[1])) throw new TypeError('kv snapshot holds a malformed pair');
      this.values.set(pair[0], pair[1]);
    }
  }
}

/** How a client reached a node. */
export interface KvNodeAccess {
  /** Proposes on node `index`, or returns null if that node is down. */
  propose(index: number, command: Uint8Array, timeoutMs: number): Promise<{ readonly result: KvResult | null }> | null;
  /** A linearizable read of `key` on node `index` (ReadIndex), or null if that node is down. */
  read(index: number, key: string, timeoutMs: number): Promise<KvValue> | null;
  nodeCount(): number;
}

/** Hooks into the simulated world the clients need. */
export interface KvWorldAccess {
  nowNs(): number;
  /** Uniform integer in [min, max] from the simulation's PRNG. */
  between(min: number, max: number): number;
  /** Runs `run` after `delayNs` of true time; `node` is the node it talks to (deferred while paused). */
  schedule(delayNs: number, label: string, node: number | null, run: () => void): void;
}

/** Options of the kv workload. */
export interface KvWorkloadOptions {
  /** Concurrent clients. */
  readonly clients: number;
  /** Keys the clients share. */
  readonly keys: number;
  /** A client's timeout for one operation, in milliseconds of the node's clock. */
  readonly timeoutMs: number;
  /** Pause between a client's operations: uniform in [0, thinkMaxMs]. */
  readonly thinkMaxMs: number;
  /** Serve reads through the log (true) instead of ReadIndex (false, the default). */
  readonly readsThroughLog: boolean;
}

/** Default workload shape: a handful of clients contending on a few keys. */
export const DEFAULT_KV_WORKLOAD: KvWorkloadOptions = Object.freeze({ clients: 4, keys: 3, timeoutMs: 1_000, thinkMaxMs: 50, readsThroughLog: false });

interface Outstanding {
  readonly process: number;
  readonly node: number;
  readonly f: KvCommand['f'];
  readonly key: string;
  readonly invokeValue: HistoryEvent['value'];
  settled: boolean;
}

/**
 * Clients that issue random reads, writes and compare-and-sets, each recording invoke and completion
 * events. A definite failure (the proposal was never appended) is `fail`; an unknown outcome (timeout,
 * the node crashed or stopped) is `info`, and that client continues as a new process, as in Jepsen.
 * Written values are unique, which makes the linearizability check precise.
 */
export class KvWorkload {
  readonly history: HistoryEvent[] = [];
  private readonly outstanding = new Set<Outstanding>();
  private nextProcess = 0;
  private nextValue = 1;
  private running = true;

  constructor(
    private readonly world: KvWorldAccess,
    private readonly access: KvNodeAccess,
    private readonly options: KvWorkloadOptions,
  ) {}

  /** Starts every client. */
  start(): void {
    for (let client = 0; client < this.options.clients; client++) this.scheduleNext(this.nextProcess++);
  }

  /** Stops issuing new operations; outstanding ones still complete. */
  stop(): void {
    this.running = false;
  }

  /** Node `index` crashed: its outstanding operations end as indeterminate. */
  onCrash(index: number): void {
    for (const op of [...this.outstanding]) {
      if (op.node !== index || op.settled) continue;
      this.complete(op, 'info', op.f === 'read' ? null : op.invokeValue);
      this.scheduleNext(this.nextProcess++);
    }
  }

  /** Ends every outstanding operation as indeterminate (the run is over). */
  finish(): void {
    for (const op of [...this.outstanding]) if (!op.settled) this.complete(op, 'info', op.f === 'read' ? null : op.invokeValue);
  }

  private scheduleNext(process: number): void {
    if (!this.running) return;
    const node = this.world.between(0, this.access.nodeCount() - 1);
    const thinkNs = this.world.between(0, this.options.thinkMaxMs * 1_000_000);
    this.world.schedule(thinkNs, `client ${process}`, node, () => {
      this.invoke(process, node);
    });
  }

  private invoke(process: number, node: number): void {
    if (!this.running) return;
    const key = `k${this.world.between(0, this.options.keys - 1)}`;
    const roll = this.world.between(0, 9);
    let command: KvCommand;
    if (roll < 4) command = { f: 'read', key };
    else if (roll < 8) command = { f: 'write', key, value: this.nextValue++ };
    else command = { f: 'cas', key, expected: this.world.between(0, this.nextValue - 1) || null, value: this.nextValue++ };
    const invokeValue: HistoryEvent['value'] = command.f === 'read' ? null : command.f === 'write' ? command.value : [command.expected, command.value];
    const op: Outstanding = { process, node, f: command.f, key, invokeValue, settled: false };
    this.history.push({ process, type: 'invoke', f: command.f, key, value: invokeValue, time: this.world.nowNs() });
    this.outstanding.add(op);
    if (command.f === 'read' && !this.options.readsThroughLog) {
      this.readViaReadIndex(op, process, node, key);
      return;
    }
    const pending = this.access.propose(node, encodeKvCommand(command), this.options.timeoutMs);
    if (pending === null) {
      // The node is down: the request was refused before it was sent.
      this.complete(op, 'fail', invokeValue);
      this.scheduleNext(process);
      return;
    }
    pending.then(
      ({ result }) => {
        if (op.settled) return;
        if (result === null) this.complete(op, 'fail', invokeValue);
        else if (result.f === 'read') this.complete(op, 'ok', result.value);
        else if (result.f === 'cas' && !result.applied) this.complete(op, 'fail', invokeValue);
        else this.complete(op, 'ok', invokeValue);
        this.scheduleNext(process);
      },
      (error: unknown) => {
        if (op.settled) return;
        const definite = error instanceof RaftLeaseError && ['ProposalDropped', 'NotLeader', 'ProposalTooLarge', 'TooManyPendingProposals'].includes(error.code);
        this.complete(op, definite ? 'fail' : 'info', op.f === 'read' ? null : invokeValue);
        // After an indeterminate outcome the client carries on as a new process.
        this.scheduleNext(definite ? process : this.nextProcess++);
      },
    );
  }

  private readViaReadIndex(op: Outstanding, process: number, node: number, key: string): void {
    const pending = this.access.read(node, key, this.options.timeoutMs);
    if (pending === null) {
      this.complete(op, 'fail', null);
      this.scheduleNext(process);
      return;
    }
    pending.then(
      (value) => {
        if (op.settled) return;
        this.complete(op, 'ok', value);
        this.scheduleNext(process);
      },
      () => {
        if (op.settled) return;
        // A read that did not complete changed nothing, whatever the reason.
        this.complete(op, 'fail', null);
        this.scheduleNext(process);
      },
    );
  }

  private complete(op: Outstanding, type: 'ok' | 'fail' | 'info', value: HistoryEvent['value']): void {
    op.settled = true;
    this.outstanding.delete(op);
    this.history.push({ process: op.process, type, f: op.f, key: op.key, value, time: this.world.nowNs() });
  }
}
