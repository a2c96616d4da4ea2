/**
 * How the command line describes one simulation: its outcome in a few lines and the command that
 * replays it. Shared by `sim run`, `sim sweep` and the sweep's worker threads.
 *
 * @module
 */
import type { SimulationOptions, SimulationResult } from './simulation.js';
import type { SeedOutcome } from './sweep-pool.js';

/** The command that replays `result` exactly. */
export function replayCommandLine(seed: number, options: Omit<SimulationOptions, 'seed'>): string {
  // A negative value must be attached with '=', or the argument parser takes it for an option.
  const flags = [seed < 0 ? `--seed=${seed}` : `--seed ${seed}`];
  if (options.nodeCount !== undefined) flags.push(`--nodes ${options.nodeCount}`);
  if (options.workload !== undefined) flags.push(`--workload ${options.workload}`);
  if (options.faultPhaseMs !== undefined) flags.push(`--duration ${options.faultPhaseMs}`);
  if (options.maxSteps !== undefined) flags.push(`--steps ${options.maxSteps}`);
  if (options.driftBeyondBound === true) flags.push('--drift-beyond-bound');
  if (options.leaseReads === true) flags.push('--lease-reads');
  return `npx raftlease sim run ${flags.join(' ')}`;
}

/** A run's outcome in a few lines; a violation adds where it happened and the replay command. */
export function describeResult(result: SimulationResult, options: Omit<SimulationOptions, 'seed'>): string {
  const head = `seed ${result.seed}: ${result.ok ? 'ok' : 'VIOLATION'} — ${result.nodeCount} nodes, ${result.steps} events, ${result.simulatedMs.toFixed(0)} simulated ms, faults: ${result.enabledFaults.join(', ') || 'none'}${result.driftBeyondBound ? ' (CLOCK DRIFT BEYOND THE CONFIGURED BOUND)' : ''}`;
  const details = [
    `  committed entries ${result.committedEntries}, history ${result.history.length + result.lockHistory.length} events, linearizability ${result.linearizability}, liveness ${result.livenessMs === null ? 'not reached' : `${result.livenessMs.toFixed(0)} ms after healing`}`,
  ];
  if (result.violation !== null) {
    const violation = result.violation;
    details.push(`  ${violation.property} at step ${violation.step} (t=${(violation.timeNs / 1e6).toFixed(3)} ms)${violation.nodes.length > 0 ? ` on ${violation.nodes.join(', ')}` : ''}: ${violation.message}`);
    details.push(`  replay: ${replayCommandLine(result.seed, options)}`);
  }
  return [head, ...details].join('\n');
}


/** The summary of one seed that a sweep keeps (and that a sweep worker posts back). */
export function seedOutcome(result: SimulationResult, options: Omit<SimulationOptions, 'seed'>): SeedOutcome {
  return {
    seed: result.seed,
    ok: result.ok,
    simulatedMs: result.simulatedMs,
    steps: result.steps,
    violation: result.violation === null ? null : { property: result.violation.property, message: result.violation.message },
    description: result.ok ? '' : describeResult(result, options),
  };
}
