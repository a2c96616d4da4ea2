/**
 * Replicated leases: the lease table state machine. The `DistributedLock` client and the leader's
 * lessor are built on it.
 *
 * @module
 */
export * from './state-machine.js';
export * from './maintenance-records.js';
export * from './lock.js';
