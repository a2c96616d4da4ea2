/**
 * The maintenance orchestrator: every node declares the same schedules; for each occurrence exactly
 * one node runs the job (design brief §5, docs/maintenance.md).
 *
 * - Before firing, a node calls `tryAcquire(scheduleId, { ttlMs: lockTtlMs })`. The others log
 *   `schedule {id} skipped — lock held by peer {node_id}` at DEBUG.
 * - The winner records the start in the replicated maintenance records (`BeginOccurrence`, fenced by its
 *   lease): an occurrence that is already settled is never run again, even by a slower node that gets
 *   the lock after the winner released it.
 * - While the job runs its lease is kept alive; checkpoints are replicated and fenced; the finish is
 *   recorded before the lock is released. A crashed runner's lease expires, and another node resumes
 *   the occurrence from its last checkpoint while the window is open; otherwise it is recorded missed.
 *
 * Time: occurrences are named by their scheduled wall-clock time, which every node computes alike; a
 * node's wall clock only decides *when* it competes. Timers and durations use the monotonic `Clock`.
 *
 * @module
 */
import { Packr, Unpackr } from 'msgpackr';
import { pino, type Logger } from 'pino';
import { ConfigError, RaftLeaseError, fnv1a32, positiveInteger, wellFormedPrefix, type LogIndex } from '../raft/index.js';
import type { Clock, Timer } from '../runtime/index.js';
import type { Lease, LeaseNode } from '../lease/lock.js';
import { MAX_CHECKPOINT_BYTES, MAX_OUTCOME_ERROR_CHARS, type MaintenanceRecord, type MaintenanceRun, type OccurrenceOutcome } from '../lease/maintenance-records.js';
import type { LeaseTableCommand } from '../lease/state-machine.js';
import { MaintenanceMetrics, registerRaftMetrics, type RunResult } from './metrics.js';
import { occurrencesBetween, openOccurrence, resolveSchedule, type Schedule, type ScheduleOptions } from './schedule.js';

/** The logger of an orchestrator created without one: shared, since creating a pino logger is not cheap. */
const SILENT_LOGGER = pino({ level: 'silent' });

/** A wall clock: milliseconds since the Unix epoch (UTC). Production uses `SystemWallClock` (from `raftlease`). */
export interface WallClock {
  nowMs(): number;
}

/** What a job receives. */
export interface JobContext {
  readonly scheduleId: string;
  /** The occurrence's scheduled time. */
  readonly occurrence: Date;
  readonly occurrenceMs: number;
  /** Token of the lease this run holds: hand it to fenced resources, which must refuse smaller ones. */
  readonly fencingToken: LogIndex;
  /** Aborts when the lease is lost or the orchestrator stops: stop promptly, without finishing. */
  readonly signal: AbortSignal;
  /** 1 for the first runner of the occurrence, more when resuming after a crashed runner. */
  readonly attempt: number;
  /** The progress the latest accepted `checkpoint` stored for this occurrence, or undefined. */
  readonly lastCheckpoint: unknown;
  /**
   * Stores `progress` (any msgpack-encodable value, at most `maxCheckpointBytes` encoded) in the
   * replicated records, fenced by this run's token. Rejects with `LeaseLost` when another runner has
   * taken over (the job must stop), `InvalidArgument` when too large.
   */
  checkpoint(progress: unknown): Promise<void>;
  /** A child logger with `scheduleId`, `occurrence` and `fencingToken`. */
  readonly logger: Logger;
}

/** A maintenance job. Resolve when done; throw to record the occurrence as failed (`error`). */
export type MaintenanceJob = (context: JobContext) => Promise<void>;

/** A schedule and its job. */
export interface MaintenanceScheduleOptions extends ScheduleOptions {
  readonly run: MaintenanceJob;
}

