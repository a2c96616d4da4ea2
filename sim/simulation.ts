/**
 * One simulation run: start a cluster of production `RaftNode`s in a simulated world, inject the
 * seed's faults while a workload runs (safety phase), then heal everything and require progress
 * (liveness phase). Every step is checked; the first violation stops the run.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { SeededPrng, nodeId, randomIntBelow, type Prng, type RaftOptions } from '../src/raft/index.js';
import { LeaseNode } from '../src/lease/index.js';
import { RaftNode, type SnapshotPolicy, type StateMachine } from '../src/runtime/index.js';
import { DEFAULT_LOCK_WORKLOAD, LockWorkload, type LockHistoryEvent, type LockWorkloadOptions } from './lock.js';
import { checkLockLinearizable } from './lock-linearizability.js';
import { MaintenanceWorkload, type MaintenanceStats } from './maintenance.js';
import type { OrchestratorBug } from '../src/maintenance/index.js';
import { SafetyChecker, ViolationError, type Violation } from './checkers.js';
import { enabledFaults, swarmFaults, type FaultConfig } from './faults.js';
import { DEFAULT_KV_WORKLOAD, KvStateMachine, KvWorkload, encodeKvCommand, type KvResult, type KvWorkloadOptions } from './kv.js';
import { checkLinearizable, type HistoryEvent } from './linearizability.js';
import { PromiseActivity } from './promise-activity.js';
import { NS_PER_MS, World, localTimeNs, type DiskOperation, type NodeSlot, type WorldEvent } from './world.js';
import { TimelineRecorder, type SimulationTimeline } from './trace-viewer.js';

/** Options of one run. Everything not given is derived from the seed or defaulted. */
export interface SimulationOptions {
  readonly seed: number;
  /** Cluster size. Default 5. */
  readonly nodeCount?: number;
  /**
   * `kv` (default): the linearizable key-value workload; `membership`: the kv workload while the
   * membership changes at random (the cluster starts with 3 voters, the other nodes join as learners,
   * get promoted and removed); `lock`: lock clients on the production `LeaseNode`; `maintenance`: the
   * production maintenance orchestrator on every node (see `maintenance.ts`); `none`: elections and
   * heartbeats only.
   */
  readonly workload?: SimulationWorkload;
  /**
   * When nodes snapshot and compact their logs. Default: drawn from the seed (off, or every 3 to 30
   * entries with a small trailing window and small chunks, so transfers take many chunks).
   */
  readonly snapshots?: SnapshotPolicy | false;
  /** Simulated milliseconds of the fault (safety) phase. Default 10,000. */
  readonly faultPhaseMs?: number;
  /** After healing, a leader must commit a proposal within this many simulated ms. Default 10,000. */
  readonly livenessBoundMs?: number;
  /** Raft tick (and heartbeat) interval in ms. Default 50. */
  readonly tickIntervalMs?: number;
  /** The configured bound ρ on clock drift, in ppm. Default 200. */
  readonly maxDriftPpm?: number;
  /**
   * Let clocks drift up to ten times ρ. Such a run breaks the timing assumption that lease safety
   * rests on, and its result says so (`driftBeyondBound`). Raft's own safety must hold regardless.
   */
  readonly driftBeyondBound?: boolean;
  /**
   * Serve reads from the leader lease (`leaseBasedReads` with ρ = `maxDriftPpm`). The seed's faults
   * then never jump clocks: a jump breaks the drift bound the lease rests on.
   */
  readonly leaseReads?: boolean;
  /** Fault configuration; default: drawn from the seed (swarm testing). */
  readonly faults?: FaultConfig;
  /** Bound on events processed. Default 20,000,000. */
  readonly maxSteps?: number;
  /** Record the full event trace (slower). */
  readonly trace?: boolean;
  /**
   * Also record a structured timeline for the trace viewer (`sim/trace-viewer.ts`): roles, terms and
   * commit indexes after each event, every message from send to delivery, the network's cut links,
   * the clocks and the lease holders. Only observes (it never changes the run nor its trace).
   */
  readonly timeline?: boolean;
  /** Send every message through the wire codec. Default true. */
  readonly encodeMessages?: boolean;
  /** Raft core options for every node. */
  readonly raft?: Partial<RaftOptions>;
  /** Shape of the kv workload. */
  readonly kv?: Partial<KvWorkloadOptions>;
  /** Shape of the lock workload. */
  readonly lock?: Partial<LockWorkloadOptions>;
  /**
   * Lock workload: run a deliberately broken lessor that counts only half of each TTL (proves the
   * exclusion checker has teeth). @internal
   */
  readonly testOnlyLessorExpiresEarly?: boolean;
  /**
   * Lock workload: a deliberately broken leader-local renewal (proves the exclusion checker has
   * teeth against it). @internal
   */
  readonly testOnlyRenewalBug?: 'WithoutConfirmation' | 'WithoutCountdown';
  /** Maintenance workload: run a deliberately broken orchestrator (proves the checkers have teeth). @internal */
  readonly testOnlyOrchestratorBug?: OrchestratorBug;
  /** Bound on the linearizability search per key. Default 2,000,000 steps. */
  readonly linearizabilityMaxSteps?: number;
  /**
   * Grant every event all its microtask turns, even when the loop knows the microtask queue is empty
   * (proves that skipping them changes nothing). @internal
   */
  readonly testOnlyEveryMicrotaskTurn?: boolean;
  /**
   * Your own state machine, one instance per node incarnation (with `workload: 'none'`); drive it
   * with {@link Simulation.propose}. Default: the kv store.
   */
  readonly createStateMachine?: (nodeId: string) => StateMachine;
  /**
   * What the liveness phase proposes to prove progress. Default: a kv write with the kv workload,
   * an empty (zero-byte) command otherwise.
   */
  readonly livenessCommand?: Uint8Array;
}

/** The workloads a simulation can run. */
export type SimulationWorkload = 'kv' | 'membership' | 'lock' | 'maintenance' | 'none';

/**
 * Maintenance workload: simulated ms of healthy running after the liveness probe succeeded, so that
 * whole occurrences run with every node up (the liveness check of the orchestrator).
 */
export const MAINTENANCE_HEALTHY_PHASE_MS = 15_000;
/** Maintenance workload: the most a node's clock starts away from true time (NTP-like skew, below the windows). */
export const MAINTENANCE_CLOCK_OFFSET_MAX_MS = 1_000;

/** Margin of the lock workload's holders (ms); runs that promise exclusion keep pauses within it. */
export const LOCK_MARGIN_MS = 500;

