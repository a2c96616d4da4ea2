/**
 * The Ready/advance protocol around {@link Raft}: what the core wants persisted, sent and applied, and
 * the acknowledgement that it was done.
 *
 * @module
 */
import { invariant } from './errors.js';
import {
  Raft,
  type ForwardedProposalOutcome,
  type MembershipChange,
  type MembershipChangeOutcome,
  type ProposeOutcome,
  type RaftInit,
  type RaftStatus,
  type ReadIndexOutcome,
  type ReadState,
  type TransferOutcome,
} from './raft.js';
import type { Entry, HardState, LogIndex, Message, NodeId, Role, Snapshot, SnapshotMetadata } from './types.js';

/** Role and leader, reported when they change. Volatile: never persisted. */
export interface SoftState {
  readonly role: Role;
  readonly leader: NodeId | null;
}

/**
 * One batch of work for the runtime. Handle it in this order:
 * 1. send `messages` (they depend on nothing unpersisted; the leader's AppendEntries go out while its
 *    own write is in progress, thesis §10.2.1);
 * 2. write `snapshot` (if not null), `hardState` (if not null) and `entries` to stable storage in one
 *    durable batch. A snapshot replaces the whole stored log; `entries` then continue right after it.
 *    Otherwise `entries` may start at or below the last stored index, in which case the stored
 *    suffix from `entries[0].index` is replaced;
 * 3. only then send `messagesAfterPersist` (votes and acknowledgements that promise durable state);
 * 4. restore the state machine from `snapshot` (if not null), then apply `committedEntries` in order;
 * 5. call {@link RawNode.advance}.
 */
export interface Ready {
  /** New role or leader, or null when unchanged. */
  readonly softState: SoftState | null;
  /**
   * Hard state to persist, or null when unchanged — or when only the commit index changed and nothing
   * else needs a write: the commit index then rides along with the next write (see `ready()`).
   */
  readonly hardState: HardState | null;
  /**
   * A snapshot received from the leader: persist it (replacing the stored log) and restore the state
   * machine from it before applying `committedEntries`. Null almost always.
   */
  readonly snapshot: Snapshot | null;
  /** Log entries to persist. */
  readonly entries: readonly Entry[];
  /** Messages to send now. */
  readonly messages: readonly Message[];
  /** Messages to send only after `hardState` and `entries` are durable. */
  readonly messagesAfterPersist: readonly Message[];
  /** Committed, durable entries to apply, in log order. */
  readonly committedEntries: readonly Entry[];
  /** Answers from the leader to proposals this node forwarded. */
  readonly forwardedOutcomes: readonly ForwardedProposalOutcome[];
  /** Read indexes (or refusals) for this node's {@link RawNode.readIndex} requests. */
  readonly readStates: readonly ReadState[];
  /** Whether step 2 needs a durable write (a snapshot, a hard state or entries to persist). */
  readonly mustPersist: boolean;
}

/**
 * The pure Raft core as the runtime drives it. No I/O, no timers, no clock: a value a test can step by
 * hand.
 *
 * @example
 * ```ts
 * const node = new RawNode({ config, prng: new SeededPrng(1), hardState: INITIAL_HARD_STATE, entries: [], applied: logIndex(0) });
 * node.campaign();
 * while (node.hasReady()) {
 *   const ready = node.ready();
 *   // send ready.messages; persist ready.hardState and ready.entries; send ready.messagesAfterPersist;
 *   // apply ready.committedEntries
 *   node.advance();
 * }
 * ```
 */
export class RawNode {
  /** The protocol state machine, for inspection. Drive it through this class. */
  readonly raft: Raft;
  private lastHardState: HardState;
  private lastSoftState: SoftState;
  /** The Ready handed out and not yet acknowledged. */
  private outstanding: { readonly lastCommittedIndex: LogIndex | null; readonly snapshotIndex: LogIndex | null } | null = null;

  constructor(init: RaftInit) {
    this.raft = new Raft(init);
    this.lastHardState = init.hardState;
    this.lastSoftState = { role: this.raft.role(), leader: this.raft.leader() };
  }

  /** Advances logical time by one tick. */
  tick(): void {
    this.raft.tick();
  }

  /** Feeds one message from a peer. */
  step(message: Message): void {
    this.raft.step(message);
  }

  /** Offers data for the log; see {@link Raft.propose}. */
  propose(data: Uint8Array, requestId = 0): ProposeOutcome {
    return this.raft.propose(data, requestId);
  }

  /** Hands leadership to `target`; see {@link Raft.transferLeadership}. */
  transferLeadership(target: NodeId): TransferOutcome {
    return this.raft.transferLeadership(target);
  }

  /** Proposes a membership change (leader only); see {@link Raft.proposeMembershipChange}. */
  proposeMembershipChange(change: MembershipChange): MembershipChangeOutcome {
    return this.raft.proposeMembershipChange(change);
  }