/** Options of a {@link MaintenanceOrchestrator}. */
export interface OrchestratorOptions {
  /** The lease node whose lock and replicated records the orchestrator uses. One orchestrator per node. */
  readonly node: LeaseNode;
  /** The monotonic clock (timers, durations): the node's. */
  readonly clock: Clock;
  /** Wall-clock time, which occurrences are computed from. */
  readonly wallClock: WallClock;
  /** Default: silent. The skip line is logged at DEBUG. */
  readonly logger?: Logger;
  /** Most jobs running at once on this node. Default 4. */
  readonly maxConcurrentJobs?: number;
  /** How often schedules are re-examined (a lock freed, a window closed). Default 1,000 ms. */
  readonly pollIntervalMs?: number;
  /** Largest encoded checkpoint, at most 64 KiB (the default). */
  readonly maxCheckpointBytes?: number;
  /** Metrics, or false for none. Default: metrics on prom-client's global registry. */
  readonly metrics?: MaintenanceMetrics | false;
  /** How long `stop()` waits for aborted jobs to return. Default 10,000 ms. */
  readonly stopTimeoutMs?: number;
  /** How long a node waits to catch up with the cluster's log before competing. Default 2,000 ms. */
  readonly catchUpTimeoutMs?: number;
  /**
   * A deliberately broken orchestrator, for proving that the simulator's maintenance checkers catch
   * it. Never set it otherwise.
   *
   * @internal
   */
  readonly testOnlyBug?: OrchestratorBug;
}

/**
 * Deliberate bugs: run an occurrence the records call settled; keep a job running after its lease
 * was lost; start a resumed run without its checkpoint.
 *
 * @internal
 */
export type OrchestratorBug = 'RunSettledOccurrences' | 'IgnoreLeaseLoss' | 'ForgetCheckpoint';

/** A schedule as {@link MaintenanceOrchestrator.list} reports it. */
export interface ScheduleStatus {
  readonly schedule: Schedule;
  /** Next scheduled time after now (this node's wall clock), or null for a cron with none left. */
  readonly nextOccurrenceMs: number | null;
  /** The latest settled occurrence in the replicated history. */
  readonly lastOutcome: OccurrenceOutcome | null;
  /** The occurrence being run (or abandoned and not yet settled), as replicated. */
  readonly current: { readonly occurrenceMs: number; readonly owner: string; readonly fencingToken: LogIndex; readonly attempts: number; readonly hasCheckpoint: boolean } | null;
  /** Who holds the schedule's lock now, as this node has applied the lease table. */
  readonly holder: string | null;
  /** Whether this node is running the schedule's job now. */
  readonly runningHere: boolean;
  /** Settled occurrences, newest last (replicated; the most recent 32). */
  readonly recentOutcomes: readonly OccurrenceOutcome[];
}

interface RunningJob {
  readonly occurrenceMs: number;
  readonly controller: AbortController;
  readonly done: Promise<void>;
}

interface ScheduleState {
  readonly schedule: Schedule;
  readonly job: MaintenanceJob;
  /** A tryAcquire, Begin or job of this schedule is under way on this node. */
  busy: boolean;
  running: RunningJob | null;
  /** The occurrence this node last competed for, and whether it lost to a holder. */
  lastTried: { readonly occurrenceMs: number; readonly lostTo: string | null } | null;
  /** Occurrences this node first saw too late under the `skip` policy, or found settled. */
  declinedOccurrenceMs: number | null;
  /** Occurrences this node proposed as missed (bounded: the most recent few). */
  readonly missProposed: number[];
}

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false });
const MAX_MISSED_PER_POLL = 10;
const FINISH_ATTEMPTS = 3;

/**
 * Runs each scheduled occurrence on exactly one node of the cluster.
 *
 * @example
 * ```ts
 * const orchestrator = new MaintenanceOrchestrator({ node, clock, wallClock: new SystemWallClock(), logger });
 * orchestrator.register({
 *   id: 'compaction', cron: '0 3 * * *', timeZone: 'Europe/Berlin', windowMs: 3_600_000,
 *   estimatedDurationMs: 600_000, lockTtlMs: 900_000,
 *   run: async ({ signal, fencingToken, lastCheckpoint, checkpoint }) => { ... },
 * });
 * orchestrator.start();
 * ```
 */
