/**
 * The lock workload: clients on several nodes compete for a few keys through the production
 * `LeaseNode` (`DistributedLock`), do fenced work while they believe they hold a lease, renew,
 * release or walk away, and are crashed and paused with their nodes. Two checkers judge the run:
 *
 * - **exclusion**: for every key, the true-time intervals during which clients *believe* they hold
 *   the lease never overlap — checked only in runs whose clock drift stays within ρ, whose clocks
 *   never jump and whose pauses stay within the holder's margin (the promise of docs/lease-safety.md);
 * - **fencing**: a fenced resource sees tokens that increase with grant order and that belong to one
 *   owner each, in every run.
 *
 * @module
 */
import type { LogIndex } from '../src/raft/index.js';
import type { Lease, LeaseNode } from '../src/lease/index.js';

/** Shape of the lock workload. */
export interface LockWorkloadOptions {
  /** Concurrent clients. */
  readonly clients: number;
  /** Keys competed for. */
  readonly keys: number;
  /** TTL of every lease, in ms. */
  readonly ttlMs: number;
  /** Most think time between a client's attempts, in ms. */
  readonly thinkMaxMs: number;
  /** Work steps a holder performs (one fenced write each), and the time between them, in ms. */
  readonly workSteps: number;
  readonly workStepMs: number;
}

/** Defaults: 6 clients on 2 keys, 1.5 s leases, work that outlives one TTL when renewed. */
export const DEFAULT_LOCK_WORKLOAD: LockWorkloadOptions = { clients: 6, keys: 2, ttlMs: 1_500, thinkMaxMs: 300, workSteps: 6, workStepMs: 300 };

/** Hooks into the simulated world. */
export interface LockWorldAccess {
  nowNs(): number;
  between(min: number, max: number): number;
  schedule(delayNs: number, label: string, node: number | null, run: () => void): void;
  /** The running lease node at `index`, or null while it is down. */
  node(index: number): LeaseNode | null;
  nodeCount(): number;
}

/** One period during which a client believed it held a lease. */
export interface BeliefInterval {
  readonly key: string;
  readonly owner: string;
  readonly fencingToken: LogIndex;
  readonly node: number;
  readonly fromNs: number;
  toNs: number | null;
  /** The holder's clock when the grant arrived, and the validity end it computed (ms, its clock). */
  readonly grantedLocalMs: number;
  readonly validUntilLocalMs: number;
}

/** A lease a client holds, with the belief interval it opened. */
interface HeldLease {
  readonly node: number;
  readonly lease: Lease;
  readonly interval: BeliefInterval;
}

/** A grant as a client received it. */
interface GrantRecord {
  readonly key: string;
  readonly owner: string;
  readonly fencingToken: LogIndex;
  /** True time the client asked, and the true time the grant reached it. */
  readonly invokedNs: number;
  readonly atNs: number;
}

/**
 * One event of the lock history, in the JSON-lines format of the kv history: `f` is `acquire`, `renew`
 * or `release`; `value` is the owner on an acquire invoke, `[owner, fencingToken]` when a lease is
 * named or granted, the holder's name when an acquire failed because the lock was held, and null when
 * the outcome is unknown (`info`). `time` is true simulated time in nanoseconds.
 */
export interface LockHistoryEvent {
  readonly process: number;
  readonly type: 'invoke' | 'ok' | 'fail' | 'info';
  readonly f: 'acquire' | 'renew' | 'release';
  readonly key: string;
  readonly value: string | readonly [string, number] | null;
  readonly time: number;
}

/** What a lock run found. */
export interface LockVerdict {
  readonly property: 'LeaseExclusion' | 'Fencing';
  readonly message: string;
}

/** A resource that accepts writes only with a fencing token at least the largest it has seen. */
export class FencedResource {
  /** key → largest token accepted, and its owner. */
  private readonly latest = new Map<string, { token: number; owner: string }>();
  accepted = 0;
  rejected = 0;
  /** Set when one token showed up with two owners: tokens must be unique per grant. */
  violation: string | null = null;

  write(key: string, token: number, owner: string): boolean {
    const latest = this.latest.get(key);
    if (latest !== undefined && token < latest.token) {
      this.rejected++;
      return false;
    }
    if (latest !== undefined && token === latest.token && owner !== latest.owner) {
      this.violation ??= `token ${token} of '${key}' used by ${latest.owner} and ${owner}`;
    }
    this.latest.set(key, { token, owner });
    this.accepted++;
    return true;
  }
}

