/**
 * A worker thread of `raftlease sim sweep --workers N`: receives seeds one at a time, simulates each
 * with the sweep's options and posts back a small summary. A seed's result does not depend on which
 * worker ran it: the simulation is a pure function of the seed and the options.
 *
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import { simulate, type SimulationOptions } from './simulation.js';
import type { SweepWorkerRequest } from './sweep-pool.js';
import { seedOutcome } from './describe.js';

const port = parentPort;
if (port === null) throw new Error('sim/sweep-worker.js runs only as a worker thread of a sweep');
const options = workerData as Omit<SimulationOptions, 'seed'>;

port.on('message', (request: SweepWorkerRequest) => {
  void simulate({ seed: request.seed, ...options }).then(
    (result) => {
      port.postMessage(seedOutcome(result, options));
    },
    (error: unknown) => {
      // A thrown error is a bug in the simulator or the core, not a violation: report it as such.
      port.postMessage({ kind: 'crashed', seed: request.seed, error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    },
  );
});
