/**
 * The vocabulary of the Raft core: identifiers, log entries, persistent state and messages.
 *
 * @module
 */

/** A node's identity within its cluster, e.g. `"n1"`. Branded so it is never confused with a key. */
export type NodeId = string & { readonly __brand: 'NodeId' };
/** A Raft term (paper §5.1). Starts at 0, never decreases on a node. */
export type Term = number & { readonly __brand: 'Term' };
/** A position in the replicated log. The first entry has index 1; 0 means "before the log". */
export type LogIndex = number & { readonly __brand: 'LogIndex' };

/** Brands a string as a {@link NodeId}. */
export const nodeId = (value: string): NodeId => value as NodeId;
/** Brands a number as a {@link Term}. */
export const term = (value: number): Term => value as Term;
/** Brands a number as a {@link LogIndex}. */
export const logIndex = (value: number): LogIndex => value as LogIndex;

/** Kinds of log entry. */
export const EntryType = {
  /** Application data, handed to the state machine. */
  Normal: 0,
  /** The empty entry a new leader appends to commit entries of earlier terms (paper §5.4.2, §8). */
  Noop: 1,
  /**
   * A membership change. `data` is the encoded complete {@link Membership} after the change (not a
   * delta), so a node that joins late learns the configuration from any single such entry. It takes
   * effect as soon as it is appended to a log, committed or not (thesis §4.1).
   */
  ConfChange: 2,
} as const;
/** See {@link EntryType}. */
export type EntryType = (typeof EntryType)[keyof typeof EntryType];

/** One entry of the replicated log. Immutable once created. */
export interface Entry {
  readonly index: LogIndex;
  readonly term: Term;
  readonly type: EntryType;
  /** Opaque application bytes; empty for {@link EntryType.Noop}. */
  readonly data: Uint8Array;
}

/**
 * The cluster's members. Voters elect leaders and form commit quorums; learners (non-voters) receive
 * the log but count for nothing, so a new node can catch up before it may affect availability.
 */
export interface Membership {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** What a snapshot covers: the log up to and including `index`, and the membership at that point. */
export interface SnapshotMetadata {
  /** Index of the last entry the snapshot reflects. */
  readonly index: LogIndex;
  /** Term of that entry. */
  readonly term: Term;
  /** Membership in effect at `index`. */
  readonly membership: Membership;
}

/** A state machine snapshot with its metadata (paper §7). */
export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /** The state machine's serialized state, opaque to Raft. */
  readonly data: Uint8Array;
}

/** The state that must survive a crash before any message depending on it is sent (Figure 2). */
export interface HardState {
  readonly term: Term;
  /** The candidate this node voted for in `term`, or null. */
  readonly vote: NodeId | null;
  /** Highest index known committed. Persisted so a restart re-applies no more than it must. */
  readonly commit: LogIndex;
}

/** A node's role (paper §5.2; PreCandidate is the thesis §9.6 pre-vote phase). */
export type Role = 'Follower' | 'PreCandidate' | 'Candidate' | 'Leader';

/** Fields every message carries. */
interface MessageHeader {
  readonly from: NodeId;
  readonly to: NodeId;
  /**
   * The sender's term. For a pre-vote request it is the term the sender *would* campaign in; for a
   * granted pre-vote response it echoes that term. Proposal forwarding messages carry 0: they are
   * not part of the Raft term protocol.
   */
  readonly term: Term;
}

/** RequestVote (paper §5.2), or its pre-vote probe (thesis §9.6) when `preVote` is set. */
export interface VoteRequest extends MessageHeader {
  readonly type: 'VoteRequest';
  readonly preVote: boolean;
  readonly lastLogIndex: LogIndex;
  readonly lastLogTerm: Term;
  /**
   * Sent by a candidate the leader asked to take over (thesis §3.10): voters grant it even while
   * they still hear from that leader (the CheckQuorum lease would otherwise ignore it).
   */
  readonly leadershipTransfer: boolean;
}

/** Answer to a {@link VoteRequest}. */
export interface VoteResponse extends MessageHeader {
  readonly type: 'VoteResponse';
  readonly preVote: boolean;
  readonly granted: boolean;
}

/** AppendEntries (paper §5.3). An empty `entries` still carries `leaderCommit`. */
export interface AppendRequest extends MessageHeader {
  readonly type: 'AppendRequest';
  readonly prevLogIndex: LogIndex;
  readonly prevLogTerm: Term;
  readonly entries: readonly Entry[];
  readonly leaderCommit: LogIndex;
}

/**
 * Answer to an {@link AppendRequest}. On success `index` is the last index the follower now holds
 * that matches the leader. On rejection `index` is the rejected `prevLogIndex`, and the hint tells the
 * leader where to probe next: the follower's last index at or below the probe whose term is at most
 * `prevLogTerm` (fast back-off, paper §5.3 last paragraphs).
 */
