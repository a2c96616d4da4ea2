/**
 * Promise activity as the simulation loop needs to see it: whether a stretch of synchronous code
 * queued any promise job.
 *
 * @module
 */
import { promiseHooks } from 'node:v8';

/**
 * Watches, through V8's promise hooks, for anything that can queue a promise job: a `then` or an
 * `await` (a promise created from a parent promise) and a promise settling (its reactions become
 * jobs). A promise created without a parent and left pending queues nothing and is not counted. The
 * loop's own turns are not counted either. If {@link count} did not change over a stretch of
 * synchronous code, that code queued no promise job.
 *
 * Blind spots: `queueMicrotask` (neither the simulator nor `RaftNode` uses it while an `onFatalError`
 * handler is set) and resolving a pending promise with another promise (V8 queues the job that adopts
 * its state without a hook). A job queued that way still runs, in the order V8 queued it, at the next
 * microtask turn the loop grants; the run stays deterministic.
 */
export class PromiseActivity {
  /** Promise creations from a parent and settlements seen so far (the loop's own turns excepted). */
  count = 0;
  /** The promises of the loop's two latest turns: one settles just after the other is queued. */
  private ownLatest: Promise<unknown> | null = null;
  private ownPrevious: Promise<unknown> | null = null;
  private readonly disable: () => void;

  /** Starts watching; `turnSource` is the settled promise the loop's turns continue from. */
  constructor(turnSource: Promise<unknown>) {
    const disable = promiseHooks.createHook({
      init: (_promise: Promise<unknown>, parent: Promise<unknown> | undefined) => {
        if (parent !== undefined && parent !== turnSource) this.count++;
      },
      settled: (promise: Promise<unknown>) => {
        if (promise !== this.ownLatest && promise !== this.ownPrevious) this.count++;
      },
    }) as () => void;
    this.disable = disable;
  }

  /** Notes the promise of a turn the loop just queued, so that its settling is not counted. */
  ownTurn(promise: Promise<unknown>): void {
    this.ownPrevious = this.ownLatest;
    this.ownLatest = promise;
  }

  /** Stops watching (the hooks slow every promise operation down while installed). */
  stop(): void {
    this.disable();
  }
}
