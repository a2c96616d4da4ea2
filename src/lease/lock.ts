/**
 * `LeaseNode`: a Raft member that serves replicated leases. It runs the lease table
 * ({@link LeaseStateMachine}) on every node, the leader-side lessor that counts TTLs and proposes
 * expiries, and the {@link DistributedLock} client API, which works on any node (followers forward
 * to the leader).
 *
 * Time model (design brief §4, docs/lease-safety.md): only the leader counts a lease's TTL, on its
 * monotonic clock, restarting every countdown at full TTL when it becomes leader; the holder believes
 * it holds the lease from when it *sent* its request until `sentAt + ttl·(1 − 2ρ) − margin` on its own
 * clock, which with drift ≤ ρ ends before any leader can expire the lease.
 *
 * @module
 */
import { ConfigError, RaftLeaseError, type LogIndex } from '../raft/index.js';
import { RaftNode, type Clock, type RaftNodeOptions, type StateMachine, type Timer } from '../runtime/index.js';
import {
  LeaseStateMachine,
  encodeLeaseCommand,
  invalidFencingToken,
  invalidLeaseKey,
  invalidLeaseOwner,
  invalidLeaseTtl,
  type LeaseTableCommand,
  type LeaseEvent,
  type LeaseRecord,
  type LeaseResult,
} from './state-machine.js';

/** Options of the lease layer. */
export interface LeaseOptions {
  /** The bound ρ on clock drift, in ppm, that holders assume. Default 200. */
  readonly maxClockDriftPpm?: number;
  /** Time a holder gives up before its computed end, to absorb pauses and scheduling delay. Default 1,000 ms. */
  readonly marginMs?: number;
  /** How often the leader checks its countdowns. Default: the tick interval. */
  readonly expiryCheckIntervalMs?: number;
  /** Default owner name of this node's leases. Default: the node id. */
  readonly defaultOwner?: string;
  /** How long one lock operation may take, retries included. Default 5,000 ms. */
  readonly requestTimeoutMs?: number;
  /**
   * Whether the leader may answer a renewal from its own countdown, without a log write (design
   * brief §4; the argument is in docs/lease-safety.md). Default true. A renewal that reaches a
   * follower, names another TTL than the lease's, or races an expiry goes through the log either way.
   */
  readonly leaderLocalRenewals?: boolean;
  /**
   * A deliberately broken lessor that counts only half of each TTL, for proving that the simulator's
   * exclusion checker catches it. Never set it otherwise.
   *
   * @internal
   */
  readonly testOnlyExpireEarly?: boolean;
  /**
   * A deliberately broken leader-local renewal, for proving that the checkers catch it: one that
   * skips the leadership confirmation, or one that answers without restarting the leader's countdown.
   * Never set it otherwise.
   *
   * @internal
   */
  readonly testOnlyRenewalBug?: 'WithoutConfirmation' | 'WithoutCountdown' | null;
}

/** Options of a {@link LeaseNode}: those of a `RaftNode` (without the state machine) plus {@link LeaseOptions}. */
export type LeaseNodeOptions = Omit<RaftNodeOptions<LeaseResult>, 'stateMachine'> & {
  readonly lease?: LeaseOptions;
  /**
   * Wraps the lease table before the Raft node applies to it (the simulator observes applies).
   *
   * @internal
   */
  readonly wrapStateMachine?: (table: LeaseStateMachine) => StateMachine<LeaseResult>;
};

/** A lease this client holds. */
export interface Lease {
  readonly key: string;
  readonly owner: string;
  /** The log index of the granting entry. Give it to fenced resources: they must reject smaller tokens. */
  readonly fencingToken: LogIndex;
  readonly ttlMs: number;
  /** Until when (this node's monotonic clock, ms) the holder may act as the lease's owner. */
  readonly validUntil: number;
  /** Milliseconds left of {@link validUntil}, 0 once past. */
  remainingMs(): number;
  /** Aborts when the lease can no longer be trusted: at `validUntil`, on loss, or on release. */
  readonly signal: AbortSignal;
  /** Extends the lease by a fresh TTL. Rejects with `LeaseLost`, `NotLeader` or `Timeout`. */
  renew(): Promise<void>;
  /** Gives the lease up. Idempotent. */
  release(): Promise<void>;
  /** Renews every `intervalMs` in the background until released or lost. Returns a function that stops it. */
  keepAlive(options: { readonly intervalMs: number }): () => void;
}

