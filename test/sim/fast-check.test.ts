import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runSimulationCommands, simulationCommands } from '../../sim/fast-check.js';

describe('fault schedules as fast-check commands', () => {
  it('the real core keeps every property under generated fault schedules', async () => {
    await fc.assert(
      fc.asyncProperty(simulationCommands({ nodeCount: 3, maxCommands: 25 }), async (commands) => {
        const result = await runSimulationCommands({ seed: 11, nodeCount: 3 }, commands);
        expect(result.violation).toBeNull();
      }),
      { seed: 20261120, numRuns: 25 },
    );
  }, 120_000);

  it('a broken core fails, and the failing schedule shrinks to a few commands', async () => {
    const outcome = await fc.check(
      fc.asyncProperty(simulationCommands({ nodeCount: 3, maxCommands: 40 }), async (commands) => {
        const result = await runSimulationCommands({ seed: 11, nodeCount: 3, raft: { testOnlyBugs: ['ReplyBeforePersistingVote'] } }, commands);
        if (!result.ok) throw new Error(result.violation?.message);
      }),
      { seed: 20261120, numRuns: 100 },
    );
    expect(outcome.failed).toBe(true);
    const counterexample = outcome.counterexample?.[0];
    expect(counterexample).toBeDefined();
    // The shrunk schedule is short: a handful of commands, printable for a bug report.
    expect(fc.stringify(counterexample).split(',').length).toBeLessThanOrEqual(6);
  }, 120_000);
});
