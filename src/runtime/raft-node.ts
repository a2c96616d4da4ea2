/**
 * `RaftNode`: the Raft core driven by a clock, a transport, a storage and a state machine.
 *
 * @module
 */
import { randomInt } from 'node:crypto';
import { pino, type Logger } from 'pino';
import {
  BoundedMap,
  fnv1a32,
  EntryType,
  InvariantError,
  invariant,
  RaftLeaseError,
  RawNode,
  SeededPrng,
  nodeId,
  resolveRaftConfig,
  type Entry,
  type ForwardedProposalOutcome,
  type LogIndex,
  type Membership,
  type MembershipChange,
  type Message,
  type NodeId,
  type PeerProgress,
  type ProposalRefusal,
  type RaftConfig,
  type RaftOptions,
  type Ready,
  type ReadState,
  type Role,
  type Snapshot,
  type Term,
} from '../raft/index.js';
import { NotLeaderError, OutcomeUnknownError, ProposalDroppedError, ProposalTimeoutError, StoppedError } from './errors.js';
import type { Clock, PersistentState, StateMachine, Storage, Timer, Transport } from './interfaces.js';
import { ConfigError } from '../raft/index.js';

/** Options of a {@link RaftNode}. */
export interface RaftNodeOptions<Result> {
  /** This node's id. */
  readonly id: string;
  /** Every voting member, this node included. */
  readonly voters: readonly string[];
  readonly transport: Transport;
  readonly storage: Storage;
  readonly clock: Clock;
  readonly stateMachine: StateMachine<Result>;
  /** Milliseconds per Raft tick. Default 100: elections after 1–2 s, heartbeats every 100 ms. */
  readonly tickIntervalMs?: number;
  /** Default time a proposal may take before it fails with `Timeout` (checked every tick). Default 5,000 ms. */
  readonly proposalTimeoutMs?: number;
  /** Most proposals awaiting an outcome; more are refused with `TooManyPendingProposals`. Default 10,000. */
  readonly maxPendingProposals?: number;
  /** Seed of election jitter. Default: random. Set it for reproducible runs. */
  readonly seed?: number;
  /**
   * Names this incarnation of the process; it must differ between any two incarnations of a node
   * (client request ids derive from it, and the cluster answers a repeated id with the earlier
   * result). Default: 12 random base-36 characters, which is what you want unless you replay runs
   * deterministically (the simulator passes its own per incarnation).
   */
  readonly instanceNonce?: string;
  /** Options of the Raft core (timeouts in ticks, flow-control limits). */
  readonly raft?: Partial<RaftOptions>;
  /**
   * When to snapshot the state machine and compact the log, or `false` never to. Snapshots need a
   * state machine with `snapshot()` and `restore()`; without them the node never compacts.
   */
  readonly snapshots?: SnapshotPolicy | false;
  /** Where to log. Default: silent. */
  readonly logger?: Logger;
  /**
   * Called when the node stops itself because it cannot go on safely: a storage write failed, or an
   * invariant broke (an {@link InvariantError}: a bug). Default: rethrow, which crashes the process —
   * a replica with a broken invariant must not limp on.
   */
  readonly onFatalError?: (error: Error) => void;
  /**
   * Whether the errors of refused proposals and reads (`NotLeader`, `ProposalDropped`,
   * `OutcomeUnknown`, `ProposalTooLarge`) capture a stack trace. Default true. Capturing one costs
   * about 6 µs, more than a commit in memory; a caller that refuses and retries at a high rate and
   * handles refusals by their `code` (the simulator) can turn it off. The errors are otherwise the same.
   */
  readonly refusalStackTraces?: boolean;
}

/** When a node snapshots its state machine and compacts its log (paper §7). */
export interface SnapshotPolicy {
  /** Take a snapshot once this many entries were applied since the last one. Default 10,000. */
  readonly intervalEntries?: number;
  /** …or once this many payload bytes were applied since the last one. Default 64 MiB. */
  readonly intervalBytes?: number;
  /**
   * Entries kept in the log behind each snapshot, so a follower that is only slightly behind gets
   * entries rather than the whole snapshot. Default 1,000.
   */
  readonly trailingEntries?: number;
}

/** Defaults of {@link SnapshotPolicy}. */
export const DEFAULT_SNAPSHOT_POLICY: Required<SnapshotPolicy> = Object.freeze({ intervalEntries: 10_000, intervalBytes: 64 * 1024 * 1024, trailingEntries: 1_000 });

/** Options of one proposal. */
export interface ProposeOptions {
  /** Overrides the node's `proposalTimeoutMs`. */
  readonly timeoutMs?: number;
  /** Abandons waiting (the proposal may still be applied). */
  readonly signal?: AbortSignal;
}

/** A proposal's fate once applied. */
export interface Applied<Result> {
  /** Log index of the entry. */
  readonly index: LogIndex;
  /** What the state machine returned for it. */
  readonly result: Result;
}

/** What an observer can see of a running node. */
export interface RaftNodeStatus {
  readonly id: NodeId;
  /** `Stopped` once stopped (or failed). */
  readonly role: Role | 'Stopped';
  readonly term: Term;
  readonly leader: NodeId | null;
  readonly lastIndex: LogIndex;
  readonly commitIndex: LogIndex;
  readonly appliedIndex: LogIndex;
  /** Index of the newest snapshot taken or installed (0 without one). */
  readonly snapshotIndex: LogIndex;
  /** Voters and learners in effect (the last membership entry in the log, committed or not). */
  readonly membership: Membership;
  /** Leader only: each member's match index and replication state. */
  readonly followers: Readonly<Record<string, PeerProgress>>;
  /** Proposals and reads awaiting an outcome. */
  readonly pendingProposals: number;
}

/** A proposal or read waiting for its outcome. */
interface PendingRequest<Outcome> {
  readonly resolve: (outcome: Outcome) => void;
  readonly reject: (error: unknown) => void;
  /** On the node's clock; checked every tick, so a timeout fires up to one tick late. */
  readonly deadlineMs: number;
  readonly timeoutMs: number;
  readonly requestId: number;
  readonly abortCleanup: (() => void) | null;
  /** Proposal: the index of its entry, once known. Read: the read index, once the leader granted it. */
  index: LogIndex | null;
}

interface PendingProposal<Result> extends PendingRequest<Applied<Result>> {
  term: Term | null;
}