/** Voters a `membership` run starts with; the other nodes start empty and wait to be added. */
const MEMBERSHIP_INITIAL_VOTERS = 3;
/** Mean simulated ms between membership changes in a `membership` run. */
const MEMBERSHIP_CHANGE_EVERY_MS = 500;

/**
 * The seed's snapshot settings: a quarter of the seeds never snapshot, the rest snapshot often, with
 * chunks small enough that a transfer spans many messages.
 */
function seededSnapshotSettings(prng: Prng): { readonly policy: SnapshotPolicy | false; readonly chunkBytes: number } {
  // A default run commits one to a few hundred entries, so these intervals snapshot many times.
  const intervals = [0, 3, 10, 30] as const;
  const interval = intervals[randomIntBelow(prng, intervals.length)] ?? 0;
  const trailing = [0, 2, 10][randomIntBelow(prng, 3)] ?? 0;
  const chunkBytes = [64, 512, 4_096][randomIntBelow(prng, 3)] ?? 512;
  return { policy: interval === 0 ? false : { intervalEntries: interval, trailingEntries: trailing }, chunkBytes };
}

/** What a run found. */
export interface SimulationResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violation: Violation | null;
  readonly faults: FaultConfig;
  readonly enabledFaults: readonly string[];
  /** True when some clock was allowed to drift faster than the configured bound ρ (a labelled run). */
  readonly driftBeyondBound: boolean;
  readonly nodeCount: number;
  readonly steps: number;
  readonly simulatedMs: number;
  /** Simulated ms from healing to the first committed proposal, or null if it never happened. */
  readonly livenessMs: number | null;
  readonly committedEntries: number;
  readonly history: readonly HistoryEvent[];
  /** `ok`, `unknown` (search bound reached) or `violated`. */
  readonly linearizability: 'ok' | 'unknown' | 'violated' | 'skipped';
  /**
   * Lock workload: `checked` when the run kept drift within ρ and no clock jumped, so lease exclusion
   * was required (except for holders paused longer than their margin); `not-promised` otherwise
   * (fencing is checked either way); `skipped` for other workloads.
   */
  readonly leaseExclusion: 'checked' | 'not-promised' | 'skipped';
  /** The lock workload's client history (empty for other workloads). */
  readonly lockHistory: readonly LockHistoryEvent[];
  /** Maintenance workload counters (runs, resumes, checkpoints, outcomes), or null. */
  readonly maintenanceStats: MaintenanceStats | null;
  /** Lock workload counters (attempts, grants, held, renewals, releases, lost), or null. */
  readonly lockStats: LockWorkload['stats'] | null;
  readonly trace: readonly string[] | null;
  /** The structured timeline (with `timeline: true`), or null. */
  readonly timeline: SimulationTimeline | null;
  /** SHA-256 (hex) of the trace as `sim run --trace` writes it (one line per event), when tracing. */
  readonly traceHash: string | null;
  readonly stats: World['stats'];
}

/**
 * Most events waiting in the queue at once. A healthy 9-node run keeps a few thousand; more means a
 * message storm (some exchange multiplies its messages), reported as a liveness violation instead of
 * grinding on for minutes.
 */
const MAX_QUEUED_EVENTS = 200_000;

/**
 * Most microtask turns granted after an event, so that the promise continuations it started (up to
 * that depth) run at its simulated time, before the next event.
 */
const MICROTASK_TURNS_PER_EVENT = 4;
/** A `then` callback on an already-resolved promise runs after exactly one microtask turn. */
const MICROTASK_TURN = Promise.resolve();

/**
 * Runs one seed.
 *
 * @example
 * ```ts
 * const result = await simulate({ seed: 42 });
 * if (!result.ok) console.log(result.violation);
 * ```
 */
export async function simulate(options: SimulationOptions): Promise<SimulationResult> {
  return new Simulation(options).run();
}

/**
 * A simulation you can drive step by step: start it, run it for a while, inject faults by hand, then
 * finish it (heal, liveness, linearizability). {@link simulate} does all of it from the seed alone.
 *
 * @example
 * ```ts
 * const sim = new Simulation({ seed: 1, faults: NO_FAULTS });
 * sim.start();
 * await sim.runFor(2_000);
 * sim.crash(0);
 * await sim.runFor(1_000);
 * const result = await sim.finish();
 * ```
 */
export class Simulation {
  private readonly world: World;
  private readonly checker = new SafetyChecker();
  private readonly rafts: (RaftNode | null)[];
  /** The kv state machine of each node's current incarnation (kv workload only). */
  private readonly kvMachines: (KvStateMachine | null)[];
  private readonly workload: KvWorkload | null;
  private readonly lockWorkload: LockWorkload | null;
  private readonly maintenanceWorkload: MaintenanceWorkload | null;
  private readonly leaseNodes: (LeaseNode | null)[];
  /** Every process pause so far (the lock checker excuses holders paused beyond their margin). */
  private readonly pauses: { readonly node: number; readonly fromNs: number; readonly untilNs: number }[] = [];
  /**
   * Snapshot transfers per node, in true time: from the first chunk delivered to the node until it
   * restores a snapshot (or crashes); `untilNs` null while still open.
   */
  private readonly snapshotTransfers: { readonly node: number; readonly fromNs: number; untilNs: number | null }[] = [];
  private readonly nodeCount: number;
  private readonly faults: FaultConfig;
  private readonly maxDriftPpm: number;
  private readonly tickIntervalMs: number;
  private readonly healAtNs: number;
  private readonly livenessBoundNs: number;
  private healedAtNs: number | null = null;
  /** Maintenance workload: when every node had applied what was committed when the cluster healed. */
  private caughtUpAtNs: number | null = null;
  private readonly maxSteps: number;
  private readonly snapshotPolicy: SnapshotPolicy | false;
  private readonly raftOptions: Partial<RaftOptions>;
  private readonly workloadKind: SimulationWorkload;
  /** The trace viewer's recorder (with `timeline: true`). */
  private readonly timeline: TimelineRecorder | null;
  private violation: Violation | null = null;
  private livenessAtNs: number | null = null;
  private healed = false;
  private started = false;

