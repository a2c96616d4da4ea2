/**
 * One simulation run: start a cluster of production `RaftNode`s in a simulated world, inject the
 * seed's faults while a workload runs (safety phase), then heal everything and require progress
 * (liveness phase). Every step is checked; the first violation stops the run.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { SeededPrng, type RaftOptions } from '../src/raft/index.js';
import { RaftNode } from '../src/runtime/index.js';
import { SafetyChecker, ViolationError, type Violation } from './checkers.js';
import { enabledFaults, swarmFaults, type FaultConfig } from './faults.js';
import { DEFAULT_KV_WORKLOAD, KvStateMachine, KvWorkload, encodeKvCommand, type KvResult, type KvWorkloadOptions } from './kv.js';
import { checkLinearizable, type HistoryEvent } from './linearizability.js';
import { NS_PER_MS, World, type WorldEvent } from './world.js';

/** Options of one run. Everything not given is derived from the seed or defaulted. */
export interface SimulationOptions {
  readonly seed: number;
  /** Cluster size. Default 5. */
  readonly nodeCount?: number;
  /** `kv` (default): the linearizable key-value workload; `none`: elections and heartbeats only. */
  readonly workload?: 'kv' | 'none';
  /** Simulated milliseconds of the fault (safety) phase. Default 10,000. */
  readonly faultPhaseMs?: number;
  /** After healing, a leader must commit a proposal within this many simulated ms. Default 10,000. */
  readonly livenessBoundMs?: number;
  /** Raft tick (and heartbeat) interval in ms. Default 50. */
  readonly tickIntervalMs?: number;
  /** The configured bound ρ on clock drift, in ppm. Default 200. */
  readonly maxDriftPpm?: number;
  /** Fault configuration; default: drawn from the seed (swarm testing). */
  readonly faults?: FaultConfig;
  /** Bound on events processed. Default 20,000,000. */
  readonly maxSteps?: number;
  /** Record the full event trace (slower). */
  readonly trace?: boolean;
  /** Send every message through the wire codec. Default true. */
  readonly encodeMessages?: boolean;
  /** Raft core options for every node. */
  readonly raft?: Partial<RaftOptions>;
  /** Shape of the kv workload. */
  readonly kv?: Partial<KvWorkloadOptions>;
  /** Bound on the linearizability search per key. Default 2,000,000 steps. */
  readonly linearizabilityMaxSteps?: number;
}

/** What a run found. */
export interface SimulationResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly violation: Violation | null;
  readonly faults: FaultConfig;
  readonly enabledFaults: readonly string[];
  readonly nodeCount: number;
  readonly steps: number;
  readonly simulatedMs: number;
  /** Simulated ms from healing to the first committed proposal, or null if it never happened. */
  readonly livenessMs: number | null;
  readonly committedEntries: number;
  readonly history: readonly HistoryEvent[];
  /** `ok`, `unknown` (search bound reached) or `violated`. */
  readonly linearizability: 'ok' | 'unknown' | 'violated' | 'skipped';
  readonly trace: readonly string[] | null;
  /** SHA-256 of the trace (hex), when tracing. */
  readonly traceHash: string | null;
  readonly stats: World['stats'];
}

/** Microtask turns granted after each event, so promise continuations finish before the next event. */
const MICROTASK_TURNS_PER_EVENT = 8;
/** Awaiting an already-resolved promise yields exactly one microtask turn. */
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

class Simulation {
  private readonly world: World;
  private readonly checker = new SafetyChecker();
  private readonly rafts: (RaftNode<KvResult | null> | null)[];
  private readonly workload: KvWorkload | null;
  private readonly nodeCount: number;
  private readonly faults: FaultConfig;
  private readonly tickIntervalMs: number;
  private readonly healAtNs: number;
  private readonly deadlineNs: number;
  private readonly maxSteps: number;
  private violation: Violation | null = null;
  private livenessAtNs: number | null = null;
  private healed = false;