/** The outcome of {@link DistributedLock.tryAcquire}. */
export type AcquireResult = { readonly acquired: true; readonly lease: Lease } | { readonly acquired: false; readonly holder: string; readonly remainingMs?: number };

/** Options of an acquisition. */
export interface AcquireOptions {
  readonly ttlMs: number;
  /** Default: the node's default owner. */
  readonly owner?: string;
  readonly signal?: AbortSignal;
}

/** A distributed lock with leases and fencing tokens. */
export interface DistributedLock {
  /** Takes the lock on `key` if it is free (or already this owner's); never waits for a holder. */
  tryAcquire(key: string, options: AcquireOptions): Promise<AcquireResult>;
  /** Waits until the lock on `key` is free and takes it; rejects with `Timeout` after `timeoutMs`. */
  acquire(key: string, options: AcquireOptions & { readonly timeoutMs?: number }): Promise<Lease>;
  /** Acquires, keeps the lease alive while `fn` runs (passing it the lease), and always releases. */
  withLock<T>(key: string, options: AcquireOptions & { readonly timeoutMs?: number }, fn: (lease: Lease) => Promise<T>): Promise<T>;
}

/** A lease's countdown on the leader. */
interface Countdown {
  readonly fencingToken: LogIndex;
  readonly renewals: number;
  deadlineMs: number;
  expiring: boolean;
}

/** The outcome of a leader-local renewal attempt: renewed, lost, or go through the log. */
type LocalRenewal = { readonly kind: 'Renewed'; readonly lease: LeaseRecord } | { readonly kind: 'Lost'; readonly reason: string } | { readonly kind: 'UseLog' };

/**
 * One member of a lease cluster.
 *
 * @example
 * ```ts
 * const node = await LeaseNode.start({ id: 'n1', voters: ['n1', 'n2', 'n3'], transport, storage, clock });
 * const result = await node.tryAcquire('compaction', { ttlMs: 60_000 });
 * if (result.acquired) { await doWork(result.lease.signal, result.lease.fencingToken); await result.lease.release(); }
 * ```
 */
export class LeaseNode implements DistributedLock {
  readonly raft: RaftNode<LeaseResult>;
  readonly table: LeaseStateMachine;
  private readonly clock: Clock;
  private readonly driftPpm: number;
  private readonly marginMs: number;
  private readonly checkIntervalMs: number;
  private readonly defaultOwner: string;
  private readonly requestTimeoutMs: number;
  /** Share of the TTL the lessor counts: 1, or ½ for the test-only broken lessor. */
  private readonly countedShare: number;
  private readonly leaderLocalRenewals: boolean;
  private readonly renewalBug: 'WithoutConfirmation' | 'WithoutCountdown' | null;
  /** Renewals answered from the leader's countdown, and renewals that went through the log. */
  private readonly renewalCounts = { leaderLocal: 0, replicated: 0 };
  private nextRequest = 0;
  private stopped = false;
  private checkTimer: Timer | null = null;
  /** Leader only: countdowns by key, and the term they belong to. */
  private readonly countdowns = new Map<string, Countdown>();
  private leaderTerm: number | null = null;
  /** Waiters of `acquire()` by key, woken when the key's lease goes away. */
  private readonly waiters = new Map<string, Set<() => void>>();

  private constructor(raft: RaftNode<LeaseResult>, table: LeaseStateMachine, options: LeaseNodeOptions, lease: Required<LeaseOptions>) {
    this.raft = raft;
    this.table = table;
    this.clock = options.clock;
    this.driftPpm = lease.maxClockDriftPpm;
    this.marginMs = lease.marginMs;
    this.checkIntervalMs = lease.expiryCheckIntervalMs;
    this.defaultOwner = lease.defaultOwner;
    this.requestTimeoutMs = lease.requestTimeoutMs;
    this.countedShare = lease.testOnlyExpireEarly ? 0.5 : 1;
    this.leaderLocalRenewals = lease.leaderLocalRenewals;
    this.renewalBug = lease.testOnlyRenewalBug;
  }

