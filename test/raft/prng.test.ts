/**
 * Tests of the seeded PRNG: determinism, seed sensitivity, conformance to xoshiro128**, range and
 * uniformity of randomIntBelow (chi-square on fixed seeds, so deterministic), argument checking.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SeededPrng, randomIntBelow, type Prng } from '../../src/raft/prng.js';

const SEED = 0x5eed_0004;
const TWO_32 = 0x1_0000_0000;

function take(prng: Prng, count: number): number[] {
  return Array.from({ length: count }, () => prng.nextUint32());
}

// ---------------------------------------------------------------------------------------------
// A BigInt reference of the documented algorithm (independent of Math.imul and int32 coercions).

const MASK = 0xffff_ffffn;
const mul32 = (a: bigint, b: bigint): bigint => (a * b) & MASK;
const rotl32 = (x: bigint, k: bigint): bigint => ((x << k) | (x >> (32n - k))) & MASK;

class ReferenceXoshiro128StarStar implements Prng {
  constructor(private s: [bigint, bigint, bigint, bigint]) {}

  /** Seeded from a 32-bit value through splitmix32 (murmur3 finaliser constants), as SeededPrng documents. */
  static fromSeed32(seed: number): ReferenceXoshiro128StarStar {
    let state = BigInt(seed) & MASK;
    const next = (): bigint => {
      state = (state + 0x9e37_79b9n) & MASK;
      let z = state;
      z = mul32(z ^ (z >> 16n), 0x85eb_ca6bn);
      z = mul32(z ^ (z >> 13n), 0xc2b2_ae35n);
      return z ^ (z >> 16n);
    };
    return new ReferenceXoshiro128StarStar([next(), next(), next(), next()]);
  }

  nextUint32(): number {
    const [s0, s1, s2, s3] = this.s;
    const result = mul32(rotl32(mul32(s1, 5n), 7n), 9n);
    const t = (s1 << 9n) & MASK;
    const n2 = s2 ^ s0;
    const n3 = s3 ^ s1;
    const n1 = s1 ^ n2;
    const n0 = s0 ^ n3;
    this.s = [n0, n1, n2 ^ t, rotl32(n3, 11n)];
    return Number(result);
  }
}