export class MaintenanceOrchestrator {
  private readonly node: LeaseNode;
  private readonly clock: Clock;
  private readonly wallClock: WallClock;
  private readonly logger: Logger;
  private readonly maxConcurrentJobs: number;
  private readonly pollIntervalMs: number;
  private readonly maxCheckpointBytes: number;
  private readonly stopTimeoutMs: number;
  private readonly catchUpTimeoutMs: number;
  private readonly metrics: MaintenanceMetrics | null;
  private readonly nodeId: string;
  private readonly owner: string;
  private readonly schedules = new Map<string, ScheduleState>();
  private timer: Timer | null = null;
  private timerDueMs = 0;
  private started = false;
  private stopped = false;
  private startedWallMs = 0;
  private runningJobs = 0;
  /** Schedules competing for an occurrence or running its job here (bounded by `maxConcurrentJobs`). */
  private busySlots = 0;
  private unregisterRaftMetrics: (() => void) | null = null;
  /** Competitions under way (settled when they have run their job or given the lock back). */
  private readonly competitions = new Set<Promise<boolean>>();
  private readonly bug: OrchestratorBug | null;

  constructor(options: OrchestratorOptions) {
    this.node = options.node;
    this.clock = options.clock;
    this.wallClock = options.wallClock;
    this.nodeId = options.node.raft.id;
    this.owner = options.node.defaultOwnerName();
    this.logger = (options.logger ?? SILENT_LOGGER).child({ node: this.nodeId });
    this.maxConcurrentJobs = positiveInteger('maxConcurrentJobs', options.maxConcurrentJobs ?? 4, 1_000);
    this.pollIntervalMs = positiveInteger('pollIntervalMs', options.pollIntervalMs ?? 1_000, 3_600_000);
    this.maxCheckpointBytes = positiveInteger('maxCheckpointBytes', options.maxCheckpointBytes ?? MAX_CHECKPOINT_BYTES, MAX_CHECKPOINT_BYTES);
    this.stopTimeoutMs = positiveInteger('stopTimeoutMs', options.stopTimeoutMs ?? 10_000, 3_600_000);
    this.catchUpTimeoutMs = positiveInteger('catchUpTimeoutMs', options.catchUpTimeoutMs ?? 2_000, 3_600_000);
    this.metrics = options.metrics === false ? null : (options.metrics ?? new MaintenanceMetrics());
    this.bug = options.testOnlyBug ?? null;
  }

  /**
   * Declares a schedule. Throws a `ConfigError` naming the schedule and the field for an invalid one —
   * for the TTL rule, both numbers — and for a duplicate id.
   */
  register(options: MaintenanceScheduleOptions): Schedule {
    const schedule = resolveSchedule(options);
    if (typeof options.run !== 'function') throw new ConfigError('run', `schedule '${schedule.id}': run must be a function returning a promise`);
    if (this.schedules.has(schedule.id)) throw new ConfigError('id', `schedule '${schedule.id}' is already registered`);
    // The lease layer refuses TTLs that leave the holder no validity after the drift bound and margin:
    // such a schedule could never run, so refuse it here, where the mistake is made.
    if (this.node.validityMs(schedule.lockTtlMs) <= 0) {
      throw new ConfigError(
        'lockTtlMs',
        `schedule '${schedule.id}': lock TTL ${schedule.lockTtlMs} ms leaves no validity after this node's lease margin and drift bound; raise lockTtlMs`,
      );
    }
    this.schedules.set(schedule.id, { schedule, job: options.run, busy: false, running: null, lastTried: null, declinedOccurrenceMs: null, missProposed: [] });
    if (this.started) this.wake(0);
    return schedule;
  }