  /** Starts the Raft node with the lease table as its state machine, and the lessor. */
  static async start(options: LeaseNodeOptions): Promise<LeaseNode> {
    const lease = resolveLeaseOptions(options);
    const table = new LeaseStateMachine();
    const { wrapStateMachine } = options;
    const raft = await RaftNode.start<LeaseResult>({ ...options, stateMachine: wrapStateMachine === undefined ? table : wrapStateMachine(table) });
    const node = new LeaseNode(raft, table, options, lease);
    table.onEvent((event) => {
      node.onTableEvent(event);
    });
    node.scheduleCheck();
    return node;
  }

  /** Stops the lessor and the Raft node (a leader hands leadership over first unless told not to). */
  async stop(options: { readonly transferLeadership?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.checkTimer?.cancel();
    for (const wake of [...this.waiters.values()].flatMap((set) => [...set])) wake();
    await this.raft.stop(options);
  }

  /** The owner name this node's leases use unless told otherwise (default: the node id). */
  defaultOwnerName(): string {
    return this.defaultOwner;
  }

  /** The leases in the table as this node has applied it (not linearizable; see `raft.readIndex()`). */
  leases(): LeaseRecord[] {
    return this.table.list();
  }

  // ---------------------------------------------------------------------------------------------
  // Client API

  async tryAcquire(key: string, options: AcquireOptions): Promise<AcquireResult> {
    const sentAtMs = this.clock.nowMs();
    const result = await this.acquireRecord(key, options);
    if (!result.acquired) return result;
    return { acquired: true, lease: new HeldLease(this, result.lease, sentAtMs) };
  }

  /**
   * Takes the lock like {@link tryAcquire}, but answers with the replicated record instead of a
   * `Lease` object: for clients that keep their validity themselves (the HTTP API), so that this
   * process keeps no timer per grant.
   */
  async acquireRecord(key: string, options: AcquireOptions): Promise<{ readonly acquired: true; readonly lease: LeaseRecord } | { readonly acquired: false; readonly holder: string }> {
    const owner = options.owner ?? this.defaultOwner;
    this.validate(key, owner, options.ttlMs);
    // Bounded: a mismatched answer (a request id an earlier incarnation used) is retried once with a new id.
    for (let attempt = 0; ; attempt++) {
      const result = await this.submit({ type: 'Acquire', key, owner, ttlMs: options.ttlMs, requestId: this.requestId() }, options.signal);
      if (result.type !== 'Granted' && result.type !== 'Held') throw unexpected(result);
      const matches = result.lease.key === key && (result.type === 'Held' || result.lease.owner === owner);
      if (!matches) {
        if (attempt === 0) continue;
        throw new RaftLeaseError('OutcomeUnknown', `the lease table answered '${key}' with the result of another request (a request id reused by an earlier incarnation of this node); retry`);
      }
      if (result.type === 'Held') return { acquired: false, holder: result.lease.owner };
      return { acquired: true, lease: result.lease };
    }
  }

  async acquire(key: string, options: AcquireOptions & { readonly timeoutMs?: number }): Promise<Lease> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const deadlineMs = this.clock.nowMs() + timeoutMs;
    // Bounded by the deadline: each round waits for the key to be freed (or a fallback timer).
    for (;;) {
      const result = await this.tryAcquire(key, options);
      if (result.acquired) return result.lease;
      const remainingMs = deadlineMs - this.clock.nowMs();
      if (remainingMs < 1) throw new RaftLeaseError('Timeout', `the lock on '${key}' is still held by ${result.holder} after ${timeoutMs} ms`);
      // The release may have been applied here between the answer and now: then try again at once.
      if (this.table.get(key)?.owner !== result.holder) continue;
      // Wait until this node applies the lease's removal; the fallback timer covers a removal this
      // node has not applied yet when the holder's TTL is long.
      await this.waitForRelease(key, Math.max(1, Math.min(remainingMs, Math.max(this.checkIntervalMs, options.ttlMs / 4))), options.signal);
    }
  }

  async withLock<T>(key: string, options: AcquireOptions & { readonly timeoutMs?: number }, fn: (lease: Lease) => Promise<T>): Promise<T> {
    const lease = await this.acquire(key, options);
    // A third of the validity (the TTL less the lease margin and drift bound), which is what runs out.
    const stopKeepAlive = lease.keepAlive({ intervalMs: Math.max(1, Math.floor(this.validityMs(lease.ttlMs) / 3)) });
    try {
      return await fn(lease);
    } finally {
      stopKeepAlive();
      await lease.release().catch(() => undefined);
    }
  }