  /**
   * The metadata a snapshot of the state machine at applied index `index` must carry: the term of
   * that entry and the membership in effect there.
   */
  snapshotMetadata(index: LogIndex): SnapshotMetadata {
    const log = this.raft.log;
    invariant(index <= log.applied(), () => `snapshot at ${index} is beyond the applied index ${log.applied()}`);
    const entryTerm = log.termAt(index);
    invariant(entryTerm !== undefined, () => `snapshot at ${index}: the log no longer holds that entry`);
    return { index, term: entryTerm, membership: log.membershipAt(index) };
  }

  /**
   * Records a durable snapshot and compacts the log up to `compactIndex` (at most the snapshot's
   * index); see {@link Raft.compact}. Returns the index the log was compacted to.
   */
  compact(snapshot: Snapshot, compactIndex: LogIndex): LogIndex {
    return this.raft.compact(snapshot, compactIndex);
  }

  /** Asks for a linearizable read index; see {@link Raft.readIndex}. */
  readIndex(requestId: number): ReadIndexOutcome {
    return this.raft.readIndex(requestId);
  }

  /** Campaigns at once instead of waiting for the election timeout. */
  campaign(): void {
    this.raft.campaign();
  }

  /** A snapshot of the node's state. */
  status(): RaftStatus {
    return this.raft.status();
  }

  /** Whether a Ready has work in it. False while a Ready is outstanding. */
  hasReady(): boolean {
    if (this.outstanding !== null) return false;
    const log = this.raft.log;
    return (
      this.raft.hasOutput() ||
      log.hasUnstableEntries() ||
      log.hasEntriesToApply() ||
      this.hardStateChanged() ||
      this.softStateChanged()
    );
  }

  /** Collects the next batch of work. Call {@link advance} when it is done before asking again. */
  ready(): Ready {
    invariant(this.outstanding === null, 'ready() called again before advance()');
    const output = this.raft.takeOutput();
    const snapshot = this.raft.takeSnapshotToInstall();
    const log = this.raft.log;
    const entries = log.takeUnstableEntries();
    const currentHardState = this.raft.hardState();
    // Only a new term or vote, new entries or a snapshot need a durable write before this Ready's
    // messages and applies (Figure 2). The commit index alone does not (etcd's MustSync does the same):
    // a node that restarts with an older one learns it again from the leader, and applying committed
    // entries early is safe because they are durable on a majority. A commit-only change therefore
    // costs no fsync; it rides along with the next write.
    const mustPersist = snapshot !== null || entries.length > 0 || currentHardState.term !== this.lastHardState.term || currentHardState.vote !== this.lastHardState.vote;
    const hardState = !mustPersist || sameHardState(currentHardState, this.lastHardState) ? null : currentHardState;
    if (hardState !== null) {
      invariant(hardState.term >= this.lastHardState.term, () => `persisted term would go back from ${this.lastHardState.term} to ${hardState.term}`);
      invariant(hardState.commit >= this.lastHardState.commit, () => `persisted commit would go back from ${this.lastHardState.commit} to ${hardState.commit}`);
      this.lastHardState = hardState;
    }
    let softState: SoftState | null = null;
    if (this.softStateChanged()) {
      softState = { role: this.raft.role(), leader: this.raft.leader() };
      this.lastSoftState = softState;
    }
    const committedEntries = log.takeEntriesToApply(this.raft.config.maxApplyEntriesPerReady);
    this.outstanding = { lastCommittedIndex: committedEntries.at(-1)?.index ?? null, snapshotIndex: snapshot?.metadata.index ?? null };
    return {
      softState,
      hardState,
      snapshot,
      entries,
      messages: output.messages,
      messagesAfterPersist: output.messagesAfterPersist,
      committedEntries,
      forwardedOutcomes: output.forwardedOutcomes,
      readStates: output.readStates,
      mustPersist,
    };
  }

  /** Acknowledges the outstanding Ready: its writes are durable and its entries applied. */
  advance(): void {
    const outstanding = this.outstanding;
    invariant(outstanding !== null, 'advance() called without an outstanding ready()');
    this.outstanding = null;
    if (outstanding.snapshotIndex !== null) this.raft.log.appliedTo(outstanding.snapshotIndex);
    if (outstanding.lastCommittedIndex !== null) this.raft.log.appliedTo(outstanding.lastCommittedIndex);
    this.raft.onPersisted(this.lastHardState.term);
  }

  private hardStateChanged(): boolean {
    const last = this.lastHardState;
    // A commit-only change is not a reason for a Ready: its entries to apply are (hasEntriesToApply).
    return this.raft.term() !== last.term || this.raft.vote() !== last.vote;
  }

  private softStateChanged(): boolean {
    return this.raft.role() !== this.lastSoftState.role || this.raft.leader() !== this.lastSoftState.leader;
  }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
