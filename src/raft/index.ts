/**
 * The pure Raft core: no I/O, no timers, no clock.
 *
 * @module
 */
export * from './bounded-map.js';
export * from './codec.js';
export * from './config.js';
export * from './errors.js';
export * from './log.js';
export * from './prng.js';
export * from './progress.js';
export * from './quorum.js';
export * from './raft.js';
export * from './rawnode.js';
export * from './text.js';
export * from './types.js';
