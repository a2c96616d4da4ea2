/**
 * Property test of BoundedMap against a naive model: a list of distinct keys in insertion order,
 * trimmed to the capacity from the oldest end.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BoundedMap } from '../../src/raft/bounded-map.js';

const SEED = 0x5eed_000b;

describe('BoundedMap', () => {
  it('holds the latest value of the `capacity` most recently inserted distinct keys, and knows when it evicted', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.array(fc.tuple(fc.nat(12), fc.nat()), { maxLength: 60 }), (capacity, writes) => {
        const map = new BoundedMap<number, number>(capacity);
        const order: number[] = [];
        const values = new Map<number, number>();
        let evicted = false;
        for (const [key, value] of writes) {
          map.set(key, value);
          if (!values.has(key)) {
            order.push(key);
            if (order.length > capacity) {
              values.delete(order.shift() as number);
              evicted = true;
            }
          }
          values.set(key, value);
          expect(map.size).toBe(values.size);
          expect(map.hasEvicted).toBe(evicted);
          for (let probe = 0; probe <= 12; probe++) expect(map.get(probe)).toBe(values.get(probe));
        }
      }),
      { seed: SEED, numRuns: 1_000 },
    );
  });

  it('refuses a capacity that is not a positive integer', () => {
    for (const capacity of [0, -1, 1.5, Number.NaN]) expect(() => new BoundedMap(capacity)).toThrow(RangeError);
  });
});
