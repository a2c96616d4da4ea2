/**
 * The maintenance orchestrator's behaviour on a three-node lease cluster in virtual time: crashed
 * runners and resumption from checkpoints, missed occurrences, fencing of stale runners, settled
 * occurrences, failures, misfires, skewed clocks, the concurrency bound, checkpoint size, stop(),
 * list() and the Prometheus metrics.
 */
import { Unpackr } from 'msgpackr';
import { afterEach, describe, expect, it } from 'vitest';
import { RaftLeaseError, nodeId } from '../../src/index.js';
import type { MaintenanceRecord } from '../../src/lease/index.js';
import type { JobContext, MaintenanceOrchestrator, MaintenanceScheduleOptions, RunResult } from '../../src/maintenance/index.js';
import {
  DEBUG,
  EPOCH_MS,
  IDS,
  advance,
  advanceToWall,
  advanceUntil,
  crashNode,
  findSamples,
  gate,
  parsePrometheusText,
  restartNode,
  sleep,
  startMaintenanceCluster,
  startOrchestrator,
  stopMaintenanceCluster,
  waitForGate,
  watch,
  type Id,
  type MaintenanceCluster,
} from './support.js';

let cluster: MaintenanceCluster | undefined;
/** Run before the cluster stops: opens gates that jobs ignoring their signal wait on, so none is left hanging. */
const cleanups: (() => void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  const c = cluster;
  cluster = undefined;
  if (c === undefined) return;
  await stopMaintenanceCluster(c);
  expect(c.fatalErrors).toEqual([]);
});

const KEY = 'compaction';
const INTERVAL_MS = 60_000;
/** The first occurrence after the cluster starts: 2026-01-01T00:01:00Z, 10 s of virtual time in. */
const FIRST_MS = Date.UTC(2026, 0, 1, 0, 1, 0);
const SECOND_MS = FIRST_MS + INTERVAL_MS;

const unpackr = new Unpackr({ useRecords: false });

/** What a job saw when it started. */
interface Started {
  readonly node: Id;
  readonly occurrenceMs: number;
  readonly attempt: number;
  readonly lastCheckpoint: unknown;
  readonly fencingToken: number;
  readonly atMs: number;
  readonly context: JobContext;
}

function started(c: MaintenanceCluster, node: Id, context: JobContext): Started {
  return { node, occurrenceMs: context.occurrenceMs, attempt: context.attempt, lastCheckpoint: context.lastCheckpoint, fencingToken: context.fencingToken, atMs: c.clock.nowMs(), context };
}

function orchestrator(c: MaintenanceCluster, id: Id): MaintenanceOrchestrator {
  const found = c.orchestrators.get(id);
  if (found === undefined) throw new Error(`no orchestrator on ${id}`);
  return found;
}

/** Registers the schedule `options(id)` on the orchestrators of `ids` and starts them. */
function registerOn(c: MaintenanceCluster, ids: readonly Id[], options: (id: Id) => MaintenanceScheduleOptions): void {
  for (const id of ids) {
    const target = orchestrator(c, id);
    target.register(options(id));
    target.start();
  }
}

function recordOn(c: MaintenanceCluster, id: Id, key = KEY): MaintenanceRecord | undefined {
  return c.nodes.get(id)?.table.maintenanceRecord(key);
}

/** A node's replicated history of `key` as [occurrence, result, owner, attempts]. */
function historyOn(c: MaintenanceCluster, id: Id, key = KEY): [number, string, string | null, number][] {
  return (recordOn(c, id, key)?.history ?? []).map((outcome) => [outcome.occurrenceMs, outcome.result, outcome.owner, outcome.attempts]);
}

function decodeCheckpoint(data: Uint8Array | null | undefined): unknown {
  return data == null ? undefined : (unpackr.unpack(data) as unknown);
}

function stepOf(progress: unknown): number {
  return typeof progress === 'object' && progress !== null && 'step' in progress && typeof progress.step === 'number' ? progress.step : 0;
}

/**
 * Registers on every node a job that works `steps` steps of 1 s, checkpointing `{ step }` after each,
 * and resuming after the last accepted one; returns what the runs did.
 */
function registerCheckpointingJob(
  c: MaintenanceCluster,
  options: { readonly steps: number; readonly lockTtlMs: number },
): { readonly starts: Started[]; readonly accepted: { node: Id; step: number }[]; readonly finished: Id[] } {
  const starts: Started[] = [];
  const accepted: { node: Id; step: number }[] = [];
  const finished: Id[] = [];
  registerOn(c, IDS, (id) => ({
    id: KEY,
    intervalMs: INTERVAL_MS,
    windowMs: 40_000,
    estimatedDurationMs: 3_000,
    safetyMarginMs: 1_000,
    lockTtlMs: options.lockTtlMs,
    run: async (context) => {
      starts.push(started(c, id, context));
      for (let step = stepOf(context.lastCheckpoint) + 1; step <= options.steps; step++) {
        await sleep(c, 1_000, context.signal);
        await context.checkpoint({ step });
        accepted.push({ node: id, step });
      }
      finished.push(id);
    },
  }));
  return { starts, accepted, finished };
}

/** `raftlease_maintenance_runs_total` of `schedule`, summed over the nodes given (default: all). */
async function runsCounted(c: MaintenanceCluster, result: RunResult, nodes: readonly Id[] = IDS, schedule = KEY): Promise<number> {
  const { values } = await c.metrics.runs.get();
  return values
    .filter((value) => value.labels.schedule === schedule && value.labels.result === result && nodes.some((id) => value.labels.node === id))
    .reduce((sum, value) => sum + value.value, 0);
}

