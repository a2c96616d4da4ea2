/**
 * In-process benchmark of the Raft core and runtime: a three-node cluster on the memory transport
 * and memory storage, measuring committed proposals per second and commit latency.
 *
 * @module
 */
import { pino } from 'pino';
import { MemoryNetwork, MemoryStorage, RaftNode, SystemClock, nodeId, type RaftNodeOptions } from '../src/index.js';
import { describeSpread, percentile } from './stats.js';

/** Parameters of one benchmark invocation. */
export interface CoreBenchOptions {
  /** Proposals per measured run. */
  readonly proposalsPerRun: number;
  /** Measured runs per concurrency level (after one warm-up run). */
  readonly runs: number;
  /** Payload bytes per proposal. */
  readonly payloadBytes: number;
  /** Proposals in flight at once; each level is measured, interleaved run by run. */
  readonly concurrencyLevels: readonly number[];
  /** Encode every message with the wire codec. */
  readonly encode: boolean;
}

interface RunResult {
  readonly commitsPerSecond: number;
  readonly latenciesMs: number[];
}

/** Runs the benchmark and prints one line per figure, with the command that reproduces it. */
export async function benchCore(options: CoreBenchOptions, command: string, print: (line: string) => void): Promise<void> {
  const cluster = await startCluster(options.encode);
  try {
    const leader = cluster.leader;
    const payload = new Uint8Array(options.payloadBytes).fill(7);
    // Warm-up: let the JIT settle on the hot paths at every concurrency level.
    for (const level of options.concurrencyLevels) await measure(leader, payload, Math.min(options.proposalsPerRun, 20_000), level);
    const results = new Map<number, RunResult[]>();
    for (let run = 0; run < options.runs; run++) {
      // Interleave the variants so drift in machine load hits each equally.
      for (const level of options.concurrencyLevels) {
        const list = results.get(level) ?? [];
        list.push(await measure(leader, payload, options.proposalsPerRun, level));
        results.set(level, list);
      }
    }
    print(`in-process 3-node cluster, memory transport${options.encode ? ' (wire codec on)' : ''} and memory storage, ${options.payloadBytes}-byte proposals, ${options.proposalsPerRun} proposals x ${options.runs} runs`);
    for (const level of options.concurrencyLevels) {
      const runs = results.get(level) ?? [];
      const throughput = runs.map((run) => run.commitsPerSecond);
      const latencies = runs.flatMap((run) => run.latenciesMs);
      print(
        `  ${String(level).padStart(3)} in flight: ${describeSpread(throughput, 'commits/s', 0)}; commit latency p50 ${percentile(latencies, 50).toFixed(3)} ms, p99 ${percentile(latencies, 99).toFixed(3)} ms`,
      );
    }
    print(`  reproduce: ${command}`);
  } finally {
    await cluster.stop();
  }
}

async function measure(leader: RaftNode<null>, payload: Uint8Array, proposals: number, inFlight: number): Promise<RunResult> {
  const latenciesMs: number[] = new Array<number>(proposals);
  let next = 0;
  const appliedBefore = leader.status().appliedIndex;
  const startedMs = performance.now();
  const worker = async (): Promise<void> => {
    while (next < proposals) {
      const slot = next++;
      const proposedMs = performance.now();
      await leader.propose(payload);
      latenciesMs[slot] = performance.now() - proposedMs;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elapsedMs = performance.now() - startedMs;
  // Every proposal must have been applied, and nothing else: a benchmark that measures less work than
  // it reports is worse than none.
  const appliedDelta = leader.status().appliedIndex - appliedBefore;
  if (appliedDelta !== proposals) throw new Error(`expected ${proposals} applied entries, the leader applied ${appliedDelta}`);
  return { commitsPerSecond: (proposals / elapsedMs) * 1000, latenciesMs };
}

async function startCluster(encode: boolean): Promise<{ leader: RaftNode<null>; stop: () => Promise<void> }> {
  const ids = ['n1', 'n2', 'n3'];
  const network = new MemoryNetwork({ encode });
  const clock = new SystemClock();
  const nodes: RaftNode<null>[] = [];
  const common: Omit<RaftNodeOptions<null>, 'id' | 'transport' | 'storage'> = {
    voters: ids,
    clock,
    stateMachine: { apply: () => null },
    tickIntervalMs: 50,
    maxPendingProposals: 100_000,
    logger: pino({ level: 'warn' }),
  };
  for (const [position, id] of ids.entries()) {
    nodes.push(await RaftNode.start({ ...common, id, transport: network.connect(nodeId(id)), storage: new MemoryStorage(), seed: position + 1 }));
  }
  const first = nodes[0];
  if (first === undefined) throw new Error('no nodes');
  first.campaign();
  const deadline = performance.now() + 10_000;
  while (first.status().role !== 'Leader') {
    if (performance.now() > deadline) throw new Error('no leader within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return {
    leader: first,
    stop: async () => {
      for (const node of nodes) await node.stop({ transferLeadership: false });
    },
  };
}
