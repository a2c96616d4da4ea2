/**
 * Lease benchmark: an in-process 3-node `LeaseNode` cluster (memory transport and storage). Each
 * client cycle takes a lease on a key of its own (no contention), renews it once and releases it;
 * the benchmark reports tryAcquire, renew and release latency (p50/p99) and acquisitions per second
 * with 1 and 64 cycles in flight. Clients run on a follower, so every operation is forwarded to the
 * leader, as for most callers in a real cluster.
 *
 * @module
 */
import { pino } from 'pino';
import { LeaseNode } from '../src/lease/index.js';
import { MemoryNetwork, MemoryStorage, SystemClock, nodeId } from '../src/index.js';
import { describeSpread, percentile } from './stats.js';

/** Parameters of the lease benchmark. */
export interface LeaseBenchOptions {
  /** Acquire-renew-release cycles per measured run. */
  readonly cyclesPerRun: number;
  /** Measured runs per concurrency level (after one warm-up run each). */
  readonly runs: number;
  readonly concurrencyLevels: readonly number[];
}

interface RunResult {
  readonly acquiresPerSecond: number;
  readonly acquireMs: number[];
  readonly renewMs: number[];
  readonly releaseMs: number[];
}

/** Runs the benchmark and prints one line per figure, with the command that reproduces it. */
export async function benchLease(options: LeaseBenchOptions, command: string, print: (line: string) => void): Promise<void> {
  const ids = ['n1', 'n2', 'n3'];
  const network = new MemoryNetwork();
  const clock = new SystemClock();
  const nodes: LeaseNode[] = [];
  for (const [position, id] of ids.entries()) {
    nodes.push(
      await LeaseNode.start({
        id,
        voters: ids,
        transport: network.connect(nodeId(id)),
        storage: new MemoryStorage(),
        clock,
        tickIntervalMs: 50,
        seed: position + 1,
        maxPendingProposals: 100_000,
        logger: pino({ level: 'warn' }),
        lease: { marginMs: 100 },
      }),
    );
  }
  const [leader, client] = nodes;
  if (leader === undefined || client === undefined) throw new Error('no nodes');
  leader.raft.campaign();
  const deadline = performance.now() + 10_000;
  while (leader.raft.status().role !== 'Leader' || client.raft.status().leader !== leader.raft.id) {
    if (performance.now() > deadline) throw new Error('no leader within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  try {
    let runId = 0;
    for (const level of options.concurrencyLevels) await measure(client, Math.min(options.cyclesPerRun, 2_000), level, `warmup${runId++}`);
    const results = new Map<number, RunResult[]>();
    for (let run = 0; run < options.runs; run++) {
      // Interleave the variants so drift in machine load hits each equally.
      for (const level of options.concurrencyLevels) {
        const list = results.get(level) ?? [];
        list.push(await measure(client, options.cyclesPerRun, level, `run${runId++}`));
        results.set(level, list);
      }
    }
    print(`in-process 3-node lease cluster, memory transport and storage, clients on a follower, ${options.cyclesPerRun} acquire-renew-release cycles x ${options.runs} runs`);
    for (const level of options.concurrencyLevels) {
      const runs = results.get(level) ?? [];
      const latency = (pick: (run: RunResult) => number[]): string => {
        const all = runs.flatMap(pick);
        return `p50 ${percentile(all, 50).toFixed(3)} / p99 ${percentile(all, 99).toFixed(3)} ms`;
      };
      print(
        `  ${String(level).padStart(3)} in flight: ${describeSpread(
          runs.map((run) => run.acquiresPerSecond),
          'acquires/s',
          0,
        )}; tryAcquire ${latency((run) => run.acquireMs)}; renew ${latency((run) => run.renewMs)}; release ${latency((run) => run.releaseMs)}`,
      );
    }
    print(`  reproduce: ${command}`);
  } finally {
    for (const node of nodes) await node.stop({ transferLeadership: false });
  }
}

async function measure(client: LeaseNode, cycles: number, inFlight: number, prefix: string): Promise<RunResult> {
  const acquireMs: number[] = [];
  const renewMs: number[] = [];
  const releaseMs: number[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cycles) {
      const key = `${prefix}-${next++}`;
      let started = performance.now();
      const result = await client.tryAcquire(key, { ttlMs: 30_000, owner: 'bench' });
      const acquiredAt = performance.now();
      acquireMs.push(acquiredAt - started);
      if (!result.acquired) throw new Error(`'${key}' was not granted: held by ${result.holder}`);
      started = performance.now();
      await result.lease.renew();
      renewMs.push(performance.now() - started);
      started = performance.now();
      await result.lease.release();
      releaseMs.push(performance.now() - started);
    }
  };
  const startedMs = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elapsedMs = performance.now() - startedMs;
  // Every lease must be gone again: a benchmark that leaves work undone is worse than none.
  if (client.leases().some((lease) => lease.key.startsWith(`${prefix}-`))) throw new Error('some leases were not released');
  return { acquiresPerSecond: (cycles / elapsedMs) * 1000, acquireMs, renewMs, releaseMs };
}
