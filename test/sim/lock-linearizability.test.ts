/**
 * The lock-history linearizability checker: accepts histories a lock with expiring leases can
 * produce, and refuses each kind of impossible one.
 */
import { describe, expect, it } from 'vitest';
import { checkLockLinearizable, simulate, type LockHistoryEvent } from '../../sim/index.js';

type Op = readonly [process: number, f: LockHistoryEvent['f'], invokeValue: LockHistoryEvent['value'], from: number, to: number | null, type: 'ok' | 'fail' | 'info', value: LockHistoryEvent['value']];

/** Builds a history of one key from operations `[process, f, invoke value, invoke time, completion time, type, result]`. */
function history(ops: readonly Op[]): LockHistoryEvent[] {
  const events: LockHistoryEvent[] = [];
  for (const [process, f, invokeValue, from, to, type, value] of ops) {
    events.push({ process, type: 'invoke', f, key: 'k', value: invokeValue, time: from });
    if (to !== null) events.push({ process, type, f, key: 'k', value, time: to });
  }
  return events.sort((a, b) => a.time - b.time);
}

describe('lock history linearizability', () => {
  it('accepts grants, a refusal naming the holder, a renewal, and a later grant after expiry', () => {
    const events = history([
      [0, 'acquire', 'a', 0, 10, 'ok', ['a', 1]],
      [1, 'acquire', 'b', 20, 30, 'fail', 'a'],
      [2, 'renew', ['a', 1], 40, 50, 'ok', ['a', 1]],
      [1, 'acquire', 'b', 60, 70, 'ok', ['b', 5]],
      [0, 'acquire', 'a', 80, 90, 'fail', 'b'],
    ]);
    expect(checkLockLinearizable(events)).toEqual({ ok: true });
  });

  it('refuses a grant with a smaller token requested after a larger one was received', () => {
    const events = history([
      [0, 'acquire', 'a', 0, 10, 'ok', ['a', 5]],
      [1, 'acquire', 'b', 20, 30, 'ok', ['b', 3]],
    ]);
    expect(checkLockLinearizable(events)).toMatchObject({ ok: false, key: 'k' });
  });

  it('refuses a refusal that names a holder nobody granted', () => {
    expect(checkLockLinearizable(history([[1, 'acquire', 'b', 0, 10, 'fail', 'a']]))).toMatchObject({ ok: false });
  });

  it('refuses a renewal that succeeded after another owner had been granted the lock', () => {
    const events = history([
      [0, 'acquire', 'a', 0, 10, 'ok', ['a', 1]],
      [1, 'acquire', 'b', 20, 30, 'ok', ['b', 4]],
      [2, 'renew', ['a', 1], 40, 50, 'ok', ['a', 1]],
    ]);
    expect(checkLockLinearizable(events)).toMatchObject({ ok: false });
  });

  it('lets an acquire with an unknown outcome explain a later refusal naming its owner', () => {
    const events = history([
      [0, 'acquire', 'a', 0, null, 'info', null],
      [1, 'acquire', 'b', 20, 30, 'fail', 'a'],
    ]);
    expect(checkLockLinearizable(events)).toEqual({ ok: true });
  });

  it('orders overlapping operations either way: a refusal overlapping the grant it names is fine', () => {
    const events = history([
      [0, 'acquire', 'a', 0, 50, 'ok', ['a', 1]],
      [1, 'acquire', 'b', 10, 20, 'fail', 'a'],
    ]);
    expect(checkLockLinearizable(events)).toEqual({ ok: true });
  });

  it('passes on real lock-workload histories', async () => {
    const result = await simulate({ seed: 3, workload: 'lock', faultPhaseMs: 3_000 });
    expect(result.lockHistory.length).toBeGreaterThan(20);
    expect(result.linearizability).toBe('ok');
  });
});
