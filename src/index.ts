/**
 * raftlease: Raft-replicated leases and locks with fencing tokens.
 *
 * This entry point exports the Raft core and the runtime. Subpaths (`raftlease/lease`,
 * `raftlease/sim`, `raftlease/maintenance`) follow as those layers land.
 *
 * @module
 */
export * from './raft/index.js';
export * from './runtime/index.js';
