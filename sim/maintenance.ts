/**
 * The maintenance workload: every node runs the production `MaintenanceOrchestrator` over its
 * `LeaseNode`, with the same schedules (short intervals, windows and durations scaled to simulated
 * time) and wall clocks that are the nodes' own skewed, drifting clocks. Jobs take several steps,
 * checkpoint their progress and sometimes fail; nodes crash, pause and get cut off meanwhile.
 *
 * Checkers (docs/maintenance.md, "Proven in the simulator"):
 *
 * - **MaintenanceOnce**: an occurrence is recorded finished at most once, and no run of it starts
 *   (in true time) after its finish was applied anywhere;
 * - **MaintenanceExclusion**: no two runs of one schedule overlap in true time — required in runs
 *   whose drift stays within ρ and whose clocks never jump; a runner paused longer than its margin
 *   during the overlap is excused (the same promise as the lock workload's);
 * - **MaintenanceResume**: a run starts from the checkpoint that was last accepted for its occurrence
 *   before its start was applied (checked against the applied log, not the orchestrator's word);
 * - **MaintenanceLiveness**: after healing, every occurrence whose window lies well inside the healthy
 *   phase is run (finished ok or with the job's error), not missed — unless some node was receiving
 *   a snapshot meanwhile: a node that lags behind a compacted log cannot apply (and so cannot learn)
 *   its own lock acquisition until the snapshot is restored, so the lock it holds unknowingly can
 *   outlast the window (seeds that compact at every entry and send 64-byte chunks do this).
 *
 * @module
 */
import { Unpackr } from 'msgpackr';
import type { LogIndex } from '../src/raft/index.js';
import { sleepOn, type Clock } from '../src/runtime/index.js';
import { decodeLeaseCommand, type LeaseNode, type LeaseResult } from '../src/lease/index.js';
import { MaintenanceOrchestrator, occurrencesBetween, resolveSchedule, type JobContext, type OrchestratorBug, type ScheduleOptions } from '../src/maintenance/index.js';

const NS_PER_MS = 1_000_000;
const MAINTENANCE_HEALTHY_PHASE_NOTE = 'by the end of the healthy phase';
const unpackr = new Unpackr({ useRecords: false });

/** The schedules every node declares (simulated milliseconds). */
export const SIM_SCHEDULES: readonly ScheduleOptions[] = [
  { id: 'compact', intervalMs: 2_000, windowMs: 1_500, estimatedDurationMs: 500, safetyMarginMs: 500, lockTtlMs: 1_500 },
  { id: 'backup', intervalMs: 3_000, windowMs: 2_000, estimatedDurationMs: 800, safetyMarginMs: 700, lockTtlMs: 2_000, misfire: 'skip', misfireThresholdMs: 500, jitterMs: 200 },
];

/** Job shape: steps of `stepMs` each, a checkpoint every `checkpointEvery` steps. */
const JOB = { minSteps: 2, maxSteps: 8, stepMs: 100, checkpointEvery: 2, failPerMille: 80 } as const;

/** Hooks into the simulated world. */
export interface MaintenanceWorldAccess {
  nowNs(): number;
  between(min: number, max: number): number;
  chancePerMille(perMille: number): boolean;
  /** The node's own clock (monotonic, skewed and drifting like its wall clock). */
  clockFor(index: number): Clock;
  nodeCount(): number;
}

/** One run of a job, in true time. */
interface RunInterval {
  readonly node: number;
  readonly incarnation: number;
  readonly schedule: string;
  readonly occurrenceMs: number;
  readonly fencingToken: LogIndex;
  readonly attempt: number;
  readonly lastCheckpoint: unknown;
  readonly fromNs: number;
  toNs: number | null;
  outcome: 'running' | 'completed' | 'failed' | 'aborted' | 'crashed';
}

/** A maintenance command applied at a log index, with its result. */
interface AppliedMaintenance {
  readonly index: LogIndex;
  readonly atNs: number;
  readonly key: string;
  readonly occurrenceMs: number;
  readonly type: 'BeginOccurrence' | 'Checkpoint' | 'FinishOccurrence' | 'MissOccurrence';
  readonly fencingToken: LogIndex | null;
  readonly data: Uint8Array | null;
  readonly result: LeaseResult;
}

/** A failed maintenance check. */
export interface MaintenanceVerdict {
  readonly property: 'MaintenanceOnce' | 'MaintenanceExclusion' | 'MaintenanceResume' | 'MaintenanceLiveness';
  readonly message: string;
}

