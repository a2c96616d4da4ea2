/**
 * `raftlease/sim/fast-check`: fault schedules as fast-check commands, so a failing property shrinks to
 * a minimal list of faults. Needs `fast-check` (an optional peer dependency).
 *
 * @example
 * ```ts
 * import fc from 'fast-check';
 * import { simulationCommands, runSimulationCommands } from 'raftlease/sim/fast-check';
 *
 * await fc.assert(
 *   fc.asyncProperty(simulationCommands({ nodeCount: 3 }), async (commands) => {
 *     const result = await runSimulationCommands({ seed: 1, nodeCount: 3 }, commands);
 *     if (!result.ok) throw new Error(result.violation?.message);
 *   }),
 * );
 * ```
 *
 * @module
 */
import fc from 'fast-check';
import { ViolationError } from './checkers.js';
import { NO_FAULTS } from './faults.js';
import { Simulation, type SimulationOptions, type SimulationResult } from './simulation.js';

/** What the commands know about the system: enough to keep every generated step meaningful. */
export interface SimulationModel {
  readonly alive: boolean[];
}

/** One step of a fault schedule. */
export type SimulationCommand = fc.AsyncCommand<SimulationModel, Simulation>;

/** Throws the run's violation (if any) so fast-check sees a failure and starts shrinking. */
function throwIfViolated(simulation: Simulation): void {
  const violation = simulation.currentViolation();
  if (violation !== null) throw new ViolationError(violation);
}

class RunCommand implements SimulationCommand {
  constructor(readonly ms: number) {}
  check(): boolean {
    return true;
  }
  async run(_model: SimulationModel, simulation: Simulation): Promise<void> {
    await simulation.runFor(this.ms);
    throwIfViolated(simulation);
  }
  toString(): string {
    return `run(${this.ms}ms)`;
  }
}

class CrashCommand implements SimulationCommand {
  constructor(readonly node: number) {}
  check(model: Readonly<SimulationModel>): boolean {
    return model.alive[this.node] === true;
  }
  async run(model: SimulationModel, simulation: Simulation): Promise<void> {
    simulation.crash(this.node);
    model.alive[this.node] = false;
    await simulation.runFor(0);
    throwIfViolated(simulation);
  }
  toString(): string {
    return `crash(n${this.node + 1})`;
  }
}

class RestartCommand implements SimulationCommand {
  constructor(readonly node: number) {}
  check(model: Readonly<SimulationModel>): boolean {
    return model.alive[this.node] === false;
  }
  async run(model: SimulationModel, simulation: Simulation): Promise<void> {
    simulation.restart(this.node);
    model.alive[this.node] = true;
    await simulation.runFor(0);
    throwIfViolated(simulation);
  }
  toString(): string {
    return `restart(n${this.node + 1})`;
  }
}

class CutCommand implements SimulationCommand {
  constructor(
    readonly side: readonly number[],
    readonly oneWay: boolean,
  ) {}
  check(): boolean {
    return true;
  }
  run(_model: SimulationModel, simulation: Simulation): Promise<void> {
    simulation.cut(this.side, this.oneWay);
    return Promise.resolve();
  }
  toString(): string {
    return `cut([${this.side.map((node) => `n${node + 1}`).join(' ')}]${this.oneWay ? ', one-way' : ''})`;
  }
}

class HealNetworkCommand implements SimulationCommand {
  check(): boolean {
    return true;
  }
  run(_model: SimulationModel, simulation: Simulation): Promise<void> {
    simulation.healNetwork();
    return Promise.resolve();
  }
  toString(): string {
    return 'healNetwork()';
  }
}

class PauseCommand implements SimulationCommand {
  constructor(
    readonly node: number,
    readonly ms: number,
  ) {}
  check(model: Readonly<SimulationModel>): boolean {
    return model.alive[this.node] === true;
  }
  run(_model: SimulationModel, simulation: Simulation): Promise<void> {
    simulation.pause(this.node, this.ms);
    return Promise.resolve();
  }
  toString(): string {
    return `pause(n${this.node + 1}, ${this.ms}ms)`;
  }
}

class ClockJumpCommand implements SimulationCommand {
  constructor(
    readonly node: number,
    readonly ms: number,
  ) {}
  check(): boolean {
    return true;
  }
  run(_model: SimulationModel, simulation: Simulation): Promise<void> {
    simulation.jumpClock(this.node, this.ms);
    return Promise.resolve();
  }
  toString(): string {
    return `clockJump(n${this.node + 1}, +${this.ms}ms)`;
  }
}

class TransferCommand implements SimulationCommand {
  constructor(readonly node: number) {}
  check(): boolean {
    return true;
  }
  run(_model: SimulationModel, simulation: Simulation): Promise<void> {
    simulation.transferLeadership(this.node);
    return Promise.resolve();
  }
  toString(): string {
    return `transferLeadership(to n${this.node + 1})`;
  }
}

/** Options of {@link simulationCommands}. */
export interface SimulationCommandsOptions {
  readonly nodeCount: number;
  /** Most commands in one schedule. Default 40. */
  readonly maxCommands?: number;
  /** Longest `run` step, in simulated ms. Default 2,000. */
  readonly maxRunMs?: number;
}

/**
 * An arbitrary of fault schedules: runs of simulated time interleaved with crashes, restarts,
 * partitions (symmetric and one-way), heals, pauses and clock jumps.
 */
export function simulationCommands(options: SimulationCommandsOptions): fc.Arbitrary<Iterable<SimulationCommand>> {
  const node = fc.integer({ min: 0, max: options.nodeCount - 1 });
  const side = fc.uniqueArray(node, { minLength: 1, maxLength: Math.max(1, options.nodeCount - 1) });
  return fc.commands(
    [
      fc.integer({ min: 1, max: options.maxRunMs ?? 2_000 }).map((ms) => new RunCommand(ms)),
      node.map((index) => new CrashCommand(index)),
      node.map((index) => new RestartCommand(index)),
      fc.tuple(side, fc.boolean()).map(([nodes, oneWay]) => new CutCommand(nodes, oneWay)),
      fc.constant(new HealNetworkCommand()),
      fc.tuple(node, fc.integer({ min: 1, max: 3_000 })).map(([index, ms]) => new PauseCommand(index, ms)),
      fc.tuple(node, fc.integer({ min: 1, max: 2_000 })).map(([index, ms]) => new ClockJumpCommand(index, ms)),
      node.map((index) => new TransferCommand(index)),
    ],
    { maxCommands: options.maxCommands ?? 40 },
  );
}

/**
 * Runs a schedule against a fresh simulation (no random faults unless `options.faults` sets them),
 * then finishes it: heal, liveness, linearizability. A violation during the schedule is thrown (so
 * fast-check shrinks); one found while finishing is in the result.
 */
export async function runSimulationCommands(options: SimulationOptions, commands: Iterable<SimulationCommand>): Promise<SimulationResult> {
  const simulation = new Simulation({ faults: NO_FAULTS, ...options });
  simulation.start();
  const model: SimulationModel = { alive: Array.from({ length: simulation.size }, () => true) };
  await fc.asyncModelRun(() => ({ model, real: simulation }), commands);
  return simulation.finish();
}
