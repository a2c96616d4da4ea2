/**
 * The Raft protocol state machine of one node: elections, replication, commitment.
 *
 * Pure and synchronous: it reads no clock, opens no socket, owns no timer. Time arrives as `tick()`,
 * the network as `step(message)`, clients as `propose(data)`; everything it wants done is queued and
 * collected by {@link RawNode.ready}. Section numbers refer to the Raft paper (Ongaro & Ousterhout,
 * 2014) and, where marked "thesis", to Ongaro's dissertation (2014).
 *
 * @module
 */
import { BoundedMap } from './bounded-map.js';
import { leaseDurationTicks, type InjectedBug, type RaftConfig } from './config.js';
import { assertNever, invariant } from './errors.js';
import { encodeMembership } from './codec.js';
import { entryBytes, RaftLog } from './log.js';
import { randomIntBelow, type Prng } from './prng.js';
import { Progress, type ProgressState } from './progress.js';
import { committedIndex, quorumSize, voteOutcome } from './quorum.js';
import {
  EntryType,
  type AppendRequest,
  type AppendResponse,
  type Entry,
  type HardState,
  type Heartbeat,
  type InstallSnapshot,
  type LogIndex,
  type Membership,
  type Message,
  type NodeId,
  type ProposalRefusal,
  type ProposeRequest,
  type ProposeResponse,
  type ReadIndexRequest,
  type ReadIndexResponse,
  type Role,
  type Snapshot,
  type SnapshotResponse,
  type Term,
  type VoteRequest,
  type VoteResponse,
} from './types.js';

/** What the core needs to start: configuration, randomness, and what Storage recovered. */
export interface RaftInit {
  readonly config: RaftConfig;
  /** Source of election jitter. Seed it for reproducible runs. */
  readonly prng: Prng;
  /** Persisted term, vote and commit index (all zero/null for a new node). */
  readonly hardState: HardState;
  /** Persisted log entries, contiguous, starting right after the snapshot (from index 1 without one). */
  readonly entries: readonly Entry[];
  /** Index the state machine already reflects: the restored snapshot's, or 0. */
  readonly applied: LogIndex;
  /** The stored snapshot, if any: the log starts after it and the leader sends it to lagging followers. */
  readonly snapshot?: Snapshot | null;
}

/**
 * A membership change (thesis §4.1 single-server changes): add a node as a learner, promote a
 * caught-up learner to voter, or remove a node (voter or learner).
 */
export interface MembershipChange {
  readonly kind: 'AddLearner' | 'PromoteLearner' | 'RemoveNode';
  readonly node: NodeId;
}

/** Why a membership change was refused. */
export type MembershipChangeRefusal =
  /** Only the leader changes membership. */
  | 'NotLeader'
  /** Another change is not yet committed, the leader has not committed an entry of its term yet, or a leadership transfer is under way: retry shortly. */
  | 'ChangeInProgress'
  /** The learner's log is behind the leader's commit index, or it has not answered recently. */
  | 'LearnerNotCaughtUp'
  /** The change makes no sense for the current membership (see the message). */
  | 'InvalidChange';

/** What happened to a membership change. */
export type MembershipChangeOutcome =
  | { readonly kind: 'Appended'; readonly index: LogIndex; readonly term: Term; readonly membership: Membership }
  | { readonly kind: 'Refused'; readonly refusal: MembershipChangeRefusal; readonly reason: string; readonly leaderHint: NodeId | null };

/** What happened to a proposal handed to {@link Raft.propose}. */
export type ProposeOutcome =
  /** Appended to this leader's log at `index` in `term`; it commits unless a new leader overwrites it. */
  | { readonly kind: 'Appended'; readonly index: LogIndex; readonly term: Term }
  /** Sent to the leader; its answer arrives as a {@link ForwardedProposalOutcome}. */
  | { readonly kind: 'Forwarded'; readonly leader: NodeId }
  /** Not accepted; nothing was appended. */
  | { readonly kind: 'Refused'; readonly refusal: ProposalRefusal; readonly leaderHint: NodeId | null };

/** The leader's answer to a proposal this node forwarded. */
export interface ForwardedProposalOutcome {
  readonly requestId: number;
  /** Index and term of the appended entry; 0 when refused. */
  readonly index: LogIndex;
  readonly term: Term;
  readonly refusal: ProposalRefusal | null;
  readonly leaderHint: NodeId | null;
}

/**
 * The outcome of a read-index request (thesis §6.4): once this node has applied up to `index`, a read
 * of its state machine is linearizable. Refused reads carry a `refusal` and index 0.
 */
export interface ReadState {
  readonly requestId: number;
  readonly index: LogIndex;
  readonly refusal: ProposalRefusal | null;
  readonly leaderHint: NodeId | null;
}

/** What happened to a read handed to {@link Raft.readIndex}. */
export type ReadIndexOutcome =
  /** Queued; its {@link ReadState} arrives in a later Ready. */
  | { readonly kind: 'Pending' }
  | { readonly kind: 'Refused'; readonly refusal: ProposalRefusal; readonly leaderHint: NodeId | null };

/** A read waiting at the leader. */
interface PendingRead {
  readonly requestId: number;
  /** Where to deliver the read index: this node, or the follower that forwarded the read. */
  readonly from: NodeId;
}

/** A group of reads confirmed by one heartbeat round. */
interface ReadRound {
  /** Heartbeat context of the round. */
  readonly context: number;
  /** The commit index when the reads arrived: their read index. */
  readonly index: LogIndex;
  readonly reads: PendingRead[];
  /** Voters that answered a heartbeat of this round or a later one. */
  readonly acks: Set<NodeId>;
}

/** What happened to a leadership transfer request. */
export type TransferOutcome =
  /** Under way: the target is being caught up or has been told to campaign. */
  | { readonly kind: 'Started' }
  /** Nothing to do: this node is already the target. */
  | { readonly kind: 'AlreadyLeader' }
  | { readonly kind: 'Refused'; readonly reason: 'NotLeader' | 'UnknownTarget' };

/** Most reads a leader holds waiting for confirmation; more are refused (ProposalDropped). */
const MAX_PENDING_READS = 100_000;

/** The empty list handed out for an empty output, shared (frozen) so that an idle Ready allocates none. */
const NOTHING: readonly never[] = Object.freeze([]);

/** Replication progress of one peer as reported in {@link RaftStatus}. */
export interface PeerProgress {
  readonly match: LogIndex;
  readonly next: LogIndex;
  readonly state: ProgressState;
  readonly inflightMessages: number;
  readonly recentActive: boolean;
  /** Snapshot bytes acknowledged, while a snapshot is being sent (`state` is `Snapshot`). */
  readonly snapshotAckedBytes: number | null;
}

/** A consistent picture of a node for observers. */
export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: Term;
  readonly vote: NodeId | null;
  readonly leader: NodeId | null;
  readonly lastIndex: LogIndex;
  readonly commitIndex: LogIndex;
  readonly appliedIndex: LogIndex;
  /**
   * Index of the newest snapshot this node holds (0 without one). The log may still hold entries
   * before it: the trailing window kept for slow followers.
   */
  readonly snapshotIndex: LogIndex;
  /** The membership in effect (the last membership entry in the log, committed or not). */
  readonly membership: Membership;
  /** Per-peer progress; only a leader tracks it, so it is empty elsewhere. */
  readonly progress: ReadonlyMap<NodeId, PeerProgress>;
}

const EMPTY = new Uint8Array(0);

/**
 * The Raft node state machine. Most users want {@link RawNode} (which adds the Ready/advance
 * protocol) or the runtime's `RaftNode` (which adds I/O).
 *
 * Invariants: the term never decreases; a node votes at most once per term; a leader never truncates
 * its own log; `applied ≤ committed ≤ lastIndex`.
 */
export class Raft {
  readonly id: NodeId;
  readonly config: RaftConfig;
  readonly log: RaftLog;
  private readonly prng: Prng;
  /** Deliberate bugs switched on for checker tests; empty in every real configuration. */
  private readonly bugs: ReadonlySet<InjectedBug>;

  private currentTerm: Term;
  private votedFor: NodeId | null;
  private currentRole: Role = 'Follower';
  private leaderId: NodeId | null = null;

  /** Ticks since the last valid leader contact (follower) or the last CheckQuorum round (leader). */
  private electionElapsedTicks = 0;
  /** Ticks since the last heartbeat broadcast (leader only). */
  private heartbeatElapsedTicks = 0;
  /** Drawn from [electionTimeoutTicks, 2·electionTimeoutTicks) at every role change (paper §5.2). */
  private randomizedElectionTimeoutTicks: number;

