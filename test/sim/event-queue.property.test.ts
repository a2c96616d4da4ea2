/**
 * Property test of the simulator's event queue against a naive model: a list kept sorted by
 * (time, order of scheduling).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EventQueue } from '../../sim/event-queue.js';

const SEED = 0x5eed_0e0e;

type Command = { readonly kind: 'push'; readonly timeNs: number } | { readonly kind: 'pop' };

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  // Few distinct times, so that ties (broken by scheduling order) are frequent.
  { weight: 3, arbitrary: fc.nat(20).map((timeNs): Command => ({ kind: 'push', timeNs })) },
  { weight: 2, arbitrary: fc.constant<Command>({ kind: 'pop' }) },
);

describe('EventQueue', () => {
  it('pops events by time, ties in the order they were pushed, and reports the earliest time', () => {
    fc.assert(
      fc.property(fc.array(commandArb, { maxLength: 300 }), (commands) => {
        const queue = new EventQueue<number>();
        const model: { readonly timeNs: number; readonly id: number }[] = [];
        let nextId = 0;
        for (const command of commands) {
          if (command.kind === 'push') {
            const id = nextId++;
            queue.push(command.timeNs, id);
            // Insert after every event due at the same time or earlier.
            let at = model.length;
            while (at > 0 && (model[at - 1]?.timeNs ?? 0) > command.timeNs) at--;
            model.splice(at, 0, { timeNs: command.timeNs, id });
          } else {
            const expected = model.shift();
            expect(queue.peekTimeNs()).toBe(expected === undefined ? Number.POSITIVE_INFINITY : expected.timeNs);
            expect(queue.pop()).toBe(expected?.id);
          }
          expect(queue.size).toBe(model.length);
          expect(queue.peekTimeNs()).toBe(model[0]?.timeNs ?? Number.POSITIVE_INFINITY);
        }
      }),
      { seed: SEED, numRuns: 1_000 },
    );
  });
});