export interface AppendResponse extends MessageHeader {
  readonly type: 'AppendResponse';
  readonly success: boolean;
  readonly index: LogIndex;
  readonly rejectHintIndex: LogIndex;
  readonly rejectHintTerm: Term;
}

/**
 * Leader heartbeat. `commit` is `min(follower's match index, leader commit)`, so a follower whose log
 * has not been checked against the leader never commits an entry it may not share.
 */
export interface Heartbeat extends MessageHeader {
  readonly type: 'Heartbeat';
  readonly commit: LogIndex;
  /**
   * Read-index round this heartbeat confirms leadership for (thesis §6.4), echoed in the response;
   * 0 when the heartbeat carries no read.
   */
  readonly context: number;
}

/** Answer to a {@link Heartbeat}; tells the leader the follower is alive (CheckQuorum). */
export interface HeartbeatResponse extends MessageHeader {
  readonly type: 'HeartbeatResponse';
  /** The heartbeat's `context`. */
  readonly context: number;
}

/** A follower asking the leader for a read index on behalf of its client (thesis §6.4). */
export interface ReadIndexRequest extends MessageHeader {
  readonly type: 'ReadIndexRequest';
  /** Chosen by the origin node; unique among its outstanding reads. */
  readonly requestId: number;
}

/** The leader's answer to a {@link ReadIndexRequest}. */
export interface ReadIndexResponse extends MessageHeader {
  readonly type: 'ReadIndexResponse';
  readonly requestId: number;
  /** The read index when granted; 0 when refused. */
  readonly index: LogIndex;
  /** Null when granted. */
  readonly refusal: ProposalRefusal | null;
  readonly leaderHint: NodeId | null;
}

/**
 * One chunk of a snapshot sent to a follower whose next entry the leader no longer holds (paper §7,
 * Figure 13). Chunks arrive in order from `offset` 0; the last one has `done` set.
 */
export interface InstallSnapshot extends MessageHeader {
  readonly type: 'InstallSnapshot';
  readonly metadata: SnapshotMetadata;
  /** Size of the whole snapshot in bytes. */
  readonly totalBytes: number;
  /** Position of `data` within the snapshot. */
  readonly offset: number;
  readonly data: Uint8Array;
  readonly done: boolean;
}

/**
 * A follower's acknowledgement of snapshot chunks: it holds the first `receivedBytes` bytes of the
 * snapshot at `snapshotIndex`. `gap` is set when a chunk arrived that did not continue what it holds
 * (an earlier chunk was lost), so the leader resends from `receivedBytes`. Completion is reported
 * with an {@link AppendResponse} once the snapshot is durable.
 */
export interface SnapshotResponse extends MessageHeader {
  readonly type: 'SnapshotResponse';
  readonly snapshotIndex: LogIndex;
  readonly receivedBytes: number;
  readonly gap: boolean;
}

/** The leader telling a caught-up follower to campaign at once (leadership transfer, thesis §3.10). */
export interface TimeoutNow extends MessageHeader {
  readonly type: 'TimeoutNow';
}

/** A follower forwarding a client proposal to the leader it knows. */
export interface ProposeRequest extends MessageHeader {
  readonly type: 'ProposeRequest';
  /** Chosen by the origin node; unique among its outstanding proposals. */
  readonly requestId: number;
  /** The term in which the origin believes `to` leads; lets a former leader answer precisely. */
  readonly leaderTerm: Term;
  readonly data: Uint8Array;
}

/** The leader's answer to a {@link ProposeRequest}: where the proposal landed, or why not. */
export interface ProposeResponse extends MessageHeader {
  readonly type: 'ProposeResponse';
  readonly requestId: number;
  /** Index and term of the appended entry when accepted; 0 when refused. */
  readonly index: LogIndex;
  readonly entryTerm: Term;
  /** Null when accepted. */
  readonly refusal: ProposalRefusal | null;
  /** The leader the answering node knows of, so the origin can redirect its client. */
  readonly leaderHint: NodeId | null;
}

/**
 * Why a proposal was not appended — or, for `OutcomeUnknown`, why the answering node cannot tell: it
 * may have appended the request as leader earlier (a duplicated request arriving after it lost
 * leadership or restarted), so the proposal may still commit.
 */
export type ProposalRefusal = 'NotLeader' | 'ProposalDropped' | 'ProposalTooLarge' | 'OutcomeUnknown';

/** Every message exchanged between Raft nodes. */
export type Message =
  | VoteRequest
  | VoteResponse
  | AppendRequest
  | AppendResponse
  | Heartbeat
  | HeartbeatResponse
  | TimeoutNow
  | ProposeRequest
  | ProposeResponse
  | ReadIndexRequest
  | ReadIndexResponse
  | InstallSnapshot
  | SnapshotResponse;

/** The `type` tag of a {@link Message}. */
export type MessageType = Message['type'];
