/**
 * The maintenance orchestrator on a three-node lease cluster in virtual time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/index.js';
import type { JobContext } from '../../src/maintenance/index.js';
import {
  DEBUG,
  advanceToWall,
  sleep,
  startMaintenanceCluster,
  stopMaintenanceCluster,
  type Id,
  type MaintenanceCluster,
} from './support.js';

let cluster: MaintenanceCluster | undefined;

afterEach(async () => {
  const c = cluster;
  cluster = undefined;
  if (c === undefined) return;
  await stopMaintenanceCluster(c);
  expect(c.fatalErrors).toEqual([]);
});

const INTERVAL_MS = 60_000;
/** The first occurrence after the cluster starts: 2026-01-01T00:01:00Z. */
const FIRST_OCCURRENCE_MS = Date.UTC(2026, 0, 1, 0, 1, 0);

describe('two orchestrators, one occurrence', () => {
  it('runs the job exactly once and the other node logs exactly one DEBUG skip line', async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n1', 'n2'] }));
    const runs: { node: Id; context: JobContext }[] = [];
    for (const id of ['n1', 'n2'] as const) {
      const orchestrator = c.orchestrators.get(id);
      orchestrator?.register({
        id: 'compaction',
        intervalMs: INTERVAL_MS,
        windowMs: 40_000,
        estimatedDurationMs: 5_000,
        run: async (context) => {
          runs.push({ node: id, context });
          await sleep(c, 2_000, context.signal);
        },
      });
      orchestrator?.start();
    }
    await advanceToWall(c, FIRST_OCCURRENCE_MS + 10_000);

    expect(runs).toHaveLength(1);
    const winner = runs[0]?.node;
    const loser: Id = winner === 'n1' ? 'n2' : 'n1';
    expect(runs[0]?.context.occurrenceMs).toBe(FIRST_OCCURRENCE_MS);
    const skips = (c.logs.get(loser) ?? []).filter((record) => record.msg.startsWith('schedule compaction skipped'));
    expect(skips).toHaveLength(1);
    expect(skips[0]).toMatchObject({
      level: DEBUG,
      msg: `schedule compaction skipped — lock held by peer ${winner}`,
      scheduleId: 'compaction',
      holder: winner,
      occurrence: new Date(FIRST_OCCURRENCE_MS).toISOString(),
      occurrenceMs: FIRST_OCCURRENCE_MS,
    });
    expect((c.logs.get(winner ?? 'n1') ?? []).filter((record) => record.msg.includes('skipped'))).toEqual([]);
    // The finish is replicated: every node's table settles the occurrence as ok, run by the winner.
    for (const node of c.nodes.values()) {
      const record = node.table.maintenanceRecord('compaction');
      expect(record?.settledThroughMs).toBe(FIRST_OCCURRENCE_MS);
      expect(record?.history.map((outcome) => [outcome.occurrenceMs, outcome.result, outcome.owner])).toEqual([[FIRST_OCCURRENCE_MS, 'ok', winner]]);
    }
    const metrics = await c.registry.getSingleMetricAsString('raftlease_maintenance_runs_total');
    expect(metrics).toContain(`raftlease_maintenance_runs_total{node="${winner}",schedule="compaction",result="ok"} 1`);
    expect(metrics).toContain(`raftlease_maintenance_runs_total{node="${loser}",schedule="compaction",result="skipped_lock_held"} 1`);
  });
});

describe('registration', () => {
  it('refuses a lock TTL below the estimated duration plus the safety margin, naming the schedule and both numbers', async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n1'] }));
    const orchestrator = c.orchestrators.get('n1');
    let caught: unknown;
    try {
      orchestrator?.register({ id: 'backup', intervalMs: INTERVAL_MS, windowMs: 40_000, estimatedDurationMs: 20_000, lockTtlMs: 45_000, run: async () => {} });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).field).toBe('lockTtlMs');
    expect((caught as Error).message).toContain("'backup'");
    expect((caught as Error).message).toContain('45000');
    expect((caught as Error).message).toContain('20000');
    expect((caught as Error).message).toContain('30000');
  });

  it('refuses a duplicate schedule id', async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n1'] }));
    const orchestrator = c.orchestrators.get('n1');
    const options = { id: 'backup', intervalMs: INTERVAL_MS, windowMs: 40_000, estimatedDurationMs: 5_000, run: async () => {} };
    orchestrator?.register(options);
    expect(() => orchestrator?.register(options)).toThrow(/already registered/);
  });
});
