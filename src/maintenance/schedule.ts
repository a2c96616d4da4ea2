/**
 * Maintenance schedules: what runs when, how long its window stays open, and the lock TTL rule.
 *
 * An occurrence is identified by its *scheduled* time (milliseconds since the Unix epoch, UTC), never
 * by a node's clock reading, so nodes with skewed clocks compete for the same occurrence. Cron
 * expressions are parsed and evaluated by `croner` (with IANA time zones); fixed intervals are aligned
 * to the epoch so every node computes the same occurrences.
 *
 * @module
 */
import { Cron } from 'croner';
import { ConfigError } from '../raft/index.js';
import { MAX_LEASE_TTL_MS, invalidLeaseKey } from '../lease/state-machine.js';

/** Default safety margin added to the estimated task duration for the lock TTL: 30 s. */
export const DEFAULT_SAFETY_MARGIN_MS = 30_000;
/** Default misfire threshold (capped at the window): 5 s. */
export const DEFAULT_MISFIRE_THRESHOLD_MS = 5_000;
/** Longest window, interval, duration or TTL a schedule may name: 30 days. */
export const MAX_SCHEDULE_SPAN_MS = 30 * 24 * 60 * 60 * 1000;

/** What happens to an occurrence whose time passed while no node could run it. */
export type MisfirePolicy =
  /** Never run a late occurrence. */
  | 'skip'
  /** Run it once if its window is still open. */
  | 'runOnceIfWindowOpen';

/** A schedule as declared by the user. Exactly one of `cron` and `intervalMs`. */
export interface ScheduleOptions {
  /** Unique id; also the lock key. */
  readonly id: string;
  /** A cron expression (5 or 6 fields, seconds optional), evaluated in `timeZone`. */
  readonly cron?: string;
  /** IANA time zone of `cron`, e.g. `Europe/Berlin`. Default UTC. */
  readonly timeZone?: string;
  /** A fixed interval instead of `cron`: occurrences at every multiple of it since the Unix epoch. */
  readonly intervalMs?: number;
  /** How long after its scheduled time an occurrence may still start. */
  readonly windowMs: number;
  /** How long the job is expected to take. */
  readonly estimatedDurationMs: number;
  /** Added to the estimated duration for the lock TTL rule. Default 30,000 ms. */
  readonly safetyMarginMs?: number;
  /** TTL of the lock taken per occurrence. Default: the window. Must be ≥ estimated duration + margin. */
  readonly lockTtlMs?: number;
  /** Default `runOnceIfWindowOpen`. */
  readonly misfire?: MisfirePolicy;
  /**
   * How late (after its scheduled time plus jitter) a node may first try an occurrence and still call
   * it on time. Later first tries are misfires, which the `skip` policy does not run. Default: the
   * smaller of 5,000 ms and the window.
   */
  readonly misfireThresholdMs?: number;
  /** Most random delay before competing for an occurrence, in ms (spreads load; default 0). */
  readonly jitterMs?: number;
}

/** A validated schedule. */
export interface Schedule {
  readonly id: string;
  readonly cron: string | null;
  readonly timeZone: string;
  readonly intervalMs: number | null;
  readonly windowMs: number;
  readonly estimatedDurationMs: number;
  readonly safetyMarginMs: number;
  readonly lockTtlMs: number;
  readonly misfire: MisfirePolicy;
  readonly misfireThresholdMs: number;
  readonly jitterMs: number;
}

/**
 * Validates a schedule. Throws a {@link ConfigError} that names the schedule and the field — for the
 * TTL rule, both numbers: `lockTtlMs` must be at least `estimatedDurationMs + safetyMarginMs`.
 */