function logsOf(c: MaintenanceCluster, id: Id, message: string): { readonly level: number; readonly msg: string; readonly [field: string]: unknown }[] {
  return (c.logs.get(id) ?? []).filter((record) => record.msg === message);
}

function settleEverywhere(c: MaintenanceCluster, ids: readonly Id[], predicate: (id: Id) => boolean, maxMs = 2_000): Promise<void> {
  return advanceUntil(c, () => ids.every(predicate), maxMs);
}

describe('a crashed runner', () => {
  it('is resumed by another node after its lease expires: attempt 2, from the last accepted checkpoint, under a higher token, finished ok once', async () => {
    // n2's wall clock is 2 s ahead, so it competes first and runs the occurrence.
    const c = (cluster = await startMaintenanceCluster({ skewMs: { n2: 2_000 } }));
    const { starts, accepted, finished } = registerCheckpointingJob(c, { steps: 6, lockTtlMs: 5_000 });

    await advanceUntil(c, () => accepted.some((entry) => entry.node === 'n2' && entry.step === 3), 20_000);
    expect(starts).toMatchObject([{ node: 'n2', occurrenceMs: FIRST_MS, attempt: 1, lastCheckpoint: undefined }]);
    // Between two checkpoints (the job sleeps): step 3 is the last one the cluster accepted.
    await crashNode(c, 'n2');
    const crashedAtMs = c.clock.nowMs();
    await advanceUntil(c, () => finished.length > 0, 30_000);
    // The window closes and more time passes: nobody runs the occurrence again.
    await advanceToWall(c, FIRST_MS + 45_000);

    expect(starts).toHaveLength(2);
    const [first, resumed] = starts;
    if (first === undefined || resumed === undefined) throw new Error('unreachable');
    expect(resumed.node).not.toBe('n2');
    expect(resumed.atMs).toBeGreaterThan(crashedAtMs);
    expect(resumed).toMatchObject({ occurrenceMs: FIRST_MS, attempt: 2, lastCheckpoint: { step: 3 } });
    expect(resumed.fencingToken).toBeGreaterThan(first.fencingToken);
    expect(finished).toEqual([resumed.node]);
    expect(accepted).toEqual([
      { node: 'n2', step: 1 },
      { node: 'n2', step: 2 },
      { node: 'n2', step: 3 },
      { node: resumed.node, step: 4 },
      { node: resumed.node, step: 5 },
      { node: resumed.node, step: 6 },
    ]);

    // Replicated: the live nodes, and the crashed one once restarted, record one ok with 2 attempts.
    await restartNode(c, 'n2');
    await settleEverywhere(c, IDS, (id) => historyOn(c, id).length === 1, 5_000);
    for (const id of IDS) {
      expect(historyOn(c, id)).toEqual([[FIRST_MS, 'ok', resumed.node, 2]]);
      expect(recordOn(c, id)?.history[0]?.fencingToken).toBe(resumed.fencingToken);
      expect(recordOn(c, id)?.current).toBeNull();
      expect(recordOn(c, id)?.settledThroughMs).toBe(FIRST_MS);
    }
    expect(await runsCounted(c, 'ok')).toBe(1);
    expect(await runsCounted(c, 'ok', [resumed.node])).toBe(1);
    expect(logsOf(c, resumed.node, `schedule ${KEY} resuming occurrence`)).toMatchObject([{ attempt: 2, resumed: true }]);
  });

  it('is not resumed when its lease expires only after the window closed: the occurrence is recorded missed on every node, owned by the crashed runner', async () => {
    const c = (cluster = await startMaintenanceCluster({ skewMs: { n2: 2_000 } }));
    const starts: Started[] = [];
    registerOn(c, IDS, (id) => ({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 10_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      // Far longer than the window: the crashed runner's lease outlives it.
      lockTtlMs: 30_000,
      run: async (context) => {
        starts.push(started(c, id, context));
        for (let step = 1; step <= 20; step++) {
          await sleep(c, 1_000, context.signal);
          await context.checkpoint({ step });
        }
      },
    }));
    await advanceUntil(c, () => starts.length === 1, 20_000);
    const runner = starts[0];
    expect(runner).toMatchObject({ node: 'n2', occurrenceMs: FIRST_MS, attempt: 1 });
    await advance(c, 1_500);
    await crashNode(c, 'n2');

    // The window (FIRST + 10 s) closes while the dead runner's lease is still held.
    await advanceToWall(c, FIRST_MS + 12_000);
    for (const id of ['n1', 'n3'] as const) {
      expect(c.nodes.get(id)?.table.get(KEY)).toMatchObject({ owner: 'n2' });
      expect(recordOn(c, id)?.current).toMatchObject({ occurrenceMs: FIRST_MS, owner: 'n2' });
    }
    // The lease expires about 30 s after it was last renewed; then the occurrence is settled as missed.
    await advanceUntil(c, () => (['n1', 'n3'] as const).every((id) => historyOn(c, id).length === 1), 40_000);
    // Before the next occurrence: nobody resumed the closed one.
    await advanceToWall(c, SECOND_MS - 5_000);
    expect(starts).toHaveLength(1);

    await restartNode(c, 'n2');
    await settleEverywhere(c, IDS, (id) => historyOn(c, id).length === 1, 5_000);
    for (const id of IDS) {
      expect(historyOn(c, id)).toEqual([[FIRST_MS, 'missed', 'n2', 1]]);
      expect(recordOn(c, id)?.history[0]?.fencingToken).toBe(runner?.fencingToken);
      expect(recordOn(c, id)?.current).toBeNull();
      expect(recordOn(c, id)?.settledThroughMs).toBe(FIRST_MS);
    }
    expect(await runsCounted(c, 'missed')).toBe(1);
    expect(await runsCounted(c, 'ok')).toBe(0);
  });
});