  /** Starts competing for occurrences. Occurrences whose window closed before now are not this node's business. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.startedWallMs = this.wallClock.nowMs();
    if (this.metrics !== null) this.unregisterRaftMetrics = registerRaftMetrics(this.nodeId, () => this.node.raft.status(), this.metrics.registry);
    this.wake(0);
  }

  /**
   * Stops: no new occurrences; running jobs are aborted (their signal fires) and their leases released
   * so another node can resume them; a competition under way gives its lock back instead of starting
   * the job. Waits up to `stopTimeoutMs` for both. Does not stop the lease node.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.timer?.cancel();
    this.unregisterRaftMetrics?.();
    const running = [...this.schedules.values()].flatMap((state) => (state.running === null ? [] : [state.running]));
    for (const job of running) job.controller.abort(new RaftLeaseError('Stopped', 'the maintenance orchestrator is stopping'));
    // A competition under way checks `stopped` after each of its waits and gives the lock back
    // instead of starting the job; wait for that too, so no job starts after stop() returns.
    const competing = [...this.competitions];
    let timer: Timer | null = null;
    await Promise.race([
      Promise.all([...running.map((job) => job.done), ...competing]),
      new Promise<void>((resolve) => {
        timer = this.clock.setTimer(this.stopTimeoutMs, () => {
          this.logger.warn({ jobs: running.length }, `jobs did not stop within ${this.stopTimeoutMs} ms of their abort signal`);
          resolve();
        });
      }),
    ]);
    (timer as Timer | null)?.cancel();
  }

  /** Every schedule with its last and next occurrences, current run and holder, and recent outcomes. */
  list(): ScheduleStatus[] {
    const nowMs = this.wallClock.nowMs();
    return [...this.schedules.values()]
      .map((state) => {
        const { schedule } = state;
        const record: MaintenanceRecord | undefined = this.node.table.maintenanceRecord(schedule.id);
        const current = record?.current ?? null;
        const [next] = occurrencesBetween(schedule, nowMs, Number.MAX_SAFE_INTEGER, 1);
        return {
          schedule,
          nextOccurrenceMs: next ?? null,
          lastOutcome: record?.history.at(-1) ?? null,
          current:
            current === null
              ? null
              : { occurrenceMs: current.occurrenceMs, owner: current.owner, fencingToken: current.fencingToken, attempts: current.attempts, hasCheckpoint: current.checkpoint !== null },
          holder: this.node.table.get(schedule.id)?.owner ?? null,
          runningHere: state.running !== null,
          recentOutcomes: record?.history ?? [],
        };
      })
      .sort((a, b) => (a.schedule.id < b.schedule.id ? -1 : a.schedule.id > b.schedule.id ? 1 : 0));
  }

  // ---------------------------------------------------------------------------------------------

  /** Examines the schedules in `delayMs`, unless a poll is already due sooner. */
  private wake(delayMs: number): void {
    if (this.stopped || !this.started) return;
    const dueMs = this.clock.nowMs() + Math.max(0, delayMs);
    if (this.timer !== null && this.timerDueMs <= dueMs) return;
    this.timer?.cancel();
    this.timerDueMs = dueMs;
    this.timer = this.clock.setTimer(Math.max(0, delayMs), () => {
      this.timer = null;
      this.poll();
    });
  }

  private poll(): void {
    if (this.stopped) return;
    let nextDelayMs = this.pollIntervalMs;
    for (const state of this.schedules.values()) {
      const delayMs = this.examine(state);
      if (delayMs !== null) nextDelayMs = Math.min(nextDelayMs, delayMs);
    }
    // A poll keeps coming even when no occurrence is due: wall-clock jumps, freed locks, closed windows.
    if (this.timer === null) this.wake(Math.max(1, nextDelayMs));
  }