type PendingRead = PendingRequest<LogIndex>;

/** A membership change waiting for its entry to apply. */
interface PendingMembershipChange {
  readonly resolve: (outcome: { index: LogIndex; membership: Membership }) => void;
  readonly reject: (error: unknown) => void;
  readonly term: Term;
  readonly membership: Membership;
}

/** The logger of a node created without one: shared, since creating a pino logger is not cheap. */
const SILENT_LOGGER = pino({ level: 'silent' });

/** How many applied results are kept to answer a forwarded proposal whose entry applied first. */
const RECENT_RESULTS_KEPT = 4096;

/**
 * One Raft member: drives the pure core from clock ticks and incoming messages, persists each Ready
 * batch through {@link Storage}, sends through {@link Transport}, applies committed entries to the
 * {@link StateMachine}, and settles each `propose()` promise.
 *
 * Everything happens on the injected clock and through the injected interfaces: no hidden timers or
 * I/O, so a simulator can decide when each write completes and each message arrives.
 *
 * @example
 * ```ts
 * const network = new MemoryNetwork();
 * const node = await RaftNode.start({
 *   id: 'n1', voters: ['n1', 'n2', 'n3'],
 *   transport: network.connect(nodeId('n1')), storage: new MemoryStorage(), clock: new SystemClock(),
 *   stateMachine: { apply: (command) => new TextDecoder().decode(command) },
 * });
 * const { index, result } = await node.propose(new TextEncoder().encode('hello'));
 * ```
 */
export class RaftNode<Result = unknown> {
  readonly id: NodeId;
  /**
   * Names this incarnation of the node: its id and its instance nonce. Layers above use it to make
   * client request ids that a restarted node does not reuse.
   */
  readonly instanceId: string;
  readonly config: RaftConfig;
  private readonly rawNode: RawNode;
  private readonly options: RaftNodeOptions<Result>;
  private readonly logger: Logger;
  private readonly tickIntervalMs: number;
  private readonly proposalTimeoutMs: number;
  private readonly maxPendingProposals: number;

  private stopped = false;
  private fatalError: Error | null = null;
  private tickTimer: Timer | null = null;
  /** The Ready loop is running (awaiting storage or the state machine). */
  private pumping = false;
  private pumpDone: Promise<void> = Promise.resolve();
  private nextRequestId: number;

  private readonly pendingByRequest = new Map<number, PendingProposal<Result>>();
  private readonly pendingByIndex = new Map<LogIndex, PendingProposal<Result>>();
  private readonly pendingReads = new Map<number, PendingRead>();
  /**
   * A pending read got its read index since the reads were last checked; with the applied index they
   * were checked at, this spares the check after every Ready when nothing can have changed.
   */
  private readGranted = false;
  private readsCheckedAtIndex = -1;
  private readonly pendingMembership = new Map<LogIndex, PendingMembershipChange>();
  /** Null when this node never snapshots. */
  private readonly snapshotPolicy: Required<SnapshotPolicy> | null;
  /** Index of the newest snapshot taken or installed. */
  private lastSnapshotIndex: LogIndex;
  /** Payload bytes applied since the last snapshot. */
  private bytesSinceSnapshot = 0;
  /** Lease-based reads: clock reading at which tick 0 was due, and ticks given to the core since. */
  private readonly tickOriginMs: number;
  private ticksDone = 0;
  /** Results of the last applied entries, for forwarded proposals whose answer arrives late. */
  private readonly recentResults = new BoundedMap<LogIndex, { readonly term: Term; readonly result: Result }>(RECENT_RESULTS_KEPT);
  private appliedIndex: LogIndex;
  private role: Role;
  private leader: NodeId | null;

  private constructor(options: RaftNodeOptions<Result>, config: RaftConfig, rawNode: RawNode, nonce: string, snapshotPolicy: Required<SnapshotPolicy> | null) {
    this.options = options;
    this.id = config.id;
    this.config = config;
    this.rawNode = rawNode;
    this.logger = (options.logger ?? SILENT_LOGGER).child({ node: config.id });
    this.tickIntervalMs = options.tickIntervalMs ?? 100;
    this.proposalTimeoutMs = options.proposalTimeoutMs ?? 5_000;
    this.maxPendingProposals = options.maxPendingProposals ?? 10_000;
    // Request ids start at a point drawn from the instance nonce, so a restarted node does not reuse
    // the ids its previous incarnation forwarded (the leader answers a repeated id with the earlier entry).
    this.nextRequestId = Math.floor(new SeededPrng(fnv1a32(nonce)).nextUint32() * 0x10_0000);
    this.snapshotPolicy = snapshotPolicy;
    this.tickOriginMs = options.clock.nowMs();
    const status = rawNode.status();
    this.instanceId = `${config.id}.${nonce}`;
    this.lastSnapshotIndex = status.snapshotIndex;
    this.appliedIndex = status.appliedIndex;
    this.role = status.role;
    this.leader = status.leader;
  }