describe('fencing a stale runner', () => {
  it('refuses the checkpoint of a runner whose lease was taken over, with LeaseLost, aborts its signal and keeps the stored checkpoint', async () => {
    const c = (cluster = await startMaintenanceCluster({ skewMs: { n2: 2_000 } }));
    const starts: Started[] = [];
    const proceed = gate();
    let staleCheckpoint: Promise<void> | undefined;
    const finished: Id[] = [];
    registerOn(c, IDS, (id) => ({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      // Renewals every 10 s: the first runner does not learn of the take-over from a renewal in this test.
      lockTtlMs: 30_000,
      run: async (context) => {
        starts.push(started(c, id, context));
        if (context.attempt === 1) {
          await context.checkpoint({ step: 1 });
          await waitForGate(proceed, context.signal);
          staleCheckpoint = context.checkpoint({ step: 99 });
          await staleCheckpoint;
          return;
        }
        await sleep(c, 3_000, context.signal);
        await context.checkpoint({ step: 2 });
        finished.push(id);
      },
    }));
    await advanceUntil(c, () => recordOn(c, 'n1')?.current?.checkpoint != null, 20_000);
    const first = starts[0];
    if (first === undefined) throw new Error('no first runner');
    expect(first).toMatchObject({ node: 'n2', attempt: 1 });
    const stored = recordOn(c, 'n1')?.current?.checkpoint;
    expect(decodeCheckpoint(stored)).toEqual({ step: 1 });

    // An operator frees the lock under n2's feet; another node takes the occurrence over.
    const operatorRelease = watch(c.nodes.get('n1')?.release(KEY, { fencingToken: first.fencingToken, owner: 'n2' }) ?? Promise.reject(new Error('no n1')));
    await advanceUntil(c, () => operatorRelease.outcome() !== undefined, 2_000);
    expect(operatorRelease.outcome()).toMatchObject({ ok: true });
    await advanceUntil(c, () => starts.length === 2, 5_000);
    const second = starts[1];
    if (second === undefined) throw new Error('no second runner');
    expect(second).toMatchObject({ attempt: 2, lastCheckpoint: { step: 1 } });
    expect(second.node).not.toBe('n2');
    expect(second.fencingToken).toBeGreaterThan(first.fencingToken);
    // n2 has not noticed yet: its own lease signal is still quiet.
    expect(first.context.signal.aborted).toBe(false);

    proceed.open();
    await advanceUntil(c, () => staleCheckpoint !== undefined, 1_000);
    const stale = watch(staleCheckpoint ?? Promise.resolve());
    await advanceUntil(c, () => stale.outcome() !== undefined, 5_000);
    const outcome = stale.outcome();
    expect(outcome?.ok).toBe(false);
    const error = outcome?.ok === false ? outcome.error : undefined;
    expect(error).toBeInstanceOf(RaftLeaseError);
    expect(error).toMatchObject({ code: 'LeaseLost' });
    expect(first.context.signal.aborted).toBe(true);
    expect(first.context.signal.reason).toBeInstanceOf(RaftLeaseError);
    expect(first.context.signal.reason).toMatchObject({ code: 'LeaseLost' });
    await advance(c, 200);
    for (const id of IDS) {
      const current = recordOn(c, id)?.current;
      expect(current).toMatchObject({ occurrenceMs: FIRST_MS, owner: second.node, fencingToken: second.fencingToken, attempts: 2, checkpointToken: first.fencingToken });
      expect(decodeCheckpoint(current?.checkpoint)).toEqual({ step: 1 });
    }

    await advanceUntil(c, () => finished.length === 1, 10_000);
    await settleEverywhere(c, IDS, (id) => historyOn(c, id).length === 1);
    for (const id of IDS) expect(historyOn(c, id)).toEqual([[FIRST_MS, 'ok', second.node, 2]]);
    expect(await runsCounted(c, 'ok')).toBe(1);
  });

  it('refuses with LeaseLost the checkpoint of a runner cut off from the cluster whose lease expired and was taken over', async () => {
    const c = (cluster = await startMaintenanceCluster({ skewMs: { n2: 2_000 } }));
    const starts: Started[] = [];
    const proceed = gate();
    let staleCheckpoint: Promise<void> | undefined;
    registerOn(c, IDS, (id) => ({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      lockTtlMs: 5_000,
      run: async (context) => {
        starts.push(started(c, id, context));
        if (context.attempt === 1) {
          await context.checkpoint({ step: 1 });
          // A job that ignores its signal: it only learns of the loss from its checkpoint.
          cleanups.push(proceed.open);
          await proceed.promise;
          staleCheckpoint = context.checkpoint({ step: 99 });
          await staleCheckpoint;
          return;
        }
        await sleep(c, 20_000, context.signal);
      },
    }));
    await advanceUntil(c, () => recordOn(c, 'n1')?.current?.checkpoint != null, 20_000);
    const first = starts[0];
    if (first === undefined) throw new Error('no first runner');
    expect(first.node).toBe('n2');
    c.network.isolate([nodeId('n2')], [nodeId('n1'), nodeId('n3')]);
    await advanceUntil(c, () => starts.length === 2, 15_000);
    const second = starts[1];
    expect(second).toMatchObject({ attempt: 2, lastCheckpoint: { step: 1 } });
    expect(first.context.signal.aborted).toBe(true);

    proceed.open();
    await advanceUntil(c, () => staleCheckpoint !== undefined, 1_000);
    const stale = watch(staleCheckpoint ?? Promise.resolve());
    await advanceUntil(c, () => stale.outcome() !== undefined, 1_000);
    const outcome = stale.outcome();
    expect(outcome?.ok).toBe(false);
    expect(outcome?.ok === false ? outcome.error : undefined).toMatchObject({ code: 'LeaseLost' });
    c.network.heal();
    await advance(c, 2_000);
    for (const id of IDS) {
      expect(recordOn(c, id)?.current).toMatchObject({ owner: second?.node, attempts: 2, checkpointToken: first.fencingToken });
      expect(decodeCheckpoint(recordOn(c, id)?.current?.checkpoint)).toEqual({ step: 1 });
    }
  });
  it('refuses by the run\'s token a stale checkpoint even when nobody holds the lease any more', async () => {
    // n1 serves as the operator's node only; n2 runs first, n3 takes over and then stops.
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n2', 'n3'], skewMs: { n2: 2_000 } }));
    const starts: Started[] = [];
    const proceed = gate();
    const never = gate();
    let staleCheckpoint: Promise<void> | undefined;
    registerOn(c, ['n2', 'n3'], (id) => ({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      lockTtlMs: 30_000,
      run: async (context) => {
        starts.push(started(c, id, context));
        if (context.attempt === 1) {
          await context.checkpoint({ step: 1 });
          await waitForGate(proceed, context.signal);
          staleCheckpoint = context.checkpoint({ step: 99 });
          await staleCheckpoint;
          return;
        }
        await waitForGate(never, context.signal);
      },
    }));
    await advanceUntil(c, () => recordOn(c, 'n1')?.current?.checkpoint != null, 20_000);
    const first = starts[0];
    if (first === undefined) throw new Error('no first runner');
    const operatorRelease = watch(c.nodes.get('n1')?.release(KEY, { fencingToken: first.fencingToken, owner: 'n2' }) ?? Promise.reject(new Error('no n1')));
    await advanceUntil(c, () => operatorRelease.outcome() !== undefined && starts.length === 2, 5_000);
    expect(starts[1]).toMatchObject({ node: 'n3', attempt: 2 });
    // The taker-over stops: its lease is released, the run stays n3's, and no one holds the lock.
    const stopping = watch(orchestrator(c, 'n3').stop());
    await advanceUntil(c, () => stopping.outcome() !== undefined, 2_000);
    await settleEverywhere(c, IDS, (id) => c.nodes.get(id)?.table.get(KEY) === undefined, 1_000);
    expect(first.context.signal.aborted).toBe(false);

    proceed.open();
    await advanceUntil(c, () => staleCheckpoint !== undefined, 1_000);
    const stale = watch(staleCheckpoint ?? Promise.resolve());
    await advanceUntil(c, () => stale.outcome() !== undefined, 5_000);
    const outcome = stale.outcome();
    expect(outcome?.ok).toBe(false);
    expect(outcome?.ok === false ? outcome.error : undefined).toMatchObject({ code: 'LeaseLost' });
    expect(first.context.signal.reason).toMatchObject({ code: 'LeaseLost' });
    // n2, no longer busy, takes the unfinished occurrence over itself: from the checkpoint n2's first
    // run stored, not the refused one.
    await advanceUntil(c, () => starts.length === 3, 5_000);
    expect(starts[2]).toMatchObject({ node: 'n2', attempt: 3, lastCheckpoint: { step: 1 } });
    await advance(c, 200);
    for (const id of IDS) {
      const current = recordOn(c, id)?.current;
      expect(current).toMatchObject({ owner: 'n2', fencingToken: starts[2]?.fencingToken, attempts: 3, checkpointToken: first.fencingToken });
      expect(decodeCheckpoint(current?.checkpoint)).toEqual({ step: 1 });
    }
  });
});