  /** Looks at one schedule; returns in how many ms it wants another look (null: the usual poll). */
  private examine(state: ScheduleState): number | null {
    const { schedule } = state;
    const nowMs = this.wallClock.nowMs();
    const record = this.node.table.maintenanceRecord(schedule.id);
    const settledThroughMs = record?.settledThroughMs ?? -1;
    const [next] = occurrencesBetween(schedule, nowMs, Number.MAX_SAFE_INTEGER, 1);
    this.metrics?.nextRun.set({ node: this.nodeId, schedule: schedule.id }, next === undefined ? 0 : next / 1_000);
    if (state.busy) return null;
    this.recordMissed(state, nowMs, settledThroughMs);
    const open = openOccurrence(schedule, nowMs);
    if (open === null || open <= settledThroughMs || open === state.declinedOccurrenceMs) {
      return next === undefined ? null : next + this.jitterMs(schedule, next) - nowMs;
    }
    const dueMs = open + this.jitterMs(schedule, open);
    if (nowMs < dueMs) return dueMs - nowMs;
    const resuming = record?.current?.occurrenceMs === open;
    if (state.lastTried?.occurrenceMs !== open && !resuming && schedule.misfire === 'skip' && nowMs > dueMs + schedule.misfireThresholdMs) {
      // First seen too late: a misfire, which `skip` does not run. It is recorded as missed when its
      // window closes, unless another node was on time.
      state.declinedOccurrenceMs = open;
      this.logger.debug({ scheduleId: schedule.id, occurrenceMs: open, lateMs: nowMs - dueMs }, `schedule ${schedule.id} occurrence misfired; skipped by policy`);
      return null;
    }
    // After losing to a holder, try again only once this node has seen the lock freed.
    if (state.lastTried?.occurrenceMs === open && state.lastTried.lostTo !== null && this.node.table.get(schedule.id) !== undefined) return null;
    // A slot is taken from the start of the competition: two schedules due at once must not both
    // get past this check before either job has started.
    if (this.busySlots >= this.maxConcurrentJobs) {
      this.logger.debug({ scheduleId: schedule.id, occurrenceMs: open, running: this.runningJobs }, `schedule ${schedule.id} deferred: ${this.busySlots} jobs running or starting here`);
      return null;
    }
    state.busy = true;
    this.busySlots++;
    const competition = this.compete(state, open).catch((error: unknown) => {
      // A broken invariant surfaces here; it must not stop the other schedules.
      this.logger.error({ scheduleId: schedule.id, occurrenceMs: open, err: error }, `schedule ${schedule.id}: unexpected failure`);
      return false;
    });
    this.competitions.add(competition);
    void competition.then((ran) => {
      this.competitions.delete(competition);
      state.busy = false;
      this.busySlots--;
      // After a run the next occurrence may be due at once; after a failed try, wait for the next poll.
      this.wake(ran ? 0 : this.pollIntervalMs);
    });
    return null;
  }

  /** Proposes `MissOccurrence` for occurrences whose window closed unsettled while this node ran. */
  private recordMissed(state: ScheduleState, nowMs: number, settledThroughMs: number): void {
    const { schedule } = state;
    if (this.node.table.get(schedule.id) !== undefined) return;
    const afterMs = Math.max(settledThroughMs, this.startedWallMs - schedule.windowMs);
    const closed = occurrencesBetween(schedule, afterMs, nowMs - schedule.windowMs, MAX_MISSED_PER_POLL);
    for (const occurrenceMs of closed) {
      if (state.missProposed.includes(occurrenceMs)) continue;
      state.missProposed.push(occurrenceMs);
      if (state.missProposed.length > MAX_MISSED_PER_POLL) state.missProposed.shift();
      const forget = (): void => {
        const position = state.missProposed.indexOf(occurrenceMs);
        if (position >= 0) state.missProposed.splice(position, 1);
      };
      this.node
        .submit({ type: 'MissOccurrence', key: schedule.id, occurrenceMs }, undefined)
        .then((result) => {
          if (result.type !== 'Missed') {
            // Refused while a lease is held (a long run of an older occurrence): ask again later.
            if (result.type !== 'Settled') forget();
            return;
          }
          this.count(schedule.id, 'missed');
          this.logger.info({ scheduleId: schedule.id, occurrenceMs, occurrence: iso(occurrenceMs), attempts: result.outcome.attempts }, `schedule ${schedule.id} occurrence missed: its window closed before it could finish`);
        })
        .catch((error: unknown) => {
          this.logger.debug({ scheduleId: schedule.id, occurrenceMs, err: error }, 'could not record a missed occurrence; will retry');
          forget();
        });
    }
  }

