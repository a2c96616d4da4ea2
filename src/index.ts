/**
 * raftlease: Raft-replicated leases and locks with fencing tokens.
 *
 * This entry point exports the Raft core and the runtime. Leases and the `DistributedLock` are at
 * `raftlease/lease`, the simulator at `raftlease/sim`; `raftlease/maintenance` follows.
 *
 * @module
 */
export * from './raft/index.js';
export * from './runtime/index.js';