describe('a node whose table lags', () => {
  it('gets the lock after the winner finished, finds the occurrence settled, logs it and does not run the job', async () => {
    // n3 competes 5 s late and its table never shows the record: only the Begin can tell it.
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n1', 'n3'], skewMs: { n3: -5_000 } }));
    const lagging = c.nodes.get('n3')?.table;
    if (lagging === undefined) throw new Error('no n3');
    lagging.maintenanceRecord = () => undefined;
    const starts: Started[] = [];
    registerOn(c, ['n1', 'n3'], (id) => ({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      lockTtlMs: 10_000,
      run: async (context) => {
        starts.push(started(c, id, context));
        await sleep(c, 1_000, context.signal);
      },
    }));
    await advanceToWall(c, FIRST_MS + 12_000);

    expect(starts).toHaveLength(1);
    expect(starts[0]).toMatchObject({ node: 'n1', occurrenceMs: FIRST_MS });
    const message = `schedule ${KEY} occurrence already settled; not running it again`;
    expect(logsOf(c, 'n3', message)).toHaveLength(1);
    expect(logsOf(c, 'n3', message)[0]).toMatchObject({ level: DEBUG, scheduleId: KEY, occurrenceMs: FIRST_MS, outcome: 'ok' });
    // n3 really held the lock (it got past tryAcquire), and gave it back.
    const acquired = findSamples(parsePrometheusText(await c.registry.metrics()), 'raftlease_maintenance_lock_acquire_duration_seconds_count', { node: 'n3', schedule: KEY, acquired: 'true' });
    expect(acquired.map((sample) => sample.value)).toEqual([1]);
    for (const id of IDS) {
      expect(c.nodes.get(id)?.table.get(KEY)).toBeUndefined();
      expect(c.nodes.get(id)?.table.maintenanceRecords().find((record) => record.key === KEY)?.history.map((outcome) => [outcome.result, outcome.owner])).toEqual([['ok', 'n1']]);
    }
    expect(await runsCounted(c, 'ok', ['n3'])).toBe(0);
  });
});

