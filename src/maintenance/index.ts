/**
 * The maintenance orchestrator: schedules, one runner per occurrence across the cluster, replicated
 * and fenced checkpoints, and Prometheus metrics. See docs/maintenance.md.
 *
 * @module
 */
export * from './schedule.js';
export * from './orchestrator.js';
export * from './metrics.js';
