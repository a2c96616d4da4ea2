/**
 * A three-node lease cluster on one ManualClock, with a maintenance orchestrator per node that asks
 * for one, and a pino logger per orchestrator that keeps every record. Everything moves with virtual
 * time only.
 */
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { ManualClock, MemoryNetwork, MemoryStorage, nodeId, sleepOn } from '../../src/index.js';
import { LeaseNode } from '../../src/lease/index.js';
import { MaintenanceMetrics, MaintenanceOrchestrator, type OrchestratorOptions } from '../../src/maintenance/index.js';

export const IDS = ['n1', 'n2', 'n3'] as const;
export type Id = (typeof IDS)[number];
export const TICK_MS = 100;
/**
 * Wall-clock time of the cluster's virtual time 0: 2026-01-01T00:00:50Z, so that minute-aligned
 * occurrences begin 10 s of virtual time after the start.
 */
export const EPOCH_MS = Date.UTC(2026, 0, 1, 0, 0, 50);

/** One pino record as written. */
export interface LogRecord {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export const DEBUG = 20;

export interface MaintenanceCluster {
  readonly clock: ManualClock;
  readonly network: MemoryNetwork;
  readonly nodes: Map<Id, LeaseNode>;
  readonly storages: Map<Id, MemoryStorage>;
  readonly orchestrators: Map<Id, MaintenanceOrchestrator>;
  readonly logs: Map<Id, LogRecord[]>;
  readonly registry: Registry;
  readonly metrics: MaintenanceMetrics;
  readonly fatalErrors: Error[];
  /** Each node's wall clock is virtual time plus the epoch plus this skew (ms). */
  readonly skewMs: Map<Id, number>;
}

export async function startMaintenanceCluster(options: {
  readonly orchestratorsOn?: readonly Id[];
  readonly skewMs?: Partial<Record<Id, number>>;
  readonly orchestrator?: Partial<Omit<OrchestratorOptions, 'node' | 'clock' | 'wallClock' | 'logger'>>;
} = {}): Promise<MaintenanceCluster> {
  const registry = new Registry();
  const c: MaintenanceCluster = {
    clock: new ManualClock(),
    network: new MemoryNetwork({ encode: true }),
    nodes: new Map(),
    storages: new Map(),
    orchestrators: new Map(),
    logs: new Map(),
    registry,
    metrics: new MaintenanceMetrics(registry),
    fatalErrors: [],
    skewMs: new Map(IDS.map((id) => [id, options.skewMs?.[id] ?? 0])),
  };
  for (const [position, id] of IDS.entries()) {
    const storage = new MemoryStorage();
    c.storages.set(id, storage);
    c.nodes.set(id, await startNode(c, id, storage, position));
  }
  const leader = c.nodes.get('n1');
  leader?.raft.campaign();
  await advanceUntil(c, () => IDS.every((id) => c.nodes.get(id)?.raft.status().leader === 'n1'), 5_000);
  for (const id of options.orchestratorsOn ?? IDS) startOrchestrator(c, id, options.orchestrator);
  return c;
}

export async function startNode(c: MaintenanceCluster, id: Id, storage: MemoryStorage, seed: number): Promise<LeaseNode> {
  return LeaseNode.start({
    id,
    voters: IDS,
    transport: c.network.connect(nodeId(id)),
    storage,
    clock: c.clock,
    seed: 31 + seed,
    tickIntervalMs: TICK_MS,
    onFatalError: (error) => c.fatalErrors.push(error),
    lease: { maxClockDriftPpm: 200, marginMs: 100 },
  });
}

export function startOrchestrator(
  c: MaintenanceCluster,
  id: Id,
  options: Partial<Omit<OrchestratorOptions, 'node' | 'clock' | 'wallClock' | 'logger'>> = {},
): MaintenanceOrchestrator {
  const node = c.nodes.get(id);
  if (node === undefined) throw new Error(`no node ${id}`);
  const records: LogRecord[] = c.logs.get(id) ?? [];
  c.logs.set(id, records);
  const logger = pino({ level: 'debug' }, { write: (line: string) => records.push(JSON.parse(line) as LogRecord) });
  const orchestrator = new MaintenanceOrchestrator({
    node,
    clock: c.clock,
    wallClock: { nowMs: () => EPOCH_MS + c.clock.nowMs() + (c.skewMs.get(id) ?? 0) },
    logger,
    metrics: c.metrics,
    ...options,
  });
  c.orchestrators.set(id, orchestrator);
  return orchestrator;
}

/** Advances virtual time in 10 ms steps until `predicate` holds; throws after `maxMs`. */
export async function advanceUntil(c: MaintenanceCluster, predicate: () => boolean, maxMs = 20_000, stepMs = 10): Promise<void> {
  for (let waited = 0; !predicate(); waited += stepMs) {
    if (waited >= maxMs) throw new Error(`condition not reached within ${maxMs} ms of virtual time`);
    await c.clock.advance(stepMs);
  }
}

export async function advance(c: MaintenanceCluster, ms: number, stepMs = 10): Promise<void> {
  for (let done = 0; done < ms; done += stepMs) await c.clock.advance(Math.min(stepMs, ms - done));
}

/** Advances until the wall clock of virtual time reaches `wallMs` (no skew). */
export async function advanceToWall(c: MaintenanceCluster, wallMs: number): Promise<void> {
  const ms = wallMs - EPOCH_MS - c.clock.nowMs();
  if (ms > 0) await advance(c, ms, 50);
}

/** Virtual-time sleep for jobs, honouring their abort signal. */
export function sleep(c: MaintenanceCluster, ms: number, signal: AbortSignal): Promise<void> {
  return sleepOn(c.clock, ms, signal);
}

export async function stopMaintenanceCluster(c: MaintenanceCluster): Promise<void> {
  for (const orchestrator of c.orchestrators.values()) {
    const stopping = orchestrator.stop();
    await c.clock.advance(50);
    await stopping;
  }
  for (const node of c.nodes.values()) {
    await node.raft.stop({ transferLeadership: false });
    await node.stop();
  }
}

/**
 * Crashes node `id` as a process crash would: its Raft node stops at once, with no leadership
 * hand-over and no lease released, and then its orchestrator (if any) goes quiet. The orchestrator is
 * stopped only after the node, so nothing it does on the way out reaches the cluster: its jobs' leases
 * are neither renewed nor released and simply expire.
 */
export async function crashNode(c: MaintenanceCluster, id: Id): Promise<void> {
  const node = c.nodes.get(id);
  if (node === undefined) throw new Error(`no node ${id}`);
  await node.raft.stop({ transferLeadership: false });
  await node.stop();
  await c.orchestrators.get(id)?.stop();
}

/** Starts a crashed node again on its storage (no orchestrator) and puts it in its place in `c.nodes`. */
export async function restartNode(c: MaintenanceCluster, id: Id): Promise<LeaseNode> {
  const storage = c.storages.get(id);
  if (storage === undefined) throw new Error(`no storage for ${id}`);
  const node = await startNode(c, id, storage, IDS.indexOf(id));
  c.nodes.set(id, node);
  return node;
}

/** One sample of a Prometheus text exposition. */
export interface MetricSample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses Prometheus text (`registry.metrics()`) into samples; throws on a line it cannot read. */
export function parsePrometheusText(text: string): MetricSample[] {
  const samples: MetricSample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    const name = match?.[1];
    const value = match?.[3];
    if (name === undefined || value === undefined) throw new Error(`unreadable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const label of (match?.[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      const [, labelName, labelValue] = label;
      if (labelName !== undefined && labelValue !== undefined) labels[labelName] = labelValue;
    }
    samples.push({ name, labels, value: Number(value) });
  }
  return samples;
}

/** The samples named `name` whose labels include `labels`. */
export function findSamples(samples: readonly MetricSample[], name: string, labels: Readonly<Record<string, string>> = {}): MetricSample[] {
  return samples.filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value));
}

/** A promise with its resolve function, for jobs that wait for the test. */
export interface Gate {
  readonly promise: Promise<void>;
  readonly open: () => void;
}

export function gate(): Gate {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Waits for `gate` to open; rejects with the signal's reason if it aborts first. */
export function waitForGate(waitFor: Gate, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    void waitFor.promise.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/** The outcome of a promise once it settled, readable synchronously while virtual time advances. */
export interface Watched<T> {
  outcome(): { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown } | undefined;
}

export function watch<T>(promise: Promise<T>): Watched<T> {
  let outcome: { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: unknown } | undefined;
  promise.then(
    (value) => {
      outcome = { ok: true, value };
    },
    (error: unknown) => {
      outcome = { ok: false, error };
    },
  );
  return { outcome: () => outcome };
}