  /** Competes for one occurrence; true when this node ran it. Never rejects. */
  private async compete(state: ScheduleState, occurrenceMs: number): Promise<boolean> {
    const { schedule } = state;
    // Catch up first (a ReadIndex round, thesis §6.4): a node far behind — installing a snapshot, say —
    // would otherwise win the lock without learning in time that it did, and hold the occurrence up for
    // a TTL; and a current view tells whether the occurrence is already settled.
    try {
      await this.node.raft.readIndex({ timeoutMs: this.catchUpTimeoutMs });
    } catch (error) {
      this.logger.debug({ scheduleId: schedule.id, occurrenceMs, err: error }, `schedule ${schedule.id}: not caught up with the cluster; will retry`);
      return false;
    }
    if (this.isStopped()) return false;
    if (occurrenceMs <= (this.node.table.maintenanceRecord(schedule.id)?.settledThroughMs ?? -1)) return false;
    const startedMs = this.clock.nowMs();
    let acquired;
    try {
      acquired = await this.node.tryAcquire(schedule.id, { ttlMs: schedule.lockTtlMs });
    } catch (error) {
      if (error instanceof RaftLeaseError && error.code === 'InvalidArgument') {
        // Not transient: retrying cannot help, so say so where an operator looks.
        this.logger.warn({ scheduleId: schedule.id, occurrenceMs, err: error }, `schedule ${schedule.id}: the lock refused the request: ${error.message}`);
      } else {
        this.logger.debug({ scheduleId: schedule.id, occurrenceMs, err: error }, `schedule ${schedule.id}: could not reach the lock; will retry`);
      }
      return false;
    }
    this.metrics?.lockAcquireDuration.observe({ node: this.nodeId, schedule: schedule.id, acquired: String(acquired.acquired) }, (this.clock.nowMs() - startedMs) / 1_000);
    if (!acquired.acquired) {
      const firstLoss = state.lastTried?.occurrenceMs !== occurrenceMs;
      state.lastTried = { occurrenceMs, lostTo: acquired.holder };
      this.logger.debug(
        { scheduleId: schedule.id, holder: acquired.holder, occurrence: iso(occurrenceMs), occurrenceMs },
        `schedule ${schedule.id} skipped — lock held by peer ${acquired.holder}`,
      );
      if (firstLoss) this.count(schedule.id, 'skipped_lock_held');
      return false;
    }
    state.lastTried = { occurrenceMs, lostTo: null };
    const lease = acquired.lease;
    if (this.isStopped()) {
      await this.release(lease);
      return false;
    }
    let begun;
    try {
      begun = await this.node.submit({ type: 'BeginOccurrence', key: schedule.id, occurrenceMs, owner: lease.owner, fencingToken: lease.fencingToken }, undefined);
    } catch (error) {
      this.logger.debug({ scheduleId: schedule.id, occurrenceMs, err: error }, `schedule ${schedule.id}: could not record the start; releasing the lock`);
      await this.release(lease);
      return false;
    }
    if (begun.type === 'Settled' && this.bug === 'RunSettledOccurrences') {
      await this.run(state, occurrenceMs, lease, { occurrenceMs, owner: lease.owner, fencingToken: lease.fencingToken, attempts: 1, checkpoint: null, checkpointToken: null });
      return true;
    }
    if (begun.type !== 'Begun') {
      if (begun.type === 'Settled') {
        state.declinedOccurrenceMs = occurrenceMs;
        this.logger.debug({ scheduleId: schedule.id, occurrenceMs, outcome: begun.outcome?.result ?? 'superseded' }, `schedule ${schedule.id} occurrence already settled; not running it again`);
      } else {
        this.logger.warn({ scheduleId: schedule.id, occurrenceMs, result: begun }, `schedule ${schedule.id}: the start was refused`);
      }
      await this.release(lease);
      return false;
    }
    if (this.leaseEnded(lease)) {
      // The lock and the start took longer than the lease's validity: running now would not be exclusive.
      this.logger.debug({ scheduleId: schedule.id, occurrenceMs }, `schedule ${schedule.id}: the lease ran out before the job could start; will retry`);
      await this.release(lease);
      return false;
    }
    if (this.isStopped()) {
      // Begun but not run: the occurrence stays open for another node to run (as after a crash).
      await this.release(lease);
      return false;
    }
    // No await between this check and run() setting `state.running`: stop() either came first (above)
    // or sees the job and aborts it.
    await this.run(state, occurrenceMs, lease, begun.run);
    return true;
  }

  /** Read through a call so that a check after an await is not narrowed away. */
  private leaseEnded(lease: Lease): boolean {
    return lease.signal.aborted;
  }

