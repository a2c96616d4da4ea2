/**
 * A small, fast, seeded pseudo-random generator. Every random choice in the deterministic layers
 * (election jitter, simulator faults) comes from one of these, so a seed replays a run exactly.
 *
 * @module
 */

/** Source of 32-bit unsigned integers. Inject one instead of using global randomness. */
export interface Prng {
  /** Next value, uniform in [0, 2^32). */
  nextUint32(): number;
}

/**
 * xoshiro128** seeded through splitmix32. Integer-only arithmetic (`Math.imul`, shifts), so the
 * sequence is identical on every platform.
 *
 * @example
 * ```ts
 * const prng = new SeededPrng(42);
 * const jitterTicks = randomIntBelow(prng, 10);
 * ```
 */
export class SeededPrng implements Prng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** @param seed any safe integer; the same seed always yields the same sequence. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
    let state = seed >>> 0;
    const next = (): number => {
      state = (state + 0x9e3779b9) | 0;
      return mix32(state);
    };
    // The high bits (above 2^32) go into s0 through a bijection that maps 0 to 0: every safe-integer
    // seed gets its own state, and 32-bit seeds keep plain splitmix32 seeding.
    const high = Math.floor(Math.abs(seed) / 0x1_0000_0000) + (seed < 0 ? 0x20_0000 : 0);
    this.s0 = (next() ^ mix32(high)) >>> 0;
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }
}

/** murmur3's 32-bit finalizer: a bijection on 32-bit integers with mix32(0) = 0. */
function mix32(value: number): number {
  let z = value | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Uniform integer in [0, bound), without modulo bias. `bound` must be in [1, 2^32]. */
export function randomIntBelow(prng: Prng, bound: number): number {
  if (!Number.isInteger(bound) || bound < 1 || bound > 0x1_0000_0000) {
    throw new RangeError(`bound must be an integer in [1, 2^32], got ${bound}`);
  }
  // Reject the top sliver of the range that would bias small values.
  const limit = 0x1_0000_0000 - (0x1_0000_0000 % bound);
  for (;;) {
    const value = prng.nextUint32();
    if (value < limit) return value % bound;
  }
}
