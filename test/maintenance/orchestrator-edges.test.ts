/**
 * Edge cases of the maintenance orchestrator found in review: stop() racing a competition, lock TTLs
 * the lease table cannot grant, renewal timing for short validities, jobs that outlive their TTL,
 * take-overs counted as lost leases, jobs rejecting with null, and a release racing a renewal.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/index.js';
import type { LeaseNode } from '../../src/lease/index.js';
import type { JobContext, MaintenanceOrchestrator } from '../../src/maintenance/index.js';
import { advance, advanceToWall, advanceUntil, gate, sleep, startMaintenanceCluster, stopMaintenanceCluster, waitForGate, watch, type Id, type MaintenanceCluster, IDS } from './support.js';

let cluster: MaintenanceCluster | undefined;
const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  const c = cluster;
  cluster = undefined;
  if (c !== undefined) await stopMaintenanceCluster(c);
});

const KEY = 'compaction';
const INTERVAL_MS = 60_000;
const FIRST_MS = Date.UTC(2026, 0, 1, 0, 1, 0);

function orchestrator(c: MaintenanceCluster, id: Id): MaintenanceOrchestrator {
  const found = c.orchestrators.get(id);
  if (found === undefined) throw new Error(`no orchestrator on ${id}`);
  return found;
}

function node(c: MaintenanceCluster, id: Id): LeaseNode {
  const found = c.nodes.get(id);
  if (found === undefined) throw new Error(`no node ${id}`);
  return found;
}

function hasCheckpoint(current: { readonly checkpoint: Uint8Array | null } | null | undefined): boolean {
  return current !== undefined && current !== null && current.checkpoint !== null;
}

async function metricTotal(c: MaintenanceCluster, metric: 'runs' | 'leasesLost', node: Id, result?: string): Promise<number> {
  const { values } = await c.metrics[metric].get();
  const labelled = values as readonly { readonly labels: Readonly<Record<string, string | number | undefined>>; readonly value: number }[];
  return labelled.filter((value) => value.labels.node === node && (result === undefined || value.labels.result === result)).reduce((sum, value) => sum + value.value, 0);
}

describe('stop() racing a competition', () => {
  it('a competition under way when stop() is called gives the lock back instead of starting the job, and stop() waits for it', async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n2'] }));
    const o = orchestrator(c, 'n2');
    const starts: number[] = [];
    o.register({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      lockTtlMs: 10_000,
      run: async (context) => {
        starts.push(c.clock.nowMs());
        await sleep(c, 5_000, context.signal);
      },
    });
    // stop() is called while the lock request is in flight (as a SIGTERM handler would).
    const n2 = node(c, 'n2');
    const tryAcquire = n2.tryAcquire.bind(n2);
    let stopping: ReturnType<typeof watch<void>> | undefined;
    n2.tryAcquire = (key, options) => {
      const answer = tryAcquire(key, options);
      stopping ??= watch(o.stop());
      return answer;
    };
    o.start();
    await advanceUntil(c, () => stopping?.outcome() !== undefined, 20_000, 1);
    expect(stopping?.outcome()).toMatchObject({ ok: true });
    await advance(c, 6_000);
    expect(starts, 'no job may start once stop() was called').toEqual([]);
    // The lock was given back at once, not left to its 10 s TTL.
    for (const id of IDS) expect(node(c, id).table.get(KEY)).toBeUndefined();
  });
});

describe('lock TTLs the lease table cannot grant', () => {
  it('refuses at registration a lock TTL over one day (the longest lease), also when it comes from windowMs', async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n1'] }));
    const register = (lockTtlMs?: number): unknown =>
      orchestrator(c, 'n1').register({
        id: `backup-${lockTtlMs ?? 'default'}`,
        cron: '0 3 * * 0',
        windowMs: 2 * 24 * 3_600_000,
        estimatedDurationMs: 60_000,
        ...(lockTtlMs === undefined ? {} : { lockTtlMs }),
        run: async () => {},
      });
    expect(() => register()).toThrow(ConfigError);
    expect(() => register()).toThrow(/lock TTL 172800000 ms is longer than the longest lease \(86400000 ms, one day\)/);
    expect(() => register(24 * 3_600_000 + 1)).toThrow(/longer than the longest lease/);
    expect(register(24 * 3_600_000)).toMatchObject({ lockTtlMs: 24 * 3_600_000 });
  });
});

describe('renewals', () => {
  it('renew at a third of the validity, so a TTL barely above the lease margin still carries a job past its first renewal', async () => {
    // The test cluster's lease margin is 100 ms: a 150 ms TTL leaves about 50 ms of validity, less
    // than a third of the TTL (the former renewal interval).
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n2'] }));
    const outcomes: string[] = [];
    orchestrator(c, 'n2').register({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 100,
      safetyMarginMs: 50,
      lockTtlMs: 150,
      run: async (context) => {
        await sleep(c, 120, context.signal);
        outcomes.push(`attempt ${context.attempt} ok`);
      },
    });
    orchestrator(c, 'n2').start();
    await advanceToWall(c, FIRST_MS + 3_000);
    expect(outcomes).toEqual(['attempt 1 ok']);
    expect(node(c, 'n1').table.maintenanceRecord(KEY)?.history).toMatchObject([{ occurrenceMs: FIRST_MS, result: 'ok', attempts: 1 }]);
  });

  it('a job running for several TTLs keeps its lease and finishes ok, once, with no other node running it', async () => {
    const c = (cluster = await startMaintenanceCluster());
    const starts: Id[] = [];
    for (const id of IDS) {
      orchestrator(c, id).register({
        id: KEY,
        intervalMs: INTERVAL_MS,
        windowMs: 40_000,
        estimatedDurationMs: 1_000,
        safetyMarginMs: 1_000,
        lockTtlMs: 2_000,
        run: async (context) => {
          starts.push(id);
          // Five TTLs: without renewals the lease runs out and another node takes over.
          await sleep(c, 10_000, context.signal);
        },
      });
      orchestrator(c, id).start();
    }
    await advanceToWall(c, FIRST_MS + 15_000);
    expect(starts).toHaveLength(1);
    expect(node(c, 'n1').table.maintenanceRecord(KEY)?.history).toMatchObject([{ occurrenceMs: FIRST_MS, result: 'ok', attempts: 1 }]);
    for (const id of IDS) expect(await metricTotal(c, 'leasesLost', id)).toBe(0);
  });
});

describe('outcomes', () => {
  it('a job that rejects with null is recorded as an error, not ok', async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n1'] }));
    orchestrator(c, 'n1').register({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 1_000,
      safetyMarginMs: 1_000,
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- what a careless job does
      run: () => Promise.reject(null),
    });
    orchestrator(c, 'n1').start();
    await advanceToWall(c, FIRST_MS + 5_000);
    expect(node(c, 'n1').table.maintenanceRecord(KEY)?.history).toMatchObject([{ occurrenceMs: FIRST_MS, result: 'error', error: 'null' }]);
    expect(await metricTotal(c, 'runs', 'n1', 'error')).toBe(1);
    expect(await metricTotal(c, 'runs', 'n1', 'ok')).toBe(0);
  });

  it('a run fenced out by a take-over (its checkpoint refused) counts in leases_lost_total', async () => {
    const c = (cluster = await startMaintenanceCluster({ skewMs: { n2: 2_000 } }));
    const starts: { node: Id; context: JobContext }[] = [];
    const proceed = gate();
    cleanups.push(() => {
      proceed.open();
    });
    for (const id of IDS) {
      orchestrator(c, id).register({
        id: KEY,
        intervalMs: INTERVAL_MS,
        windowMs: 40_000,
        estimatedDurationMs: 3_000,
        safetyMarginMs: 1_000,
        lockTtlMs: 30_000,
        run: async (context) => {
          starts.push({ node: id, context });
          if (context.attempt === 1) {
            await context.checkpoint({ step: 1 });
            // Waits past the take-over without looking at its signal, then checkpoints again.
            await waitForGate(proceed, new AbortController().signal);
            await context.checkpoint({ step: 2 });
            return;
          }
          await sleep(c, 3_000, context.signal);
        },
      });
      orchestrator(c, id).start();
    }
    await advanceUntil(c, () => hasCheckpoint(node(c, 'n1').table.maintenanceRecord(KEY)?.current), 20_000);
    const first = starts[0];
    if (first === undefined) throw new Error('no first runner');
    expect(first.node).toBe('n2');
    // An operator frees the lock: another node takes the occurrence over under a higher token.
    const released = watch(node(c, 'n1').release(KEY, { fencingToken: first.context.fencingToken, owner: 'n2' }));
    await advanceUntil(c, () => released.outcome() !== undefined && starts.length === 2, 5_000);
    proceed.open();
    await advance(c, 2_000);
    expect(first.context.signal.reason).toMatchObject({ code: 'LeaseLost' });
    expect(await metricTotal(c, 'runs', 'n2', 'aborted')).toBe(1);
    expect(await metricTotal(c, 'leasesLost', 'n2')).toBe(1);
  });
});

describe('a release racing a renewal', () => {
  it('waits for the renewal in flight, so the key is freed when the run ends instead of staying held for a TTL', async () => {
    const c = (cluster = await startMaintenanceCluster({ skewMs: { n2: 2_000 } }));
    // 5 ms one way on every message: renewals from a follower take long enough to overlap the end.
    const network = c.network as unknown as { deliver: (message: unknown) => void };
    const deliver = network.deliver.bind(c.network);
    network.deliver = (message) => {
      c.clock.setTimer(5, () => {
        deliver(message);
      });
    };
    const renewalsSent: number[] = [];
    const n2 = node(c, 'n2');
    const submitRenewal = n2.submitRenewal.bind(n2);
    n2.submitRenewal = (command) => {
      renewalsSent.push(c.clock.nowMs());
      return submitRenewal(command);
    };
    const ended = { atMs: null as number | null };
    for (const id of IDS) {
      orchestrator(c, id).register({
        id: KEY,
        intervalMs: INTERVAL_MS,
        windowMs: 40_000,
        estimatedDurationMs: 1_000,
        safetyMarginMs: 1_000,
        lockTtlMs: 3_000,
        // Ends just after the renewal sent at a third of the validity (about 966 ms): it is in flight.
        run: async (context) => {
          await sleep(c, 985, context.signal);
          ended.atMs = c.clock.nowMs();
        },
      });
      orchestrator(c, id).start();
    }
    await advanceUntil(c, () => (node(c, 'n1').table.maintenanceRecord(KEY)?.history.length ?? 0) === 1, 20_000);
    const endedAtMs = ended.atMs;
    if (endedAtMs === null) throw new Error('the job did not end');
    const lastRenewal = renewalsSent.at(-1) ?? -Infinity;
    expect(lastRenewal, 'the scenario needs a renewal sent shortly before the run ended').toBeGreaterThan(endedAtMs - 50);
    // Freed within a few network round trips of the finish, far below the 3 s TTL.
    await advanceUntil(c, () => IDS.every((id) => node(c, id).table.get(KEY) === undefined), 300);
    expect(node(c, 'n1').table.maintenanceRecord(KEY)?.history).toMatchObject([{ occurrenceMs: FIRST_MS, result: 'ok' }]);
  });
});