describe('a failing job', () => {
  it('records error with its message in the replicated history; the next occurrence runs normally; metrics count result="error"', async () => {
    const c = (cluster = await startMaintenanceCluster());
    const starts: Started[] = [];
    registerOn(c, IDS, (id) => ({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      lockTtlMs: 10_000,
      run: async (context) => {
        starts.push(started(c, id, context));
        await sleep(c, 500, context.signal);
        if (context.occurrenceMs === FIRST_MS) throw new Error('disk full on /var/data');
      },
    }));
    await advanceToWall(c, SECOND_MS + 5_000);

    expect(starts.map((start) => start.occurrenceMs)).toEqual([FIRST_MS, SECOND_MS]);
    const [failed, next] = starts;
    for (const id of IDS) {
      const history = recordOn(c, id)?.history ?? [];
      expect(history).toHaveLength(2);
      expect(history[0]).toMatchObject({ occurrenceMs: FIRST_MS, result: 'error', owner: failed?.node, attempts: 1 });
      expect(history[0]?.error).toContain('disk full on /var/data');
      expect(history[1]).toMatchObject({ occurrenceMs: SECOND_MS, result: 'ok', owner: next?.node, attempts: 1, error: null });
    }
    expect(await runsCounted(c, 'error')).toBe(1);
    expect(await runsCounted(c, 'error', [failed?.node ?? 'n1'])).toBe(1);
    expect(await runsCounted(c, 'ok')).toBe(1);
    expect(logsOf(c, failed?.node ?? 'n1', `schedule ${KEY} job failed`)).toHaveLength(1);
  });
});

describe('misfires', () => {
  const schedule = (misfire: 'skip' | 'runOnceIfWindowOpen', onRun: (id: Id, context: JobContext) => void) => (id: Id): MaintenanceScheduleOptions => ({
    id: KEY,
    intervalMs: INTERVAL_MS,
    windowMs: 40_000,
    estimatedDurationMs: 3_000,
    safetyMarginMs: 1_000,
    lockTtlMs: 10_000,
    misfire,
    misfireThresholdMs: 5_000,
    run: (context) => {
      onRun(id, context);
      return Promise.resolve();
    },
  });

  it("with 'skip', orchestrators started after the occurrence's time plus the threshold do not run it, and it is recorded missed when its window closes", async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: [] }));
    const runs: [Id, number][] = [];
    await advanceToWall(c, FIRST_MS + 8_000);
    for (const id of IDS) startOrchestrator(c, id);
    registerOn(c, IDS, schedule('skip', (id, context) => runs.push([id, context.occurrenceMs])));
    await advanceToWall(c, FIRST_MS + 39_000);
    expect(runs).toEqual([]);
    expect(IDS.some((id) => logsOf(c, id, `schedule ${KEY} occurrence misfired; skipped by policy`).length > 0)).toBe(true);
    for (const id of IDS) expect(c.nodes.get(id)?.table.get(KEY)).toBeUndefined();

    await advanceToWall(c, FIRST_MS + 43_000);
    for (const id of IDS) expect(historyOn(c, id)).toEqual([[FIRST_MS, 'missed', null, 0]]);
    expect(await runsCounted(c, 'missed')).toBe(1);
    // The next occurrence is on time: it runs.
    await advanceToWall(c, SECOND_MS + 2_000);
    expect(runs.map(([, occurrenceMs]) => occurrenceMs)).toEqual([SECOND_MS]);
  });

  it("with 'skip', an orchestrator started within the threshold still runs the occurrence", async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: [] }));
    const runs: [Id, number][] = [];
    await advanceToWall(c, FIRST_MS + 3_000);
    startOrchestrator(c, 'n2');
    registerOn(c, ['n2'], schedule('skip', (id, context) => runs.push([id, context.occurrenceMs])));
    await advanceToWall(c, FIRST_MS + 10_000);
    expect(runs).toEqual([['n2', FIRST_MS]]);
  });

  it("with 'runOnceIfWindowOpen', orchestrators started late but inside the window run the occurrence exactly once", async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: [] }));
    const runs: [Id, number, number][] = [];
    await advanceToWall(c, FIRST_MS + 8_000);
    for (const id of IDS) startOrchestrator(c, id);
    registerOn(c, IDS, schedule('runOnceIfWindowOpen', (id, context) => runs.push([id, context.occurrenceMs, EPOCH_MS + c.clock.nowMs()])));
    await advanceToWall(c, FIRST_MS + 45_000);
    expect(runs).toHaveLength(1);
    expect(runs[0]?.[1]).toBe(FIRST_MS);
    expect(runs[0]?.[2]).toBeLessThan(FIRST_MS + 10_000);
    for (const id of IDS) expect(historyOn(c, id)).toEqual([[FIRST_MS, 'ok', runs[0]?.[0] ?? null, 1]]);
  });
});