describe('SeededPrng', () => {
  it('the same seed gives the same sequence (any safe integer), and instances share no state', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), fc.integer({ min: 1, max: 50 }), (seed, interleave) => {
        const first = new SeededPrng(seed);
        const expected = take(first, 64);
        const second = new SeededPrng(seed);
        const other = new SeededPrng(seed);
        const head = take(second, interleave);
        take(other, 3); // drawing from another instance in between must not disturb the second
        expect([...head, ...take(second, 64 - interleave)]).toEqual(expected);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('distinct 32-bit seeds give distinct first outputs', () => {
    // Seeding and the xoshiro128** output function are both bijective on 32-bit seeds.
    fc.assert(
      fc.property(fc.integer({ min: 0, max: TWO_32 - 1 }), fc.integer({ min: 0, max: TWO_32 - 1 }), (a, b) => {
        fc.pre(a !== b);
        expect(new SeededPrng(a).nextUint32()).not.toBe(new SeededPrng(b).nextUint32());
      }),
      { seed: SEED, numRuns: 2_000 },
    );
  });

  it('distinct safe-integer seeds give distinct sequences', () => {
    // The documented seed domain is every safe integer, negative and above 2^32 included.
    fc.assert(
      fc.property(fc.maxSafeInteger(), fc.maxSafeInteger(), (a, b) => {
        fc.pre(a !== b);
        expect(take(new SeededPrng(a), 4)).not.toEqual(take(new SeededPrng(b), 4));
      }),
      // Pairs that a 32-bit fold of the seed would merge (they did before b7673e2).
      { seed: SEED, numRuns: 2_000, examples: [[0, -1], [1, 2 ** 32], [0, 2 ** 32 + 1]] },
    );
  });

  it('is xoshiro128**: the reference test vector from state (1, 2, 3, 4)', () => {
    // First outputs of the reference C implementation seeded with {1, 2, 3, 4}.
    const expected = [11520, 0, 5927040, 70819200];
    expect(take(new ReferenceXoshiro128StarStar([1n, 2n, 3n, 4n]), 4)).toEqual(expected);
    const prng = new SeededPrng(0);
    Object.assign(prng, { s0: 1, s1: 2, s2: 3, s3: 4 }); // the state words are TypeScript-private only
    const fromState = take(prng, 1_000);
    expect(fromState.slice(0, 4)).toEqual(expected);
    expect(fromState).toEqual(take(new ReferenceXoshiro128StarStar([1n, 2n, 3n, 4n]), 1_000));
  });

  it('matches a BigInt reference of splitmix32 seeding + xoshiro128** for 32-bit seeds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: TWO_32 - 1 }), (seed) => {
        expect(take(new SeededPrng(seed), 32)).toEqual(take(ReferenceXoshiro128StarStar.fromSeed32(seed), 32));
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('yields unsigned 32-bit integers with uniform bytes (chi-square, fixed seeds)', () => {
    const samples = 64_000;
    for (const seed of [0, 1, 42, 2 ** 40 + 7]) {
      const prng = new SeededPrng(seed);
      const low = new Array<number>(256).fill(0);
      const high = new Array<number>(256).fill(0);
      for (let draw = 0; draw < samples; draw++) {
        const value = prng.nextUint32();
        if (!Number.isInteger(value) || value < 0 || value >= TWO_32) expect.fail(`nextUint32 returned ${value}`);
        low[value & 0xff] = (low[value & 0xff] ?? 0) + 1;
        high[value >>> 24] = (high[value >>> 24] ?? 0) + 1;
      }
      expect(chiSquare(low), `low byte, seed ${seed}`).toBeLessThan(generousBound(255));
      expect(chiSquare(high), `high byte, seed ${seed}`).toBeLessThan(generousBound(255));
    }
  });

  it('refuses a seed that is not a safe integer', () => {
    for (const seed of [0.5, -1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53, -(2 ** 53)]) {
      expect(() => new SeededPrng(seed), `seed ${seed}`).toThrow(RangeError);
    }
  });
});

/** Pearson's statistic against the uniform distribution over the buckets. */
function chiSquare(counts: readonly number[]): number {
  const total = counts.reduce((sum, count) => sum + count, 0);
  const expected = total / counts.length;
  return counts.reduce((sum, count) => sum + (count - expected) ** 2 / expected, 0);
}

/** Mean + 6 standard deviations of χ²(df): generous, yet far below what a biased generator scores. */
function generousBound(degreesOfFreedom: number): number {
  return degreesOfFreedom + 6 * Math.sqrt(2 * degreesOfFreedom);
}

describe('randomIntBelow', () => {
  const boundArb = fc.oneof(
    fc.integer({ min: 1, max: 100 }),
    fc.integer({ min: 1, max: TWO_32 }),
    fc.constantFrom(1, 2, 3, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 3 * 2 ** 30, TWO_32 - 1, TWO_32),
  );

  it('stays in [0, bound) and returns integers', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), boundArb, (seed, bound) => {
        const prng = new SeededPrng(seed);
        for (let draw = 0; draw < 50; draw++) {
          const value = randomIntBelow(prng, bound);
          if (!Number.isInteger(value) || value < 0 || value >= bound) expect.fail(`randomIntBelow(prng, ${bound}) returned ${value}`);
        }
      }),
      { seed: SEED, numRuns: 1_000 },
    );
  });

  it('is deterministic for a seed', () => {
    fc.assert(
      fc.property(fc.maxSafeInteger(), boundArb, (seed, bound) => {
        const a = new SeededPrng(seed);
        const b = new SeededPrng(seed);
        const first = Array.from({ length: 20 }, () => randomIntBelow(a, bound));
        expect(Array.from({ length: 20 }, () => randomIntBelow(b, bound))).toEqual(first);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('is roughly uniform (chi-square, fixed seeds)', () => {
    // Small bounds directly; large bounds bucketed into equal-width bins. 3·2^30 is where a plain
    // modulo would be most biased (values below 2^30 twice as likely).
    const cases: { bound: number; bins: number; width: number }[] = [
      { bound: 2, bins: 2, width: 1 },
      { bound: 6, bins: 6, width: 1 },
      { bound: 10, bins: 10, width: 1 },
      { bound: 97, bins: 97, width: 1 },
      { bound: 3 * 2 ** 30, bins: 12, width: 2 ** 28 },
      { bound: 2 ** 31 + 2 ** 30, bins: 12, width: 2 ** 28 },
      { bound: TWO_32, bins: 16, width: 2 ** 28 },
    ];
    const samples = 60_000;
    for (const seed of [1, 2_024, 2 ** 33 + 5]) {
      for (const { bound, bins, width } of cases) {
        const prng = new SeededPrng(seed);
        const counts = new Array<number>(bins).fill(0);
        for (let draw = 0; draw < samples; draw++) {
          const bin = Math.floor(randomIntBelow(prng, bound) / width);
          counts[bin] = (counts[bin] ?? 0) + 1;
        }
        expect(counts.length, 'every value fell into a bin').toBe(bins);
        expect(chiSquare(counts), `seed ${seed}, bound ${bound}`).toBeLessThan(generousBound(bins - 1));
      }
    }
  });

  it('with bound 1 always returns 0', () => {
    const prng = new SeededPrng(7);
    for (let draw = 0; draw < 100; draw++) expect(randomIntBelow(prng, 1)).toBe(0);
  });

  it('throws RangeError for bounds outside [1, 2^32] or not integers', () => {
    const fixed = [0, -1, 0.5, 1.5, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, TWO_32 + 1, 2 ** 53];
    for (const bound of fixed) {
      expect(() => randomIntBelow(new SeededPrng(1), bound), `bound ${bound}`).toThrow(RangeError);
    }
    fc.assert(
      fc.property(
        fc.oneof(fc.double(), fc.integer({ min: TWO_32 + 1, max: Number.MAX_SAFE_INTEGER }), fc.integer({ max: 0 })),
        (bound) => {
          fc.pre(!(Number.isInteger(bound) && bound >= 1 && bound <= TWO_32));
          expect(() => randomIntBelow(new SeededPrng(1), bound)).toThrow(RangeError);
        },
      ),
      { seed: SEED, numRuns: 1_000 },
    );
  });
});
