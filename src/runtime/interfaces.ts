/**
 * The boundaries between the runtime and the world. Production plugs in TCP, files and the system
 * clock; tests and the simulator plug in memory and virtual time. `RaftNode` sees only these.
 *
 * @module
 */
import type { Entry, HardState, LogIndex, Message, Snapshot, SnapshotMetadata } from '../raft/index.js';

/** A scheduled callback that can be cancelled. */
export interface Timer {
  /** Prevents the callback if it has not run yet. Idempotent. */
  cancel(): void;
}

/**
 * Monotonic time and timers. All of the runtime's notion of time goes through this, so a simulator
 * can run a node on virtual time (with skew and drift) and fire its timers when it chooses.
 */
export interface Clock {
  /** Milliseconds on a monotonic clock; only differences are meaningful. */
  nowMs(): number;
  /** Calls `callback` once, `delayMs` from now on this clock. Never calls it synchronously. */
  setTimer(delayMs: number, callback: () => void): Timer;
}

/** Receives messages addressed to this node. */
export type MessageHandler = (message: Message) => void;

/**
 * Best-effort message delivery between nodes. Raft tolerates loss, duplication and reordering, so a
 * transport may drop a message whenever it must (a full queue, a broken connection) rather than block.
 */
export interface Transport {
  /** Starts delivering messages for this node to `handler`. Called once, before any `send`. */
  listen(handler: MessageHandler): void;
  /** Queues a message for `message.to`. Never blocks and never calls a handler synchronously. */
  send(message: Message): void;
  /**
   * Optional: writes what `send` queued now instead of at the transport's own moment. The runtime
   * calls it where a message is on the critical path of a write (entries to replicate before the
   * leader's own disk write, an acknowledgement after a persist), so that a transport that batches
   * (the TCP transport writes at the next turn of the event loop) can hold back everything else —
   * such as commit notifications — until answers to clients have gone out. Never calls a handler
   * synchronously. A transport that sends at once does not need it.
   */
  flush?(): void;
  /** Stops sending and receiving. */
  close(): Promise<void>;
}

/** What a node finds in its storage when it starts. */
export interface PersistentState {
  readonly hardState: HardState;
  /**
   * The stored log, contiguous: from index 1 without a snapshot; with one, it may still hold entries
   * the snapshot covers (the runtime skips them) and continues after it.
   */
  readonly entries: readonly Entry[];
  /** The newest durable snapshot, or null (omitted by storages that never store one). */
  readonly snapshot?: Snapshot | null;
}

/** One durable write: the outcome of one Ready batch (group commit). */
export interface PersistBatch {
  /**
   * A snapshot received from the leader, or null. When set, it replaces the stored snapshot and the
   * whole stored log, atomically with the rest of the batch; `entries` then continue right after it.
   */
  readonly snapshot: Snapshot | null;
  /** New hard state, or null when unchanged. */
  readonly hardState: HardState | null;
  /**
   * Entries to store. When `entries[0].index` is at or below the last stored index, the stored suffix
   * from that index is replaced (a follower overwriting a conflicting tail).
   */
  readonly entries: readonly Entry[];
}

/**
 * Durable storage of the hard state and the log. `persist` resolves only once the batch survives a
 * crash (fsync); the runtime sends no message that depends on the batch before that. A rejected
 * `persist` stops the node: after a failed write nothing about durability is known.
 */
export interface Storage {
  /** Reads everything stored. Called once at start. */
  load(): Promise<PersistentState>;
  /** Durably writes one batch, atomically with respect to crashes of this process. */
  persist(batch: PersistBatch): Promise<void>;
  /**
   * Durably stores a snapshot the node took of its own state machine, then discards stored entries
   * up to `compactIndex` (at most the snapshot's index). A crash at any point must leave either the
   * old snapshot with the full log, or the new snapshot with a log that still continues after it:
   * write the snapshot durably (for files: temporary file, fsync, rename) before discarding entries.
   */
  saveSnapshot(snapshot: Snapshot, compactIndex: LogIndex): Promise<void>;
  /** Releases resources. */
  close(): Promise<void>;
}

/**
 * The application's replicated state machine. It must be deterministic: the same commands in the same
 * order produce the same state and results on every node. It must not read the clock or randomness.
 */
export interface StateMachine<Result = unknown> {
  /** Applies one committed command. Its result resolves the `propose()` that created the entry. */
  apply(command: Uint8Array, index: LogIndex): Result | Promise<Result>;
  /**
   * Serializes the current state (everything applied so far). The runtime calls it between applies,
   * so no command is applied while it runs. Without `snapshot` and `restore` the node never compacts
   * its log and cannot install a snapshot from a leader.
   */
  snapshot?(): Uint8Array | Promise<Uint8Array>;
  /**
   * Replaces the whole state with a snapshot's (taken by `snapshot` on this or another node). Called
   * at start when storage holds a snapshot, and when the leader sends one.
   */
  restore?(data: Uint8Array, metadata: SnapshotMetadata): void | Promise<void>;
}