/** The clients. */
export class LockWorkload {
  readonly intervals: BeliefInterval[] = [];
  readonly resource = new FencedResource();
  private readonly grants: GrantRecord[] = [];
  /** Leases held, by the node they live on. */
  private readonly live = new Set<HeldLease>();
  private running = true;
  readonly history: LockHistoryEvent[] = [];
  /**
   * Renewals and releases run beside the client's next steps, so each gets its own history process
   * (numbered after the clients), keeping one outstanding operation per process.
   */
  private nextSideProcess: number;
  stats = { attempts: 0, grants: 0, held: 0, renewals: 0, releases: 0, lost: 0 };

  constructor(
    private readonly world: LockWorldAccess,
    private readonly options: LockWorkloadOptions,
  ) {
    this.nextSideProcess = options.clients;
  }

  start(): void {
    for (let client = 0; client < this.options.clients; client++) this.scheduleNext(client);
  }

  stop(): void {
    this.running = false;
  }

  /** Node `index` crashed: its clients' beliefs end now (the process that held them is gone). */
  onCrash(index: number): void {
    for (const held of [...this.live]) {
      if (held.node !== index) continue;
      this.end(held, this.world.nowNs());
    }
  }

  /** Ends every belief still open (the run is over). */
  finish(): void {
    for (const held of [...this.live]) this.end(held, this.world.nowNs());
  }

  /**
   * Checks fencing always, and exclusion when `exclusionPromised` (drift within ρ, no clock jumps).
   * An overlap is excused when the earlier holder's process was paused for longer than `marginMs` in
   * total while it believed it held the lease: that is the case fencing tokens exist for.
   */
  verdict(exclusionPromised: boolean, marginMs: number, pausedMsDuring: (node: number, fromNs: number, toNs: number) => number): LockVerdict | null {
    if (this.resource.violation !== null) return { property: 'Fencing', message: this.resource.violation };
    // Tokens grow with real-time grant order: a grant requested after another grant of the key was
    // received carries a larger token (or the same one, for the same owner re-acquiring). Grants
    // whose request and answer overlap may be ordered either way; a late answer is not a violation.
    const byKey = new Map<string, GrantRecord[]>();
    for (const grant of this.grants) byKey.set(grant.key, [...(byKey.get(grant.key) ?? []), grant]);
    for (const [key, grants] of byKey) {
      for (const earlier of grants) {
        for (const later of grants) {
          if (later.invokedNs <= earlier.atNs) continue;
          const sameLease = later.fencingToken === earlier.fencingToken && later.owner === earlier.owner;
          if (later.fencingToken < earlier.fencingToken || (later.fencingToken === earlier.fencingToken && !sameLease)) {
            return {
              property: 'Fencing',
              message: `'${key}' granted to ${later.owner} with token ${later.fencingToken} (asked at ${later.invokedNs} ns) after ${earlier.owner} had received token ${earlier.fencingToken} (at ${earlier.atNs} ns)`,
            };
          }
        }
      }
    }
    if (!exclusionPromised) return null;
    const intervalsByKey = new Map<string, BeliefInterval[]>();
    for (const interval of this.intervals) intervalsByKey.set(interval.key, [...(intervalsByKey.get(interval.key) ?? []), interval]);
    for (const [key, intervals] of intervalsByKey) {
      const sorted = [...intervals].sort((a, b) => a.fromNs - b.fromNs);
      for (let i = 0; i < sorted.length; i++) {
        const a = sorted[i];
        if (a === undefined) continue;
        for (let j = i + 1; j < sorted.length; j++) {
          const b = sorted[j];
          if (b === undefined || b.fromNs >= (a.toNs ?? Number.POSITIVE_INFINITY)) break;
          if (a.fencingToken === b.fencingToken && a.owner === b.owner) continue;
          if (pausedMsDuring(a.node, a.fromNs, a.toNs ?? Number.POSITIVE_INFINITY) > marginMs) continue;
          return {
            property: 'LeaseExclusion',
            message: `'${key}': ${a.owner} (token ${a.fencingToken}, on n${a.node + 1}, valid until ${a.validUntilLocalMs.toFixed(3)} ms on its clock, granted at ${a.grantedLocalMs.toFixed(3)}) believed it held the lease from ${a.fromNs} to ${String(a.toNs)} ns (true time) and ${b.owner} (token ${b.fencingToken}, on n${b.node + 1}) from ${b.fromNs} ns`,
          };
        }
      }
    }
    return null;
  }

