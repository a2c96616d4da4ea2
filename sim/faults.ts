/**
 * The fault model and swarm testing: each seed decides which kinds of fault are on at all and at
 * what rate, so different seeds stress very different mixes.
 *
 * Probabilities are integer ratios (per mille or per million) and times integer milliseconds: no
 * floating point enters a random decision, so a seed replays identically everywhere.
 *
 * @module
 */
import { randomIntBelow, type Prng } from '../src/raft/index.js';

/** Every fault knob of one simulation. Zero turns a kind of fault off. */
export interface FaultConfig {
  /** Chance that a message is lost, per mille. */
  readonly dropPerMille: number;
  /** Chance that a message is delivered twice, per mille. */
  readonly duplicatePerMille: number;
  /** One-way network delay is uniform in [delayMinMs, delayMaxMs]... */
  readonly delayMinMs: number;
  readonly delayMaxMs: number;
  /** ...except for this share of messages (per mille), delayed up to `longDelayMaxMs` (reordering). */
  readonly longDelayPerMille: number;
  readonly longDelayMaxMs: number;
  /** Mean milliseconds between partition events (0: never). */
  readonly partitionEveryMs: number;
  /** Share of partitions that are one-way (per mille); the rest cut both directions. */
  readonly oneWayPartitionPerMille: number;
  /** A partition heals after up to this long. */
  readonly partitionMaxMs: number;
  /** Mean milliseconds between crashes (0: never). */
  readonly crashEveryMs: number;
  /** A crashed node restarts after up to this long. */
  readonly downMaxMs: number;
  /** Mean milliseconds between process pauses (0: never). */
  readonly pauseEveryMs: number;
  /** A pause lasts up to this long. */
  readonly pauseMaxMs: number;
  /** Mean milliseconds between forward clock jumps (0: never). */
  readonly clockJumpEveryMs: number;
  /** A clock jumps forward by up to this much. */
  readonly clockJumpMaxMs: number;
  /** Each node's clock starts offset from true time by up to this much (either way). */
  readonly clockOffsetMaxMs: number;
  /** Each node's clock runs fast or slow by up to this many parts per million. */
  readonly driftMaxPpm: number;
  /** Disk writes complete after a latency uniform in [diskLatencyMinMs, diskLatencyMaxMs]. */
  readonly diskLatencyMinMs: number;
  readonly diskLatencyMaxMs: number;
  /** When a crash interrupts a write: chance (per mille) that a prefix of it survives (torn write). */
  readonly tornWritePerMille: number;
  /**
   * Chance (per mille) that a crash, pause or partition picks the current leader rather than a random
   * node: leader failures are where Raft's subtle cases live (Figure 8).
   */
  readonly leaderTargetPerMille: number;
  /** Mean milliseconds between leadership transfers the leader is asked to make (0: never). */
  readonly transferEveryMs: number;
}

/** No faults at all: a fast, reliable network and disk, perfect clocks. */
export const NO_FAULTS: FaultConfig = Object.freeze({
  dropPerMille: 0,
  duplicatePerMille: 0,
  delayMinMs: 1,
  delayMaxMs: 2,
  longDelayPerMille: 0,
  longDelayMaxMs: 0,
  partitionEveryMs: 0,
  oneWayPartitionPerMille: 0,
  partitionMaxMs: 0,
  crashEveryMs: 0,
  downMaxMs: 0,
  pauseEveryMs: 0,
  pauseMaxMs: 0,
  clockJumpEveryMs: 0,
  clockJumpMaxMs: 0,
  clockOffsetMaxMs: 0,
  driftMaxPpm: 0,
  diskLatencyMinMs: 0,
  diskLatencyMaxMs: 1,
  tornWritePerMille: 0,
  leaderTargetPerMille: 0,
  transferEveryMs: 0,
});

/** Bounds of the swarm: what any seed may draw. */
export interface SwarmBounds {
  /** The configured maximum drift rate ρ, in parts per million. */
  readonly maxDriftPpm: number;
}

/**
 * Draws a fault configuration from the seed's PRNG: each kind of fault is switched on with
 * probability 1/2, and the rates of the ones that are on vary widely.
 */
export function swarmFaults(prng: Prng, bounds: SwarmBounds): FaultConfig {
  const on = (): boolean => randomIntBelow(prng, 2) === 1;
  const between = (min: number, max: number): number => min + randomIntBelow(prng, max - min + 1);
  const delayMinMs = between(0, 5);
  return {
    dropPerMille: on() ? between(1, 300) : 0,
    duplicatePerMille: on() ? between(1, 200) : 0,
    delayMinMs,
    delayMaxMs: delayMinMs + between(1, 30),
    longDelayPerMille: on() ? between(1, 100) : 0,
    longDelayMaxMs: between(50, 2_000),
    partitionEveryMs: on() ? between(500, 10_000) : 0,
    oneWayPartitionPerMille: between(0, 1000),
    partitionMaxMs: between(100, 5_000),
    crashEveryMs: on() ? between(1_000, 15_000) : 0,
    downMaxMs: between(10, 5_000),
    pauseEveryMs: on() ? between(1_000, 15_000) : 0,
    pauseMaxMs: between(10, 3_000),
    clockJumpEveryMs: on() ? between(1_000, 20_000) : 0,
    clockJumpMaxMs: between(1, 2_000),
    clockOffsetMaxMs: on() ? between(1, 60_000) : 0,
    driftMaxPpm: on() ? between(1, bounds.maxDriftPpm) : 0,
    diskLatencyMinMs: 0,
    diskLatencyMaxMs: between(1, 20),
    tornWritePerMille: on() ? between(1, 1000) : 0,
    leaderTargetPerMille: on() ? between(1, 1000) : 0,
    transferEveryMs: on() ? between(500, 10_000) : 0,
  };
}

/** Names of the fault kinds switched on, for reports. */
export function enabledFaults(config: FaultConfig): string[] {
  const kinds: [string, boolean][] = [
    ['drop', config.dropPerMille > 0],
    ['duplicate', config.duplicatePerMille > 0],
    ['reorder', config.longDelayPerMille > 0],
    ['partition', config.partitionEveryMs > 0],
    ['crash', config.crashEveryMs > 0],
    ['pause', config.pauseEveryMs > 0],
    ['clock-jump', config.clockJumpEveryMs > 0],
    ['clock-offset', config.clockOffsetMaxMs > 0],
    ['drift', config.driftMaxPpm > 0],
    ['torn-write', config.tornWritePerMille > 0],
    ['transfer', config.transferEveryMs > 0],
  ];
  return kinds.filter(([, enabled]) => enabled).map(([name]) => name);
}