/** Counters of a maintenance run. */
export interface MaintenanceStats {
  runs: number;
  completed: number;
  failed: number;
  aborted: number;
  crashed: number;
  resumed: number;
  checkpointsAccepted: number;
  checkpointsRefused: number;
  finishedOk: number;
  finishedError: number;
  missed: number;
  /** Occurrences checked by the liveness check. */
  livenessChecked: number;
  /** Occurrences the liveness check left out because a node was receiving a snapshot meanwhile. */
  livenessExcused: number;
}

/** The maintenance workload. One per simulation. */
export class MaintenanceWorkload {
  readonly stats: MaintenanceStats = {
    runs: 0,
    completed: 0,
    failed: 0,
    aborted: 0,
    crashed: 0,
    resumed: 0,
    checkpointsAccepted: 0,
    checkpointsRefused: 0,
    finishedOk: 0,
    finishedError: 0,
    missed: 0,
    livenessChecked: 0,
    livenessExcused: 0,
  };
  private readonly runs: RunInterval[] = [];
  /** Applied maintenance commands by log index (every node applies the same entry at an index). */
  private readonly applied = new Map<number, AppliedMaintenance>();
  private readonly orchestrators: (MaintenanceOrchestrator | null)[];
  private readonly incarnations: number[];

  constructor(
    private readonly world: MaintenanceWorldAccess,
    private readonly bug: OrchestratorBug | null = null,
  ) {
    this.orchestrators = Array.from({ length: world.nodeCount() }, () => null);
    this.incarnations = Array.from({ length: world.nodeCount() }, () => 0);
  }

  /** A lease node (re)started at `index`: give it an orchestrator with the common schedules. */
  onNodeStarted(index: number, node: LeaseNode): void {
    const incarnation = (this.incarnations[index] ?? 0) + 1;
    this.incarnations[index] = incarnation;
    const clock = this.world.clockFor(index);
    const orchestrator = new MaintenanceOrchestrator({
      node,
      clock,
      // The node's skewed, drifting clock is its wall clock: occurrences are computed from it.
      wallClock: { nowMs: () => clock.nowMs() },
      metrics: false,
      pollIntervalMs: 50,
      maxConcurrentJobs: 2,
      ...(this.bug === null ? {} : { testOnlyBug: this.bug }),
    });
    for (const schedule of SIM_SCHEDULES) orchestrator.register({ ...schedule, run: (context) => this.job(index, incarnation, clock, context) });
    orchestrator.start();
    this.orchestrators[index] = orchestrator;
  }

  /** Node `index` crashed: its runs end now. */
  onCrash(index: number): void {
    this.orchestrators[index] = null;
    for (const run of this.runs) {
      if (run.node === index && run.toNs === null) {
        run.toNs = this.world.nowNs();
        run.outcome = 'crashed';
        this.stats.crashed++;
      }
    }
  }

  /** A lease-table entry applied on some node (the first report of each index counts). */
  onApplied(index: LogIndex, command: Uint8Array, result: LeaseResult): void {
    if (this.applied.has(index)) return;
    const decoded = decodeLeaseCommand(command);
    if (typeof decoded === 'string' || !('occurrenceMs' in decoded)) return;
    this.applied.set(index, {
      index,
      atNs: this.world.nowNs(),
      key: decoded.key,
      occurrenceMs: decoded.occurrenceMs,
      type: decoded.type,
      fencingToken: 'fencingToken' in decoded ? decoded.fencingToken : null,
      data: decoded.type === 'Checkpoint' ? decoded.data : null,
      result,
    });
    if (result.type === 'Finished' && !result.duplicate) {
      if (result.outcome.result === 'ok') this.stats.finishedOk++;
      else this.stats.finishedError++;
    }
    if (result.type === 'Missed') this.stats.missed++;
  }