describe('skewed wall clocks', () => {
  for (const jobMs of [1_000, 8_000]) {
    it(`nodes skewed by ±3 s compete for the same occurrence and exactly one runs it (job of ${jobMs} ms)`, async () => {
      const c = (cluster = await startMaintenanceCluster({ skewMs: { n1: -3_000, n2: 3_000, n3: 0 } }));
      const starts: Started[] = [];
      registerOn(c, IDS, (id) => ({
        id: KEY,
        intervalMs: INTERVAL_MS,
        windowMs: 40_000,
        estimatedDurationMs: 9_000,
        safetyMarginMs: 1_000,
        lockTtlMs: 15_000,
        run: async (context) => {
          starts.push(started(c, id, context));
          await sleep(c, jobMs, context.signal);
        },
      }));
      await advanceToWall(c, SECOND_MS + 20_000);

      expect(starts.map((start) => start.occurrenceMs)).toEqual([FIRST_MS, SECOND_MS]);
      // The node whose clock is ahead gets there first.
      expect(starts.map((start) => start.node)).toEqual(['n2', 'n2']);
      for (const id of IDS) expect(historyOn(c, id)).toEqual([[FIRST_MS, 'ok', 'n2', 1], [SECOND_MS, 'ok', 'n2', 1]]);
      if (jobMs > 3_000) {
        // Still running when the others' clocks reached the occurrence: they tried the same one and lost.
        for (const id of ['n1', 'n3'] as const) {
          const skips = logsOf(c, id, `schedule ${KEY} skipped — lock held by peer n2`);
          expect(skips.map((record) => record.occurrenceMs)).toEqual([FIRST_MS, SECOND_MS]);
        }
      }
      expect(await runsCounted(c, 'ok')).toBe(2);
    });
  }
});

describe('the concurrency bound', () => {
  it('with maxConcurrentJobs 1, two schedules due at once never run together on the node, and both run while their windows are open', async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n1'], orchestrator: { maxConcurrentJobs: 1 } }));
    let running = 0;
    let mostRunning = 0;
    const runs: { id: string; occurrenceMs: number; startedWallMs: number; endedWallMs: number }[] = [];
    for (const id of ['alpha', 'beta']) {
      orchestrator(c, 'n1').register({
        id,
        intervalMs: INTERVAL_MS,
        windowMs: 40_000,
        estimatedDurationMs: 5_000,
        safetyMarginMs: 1_000,
        lockTtlMs: 10_000,
        run: async (context) => {
          running++;
          mostRunning = Math.max(mostRunning, running);
          const startedWallMs = EPOCH_MS + c.clock.nowMs();
          try {
            await sleep(c, 5_000, context.signal);
          } finally {
            running--;
          }
          runs.push({ id, occurrenceMs: context.occurrenceMs, startedWallMs, endedWallMs: EPOCH_MS + c.clock.nowMs() });
        },
      });
    }
    orchestrator(c, 'n1').start();
    await advanceToWall(c, FIRST_MS + 30_000);

    expect(mostRunning).toBe(1);
    expect(runs.map((run) => run.id).sort()).toEqual(['alpha', 'beta']);
    const [earlier, later] = runs;
    expect(earlier?.occurrenceMs).toBe(FIRST_MS);
    expect(later?.occurrenceMs).toBe(FIRST_MS);
    expect(later?.startedWallMs).toBeGreaterThanOrEqual(earlier?.endedWallMs ?? Infinity);
    expect(later?.startedWallMs).toBeLessThan(FIRST_MS + 40_000);
    expect((c.logs.get('n1') ?? []).some((record) => record.msg.startsWith(`schedule ${later?.id ?? ''} deferred:`))).toBe(true);
  });
});

describe('retrying an unreachable lock', () => {
  /** The orchestrator's "will retry" lines about `key` on node `id`. */
  const retries = (c: MaintenanceCluster, id: Id): number => (c.logs.get(id) ?? []).filter((record) => record.scheduleId === KEY && record.msg.endsWith('will retry')).length;

  it('an orchestrator whose lease node stopped under it retries about once per poll instead of spinning', { timeout: 15_000 }, async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n2'] }));
    const runs: number[] = [];
    registerOn(c, ['n2'], () => ({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      lockTtlMs: 10_000,
      run: (context) => {
        runs.push(context.occurrenceMs);
        return Promise.resolve();
      },
    }));
    // The node goes away; the orchestrator on it does not.
    const node = c.nodes.get('n2');
    await node?.raft.stop({ transferLeadership: false });
    await node?.stop();
    // A zero-delay retry loop would keep virtual time from ever reaching this point.
    await advanceToWall(c, FIRST_MS + 10_000);
    expect(runs).toEqual([]);
    expect(retries(c, 'n2')).toBeGreaterThanOrEqual(5);
    expect(retries(c, 'n2')).toBeLessThanOrEqual(20);
  });

  it('refuses at registration a lock TTL the lease node would refuse as too short (it could never run)', async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n2'] }));
    const orchestrator = c.orchestrators.get('n2');
    // Valid as a schedule (50 + 0 <= 100), but under the lease node's minimum TTL (margin 100 ms).
    expect(() =>
      orchestrator?.register({ id: KEY, intervalMs: INTERVAL_MS, windowMs: 40_000, estimatedDurationMs: 50, safetyMarginMs: 0, lockTtlMs: 100, run: () => Promise.resolve() }),
    ).toThrow(/schedule 'compaction': lock TTL 100 ms leaves no validity/);
    expect(orchestrator?.list()).toEqual([]);
  });
});