  constructor(private readonly options: SimulationOptions) {
    if (!Number.isSafeInteger(options.seed)) throw new RangeError(`seed must be a safe integer, got ${options.seed}`);
    this.nodeCount = options.nodeCount ?? 5;
    if (!Number.isInteger(this.nodeCount) || this.nodeCount < 1 || this.nodeCount > 9) throw new RangeError(`nodeCount must be 1..9, got ${this.nodeCount}`);
    const prng = new SeededPrng(options.seed);
    const maxDriftPpm = options.maxDriftPpm ?? 200;
    const drawnFaults = options.faults ?? swarmFaults(prng, { maxDriftPpm: options.driftBeyondBound === true ? maxDriftPpm * 10 : maxDriftPpm });
    let faults = options.leaseReads === true ? { ...drawnFaults, clockJumpEveryMs: 0 } : drawnFaults;
    // The lock workload keeps most pauses within the holders' margin, so that exclusion is checked
    // often; a holder paused longer in total is excused (fencing covers that case).
    const leaseWorkload = options.workload === 'lock' || options.workload === 'maintenance';
    if (leaseWorkload && options.faults === undefined && options.driftBeyondBound !== true) faults = { ...faults, pauseMaxMs: Math.min(faults.pauseMaxMs, LOCK_MARGIN_MS) };
    // Schedules assume clocks roughly in step (as NTP keeps them): skew below the windows.
    if (options.workload === 'maintenance' && options.faults === undefined) faults = { ...faults, clockOffsetMaxMs: Math.min(faults.clockOffsetMaxMs, MAINTENANCE_CLOCK_OFFSET_MAX_MS) };
    this.faults = faults;
    const snapshotSettings = seededSnapshotSettings(prng);
    this.snapshotPolicy = options.snapshots ?? snapshotSettings.policy;
    this.raftOptions = {
      maxSnapshotChunkBytes: snapshotSettings.chunkBytes,
      ...(options.leaseReads === true ? { leaseBasedReads: true, maxClockDriftPpm: maxDriftPpm } : {}),
      ...options.raft,
    };
    this.workloadKind = options.workload ?? 'kv';
    this.maxDriftPpm = maxDriftPpm;
    const ids = Array.from({ length: this.nodeCount }, (_, index) => `n${index + 1}`);
    this.world = new World(prng, this.faults, ids, options.encodeMessages ?? true, options.trace ?? false);
    this.timeline = options.timeline === true ? new TimelineRecorder(this.world.nodes) : null;
    this.rafts = ids.map(() => null);
    this.leaseNodes = ids.map(() => null);
    this.kvMachines = ids.map(() => null);
    this.world.onSend = (slot, message) => {
      this.timeline?.sent(this.world.nowNs, slot.index, message);
      this.checker.onSend(slot.id, message, slot.disk.hardState, slot.disk.lastIndex());
    };
    this.tickIntervalMs = options.tickIntervalMs ?? 50;
    this.healAtNs = (options.faultPhaseMs ?? 10_000) * NS_PER_MS;
    this.livenessBoundNs = (options.livenessBoundMs ?? 10_000) * NS_PER_MS;
    this.maxSteps = options.maxSteps ?? 20_000_000;
    this.lockWorkload =
      this.workloadKind === 'lock'
        ? new LockWorkload(
            {
              nowNs: () => this.world.nowNs,
              between: (min, max) => this.world.between(min, max),
              schedule: (delayNs, label, node, run) => {
                this.world.schedule(delayNs, label, node, run);
              },
              node: (index) => this.leaseNodes[index] ?? null,
              nodeCount: () => this.nodeCount,
            },
            { ...DEFAULT_LOCK_WORKLOAD, ...options.lock },
          )
        : null;
    this.maintenanceWorkload =
      this.workloadKind === 'maintenance'
        ? new MaintenanceWorkload({
            nowNs: () => this.world.nowNs,
            between: (min, max) => this.world.between(min, max),
            chancePerMille: (perMille) => this.world.chancePerMille(perMille),
            clockFor: (index) => this.world.clockFor(index),
            nodeCount: () => this.nodeCount,
          }, options.testOnlyOrchestratorBug ?? null)
        : null;
    this.workload =
      this.workloadKind !== 'none' && this.workloadKind !== 'lock' && this.workloadKind !== 'maintenance'
        ? new KvWorkload(
            {
              nowNs: () => this.world.nowNs,
              between: (min, max) => this.world.between(min, max),
              schedule: (delayNs, label, node, run) => {
                this.world.schedule(delayNs, label, node, run);
              },
            },
            {
              nodeCount: () => this.nodeCount,
              read: (index, key, timeoutMs) => {
                const raft = this.rafts[index];
                const machine = this.kvMachines[index];
                if (raft === null || raft === undefined || machine === null || machine === undefined) return null;
                return raft.readIndex({ timeoutMs }).then(() => machine.get(key));
              },
              propose: (index, command, timeoutMs) =>
                (this.rafts[index]?.propose(command, { timeoutMs }) as Promise<{ readonly result: KvResult | null }> | undefined) ?? null,
            },
            { ...DEFAULT_KV_WORKLOAD, ...options.kv },
          )
        : null;
  }

  /** Number of nodes. */
  get size(): number {
    return this.nodeCount;
  }

  /** True simulated time, in milliseconds. */
  nowMs(): number {
    return this.world.nowNs / NS_PER_MS;
  }

  /** The first violation found so far, if any. */
  currentViolation(): Violation | null {
    return this.violation;
  }

  /** Starts the nodes, the seed's random faults (if any) and the workload. Call once. */
  start(): void {
    if (this.started) throw new Error('simulation already started');
    this.started = true;
    this.world.record(() => `start seed=${this.options.seed} nodes=${this.nodeCount} faults=${enabledFaults(this.faults).join(',') || 'none'}`);
    for (let index = 0; index < this.nodeCount; index++) this.startNode(index);
    this.scheduleFaults();
    if (this.workloadKind === 'membership') this.scheduleMembershipChanges();
    this.lockWorkload?.start();
    this.workload?.start();
  }

  /** Runs events for `ms` of simulated time (or until a violation). Returns the violation, if any. */
  async runFor(ms: number): Promise<Violation | null> {
    await this.runUntil(this.world.nowNs + Math.max(0, Math.round(ms * NS_PER_MS)), false);
    return this.violation;
  }

  /** Runs everything from the seed: start, fault phase, then {@link finish}. */
  async run(): Promise<SimulationResult> {
    this.start();
    await this.runUntil(this.healAtNs, false);
    return this.finish();
  }

