/**
 * The leader's view of one follower: how much of the log it holds and how much is in flight to it.
 *
 * @module
 */
import { invariant } from './errors.js';
import type { LogIndex, Snapshot } from './types.js';

/**
 * - `Probe`: the leader does not know where the follower's log matches; it sends one AppendEntries at
 *   a time and waits for the answer (or the next heartbeat) before sending another.
 * - `Replicate`: the follower is known to match up to `match`; the leader streams entries optimistically,
 *   bounded by the in-flight window.
 * - `Snapshot`: the follower needs entries the leader has compacted away; the leader streams a
 *   snapshot in chunks and sends no entries until the follower has installed it (paper §7).
 */
export type ProgressState = 'Probe' | 'Replicate' | 'Snapshot';

/** A snapshot transfer to one follower. */
export interface SnapshotTransfer {
  /** The snapshot being sent; kept even if the leader takes a newer one meanwhile. */
  readonly snapshot: Snapshot;
  /** Bytes sent so far (chunks from 0 up to here). */
  sentBytes: number;
  /** Bytes the follower acknowledged holding. */
  ackedBytes: number;
  /** Whether the last chunk has been sent (and not rewound since). */
  doneSent: boolean;
  /** Set by a heartbeat answer, cleared by any chunk acknowledgement: two heartbeats without progress mean a lost chunk. */
  stalled: boolean;
  /**
   * The offset the leader last rewound to on a gap answer (null before any, and after a stall resend).
   * Chunks from there on were sent again in order, so a gap answer inside that range comes from an
   * older window still in flight and is ignored: resending a window for each would multiply traffic.
   */
  rewoundTo: number | null;
  /**
   * `sentBytes` when the leader last rewound: chunks of the earlier window, still in flight, lie below
   * it. Once the follower acknowledged this far none of them can report a gap, and `rewoundTo` is
   * cleared so that a later, separate loss gets its own rewind at once.
   */
  rewindEndBytes: number;
}

/** A bounded FIFO of in-flight AppendEntries messages, each remembered by its last index and size. */
export class Inflights {
  private readonly lastIndexes: number[] = [];
  private readonly byteCounts: number[] = [];
  private head = 0;
  private bytesInFlight = 0;

  constructor(
    private readonly maxMessages: number,
    private readonly maxBytes: number,
  ) {}

  /** Messages in flight. */
  count(): number {
    return this.lastIndexes.length - this.head;
  }

  /** Payload bytes in flight. */
  bytes(): number {
    return this.bytesInFlight;
  }

  /** Whether another message may be sent. */
  full(): boolean {
    return this.count() >= this.maxMessages || this.bytesInFlight >= this.maxBytes;
  }

  /** Records a message whose last entry is `lastIndex`. */
  add(lastIndex: LogIndex, byteCount: number): void {
    invariant(!this.full(), 'adding to a full in-flight window');
    const previous = this.lastIndexes[this.lastIndexes.length - 1];
    invariant(this.count() === 0 || previous === undefined || lastIndex > previous, 'in-flight indexes must increase');
    this.lastIndexes.push(lastIndex);
    this.byteCounts.push(byteCount);
    this.bytesInFlight += byteCount;
  }

  /** Forgets every message whose last index is at most `index` (the follower acknowledged them). */
  freeUpTo(index: LogIndex): void {
    while (this.head < this.lastIndexes.length) {
      const last = this.lastIndexes[this.head];
      if (last === undefined || last > index) break;
      this.bytesInFlight -= this.byteCounts[this.head] ?? 0;
      this.head++;
    }
    // Compact occasionally so the arrays stay bounded by the window size.
    if (this.head > 64 && this.head * 2 > this.lastIndexes.length) {
      this.lastIndexes.splice(0, this.head);
      this.byteCounts.splice(0, this.head);
      this.head = 0;
    }
  }

  /** Forgets the oldest message in flight (it may have been lost), opening the window by one. */
  freeFirstOne(): void {
    const first = this.lastIndexes[this.head];
    if (first !== undefined) this.freeUpTo(first as LogIndex);
  }