  /**
   * Loads the node's state from storage, joins the transport and starts ticking.
   * Throws {@link ConfigError} for invalid options.
   */
  static async start<Result>(options: RaftNodeOptions<Result>): Promise<RaftNode<Result>> {
    const tickIntervalMs = options.tickIntervalMs ?? 100;
    if (!Number.isFinite(tickIntervalMs) || tickIntervalMs <= 0) throw new ConfigError('tickIntervalMs', `must be a positive number, got ${tickIntervalMs}`);
    const proposalTimeoutMs = options.proposalTimeoutMs ?? 5_000;
    if (!Number.isFinite(proposalTimeoutMs) || proposalTimeoutMs <= 0) throw new ConfigError('proposalTimeoutMs', `must be a positive number, got ${proposalTimeoutMs}`);
    const maxPending = options.maxPendingProposals ?? 10_000;
    if (!Number.isSafeInteger(maxPending) || maxPending < 1) throw new ConfigError('maxPendingProposals', `must be a positive integer, got ${maxPending}`);
    const seed = options.seed ?? randomInt(0, 2 ** 47);
    if (!Number.isSafeInteger(seed)) throw new ConfigError('seed', `must be a safe integer, got ${seed}`);
    const config = resolveRaftConfig({ ...options.raft, id: nodeId(options.id), voters: options.voters.map(nodeId) });
    const snapshotPolicy = resolveSnapshotPolicy(options.snapshots, options.stateMachine);
    const loaded = await options.storage.load();
    const persisted = consistentLog(loaded);
    const snapshot = persisted.snapshot ?? null;
    if (snapshot !== null && persisted.entries.length < loaded.entries.filter((entry) => entry.index > snapshot.metadata.index).length) {
      // Stored entries that do not continue the snapshot were dropped: drop them from storage too, or
      // entries written later would land next to them and be dropped with them at the next start.
      await options.storage.persist({ snapshot, hardState: null, entries: persisted.entries });
    }
    if (snapshot !== null) {
      const restore = options.stateMachine.restore?.bind(options.stateMachine);
      if (restore === undefined) throw new ConfigError('stateMachine', 'storage holds a snapshot but the state machine has no restore()');
      await restore(snapshot.data, snapshot.metadata);
    }
    const rawNode = new RawNode({
      config,
      prng: new SeededPrng(seed),
      hardState: persisted.hardState,
      entries: persisted.entries,
      applied: snapshot?.metadata.index ?? (0 as LogIndex),
      snapshot,
    });
    const nonce = options.instanceNonce ?? Array.from({ length: 12 }, () => randomInt(0, 36).toString(36)).join('');
    if (typeof nonce !== 'string' || nonce.length === 0 || nonce.length > 64) throw new ConfigError('instanceNonce', 'must be a non-empty string of at most 64 characters');
    const node = new RaftNode(options, config, rawNode, nonce, snapshotPolicy);
    options.transport.listen((message) => {
      node.onMessage(message);
    });
    node.scheduleTick();
    node.logger.info({ term: persisted.hardState.term, snapshotIndex: snapshot?.metadata.index ?? 0, lastIndex: rawNode.status().lastIndex }, 'raft node started');
    return node;
  }

  /**
   * Proposes a command. Resolves with the state machine's result once the entry is applied on this
   * node; rejects with {@link NotLeaderError}, {@link ProposalDroppedError} (safe to retry),
   * {@link ProposalTimeoutError} (outcome unknown), {@link StoppedError}, or a `RaftLeaseError` with
   * code `ProposalTooLarge` or `TooManyPendingProposals`. Followers forward to the leader.
   */
  propose(command: Uint8Array, options: ProposeOptions = {}): Promise<Applied<Result>> {
    const refused = this.admissionError(options.signal);
    if (refused !== null) return Promise.reject(refused);
    const timeoutMs = options.timeoutMs ?? this.proposalTimeoutMs;
    const requestId = this.nextRequestId++;
    const outcome = this.guard(() => this.rawNode.propose(command, requestId));
    if (outcome === undefined) return Promise.reject(new StoppedError('the node failed'));
    if (outcome.kind === 'Refused') return Promise.reject(this.refusalError(outcome.refusal, outcome.leaderHint, command.byteLength));
    const promise = new Promise<Applied<Result>>((resolve, reject) => {
      const abortCleanup = watchAbort(options.signal, (reason) => {
        this.forget(pending);
        reject(reason);
      });
      // One timer per proposal would dominate the cost of a commit; deadlines are swept every tick.
      const pending: PendingProposal<Result> = {
        resolve,
        reject,
        requestId,
        index: null,
        term: null,
        deadlineMs: this.options.clock.nowMs() + timeoutMs,
        timeoutMs,
        abortCleanup,
      };
      if (outcome.kind === 'Appended') this.trackAtIndex(pending, outcome.index, outcome.term);
      else this.pendingByRequest.set(requestId, pending);
    });
    this.pump();
    return promise;
  }

  /**
   * A linearizable read barrier (thesis §6.4): resolves with a read index once this node has applied
   * up to it, so that reading the state machine right afterwards observes every write that completed
   * before the call. Works on any node (followers ask the leader). Rejects like {@link propose}:
   * `NotLeader`, `ProposalDropped` (no leader known; safe to retry), `Timeout`, `Stopped`.
   *
   * @example
   * ```ts
   * await node.readIndex();
   * const value = myStateMachine.get('key'); // linearizable
   * ```
   */
  readIndex(options: ProposeOptions = {}): Promise<LogIndex> {
    const refused = this.admissionError(options.signal);
    if (refused !== null) return Promise.reject(refused);
    const timeoutMs = options.timeoutMs ?? this.proposalTimeoutMs;
    const requestId = this.nextRequestId++;
    const outcome = this.guard(() => {
      if (this.config.leaseBasedReads) this.catchUpTicks();
      return this.rawNode.readIndex(requestId);
    });
    if (outcome === undefined) return Promise.reject(new StoppedError('the node failed'));
    if (outcome.kind === 'Refused') return Promise.reject(this.refusalError(outcome.refusal, outcome.leaderHint, 0));
    const promise = new Promise<LogIndex>((resolve, reject) => {
      const abortCleanup = watchAbort(options.signal, (reason) => {
        this.forgetRead(read);
        reject(reason);
      });
      const read: PendingRead = { resolve, reject, requestId, index: null, deadlineMs: this.options.clock.nowMs() + timeoutMs, timeoutMs, abortCleanup };
      this.pendingReads.set(requestId, read);
    });
    this.pump();
    return promise;
  }

  /** Why a new proposal or read cannot be taken now, or null. */
  private admissionError(signal: AbortSignal | undefined): Error | null {
    if (this.stopped) return new StoppedError();
    if (signal?.aborted === true) return abortReason(signal);
    if (this.pendingByRequest.size + this.pendingByIndex.size + this.pendingReads.size >= this.maxPendingProposals) {
      return new RaftLeaseError('TooManyPendingProposals', `${this.maxPendingProposals} requests already await an outcome; wait for some to settle`);
    }
    return null;
  }

  /** The node's current state. */
  status(): RaftNodeStatus {
    const status = this.rawNode.status();
    const followers: Record<string, PeerProgress> = {};
    for (const [peer, progress] of status.progress) followers[peer] = progress;
    return {
      id: this.id,
      role: this.stopped ? 'Stopped' : status.role,
      term: status.term,
      leader: this.stopped ? null : status.leader,
      lastIndex: status.lastIndex,
      commitIndex: status.commitIndex,
      appliedIndex: this.appliedIndex,
      snapshotIndex: status.snapshotIndex,
      membership: status.membership,
      followers,
      pendingProposals: this.pendingByIndex.size + this.pendingByRequest.size + this.pendingReads.size,
    };
  }

