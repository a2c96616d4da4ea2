/**
 * Simulation speed: simulated seconds per wall second and events per second, for a 5-node cluster
 * with 50 ms ticks (heartbeats) under the kv workload with the seed's swarm faults.
 *
 * @module
 */
import { availableParallelism } from 'node:os';
import { simulate } from '../sim/index.js';
import { runSeedsInWorkers } from '../sim/sweep-pool.js';
import { describeSpread } from './stats.js';

/** Parameters of the simulation benchmark. */
export interface SimBenchOptions {
  /** Seeds per measured run of the in-thread variants (each a 10 s fault phase plus liveness). */
  readonly seedsPerRun: number;
  /** Seeds per run of the sweep variant (its workers' start-up and JIT warm-up included). */
  readonly sweepSeedsPerRun: number;
  /** Seeds each in-thread variant runs before its first measured run. */
  readonly warmupSeeds: number;
  readonly runs: number;
}

interface Variant {
  readonly name: string;
  readonly encodeMessages: boolean;
  /** Worker threads (0: the seeds run one after another in this thread). */
  readonly workers: number;
}

function variants(): readonly Variant[] {
  const cores = availableParallelism();
  return [
    { name: 'wire codec on (default)', encodeMessages: true, workers: 0 },
    { name: 'wire codec off', encodeMessages: false, workers: 0 },
    { name: `sim sweep on ${cores} worker threads (wire codec on)`, encodeMessages: true, workers: cores },
  ];
}

/** Runs the benchmark and prints one line per variant with the reproducing command. */
export async function benchSim(options: SimBenchOptions, command: string, print: (line: string) => void): Promise<void> {
  const VARIANTS = variants();
  // Warm-up, so that the in-thread variants measure steady state: V8's optimizing compiler spends
  // about 1.7 s of CPU on the first 20 seeds of a fresh thread and under 0.1 s per 20 seeds after 40
  // (node --trace-opt). A sweep warms up its own workers in every run, as a real sweep must.
  for (const variant of VARIANTS.filter((candidate) => candidate.workers === 0)) {
    for (let index = 0; index < options.warmupSeeds; index++) await simulate({ seed: 1_000_000 + index, nodeCount: 5, tickIntervalMs: 50, encodeMessages: variant.encodeMessages });
  }
  const speed = new Map<string, number[]>();
  const rate = new Map<string, number[]>();
  let seed = 1;
  for (let run = 0; run < options.runs; run++) {
    // Interleave the variants run by run, on the same seeds.
    const seeds = Array.from({ length: options.seedsPerRun }, () => seed++);
    const sweepFirst = seeds[0] ?? seed;
    for (const variant of VARIANTS) {
      let simulatedMs = 0;
      let events = 0;
      const startedMs = performance.now();
      if (variant.workers > 0) {
        // The same seeds first, then more: a sweep's share of seeds.
        const last = sweepFirst + options.sweepSeedsPerRun - 1;
        await runSeedsInWorkers(sweepFirst, last, { nodeCount: 5, tickIntervalMs: 50 }, variant.workers, (outcome) => {
          if (!outcome.ok) throw new Error(`seed ${outcome.seed} failed during the benchmark: ${outcome.violation?.message ?? ''}`);
          simulatedMs += outcome.simulatedMs;
          events += outcome.steps;
        });
      }
      for (const runSeed of variant.workers > 0 ? [] : seeds) {
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
  print(
    `simulation speed: 5 nodes, 50 ms ticks, kv workload, swarm faults, ${options.seedsPerRun} seeds x ${options.runs} runs (10 s fault phase + liveness each) ` +
      `after ${options.warmupSeeds} warm-up seeds; the sweep runs ${options.sweepSeedsPerRun} seeds per run, worker start-up and warm-up included`,
  );
  for (const variant of VARIANTS) {
    print(`  ${variant.name}: ${describeSpread(speed.get(variant.name) ?? [], 'x real time', 0)}; ${describeSpread(rate.get(variant.name) ?? [], 'events/s', 0)}`);
  }
  print(`  reproduce: ${command}`);
}