  /**
   * Ends the fault phase: heals everything, requires a proposal to commit within the liveness bound,
   * stops the workload and checks its history for linearizability.
   */
  async finish(): Promise<SimulationResult> {
    const world = this.world;
    if (this.violation === null) {
      const healedAtNs = world.nowNs;
      this.heal();
      await this.runUntil(healedAtNs + this.livenessBoundNs, true);
      if (this.currentViolation() === null && this.livenessAtNs === null) {
        this.violation = { property: 'Liveness', message: `no proposal committed within ${this.livenessBoundNs / NS_PER_MS} ms after healing`, nodes: [], step: world.steps, timeNs: world.nowNs };
      }
      if (this.maintenanceWorkload !== null && this.currentViolation() === null) await this.runUntil(world.nowNs + MAINTENANCE_HEALTHY_PHASE_MS * NS_PER_MS, false);
    }
    this.workload?.stop();
    this.workload?.finish();
    this.lockWorkload?.stop();
    this.lockWorkload?.finish();
    if (this.lockWorkload !== null) this.timeline?.beliefs(this.lockWorkload.intervals);
    const exclusionPromised = this.faults.driftMaxPpm <= this.maxDriftPpm && this.faults.clockJumpEveryMs === 0;
    if (this.maintenanceWorkload !== null) {
      this.maintenanceWorkload.stop();
      if (this.violation === null) {
        const verdict = this.maintenanceWorkload.verdict({
          exclusionPromised,
          marginMs: LOCK_MARGIN_MS,
          pausedMsDuring: (node, fromNs, toNs) => this.pausedMsDuring(node, fromNs, toNs),
          snapshotTransferDuring: (fromNs, toNs, minMs) => this.snapshotTransferDuring(fromNs, toNs, minMs),
          healthyFromNs: this.livenessAtNs === null || this.caughtUpAtNs === null ? null : Math.max(this.livenessAtNs, this.caughtUpAtNs),
          caughtUp: this.caughtUpAtNs !== null,
          endNs: world.nowNs,
          clockSpreadMs: Math.max(...world.nodes.map((node) => Math.abs(localTimeNs(node.clock, world.nowNs) - world.nowNs))) / NS_PER_MS,
        });
        if (verdict !== null) this.violation = { property: verdict.property, message: verdict.message, nodes: [], step: world.steps, timeNs: world.nowNs };
      }
    }
    let lockLinearizability: SimulationResult['linearizability'] = 'skipped';
    if (this.lockWorkload !== null && this.violation === null) {
      const verdict = this.lockWorkload.verdict(exclusionPromised, LOCK_MARGIN_MS, (node, fromNs, toNs) => this.pausedMsDuring(node, fromNs, toNs));
      if (verdict !== null) this.violation = { property: verdict.property, message: verdict.message, nodes: [], step: world.steps, timeNs: world.nowNs };
    }
    if (this.lockWorkload !== null && this.violation === null) {
      const verdict = checkLockLinearizable(this.lockWorkload.history, { maxSteps: this.options.linearizabilityMaxSteps ?? 2_000_000 });
      if (verdict.ok === true) lockLinearizability = 'ok';
      else if (verdict.ok === 'unknown') lockLinearizability = 'unknown';
      else {
        lockLinearizability = 'violated';
        this.violation = { property: 'Linearizability', message: `lock history of '${verdict.key}' is not linearizable: ${verdict.reason}`, nodes: [], step: world.steps, timeNs: world.nowNs };
      }
    }
    const history = this.workload?.history ?? [];
    let linearizability: SimulationResult['linearizability'] = 'skipped';
    if (this.workload !== null && this.violation === null) {
      const verdict = checkLinearizable(history, { maxSteps: this.options.linearizabilityMaxSteps ?? 2_000_000 });
      if (verdict.ok === true) linearizability = 'ok';
      else if (verdict.ok === 'unknown') linearizability = 'unknown';
      else {
        linearizability = 'violated';
        this.violation = { property: 'Linearizability', message: `history of key ${verdict.key} is not linearizable: ${verdict.reason}`, nodes: [], step: world.steps, timeNs: world.nowNs };
      }
    }
    const trace = world.trace;
    return {
      seed: this.options.seed,
      ok: this.violation === null,
      violation: this.violation,
      faults: this.faults,
      enabledFaults: enabledFaults(this.faults),
      driftBeyondBound: this.faults.driftMaxPpm > this.maxDriftPpm,
      nodeCount: this.nodeCount,
      steps: world.steps,
      simulatedMs: world.nowNs / NS_PER_MS,
      livenessMs: this.livenessAtNs === null || this.healedAtNs === null ? null : (this.livenessAtNs - this.healedAtNs) / NS_PER_MS,
      committedEntries: this.checker.committedCount(),
      history,
      linearizability: this.lockWorkload === null ? linearizability : lockLinearizability,
      leaseExclusion: this.lockWorkload === null && this.maintenanceWorkload === null ? 'skipped' : exclusionPromised ? 'checked' : 'not-promised',
      maintenanceStats: this.maintenanceWorkload?.stats ?? null,
      lockStats: this.lockWorkload?.stats ?? null,
      lockHistory: this.lockWorkload?.history ?? [],
      trace,
      timeline: this.timeline?.finish(world.nowNs) ?? null,
      traceHash: trace === null ? null : createHash('sha256').update(`${trace.join('\n')}\n`).digest('hex'),
      stats: world.stats,
    };
  }

  /**
   * Proposes `command` on node `index` (for your own state machine). Resolves with the apply result,
   * rejects with the node's typed error, or never settles if the node crashes first.
   */
  propose(index: number, command: Uint8Array, timeoutMs = 1_000): Promise<unknown> {
    const raft = this.rafts[index];
    if (raft === null || raft === undefined) return Promise.reject(new Error(`node ${index} is down`));
    return raft.propose(command, { timeoutMs }).then((applied) => applied.result);
  }

  /** The running RaftNode at `index`, or null while it is down. */
  node(index: number): RaftNode | null {
    return this.rafts[index] ?? null;
  }

  private async runUntil(untilNs: number, stopAtLiveness: boolean): Promise<void> {
    try {
      await this.loop(untilNs, stopAtLiveness);
    } catch (error) {
      if (error instanceof ViolationError) this.violation ??= error.violation;
      else throw error;
    }
  }