  /** Votes received in the current (pre-)election. */
  private readonly votes = new Map<NodeId, boolean>();
  /** Leader only: progress of every voter, this node included. */
  private readonly progress = new Map<NodeId, Progress>();
  /** Leader only: payload bytes appended in this term and not yet committed. */
  private uncommittedBytes = 0;
  /** Leader only: proposals appended since the last broadcast, sent in one batch per peer. */
  private appendPending = false;
  /** Leader only: forwarded proposals already appended, so a duplicated request is not appended twice. */
  private readonly forwardedProposals: BoundedMap<string, { readonly index: LogIndex; readonly term: Term; readonly refusal: ProposalRefusal | null }>;

  /** The durable term this incarnation started with. */
  private readonly startTerm: Term;
  /** The highest term known to be durable (persisted by a completed Ready). */
  private durableTerm: Term;
  /** Terms this incarnation led (the most recent few). */
  private readonly termsLed: Term[] = [];
  /** Leader only: the node leadership is being handed to, or null (thesis §3.10). */
  private transferTarget: NodeId | null = null;
  /** Ticks since the transfer started; it is abandoned after an election timeout. */
  private transferElapsedTicks = 0;
  /** Leader only: reads that wait for the leader's first commit in its term (thesis §6.4 step 1). */
  private readsAwaitingCommit: PendingRead[] = [];
  /** Leader only: reads that arrived since the last heartbeat round was started. */
  private readsUnsent: PendingRead[] = [];
  /** Leader only: read rounds waiting for a quorum of heartbeat answers, oldest first. */
  private readRounds: ReadRound[] = [];
  /** Last heartbeat context used (read rounds; every heartbeat with lease-based reads). */
  private lastReadContext = 0;
  /** Lease-based reads: ticks since this node became leader. */
  private leaderTicks = 0;
  /** Lease-based reads: ticks since this incarnation started. */
  private ticksSinceStart = 0;
  /** Lease-based reads: leader tick at which each recent heartbeat context was sent. */
  private heartbeatSentTick = new Map<number, number>();
  /** Lease-based reads: per peer, the send tick of the latest heartbeat it acknowledged. */
  private readonly leaseAckTick = new Map<NodeId, number>();
  /** Lease-based reads: no more lease reads in this term (a TimeoutNow was sent: its target ignores leases). */
  private leaseRevoked = false;
  /** Lease duration in leader ticks (0 without lease-based reads). */
  private leaseTicks: number;
  /** Read indexes (or refusals) for this node's own reads. */
  private readStates: ReadState[] = [];

  /** The newest snapshot this node has: sent to followers that need compacted entries. */
  private latestSnapshot: Snapshot | null;
  /** Follower only: the snapshot being received in chunks. */
  private incomingSnapshot: {
    readonly message: InstallSnapshot;
    readonly chunks: Uint8Array[];
    receivedBytes: number;
    /** The position the latest gap answer named, and the highest chunk offset seen beyond it since. */
    gapReportedAt: number | null;
    highestOffsetSinceGap: number;
  } | null = null;
  /** A snapshot received from the leader, to be persisted and restored by the runtime. */
  private snapshotToInstall: Snapshot | null = null;

  /** Messages that may be sent at once. */
  private outbox: Message[] = [];
  /** Messages that may be sent only after the current hard state and log are durable. */
  private outboxAfterPersist: Message[] = [];
  /** Answers to this node's forwarded proposals. */
  private forwardedOutcomes: ForwardedProposalOutcome[] = [];

  constructor(init: RaftInit) {
    this.id = init.config.id;
    this.config = init.config;
    this.prng = init.prng;
    this.bugs = new Set(init.config.testOnlyBugs);
    this.forwardedProposals = new BoundedMap(init.config.maxRememberedForwardedProposals);
    this.latestSnapshot = init.snapshot ?? null;
    this.log = new RaftLog(init.snapshot?.metadata ?? null, init.entries, init.hardState.commit, init.applied, { voters: init.config.voters, learners: [] });
    this.currentTerm = init.hardState.term;
    this.startTerm = init.hardState.term;
    this.durableTerm = init.hardState.term;
    this.leaseTicks = init.config.leaseBasedReads ? leaseDurationTicks(init.config) : 0;
    if (this.leaseTicks > 0 && this.bugs.has('ReadLeaseTooLong')) this.leaseTicks = 3 * init.config.electionTimeoutTicks;
    this.votedFor = init.hardState.vote;
    this.randomizedElectionTimeoutTicks = this.drawElectionTimeout();
    // Every node starts as a follower (paper §5.2).
    this.becomeFollower(this.currentTerm, null);
  }

  // ---------------------------------------------------------------------------------------------
  // Observers

  /** Current role. */
  role(): Role {
    return this.currentRole;
  }

  /** Current term. */
  term(): Term {
    return this.currentTerm;
  }

  /** The candidate this node voted for in the current term, if any. */
  vote(): NodeId | null {
    return this.votedFor;
  }

  /** The leader this node knows of in the current term, if any. */
  leader(): NodeId | null {
    return this.leaderId;
  }

  /** State to persist. */
  hardState(): HardState {
    return { term: this.currentTerm, vote: this.votedFor, commit: this.log.committed() };
  }

  /** Whether this node is a voting member. */
  isVoter(): boolean {
    return this.log.membership().voters.includes(this.id);
  }

  /**
   * Whether this node may campaign: it votes in the membership in effect, or it voted in the committed
   * membership and the change that removed it is not committed yet. In the second case it may hold
   * the only log that contains that change (a leader that removed itself, then lost its quorum), and
   * the remaining voters cannot elect anyone else; it campaigns under the new membership (counting the
   * new voters only), commits the change, and steps down (thesis §4.2.2).
   */
  private mayCampaign(): boolean {
    return this.isVoter() || this.log.membershipAt(this.log.committed()).voters.includes(this.id);
  }

  /** The voting members in effect. */
  private voters(): readonly NodeId[] {
    return this.log.membership().voters;
  }

  /** The node leadership is being transferred to, if a transfer is under way. */
  leadershipTransferTarget(): NodeId | null {
    return this.transferTarget;
  }