  constructor(private readonly options: SimulationOptions) {
    if (!Number.isSafeInteger(options.seed)) throw new RangeError(`seed must be a safe integer, got ${options.seed}`);
    this.nodeCount = options.nodeCount ?? 5;
    if (!Number.isInteger(this.nodeCount) || this.nodeCount < 1 || this.nodeCount > 9) throw new RangeError(`nodeCount must be 1..9, got ${this.nodeCount}`);
    const prng = new SeededPrng(options.seed);
    this.faults = options.faults ?? swarmFaults(prng, { maxDriftPpm: options.maxDriftPpm ?? 200 });
    const ids = Array.from({ length: this.nodeCount }, (_, index) => `n${index + 1}`);
    this.world = new World(prng, this.faults, ids, options.encodeMessages ?? true, options.trace ?? false);
    this.rafts = ids.map(() => null);
    this.tickIntervalMs = options.tickIntervalMs ?? 50;
    this.healAtNs = (options.faultPhaseMs ?? 10_000) * NS_PER_MS;
    this.deadlineNs = this.healAtNs + (options.livenessBoundMs ?? 10_000) * NS_PER_MS;
    this.maxSteps = options.maxSteps ?? 20_000_000;
    this.workload =
      (options.workload ?? 'kv') === 'kv'
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
              propose: (index, command, timeoutMs) => this.rafts[index]?.propose(command, { timeoutMs }) ?? null,
            },
            { ...DEFAULT_KV_WORKLOAD, ...options.kv },
          )
        : null;
  }

  async run(): Promise<SimulationResult> {
    const world = this.world;
    world.record(() => `start seed=${this.options.seed} nodes=${this.nodeCount} faults=${enabledFaults(this.faults).join(',') || 'none'}`);
    for (let index = 0; index < this.nodeCount; index++) this.startNode(index);
    this.scheduleFaults();
    this.workload?.start();
    world.schedule(this.healAtNs, 'heal', null, () => {
      this.heal();
    });
    try {
      await this.loop();
      if (this.violation === null && this.livenessAtNs === null) {
        this.checker.fail('Liveness', [], `no proposal committed within ${(this.deadlineNs - this.healAtNs) / NS_PER_MS} ms after healing`);
      }
    } catch (error) {
      if (error instanceof ViolationError) this.violation = error.violation;
      else throw error;
    }
    this.workload?.stop();
    this.workload?.finish();
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
      nodeCount: this.nodeCount,
      steps: world.steps,
      simulatedMs: world.nowNs / NS_PER_MS,
      livenessMs: this.livenessAtNs === null ? null : (this.livenessAtNs - this.healAtNs) / NS_PER_MS,
      committedEntries: this.checker.committedCount(),
      history,
      linearizability,
      trace,
      traceHash: trace === null ? null : createHash('sha256').update(trace.join('\n')).digest('hex'),
      stats: world.stats,
    };
  }

  private async loop(): Promise<void> {
    const world = this.world;
    while (world.steps < this.maxSteps) {
      const event = world.queue.pop();
      if (event === undefined || event.timeNs > this.deadlineNs) return;
      world.nowNs = Math.max(world.nowNs, event.timeNs);
      const target = event.payload.node;
      if (target !== null) {
        const slot = world.node(target);
        if (slot.pausedUntilNs > world.nowNs) {
          // A paused process does nothing; what reaches it waits until it resumes.
          world.queue.push(slot.pausedUntilNs, event.payload);
          continue;
        }
      }
      world.steps++;
      this.checker.at(world.steps, world.nowNs);
      this.dispatch(event.payload);
      for (let turn = 0; turn < MICROTASK_TURNS_PER_EVENT; turn++) await MICROTASK_TURN;
      if (this.violation !== null) return;
      if (target !== null) this.observe(target);
      if (this.livenessAtNs !== null) return;
    }
    throw new ViolationError({ property: 'Liveness', message: `step bound of ${this.maxSteps} events reached`, nodes: [], step: world.steps, timeNs: world.nowNs });
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
        world.deliver(event);
        return;
      case 'disk': {
        const slot = world.node(event.node);
        if (event.incarnation !== slot.incarnation || event.write.done) return;
        const head = slot.disk.inFlight.shift();
        if (head !== event.write) throw new Error('disk writes completed out of order');
        event.write.done = true;
        slot.disk.apply(event.write.batch);
        this.checker.onDurableWrite(slot.id, event.write.batch.hardState, event.write.batch.entries, slot.disk.entries);
        world.record(() => `disk ${slot.id} entries=${event.write.batch.entries.length} hard=${event.write.batch.hardState === null ? '-' : `${event.write.batch.hardState.term}/${String(event.write.batch.hardState.vote)}/${event.write.batch.hardState.commit}`}`);
        event.write.resolve();
        return;
      }
      case 'action':
        event.run();
        return;
    }
  }

  private observe(index: number): void {
    const raft = this.rafts[index];
    if (raft === null || raft === undefined) return;
    this.checker.observe(this.world.node(index).id, raft.inspectCore());
  }

  // ---------------------------------------------------------------------------------------------
  // Processes

  private startNode(index: number): void {
    const world = this.world;
    const slot = world.node(index);
    slot.alive = true;
    const incarnation = slot.incarnation;
    const machine = new KvStateMachine();
    world.record(() => `start ${slot.id} incarnation=${incarnation}`);
    RaftNode.start<KvResult | null>({
      id: slot.id,
      voters: world.nodes.map((node) => node.id),
      transport: world.transportFor(index),
      storage: world.storageFor(index),
      clock: world.clockFor(index),
      stateMachine: {
        apply: (command, logIndexValue) => {
          this.checker.onApply(slot.id, incarnation, logIndexValue, command);
          return machine.apply(command);
        },
      },
      tickIntervalMs: this.tickIntervalMs,
      seed: this.options.seed * 31 + index * 7 + incarnation * 1_000_003,
      raft: this.options.raft ?? {},
      logger: pino({ level: 'silent' }),
      onFatalError: (error) => {
        this.violation ??= { property: 'NodeFailure', message: `${slot.id} stopped: ${error.message}`, nodes: [slot.id], step: world.steps, timeNs: world.nowNs };
      },
    }).then(
      (node) => {
        if (slot.incarnation === incarnation) this.rafts[index] = node;
      },
      (error: unknown) => {
        this.violation ??= { property: 'NodeFailure', message: `${slot.id} failed to start: ${String(error)}`, nodes: [slot.id], step: world.steps, timeNs: world.nowNs };
      },
    );
  }

  private crash(index: number): void {
    const world = this.world;
    const slot = world.node(index);
    if (!slot.alive) return;
    world.stats.crashes++;
    slot.alive = false;
    slot.incarnation++;
    slot.handler = null;
    for (const timer of slot.timers) timer.done = true;
    slot.timers.clear();
    slot.pausedUntilNs = 0;
    this.rafts[index] = null;
    // The write in progress may be torn: a prefix of its entries reached the disk, or all of it did
    // and only the acknowledgement was lost. Later writes never started.
    const interrupted = slot.disk.inFlight[0];
    let torn = 'none';
    if (interrupted !== undefined && world.chancePerMille(this.faults.tornWritePerMille)) {
      const entries = interrupted.batch.entries;
      if (world.between(0, 1) === 0) {
        const kept = entries.slice(0, world.between(0, entries.length));
        if (kept.length > 0) {
          slot.disk.apply({ hardState: null, entries: kept });
          this.checker.onDurableWrite(slot.id, null, kept, slot.disk.entries);
        }
        torn = `prefix ${kept.length}/${entries.length}`;
      } else {
        slot.disk.apply(interrupted.batch);
        this.checker.onDurableWrite(slot.id, interrupted.batch.hardState, entries, slot.disk.entries);
        torn = 'complete-unacknowledged';
      }
    }
    for (const write of slot.disk.inFlight) write.done = true;
    slot.disk.inFlight.length = 0;
    slot.disk.lastCompletionNs = 0;
    world.record(() => `crash ${slot.id} torn=${torn}`);
    this.workload?.onCrash(index);
  }

  // ---------------------------------------------------------------------------------------------
  // Faults (the safety phase) and healing (the liveness phase)

  private scheduleFaults(): void {
    const faults = this.faults;
    this.every(faults.partitionEveryMs, 'partition', () => {
      this.partition();
    });
    this.every(faults.crashEveryMs, 'crash', () => {
      const index = this.world.between(0, this.nodeCount - 1);
      if (!this.world.node(index).alive) return;
      this.crash(index);
      const downNs = this.world.between(1, Math.max(1, faults.downMaxMs)) * NS_PER_MS;
      this.world.schedule(downNs, 'restart', null, () => {
        if (!this.world.node(index).alive) this.startNode(index);
      });
    });
    this.every(faults.pauseEveryMs, 'pause', () => {
      const index = this.world.between(0, this.nodeCount - 1);
      const slot = this.world.node(index);
      if (!slot.alive || slot.pausedUntilNs > this.world.nowNs) return;
      this.world.stats.pauses++;
      slot.pausedUntilNs = this.world.nowNs + this.world.between(1, Math.max(1, faults.pauseMaxMs)) * NS_PER_MS;
      this.world.record(() => `pause ${slot.id} until=${slot.pausedUntilNs}`);
    });
    this.every(faults.clockJumpEveryMs, 'clock-jump', () => {
      const index = this.world.between(0, this.nodeCount - 1);
      const jumpMs = this.world.between(1, Math.max(1, faults.clockJumpMaxMs));
      this.world.record(() => `clock-jump ${this.world.node(index).id} +${jumpMs}ms`);
      this.world.jumpClock(index, jumpMs * NS_PER_MS);
    });
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
    const side = Array.from({ length: this.nodeCount }, () => world.between(0, 1) === 1);
    if (side.every(Boolean) || !side.some(Boolean)) side[world.between(0, this.nodeCount - 1)] = !side[0];
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
    world.record(() => 'heal');
    for (let index = 0; index < this.nodeCount; index++) {
      const slot = world.node(index);
      slot.pausedUntilNs = 0;
      if (!slot.alive) this.startNode(index);
    }
    this.probeLiveness();
  }

  /** Proposes a marker through every node in turn until one commits. */
  private probeLiveness(): void {
    const world = this.world;
    let attempt = 0;
    const tryOnce = (): void => {
      if (this.livenessAtNs !== null) return;
      const index = attempt++ % this.nodeCount;
      const pending = this.rafts[index]?.propose(encodeKvCommand({ f: 'write', key: 'liveness', value: attempt }), { timeoutMs: 1_000 });
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
