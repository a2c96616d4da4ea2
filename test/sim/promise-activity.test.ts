import { describe, expect, it } from 'vitest';
import { PromiseActivity } from '../../sim/promise-activity.js';

/** Runs `action` synchronously and reports whether the watcher saw activity. */
function seen(activity: PromiseActivity, action: () => void): boolean {
  const before = activity.count;
  action();
  return activity.count !== before;
}

describe('PromiseActivity', () => {
  const turnSource = Promise.resolve();

  it('sees everything that queues a promise job', async () => {
    const activity = new PromiseActivity(turnSource);
    try {
      const settled = Promise.resolve(1);
      expect(seen(activity, () => void settled.then(() => undefined))).toBe(true);
      expect(
        seen(activity, () => {
          void (async () => {
            await settled;
          })();
        }),
      ).toBe(true);
      expect(
        seen(activity, () => {
          void (async () => {
            // eslint-disable-next-line @typescript-eslint/await-thenable -- awaiting a plain value is the case under test
            await 5;
          })();
        }),
      ).toBe(true);
      let resolvePending: (value: number) => void = () => undefined;
      const pending = new Promise<number>((resolve) => {
        resolvePending = resolve;
      });
      const reaction = pending.then((value) => value);
      expect(
        seen(activity, () => {
          resolvePending(2);
        }),
      ).toBe(true);
      await expect(reaction).resolves.toBe(2);
      expect(seen(activity, () => void Promise.reject(new Error('refused')).catch(() => undefined))).toBe(true);
    } finally {
      activity.stop();
    }
  });

  it('does not count a pending promise created without a parent, nor the loop’s own turns', async () => {
    const activity = new PromiseActivity(turnSource);
    try {
      expect(seen(activity, () => void new Promise<void>(() => undefined))).toBe(false);
      // A turn: continued from the turn source and noted as the loop's own. The first turn's promise
      // settles between the two turns, uncounted. (Starting from a macrotask, so that no job of the
      // test runner's runs between the turns.)
      await new Promise<void>((resolve) => {
        setImmediate(resolve);
      });
      let countInFirstTurn = -1;
      let countInSecondTurn = -1;
      await new Promise<void>((resolve) => {
        const queued = seen(activity, () => {
          activity.ownTurn(
            turnSource.then(() => {
              countInFirstTurn = activity.count;
              activity.ownTurn(
                turnSource.then(() => {
                  countInSecondTurn = activity.count;
                  resolve();
                }),
              );
            }),
          );
        });
        expect(queued).toBe(false);
      });
      expect(countInFirstTurn).toBeGreaterThanOrEqual(0);
      expect(countInSecondTurn).toBe(countInFirstTurn);
    } finally {
      activity.stop();
    }
  });

  it('stops counting once stopped', () => {
    const activity = new PromiseActivity(turnSource);
    activity.stop();
    expect(seen(activity, () => void Promise.resolve(1).then(() => undefined))).toBe(false);
  });
});
