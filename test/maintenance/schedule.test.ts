/**
 * Schedule declarations: validation (the lock TTL rule first), and occurrences that every node
 * computes alike from the scheduled time.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/raft/index.js';
import { DEFAULT_SAFETY_MARGIN_MS, occurrencesBetween, openOccurrence, resolveSchedule, type ScheduleOptions } from '../../src/maintenance/index.js';

const base: ScheduleOptions = { id: 'compaction', intervalMs: 3_600_000, windowMs: 600_000, estimatedDurationMs: 120_000 };

function configError(options: ScheduleOptions): ConfigError {
  try {
    resolveSchedule(options);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('schedule validation', () => {
  it('defaults: 30 s safety margin, lock TTL = window, misfire runs once while the window is open, no jitter', () => {
    expect(resolveSchedule(base)).toMatchObject({ safetyMarginMs: DEFAULT_SAFETY_MARGIN_MS, lockTtlMs: 600_000, misfire: 'runOnceIfWindowOpen', jitterMs: 0, timeZone: 'UTC', cron: null });
    expect(DEFAULT_SAFETY_MARGIN_MS).toBe(30_000);
  });

  it('the lock TTL must be at least the estimated duration plus the safety margin; the error names the schedule and both numbers', () => {
    const error = configError({ ...base, lockTtlMs: 140_000 });
    expect(error.field).toBe('lockTtlMs');
    expect(error.message).toContain("schedule 'compaction'");
    expect(error.message).toContain('140000');
    expect(error.message).toContain('150000');
    expect(error.code).toBe('InvalidConfig');
    // Exactly at the bound is accepted; the default TTL (the window) is checked too.
    expect(resolveSchedule({ ...base, lockTtlMs: 150_000 }).lockTtlMs).toBe(150_000);
    expect(configError({ ...base, windowMs: 100_000, intervalMs: 3_600_000 }).field).toBe('lockTtlMs');
    expect(configError({ ...base, safetyMarginMs: 500_000 }).message).toContain('620000');
  });

  it('refuses a schedule with both or neither of cron and intervalMs, a bad cron expression, or a bad time zone', () => {
    expect(configError({ id: 'x', windowMs: 60_000, estimatedDurationMs: 1_000 }).field).toBe('intervalMs');
    expect(configError({ ...base, cron: '0 3 * * *' }).field).toBe('cron');
    expect(configError({ id: 'x', cron: 'every day', windowMs: 600_000, estimatedDurationMs: 1_000 }).field).toBe('cron');
    expect(configError({ id: 'x', cron: '0 3 * * *', timeZone: 'Mars/Olympus', windowMs: 600_000, estimatedDurationMs: 1_000 }).field).toBe('timeZone');
    expect(configError({ ...base, timeZone: 'Europe/Berlin' }).field).toBe('timeZone');
  });

  it('refuses bad numbers, overlapping windows, jitter as long as the window, bad ids and misfire policies', () => {
    for (const [options, field] of [
      [{ ...base, windowMs: 0 }, 'windowMs'],
      [{ ...base, estimatedDurationMs: -1 }, 'estimatedDurationMs'],
      [{ ...base, estimatedDurationMs: 1.5 }, 'estimatedDurationMs'],
      [{ ...base, intervalMs: 300_000 }, 'windowMs'],
      [{ ...base, jitterMs: 600_000 }, 'jitterMs'],
      [{ ...base, id: '' }, 'id'],
      [{ ...base, misfire: 'later' as never }, 'misfire'],
      [{ ...base, lockTtlMs: 31 * 24 * 3_600_000 }, 'lockTtlMs'],
      [{ ...base, lockTtlMs: 24 * 3_600_000 + 1 }, 'lockTtlMs'],
    ] as const) {
      expect(configError(options).field).toBe(field);
    }
  });

  it('refuses a cron window longer than the shortest gap between two occurrences, naming both', () => {
    const cron = { id: 'backup', cron: '0 3 * * 1-5', estimatedDurationMs: 60_000, lockTtlMs: 3_600_000 };
    // Weekdays at 03:00: the shortest gap is one day, although Friday to Monday is three.
    expect(resolveSchedule({ ...cron, windowMs: 24 * 3_600_000 }).windowMs).toBe(24 * 3_600_000);
    const error = configError({ ...cron, windowMs: 24 * 3_600_000 + 1 });
    expect(error.field).toBe('windowMs');
    expect(error.message).toMatch(/window 86400001 ms is longer than the shortest gap between two occurrences of '0 3 \* \* 1-5' \(86400000 ms\)/);
    // Every second: a one-hour window would hold 3,600 occurrences at once.
    expect(configError({ id: 'tick', cron: '* * * * * *', windowMs: 3_600_000, estimatedDurationMs: 100, safetyMarginMs: 100 }).field).toBe('windowMs');
  });
});

describe('occurrences', () => {
  it('fixed intervals are aligned to the epoch, so every node computes the same occurrences whatever its clock says', () => {
    const schedule = resolveSchedule(base);
    expect(occurrencesBetween(schedule, 3_600_000 * 10 + 5, 3_600_000 * 13)).toEqual([3_600_000 * 11, 3_600_000 * 12, 3_600_000 * 13]);
    // Two nodes whose clocks differ by 40 s see the same open occurrence.
    expect(openOccurrence(schedule, 3_600_000 * 11 + 10_000)).toBe(3_600_000 * 11);
    expect(openOccurrence(schedule, 3_600_000 * 11 + 50_000)).toBe(3_600_000 * 11);
    // After the window closes, nothing is open.
    expect(openOccurrence(schedule, 3_600_000 * 11 + 600_000)).toBeNull();
  });

  it('cron schedules run in their time zone, across a daylight-saving change', () => {
    const schedule = resolveSchedule({ id: 'backup', cron: '0 3 * * *', timeZone: 'Europe/Berlin', windowMs: 3_600_000, estimatedDurationMs: 600_000 });
    const from = Date.UTC(2026, 2, 27, 12, 0);
    const times = occurrencesBetween(schedule, from, Date.UTC(2026, 2, 30, 12, 0)).map((at) => new Date(at).toISOString());
    // 03:00 CET is 02:00 UTC; 03:00 CEST (from 29 March) is 01:00 UTC.
    expect(times).toEqual(['2026-03-28T02:00:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-30T01:00:00.000Z']);
  });

  it('is bounded by the limit', () => {
    const schedule = resolveSchedule({ id: 'often', intervalMs: 1_000, windowMs: 1_000, estimatedDurationMs: 1, safetyMarginMs: 0 });
    expect(occurrencesBetween(schedule, 0, 10_000_000, 5)).toEqual([1_000, 2_000, 3_000, 4_000, 5_000]);
  });
});