  /**
   * Releases the lease on `key` granted under `fencingToken` without a `Lease` object (tools, an
   * operator's API). Rejects with `InvalidArgument` and changes nothing when no such lease exists: no
   * lease on the key, another owner, or another token.
   */
  async release(key: string, options: { readonly fencingToken: number; readonly owner?: string; readonly renewals?: number }): Promise<void> {
    const owner = options.owner ?? this.defaultOwner;
    const problem =
      invalidLeaseKey(key) ??
      invalidLeaseOwner(owner) ??
      invalidFencingToken(options.fencingToken) ??
      (options.renewals === undefined || (Number.isSafeInteger(options.renewals) && options.renewals >= 0) ? null : 'renewals must be a non-negative integer');
    if (problem !== null) throw new RaftLeaseError('InvalidArgument', problem);
    const release = { type: 'Release' as const, key, owner, fencingToken: options.fencingToken as LogIndex, requestId: this.requestId() };
    const result = await this.submit(options.renewals === undefined ? release : { ...release, renewals: options.renewals }, undefined);
    if (result.type === 'Released') return;
    if (result.type === 'NotHeld') {
      throw new RaftLeaseError('InvalidArgument', `no lease on '${key}' held by ${owner} under token ${options.fencingToken} (${result.reason}); nothing was released`);
    }
    throw unexpected(result);
  }

  /**
   * Renews the lease on `key` granted under `fencingToken` without a `Lease` object (the HTTP API):
   * a fresh `ttlMs` (default: the lease's current TTL) counted by the leader from when it applies the
   * renewal. Resolves with the renewed record; rejects with `LeaseLost` when no such lease exists (no
   * lease on the key, another owner, or another token).
   */
  async renewLease(key: string, options: { readonly fencingToken: number; readonly owner?: string; readonly ttlMs?: number }): Promise<LeaseRecord> {
    const owner = options.owner ?? this.defaultOwner;
    const problem =
      invalidLeaseKey(key) ??
      invalidLeaseOwner(owner) ??
      invalidFencingToken(options.fencingToken) ??
      (options.ttlMs === undefined ? null : invalidLeaseTtl(options.ttlMs));
    if (problem !== null) throw new RaftLeaseError('InvalidArgument', problem);
    // Without a TTL, renew by the lease's own: read it once this node has caught up with the leader
    // (a lagging node's table may not hold the lease yet, or may hold the key's previous one).
    if (options.ttlMs !== undefined) this.validate(key, owner, options.ttlMs);
    const local = await this.renewOnLeader(key, owner, options.fencingToken as LogIndex, options.ttlMs);
    if (local.kind === 'Renewed') return local.lease;
    if (local.kind === 'Lost') throw new RaftLeaseError('LeaseLost', `no lease on '${key}' held by ${owner} under token ${options.fencingToken} (${local.reason}); acquire it again`);
    if (options.ttlMs === undefined) await this.raft.readIndex({ timeoutMs: this.requestTimeoutMs });
    const current = this.table.get(key);
    const ttlMs = options.ttlMs ?? (current?.owner === owner && current.fencingToken === options.fencingToken ? current.ttlMs : undefined);
    if (ttlMs === undefined) throw new RaftLeaseError('LeaseLost', `no lease on '${key}' held by ${owner} under token ${options.fencingToken}; acquire it again`);
    const result = await this.submitRenewal({ type: 'Renew', key, owner, fencingToken: options.fencingToken as LogIndex, ttlMs, requestId: this.requestId() });
    if (result.type === 'Granted') return result.lease;
    if (result.type === 'NotHeld') throw new RaftLeaseError('LeaseLost', `no lease on '${key}' held by ${owner} under token ${options.fencingToken} (${result.reason}); acquire it again`);
    throw unexpected(result);
  }

  /** How many renewals this node answered from its countdown (leader-local) and how many went through the log. */
  renewalStats(): { readonly leaderLocal: number; readonly replicated: number } {
    return { ...this.renewalCounts };
  }

  // ---------------------------------------------------------------------------------------------
  // Internals used by HeldLease

  /** How long a holder may trust a lease of `ttlMs` from when it sent its request. */
  validityMs(ttlMs: number): number {
    return Math.floor((ttlMs * (1_000_000 - 2 * this.driftPpm)) / 1_000_000) - this.marginMs;
  }

  nowMs(): number {
    return this.clock.nowMs();
  }