describe('checkpoint size', () => {
  it('rejects a checkpoint over maxCheckpointBytes with InvalidArgument; the job goes on and later checkpoints are stored', async () => {
    const c = (cluster = await startMaintenanceCluster({ orchestratorsOn: ['n1'], orchestrator: { maxCheckpointBytes: 1_024 } }));
    const rejections: unknown[] = [];
    let abortedAfterRejection: boolean | undefined;
    let storedDuringRun: unknown;
    let finished = false;
    registerOn(c, ['n1'], () => ({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      lockTtlMs: 10_000,
      run: async (context) => {
        try {
          await context.checkpoint({ blob: 'x'.repeat(2_000) });
        } catch (error) {
          rejections.push(error);
        }
        abortedAfterRejection = context.signal.aborted;
        await context.checkpoint({ step: 1 });
        await sleep(c, 300, context.signal);
        storedDuringRun = decodeCheckpoint(recordOn(c, 'n1')?.current?.checkpoint);
        finished = true;
      },
    }));
    await advanceUntil(c, () => finished, 20_000);

    expect(rejections).toHaveLength(1);
    expect(rejections[0]).toBeInstanceOf(RaftLeaseError);
    expect(rejections[0]).toMatchObject({ code: 'InvalidArgument' });
    expect((rejections[0] as Error).message).toContain('1024');
    expect(abortedAfterRejection).toBe(false);
    expect(storedDuringRun).toEqual({ step: 1 });
    await settleEverywhere(c, IDS, (id) => historyOn(c, id).length === 1);
    for (const id of IDS) expect(historyOn(c, id)).toEqual([[FIRST_MS, 'ok', 'n1', 1]]);
  });
});

describe('stop()', () => {
  it('aborts the running job with Stopped, releases its lease, and another orchestrator resumes the occurrence from its last checkpoint', async () => {
    const c = (cluster = await startMaintenanceCluster({ skewMs: { n2: 2_000 } }));
    // A long TTL: a resume soon after stop() can only come from a release, not from an expiry.
    const { starts, accepted, finished } = registerCheckpointingJob(c, { steps: 4, lockTtlMs: 30_000 });
    await advanceUntil(c, () => accepted.some((entry) => entry.node === 'n2' && entry.step === 2), 20_000);
    const first = starts[0];
    if (first === undefined) throw new Error('no first runner');
    expect(first.node).toBe('n2');

    const stopping = watch(orchestrator(c, 'n2').stop());
    const stoppedAtMs = c.clock.nowMs();
    await advanceUntil(c, () => stopping.outcome() !== undefined, 2_000);
    expect(stopping.outcome()).toMatchObject({ ok: true });
    expect(first.context.signal.aborted).toBe(true);
    expect(first.context.signal.reason).toBeInstanceOf(RaftLeaseError);
    expect(first.context.signal.reason).toMatchObject({ code: 'Stopped' });
    // Released: gone from every node's lease table long before its 30 s TTL.
    await settleEverywhere(c, IDS, (id) => c.nodes.get(id)?.table.get(KEY) === undefined, 500);

    await advanceUntil(c, () => finished.length === 1, 10_000);
    const resumed = starts[1];
    expect(starts).toHaveLength(2);
    expect(resumed).toMatchObject({ occurrenceMs: FIRST_MS, attempt: 2, lastCheckpoint: { step: 2 } });
    expect(resumed?.node).not.toBe('n2');
    expect(resumed?.fencingToken).toBeGreaterThan(first.fencingToken);
    expect((resumed?.atMs ?? Infinity) - stoppedAtMs).toBeLessThan(3_000);
    expect(finished).toEqual([resumed?.node]);
    await settleEverywhere(c, IDS, (id) => historyOn(c, id).length === 1);
    for (const id of IDS) expect(historyOn(c, id)).toEqual([[FIRST_MS, 'ok', resumed?.node ?? null, 2]]);
    expect(await runsCounted(c, 'aborted', ['n2'])).toBe(1);
  });
});