  /**
   * Changes the membership by one node (thesis §4.1), on the leader. Resolves once the change is
   * committed and applied on this node, with the new membership. Rejects with `NotLeader` (with a
   * leader hint), `MembershipChangeInProgress` (another change is not committed yet, or the leader is
   * new: retry shortly), `LearnerNotCaughtUp`, `InvalidMembershipChange`, `Timeout` or `Stopped`.
   *
   * A new node joins as a learner (start it with `voters: []`, then `AddLearner`), and is promoted
   * with `PromoteLearner` once it has caught up; {@link addVoter} does both.
   */
  changeMembership(change: { readonly kind: MembershipChange['kind']; readonly node: string }, options: ProposeOptions = {}): Promise<{ index: LogIndex; membership: Membership }> {
    const refused = this.admissionError(options.signal);
    if (refused !== null) return Promise.reject(refused);
    const outcome = this.guard(() => this.rawNode.proposeMembershipChange({ kind: change.kind, node: nodeId(change.node) }));
    if (outcome === undefined) return Promise.reject(new StoppedError('the node failed'));
    if (outcome.kind === 'Refused') {
      switch (outcome.refusal) {
        case 'NotLeader':
          return Promise.reject(new NotLeaderError(outcome.leaderHint, outcome.reason));
        case 'ChangeInProgress':
          return Promise.reject(new RaftLeaseError('MembershipChangeInProgress', `membership change refused: ${outcome.reason}; retry shortly`));
        case 'LearnerNotCaughtUp':
          return Promise.reject(new RaftLeaseError('LearnerNotCaughtUp', `membership change refused: ${outcome.reason}`));
        case 'InvalidChange':
          return Promise.reject(new RaftLeaseError('InvalidMembershipChange', `membership change refused: ${outcome.reason}`));
      }
    }
    const timeoutMs = options.timeoutMs ?? this.proposalTimeoutMs;
    const deadlineMs = this.options.clock.nowMs() + timeoutMs;
    const promise = new Promise<{ index: LogIndex; membership: Membership }>((resolve, reject) => {
      this.pendingMembership.set(outcome.index, { resolve, reject, term: outcome.term, membership: outcome.membership });
    });
    this.pump();
    return this.withDeadline(promise, deadlineMs, timeoutMs, () => this.pendingMembership.delete(outcome.index));
  }

  /**
   * Adds `node` as a voter the safe way: as a learner first, then, once it has caught up, promoted to
   * voter. Resolves with the final membership. Rejects like {@link changeMembership}; the deadline
   * (default: the proposal timeout ×4) covers the whole sequence.
   */
  async addVoter(node: string, options: { readonly timeoutMs?: number } = {}): Promise<{ index: LogIndex; membership: Membership }> {
    const timeoutMs = options.timeoutMs ?? 4 * this.proposalTimeoutMs;
    const deadlineMs = this.options.clock.nowMs() + timeoutMs;
    const remaining = (): number => Math.max(1, deadlineMs - this.options.clock.nowMs());
    if (!this.rawNode.status().membership.learners.includes(nodeId(node))) await this.changeMembership({ kind: 'AddLearner', node }, { timeoutMs: remaining() });
    // Bounded by the deadline: one attempt per tick.
    for (;;) {
      try {
        return await this.changeMembership({ kind: 'PromoteLearner', node }, { timeoutMs: remaining() });
      } catch (error) {
        const retriable = error instanceof RaftLeaseError && (error.code === 'LearnerNotCaughtUp' || error.code === 'MembershipChangeInProgress');
        if (!retriable || this.options.clock.nowMs() >= deadlineMs) throw error;
      }
      await new Promise<void>((resolve) => {
        this.options.clock.setTimer(this.tickIntervalMs, resolve);
      });
    }
  }