  setTimer(delayMs: number, callback: () => void): Timer {
    return this.clock.setTimer(delayMs, callback);
  }

  /** Proposes `command` (forwarded by followers), retrying refusals that are safe to retry, until the request timeout. */
  async submit(command: LeaseTableCommand, signal: AbortSignal | undefined): Promise<LeaseResult> {
    const deadlineMs = this.clock.nowMs() + this.requestTimeoutMs;
    const bytes = encodeLeaseCommand(command);
    // Bounded by the deadline; the request id makes every retry apply at most once.
    for (let attempt = 0; ; attempt++) {
      const remainingMs = deadlineMs - this.clock.nowMs();
      if (this.stopped) throw new RaftLeaseError('Stopped', 'the lease node stopped');
      // Below a millisecond a retry could not wait at all: time would not move between attempts.
      if (remainingMs < 1) throw new RaftLeaseError('Timeout', `no answer within ${this.requestTimeoutMs} ms; the request may still apply`);
      try {
        const applied = await this.raft.propose(bytes, { timeoutMs: remainingMs, ...(signal === undefined ? {} : { signal }) });
        return applied.result;
      } catch (error) {
        const retriable = error instanceof RaftLeaseError && (error.code === 'ProposalDropped' || error.code === 'NotLeader' || error.code === 'OutcomeUnknown');
        if (!retriable) throw error;
        await new Promise<void>((resolve) => {
          this.clock.setTimer(Math.max(1, Math.min(remainingMs, 20 * (attempt + 1))), resolve);
        });
      }
    }
  }

  requestId(): string {
    return `${this.raft.instanceId}:${(this.nextRequest++).toString(36)}`;
  }

  /** Proposes a `Renew` through the log (the fallback of {@link renewOnLeader}). */
  submitRenewal(command: Extract<LeaseTableCommand, { readonly type: 'Renew' }>): Promise<LeaseResult> {
    this.renewalCounts.replicated++;
    return this.submit(command, undefined);
  }

  /**
   * Renews the lease on `key` from the leader's own countdown, without a log write (design brief §4,
   * docs/lease-safety.md). Two conditions make the answer safe:
   *
   * 1. The leader has committed an entry of its current term, and applied up to its commit index: every
   *    `Expire` an earlier leader proposed that will ever apply has applied, so the table shows
   *    whether the lease still exists.
   * 2. A heartbeat quorum round that started after the renewal arrived confirmed the leadership (the
   *    ReadIndex round of thesis §6.4, or its clock-based lease when lease-based reads are on): any
   *    later leader was elected after that, and restarts the lease's countdown at full TTL from its
   *    election, after the holder sent the renewal.
   *
   * The countdown then restarts at full TTL from now. The renewal goes through the log instead
   * (`UseLog`) on a follower, before this leader's countdowns run, for another TTL than the lease's
   * (a new leader would count the table's), or while an `Expire` for the lease is in flight (the
   * log orders the two).
   */
  async renewOnLeader(key: string, owner: string, fencingToken: LogIndex, ttlMs: number | undefined): Promise<LocalRenewal> {
    if (!this.leaderLocalRenewals) return { kind: 'UseLog' };
    const before = this.raft.status();
    if (before.role !== 'Leader' || this.leaderTerm !== before.term) return { kind: 'UseLog' };
    if (this.renewalBug !== 'WithoutConfirmation') {
      try {
        await this.raft.readIndex({ timeoutMs: this.requestTimeoutMs });
      } catch (error) {
        if (error instanceof RaftLeaseError && error.code === 'Stopped') throw error;
        // Leadership lost or unconfirmed in time: the log decides.
        return { kind: 'UseLog' };
      }
    }
    return this.renewFromCountdown(key, owner, fencingToken, ttlMs, before.term);
  }