  private async job(index: number, incarnation: number, clock: Clock, context: JobContext): Promise<void> {
    const run: RunInterval = {
      node: index,
      incarnation,
      schedule: context.scheduleId,
      occurrenceMs: context.occurrenceMs,
      fencingToken: context.fencingToken,
      attempt: context.attempt,
      lastCheckpoint: context.lastCheckpoint,
      fromNs: this.world.nowNs(),
      toNs: null,
      outcome: 'running',
    };
    this.runs.push(run);
    this.stats.runs++;
    if (context.attempt > 1) this.stats.resumed++;
    const end = (outcome: RunInterval['outcome']): void => {
      if (run.toNs !== null) return;
      run.toNs = this.world.nowNs();
      run.outcome = outcome;
      if (outcome === 'completed') this.stats.completed++;
      else if (outcome === 'failed') this.stats.failed++;
      else if (outcome === 'aborted') this.stats.aborted++;
    };
    // The run stops the moment its signal fires: that is when the orchestrator tells it the lease is gone.
    context.signal.addEventListener('abort', () => {
      end('aborted');
    }, { once: true });
    if (context.signal.aborted) end('aborted');
    try {
      const resumedFrom = typeof context.lastCheckpoint === 'object' && context.lastCheckpoint !== null ? Number((context.lastCheckpoint as { step?: unknown }).step ?? 0) : 0;
      // The work of an occurrence is fixed; a resumed run does what is left of it.
      const steps = JOB.minSteps + ((context.occurrenceMs / 1_000 + context.scheduleId.length) % (JOB.maxSteps - JOB.minSteps + 1));
      const failAt = resumedFrom < steps && this.world.chancePerMille(JOB.failPerMille) ? this.world.between(resumedFrom, steps - 1) : -1;
      for (let step = resumedFrom; step < steps; step++) {
        if (step === failAt) throw new Error(`simulated failure at step ${step}`);
        await sleepOn(clock, JOB.stepMs, context.signal);
        if ((step + 1) % JOB.checkpointEvery === 0) {
          try {
            await context.checkpoint({ step: step + 1, token: context.fencingToken });
            this.stats.checkpointsAccepted++;
          } catch (error) {
            this.stats.checkpointsRefused++;
            if (context.signal.aborted) throw error;
            // Not fenced (a timeout): carry on; the next checkpoint may succeed.
          }
        }
      }
      if (context.signal.aborted) throw new Error('aborted');
      end('completed');
    } catch (error) {
      end(context.signal.aborted ? 'aborted' : 'failed');
      throw error;
    }
  }

  /** Stops every orchestrator (the end of the run). */
  stop(): void {
    for (const orchestrator of this.orchestrators) void orchestrator?.stop();
  }