  /**
   * Processes events until `untilNs` (or a violation, or liveness when `stopAtLiveness`). After each
   * event the loop grants up to {@link MICROTASK_TURNS_PER_EVENT} microtask turns, so that promise
   * continuations the event started run at its simulated time. The turns are a chain of `then`
   * callbacks rather than `await`s in an async loop: the same jobs in the same order (each turn queues
   * one job at the tail of the microtask queue), at about half the cost.
   *
   * Most events (a heartbeat and its answer, a tick, an acknowledgement) start no promise work at all,
   * and a turn that finds the microtask queue empty changes nothing. So the loop watches promise
   * activity ({@link PromiseActivity}): once the queue is known to be empty, an event that queued no
   * job is followed by the next one at once, and the turns stop as soon as one finds the queue
   * empty. Runs are the same as with every turn granted (the trace hashes are identical), and about
   * a tenth faster, as three events in four need no turn.
   */
  private loop(untilNs: number, stopAtLiveness: boolean): Promise<void> {
    const world = this.world;
    return new Promise<void>((outerResolve, outerReject) => {
      if (this.violation !== null) {
        outerResolve();
        return;
      }
      const activity = new PromiseActivity(MICROTASK_TURN);
      const skipTurns = this.options.testOnlyEveryMicrotaskTurn !== true;
      const resolve = (): void => {
        activity.stop();
        outerResolve();
      };
      const reject = (error: Error): void => {
        activity.stop();
        outerReject(error);
      };
      let turnsLeft = MICROTASK_TURNS_PER_EVENT;
      /** Whether an event was dispatched and awaits its post-event checks. */
      let dispatched = false;
      /** The node of the event dispatched last (null: a world action). */
      let target: number | null = null;
      /** The microtask queue is known to be empty. */
      let quiet = false;
      /** Promise activity when the pending turn was queued. */
      let activityAtTurn = 0;
      const queueTurn = (): void => {
        activityAtTurn = activity.count;
        activity.ownTurn(MICROTASK_TURN.then(turn));
      };
      const turn = (): void => {
        try {
          // No promise was created or settled since this turn was queued: every job queued before it
          // has run and none queued another, so the remaining turns would find nothing to run.
          if (skipTurns && activity.count === activityAtTurn) quiet = true;
          else if (--turnsLeft > 0) {
            queueTurn();
            return;
          }
          for (;;) {
            if (dispatched) {
              if (this.currentViolation() !== null) {
                resolve();
                return;
              }
              if (target !== null) this.observe(target);
              if (stopAtLiveness && this.livenessAtNs !== null) {
                resolve();
                return;
              }
            }
            let event: WorldEvent | undefined;
            for (;;) {
              if (world.steps >= this.maxSteps) {
                throw new ViolationError({ property: 'Liveness', message: `step bound of ${this.maxSteps} events reached`, nodes: [], step: world.steps, timeNs: world.nowNs });
              }
              const eventTimeNs = world.queue.peekTimeNs();
              if (eventTimeNs > untilNs) {
                // Also when the queue is empty (Infinity).
                world.nowNs = Math.max(world.nowNs, untilNs);
                resolve();
                return;
              }
              event = world.queue.pop();
              if (event === undefined) {
                resolve();
                return;
              }
              world.nowNs = Math.max(world.nowNs, eventTimeNs);
              const node = event.node;
              if (node !== null) {
                const slot = world.node(node);
                if (slot.pausedUntilNs > world.nowNs) {
                  // A paused process does nothing; what reaches it waits until it resumes.
                  world.queue.push(slot.pausedUntilNs, event);
                  continue;
                }
              }
              break;
            }
            world.steps++;
            this.checker.at(world.steps, world.nowNs);
            if (world.queue.size > MAX_QUEUED_EVENTS) {
              throw new ViolationError({ property: 'Liveness', message: `more than ${MAX_QUEUED_EVENTS} events queued: a message storm`, nodes: [], step: world.steps, timeNs: world.nowNs });
            }
            target = event.node;
            dispatched = true;
            const activityBefore = activity.count;
            this.dispatch(event);
            if (quiet && activity.count === activityBefore) continue;
            quiet = false;
            turnsLeft = MICROTASK_TURNS_PER_EVENT;
            queueTurn();
            return;
          }
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      };
      queueTurn();
    });
  }

  private dispatch(event: WorldEvent): void {
    const world = this.world;
    switch (event.kind) {
      case 'timer': {
        const slot = world.node(event.node);
        const timer = event.timer;
        if (timer.done || timer.incarnation !== slot.incarnation) return;
        timer.done = true;
        slot.timers.delete(timer);
        timer.callback();
        return;
      }
      case 'deliver':
        if (event.message.type === 'InstallSnapshot') this.noteSnapshotChunk(event.node);
        // As World.deliver decides: the link must be up and the target running.
        this.timeline?.delivered(world.nowNs, event.message, !world.cutLinks.has(event.from * 1000 + event.node) && world.node(event.node).alive && world.node(event.node).handler !== null);
        world.deliver(event);
        return;
      case 'disk': {
        const slot = world.node(event.node);
        if (event.incarnation !== slot.incarnation || event.write.done) return;
        const head = slot.disk.inFlight.shift();
        if (head !== event.write) throw new Error('disk writes completed out of order');
        event.write.done = true;
        this.applyDiskOperation(slot, event.write.operation);
        event.write.resolve();
        return;
      }
      case 'action':
        event.run();
        this.timeline?.network(world.nowNs, world.cutLinks);
        return;
    }
  }

  /** Makes a disk operation durable and shows it to the checker. */
  private applyDiskOperation(slot: NodeSlot, operation: DiskOperation): void {
    const disk = slot.disk;
    disk.apply(operation);
    if (operation.kind === 'snapshot') {
      this.checker.onSnapshot(slot.id, operation.snapshot);
      this.world.record(() => `disk ${slot.id} snapshot=${operation.snapshot.metadata.index} compact=${operation.compactIndex}`);
      return;
    }
    const { batch } = operation;
    if (batch.snapshot !== null) this.checker.onSnapshot(slot.id, batch.snapshot);
    this.checker.onDurableWrite(slot.id, batch.hardState, batch.entries, disk);
    // Checked here too, so that an untraced run (every disk write) builds no closure.
    if (this.world.trace !== null) {
      this.world.record(
        () =>
          `disk ${slot.id}${batch.snapshot === null ? '' : ` install=${batch.snapshot.metadata.index}`} entries=${batch.entries.length} hard=${batch.hardState === null ? '-' : `${batch.hardState.term}/${String(batch.hardState.vote)}/${batch.hardState.commit}`}`,
      );
    }
  }

  private observe(index: number): void {
    const raft = this.rafts[index];
    if (raft === null || raft === undefined) return;
    this.timeline?.observe(this.world.nowNs, index, raft.inspectCore().raft);
    this.checker.observe(this.world.node(index).id, raft.inspectCore());
  }

  // ---------------------------------------------------------------------------------------------
  // Processes

  private startNode(index: number): void {
    const world = this.world;
    const slot = world.node(index);
    slot.alive = true;
    const incarnation = slot.incarnation;
    world.record(() => `start ${slot.id} incarnation=${incarnation}`);
    // A membership run founds the cluster with the first voters; the others join when added.
    const voters = this.workloadKind === 'membership' ? world.nodes.slice(0, MEMBERSHIP_INITIAL_VOTERS).map((node) => node.id) : world.nodes.map((node) => node.id);
    const common = {
      id: slot.id,
      voters: index < voters.length || this.workloadKind !== 'membership' ? voters : [],
      transport: world.transportFor(index),
      storage: world.storageFor(index),
      clock: world.clockFor(index),
      tickIntervalMs: this.tickIntervalMs,
      seed: this.options.seed * 31 + index * 7 + incarnation * 1_000_003,
      // Deterministic, and different for every incarnation (request ids derive from it).
      instanceNonce: `s${this.options.seed}i${incarnation}`,
      raft: this.raftOptions,
      // Clients retry refused proposals at a high rate while no leader is known and only read the
      // errors' codes: a stack trace per refusal cost about a tenth of a run.
      refusalStackTraces: false,
      onFatalError: (error: Error) => {
        // A checker that fires inside the node's own call stack (a message being sent) surfaces here.
        if (error instanceof ViolationError) {
          this.violation ??= error.violation;
          return;
        }
        this.violation ??= { property: 'NodeFailure', message: `${slot.id} stopped: ${error.message}`, nodes: [slot.id], step: world.steps, timeNs: world.nowNs };
      },
    };
    const failedToStart = (error: unknown): void => {
      this.violation ??= { property: 'NodeFailure', message: `${slot.id} failed to start: ${String(error)}`, nodes: [slot.id], step: world.steps, timeNs: world.nowNs };
    };
    if (this.workloadKind === 'lock' || this.workloadKind === 'maintenance') {
      // The production lease node, with the simulator watching what its lease table applies.
      const maintenance = this.maintenanceWorkload;
      LeaseNode.start({
        ...common,
        snapshots: this.snapshotPolicy,
        lease: { maxClockDriftPpm: this.maxDriftPpm, marginMs: LOCK_MARGIN_MS, requestTimeoutMs: 2_000, testOnlyExpireEarly: this.options.testOnlyLessorExpiresEarly === true,
          testOnlyRenewalBug: this.options.testOnlyRenewalBug ?? null,
        },
        wrapStateMachine: (table) => {
          const observed = this.observed(slot.id, incarnation, table);
          if (maintenance === null) return observed;
          return {
            ...observed,
            apply: (command, logIndexValue) => {
              // As `observed` does, plus the result for the maintenance checkers (the table applies synchronously).
              this.checker.onApply(slot.id, incarnation, logIndexValue, command);
              const result = table.apply(command, logIndexValue);
              this.timeline?.applied(this.world.nowNs, logIndexValue, result);
              maintenance.onApplied(logIndexValue, command, result);
              return result;
            },
          };
        },
      }).then((node) => {
        if (slot.incarnation !== incarnation) return;
        this.rafts[index] = node.raft as RaftNode;
        this.leaseNodes[index] = node;
        maintenance?.onNodeStarted(index, node);
      }, failedToStart);
      return;
    }
    const kvMachine = this.options.createStateMachine === undefined ? new KvStateMachine() : null;
    const machine: StateMachine = kvMachine ?? this.options.createStateMachine?.(slot.id) ?? new KvStateMachine();
    const stateMachine = this.observed(slot.id, incarnation, machine);
    RaftNode.start<unknown>({ ...common, stateMachine, snapshots: stateMachine.snapshot === undefined ? false : this.snapshotPolicy }).then((node) => {
      if (slot.incarnation !== incarnation) return;
      this.rafts[index] = node;
      this.kvMachines[index] = kvMachine;
    }, failedToStart);
  }

  /**
   * `machine` as the node sees it, with every apply and every snapshot restore reported to the
   * checker; snapshot support only if the machine has both `snapshot()` and `restore()`.
   */
  private observed<Result>(nodeId: string, incarnation: number, machine: StateMachine<Result>): StateMachine<Result> {
    const observed: StateMachine<Result> = {
      apply: (command, logIndexValue) => {
        this.checker.onApply(nodeId, incarnation, logIndexValue, command);
        const result = machine.apply(command, logIndexValue);
        this.timeline?.applied(this.world.nowNs, logIndexValue, result);
        return result;
      },
    };
    const takeSnapshot = machine.snapshot?.bind(machine);
    const restore = machine.restore?.bind(machine);
    if (takeSnapshot !== undefined && restore !== undefined) {
      observed.snapshot = takeSnapshot;
      observed.restore = (data, metadata) => {
        this.world.record(() => `restore ${nodeId} snapshot=${metadata.index}`);
        this.checker.onRestore(nodeId, incarnation, metadata.index);
        this.endSnapshotTransfer(this.world.nodes.findIndex((node) => node.id === nodeId));
        return restore(data, metadata);
      };
    }
    return observed;
  }

  /** Restarts a crashed node from what its disk kept. */
  restart(index: number): void {
    if (!this.world.node(index).alive) this.startNode(index);
  }

  /** Kills node `index` now: unsynced writes are lost (or torn), its process state is gone. */
  crash(index: number): void {
    const world = this.world;
    const slot = world.node(index);
    if (!slot.alive) return;
    world.stats.crashes++;
    slot.alive = false;
    slot.incarnation++;
    slot.handler = null;
    this.endSnapshotTransfer(index);
    for (const timer of slot.timers) timer.done = true;
    slot.timers.clear();
    slot.pausedUntilNs = 0;
    this.rafts[index] = null;
    this.kvMachines[index] = null;
    this.leaseNodes[index] = null;
    // The write in progress may be torn: a prefix of its entries reached the disk, or all of it did
    // and only the acknowledgement was lost. A snapshot write (taken here or installed from the
    // leader) may stop after the snapshot itself is durable but before the log was compacted or
    // replaced. Later writes never started.
    const interrupted = slot.disk.inFlight[0];
    let torn = 'none';
    if (interrupted !== undefined && world.chancePerMille(this.faults.tornWritePerMille)) {
      const operation = interrupted.operation;
      const snapshot = operation.kind === 'snapshot' ? operation.snapshot : operation.batch.snapshot;
      const outcome = world.between(0, snapshot === null ? 1 : 2);
      if (outcome === 0) {
        if (operation.kind === 'batch' && operation.batch.snapshot === null) {
          const entries = operation.batch.entries;
          const kept = entries.slice(0, world.between(0, entries.length));
          if (kept.length > 0) {
            slot.disk.appendEntries(kept);
            this.checker.onDurableWrite(slot.id, null, kept, slot.disk);
          }
          torn = `prefix ${kept.length}/${entries.length}`;
        } else {
          torn = 'snapshot-lost';
        }
      } else if (outcome === 2 && snapshot !== null) {
        slot.disk.storeSnapshot(snapshot);
        this.checker.onSnapshot(slot.id, snapshot);
        torn = 'snapshot-only';
      } else {
        this.applyDiskOperation(slot, operation);
        torn = 'complete-unacknowledged';
      }
    }
    for (const write of slot.disk.inFlight) write.done = true;
    slot.disk.inFlight.length = 0;
    slot.disk.lastCompletionNs = 0;
    world.record(() => `crash ${slot.id} torn=${torn}`);
    this.timeline?.crashed(world.nowNs, index);
    this.workload?.onCrash(index);
    this.lockWorkload?.onCrash(index);
    this.maintenanceWorkload?.onCrash(index);
  }

  // ---------------------------------------------------------------------------------------------
  // Faults (the safety phase) and healing (the liveness phase)

  private scheduleFaults(): void {
    const faults = this.faults;
    this.every(faults.partitionEveryMs, 'partition', () => {
      this.partition();
    });
    this.every(faults.crashEveryMs, 'crash', () => {
      const index = this.pickVictim();
      if (!this.world.node(index).alive) return;
      this.crash(index);
      const downNs = this.world.between(1, Math.max(1, faults.downMaxMs)) * NS_PER_MS;
      this.world.schedule(downNs, 'restart', null, () => {
        this.restart(index);
      });
    });
    this.every(faults.pauseEveryMs, 'pause', () => {
      this.pause(this.pickVictim(), this.world.between(1, Math.max(1, faults.pauseMaxMs)));
    });
    this.every(faults.transferEveryMs, 'transfer', () => {
      this.transferLeadership(this.world.between(0, this.nodeCount - 1));
    });
    this.every(faults.clockJumpEveryMs, 'clock-jump', () => {
      this.jumpClock(this.world.between(0, this.nodeCount - 1), this.world.between(1, Math.max(1, faults.clockJumpMaxMs)));
    });
  }

  /**
   * Asks the current leader (if any) to hand leadership to node `target` (thesis §3.10). The outcome
   * is whatever the cluster makes of it; the checkers watch.
   */
  transferLeadership(target: number): void {
    const leader = this.rafts.find((raft) => raft?.inspectCore().raft.role() === 'Leader');
    if (leader === undefined || leader === null) return;
    const targetId = this.world.node(target).id;
    this.world.record(() => `transfer ${leader.id} -> ${targetId}`);
    leader.transferLeadership(targetId).catch(() => undefined);
  }

  private noteSnapshotChunk(index: number): void {
    const open = this.snapshotTransfers.find((transfer) => transfer.node === index && transfer.untilNs === null);
    if (open === undefined) this.snapshotTransfers.push({ node: index, fromNs: this.world.nowNs, untilNs: null });
  }

  private endSnapshotTransfer(index: number): void {
    for (const transfer of this.snapshotTransfers) if (transfer.node === index && transfer.untilNs === null) transfer.untilNs = this.world.nowNs;
  }

  /**
   * Whether some node spent at least `minMs` receiving one snapshot, part of it between true times
   * `fromNs` and `toNs`.
   */
  private snapshotTransferDuring(fromNs: number, toNs: number, minMs: number): boolean {
    return this.snapshotTransfers.some((transfer) => {
      const untilNs = transfer.untilNs ?? this.world.nowNs;
      return transfer.fromNs <= toNs && untilNs >= fromNs && untilNs - transfer.fromNs >= minMs * NS_PER_MS;
    });
  }

  /** Milliseconds node `index`'s process spent paused between true times `fromNs` and `toNs`. */
  private pausedMsDuring(index: number, fromNs: number, toNs: number): number {
    let pausedNs = 0;
    for (const pause of this.pauses) {
      if (pause.node !== index) continue;
      pausedNs += Math.max(0, Math.min(toNs, pause.untilNs) - Math.max(fromNs, pause.fromNs));
    }
    return pausedNs / NS_PER_MS;
  }

  /** Stops node `index`'s process for `ms` of true time (everyone else goes on). */
  pause(index: number, ms: number): void {
    const slot = this.world.node(index);
    if (!slot.alive || slot.pausedUntilNs > this.world.nowNs) return;
    this.world.stats.pauses++;
    slot.pausedUntilNs = this.world.nowNs + Math.max(1, Math.round(ms * NS_PER_MS));
    this.pauses.push({ node: index, fromNs: this.world.nowNs, untilNs: slot.pausedUntilNs });
    this.world.record(() => `pause ${slot.id} until=${slot.pausedUntilNs}`);
  }

  /** Moves node `index`'s clock forward by `ms`. */
  jumpClock(index: number, ms: number): void {
    this.world.record(() => `clock-jump ${this.world.node(index).id} +${ms}ms`);
    this.world.jumpClock(index, Math.max(0, Math.round(ms * NS_PER_MS)));
  }

  /**
   * Cuts the network between `side` and the other nodes (only from `side` outwards when `oneWay`),
   * until {@link healNetwork}.
   */
  cut(side: readonly number[], oneWay: boolean): void {
    const world = this.world;
    world.stats.partitions++;
    for (const a of side) {
      for (let b = 0; b < this.nodeCount; b++) {
        if (side.includes(b)) continue;
        world.cutLinks.add(a * 1000 + b);
        if (!oneWay) world.cutLinks.add(b * 1000 + a);
      }
    }
    world.record(() => `partition ${oneWay ? 'one-way' : 'both-ways'} [${side.map((index) => world.node(index).id).join(' ')}]`);
    this.timeline?.network(world.nowNs, world.cutLinks);
  }

  /** Restores every link. */
  healNetwork(): void {
    this.world.cutLinks.clear();
    this.world.record(() => 'heal-network');
    this.timeline?.network(this.world.nowNs, this.world.cutLinks);
  }

  /**
   * Membership workload: at random intervals, the leader adds a non-member as a learner, promotes a
   * learner, or removes a member. Refusals (a change in flight, a learner not caught up, no leader)
   * are part of the game.
   */
  private scheduleMembershipChanges(): void {
    this.every(MEMBERSHIP_CHANGE_EVERY_MS, 'membership', () => {
      const leader = this.rafts.find((raft) => raft?.inspectCore().raft.role() === 'Leader');
      if (leader === undefined || leader === null) return;
      const membership = leader.status().membership;
      const ids = this.world.nodes.map((node) => node.id);
      const outsiders = ids.filter((id) => !membership.voters.includes(nodeId(id)) && !membership.learners.includes(nodeId(id)));
      const options: { kind: 'AddLearner' | 'PromoteLearner' | 'RemoveNode'; node: string }[] = [
        ...outsiders.map((node) => ({ kind: 'AddLearner' as const, node })),
        ...membership.learners.map((node) => ({ kind: 'PromoteLearner' as const, node })),
        ...membership.learners.map((node) => ({ kind: 'RemoveNode' as const, node })),
        ...(membership.voters.length > 1 ? membership.voters.map((node) => ({ kind: 'RemoveNode' as const, node })) : []),
      ];
      const change = options[this.world.between(0, options.length - 1)];
      if (change === undefined) return;
      this.world.stats.membershipChanges++;
      this.world.record(() => `membership ${leader.id}: ${change.kind} ${change.node}`);
      leader.changeMembership(change, { timeoutMs: 2_000 }).catch(() => undefined);
    });
  }

  /** A node to crash, pause or cut off: the current leader with the configured chance, else any. */
  private pickVictim(): number {
    const anyNode = this.world.between(0, this.nodeCount - 1);
    if (!this.world.chancePerMille(this.faults.leaderTargetPerMille)) return anyNode;
    const leaders = this.rafts.flatMap((raft, index) => (raft?.inspectCore().raft.role() === 'Leader' ? [index] : []));
    return leaders.length === 0 ? anyNode : (leaders[this.world.between(0, leaders.length - 1)] ?? anyNode);
  }

  /** Runs `action` at random intervals averaging `meanMs` during the fault phase. */
  private every(meanMs: number, label: string, action: () => void): void {
    if (meanMs <= 0) return;
    const next = (): void => {
      const delayNs = this.world.between(Math.max(1, Math.floor(meanMs / 2)), Math.floor((meanMs * 3) / 2)) * NS_PER_MS;
      this.world.schedule(delayNs, label, null, () => {
        if (!this.world.faultsActive) return;
        action();
        next();
      });
    };
    next();
  }

  private partition(): void {
    const world = this.world;
    world.stats.partitions++;
    const added: number[] = [];
    const cut = (from: number, to: number): void => {
      const link = from * 1000 + to;
      if (!world.cutLinks.has(link)) {
        world.cutLinks.add(link);
        added.push(link);
      }
    };
    const oneWay = world.chancePerMille(this.faults.oneWayPartitionPerMille);
    // A random non-empty proper subset on one side.
    let side = Array.from({ length: this.nodeCount }, () => world.between(0, 1) === 1);
    if (side.every(Boolean) || !side.some(Boolean)) side[world.between(0, this.nodeCount - 1)] = !side[0];
    if (world.chancePerMille(this.faults.leaderTargetPerMille)) {
      // Cut the leader off from everyone else.
      const victim = this.pickVictim();
      side = side.map((_, index) => index === victim);
    }
    for (let a = 0; a < this.nodeCount; a++) {
      for (let b = 0; b < this.nodeCount; b++) {
        if (side[a] !== true || side[b] === true) continue;
        cut(a, b);
        if (!oneWay) cut(b, a);
      }
    }
    world.record(() => `partition ${oneWay ? 'one-way' : 'both-ways'} [${world.nodes.filter((_, index) => side[index] === true).map((node) => node.id).join(' ')}]`);
    const healNs = world.between(1, Math.max(1, this.faults.partitionMaxMs)) * NS_PER_MS;
    world.schedule(healNs, 'partition-heal', null, () => {
      for (const link of added) world.cutLinks.delete(link);
    });
  }

  /** Ends the fault phase: every link up, every process running, no more message loss. */
  private heal(): void {
    const world = this.world;
    if (this.healed) return;
    this.healed = true;
    world.faultsActive = false;
    world.cutLinks.clear();
    this.healedAtNs = world.nowNs;
    world.record(() => 'heal');
    this.timeline?.network(world.nowNs, world.cutLinks);
    for (let index = 0; index < this.nodeCount; index++) {
      const slot = world.node(index);
      slot.pausedUntilNs = 0;
      if (!slot.alive) this.startNode(index);
    }
    this.probeLiveness();
    if (this.maintenanceWorkload !== null) this.probeCaughtUp();
  }

  /**
   * Watches for every node to apply what was committed at healing. Until then a lagging node (one
   * installing a snapshot, say) can win a lock without learning that it did, which holds the
   * occurrence up for a lock TTL; the orchestrator's liveness is judged from this point.
   */
  private probeCaughtUp(): void {
    const world = this.world;
    const targetIndex = Math.max(0, ...this.rafts.map((raft) => raft?.status().commitIndex ?? 0));
    const check = (): void => {
      if (this.caughtUpAtNs !== null) return;
      if (this.rafts.every((raft) => raft !== null && raft.status().appliedIndex >= targetIndex)) {
        this.caughtUpAtNs = world.nowNs;
        world.record(() => `caught-up index=${targetIndex}`);
        return;
      }
      world.schedule(50 * NS_PER_MS, 'caught-up-probe', null, check);
    };
    check();
  }

  /** Proposes a marker through every node in turn until one commits. */
  private probeLiveness(): void {
    const world = this.world;
    let attempt = 0;
    const tryOnce = (): void => {
      if (this.livenessAtNs !== null) return;
      const index = attempt++ % this.nodeCount;
      const command = this.options.livenessCommand ?? (this.workload === null ? new Uint8Array(0) : encodeKvCommand({ f: 'write', key: 'liveness', value: attempt }));
      const pending = this.rafts[index]?.propose(command, { timeoutMs: 1_000 });
      pending?.then(
        () => {
          this.livenessAtNs ??= world.nowNs;
        },
        () => undefined,
      );
      world.schedule(250 * NS_PER_MS, 'liveness-probe', null, tryOnce);
    };
    tryOnce();
  }
}