describe('list()', () => {
  it('reports the schedule, next occurrence, current run, holder and whether it runs here, then the outcome', async () => {
    const c = (cluster = await startMaintenanceCluster({ skewMs: { n2: 2_000 } }));
    const proceed = gate();
    const checkpointed = gate();
    const starts: Started[] = [];
    let checkpointStored = false;
    registerOn(c, IDS, (id) => ({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      lockTtlMs: 10_000,
      run: async (context) => {
        starts.push(started(c, id, context));
        await waitForGate(checkpointed, context.signal);
        await context.checkpoint({ step: 1 });
        checkpointStored = true;
        await waitForGate(proceed, context.signal);
      },
    }));
    // A second schedule that sorts first and never ran.
    for (const id of IDS) orchestrator(c, id).register({ id: 'audit', intervalMs: 3_600_000, windowMs: 60_000, estimatedDurationMs: 1_000, safetyMarginMs: 0, run: () => Promise.resolve() });

    const before = orchestrator(c, 'n1').list();
    expect(before.map((status) => status.schedule.id)).toEqual(['audit', KEY]);
    expect(before[1]).toMatchObject({ nextOccurrenceMs: FIRST_MS, lastOutcome: null, current: null, holder: null, runningHere: false, recentOutcomes: [] });
    expect(before[0]).toMatchObject({ nextOccurrenceMs: Date.UTC(2026, 0, 1, 1, 0, 0), lastOutcome: null, current: null });

    await advanceUntil(c, () => starts.length === 1, 20_000);
    // Every node's clock is past the occurrence (the others lost the lock to n2).
    await advanceToWall(c, FIRST_MS + 1_000);
    const runner = starts[0];
    expect(runner?.node).toBe('n2');
    for (const id of IDS) {
      const status = orchestrator(c, id).list().find((item) => item.schedule.id === KEY);
      expect(status).toMatchObject({
        schedule: { id: KEY, intervalMs: INTERVAL_MS, windowMs: 40_000, lockTtlMs: 10_000 },
        nextOccurrenceMs: SECOND_MS,
        lastOutcome: null,
        current: { occurrenceMs: FIRST_MS, owner: 'n2', fencingToken: runner?.fencingToken, attempts: 1, hasCheckpoint: false },
        holder: 'n2',
        runningHere: id === 'n2',
        recentOutcomes: [],
      });
    }
    checkpointed.open();
    await advanceUntil(c, () => checkpointStored, 2_000);
    await advance(c, 300);
    for (const id of IDS) expect(orchestrator(c, id).list().find((item) => item.schedule.id === KEY)?.current).toMatchObject({ hasCheckpoint: true, attempts: 1 });

    proceed.open();
    await advance(c, 1_000);
    for (const id of IDS) {
      const status = orchestrator(c, id).list().find((item) => item.schedule.id === KEY);
      const outcome = { occurrenceMs: FIRST_MS, result: 'ok', owner: 'n2', fencingToken: runner?.fencingToken, attempts: 1, error: null };
      expect(status).toMatchObject({ current: null, holder: null, runningHere: false, lastOutcome: outcome, recentOutcomes: [outcome], nextOccurrenceMs: SECOND_MS });
    }
  });
});

describe('metrics', () => {
  it('exports run, progress, success, next-run and lock-acquire metrics, and the Raft gauges of each node', async () => {
    const c = (cluster = await startMaintenanceCluster());
    const starts: Started[] = [];
    let inProgressDuringRun: number[] = [];
    registerOn(c, IDS, (id) => ({
      id: KEY,
      intervalMs: INTERVAL_MS,
      windowMs: 40_000,
      estimatedDurationMs: 3_000,
      safetyMarginMs: 1_000,
      lockTtlMs: 10_000,
      run: async (context) => {
        starts.push(started(c, id, context));
        inProgressDuringRun = findSamples(parsePrometheusText(await c.registry.metrics()), 'raftlease_maintenance_runs_in_progress', { node: id, schedule: KEY }).map((sample) => sample.value);
        await sleep(c, 2_000, context.signal);
      },
    }));
    await advanceToWall(c, FIRST_MS + 5_000);
    expect(starts).toHaveLength(1);
    const winner = starts[0]?.node ?? 'n1';
    const losers = IDS.filter((id) => id !== winner);
    expect(inProgressDuringRun).toEqual([1]);

    const samples = parsePrometheusText(await c.registry.metrics());
    const values = (name: string, labels: Record<string, string>): number[] => findSamples(samples, name, labels).map((sample) => sample.value);
    expect(values('raftlease_maintenance_run_duration_seconds_count', { node: winner, schedule: KEY, result: 'ok' })).toEqual([1]);
    const [durationSeconds] = values('raftlease_maintenance_run_duration_seconds_sum', { node: winner, schedule: KEY, result: 'ok' });
    expect(durationSeconds).toBeGreaterThanOrEqual(2);
    expect(durationSeconds).toBeLessThan(3);
    expect(values('raftlease_maintenance_runs_in_progress', { node: winner, schedule: KEY })).toEqual([0]);
    const [lastSuccess] = values('raftlease_maintenance_last_success_timestamp_seconds', { node: winner, schedule: KEY });
    expect(lastSuccess).toBeGreaterThanOrEqual((FIRST_MS + 2_000) / 1_000);
    expect(lastSuccess).toBeLessThanOrEqual((FIRST_MS + 5_000) / 1_000);
    for (const id of IDS) expect(values('raftlease_maintenance_next_run_timestamp_seconds', { node: id, schedule: KEY })).toEqual([SECOND_MS / 1_000]);
    expect(values('raftlease_maintenance_lock_acquire_duration_seconds_count', { node: winner, schedule: KEY, acquired: 'true' })).toEqual([1]);
    for (const id of losers) expect(values('raftlease_maintenance_lock_acquire_duration_seconds_count', { node: id, schedule: KEY, acquired: 'false' })).toEqual([1]);
    expect(values('raftlease_maintenance_runs_total', { node: winner, schedule: KEY, result: 'ok' })).toEqual([1]);

    const term = c.nodes.get('n1')?.raft.status().term ?? 0;
    expect(term).toBeGreaterThanOrEqual(1);
    for (const id of IDS) {
      const status = c.nodes.get(id)?.raft.status();
      expect(values('raftlease_raft_term', { node: id })).toEqual([term]);
      expect(values('raftlease_raft_is_leader', { node: id })).toEqual([id === 'n1' ? 1 : 0]);
      const [commit] = values('raftlease_raft_commit_index', { node: id });
      const [applied] = values('raftlease_raft_applied_index', { node: id });
      expect(commit).toBe(status?.commitIndex);
      expect(applied).toBe(status?.appliedIndex);
      // At least the election's entry, Acquire, Begin, Finish and Release.
      expect(commit).toBeGreaterThanOrEqual(5);
      expect(applied).toBeLessThanOrEqual(commit ?? 0);
    }
  });
});
