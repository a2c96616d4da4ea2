/**
 * `raftlease/sim`: the deterministic simulator. Runs production `RaftNode`s in a simulated world of
 * seeded faults and checks Raft's safety properties on every step.
 *
 * @module
 */
export * from './checkers.js';
export * from './event-queue.js';
export * from './faults.js';
export * from './kv.js';
export * from './linearizability.js';
export * from './lock.js';
export * from './lock-linearizability.js';
export * from './maintenance.js';
export * from './trace-viewer.js';
export * from './simulation.js';
export * from './world.js';
export { parseSeedRange, replayCommandLine, runSimCli, sweep, type CliOutput, type SweepSummary } from './cli.js';
export { SweepWorkerMissingError } from './sweep-pool.js';