  private scheduleNext(client: number): void {
    if (!this.running) return;
    const node = this.world.between(0, this.world.nodeCount() - 1);
    this.world.schedule(this.world.between(0, this.options.thinkMaxMs) * 1_000_000, `lock client ${client}`, node, () => {
      this.attempt(client, node);
    });
  }

  private attempt(client: number, node: number): void {
    const leaseNode = this.world.node(node);
    if (!this.running || leaseNode === null) {
      this.scheduleNext(client);
      return;
    }
    const key = `lock${this.world.between(0, this.options.keys - 1)}`;
    const owner = `c${client}`;
    this.stats.attempts++;
    this.record(client, 'invoke', 'acquire', key, owner);
    const invokedNs = this.world.nowNs();
    leaseNode.tryAcquire(key, { ttlMs: this.options.ttlMs, owner }).then(
      (result) => {
        if (!result.acquired) {
          this.stats.held++;
          this.record(client, 'fail', 'acquire', key, result.holder);
          this.scheduleNext(client);
          return;
        }
        const { lease } = result;
        this.record(client, 'ok', 'acquire', key, [owner, lease.fencingToken]);
        this.stats.grants++;
        const nowNs = this.world.nowNs();
        this.grants.push({ key, owner, fencingToken: lease.fencingToken, invokedNs, atNs: nowNs });
        if (lease.signal.aborted) {
          this.scheduleNext(client);
          return;
        }
        const interval: BeliefInterval = {
          key,
          owner,
          fencingToken: lease.fencingToken,
          node,
          fromNs: nowNs,
          toNs: null,
          grantedLocalMs: lease.validUntil - lease.remainingMs(),
          validUntilLocalMs: lease.validUntil,
        };
        this.intervals.push(interval);
        const held: HeldLease = { node, lease, interval };
        this.live.add(held);
        lease.signal.addEventListener('abort', () => {
          if (this.live.has(held)) this.stats.lost++;
          this.end(held, this.world.nowNs());
        });
        this.work(client, held, 0);
      },
      () => {
        this.record(client, 'info', 'acquire', key, null);
        this.scheduleNext(client);
      },
    );
  }

  private record(process: number, type: LockHistoryEvent['type'], f: LockHistoryEvent['f'], key: string, value: LockHistoryEvent['value']): void {
    this.history.push({ process, type, f, key, value, time: this.world.nowNs() });
  }

  /** One fenced write per step while the lease is believed held; renews halfway; releases (usually) at the end. */
  private work(client: number, held: HeldLease, step: number): void {
    this.world.schedule(this.options.workStepMs * 1_000_000, `lock work ${client}`, held.node, () => {
      if (!this.live.has(held)) {
        this.scheduleNext(client);
        return;
      }
      const { lease } = held;
      if (lease.signal.aborted || lease.remainingMs() <= 0) {
        this.end(held, this.world.nowNs());
        this.scheduleNext(client);
        return;
      }
      this.resource.write(lease.key, lease.fencingToken, lease.owner);
      if (step + 1 >= this.options.workSteps) {
        // Most holders release; some walk away and let the lease expire.
        if (this.world.between(0, 3) > 0) {
          this.stats.releases++;
          this.end(held, this.world.nowNs());
          const named: readonly [string, number] = [lease.owner, lease.fencingToken];
          const process = this.nextSideProcess++;
          this.record(process, 'invoke', 'release', lease.key, named);
          lease.release().then(
            () => {
              this.record(process, 'ok', 'release', lease.key, named);
            },
            () => {
              this.record(process, 'info', 'release', lease.key, null);
            },
          );
        }
        this.scheduleNext(client);
        return;
      }
      if (step % 2 === 1) {
        this.stats.renewals++;
        const process = this.nextSideProcess++;
        const named: readonly [string, number] = [lease.owner, lease.fencingToken];
        this.record(process, 'invoke', 'renew', lease.key, named);
        lease.renew().then(
          () => {
            this.record(process, 'ok', 'renew', lease.key, named);
          },
          () => {
            // Unknown rather than failed: a renewal can apply and still be reported lost (the holder
            // had given the lease up while it was in flight).
            this.record(process, 'info', 'renew', lease.key, null);
          },
        );
      }
      this.work(client, held, step + 1);
    });
  }

  private end(held: HeldLease, atNs: number): void {
    if (!this.live.delete(held)) return;
    held.interval.toNs ??= atNs;
  }
}