  /** Rejects `promise` with a timeout at `deadlineMs` (checked every tick), running `onTimeout` first. */
  private withDeadline<T>(promise: Promise<T>, deadlineMs: number, timeoutMs: number, onTimeout: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const check = (): void => {
        if (settled) return;
        if (this.isStopped() || this.options.clock.nowMs() >= deadlineMs) {
          settled = true;
          onTimeout();
          reject(this.isStopped() ? new StoppedError() : new ProposalTimeoutError(timeoutMs));
          return;
        }
        this.options.clock.setTimer(this.tickIntervalMs, check);
      };
      promise.then(
        (value) => {
          settled = true;
          resolve(value);
        },
        (error: unknown) => {
          settled = true;
          reject(error instanceof Error ? error : new InvariantError(`non-error rejection: ${String(error)}`));
        },
      );
      this.options.clock.setTimer(this.tickIntervalMs, check);
    });
  }

  /** Starts an election now instead of waiting for the election timeout (tests, tooling). */
  campaign(): void {
    this.guard(() => {
      this.rawNode.campaign();
    });
    this.pump();
  }

  /**
   * Hands leadership to `target` (or, without one, to the most up-to-date follower) and resolves once
   * this node sees the target lead. While the transfer runs, proposals are refused with
   * `ProposalDropped` (retry on the new leader). Rejects with `NotLeader` on a follower, and with
   * `Timeout` if the target has not taken over in `timeoutMs` (default: two election timeouts); the
   * core abandons a transfer after one election timeout and goes on leading.
   */
  async transferLeadership(target?: string, options: { readonly timeoutMs?: number } = {}): Promise<void> {
    if (this.stopped) throw new StoppedError();
    const chosen = target === undefined ? this.bestTransferTarget() : nodeId(target);
    if (chosen === null) throw new NotLeaderError(this.rawNode.status().leader, 'no follower to hand leadership to');
    const outcome = this.guard(() => this.rawNode.transferLeadership(chosen));
    if (outcome === undefined) throw new StoppedError('the node failed');
    if (outcome.kind === 'AlreadyLeader') return;
    if (outcome.kind === 'Refused') {
      if (outcome.reason === 'NotLeader') throw new NotLeaderError(this.rawNode.status().leader);
      throw new ConfigError('target', `${chosen} is not a voting member`);
    }
    this.pump();
    const timeoutMs = options.timeoutMs ?? 2 * this.config.electionTimeoutTicks * this.tickIntervalMs;
    const deadlineMs = this.options.clock.nowMs() + timeoutMs;
    // Bounded by the deadline: one check per tick.
    while (this.rawNode.status().leader !== chosen) {
      if (this.isStopped()) throw new StoppedError();
      if (this.options.clock.nowMs() >= deadlineMs) throw new ProposalTimeoutError(timeoutMs);
      await new Promise<void>((resolve) => {
        this.options.clock.setTimer(this.tickIntervalMs, resolve);
      });
    }
  }

  /** Whether the node stopped (read through a call so that checks after an await are not narrowed away). */
  private isStopped(): boolean {
    return this.stopped;
  }

  /** The follower with the highest match index, or null if this node is not the leader. */
  private bestTransferTarget(): NodeId | null {
    const status = this.rawNode.status();
    if (status.role !== 'Leader') return null;
    let best: NodeId | null = null;
    let bestMatch = -1;
    for (const [peer, progress] of status.progress) {
      if (peer === this.id || progress.match <= bestMatch) continue;
      best = peer;
      bestMatch = progress.match;
    }
    return best;
  }

  /**
   * Stops ticking, finishes the write in progress, fails pending proposals with {@link StoppedError},
   * and closes the transport and storage. A leader first hands leadership to its most up-to-date
   * follower (waiting at most two election timeouts), so the cluster does not wait out an election
   * timeout; pass `{ transferLeadership: false }` to skip that.
   */
  async stop(options: { readonly transferLeadership?: boolean } = {}): Promise<void> {
    if (!this.stopped && options.transferLeadership !== false && this.rawNode.status().role === 'Leader' && this.config.voters.length > 1) {
      try {
        await this.transferLeadership();
      } catch (error) {
        // Stopping goes on regardless: a failed hand-over only means the others elect a leader.
        this.logger.warn({ err: error }, 'leadership transfer before stopping did not complete');
      }
    }
    if (this.stopped) {
      for (let waited = 0; this.pumping && waited < 1_000; waited++) await this.pumpDone;
      return;
    }
    this.stopped = true;
    this.tickTimer?.cancel();
    this.tickTimer = null;
    // Let the write or apply in progress finish (each step may have chained the next one).
    for (let waited = 0; this.pumping && waited < 1_000; waited++) await this.pumpDone;
    this.failAllPending(new StoppedError('the node stopped before the proposal was applied'));
    await this.options.transport.close();
    await this.options.storage.close();
    this.logger.info('raft node stopped');
  }

  /**
   * The core itself, read-only, for checkers that verify Raft's properties from outside (the
   * simulator). Never step or advance it.
   *
   * @internal
   */
  inspectCore(): RawNode {
    return this.rawNode;
  }

  /** The error that stopped the node, if it failed. */
  failure(): Error | null {
    return this.fatalError;
  }

  // ---------------------------------------------------------------------------------------------

  private scheduleTick(): void {
    if (this.stopped) return;
    this.tickTimer = this.options.clock.setTimer(this.tickIntervalMs, this.onTick);
  }

  /** The tick timer's callback: one function for the node's life, as it runs every tick. */
  private readonly onTick = (): void => {
    if (this.stopped) return;
    try {
      if (this.config.leaseBasedReads) this.catchUpTicks();
      else this.rawNode.tick();
    } catch (error) {
      this.fail(error);
    }
    this.expireProposals();
    this.pump();
    this.scheduleTick();
  };

  /** Fails every proposal whose deadline has passed (bounded by maxPendingProposals). */
  private expireProposals(): void {
    if (this.pendingReads.size === 0 && this.pendingByRequest.size === 0 && this.pendingByIndex.size === 0) return;
    const nowMs = this.options.clock.nowMs();
    // Iterated without copies (this runs every tick): forgetting deletes the visited entry, which is
    // safe while iterating a Map, and rejecting runs no callback synchronously.
    for (const read of this.pendingReads.values()) {
      if (read.deadlineMs > nowMs) continue;
      this.forgetRead(read);
      read.reject(new ProposalTimeoutError(read.timeoutMs));
    }
    for (const pending of this.pendingByRequest.values()) {
      if (pending.deadlineMs > nowMs) continue;
      this.forget(pending);
      pending.reject(new ProposalTimeoutError(pending.timeoutMs));
    }
    for (const pending of this.pendingByIndex.values()) {
      if (pending.deadlineMs > nowMs) continue;
      this.forget(pending);
      pending.reject(new ProposalTimeoutError(pending.timeoutMs));
    }
  }

  /**
   * Lease-based reads: gives the core every tick the monotonic clock says is due, so that ticks count
   * real elapsed time even after the process was paused or a timer fired late (a lease counted in
   * missed ticks would last too long). Runs before every input.
   */
  private catchUpTicks(): void {
    const dueTicks = Math.floor((this.options.clock.nowMs() - this.tickOriginMs) / this.tickIntervalMs);
    // Bounded: after two election timeouts' worth of ticks every lease and timeout in the core has run out,
    // so further ticks would change nothing.
    const maxTicks = this.ticksDone + 2 * this.config.electionTimeoutTicks + 1;
    while (this.ticksDone < dueTicks && this.ticksDone < maxTicks) {
      this.rawNode.tick();
      this.ticksDone++;
    }
    if (this.ticksDone < dueTicks) this.ticksDone = dueTicks;
  }

  private onMessage(message: Parameters<RawNode['step']>[0]): void {
    if (this.stopped) return;
    // As guard() does, without a closure per message.
    try {
      if (this.config.leaseBasedReads) this.catchUpTicks();
      this.rawNode.step(message);
    } catch (error) {
      this.fail(error);
    }
    this.pump();
  }

  /** Runs `action` on the core; a throw from the core is fatal. */
  private guard<T>(action: () => T): T | undefined {
    try {
      return action();
    } catch (error) {
      this.fail(error);
      return undefined;
    }
  }

  /** Starts the Ready loop unless it is already running. */
  private pump(): void {
    if (this.pumping || this.stopped) return;
    this.pumping = true;
    this.continuePump();
  }

  /**
   * Handles Readies synchronously until one needs to wait (a storage write, or a state machine that
   * returned a promise); that step continues the loop when it completes. A Ready with nothing to
   * persist therefore costs no promise at all.
   */
  private continuePump(): void {
    const appliedAtStart = this.appliedIndex;
    try {
      while (!this.stopped) {
        // Between two Readies nothing is being applied: the moment to snapshot the state machine.
        if (this.snapshotDue()) {
          this.pumpDone = this.takeSnapshot();
          return;
        }
        if (!this.rawNode.hasReady()) break;
        const ready = this.rawNode.ready();
        if (ready.softState !== null) this.onSoftState(ready.softState.role, ready.softState.leader);
        sendAll(this.options.transport, ready.messages);
        if (ready.mustPersist) {
          // Thesis §10.2.1: new entries leave before the leader's own write, which then overlaps them.
          this.options.transport.flush?.();
          this.pumpDone = this.persistThen(ready);
          return;
        }
        if (!this.finishReady(ready, 0)) return;
      }
    } catch (error) {
      this.fail(error);
    }
    // Cleared in the same synchronous step as the last hasReady() check, so an input arriving
    // afterwards starts a new loop instead of being missed.
    this.pumping = false;
    // A loop that applied entries leaves its messages (commit notifications) to the transport's own
    // moment, after the answers to clients that the applies resolved; any other loop's messages
    // (heartbeats, their answers, votes) go now.
    if (this.appliedIndex === appliedAtStart) this.options.transport.flush?.();
  }

  /** Whether the snapshot policy asks for a snapshot of what is applied now. */
  private snapshotDue(): boolean {
    const policy = this.snapshotPolicy;
    if (policy === null || this.appliedIndex <= this.lastSnapshotIndex) return false;
    // A snapshot from the leader waits to be restored: the log already starts after what is applied.
    if (this.appliedIndex <= this.rawNode.raft.log.snapshotIndex()) return false;
    return this.appliedIndex - this.lastSnapshotIndex >= policy.intervalEntries || this.bytesSinceSnapshot >= policy.intervalBytes;
  }

  /**
   * Snapshots the state machine at the applied index, stores it durably, then compacts the log behind
   * it (keeping the trailing window). Runs inside the Ready loop, so nothing is applied meanwhile.
   */
  private async takeSnapshot(): Promise<void> {
    const policy = this.snapshotPolicy;
    const take = this.options.stateMachine.snapshot?.bind(this.options.stateMachine);
    invariant(policy !== null && take !== undefined, 'snapshot without a policy or a state machine snapshot()');
    const index = this.appliedIndex;
    let snapshot: Snapshot;
    try {
      const metadata = this.rawNode.snapshotMetadata(index);
      const data = await take();
      if (!(data instanceof Uint8Array)) throw new TypeError(`stateMachine.snapshot() returned ${typeof data}, not a Uint8Array`);
      snapshot = { metadata, data };
      const compactIndex = Math.max(0, index - policy.trailingEntries) as LogIndex;
      await this.options.storage.saveSnapshot(snapshot, compactIndex);
      this.rawNode.compact(snapshot, compactIndex);
    } catch (error) {
      this.pumping = false;
      this.fail(error instanceof InvariantError ? error : new RaftLeaseError('SnapshotFailed', 'taking or storing a snapshot failed; the node stopped', { cause: error }));
      return;
    }
    this.lastSnapshotIndex = index;
    this.bytesSinceSnapshot = 0;
    this.logger.debug({ index, bytes: snapshot.data.byteLength }, 'snapshot taken');
    this.resume(() => true);
  }

  private async persistThen(ready: Ready): Promise<void> {
    try {
      await this.options.storage.persist({ snapshot: ready.snapshot, hardState: ready.hardState, entries: ready.entries });
    } catch (error) {
      this.pumping = false;
      this.fail(new RaftLeaseError('StorageFailed', 'a storage write failed; the node stopped because durability is unknown', { cause: error }));
      return;
    }
    this.resume(() => this.finishReady(ready, 0));
  }

  /** Runs `step` (part of a Ready) and, if it completed, the rest of the loop. */
  private resume(step: () => boolean): void {
    let completed: boolean;
    try {
      completed = this.stopped ? false : step();
    } catch (error) {
      this.pumping = false;
      this.fail(error);
      return;
    }
    if (this.stopped) {
      this.pumping = false;
      return;
    }
    if (completed) this.continuePump();
  }

  /**
   * The part of a Ready after persistence: messages that promise durable state, answers to forwarded
   * proposals and a snapshot to restore (unless `preludeDone`), then committed entries from position
   * `from` on, then advance(). Returns false if an asynchronous step took over (it resumes the loop
   * itself).
   */
  private finishReady(ready: Ready, from: number, preludeDone = false): boolean {
    if (!preludeDone) {
      // Votes and acknowledgements promise durable state: only now may they leave.
      sendAll(this.options.transport, ready.messagesAfterPersist);
      // An acknowledgement is on the leader's commit path: it goes before this node applies anything.
      if (ready.messagesAfterPersist.length > 0) this.options.transport.flush?.();
      // Indexed loops: these lists are often the core's shared frozen empty list, and a for-of over
      // both kinds of array takes a slower path on every Ready.
      const outcomes = ready.forwardedOutcomes;
      for (let position = 0; position < outcomes.length; position++) this.onForwardedOutcome(outcomes[position] as ForwardedProposalOutcome);
      const readStates = ready.readStates;
      for (let position = 0; position < readStates.length; position++) this.onReadState(readStates[position] as ReadState);
      if (ready.snapshot !== null) {
        const restoring = this.restoreSnapshot(ready.snapshot);
        this.pumpDone = restoring.then(
          () => {
            this.resume(() => this.finishReady(ready, 0, true));
          },
          (error: unknown) => {
            this.pumping = false;
            this.fail(error);
          },
        );
        return false;
      }
    }
    const entries = ready.committedEntries;
    for (let position = from; position < entries.length; position++) {
      const entry = entries[position];
      if (entry === undefined) continue;
      const applying = this.applyEntry(entry);
      if (applying !== undefined) {
        this.pumpDone = applying.then(
          () => {
            this.appliedIndex = entry.index;
            this.resume(() => this.finishReady(ready, position + 1, true));
          },
          (error: unknown) => {
            this.pumping = false;
            this.fail(error);
          },
        );
        return false;
      }
      this.appliedIndex = entry.index;
      if (this.stopped) return false;
    }
    this.completeReads();
    this.rawNode.advance();
    return true;
  }

  private onReadState(state: ReadState): void {
    const read = this.pendingReads.get(state.requestId);
    if (read === undefined) return;
    if (state.refusal !== null) {
      this.forgetRead(read);
      read.reject(this.refusalError(state.refusal, state.leaderHint, 0));
      return;
    }
    read.index = state.index;
    this.readGranted = true;
  }

  /** Resolves every granted read whose index this node has applied. */
  private completeReads(): void {
    if (this.pendingReads.size === 0) return;
    // Only a newly granted read or newly applied entries can complete a read.
    if (!this.readGranted && this.appliedIndex === this.readsCheckedAtIndex) return;
    this.readGranted = false;
    this.readsCheckedAtIndex = this.appliedIndex;
    // No copy of the map: deleting the entry being visited is safe while iterating a Map, and
    // settling a promise runs no callback synchronously. (This runs after every Ready.)
    for (const read of this.pendingReads.values()) {
      if (read.index === null || read.index > this.appliedIndex) continue;
      this.forgetRead(read);
      read.resolve(read.index);
    }
  }

  private forgetRead(read: PendingRead): void {
    read.abortCleanup?.();
    this.pendingReads.delete(read.requestId);
  }

  /**
   * Applies one entry and settles its proposal. Stays synchronous unless the state machine returns a
   * promise: an `await` per entry would cost a microtask turn per commit.
   */
  private applyEntry(entry: Entry): Promise<void> | undefined {
    if (entry.type !== EntryType.Normal) {
      if (entry.type === EntryType.ConfChange) this.settleMembershipChange(entry);
      this.settleApplied(entry, undefined);
      return undefined;
    }
    this.bytesSinceSnapshot += entry.data.byteLength;
    const returned = this.options.stateMachine.apply(entry.data, entry.index);
    if (returned instanceof Promise) {
      return returned.then((result) => {
        this.settleApplied(entry, result);
      });
    }
    this.settleApplied(entry, returned);
    return undefined;
  }

  private settleMembershipChange(entry: Entry): void {
    const pending = this.pendingMembership.get(entry.index);
    if (pending === undefined) return;
    this.pendingMembership.delete(entry.index);
    if (pending.term === entry.term) pending.resolve({ index: entry.index, membership: pending.membership });
    else pending.reject(new ProposalDroppedError(`a new leader replaced log index ${entry.index}`));
  }

  /**
   * Restores the state machine from a snapshot the leader sent. Proposals waiting for entries the
   * snapshot covers cannot learn their results: they fail with `OutcomeUnknown` (they did commit or
   * were replaced; retry with an idempotent command).
   */
  private async restoreSnapshot(snapshot: Snapshot): Promise<void> {
    const restore = this.options.stateMachine.restore?.bind(this.options.stateMachine);
    if (restore === undefined) throw new RaftLeaseError('SnapshotFailed', 'the leader sent a snapshot but the state machine has no restore(); give it snapshot() and restore()');
    await restore(snapshot.data, snapshot.metadata);
    const index = snapshot.metadata.index;
    this.appliedIndex = index;
    this.lastSnapshotIndex = index;
    this.bytesSinceSnapshot = 0;
    this.logger.info({ index, bytes: snapshot.data.byteLength }, 'installed snapshot from the leader');
    for (const pending of [...this.pendingByIndex.values()]) {
      if (pending.index === null || pending.index > index) continue;
      this.forget(pending);
      pending.reject(new OutcomeUnknownError(`log index ${pending.index} was covered by a snapshot from the leader before this node applied it`));
    }
    for (const [pendingIndex, change] of [...this.pendingMembership]) {
      if (pendingIndex > index) continue;
      this.pendingMembership.delete(pendingIndex);
      change.reject(new OutcomeUnknownError(`log index ${pendingIndex} was covered by a snapshot from the leader before this node applied it`));
    }
  }

  private settleApplied(entry: Entry, result: Result | undefined): void {
    // Only a forwarded proposal still waiting for the leader's answer can need a result later.
    if (entry.type === EntryType.Normal && this.pendingByRequest.size > 0) {
      this.recentResults.set(entry.index, { term: entry.term, result: result as Result });
    }
    const pending = this.pendingByIndex.get(entry.index);
    if (pending === undefined) return;
    this.forget(pending);
    if (pending.term === entry.term && entry.type === EntryType.Normal) {
      pending.resolve({ index: entry.index, result: result as Result });
    } else {
      pending.reject(new ProposalDroppedError(`a new leader replaced log index ${entry.index}`));
    }
  }

  private onForwardedOutcome(outcome: ForwardedProposalOutcome): void {
    const pending = this.pendingByRequest.get(outcome.requestId);
    if (pending === undefined) return;
    this.pendingByRequest.delete(outcome.requestId);
    if (outcome.refusal !== null) {
      this.forget(pending);
      pending.reject(this.refusalError(outcome.refusal, outcome.leaderHint, 0));
      return;
    }
    if (outcome.index <= this.appliedIndex) {
      // The entry was applied before the leader's answer arrived.
      this.forget(pending);
      const recent = this.recentResults.get(outcome.index);
      if (recent === undefined) pending.reject(new ProposalTimeoutError(0));
      else if (recent.term === outcome.term) pending.resolve({ index: outcome.index, result: recent.result });
      else pending.reject(new ProposalDroppedError(`a new leader replaced log index ${outcome.index}`));
      return;
    }
    this.trackAtIndex(pending, outcome.index, outcome.term);
  }

  private trackAtIndex(pending: PendingProposal<Result>, index: LogIndex, entryTerm: Term): void {
    pending.index = index;
    pending.term = entryTerm;
    const previous = this.pendingByIndex.get(index);
    if (previous !== undefined) {
      // An earlier proposal at this index belonged to a term whose entry was overwritten.
      this.forget(previous);
      previous.reject(new ProposalDroppedError(`a new leader replaced log index ${index}`));
    }
    this.pendingByIndex.set(index, pending);
  }

  private forget(pending: PendingProposal<Result>): void {
    pending.abortCleanup?.();
    this.pendingByRequest.delete(pending.requestId);
    if (pending.index !== null && this.pendingByIndex.get(pending.index) === pending) this.pendingByIndex.delete(pending.index);
  }

  private onSoftState(role: Role, leader: NodeId | null): void {
    if (role !== this.role) this.logger.info({ from: this.role, to: role, term: this.rawNode.status().term, leader }, 'role changed');
    else if (leader !== this.leader) this.logger.debug({ leader }, 'leader changed');
    const formerLeader = this.leader;
    this.role = role;
    this.leader = leader;
    // A former leader's own reads are refused by the core itself (NotLeader).
    if (formerLeader !== null && formerLeader !== this.id && leader !== formerLeader) this.failForwardedTo(formerLeader);
  }

  /**
   * The leader changed: proposals and reads forwarded to `formerLeader` that it has not answered yet
   * may never be answered (it may have crashed). Rather than let them wait for their timeouts, fail
   * them now: a proposal with `OutcomeUnknown` (the former leader may still have appended it; retry
   * with the same request id where the state machine deduplicates), a read with `ProposalDropped`
   * (reads change nothing; retry).
   */
  private failForwardedTo(formerLeader: NodeId): void {
    for (const pending of [...this.pendingByRequest.values()]) {
      this.forget(pending);
      pending.reject(new OutcomeUnknownError(`the leader changed (was ${formerLeader}) before it answered the forwarded proposal`));
    }
    for (const read of [...this.pendingReads.values()]) {
      if (read.index !== null) continue;
      this.forgetRead(read);
      read.reject(new ProposalDroppedError(`the leader changed (was ${formerLeader}) before it confirmed the read; retry`));
    }
  }

  private refusalError(refusal: ProposalRefusal, leaderHint: NodeId | null, bytes: number): RaftLeaseError {
    if (this.options.refusalStackTraces !== false) return this.newRefusalError(refusal, leaderHint, bytes);
    // The stack is captured in the Error constructor, up to Error.stackTraceLimit frames; restored at once.
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return this.newRefusalError(refusal, leaderHint, bytes);
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
  }

  private newRefusalError(refusal: ProposalRefusal, leaderHint: NodeId | null, bytes: number): RaftLeaseError {
    switch (refusal) {
      case 'NotLeader':
        return new NotLeaderError(leaderHint);
      case 'ProposalDropped':
        return new ProposalDroppedError(
          leaderHint === null ? 'no leader is known yet; retry after an election' : 'the leader holds too many uncommitted bytes; retry after some commit',
        );
      case 'OutcomeUnknown':
        return new OutcomeUnknownError(`${leaderHint === null ? 'a former leader' : 'a former leader (now following ' + leaderHint + ')'} received a duplicate of it`);
      case 'ProposalTooLarge':
        return new RaftLeaseError('ProposalTooLarge', `proposal of ${bytes} bytes exceeds maxProposalBytes (${this.config.maxProposalBytes}); split it`);
    }
  }

  private failAllPending(error: Error): void {
    for (const pending of [...this.pendingByRequest.values(), ...this.pendingByIndex.values()]) {
      this.forget(pending);
      pending.reject(error);
    }
    for (const read of [...this.pendingReads.values()]) {
      this.forgetRead(read);
      read.reject(error);
    }
    for (const change of this.pendingMembership.values()) change.reject(error);
    this.pendingMembership.clear();
  }

  private fail(error: unknown): void {
    const fatal = error instanceof Error ? error : new InvariantError(`non-error thrown: ${String(error)}`);
    if (this.fatalError !== null) return;
    this.fatalError = fatal;
    this.logger.error({ err: fatal }, 'raft node stopped on a fatal error');
    this.stopped = true;
    this.tickTimer?.cancel();
    this.failAllPending(new StoppedError(`the node failed: ${fatal.message}`));
    const onFatal = this.options.onFatalError;
    if (onFatal !== undefined) {
      onFatal(fatal);
      return;
    }
    // No handler: crash rather than limp on (but not from inside the caller's stack).
    queueMicrotask(() => {
      throw fatal;
    });
  }
}

