/**
 * Proof that the checkers have teeth: each deliberately broken core (switched on through the
 * test-only `testOnlyBugs` option) is caught by a sweep of at most 1,000 seeds, and the seed that
 * catches it passes with the bug switched off — so the verdict is about the bug, not the simulator.
 */
import { describe, expect, it } from 'vitest';
import { NO_FAULTS, simulate, type SimulationOptions } from '../../sim/index.js';
import type { InjectedBug } from '../../src/raft/index.js';
import type { OrchestratorBug } from '../../src/maintenance/index.js';

const MAX_SEEDS = 1_000;

interface Case {
  readonly bug: InjectedBug;
  /** Why this sweep configuration. */
  readonly why: string;
  readonly options: Omit<SimulationOptions, 'seed'>;
}

const CASES: readonly Case[] = [
  {
    bug: 'CommitPreviousTermByCounting',
    why: 'one entry per AppendEntries, so an old-term entry can be acknowledged before the new leader’s no-op',
    options: { nodeCount: 5, faultPhaseMs: 5_000, raft: { maxEntriesPerMessage: 1 } },
  },
  { bug: 'VoteWithoutUpToDateCheck', why: 'the default 5-node swarm', options: { nodeCount: 5, faultPhaseMs: 5_000 } },
  { bug: 'ReplyBeforePersistingVote', why: 'the default 5-node swarm', options: { nodeCount: 5, faultPhaseMs: 5_000 } },
  { bug: 'SkipConflictTruncation', why: 'the default 5-node swarm', options: { nodeCount: 5, faultPhaseMs: 5_000 } },
  {
    bug: 'ReadWithoutLeadershipCheck',
    why: 'leaders paused for up to 3 s, the scenario where a deposed leader serves stale reads',
    options: {
      nodeCount: 5,
      faultPhaseMs: 5_000,
      faults: { ...NO_FAULTS, delayMinMs: 1, delayMaxMs: 10, pauseEveryMs: 1_000, pauseMaxMs: 3_000, leaderTargetPerMille: 1_000 },
    },
  },
  {
    bug: 'ReadLeaseTooLong',
    why: 'lease-based reads while leaders are paused or cut off, so a new leader commits writes inside the old leader’s lease',
    options: {
      nodeCount: 5,
      faultPhaseMs: 5_000,
      leaseReads: true,
      faults: { ...NO_FAULTS, delayMinMs: 1, delayMaxMs: 10, pauseEveryMs: 1_000, pauseMaxMs: 3_000, partitionEveryMs: 1_500, partitionMaxMs: 2_000, leaderTargetPerMille: 1_000 },
    },
  },
];

describe('the lock checkers catch a deliberately broken lessor', () => {
  const cases: readonly { readonly name: string; readonly what: string; readonly bug: Partial<SimulationOptions> }[] = [
    { name: 'lessor expiring early', what: 'a lessor that counts only half of each TTL', bug: { testOnlyLessorExpiresEarly: true } },
    { name: 'renewal without countdown', what: "a leader-local renewal answered without restarting the leader's countdown", bug: { testOnlyRenewalBug: 'WithoutCountdown' } },
  ];
  for (const { name, what, bug } of cases) {
    it(`finds ${what} within ${MAX_SEEDS} seeds`, async () => {
      const options: Omit<SimulationOptions, 'seed'> = { nodeCount: 5, workload: 'lock', faultPhaseMs: 5_000 };
      let found: { seed: number; property: string } | null = null;
      for (let seed = 1; seed <= MAX_SEEDS && found === null; seed++) {
        const result = await simulate({ ...options, ...bug, seed });
        if (result.violation !== null) found = { seed, property: result.violation.property };
      }
      expect(found, `${what} was not detected in ${MAX_SEEDS} seeds`).not.toBeNull();
      if (found === null) return;
      console.log(`${name}: found by seed ${found.seed}, property ${found.property}`);
      expect(found.property).toBe('LeaseExclusion');
      const control = await simulate({ ...options, seed: found.seed });
      expect(control.violation, `seed ${found.seed} also fails without the bug`).toBeNull();
    }, 300_000);
  }
});

describe('the maintenance checkers catch a deliberately broken orchestrator', () => {
  const cases: readonly { readonly bug: OrchestratorBug; readonly property: string }[] = [
    { bug: 'RunSettledOccurrences', property: 'MaintenanceOnce' },
    { bug: 'IgnoreLeaseLoss', property: 'MaintenanceExclusion' },
    { bug: 'ForgetCheckpoint', property: 'MaintenanceResume' },
  ];
  for (const { bug, property } of cases) {
    it(`finds ${bug} within ${MAX_SEEDS} seeds (${property})`, async () => {
      const options: Omit<SimulationOptions, 'seed'> = { nodeCount: 5, workload: 'maintenance' };
      let found: { seed: number; property: string } | null = null;
      for (let seed = 1; seed <= MAX_SEEDS && found === null; seed++) {
        const result = await simulate({ ...options, seed, testOnlyOrchestratorBug: bug });
        if (result.violation !== null) found = { seed, property: result.violation.property };
      }
      expect(found, `${bug} was not detected in ${MAX_SEEDS} seeds`).not.toBeNull();
      if (found === null) return;
      console.log(`${bug}: found by seed ${found.seed}, property ${found.property}`);
      expect(found.property).toBe(property);
      const control = await simulate({ ...options, seed: found.seed });
      expect(control.violation, `seed ${found.seed} also fails with the correct orchestrator`).toBeNull();
    }, 300_000);
  }
});

describe('the simulator catches deliberately broken cores', () => {
  for (const { bug, why, options } of CASES) {
    it(`finds ${bug} within ${MAX_SEEDS} seeds (${why})`, async () => {
      let found: { seed: number; property: string } | null = null;
      for (let seed = 1; seed <= MAX_SEEDS && found === null; seed++) {
        const result = await simulate({ ...options, seed, raft: { ...options.raft, testOnlyBugs: [bug] } });
        if (result.violation !== null) found = { seed, property: result.violation.property };
      }
      expect(found, `${bug} was not detected in ${MAX_SEEDS} seeds`).not.toBeNull();
      if (found === null) return;
      console.log(`${bug}: found by seed ${found.seed} (${found.seed} seeds swept), property ${found.property}`);
      const control = await simulate({ ...options, seed: found.seed });
      expect(control.violation, `seed ${found.seed} also fails without ${bug}`).toBeNull();
    }, 300_000);
  }
});