  /** A snapshot of the node's state for observers. */
  status(): RaftStatus {
    const progress = new Map<NodeId, PeerProgress>();
    for (const [peer, pr] of this.progress) {
      progress.set(peer, {
        match: pr.match,
        next: pr.next,
        state: pr.state,
        inflightMessages: pr.inflights.count(),
        recentActive: pr.recentActive,
        snapshotAckedBytes: pr.snapshotTransfer?.ackedBytes ?? null,
      });
    }
    return {
      id: this.id,
      role: this.currentRole,
      term: this.currentTerm,
      vote: this.votedFor,
      leader: this.leaderId,
      lastIndex: this.log.lastIndex(),
      commitIndex: this.log.committed(),
      appliedIndex: this.log.applied(),
      snapshotIndex: this.latestSnapshot?.metadata.index ?? (0 as LogIndex),
      membership: this.log.membership(),
      progress,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Outputs, drained by RawNode

  /** Whether messages or proposal answers wait to be collected. */
  hasOutput(): boolean {
    return (
      this.appendPending ||
      this.readsUnsent.length > 0 ||
      this.outbox.length > 0 ||
      this.outboxAfterPersist.length > 0 ||
      this.forwardedOutcomes.length > 0 ||
      this.readStates.length > 0 ||
      this.snapshotToInstall !== null
    );
  }

  /** Takes the snapshot received from the leader that the runtime must persist and restore, if any. */
  takeSnapshotToInstall(): Snapshot | null {
    const snapshot = this.snapshotToInstall;
    this.snapshotToInstall = null;
    return snapshot;
  }

  /**
   * Records a snapshot the application took of its state at `snapshot.metadata.index` (which must be
   * applied and durable) and discards log entries up to `compactIndex`. The compaction point is
   * lowered where needed so the log still holds the entries right after every snapshot currently
   * being sent, so a follower that installs one can continue from the log (no snapshot loop).
   * Returns the index the log was compacted to.
   */
  compact(snapshot: Snapshot, compactIndex: LogIndex): LogIndex {
    const snapshotIndex = snapshot.metadata.index;
    invariant(snapshotIndex <= this.log.applied(), () => `snapshot at ${snapshotIndex} is beyond the applied index ${this.log.applied()}`);
    if (this.latestSnapshot === null || snapshotIndex > this.latestSnapshot.metadata.index) this.latestSnapshot = snapshot;
    let upTo = Math.min(compactIndex, snapshotIndex);
    for (const pr of this.progress.values()) {
      if (pr.snapshotTransfer !== null) upTo = Math.min(upTo, pr.snapshotTransfer.snapshot.metadata.index);
    }
    this.log.compact(upTo as LogIndex);
    return this.log.snapshotIndex();
  }

  /** The newest snapshot this node holds, if any. */
  snapshot(): Snapshot | null {
    return this.latestSnapshot;
  }

  /** Takes the queued outputs. */
  takeOutput(): {
    readonly messages: readonly Message[];
    readonly messagesAfterPersist: readonly Message[];
    readonly forwardedOutcomes: readonly ForwardedProposalOutcome[];
    readonly readStates: readonly ReadState[];
  } {
    if (this.appendPending) {
      this.appendPending = false;
      if (this.currentRole === 'Leader') this.broadcastAppend(false);
    }
    if (this.readsUnsent.length > 0 && this.currentRole === 'Leader') this.startReadRound();
    // Most Readies leave some of these lists empty: those hand out the shared empty list and keep
    // their buffer, instead of allocating a new one per Ready.
    const messages = this.outbox.length === 0 ? NOTHING : this.outbox;
    const messagesAfterPersist = this.outboxAfterPersist.length === 0 ? NOTHING : this.outboxAfterPersist;
    const forwardedOutcomes = this.forwardedOutcomes.length === 0 ? NOTHING : this.forwardedOutcomes;
    const readStates = this.readStates.length === 0 ? NOTHING : this.readStates;
    if (messages.length > 0) this.outbox = [];
    if (messagesAfterPersist.length > 0) this.outboxAfterPersist = [];
    if (forwardedOutcomes.length > 0) this.forwardedOutcomes = [];
    if (readStates.length > 0) this.readStates = [];
    return { messages, messagesAfterPersist, forwardedOutcomes, readStates };
  }

  /**
   * Storage made durable everything handed to it. A leader now counts its own copy towards the
   * commit quorum (thesis §10.2.1: the leader may send entries before its own write completes).
   */
  onPersisted(durableTerm: Term): void {
    if (durableTerm > this.durableTerm) this.durableTerm = durableTerm;
    this.log.persisted();
    if (this.currentRole !== 'Leader') return;
    const own = this.progress.get(this.id);
    invariant(own !== undefined, 'leader has no progress for itself');
    if (own.maybeUpdate(this.log.stable()) && this.maybeCommit()) this.onCommitAdvanced();
  }

  /** Leader: tell followers the new commit index, release reads, and step down if this node was removed. */
  private onCommitAdvanced(): void {
    this.broadcastAppend(true);
    this.releaseReadsAwaitingCommit();
    // Thesis §4.2.2: a leader removed from the cluster leads until the change commits, then steps down.
    if (!this.isVoter() && this.log.committed() >= this.log.lastMembershipIndex()) this.becomeFollower(this.currentTerm, null);
  }

  // ---------------------------------------------------------------------------------------------
  // Inputs

  /** Advances logical time by one tick. */
  tick(): void {
    this.ticksSinceStart++;
    if (this.currentRole === 'Leader') this.tickLeader();
    else this.tickElection();
  }

  /** Starts an election now (pre-vote first when enabled), as if the election timeout had passed. */
  campaign(): void {
    if (this.currentRole === 'Leader') return;
    this.startCampaign(this.config.preVote ? 'PreVote' : 'Election');
  }

  /**
   * Offers client data for the log. A leader appends it; a follower that knows a leader forwards it
   * (the answer comes back as a {@link ForwardedProposalOutcome} carrying `requestId`).
   */
  propose(data: Uint8Array, requestId: number): ProposeOutcome {
    if (data.byteLength > this.config.maxProposalBytes) {
      return { kind: 'Refused', refusal: 'ProposalTooLarge', leaderHint: this.leaderId };
    }
    if (this.currentRole === 'Leader') {
      const appended = this.appendProposal(data);
      if (appended === null) return { kind: 'Refused', refusal: 'ProposalDropped', leaderHint: this.transferTarget ?? this.id };
      return { kind: 'Appended', index: appended.index, term: appended.term };
    }
    if (this.leaderId === null) return { kind: 'Refused', refusal: 'ProposalDropped', leaderHint: null };
    this.send({ type: 'ProposeRequest', from: this.id, to: this.leaderId, term: 0 as Term, requestId, leaderTerm: this.currentTerm, data });
    return { kind: 'Forwarded', leader: this.leaderId };
  }

  /**
   * Hands leadership to `target` (thesis §3.10): the leader stops taking proposals, brings the target's
   * log up to date, then tells it to campaign at once (`TimeoutNow`). The transfer is abandoned if it
   * has not completed within an election timeout.
   */
  transferLeadership(target: NodeId): TransferOutcome {
    if (this.currentRole !== 'Leader') return { kind: 'Refused', reason: 'NotLeader' };
    if (target === this.id) return { kind: 'AlreadyLeader' };
    const pr = this.progress.get(target);
    if (pr === undefined || !this.voters().includes(target)) return { kind: 'Refused', reason: 'UnknownTarget' };
    this.transferTarget = target;
    this.transferElapsedTicks = 0;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(target);
    else this.sendAppend(target, true);
    return { kind: 'Started' };
  }

  /**
   * Asks for a linearizable read (thesis §6.4). The leader records its commit index, confirms it is
   * still the leader with a heartbeat round, and reports the index as a {@link ReadState}; a
   * follower forwards the request to the leader it knows. Once the node has applied up to the
   * index, reading its state machine is linearizable.
   */
  readIndex(requestId: number): ReadIndexOutcome {
    if (this.currentRole === 'Leader') {
      const refusal = this.acceptRead({ requestId, from: this.id });
      return refusal === null ? { kind: 'Pending' } : { kind: 'Refused', refusal, leaderHint: this.id };
    }
    if (this.leaderId === null) return { kind: 'Refused', refusal: 'ProposalDropped', leaderHint: null };
    this.send({ type: 'ReadIndexRequest', from: this.id, to: this.leaderId, term: 0 as Term, requestId });
    return { kind: 'Pending' };
  }

  /**
   * Processes one message from a peer. Messages not addressed to this node are ignored. Messages are
   * taken from any sender, members or not: a node whose log lags behind a membership change must
   * still accept the new members' appends and votes, or two nodes that disagree on the membership
   * could wait on each other forever. A removed server cannot disrupt the cluster: while a leader is
   * heard from, vote requests are ignored (thesis §4.2.3), and its log lacks the entry that removed
   * it, so the voters that hold that entry never vote for it. Responses from non-members find no
   * progress and are dropped.
   */
  step(message: Message): void {
    if (message.to !== this.id || message.from === this.id) return;
    if (message.type === 'ProposeRequest') {
      this.handleProposeRequest(message);
      return;
    }
    if (message.type === 'ReadIndexRequest') {
      this.handleReadIndexRequest(message);
      return;
    }
    if (message.type === 'ReadIndexResponse') {
      this.readStates.push({ requestId: message.requestId, index: message.index, refusal: message.refusal, leaderHint: message.leaderHint });
      return;
    }
    if (message.type === 'ProposeResponse') {
      this.forwardedOutcomes.push({
        requestId: message.requestId,
        index: message.index,
        term: message.entryTerm,
        refusal: message.refusal,
        leaderHint: message.leaderHint,
      });
      return;
    }
    if (!this.checkTerm(message)) return;
    switch (message.type) {
      case 'VoteRequest':
        this.handleVoteRequest(message);
        return;
      case 'VoteResponse':
        this.handleVoteResponse(message);
        return;
      case 'AppendRequest':
        this.acceptLeader(message.from);
        this.handleAppendRequest(message);
        return;
      case 'Heartbeat':
        this.acceptLeader(message.from);
        this.handleHeartbeat(message);
        return;
      case 'AppendResponse':
        this.handleAppendResponse(message);
        return;
      case 'HeartbeatResponse':
        this.handleHeartbeatResponse(message.from, message.context);
        return;
      case 'TimeoutNow':
        this.handleTimeoutNow(message.from);
        return;
      case 'InstallSnapshot':
        this.acceptLeader(message.from);
        this.handleInstallSnapshot(message);
        return;
      case 'SnapshotResponse':
        this.handleSnapshotResponse(message);
        return;
      default:
        assertNever(message, 'message type');
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Terms (paper §5.1: "If a server receives a request with a stale term number, it rejects the
  // request"; "If a server's current term is smaller than the other's, it updates its term")

  /** Applies the term rules. Returns whether the message should be processed further. */
  private checkTerm(message: Exclude<Message, ProposeRequest | ProposeResponse | ReadIndexRequest | ReadIndexResponse>): boolean {
    if (message.term > this.currentTerm) {
      if (message.type === 'VoteRequest' && !message.leadershipTransfer && this.inLeaderLease(message.preVote)) {
        // Thesis §4.2.3: while a leader is heard from, a vote request comes from a node that cannot
        // see it; ignoring it keeps a partitioned node from deposing a healthy leader. Thesis §9.6
        // makes the same check part of pre-vote itself, so it applies to pre-votes even without
        // CheckQuorum.
        return false;
      }
      const isPreVoteRequest = message.type === 'VoteRequest' && message.preVote;
      const isGrantedPreVote = message.type === 'VoteResponse' && message.preVote && message.granted;
      // A pre-vote carries the term its sender would campaign in; it changes no one's term.
      if (!isPreVoteRequest && !isGrantedPreVote) {
        const leader = message.type === 'AppendRequest' || message.type === 'Heartbeat' || message.type === 'InstallSnapshot' ? message.from : null;
        this.becomeFollower(message.term, leader);
      }
      return true;
    }
    if (message.term < this.currentTerm) {
      if ((this.config.checkQuorum || this.config.preVote) && (message.type === 'AppendRequest' || message.type === 'Heartbeat' || message.type === 'InstallSnapshot')) {
        // A leader of an older term must learn the newer term, or a node that raised its term while
        // cut off could never rejoin: with pre-vote and check-quorum it would ignore that leader and
        // that leader would never hear of a newer term.
        // Sent after persistence: it carries the current term, which may not be durable yet.
        this.sendAfterPersist(this.appendResponse(message.from, false, message.type === 'AppendRequest' ? message.prevLogIndex : (0 as LogIndex), 0 as LogIndex, 0 as Term));
      } else if (message.type === 'VoteRequest' && message.preVote) {
        // Tell a pre-candidate with a stale term that it lost, so it does not wait for a timeout.
        this.sendAfterPersist(this.voteResponse(message.from, true, false, this.currentTerm));
      }
      return false;
    }
    return true;
  }

  /** Whether a leader was heard from within the minimum election timeout, and that matters. */
  private inLeaderLease(preVote: boolean): boolean {
    // With lease-based reads a restarted node cannot know whether it heard from a leader just before
    // it crashed; it acts as if it had, so a leader's lease survives a follower's restart.
    if (this.config.leaseBasedReads && this.ticksSinceStart < this.config.electionTimeoutTicks) return true;
    return (this.config.checkQuorum || preVote) && this.leaderId !== null && this.electionElapsedTicks < this.config.electionTimeoutTicks;
  }

  /**
   * Whether this leader holds a read lease now: a quorum acknowledged a heartbeat it sent less than
   * the lease duration ago (thesis §6.4.1), and no leadership transfer was started this term.
   */
  private holdsReadLease(): boolean {
    if (this.leaseTicks === 0 || this.currentRole !== 'Leader' || this.leaseRevoked || this.transferTarget !== null) return false;
    const sentTicks = this.voters().map((voter) => (voter === this.id ? this.leaderTicks : (this.leaseAckTick.get(voter) ?? Number.NEGATIVE_INFINITY)));
    sentTicks.sort((a, b) => b - a);
    const quorumSentTick = sentTicks[quorumSize(sentTicks.length) - 1] ?? Number.NEGATIVE_INFINITY;
    return this.leaderTicks < quorumSentTick + this.leaseTicks;
  }

  // ---------------------------------------------------------------------------------------------
  // Roles. Every transition goes through one of these.

  private becomeFollower(newTerm: Term, leader: NodeId | null): void {
    this.resetForTerm(newTerm);
    this.currentRole = 'Follower';
    this.leaderId = leader;
  }

  private becomePreCandidate(): void {
    invariant(this.currentRole !== 'Leader', 'a leader cannot become a pre-candidate');
    // Thesis §9.6: the pre-vote phase changes neither term nor vote.
    this.votes.clear();
    this.currentRole = 'PreCandidate';
    this.leaderId = null;
  }

  private becomeCandidate(): void {
    invariant(this.currentRole !== 'Leader', 'a leader cannot become a candidate');
    // Paper §5.2: increment the term, vote for self.
    this.resetForTerm((this.currentTerm + 1) as Term);
    this.votedFor = this.id;
    this.currentRole = 'Candidate';
  }

  private becomeLeader(): void {
    invariant(this.currentRole === 'Candidate', () => `only a candidate can become leader, not a ${this.currentRole}`);
    invariant(this.votedFor === this.id, 'a leader must have voted for itself');
    this.resetForTerm(this.currentTerm);
    this.currentRole = 'Leader';
    this.leaderId = this.id;
    this.leaderTicks = 0;
    this.heartbeatSentTick = new Map();
    this.leaseAckTick.clear();
    this.termsLed.push(this.currentTerm);
    if (this.termsLed.length > 64) this.termsLed.shift();
    const last = this.log.lastIndex();
    const own = new Progress(this.log.stable(), (last + 1) as LogIndex, this.config.maxInflightMessages, this.config.maxInflightBytes);
    own.becomeReplicate();
    own.recentActive = true;
    this.progress.set(this.id, own);
    // Paper Figure 2: nextIndex starts just after the leader's last entry, matchIndex at 0.
    this.syncProgressWithMembership();
    // Paper §8: a no-op entry at the start of the term lets the leader commit entries of earlier terms
    // (which it may not do by counting replicas, §5.4.2) and learn the commit index at once.
    this.log.appendAsLeader([{ index: (last + 1) as LogIndex, term: this.currentTerm, type: EntryType.Noop, data: EMPTY }]);
    this.broadcastAppend(true);
  }

  /** Leader: tracks every member (voters and learners) and nobody else; this node is always tracked. */
  private syncProgressWithMembership(): void {
    const membership = this.log.membership();
    const next = (this.log.lastIndex() + 1) as LogIndex;
    for (const member of [...membership.voters, ...membership.learners]) {
      if (this.progress.has(member)) continue;
      this.progress.set(member, new Progress(0 as LogIndex, next, this.config.maxInflightMessages, this.config.maxInflightBytes));
    }
    for (const peer of [...this.progress.keys()]) {
      if (peer !== this.id && !membership.voters.includes(peer) && !membership.learners.includes(peer)) this.progress.delete(peer);
    }
    if (this.transferTarget !== null && !membership.voters.includes(this.transferTarget)) this.transferTarget = null;
  }

  private resetForTerm(newTerm: Term): void {
    invariant(newTerm >= this.currentTerm, () => `term would go back from ${this.currentTerm} to ${newTerm}`);
    if (newTerm !== this.currentTerm) {
      this.currentTerm = newTerm;
      this.votedFor = null;
      this.leaseRevoked = false;
    }
    this.leaderId = null;
    this.electionElapsedTicks = 0;
    this.heartbeatElapsedTicks = 0;
    this.randomizedElectionTimeoutTicks = this.drawElectionTimeout();
    this.votes.clear();
    this.progress.clear();
    this.uncommittedBytes = 0;
    this.appendPending = false;
    this.transferTarget = null;
    this.transferElapsedTicks = 0;
    this.failPendingReads();
  }

  private drawElectionTimeout(): number {
    const base = this.config.electionTimeoutTicks;
    return base + randomIntBelow(this.prng, base);
  }

  // ---------------------------------------------------------------------------------------------
  // Time

  private tickElection(): void {
    this.electionElapsedTicks++;
    if (this.mayCampaign() && this.electionElapsedTicks >= this.randomizedElectionTimeoutTicks) {
      this.electionElapsedTicks = 0;
      this.campaign();
    }
  }

  private tickLeader(): void {
    this.leaderTicks++;
    this.heartbeatElapsedTicks++;
    this.electionElapsedTicks++;
    if (this.transferTarget !== null && ++this.transferElapsedTicks >= this.config.electionTimeoutTicks) {
      // The target did not take over in time (it may be down or cut off): keep leading.
      this.transferTarget = null;
      this.transferElapsedTicks = 0;
    }
    if (this.electionElapsedTicks >= this.config.electionTimeoutTicks) {
      this.electionElapsedTicks = 0;
      if (this.config.checkQuorum) {
        // Thesis §6.2: a leader that cannot reach a quorum within an election timeout steps down, so
        // clients stop waiting on it and a reachable majority can elect a new leader.
        if (!this.quorumActive()) {
          this.becomeFollower(this.currentTerm, null);
          return;
        }
        for (const [peer, pr] of this.progress) pr.recentActive = peer === this.id;
      }
    }
    if (this.heartbeatElapsedTicks >= this.config.heartbeatIntervalTicks) {
      this.heartbeatElapsedTicks = 0;
      // While read rounds wait for acknowledgements, every heartbeat carries a fresh read context:
      // it was sent after each waiting round started, so a quorum of its answers confirms them all,
      // and a round whose own heartbeats were lost completes at the next heartbeat instead of at the
      // reads' timeout.
      this.broadcastHeartbeat(this.readRounds.length > 0 ? ++this.lastReadContext : 0);
    }
  }

  private quorumActive(): boolean {
    let active = 0;
    const voters = this.voters();
    for (const voter of voters) if (this.progress.get(voter)?.recentActive === true) active++;
    return active >= quorumSize(voters.length);
  }

  // ---------------------------------------------------------------------------------------------
  // Elections (paper §5.2, §5.4.1; thesis §9.6 for pre-vote)

  private startCampaign(kind: 'PreVote' | 'Election', leadershipTransfer = false): void {
    if (!this.mayCampaign()) return;
    const preVote = kind === 'PreVote';
    if (preVote) this.becomePreCandidate();
    else this.becomeCandidate();
    const voteTerm = (preVote ? this.currentTerm + 1 : this.currentTerm) as Term;
    this.votes.set(this.id, true);
    if (voteOutcome(this.voters(), this.votes) === 'Won') {
      this.onElectionWon(preVote);
      return;
    }
    for (const voter of this.voters()) {
      if (voter === this.id) continue;
      const request: VoteRequest = {
        type: 'VoteRequest',
        from: this.id,
        to: voter,
        term: voteTerm,
        preVote,
        lastLogIndex: this.log.lastIndex(),
        lastLogTerm: this.log.lastTerm(),
        leadershipTransfer,
      };
      // A real vote request depends on the persisted term and self-vote; a pre-vote changes nothing.
      if (preVote) this.send(request);
      else this.sendAfterPersist(request);
    }
  }

  private onElectionWon(preVote: boolean): void {
    if (preVote) this.startCampaign('Election');
    else this.becomeLeader();
  }

  private handleVoteRequest(request: VoteRequest): void {
    // Paper §5.2: at most one vote per term, first come first served. A pre-vote for a later term
    // promises nothing, so it may be granted regardless of this term's vote.
    const canVote =
      this.votedFor === request.from ||
      (this.votedFor === null && this.leaderId === null) ||
      (request.preVote && request.term > this.currentTerm);
    // Paper §5.4.1: grant only to a candidate whose log is at least as up to date as ours.
    const upToDate = this.bugs.has('VoteWithoutUpToDateCheck') || this.log.isUpToDate(request.lastLogIndex, request.lastLogTerm);
    const granted = canVote && upToDate;
    if (request.preVote) {
      this.send(this.voteResponse(request.from, true, granted, granted ? request.term : this.currentTerm));
      return;
    }
    if (granted) {
      this.electionElapsedTicks = 0;
      this.votedFor = request.from;
    }
    const response = this.voteResponse(request.from, false, granted, this.currentTerm);
    // The injected bug skips even send()'s durable-term check, which would otherwise defer the reply.
    if (this.bugs.has('ReplyBeforePersistingVote')) this.outbox.push(response);
    else this.sendAfterPersist(response);
  }

  private handleVoteResponse(response: VoteResponse): void {
    const expectPreVote = this.currentRole === 'PreCandidate';
    if (this.currentRole !== 'PreCandidate' && this.currentRole !== 'Candidate') return;
    if (response.preVote !== expectPreVote) return;
    // A granted pre-vote names the term it was granted for; a late grant from an earlier round
    // (for the term this node is now in) must not count towards this round.
    if (response.preVote && response.granted && response.term !== this.currentTerm + 1) return;
    if (!this.votes.has(response.from)) this.votes.set(response.from, response.granted);
    const outcome = voteOutcome(this.voters(), this.votes);
    switch (outcome) {
      case 'Won':
        this.onElectionWon(expectPreVote);
        return;
      case 'Lost':
        this.becomeFollower(this.currentTerm, null);
        return;
      case 'Pending':
        return;
      default:
        assertNever(outcome, 'vote outcome');
    }
  }

  /** A valid AppendEntries or heartbeat of the current term names its sender leader (paper §5.2). */
  private acceptLeader(leader: NodeId): void {
    if (this.currentRole === 'Leader') {
      // Two leaders in one term would break election safety; a peer claiming it is misbehaving.
      return;
    }
    if (this.currentRole !== 'Follower') this.becomeFollower(this.currentTerm, leader);
    this.leaderId = leader;
    this.electionElapsedTicks = 0;
  }

  // ---------------------------------------------------------------------------------------------
  // Replication, follower side (paper §5.3, Figure 2 "AppendEntries RPC")

  private handleAppendRequest(request: AppendRequest): void {
    if (this.currentRole !== 'Follower') return;
    const committed = this.log.committed();
    if (request.prevLogIndex < committed) {
      // Everything up to our commit index already matches the leader (leader completeness, §5.4):
      // answer with it so the leader continues from there.
      this.sendAfterPersist(this.appendResponse(request.from, true, committed, 0 as LogIndex, 0 as Term));
      return;
    }
    if (!this.log.matchTerm(request.prevLogIndex, request.prevLogTerm)) {
      // Figure 2 step 2: reply false if the log has no entry at prevLogIndex with prevLogTerm. The hint
      // lets the leader skip a whole term of conflicting entries per round trip.
      const probeFrom = Math.min(request.prevLogIndex, this.log.lastIndex()) as LogIndex;
      const hintIndex = this.log.lastIndexWithTermAtMost(probeFrom, request.prevLogTerm);
      const hintTerm = this.log.termAt(hintIndex) ?? (0 as Term);
      this.sendAfterPersist(this.appendResponse(request.from, false, request.prevLogIndex, hintIndex, hintTerm));
      return;
    }
    const lastNewIndex = this.bugs.has('SkipConflictTruncation')
      ? this.log.appendSkippingConflicts(request.prevLogIndex, request.entries)
      : this.log.appendFromLeader(request.prevLogIndex, request.entries);
    // Figure 2 step 5: commitIndex = min(leaderCommit, index of last new entry).
    this.log.commitTo(Math.min(request.leaderCommit, lastNewIndex) as LogIndex);
    this.sendAfterPersist(this.appendResponse(request.from, true, lastNewIndex, 0 as LogIndex, 0 as Term));
  }

  private handleHeartbeat(heartbeat: Heartbeat): void {
    if (this.currentRole !== 'Follower') return;
    this.log.commitTo(Math.min(heartbeat.commit, this.log.lastIndex()) as LogIndex);
    this.sendAfterPersist({ type: 'HeartbeatResponse', from: this.id, to: heartbeat.from, term: this.currentTerm, context: heartbeat.context });
  }

  // ---------------------------------------------------------------------------------------------
  // Replication, leader side

  private handleAppendResponse(response: AppendResponse): void {
    if (this.currentRole !== 'Leader') return;
    const pr = this.progress.get(response.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (!response.success) {
      let probeHint = response.rejectHintIndex;
      if (response.rejectHintTerm > 0) {
        // The follower's log at the hint ends in term rejectHintTerm; our log cannot match above the
        // last of our entries with a term at most that.
        probeHint = this.log.lastIndexWithTermAtMost(response.rejectHintIndex, response.rejectHintTerm);
      }
      if (pr.maybeDecreaseTo(response.index, probeHint)) {
        if (pr.state === 'Replicate') pr.becomeProbe();
        this.sendAppend(response.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(response.index)) return;
    if (response.from === this.transferTarget && pr.match === this.log.lastIndex()) this.sendTimeoutNow(response.from);
    if (pr.state === 'Probe') pr.becomeReplicate();
    else if (pr.state === 'Snapshot') {
      // The follower installed the snapshot (or already held its entries): continue from the log.
      if (pr.match >= this.log.snapshotIndex()) pr.becomeReplicate();
    } else pr.inflights.freeUpTo(response.index);
    if (this.maybeCommit()) {
      this.onCommitAdvanced();
    } else if (wasPaused || pr.next <= this.log.lastIndex()) {
      // The window opened: stream what the follower still lacks.
      this.sendAppend(response.from, false);
    }
  }

  private handleHeartbeatResponse(from: NodeId, context: number): void {
    if (this.currentRole !== 'Leader') return;
    const pr = this.progress.get(from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (context > 0) {
      const sentTick = this.heartbeatSentTick.get(context);
      if (sentTick !== undefined && sentTick > (this.leaseAckTick.get(from) ?? Number.NEGATIVE_INFINITY)) this.leaseAckTick.set(from, sentTick);
      this.acknowledgeReads(from, context);
    }
    const transfer = pr.snapshotTransfer;
    if (pr.state === 'Snapshot' && transfer !== null) {
      // Two heartbeat round trips without a chunk acknowledgement: a chunk (or the final answer) was
      // lost; resend from what the follower acknowledged.
      if (transfer.stalled) {
        transfer.sentBytes = transfer.ackedBytes;
        transfer.doneSent = false;
        transfer.stalled = false;
        transfer.rewoundTo = null;
        this.sendSnapshotChunks(from, pr);
      } else {
        transfer.stalled = true;
      }
      return;
    }
    // A heartbeat round trip ends a probe that may have been lost, and opens a full window by one:
    // if the whole window was lost, the next append is rejected and the leader rewinds to `match`.
    pr.probeSent = false;
    if (pr.state === 'Replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
    // Paper §5.3: the leader retries AppendEntries until the follower stores every entry. An append
    // in flight may have been lost; an empty one probes at `next` and a rejection rewinds to `match`.
    if (pr.match < this.log.lastIndex()) this.sendAppend(from, true);
  }

  /** Paper §5.3–5.4.2: commit the highest index on a quorum, but only by counting an entry of this term. */
  private maybeCommit(): boolean {
    const candidate = committedIndex(this.voters(), (voter) => this.progress.get(voter)?.match ?? (0 as LogIndex));
    const previous = this.log.committed();
    if (candidate <= previous) return false;
    if (this.log.termAt(candidate) !== this.currentTerm && !this.bugs.has('CommitPreviousTermByCounting')) return false;
    for (let index = previous + 1; index <= candidate; index++) {
      const entry = this.log.entryAt(index as LogIndex);
      if (entry !== undefined && entry.term === this.currentTerm && entry.type === EntryType.Normal) this.uncommittedBytes -= entryBytes(entry);
    }
    invariant(this.uncommittedBytes >= 0, () => `uncommitted bytes went negative (${this.uncommittedBytes})`);
    return this.log.commitTo(candidate);
  }

  private broadcastAppend(sendIfEmpty: boolean): void {
    for (const peer of this.progress.keys()) if (peer !== this.id) this.sendAppend(peer, sendIfEmpty);
  }

  /**
   * Sends AppendEntries to `peer` while its window allows and entries remain; with `sendIfEmpty`, at
   * least one message (carrying the commit index) unless the peer is paused.
   */
  private sendAppend(peer: NodeId, sendIfEmpty: boolean): void {
    // Bounded: each round sends at least one entry or stops, and the window bounds the rounds.
    for (let round = 0; round <= this.config.maxInflightMessages; round++) {
      if (!this.maybeSendAppend(peer, sendIfEmpty && round === 0)) return;
      const pr = this.progress.get(peer);
      if (pr === undefined || pr.state !== 'Replicate' || pr.next > this.log.lastIndex()) return;
    }
  }

  private maybeSendAppend(peer: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(peer);
    if (pr === undefined || pr.isPaused()) return false;
    const prevLogIndex = (pr.next - 1) as LogIndex;
    if (prevLogIndex < this.log.snapshotIndex()) {
      // The follower needs entries this log no longer holds (paper §7): send the snapshot instead.
      const snapshot = this.latestSnapshot;
      invariant(snapshot !== null, () => `log compacted to ${this.log.snapshotIndex()} without a snapshot`);
      pr.becomeSnapshot(snapshot);
      this.sendSnapshotChunks(peer, pr);
      return false;
    }
    const prevLogTerm = this.log.termAt(prevLogIndex);
    invariant(prevLogTerm !== undefined, () => `no term for index ${prevLogIndex} (log ${this.log.firstIndex()}..${this.log.lastIndex()})`);
    const entries = this.log.slice(pr.next, this.config.maxEntriesPerMessage, this.config.maxBytesPerMessage);
    if (entries.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const entry of entries) bytes += entryBytes(entry);
    const lastIndex = (prevLogIndex + entries.length) as LogIndex;
    this.send({
      type: 'AppendRequest',
      from: this.id,
      to: peer,
      term: this.currentTerm,
      prevLogIndex,
      prevLogTerm,
      entries,
      leaderCommit: this.log.committed(),
    });
    pr.sentEntries(lastIndex, entries.length, bytes);
    return true;
  }

  private broadcastHeartbeat(readContext = 0): void {
    let context = readContext;
    if (this.leaseTicks > 0) {
      // Every heartbeat carries a context, so an answer tells when the acknowledged heartbeat was sent.
      if (context === 0) context = ++this.lastReadContext;
      this.heartbeatSentTick.set(context, this.leaderTicks);
      // Bounded: contexts older than the lease cannot extend it any more.
      for (const [old, sentTick] of this.heartbeatSentTick) {
        if (sentTick + this.leaseTicks > this.leaderTicks) break;
        this.heartbeatSentTick.delete(old);
      }
    }
    const committed = this.log.committed();
    for (const [peer, pr] of this.progress) {
      if (peer === this.id) continue;
      this.send({
        type: 'Heartbeat',
        from: this.id,
        to: peer,
        term: this.currentTerm,
        commit: Math.min(pr.match, committed) as LogIndex,
        context,
      });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Proposals

  private appendProposal(data: Uint8Array): { index: LogIndex; term: Term } | null {
    // Thesis §3.10: no new entries while leadership is being handed over, or the target could never
    // catch up; clients retry on the new leader.
    if (this.transferTarget !== null) return null;
    const bytes = data.byteLength;
    // Refuse rather than queue without bound; one proposal is always admitted into an empty window.
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.config.maxUncommittedBytes) return null;
    const index = (this.log.lastIndex() + 1) as LogIndex;
    this.log.appendAsLeader([{ index, term: this.currentTerm, type: EntryType.Normal, data }]);
    this.uncommittedBytes += bytes;
    this.appendPending = true;
    return { index, term: this.currentTerm };
  }

  private handleProposeRequest(request: ProposeRequest): void {
    const answer = (index: LogIndex, entryTerm: Term, refusal: ProposalRefusal | null): ProposeResponse => ({
      type: 'ProposeResponse',
      from: this.id,
      to: request.from,
      term: 0 as Term,
      requestId: request.requestId,
      index,
      entryTerm,
      refusal,
      leaderHint: this.leaderId,
    });
    const key = `${request.from}\u0000${String(request.requestId)}`;
    const earlier = this.forwardedProposals.get(key);
    if (earlier !== undefined) {
      // A duplicate of a request already decided (possibly while this node still led): give the same
      // answer again, so a refused request is never appended later.
      this.send(answer(earlier.index, earlier.term, earlier.refusal));
      return;
    }
    // "Not appended" is certain only if this node cannot have decided the request in the term the
    // origin meant without remembering it: it did not lead that term in this incarnation (or it still
    // remembers everything it decided), and the term is newer than anything a previous incarnation
    // could have led (a leader persists its term first).
    const mayHaveDecided =
      request.leaderTerm <= this.startTerm || (this.termsLed.includes(request.leaderTerm) && this.forwardedProposals.hasEvicted);
    if (this.currentRole !== 'Leader' || request.leaderTerm !== this.currentTerm) {
      // A leader of another term than the origin meant appends nothing either: the origin's request
      // may be a duplicate of one this node refused in that term.
      this.send(answer(0 as LogIndex, 0 as Term, mayHaveDecided ? 'OutcomeUnknown' : 'NotLeader'));
      return;
    }
    const refuse = (refusal: ProposalRefusal): void => {
      this.forwardedProposals.set(key, { index: 0 as LogIndex, term: 0 as Term, refusal });
      this.send(answer(0 as LogIndex, 0 as Term, refusal));
    };
    if (request.data.byteLength > this.config.maxProposalBytes) {
      refuse('ProposalTooLarge');
      return;
    }
    const appended = this.appendProposal(request.data);
    if (appended === null) {
      refuse('ProposalDropped');
      return;
    }
    this.forwardedProposals.set(key, { ...appended, refusal: null });
    this.send(answer(appended.index, appended.term, null));
  }

  // ---------------------------------------------------------------------------------------------
  // Membership changes (thesis §4.1–4.3: one server at a time)

  /**
   * Proposes a membership change. Single-server changes keep every majority of the old voters
   * overlapping every majority of the new ones, so no joint configuration is needed. The rules:
   * - at most one change is in flight: the last membership entry must be committed first;
   * - the leader must have committed an entry of its own term (the no-op) first, which closes the
   *   hole in single-server changes across leader changes that Ongaro described after the thesis
   *   (a new leader could otherwise combine an uncommitted change of an earlier term with its own);
   * - a node joins as a learner and is promoted only once it has caught up (thesis §4.2.1);
   * - the last voter cannot be removed.
   * The change takes effect on each node as soon as it is in its log (thesis §4.1).
   */
  proposeMembershipChange(change: MembershipChange): MembershipChangeOutcome {
    const refuse = (refusal: MembershipChangeRefusal, reason: string): MembershipChangeOutcome => ({ kind: 'Refused', refusal, reason, leaderHint: this.leaderId });
    if (this.currentRole !== 'Leader') return refuse('NotLeader', 'only the leader changes membership');
    if (this.transferTarget !== null) return refuse('ChangeInProgress', 'a leadership transfer is under way');
    if (this.log.termAt(this.log.committed()) !== this.currentTerm) return refuse('ChangeInProgress', 'the leader has not yet committed an entry of its term');
    if (this.log.lastMembershipIndex() > this.log.committed()) return refuse('ChangeInProgress', 'the previous membership change is not committed yet');
    const current = this.log.membership();
    const { node } = change;
    const isVoter = current.voters.includes(node);
    const isLearner = current.learners.includes(node);
    let next: Membership;
    switch (change.kind) {
      case 'AddLearner':
        if (isVoter || isLearner) return refuse('InvalidChange', `${node} is already a ${isVoter ? 'voter' : 'learner'}`);
        next = { voters: current.voters, learners: [...current.learners, node] };
        break;
      case 'PromoteLearner': {
        if (!isLearner) return refuse('InvalidChange', `${node} is not a learner${isVoter ? ' (it already votes)' : ''}; add it as a learner first`);
        const pr = this.progress.get(node);
        if (pr === undefined || pr.match < this.log.committed() || !pr.recentActive) {
          return refuse('LearnerNotCaughtUp', `${node} holds entries up to ${pr?.match ?? 0}, the commit index is ${this.log.committed()}; wait for it to catch up`);
        }
        next = { voters: [...current.voters, node], learners: current.learners.filter((learner) => learner !== node) };
        break;
      }
      case 'RemoveNode':
        if (!isVoter && !isLearner) return refuse('InvalidChange', `${node} is not a member`);
        if (isVoter && current.voters.length === 1) return refuse('InvalidChange', `${node} is the last voter`);
        next = { voters: current.voters.filter((voter) => voter !== node), learners: current.learners.filter((learner) => learner !== node) };
        break;
      default:
        return assertNever(change.kind, 'membership change');
    }
    const index = (this.log.lastIndex() + 1) as LogIndex;
    this.log.appendAsLeader([{ index, term: this.currentTerm, type: EntryType.ConfChange, data: encodeMembership(next) }]);
    this.appendPending = true;
    this.syncProgressWithMembership();
    // A removed voter no longer counts: the commit index may now be reachable without it.
    if (this.maybeCommit()) this.onCommitAdvanced();
    return { kind: 'Appended', index, term: this.currentTerm, membership: next };
  }

  // ---------------------------------------------------------------------------------------------
  // Snapshots (paper §7, Figure 13)

  /** Sends chunks of the snapshot transfer to `peer` while its window allows. */
  private sendSnapshotChunks(peer: NodeId, pr: Progress): void {
    const transfer = pr.snapshotTransfer;
    if (transfer === null) return;
    const { snapshot } = transfer;
    const total = snapshot.data.byteLength;
    const chunkBytes = this.config.maxSnapshotChunkBytes;
    const windowBytes = chunkBytes * this.config.maxInflightSnapshotChunks;
    // Bounded: each round sends one chunk and advances sentBytes, or sets doneSent.
    while (!transfer.doneSent && transfer.sentBytes - transfer.ackedBytes < windowBytes) {
      const offset = transfer.sentBytes;
      const end = Math.min(total, offset + chunkBytes);
      const done = end === total;
      this.send({
        type: 'InstallSnapshot',
        from: this.id,
        to: peer,
        term: this.currentTerm,
        metadata: snapshot.metadata,
        totalBytes: total,
        offset,
        data: snapshot.data.subarray(offset, end),
        done,
      });
      transfer.sentBytes = end;
      transfer.doneSent = done;
    }
  }

  private handleSnapshotResponse(response: SnapshotResponse): void {
    if (this.currentRole !== 'Leader') return;
    const pr = this.progress.get(response.from);
    const transfer = pr?.snapshotTransfer ?? null;
    if (pr === undefined) return;
    pr.recentActive = true;
    if (pr.state !== 'Snapshot' || transfer === null || transfer.snapshot.metadata.index !== response.snapshotIndex) return;
    transfer.stalled = false;
    const received = Math.min(response.receivedBytes, transfer.snapshot.data.byteLength);
    if (response.gap) {
      // The chunk at `received` was already sent again since the last rewind: this gap answer comes
      // from a chunk of an earlier window still in flight. Rewinding again for each of those would
      // multiply the traffic; if the resent chunk is lost too, the heartbeat stall check resends.
      if (transfer.rewoundTo !== null && received >= transfer.rewoundTo && received < transfer.sentBytes) return;
      // A chunk was lost, or the follower restarted and lost what it had received: resume from what
      // it holds now, even if that is less than it acknowledged before.
      transfer.rewindEndBytes = transfer.sentBytes;
      transfer.ackedBytes = received;
      transfer.sentBytes = received;
      transfer.doneSent = false;
      transfer.rewoundTo = received;
    } else if (received > transfer.ackedBytes) {
      transfer.ackedBytes = received;
      // The follower holds more than was sent since a rewind (it had kept those chunks, or this is an
      // old answer): continue after it, never with more than the window in flight.
      if (received > transfer.sentBytes) {
        transfer.sentBytes = received;
        transfer.doneSent = received >= transfer.snapshot.data.byteLength;
      }
      if (transfer.rewoundTo !== null && received >= transfer.rewindEndBytes) transfer.rewoundTo = null;
    }
    this.sendSnapshotChunks(response.from, pr);
  }

  private handleInstallSnapshot(message: InstallSnapshot): void {
    if (this.currentRole !== 'Follower') return;
    const { metadata } = message;
    const committed = this.log.committed();
    if (metadata.index <= committed) {
      // Everything the snapshot covers is committed here already (a stale or repeated transfer):
      // report the commit index, as for a stale append, so the leader continues from the log.
      this.incomingSnapshot = null;
      this.sendAfterPersist(this.appendResponse(message.from, true, committed, 0 as LogIndex, 0 as Term));
      return;
    }
    const ack = (receivedBytes: number, gap: boolean): void => {
      this.send({ type: 'SnapshotResponse', from: this.id, to: message.from, term: this.currentTerm, snapshotIndex: metadata.index, receivedBytes, gap });
    };
    let incoming = this.incomingSnapshot;
    const sameSnapshot =
      incoming !== null && incoming.message.metadata.index === metadata.index && incoming.message.metadata.term === metadata.term && incoming.message.totalBytes === message.totalBytes;
    if (!sameSnapshot) {
      if (message.offset !== 0) {
        ack(0, true);
        return;
      }
      // A transfer larger than this node accepts is ignored; the leader keeps retrying (see docs).
      if (message.totalBytes > this.config.maxSnapshotBytes) return;
      // Chunks are matched by snapshot index, term and size: snapshots at one index are byte-identical
      // on every node (deterministic state machines), so a new leader's transfer may continue an old one.
      incoming = { message, chunks: [], receivedBytes: 0, gapReportedAt: null, highestOffsetSinceGap: -1 };
      this.incomingSnapshot = incoming;
    }
    invariant(incoming !== null, 'no incoming snapshot');
    if (message.offset < incoming.receivedBytes) {
      ack(incoming.receivedBytes, false);
      return;
    }
    if (message.offset > incoming.receivedBytes) {
      // One gap answer per position while the leader's window moves forward: the rest of the window
      // in flight would report the same gap. A chunk offset seen again means the leader resent after
      // a stall (it never got the answer, or ignored it): answer again, or the transfer stalls for
      // good — the leader would keep resending from what it believes was acknowledged before this
      // node restarted.
      const resent = message.offset <= incoming.highestOffsetSinceGap;
      if (incoming.gapReportedAt !== incoming.receivedBytes || resent) {
        incoming.gapReportedAt = incoming.receivedBytes;
        incoming.highestOffsetSinceGap = message.offset;
        ack(incoming.receivedBytes, true);
      } else {
        incoming.highestOffsetSinceGap = Math.max(incoming.highestOffsetSinceGap, message.offset);
      }
      return;
    }
    incoming.chunks.push(message.data);
    incoming.receivedBytes += message.data.byteLength;
    if (!message.done) {
      ack(incoming.receivedBytes, false);
      return;
    }
    this.incomingSnapshot = null;
    if (this.log.matchTerm(metadata.index, metadata.term)) {
      // Figure 13 step 6: the log already holds the snapshot's last entry, so it holds everything the
      // snapshot covers; keep the log and its tail, and just commit up to the snapshot.
      this.log.commitTo(metadata.index);
    } else {
      // Step 7: discard the whole log and install the snapshot.
      const data = concatChunks(incoming.chunks, incoming.receivedBytes);
      this.log.restore(metadata);
      this.latestSnapshot = { metadata, data };
      this.snapshotToInstall = this.latestSnapshot;
    }
    this.sendAfterPersist(this.appendResponse(message.from, true, metadata.index, 0 as LogIndex, 0 as Term));
  }

  // ---------------------------------------------------------------------------------------------
  // Leadership transfer (thesis §3.10)

  private sendTimeoutNow(target: NodeId): void {
    // The target campaigns with the transfer flag, which voters grant despite hearing from this leader:
    // from now on this term's lease proves nothing.
    this.leaseRevoked = true;
    this.send({ type: 'TimeoutNow', from: this.id, to: target, term: this.currentTerm });
  }

  /** The leader of this term asks this node to take over: campaign now, skipping pre-vote. */
  private handleTimeoutNow(from: NodeId): void {
    if (this.currentRole !== 'Follower' || this.leaderId !== from || !this.isVoter()) return;
    this.startCampaign('Election', true);
  }

  // ---------------------------------------------------------------------------------------------
  // Linearizable reads (thesis §6.4)

  /** Queues a read at the leader; returns a refusal when it cannot be taken. */
  private acceptRead(read: PendingRead): ProposalRefusal | null {
    let queued = this.readsAwaitingCommit.length + this.readsUnsent.length;
    for (const round of this.readRounds) queued += round.reads.length;
    if (queued >= MAX_PENDING_READS) return 'ProposalDropped';
    // Step 1: until the leader has committed an entry of its own term it does not know the cluster's
    // commit index (its no-op commits it).
    const committedOwnTerm = this.log.termAt(this.log.committed()) === this.currentTerm;
    if (committedOwnTerm && this.holdsReadLease()) {
      // Thesis §6.4.1: within the lease no other leader can exist, so no heartbeat round is needed.
      this.answerRead(read, this.log.committed(), null);
      return null;
    }
    if (!committedOwnTerm) this.readsAwaitingCommit.push(read);
    else this.readsUnsent.push(read);
    return null;
  }

  private releaseReadsAwaitingCommit(): void {
    if (this.readsAwaitingCommit.length === 0 || this.log.termAt(this.log.committed()) !== this.currentTerm) return;
    this.readsUnsent.push(...this.readsAwaitingCommit);
    this.readsAwaitingCommit = [];
  }

  /**
   * Steps 2–3: record the commit index as the reads' index, and confirm leadership with a heartbeat
   * round that starts after the reads arrived. A single-voter cluster needs no confirmation.
   */
  private startReadRound(): void {
    const reads = this.readsUnsent;
    this.readsUnsent = [];
    const round: ReadRound = { context: ++this.lastReadContext, index: this.log.committed(), reads, acks: new Set([this.id]) };
    this.readRounds.push(round);
    if (this.bugs.has('ReadWithoutLeadershipCheck')) for (const voter of this.voters()) round.acks.add(voter);
    if (this.voters().some((voter) => voter !== this.id)) this.broadcastHeartbeat(round.context);
    this.releaseConfirmedReads();
  }

  /** A heartbeat answer for round `context` confirms that round and every earlier one. */
  private acknowledgeReads(from: NodeId, context: number): void {
    for (const round of this.readRounds) {
      if (round.context > context) break;
      round.acks.add(from);
    }
    this.releaseConfirmedReads();
  }

  private releaseConfirmedReads(): void {
    const voters = this.voters();
    const quorum = quorumSize(voters.length);
    // Bounded by the number of rounds; each released round is removed.
    while (this.readRounds.length > 0) {
      const round = this.readRounds[0];
      if (round === undefined) break;
      let acks = 0;
      for (const voter of voters) if (round.acks.has(voter)) acks++;
      if (acks < quorum) break;
      this.readRounds.shift();
      for (const read of round.reads) this.answerRead(read, round.index, null);
    }
  }

  private answerRead(read: PendingRead, index: LogIndex, refusal: ProposalRefusal | null): void {
    if (read.from === this.id) {
      this.readStates.push({ requestId: read.requestId, index, refusal, leaderHint: this.leaderId });
      return;
    }
    const response: ReadIndexResponse = { type: 'ReadIndexResponse', from: this.id, to: read.from, term: 0 as Term, requestId: read.requestId, index, refusal, leaderHint: this.leaderId };
    this.send(response);
  }

  /** Leadership ended or changed: every read waiting here is refused (its client may retry). */
  private failPendingReads(): void {
    if (this.readsAwaitingCommit.length === 0 && this.readsUnsent.length === 0 && this.readRounds.length === 0) return;
    const reads = [...this.readsAwaitingCommit, ...this.readsUnsent, ...this.readRounds.flatMap((round) => round.reads)];
    this.readsAwaitingCommit = [];
    this.readsUnsent = [];
    this.readRounds = [];
    for (const read of reads) this.answerRead(read, 0 as LogIndex, 'NotLeader');
  }

  private handleReadIndexRequest(request: ReadIndexRequest): void {
    const read: PendingRead = { requestId: request.requestId, from: request.from };
    if (this.currentRole !== 'Leader') {
      this.answerRead(read, 0 as LogIndex, 'NotLeader');
      return;
    }
    const refusal = this.acceptRead(read);
    if (refusal !== null) this.answerRead(read, 0 as LogIndex, refusal);
  }

  // ---------------------------------------------------------------------------------------------
  // Message helpers

  private send(message: Message): void {
    // A message carries the sender's term, which must be durable before anyone can see it (Figure 2).
    // Normally it is; a single voter that elects itself has not persisted its new term yet.
    const isPreVote = (message.type === 'VoteRequest' || message.type === 'VoteResponse') && message.preVote;
    if (message.term > this.durableTerm && !isPreVote) this.outboxAfterPersist.push(message);
    else this.outbox.push(message);
  }

  private sendAfterPersist(message: Message): void {
    this.outboxAfterPersist.push(message);
  }

  private voteResponse(to: NodeId, preVote: boolean, granted: boolean, responseTerm: Term): VoteResponse {
    return { type: 'VoteResponse', from: this.id, to, term: responseTerm, preVote, granted };
  }

  private appendResponse(to: NodeId, success: boolean, index: LogIndex, rejectHintIndex: LogIndex, rejectHintTerm: Term): AppendResponse {
    return {
      type: 'AppendResponse',
      from: this.id,
      to,
      term: this.currentTerm,
      success,
      index,
      rejectHintIndex,
      rejectHintTerm,
    };
  }
}

function concatChunks(chunks: readonly Uint8Array[], totalBytes: number): Uint8Array {
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0];
  const data = new Uint8Array(totalBytes);
  let offset = 0;
  for (const chunk of chunks) {
    data.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return data;
}
