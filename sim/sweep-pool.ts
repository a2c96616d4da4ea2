/**
 * Runs a sweep's seeds on worker threads, one seed at a time per worker, and hands the outcomes back
 * in seed order, so a sweep prints the same lines and the same summary whatever the number of
 * workers (only the wall time differs).
 *
 * @module
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { SimulationOptions } from './simulation.js';

/** The summary of one seed that a worker posts back. */
export interface SeedOutcome {
  readonly seed: number;
  readonly ok: boolean;
  readonly simulatedMs: number;
  readonly steps: number;
  readonly violation: { readonly property: string; readonly message: string } | null;
  /** `describeResult` of a failed seed ('' when it passed). */
  readonly description: string;
}

/** What the sweep sends a worker: the next seed to simulate. */
export interface SweepWorkerRequest {
  readonly kind: 'seed';
  readonly seed: number;
}

type WorkerReply = SeedOutcome | { readonly kind: 'crashed'; readonly seed: number; readonly error: string };

/** The worker script next to this module (present in the built package, `dist/sim/`). */
export const SWEEP_WORKER_URL = new URL('./sweep-worker.js', import.meta.url);

/**
 * Seeds handed out beyond the lowest unfinished one, per worker. Outcomes wait in a reorder buffer
 * until every lower seed is done; this bounds that buffer when one seed runs much longer than others.
 */
const SEEDS_AHEAD_PER_WORKER = 32;

/** The worker script cannot be found: the simulator runs from TypeScript sources, not from a build. */
export class SweepWorkerMissingError extends Error {
  readonly code = 'SweepWorkerMissing';
  constructor(path: string) {
    super(`the sweep's worker script ${path} does not exist; build the package (npm run build) or run the sweep with --workers 1`);
    this.name = 'SweepWorkerMissingError';
  }
}

/**
 * Simulates seeds `first..last` with `options` on `workers` threads; calls `onOutcome` once per seed,
 * in increasing seed order. Rejects if a worker fails (a simulator bug, reported with the seed).
 */
export async function runSeedsInWorkers(
  first: number,
  last: number,
  options: Omit<SimulationOptions, 'seed'>,
  workers: number,
  onOutcome: (outcome: SeedOutcome) => void,
  workerUrl: URL = SWEEP_WORKER_URL,
): Promise<void> {
  const path = fileURLToPath(workerUrl);
  if (!existsSync(path)) throw new SweepWorkerMissingError(path);
  const threadCount = Math.max(1, Math.min(workers, last - first + 1));
  const window = SEEDS_AHEAD_PER_WORKER * threadCount;
  const threads: Worker[] = [];
  const waiting = new Map<number, SeedOutcome>();
  let nextToAssign = first;
  let nextToReport = first;
  try {
    await new Promise<void>((resolve, reject) => {
      let failed = false;
      const fail = (error: Error): void => {
        if (failed) return;
        failed = true;
        reject(error);
      };
      const assign = (thread: Worker): boolean => {
        if (nextToAssign > last || nextToAssign - nextToReport >= window) return false;
        thread.postMessage({ kind: 'seed', seed: nextToAssign++ } satisfies SweepWorkerRequest);
        return true;
      };
      const idle: Worker[] = [];
      for (let index = 0; index < threadCount; index++) {
        const thread = new Worker(workerUrl, { workerData: options });
        threads.push(thread);
        thread.on('error', (error) => {
          fail(error);
        });
        thread.on('exit', (code) => {
          if (nextToReport <= last) fail(new Error(`a sweep worker exited (code ${code}) before seed ${nextToReport} finished`));
        });
        thread.on('message', (reply: WorkerReply) => {
          if ('kind' in reply) {
            fail(new Error(`seed ${reply.seed} threw instead of finishing: ${reply.error}`));
            return;
          }
          waiting.set(reply.seed, reply);
          for (let outcome = waiting.get(nextToReport); outcome !== undefined; outcome = waiting.get(nextToReport)) {
            waiting.delete(nextToReport);
            nextToReport++;
            try {
              onOutcome(outcome);
            } catch (error) {
              fail(error instanceof Error ? error : new Error(String(error)));
              return;
            }
          }
          if (nextToReport > last) {
            resolve();
            return;
          }
          if (!assign(thread)) idle.push(thread);
          // Reporting may have opened the window for workers parked on it.
          while (idle.length > 0 && assign(idle[0] as Worker)) idle.shift();
        });
        if (!assign(thread)) idle.push(thread);
      }
    });
  } finally {
    await Promise.all(threads.map((thread) => thread.terminate()));
  }
}