/** Sends `messages` in order (an indexed loop: see finishReady). */
function sendAll(transport: Transport, messages: readonly Message[]): void {
  for (let position = 0; position < messages.length; position++) transport.send(messages[position] as Message);
}

/** Calls `onAbort` with the signal's reason when it aborts; returns the function that stops watching. */
function watchAbort(signal: AbortSignal | undefined, onAbort: (reason: Error) => void): (() => void) | null {
  if (signal === undefined) return null;
  const listener = (): void => {
    onAbort(abortReason(signal));
  };
  signal.addEventListener('abort', listener, { once: true });
  return () => {
    signal.removeEventListener('abort', listener);
  };
}

/** The reason an AbortSignal carries, as an Error (the standard `AbortError` when none was given). */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new DOMException('the operation was aborted', 'AbortError');
}

function resolveSnapshotPolicy(policy: SnapshotPolicy | false | undefined, stateMachine: StateMachine): Required<SnapshotPolicy> | null {
  if (policy === false) return null;
  const canSnapshot = typeof stateMachine.snapshot === 'function' && typeof stateMachine.restore === 'function';
  if (!canSnapshot) {
    if (policy !== undefined) throw new ConfigError('snapshots', 'a snapshot policy needs a state machine with snapshot() and restore()');
    return null;
  }
  const resolved = { ...DEFAULT_SNAPSHOT_POLICY, ...Object.fromEntries(Object.entries(policy ?? {}).filter(([, value]) => value !== undefined)) };
  for (const field of ['intervalEntries', 'intervalBytes'] as const) {
    const value = resolved[field];
    if (!Number.isSafeInteger(value) || value < 1) throw new ConfigError(`snapshots.${field}`, `must be a positive integer, got ${String(value)}`);
  }
  if (!Number.isSafeInteger(resolved.trailingEntries) || resolved.trailingEntries < 0) {
    throw new ConfigError('snapshots.trailingEntries', `must be a non-negative integer, got ${String(resolved.trailingEntries)}`);
  }
  return resolved;
}

/**
 * What storage returned, made consistent: stored entries continue the snapshot only if the log holds
 * the snapshot's last entry with the same term, or starts right after it. Otherwise they are the
 * remains of a log that a snapshot from the leader replaced when a crash interrupted the write
 * (paper Figure 13 step 7: the whole log is discarded), and they are dropped.
 */
function consistentLog(loaded: PersistentState): PersistentState {
  const snapshot = loaded.snapshot ?? null;
  if (snapshot === null) return loaded;
  const { index, term: snapshotTerm } = snapshot.metadata;
  const first = loaded.entries[0];
  if (first === undefined) return loaded;
  const atSnapshot = loaded.entries[index - first.index];
  const continues = first.index === index + 1 || (atSnapshot !== undefined && atSnapshot.index === index && atSnapshot.term === snapshotTerm);
  const entries = continues ? loaded.entries.filter((entry) => entry.index > index) : [];
  return { hardState: loaded.hardState, entries, snapshot };
}
