/**
 * The runtime: `RaftNode` and the interfaces it drives the core through.
 *
 * @module
 */
export * from './clocks.js';
export * from './errors.js';
export * from './interfaces.js';
export * from './memory.js';
export * from './raft-node.js';
export * from './tcp-transport.js';
export * from './file-storage.js';