  /** The synchronous half of {@link renewOnLeader}, after the confirmation round. */
  private renewFromCountdown(key: string, owner: string, fencingToken: LogIndex, ttlMs: number | undefined, term: number): LocalRenewal {
    const status = this.raft.status();
    if (status.role !== 'Leader' || status.term !== term || this.leaderTerm !== term) return { kind: 'UseLog' };
    const lease = this.table.get(key);
    if (lease === undefined) return { kind: 'Lost', reason: 'NoLease' };
    if (lease.owner !== owner) return { kind: 'Lost', reason: 'OtherHolder' };
    if (lease.fencingToken !== fencingToken) return { kind: 'Lost', reason: 'TokenMismatch' };
    if (ttlMs !== undefined && ttlMs !== lease.ttlMs) return { kind: 'UseLog' };
    const countdown = this.countdowns.get(key);
    if (countdown === undefined || countdown.expiring || countdown.fencingToken !== fencingToken || countdown.renewals !== lease.renewals) return { kind: 'UseLog' };
    if (this.renewalBug !== 'WithoutCountdown') countdown.deadlineMs = Math.max(countdown.deadlineMs, this.clock.nowMs() + lease.ttlMs * this.countedShare);
    this.renewalCounts.leaderLocal++;
    return { kind: 'Renewed', lease };
  }

  private validate(key: string, owner: string, ttlMs: number): void {
    const problem = invalidLeaseKey(key) ?? invalidLeaseOwner(owner) ?? invalidLeaseTtl(ttlMs);
    if (problem !== null) throw new RaftLeaseError('InvalidArgument', problem);
    if (this.validityMs(ttlMs) <= 0) {
      throw new RaftLeaseError(
        'InvalidArgument',
        `ttlMs ${ttlMs} leaves no validity after the drift bound (${this.driftPpm} ppm) and the margin (${this.marginMs} ms); use at least ${this.minimumTtlMs()} ms`,
      );
    }
  }

  /** The shortest TTL that leaves the holder some validity. */
  private minimumTtlMs(): number {
    let ttlMs = Math.max(1, Math.ceil(((this.marginMs + 1) * 1_000_000) / (1_000_000 - 2 * this.driftPpm)));
    // Bounded: the estimate is off by at most a couple of milliseconds from rounding.
    for (let step = 0; step < 10 && this.validityMs(ttlMs) <= 0; step++) ttlMs++;
    return ttlMs;
  }