export function resolveSchedule(options: ScheduleOptions): Schedule {
  const idProblem = invalidLeaseKey(options.id);
  if (idProblem !== null) throw new ConfigError('id', `schedule id: ${idProblem}`);
  const id = options.id;
  const fail = (field: string, message: string): never => {
    throw new ConfigError(field, `schedule '${id}': ${message}`);
  };
  const span = (field: string, value: unknown, allowZero = false): number => {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < (allowZero ? 0 : 1) || value > MAX_SCHEDULE_SPAN_MS) {
      return fail(field, `${field} must be an integer number of milliseconds in [${allowZero ? 0 : 1}, ${MAX_SCHEDULE_SPAN_MS}], got ${String(value)}`);
    }
    return value;
  };
  const hasCron = options.cron !== undefined;
  const hasInterval = options.intervalMs !== undefined;
  if (hasCron === hasInterval) fail(hasCron ? 'cron' : 'intervalMs', 'give exactly one of cron and intervalMs');
  const timeZone = options.timeZone ?? 'UTC';
  if (hasCron) {
    try {
      const cron = new Cron(options.cron ?? '', { timezone: timeZone, paused: true });
      // Evaluating once also validates the time zone.
      cron.nextRun(new Date(0));
    } catch (error) {
      fail(options.timeZone !== undefined && !(error instanceof Error && /pattern/i.test(error.message)) ? 'timeZone' : 'cron', error instanceof Error ? error.message : String(error));
    }
  } else if (options.timeZone !== undefined) {
    fail('timeZone', 'a time zone applies to cron schedules only');
  }
  const intervalMs = hasInterval ? span('intervalMs', options.intervalMs) : null;
  const windowMs = span('windowMs', options.windowMs);
  const estimatedDurationMs = span('estimatedDurationMs', options.estimatedDurationMs);
  const safetyMarginMs = span('safetyMarginMs', options.safetyMarginMs ?? DEFAULT_SAFETY_MARGIN_MS, true);
  const lockTtlMs = span('lockTtlMs', options.lockTtlMs ?? windowMs);
  const jitterMs = span('jitterMs', options.jitterMs ?? 0, true);
  if (lockTtlMs < estimatedDurationMs + safetyMarginMs) {
    fail(
      'lockTtlMs',
      `lock TTL ${lockTtlMs} ms is shorter than the estimated duration ${estimatedDurationMs} ms plus the safety margin ${safetyMarginMs} ms (${estimatedDurationMs + safetyMarginMs} ms); raise lockTtlMs (or windowMs, its default)`,
    );
  }
  if (lockTtlMs > MAX_LEASE_TTL_MS) {
    fail('lockTtlMs', `lock TTL ${lockTtlMs} ms is longer than the longest lease (${MAX_LEASE_TTL_MS} ms, one day); lower lockTtlMs (it defaults to windowMs)`);
  }
  if (intervalMs !== null && windowMs > intervalMs) fail('windowMs', `window ${windowMs} ms is longer than the interval ${intervalMs} ms: occurrences would overlap`);
  if (hasCron) {
    const gapMs = shortestCronGapMs(options.cron ?? '', timeZone);
    if (gapMs !== null && windowMs > gapMs) {
      fail('windowMs', `window ${windowMs} ms is longer than the shortest gap between two occurrences of '${options.cron ?? ''}' (${gapMs} ms): occurrences would overlap`);
    }
  }
  if (jitterMs >= windowMs) fail('jitterMs', `jitter ${jitterMs} ms must be shorter than the window ${windowMs} ms`);
  // Checked as unknown: JavaScript callers can pass anything.
  const misfireValue: unknown = options.misfire ?? 'runOnceIfWindowOpen';
  if (misfireValue !== 'skip' && misfireValue !== 'runOnceIfWindowOpen') fail('misfire', `misfire must be 'skip' or 'runOnceIfWindowOpen', got ${String(misfireValue)}`);
  const misfire = misfireValue as MisfirePolicy;
  const misfireThresholdMs = span('misfireThresholdMs', options.misfireThresholdMs ?? Math.min(DEFAULT_MISFIRE_THRESHOLD_MS, windowMs), true);
  if (misfireThresholdMs > windowMs) fail('misfireThresholdMs', `misfire threshold ${misfireThresholdMs} ms is longer than the window ${windowMs} ms`);
  return Object.freeze({ id, cron: options.cron ?? null, timeZone, intervalMs, windowMs, estimatedDurationMs, safetyMarginMs, lockTtlMs, misfire, misfireThresholdMs, jitterMs });
}

/** A fixed start, so that validation is a pure function of the declaration. */
const GAP_SCAN_FROM_MS = Date.UTC(2026, 0, 1);
/** Occurrences scanned for the shortest gap: daily schedules over more than two years (both DST changes). */
const GAP_SCAN_OCCURRENCES = 1_000;

/** The shortest time between two consecutive occurrences of a cron pattern over the scan, or null. */
function shortestCronGapMs(pattern: string, timeZone: string): number | null {
  const cron = new Cron(pattern, { timezone: timeZone, paused: true });
  const runs = cron.nextRuns(GAP_SCAN_OCCURRENCES, new Date(GAP_SCAN_FROM_MS));
  let shortest: number | null = null;
  for (let index = 1; index < runs.length; index++) {
    const gap = (runs[index]?.getTime() ?? 0) - (runs[index - 1]?.getTime() ?? 0);
    if (shortest === null || gap < shortest) shortest = gap;
  }
  return shortest;
}

/**
 * The scheduled times (epoch ms) of `schedule` in `(afterMs, untilMs]`, oldest first, at most `limit`.
 * Pure: the same inputs give the same occurrences on every node.
 */
export function occurrencesBetween(schedule: Schedule, afterMs: number, untilMs: number, limit = 1_000): number[] {
  const result: number[] = [];
  if (schedule.intervalMs !== null) {
    const interval = schedule.intervalMs;
    for (let at = (Math.floor(afterMs / interval) + 1) * interval; at <= untilMs && result.length < limit; at += interval) result.push(at);
    return result;
  }
  const cron = new Cron(schedule.cron ?? '', { timezone: schedule.timeZone, paused: true });
  let cursor = new Date(afterMs);
  // Bounded by `limit`: each round moves the cursor to a strictly later occurrence.
  while (result.length < limit) {
    const next = cron.nextRun(cursor);
    if (next === null || next.getTime() > untilMs) break;
    result.push(next.getTime());
    cursor = next;
  }
  return result;
}

/** The occurrence whose window contains `nowMs`, if any: the latest scheduled time `t ≤ nowMs < t + window`. */
export function openOccurrence(schedule: Schedule, nowMs: number): number | null {
  const [latest] = occurrencesBetween(schedule, nowMs - schedule.windowMs, nowMs, 1_000).slice(-1);
  return latest === undefined ? null : latest;
}