  /** Forgets everything in flight. */
  reset(): void {
    this.lastIndexes.length = 0;
    this.byteCounts.length = 0;
    this.head = 0;
    this.bytesInFlight = 0;
  }
}

/**
 * Replication progress of one peer, as tracked by the leader.
 *
 * Invariant: `match < next`.
 */
export class Progress {
  /** Highest index known to match the leader's log. */
  match: LogIndex;
  /** Next index to send. */
  next: LogIndex;
  state: ProgressState = 'Probe';
  /** In Probe: an AppendEntries is outstanding, wait for its answer or the next heartbeat. */
  probeSent = false;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  readonly inflights: Inflights;
  /** In Snapshot: the transfer under way. */
  snapshotTransfer: SnapshotTransfer | null = null;

  constructor(match: LogIndex, next: LogIndex, maxInflightMessages: number, maxInflightBytes: number) {
    invariant(match < next, () => `progress match ${match} must be below next ${next}`);
    this.match = match;
    this.next = next;
    this.inflights = new Inflights(maxInflightMessages, maxInflightBytes);
  }

  /** Whether the leader must hold back AppendEntries to this peer. */
  isPaused(): boolean {
    if (this.state === 'Snapshot') return true;
    return this.state === 'Probe' ? this.probeSent : this.inflights.full();
  }

  /** Switches to sending `snapshot`; entries resume once the follower has installed it. */
  becomeSnapshot(snapshot: Snapshot): void {
    this.state = 'Snapshot';
    this.probeSent = false;
    this.inflights.reset();
    this.snapshotTransfer = { snapshot, sentBytes: 0, ackedBytes: 0, doneSent: false, stalled: false, rewoundTo: null, rewindEndBytes: 0 };
  }

  /** Switches to probing from `match + 1`. */
  becomeProbe(): void {
    this.state = 'Probe';
    this.snapshotTransfer = null;
    this.probeSent = false;
    this.next = (this.match + 1) as LogIndex;
    this.inflights.reset();
  }

  /** Switches to streaming from `match + 1`. */
  becomeReplicate(): void {
    this.state = 'Replicate';
    this.snapshotTransfer = null;
    this.probeSent = false;
    this.next = (this.match + 1) as LogIndex;
    this.inflights.reset();
  }

  /** The peer acknowledged holding up to `index`. Returns whether `match` advanced. */
  maybeUpdate(index: LogIndex): boolean {
    let advanced = false;
    if (index > this.match) {
      this.match = index;
      advanced = true;
      this.probeSent = false;
    }
    if (this.next < index + 1) this.next = (index + 1) as LogIndex;
    return advanced;
  }

  /** Records AppendEntries sent with entries up to `lastIndex` (`byteCount` payload bytes). */
  sentEntries(lastIndex: LogIndex, entryCount: number, byteCount: number): void {
    if (this.state === 'Replicate') {
      if (entryCount > 0) {
        this.next = (lastIndex + 1) as LogIndex;
        this.inflights.add(lastIndex, byteCount);
      }
    } else {
      this.probeSent = true;
    }
  }

  /**
   * The peer rejected an AppendEntries whose previous index was `rejectedIndex`; `probeHint` is the
   * highest index it could match. Returns false if the rejection is stale (an answer to an older send).
   */
  maybeDecreaseTo(rejectedIndex: LogIndex, probeHint: LogIndex): boolean {
    // A rejection during a snapshot transfer answers an append sent before it.
    if (this.state === 'Snapshot') return false;
    if (this.state === 'Replicate') {
      // A rejection at or below match answers a message sent before the peer's log was known to match.
      if (rejectedIndex <= this.match) return false;
      this.next = (this.match + 1) as LogIndex;
      return true;
    }
    // In Probe only the answer to the latest probe counts.
    if (rejectedIndex !== this.next - 1) return false;
    this.next = Math.max(Math.min(rejectedIndex, probeHint + 1), this.match + 1) as LogIndex;
    this.probeSent = false;
    return true;
  }
}
