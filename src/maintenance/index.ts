/**
 * The maintenance orchestrator (in progress): schedule declarations, validation and occurrences.
 *
 * @module
 */
export * from './schedule.js';