  private async run(state: ScheduleState, occurrenceMs: number, lease: Lease, run: MaintenanceRun): Promise<void> {
    const { schedule } = state;
    const controller = new AbortController();
    const onLeaseLost = (): void => {
      if (this.bug === 'IgnoreLeaseLoss') return;
      if (!controller.signal.aborted) controller.abort(lease.signal.reason);
    };
    lease.signal.addEventListener('abort', onLeaseLost, { once: true });
    if (lease.signal.aborted) onLeaseLost();
    // A third of the validity, not of the TTL: the validity is what runs out (the TTL less the lease
    // margin and the drift bound), and two renewals may fail before it does.
    const stopKeepAlive = lease.keepAlive({ intervalMs: Math.max(1, Math.floor(this.node.validityMs(schedule.lockTtlMs) / 3)) });
    const logger = this.logger.child({ scheduleId: schedule.id, occurrence: iso(occurrenceMs), fencingToken: lease.fencingToken });
    let lastCheckpoint: unknown = undefined;
    if (run.checkpoint !== null && this.bug !== 'ForgetCheckpoint') {
      try {
        lastCheckpoint = unpackr.unpack(run.checkpoint);
      } catch (error) {
        logger.warn({ err: error }, 'the stored checkpoint does not decode; resuming without it');
      }
    }
    let checkpointChain: Promise<void> = Promise.resolve();
    const checkpoint = (progress: unknown): Promise<void> => {
      const attempt = checkpointChain.then(() => this.checkpoint(schedule.id, occurrenceMs, lease, controller, progress));
      checkpointChain = attempt.catch(() => undefined);
      return attempt;
    };
    const context: JobContext = {
      scheduleId: schedule.id,
      occurrence: new Date(occurrenceMs),
      occurrenceMs,
      fencingToken: lease.fencingToken,
      signal: controller.signal,
      attempt: run.attempts,
      lastCheckpoint,
      checkpoint,
      logger,
    };
    let finishDone!: () => void;
    const done = new Promise<void>((resolve) => {
      finishDone = resolve;
    });
    state.running = { occurrenceMs, controller, done };
    this.runningJobs++;
    this.metrics?.inProgress.inc({ node: this.nodeId, schedule: schedule.id });
    const startedMs = this.clock.nowMs();
    logger.info({ attempt: run.attempts, resumed: run.attempts > 1 }, run.attempts > 1 ? `schedule ${schedule.id} resuming occurrence` : `schedule ${schedule.id} running occurrence`);
    let result: RunResult;
    try {
      // A job may reject with any value, null and undefined included: whether it failed is a flag.
      let failed = false;
      let jobError: unknown = undefined;
      try {
        await state.job(context);
      } catch (error) {
        failed = true;
        jobError = error;
      }
      await checkpointChain;
      if (failed && controller.signal.aborted) {
        // Interrupted (lease lost, or stopping): not settled, so another node resumes it.
        result = 'aborted';
      } else {
        const finished = await this.finish(schedule.id, occurrenceMs, lease, failed ? { error: jobError } : null);
        result = finished ? (failed ? 'error' : 'ok') : 'aborted';
        if (failed) logger.warn({ err: jobError }, `schedule ${schedule.id} job failed`);
      }
      // Lost: the lease ran out, or a refused checkpoint or finish showed another runner took over.
      const lost = lease.signal.aborted || (controller.signal.aborted && isLeaseLost(controller.signal.reason));
      if (result === 'aborted' && lost && !this.isStopped()) this.metrics?.leasesLost.inc({ node: this.nodeId, schedule: schedule.id });
    } finally {
      stopKeepAlive();
      lease.signal.removeEventListener('abort', onLeaseLost);
      await this.release(lease);
      state.running = null;
      this.runningJobs--;
      this.metrics?.inProgress.dec({ node: this.nodeId, schedule: schedule.id });
      finishDone();
    }
    const durationMs = this.clock.nowMs() - startedMs;
    this.metrics?.runDuration.observe({ node: this.nodeId, schedule: schedule.id, result }, durationMs / 1_000);
    this.count(schedule.id, result);
    if (result === 'ok') this.metrics?.lastSuccess.set({ node: this.nodeId, schedule: schedule.id }, this.wallClock.nowMs() / 1_000);
    logger.info({ result, durationMs }, `schedule ${schedule.id} occurrence ${result}`);
  }

