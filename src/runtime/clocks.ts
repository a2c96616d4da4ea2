/**
 * Clock implementations: the system clock for production and a manual virtual clock for tests.
 *
 * @module
 */
import type { Clock, Timer } from './interfaces.js';

/**
 * Resolves `ms` from now on `clock`. Rejects as soon as `signal` aborts, with its reason: a job that
 * waits this way stops the moment it is told to.
 */
export function sleepOn(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      reject(signal.reason as Error);
    };
    const timer = clock.setTimer(ms, () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The process's monotonic clock and real timers. */
export class SystemClock implements Clock {
  nowMs(): number {
    return performance.now();
  }

  setTimer(delayMs: number, callback: () => void): Timer {
    const handle = setTimeout(callback, Math.max(0, delayMs));
    return { cancel: () => { clearTimeout(handle); } };
  }
}

interface ScheduledTimer {
  readonly dueMs: number;
  readonly sequence: number;
  readonly callback: () => void;
  cancelled: boolean;
}

/** Most timers a {@link ManualClock} fires in one `advance`; a bound against runaway re-arming. */
export const MAX_TIMERS_PER_ADVANCE = 10_000_000;

/**
 * Virtual time that moves only when told. Timers fire in (due time, creation order) order, so ties
 * break identically on every run.
 *
 * @example
 * ```ts
 * const clock = new ManualClock();
 * clock.setTimer(100, () => console.log('fired'));
 * await clock.advance(100); // prints "fired"
 * ```
 */
export class ManualClock implements Clock {
  private currentMs: number;
  private sequence = 0;
  private readonly timers: ScheduledTimer[] = [];

  constructor(startMs = 0) {
    this.currentMs = startMs;
  }

  nowMs(): number {
    return this.currentMs;
  }

  setTimer(delayMs: number, callback: () => void): Timer {
    const timer: ScheduledTimer = { dueMs: this.currentMs + Math.max(0, delayMs), sequence: this.sequence++, callback, cancelled: false };
    this.timers.push(timer);
    return { cancel: () => { timer.cancelled = true; } };
  }

  /** Pending timers. */
  pendingTimers(): number {
    return this.timers.filter((timer) => !timer.cancelled).length;
  }

  /**
   * Moves time forward by `ms`, firing due timers in order. Between timers it lets promise callbacks
   * run, so async work that a timer starts completes before the next timer fires.
   */
  async advance(ms: number): Promise<void> {
    const targetMs = this.currentMs + ms;
    for (let fired = 0; fired < MAX_TIMERS_PER_ADVANCE; fired++) {
      await settle();
      const next = this.takeNextDue(targetMs);
      if (next === undefined) break;
      this.currentMs = next.dueMs;
      next.callback();
    }
    this.currentMs = targetMs;
    await settle();
  }

  private takeNextDue(limitMs: number): ScheduledTimer | undefined {
    let best = -1;
    for (let position = 0; position < this.timers.length; position++) {
      const timer = this.timers[position];
      if (timer === undefined || timer.cancelled || timer.dueMs > limitMs) continue;
      const current = this.timers[best];
      if (current === undefined || timer.dueMs < current.dueMs || (timer.dueMs === current.dueMs && timer.sequence < current.sequence)) best = position;
    }
    if (best < 0) return undefined;
    const [timer] = this.timers.splice(best, 1);
    // Drop cancelled timers so the list stays as small as the live set.
    for (let position = this.timers.length - 1; position >= 0; position--) if (this.timers[position]?.cancelled === true) this.timers.splice(position, 1);
    return timer;
  }
}

/** Lets queued promise callbacks run: a macrotask boundary drains every pending microtask. */
async function settle(): Promise<void> {
  await new Promise<void>((resolve) => setImmediate(resolve));
}

/** The system's wall clock (milliseconds since the Unix epoch), for computing scheduled occurrences. */
export class SystemWallClock {
  nowMs(): number {
    return Date.now();
  }
}