  private waitForRelease(key: string, maxWaitMs: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiters = this.waiters.get(key) ?? new Set<() => void>();
      this.waiters.set(key, waiters);
      let timer: Timer | null = null;
      const done = (): void => {
        waiters.delete(wake);
        if (waiters.size === 0) this.waiters.delete(key);
        timer?.cancel();
        signal?.removeEventListener('abort', onAbort);
      };
      const wake = (): void => {
        done();
        resolve();
      };
      const onAbort = (): void => {
        done();
        reject(signal?.reason instanceof Error ? signal.reason : new DOMException('the operation was aborted', 'AbortError'));
      };
      waiters.add(wake);
      timer = this.clock.setTimer(maxWaitMs, wake);
      if (signal !== undefined) {
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  // ---------------------------------------------------------------------------------------------
  // The lessor (leader only)

  private onTableEvent(event: LeaseEvent): void {
    if (event.type === 'Removed') {
      this.countdowns.delete(event.lease.key);
      for (const wake of [...(this.waiters.get(event.lease.key) ?? [])]) wake();
      return;
    }
    if (this.leaderTerm === null) return;
    if (event.type === 'Restored') {
      this.restartCountdowns();
      return;
    }
    // A grant or renewal applied on the leader: count a full TTL from now.
    this.countdowns.set(event.lease.key, {
      fencingToken: event.lease.fencingToken,
      renewals: event.lease.renewals,
      deadlineMs: this.clock.nowMs() + event.lease.ttlMs * this.countedShare,
      expiring: false,
    });
  }

  /** A new leader restarts every countdown at full TTL: a leader change only ever lengthens a lease. */
  private restartCountdowns(): void {
    this.countdowns.clear();
    const nowMs = this.clock.nowMs();
    for (const lease of this.table.list()) {
      this.countdowns.set(lease.key, { fencingToken: lease.fencingToken, renewals: lease.renewals, deadlineMs: nowMs + lease.ttlMs * this.countedShare, expiring: false });
    }
  }

  private scheduleCheck(): void {
    if (this.stopped) return;
    this.checkTimer = this.clock.setTimer(this.checkIntervalMs, () => {
      this.checkCountdowns();
      this.scheduleCheck();
    });
  }

  private checkCountdowns(): void {
    const status = this.raft.status();
    if (status.role !== 'Leader') {
      this.leaderTerm = null;
      this.countdowns.clear();
      return;
    }
    if (this.leaderTerm !== status.term) {
      this.leaderTerm = status.term;
      this.restartCountdowns();
      return;
    }
    const nowMs = this.clock.nowMs();
    for (const [key, countdown] of this.countdowns) {
      if (countdown.expiring || countdown.deadlineMs > nowMs) continue;
      countdown.expiring = true;
      // One attempt, never retried through another node: only the leader that counted proposes.
      const bytes = encodeLeaseCommand({ type: 'Expire', key, fencingToken: countdown.fencingToken, renewals: countdown.renewals });
      this.raft.propose(bytes, { timeoutMs: this.requestTimeoutMs }).catch(() => {
        // Not applied (leadership lost, timeout): try again at the next check while still leader.
        countdown.expiring = false;
      });
    }
  }
}

/** A lease held by this client. */
class HeldLease implements Lease {
  readonly key: string;
  readonly owner: string;
  readonly fencingToken: LogIndex;
  ttlMs: number;
  validUntil: number;
  /** The lease's renewal count as of this object's latest grant or renewal. */
  private renewals: number;
  private readonly controller = new AbortController();
  private expiryTimer: Timer | null = null;
  private released = false;
  /** Renewals sent and not answered yet (settled, never rejecting); release() waits for them. */
  private readonly renewalsInFlight = new Set<Promise<void>>();

  constructor(
    private readonly node: LeaseNode,
    record: LeaseRecord,
    sentAtMs: number,
  ) {
    this.key = record.key;
    this.owner = record.owner;
    this.fencingToken = record.fencingToken;
    this.ttlMs = record.ttlMs;
    this.renewals = record.renewals;
    this.validUntil = sentAtMs + node.validityMs(record.ttlMs);
    this.armExpiry();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  remainingMs(): number {
    return Math.max(0, this.validUntil - this.node.nowMs());
  }

  renew(): Promise<void> {
    const renewal = this.renewOnce();
    const settled = renewal.then(
      () => undefined,
      () => undefined,
    );
    this.renewalsInFlight.add(settled);
    void settled.then(() => this.renewalsInFlight.delete(settled));
    return renewal;
  }

  private async renewOnce(): Promise<void> {
    if (this.controller.signal.aborted) throw new RaftLeaseError('LeaseLost', `the lease on '${this.key}' already ended`);
    const sentAtMs = this.node.nowMs();
    const local = await this.node.renewOnLeader(this.key, this.owner, this.fencingToken, this.ttlMs);
    if (local.kind === 'Lost') {
      this.lose(`the lease on '${this.key}' (token ${this.fencingToken}) is gone: ${local.reason}`);
      throw new RaftLeaseError('LeaseLost', `the lease on '${this.key}' (token ${this.fencingToken}) was lost`);
    }
    const result: LeaseResult =
      local.kind === 'Renewed'
        ? { type: 'Granted', lease: local.lease, renewed: true }
        : await this.node.submitRenewal({ type: 'Renew', key: this.key, owner: this.owner, fencingToken: this.fencingToken, ttlMs: this.ttlMs, requestId: this.node.requestId() });
    if (result.type !== 'Granted') {
      this.lose(`the lease on '${this.key}' (token ${this.fencingToken}) is gone: ${result.type === 'NotHeld' ? result.reason : result.type}`);
      throw new RaftLeaseError('LeaseLost', `the lease on '${this.key}' (token ${this.fencingToken}) was lost`);
    }
    // The lease ran out on this side while the renewal was in flight: the holder already gave it up
    // (its signal aborted), so the renewal cannot revive it; release it to free the key early.
    this.renewals = Math.max(this.renewals, result.lease.renewals);
    if (this.isAborted()) throw new RaftLeaseError('LeaseLost', `the lease on '${this.key}' ran out before its renewal was confirmed; release it`);
    // Validity restarts from when the renewal was sent, never later than the leader's new countdown.
    this.validUntil = Math.max(this.validUntil, sentAtMs + this.node.validityMs(this.ttlMs));
    this.armExpiry();
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.expiryTimer?.cancel();
    if (!this.controller.signal.aborted) this.controller.abort(new RaftLeaseError('LeaseLost', `the lease on '${this.key}' was released`));
    // A renewal still in flight may yet be applied, and count a renewal this object does not know of:
    // the release would then be refused as naming an older lease, and the key stay held for a TTL.
    // Its answer updates the count; each renewal is bounded by the request timeout.
    await Promise.all([...this.renewalsInFlight]);
    // Names the renewal count this object knows, so it never ends a newer re-acquire by the same owner.
    const result = await this.node.submit(
      { type: 'Release', key: this.key, owner: this.owner, fencingToken: this.fencingToken, requestId: this.node.requestId(), renewals: this.renewals },
      undefined,
    );
    if (result.type !== 'Released' && result.type !== 'NotHeld') throw unexpected(result);
  }

  keepAlive(options: { readonly intervalMs: number }): () => void {
    if (!Number.isFinite(options.intervalMs) || options.intervalMs <= 0) throw new RaftLeaseError('InvalidArgument', `intervalMs must be positive, got ${options.intervalMs}`);
    let timer: Timer | null = null;
    let active = true;
    const next = (): void => {
      if (!active || this.released || this.controller.signal.aborted) return;
      timer = this.node.setTimer(options.intervalMs, () => {
        // A failed renewal that did not lose the lease (a timeout, no leader) is retried at the next
        // interval; the signal still fires at validUntil if none succeeds.
        this.renew().then(next, next);
      });
    };
    next();
    return () => {
      active = false;
      timer?.cancel();
    };
  }

  /** Read through a call so that a check after an await is not narrowed away. */
  private isAborted(): boolean {
    return this.controller.signal.aborted;
  }

  private armExpiry(): void {
    this.expiryTimer?.cancel();
    const delayMs = this.validUntil - this.node.nowMs();
    if (delayMs <= 0) {
      this.lose(`the lease on '${this.key}' ran out`);
      return;
    }
    const armedFor = this.validUntil;
    // The timer was armed for this validity: when it fires the lease ran out, unless a renewal moved
    // validUntil meanwhile (comparing clock readings instead could spin on sub-millisecond rounding).
    this.expiryTimer = this.node.setTimer(delayMs, () => {
      if (this.validUntil === armedFor) this.lose(`the lease on '${this.key}' ran out`);
    });
  }

  private lose(reason: string): void {
    this.expiryTimer?.cancel();
    if (!this.controller.signal.aborted) this.controller.abort(new RaftLeaseError('LeaseLost', reason));
  }
}

function unexpected(result: LeaseResult): RaftLeaseError {
  return new RaftLeaseError('InvalidArgument', `the lease table refused the request: ${result.type === 'Rejected' ? result.reason : result.type}`);
}

function resolveLeaseOptions(options: LeaseNodeOptions): Required<LeaseOptions> {
  const lease = options.lease ?? {};
  const resolved: Required<LeaseOptions> = {
    maxClockDriftPpm: lease.maxClockDriftPpm ?? 200,
    marginMs: lease.marginMs ?? 1_000,
    expiryCheckIntervalMs: lease.expiryCheckIntervalMs ?? options.tickIntervalMs ?? 100,
    defaultOwner: lease.defaultOwner ?? options.id,
    requestTimeoutMs: lease.requestTimeoutMs ?? 5_000,
    leaderLocalRenewals: lease.leaderLocalRenewals ?? true,
    testOnlyExpireEarly: lease.testOnlyExpireEarly === true,
    testOnlyRenewalBug: lease.testOnlyRenewalBug ?? null,
  };
  if (!Number.isSafeInteger(resolved.maxClockDriftPpm) || resolved.maxClockDriftPpm < 0 || resolved.maxClockDriftPpm >= 100_000) {
    throw new ConfigError('lease.maxClockDriftPpm', `must be an integer in [0, 100000), got ${resolved.maxClockDriftPpm}`);
  }
  if (!Number.isFinite(resolved.marginMs) || resolved.marginMs < 0) throw new ConfigError('lease.marginMs', `must be a non-negative number, got ${resolved.marginMs}`);
  if (!Number.isFinite(resolved.expiryCheckIntervalMs) || resolved.expiryCheckIntervalMs <= 0) {
    throw new ConfigError('lease.expiryCheckIntervalMs', `must be a positive number, got ${resolved.expiryCheckIntervalMs}`);
  }
  if (invalidLeaseOwner(resolved.defaultOwner) !== null) throw new ConfigError('lease.defaultOwner', invalidLeaseOwner(resolved.defaultOwner) ?? '');
  if (!Number.isFinite(resolved.requestTimeoutMs) || resolved.requestTimeoutMs <= 0) {
    throw new ConfigError('lease.requestTimeoutMs', `must be a positive number, got ${resolved.requestTimeoutMs}`);
  }
  return resolved;
}