  private async checkpoint(key: string, occurrenceMs: number, lease: Lease, controller: AbortController, progress: unknown): Promise<void> {
    if (controller.signal.aborted) throw new RaftLeaseError('LeaseLost', `the run of '${key}' was aborted; its checkpoint is not stored`);
    let data: Uint8Array;
    try {
      data = packr.pack(progress);
    } catch (error) {
      throw new RaftLeaseError('InvalidArgument', `the checkpoint of '${key}' cannot be encoded with msgpack`, { cause: error });
    }
    if (data.byteLength > this.maxCheckpointBytes) {
      throw new RaftLeaseError('InvalidArgument', `the checkpoint of '${key}' takes ${data.byteLength} bytes; at most ${this.maxCheckpointBytes} are allowed`);
    }
    const result = await this.node.submit({ type: 'Checkpoint', key, occurrenceMs, owner: lease.owner, fencingToken: lease.fencingToken, data }, undefined);
    if (result.type === 'Checkpointed') return;
    const reason = result.type === 'Fenced' ? result.reason : result.type === 'Rejected' ? result.reason : result.type;
    if (result.type === 'Fenced') controller.abort(new RaftLeaseError('LeaseLost', `another runner took over '${key}' (${reason})`));
    throw new RaftLeaseError(result.type === 'Fenced' ? 'LeaseLost' : 'InvalidArgument', `the checkpoint of '${key}' was refused: ${reason}`);
  }

  /** Records the finish; true when this run's outcome is the recorded one. */
  private async finish(key: string, occurrenceMs: number, lease: Lease, failure: { readonly error: unknown } | null): Promise<boolean> {
    const error = failure === null ? null : errorText(failure.error);
    const command: LeaseTableCommand = {
      type: 'FinishOccurrence',
      key,
      occurrenceMs,
      owner: lease.owner,
      fencingToken: lease.fencingToken,
      result: failure === null ? 'ok' : 'error',
      error,
    };
    // Bounded; a finish applied twice answers as a duplicate, so retrying an unknown outcome is safe.
    for (let attempt = 1; attempt <= FINISH_ATTEMPTS; attempt++) {
      try {
        const result = await this.node.submit(command, undefined);
        if (result.type === 'Finished') return true;
        this.logger.warn({ scheduleId: key, occurrenceMs, result }, `schedule ${key}: the finish was refused; another runner took the occurrence over`);
        return false;
      } catch (failure) {
        this.logger.warn({ scheduleId: key, occurrenceMs, attempt, err: failure }, `schedule ${key}: could not record the finish`);
      }
    }
    return false;
  }

  private async release(lease: Lease): Promise<void> {
    try {
      await lease.release();
    } catch (error) {
      // The lease then expires after its TTL.
      this.logger.debug({ key: lease.key, err: error }, 'could not release the lock; it expires after its TTL');
    }
  }

  private count(scheduleId: string, result: RunResult): void {
    this.metrics?.runs.inc({ node: this.nodeId, schedule: scheduleId, result });
  }

  /** This node's delay before competing for an occurrence: a hash of node, schedule and occurrence, so it needs no randomness. */
  private jitterMs(schedule: Schedule, occurrenceMs: number): number {
    if (schedule.jitterMs === 0) return 0;
    return fnv1a32(`${this.owner}\u0000${schedule.id}\u0000${occurrenceMs}`) % (schedule.jitterMs + 1);
  }

  /** Read through a call so that a check after an await is not narrowed away. */
  private isStopped(): boolean {
    return this.stopped;
  }
}

function isLeaseLost(reason: unknown): boolean {
  return reason instanceof RaftLeaseError && reason.code === 'LeaseLost';
}

function iso(epochMs: number): string {
  return new Date(epochMs).toISOString();
}

function errorText(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  // Well-formed for the log (lone surrogates replaced), cut at a whole character.
  return wellFormedPrefix(text, MAX_OUTCOME_ERROR_CHARS);
}