  /**
   * Judges the run. `exclusionPromised`: drift within ρ and no clock jumps. `healthyFromNs` and
   * `endNs` bound the healthy phase for the liveness check; `clockSpreadMs` is how far nodes' clocks
   * may be from true time, which widens the margins of that check.
   */
  verdict(options: {
    readonly exclusionPromised: boolean;
    readonly marginMs: number;
    readonly pausedMsDuring: (node: number, fromNs: number, toNs: number) => number;
    /** Whether some node spent at least `minMs` receiving one snapshot, part of it between two true times. */
    readonly snapshotTransferDuring: (fromNs: number, toNs: number, minMs: number) => boolean;
    readonly healthyFromNs: number | null;
    /** Whether every node caught up with the log after healing (required). */
    readonly caughtUp: boolean;
    readonly endNs: number;
    readonly clockSpreadMs: number;
  }): MaintenanceVerdict | null {
    const byIndex = [...this.applied.values()].sort((a, b) => a.index - b.index);
    // MaintenanceOnce: one finish per occurrence, and no run starting after it.
    const finishedAt = new Map<string, AppliedMaintenance>();
    for (const entry of byIndex) {
      if (entry.result.type !== 'Finished' || entry.result.duplicate) continue;
      const id = `${entry.key}@${entry.occurrenceMs}`;
      const earlier = finishedAt.get(id);
      if (earlier !== undefined) {
        return { property: 'MaintenanceOnce', message: `${id} was recorded finished twice: at index ${earlier.index} and ${entry.index}` };
      }
      finishedAt.set(id, entry);
    }
    for (const run of this.runs) {
      const finish = finishedAt.get(`${run.schedule}@${run.occurrenceMs}`);
      if (finish !== undefined && run.fromNs > finish.atNs) {
        return {
          property: 'MaintenanceOnce',
          message: `${run.schedule}@${run.occurrenceMs} started on n${run.node + 1} (token ${run.fencingToken}) at ${run.fromNs} ns, after its finish was applied at ${finish.atNs} ns (index ${finish.index})`,
        };
      }
    }
    // MaintenanceResume: the checkpoint a run starts from is the last one accepted before its Begin.
    for (const run of this.runs) {
      // The run's own Begin: the latest one of its token applied before it started (a node that lost
      // its lease locally and re-acquired it under the same token begins again with that token).
      const begin = [...byIndex].reverse().find(
        (entry) =>
          entry.type === 'BeginOccurrence' &&
          entry.key === run.schedule &&
          entry.occurrenceMs === run.occurrenceMs &&
          entry.fencingToken === run.fencingToken &&
          entry.result.type === 'Begun' &&
          entry.atNs <= run.fromNs,
      );
      if (begin === undefined) continue; // applied on no node we saw (the run's node crashed right after)
      let expected: unknown = undefined;
      for (const entry of byIndex) {
        if (entry.index >= begin.index) break;
        if (entry.type === 'Checkpoint' && entry.key === run.schedule && entry.occurrenceMs === run.occurrenceMs && entry.result.type === 'Checkpointed' && entry.data !== null) {
          expected = unpackr.unpack(entry.data);
        }
      }
      // A Begin whose occurrence changed owner before (a settled older run) starts with no checkpoint.
      if (JSON.stringify(expected) !== JSON.stringify(run.lastCheckpoint)) {
        return {
          property: 'MaintenanceResume',
          message: `${run.schedule}@${run.occurrenceMs} run on n${run.node + 1} (token ${run.fencingToken}) started from ${JSON.stringify(run.lastCheckpoint)}, but the last checkpoint accepted before its start (index ${begin.index}) was ${JSON.stringify(expected)}`,
        };
      }
    }
    // MaintenanceExclusion: runs of one schedule never overlap in true time.
    if (options.exclusionPromised) {
      const bySchedule = new Map<string, RunInterval[]>();
      for (const run of this.runs) bySchedule.set(run.schedule, [...(bySchedule.get(run.schedule) ?? []), run]);
      for (const [schedule, runs] of bySchedule) {
        const sorted = [...runs].sort((a, b) => a.fromNs - b.fromNs);
        for (let i = 0; i < sorted.length; i++) {
          const a = sorted[i];
          if (a === undefined) continue;
          for (let j = i + 1; j < sorted.length; j++) {
            const b = sorted[j];
            if (b === undefined || b.fromNs >= (a.toNs ?? Number.POSITIVE_INFINITY)) break;
            if (options.pausedMsDuring(a.node, a.fromNs, a.toNs ?? Number.POSITIVE_INFINITY) > options.marginMs) continue;
            return {
              property: 'MaintenanceExclusion',
              message: `'${schedule}': n${a.node + 1} ran ${a.occurrenceMs} (token ${a.fencingToken}) from ${a.fromNs} to ${String(a.toNs)} ns and n${b.node + 1} ran ${b.occurrenceMs} (token ${b.fencingToken}) from ${b.fromNs} ns`,
            };
          }
        }
      }
    }
    // MaintenanceLiveness: occurrences well inside the healthy phase run.
    if (!options.caughtUp) {
      return { property: 'MaintenanceLiveness', message: `some node had not applied what was committed at healing ${MAINTENANCE_HEALTHY_PHASE_NOTE}` };
    }
    if (options.healthyFromNs !== null) {
      const settleMs = 1_500 + options.clockSpreadMs;
      const fromMs = options.healthyFromNs / NS_PER_MS + settleMs;
      for (const options_ of SIM_SCHEDULES) {
        const schedule = resolveSchedule(options_);
        const longestRunMs = JOB.maxSteps * JOB.stepMs * 2 + schedule.jitterMs;
        const untilMs = options.endNs / NS_PER_MS - schedule.windowMs - longestRunMs - options.clockSpreadMs;
        for (const occurrenceMs of occurrencesBetween(schedule, fromMs, untilMs, 1_000)) {
          // The occurrence's window (its run must start in it), widened by the clocks' spread
          // (occurrences are in local time).
          const spanFromNs = (occurrenceMs - options.clockSpreadMs) * NS_PER_MS;
          const spanToNs = (occurrenceMs + schedule.windowMs + options.clockSpreadMs) * NS_PER_MS;
          // Only a transfer of at least half the window: a shorter one leaves half the window for the
          // node to learn (or take again) the lock it holds and start the run.
          if (options.snapshotTransferDuring(spanFromNs, spanToNs, schedule.windowMs / 2)) {
            this.stats.livenessExcused++;
            continue;
          }
          this.stats.livenessChecked++;
          const settled = byIndex.find((entry) => entry.key === schedule.id && entry.occurrenceMs === occurrenceMs && (entry.result.type === 'Finished' || entry.result.type === 'Missed'));
          if (settled?.result.type !== 'Finished') {
            return {
              property: 'MaintenanceLiveness',
              message: `'${schedule.id}' occurrence ${occurrenceMs} (window of ${schedule.windowMs} ms, entirely in the healthy phase) was ${settled === undefined ? 'never settled' : 'recorded missed'}`,
            };
          }
        }
      }
    }
    return null;
  }
}
