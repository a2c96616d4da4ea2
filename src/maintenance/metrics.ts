/**
 * Prometheus metrics of the maintenance orchestrator and of the Raft node under it, with
 * `prom-client`. Every series carries a `node` label, so several nodes in one process (tests, the
 * local cluster) can share one registry; registering the same metrics twice reuses them.
 *
 * @module
 */
import { Counter, Gauge, Histogram, register as defaultRegistry, type Registry } from 'prom-client';
import type { RaftNodeStatus } from '../runtime/index.js';

/** The result label of `raftlease_maintenance_runs_total`. */
export type RunResult = 'ok' | 'error' | 'skipped_lock_held' | 'missed' | 'aborted';

/** Status sources of the Raft gauges, per registry and node. */
const raftSources = new WeakMap<Registry, Map<string, () => RaftNodeStatus>>();

function reuse<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}

/** The orchestrator's metrics on one registry (default: prom-client's global registry). */
export class MaintenanceMetrics {
  readonly runs: Counter<'node' | 'schedule' | 'result'>;
  readonly runDuration: Histogram<'node' | 'schedule' | 'result'>;
  readonly inProgress: Gauge<'node' | 'schedule'>;
  readonly lastSuccess: Gauge<'node' | 'schedule'>;
  readonly nextRun: Gauge<'node' | 'schedule'>;
  readonly lockAcquireDuration: Histogram<'node' | 'schedule' | 'acquired'>;
  readonly leasesLost: Counter<'node' | 'schedule'>;

  constructor(readonly registry: Registry = defaultRegistry) {
    const registers = [registry];
    this.runs = reuse(registry, 'raftlease_maintenance_runs_total', () => new Counter({
      name: 'raftlease_maintenance_runs_total',
      help: 'Occurrences this node handled, by schedule and result (ok, error, skipped_lock_held, missed, aborted).',
      labelNames: ['node', 'schedule', 'result'] as const,
      registers,
    }));
    this.runDuration = reuse(registry, 'raftlease_maintenance_run_duration_seconds', () => new Histogram({
      name: 'raftlease_maintenance_run_duration_seconds',
      help: 'How long jobs ran on this node, by schedule and result.',
      labelNames: ['node', 'schedule', 'result'] as const,
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14_400],
      registers,
    }));
    this.inProgress = reuse(registry, 'raftlease_maintenance_runs_in_progress', () => new Gauge({
      name: 'raftlease_maintenance_runs_in_progress',
      help: 'Jobs running on this node now.',
      labelNames: ['node', 'schedule'] as const,
      registers,
    }));
    this.lastSuccess = reuse(registry, 'raftlease_maintenance_last_success_timestamp_seconds', () => new Gauge({
      name: 'raftlease_maintenance_last_success_timestamp_seconds',
      help: 'Wall-clock time (Unix seconds) this node last finished a run of the schedule successfully.',
      labelNames: ['node', 'schedule'] as const,
      registers,
    }));
    this.nextRun = reuse(registry, 'raftlease_maintenance_next_run_timestamp_seconds', () => new Gauge({
      name: 'raftlease_maintenance_next_run_timestamp_seconds',
      help: 'Scheduled time (Unix seconds) of the schedule’s next occurrence.',
      labelNames: ['node', 'schedule'] as const,
      registers,
    }));
    this.lockAcquireDuration = reuse(registry, 'raftlease_maintenance_lock_acquire_duration_seconds', () => new Histogram({
      name: 'raftlease_maintenance_lock_acquire_duration_seconds',
      help: 'Latency of tryAcquire before an occurrence, by whether the lock was won.',
      labelNames: ['node', 'schedule', 'acquired'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }));
    this.leasesLost = reuse(registry, 'raftlease_maintenance_leases_lost_total', () => new Counter({
      name: 'raftlease_maintenance_leases_lost_total',
      help: 'Runs whose lease was lost (expired, or taken over) while the job ran.',
      labelNames: ['node', 'schedule'] as const,
      registers,
    }));
  }
}

/**
 * Registers the Raft gauges of one node — `raftlease_raft_term`, `raftlease_raft_is_leader`,
 * `raftlease_raft_commit_index`, `raftlease_raft_applied_index` — read from `status()` at each scrape.
 * Returns a function that unregisters the node.
 */
export function registerRaftMetrics(nodeId: string, status: () => RaftNodeStatus, registry: Registry = defaultRegistry): () => void {
  let sources = raftSources.get(registry);
  if (sources === undefined) {
    const created = new Map<string, () => RaftNodeStatus>();
    sources = created;
    raftSources.set(registry, created);
    const gauge = (name: string, help: string, read: (value: RaftNodeStatus) => number): void => {
      if (registry.getSingleMetric(name) !== undefined) registry.removeSingleMetric(name);
      new Gauge({
        name,
        help,
        labelNames: ['node'] as const,
        registers: [registry],
        collect() {
          this.reset();
          for (const [node, read_] of created) this.set({ node }, read(read_()));
        },
      });
    };
    gauge('raftlease_raft_term', 'Current Raft term of the node.', (value) => value.term);
    gauge('raftlease_raft_is_leader', '1 when the node is the Raft leader, else 0.', (value) => (value.role === 'Leader' ? 1 : 0));
    gauge('raftlease_raft_commit_index', 'Highest log index the node knows is committed.', (value) => value.commitIndex);
    gauge('raftlease_raft_applied_index', 'Highest log index the node has applied.', (value) => value.appliedIndex);
  }
  sources.set(nodeId, status);
  return () => {
    sources.delete(nodeId);
  };
}

/** Current values among the transport's statistics (everything else counts events since start). */
const TRANSPORT_GAUGES: ReadonlySet<string> = new Set(['inboundConnections', 'outboundConnections', 'queuedMessages', 'queuedBytes']);

/**
 * Exports a transport's statistics (e.g. `TcpTransport.stats()`), read at each scrape:
 * `raftlease_transport_events_total{event}` for counts since start (malformed, oversized and truncated
 * frames, refused handshakes, drops, ...) and `raftlease_transport_current{value}` for current values
 * (connections, queued messages and bytes). Names are the statistics' own, in snake_case.
 */
export function registerTransportMetrics(nodeId: string, stats: () => Readonly<Record<string, number>>, registry: Registry = defaultRegistry): void {
  const snake = (name: string): string => name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
  for (const name of ['raftlease_transport_events_total', 'raftlease_transport_current']) {
    if (registry.getSingleMetric(name) !== undefined) registry.removeSingleMetric(name);
  }
  new Counter({
    name: 'raftlease_transport_events_total',
    help: 'Transport events since the process started, by event (frames, bytes, drops, malformed input, refused handshakes, reconnects).',
    labelNames: ['node', 'event'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [name, value] of Object.entries(stats())) if (!TRANSPORT_GAUGES.has(name)) this.inc({ node: nodeId, event: snake(name) }, value);
    },
  });
  new Gauge({
    name: 'raftlease_transport_current',
    help: 'Current transport values: open connections, queued messages and bytes.',
    labelNames: ['node', 'value'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [name, value] of Object.entries(stats())) if (TRANSPORT_GAUGES.has(name)) this.set({ node: nodeId, value: snake(name) }, value);
    },
  });
}
