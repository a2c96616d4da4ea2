/**
 * Simulation speed: simulated seconds per wall second and events per second, for a 5-node cluster
 * with 50 ms ticks (heartbeats) under the kv workload with the seed's swarm faults.
 *
 * @module
 */
import { simulate } from '../sim/index.js';
import { describeSpread } from './stats.js';

/** Parameters of the simulation benchmark. */
export interface SimBenchOptions {
  /** Seeds per measured run (each a 10 s fault phase plus liveness). */
  readonly seedsPerRun: number;
  readonly runs: number;
}

interface Variant {
  readonly name: string;
  readonly encodeMessages: boolean;
}

const VARIANTS: readonly Variant[] = [
  { name: 'wire codec on (default)', encodeMessages: true },
  { name: 'wire codec off', encodeMessages: false },
];

/** Runs the benchmark and prints one line per variant with the reproducing command. */
export async function benchSim(options: SimBenchOptions, command: string, print: (line: string) => void): Promise<void> {
  // Warm-up: one seed per variant.
  for (const variant of VARIANTS) await simulate({ seed: 1_000_000, nodeCount: 5, tickIntervalMs: 50, encodeMessages: variant.encodeMessages });
  const speed = new Map<string, number[]>();
  const rate = new Map<string, number[]>();
  let seed = 1;
  for (let run = 0; run < options.runs; run++) {
    // Interleave the variants run by run, on the same seeds.
    const seeds = Array.from({ length: options.seedsPerRun }, () => seed++);
    for (const variant of VARIANTS) {
      let simulatedMs = 0;
      let events = 0;
      const startedMs = performance.now();
      for (const runSeed of seeds) {
        const result = await simulate({ seed: runSeed, nodeCount: 5, tickIntervalMs: 50, encodeMessages: variant.encodeMessages });
        if (!result.ok) throw new Error(`seed ${runSeed} failed during the benchmark: ${result.violation?.message ?? ''}`);
        simulatedMs += result.simulatedMs;
        events += result.steps;
      }
      const wallMs = performance.now() - startedMs;
      speed.set(variant.name, [...(speed.get(variant.name) ?? []), simulatedMs / wallMs]);
      rate.set(variant.name, [...(rate.get(variant.name) ?? []), (events / wallMs) * 1000]);
    }
  }
  print(`simulation speed: 5 nodes, 50 ms ticks, kv workload, swarm faults, ${options.seedsPerRun} seeds x ${options.runs} runs (10 s fault phase + liveness each)`);
  for (const variant of VARIANTS) {
    print(`  ${variant.name}: ${describeSpread(speed.get(variant.name) ?? [], 'x real time', 0)}; ${describeSpread(rate.get(variant.name) ?? [], 'events/s', 0)}`);
  }
  print(`  reproduce: ${command}`);
}
