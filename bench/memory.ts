/**
 * Memory benchmark: commits a fixed number of entries through an in-process 3-node cluster that
 * snapshots every `snapshotEveryEntries` entries, and reports the peak resident set size. With
 * snapshots and compaction, memory stays bounded however long the log grows.
 *
 * @module
 */
import { Packr } from 'msgpackr';
import { pino } from 'pino';
import { figure, type Figure } from './figures.js';
import { MemoryNetwork, MemoryStorage, RaftNode, SystemClock, nodeId, type LogIndex, type RaftNodeOptions, type StateMachine } from '../src/index.js';

/** Parameters of the memory benchmark. */
export interface MemoryBenchOptions {
  /** Entries to commit. */
  readonly entries: number;
  /** Snapshot interval in entries (every node). */
  readonly snapshotEveryEntries: number;
  /** Payload bytes per entry. */
  readonly payloadBytes: number;
  /** Proposals in flight. */
  readonly inFlight: number;
  /** Distinct keys the state machine holds (its size is bounded by this, not by the log). */
  readonly keys: number;
}

const packr = new Packr({ useRecords: false });

/**
 * A small state machine: each command overwrites one of `keys` slots with its payload's first byte
 * and bumps a counter. Its state has a fixed size, so any growth in memory would come from the log.
 */
class SlotMachine implements StateMachine<null> {
  private readonly slots: Uint8Array;
  private applied = 0;

  constructor(keys: number) {
    this.slots = new Uint8Array(keys);
  }

  apply(command: Uint8Array, index: LogIndex): null {
    this.slots[index % this.slots.length] = command[0] ?? 0;
    this.applied++;
    return null;
  }

  snapshot(): Uint8Array {
    return packr.pack([this.applied, this.slots]);
  }

  restore(data: Uint8Array): void {
    const [applied, slots] = packr.unpack(data) as [number, Uint8Array];
    this.applied = applied;
    this.slots.set(slots);
  }
}

/** Runs the benchmark, prints its figures with the command that reproduces them, and returns them. */
export async function benchMemory(options: MemoryBenchOptions, command: string, print: (line: string) => void): Promise<Figure[]> {
  const ids = ['n1', 'n2', 'n3'];
  const network = new MemoryNetwork();
  const clock = new SystemClock();
  const common: Omit<RaftNodeOptions<null>, 'id' | 'transport' | 'storage' | 'stateMachine'> = {
    voters: ids,
    clock,
    tickIntervalMs: 50,
    maxPendingProposals: 100_000,
    snapshots: { intervalEntries: options.snapshotEveryEntries },
    logger: pino({ level: 'warn' }),
  };
  const nodes: RaftNode<null>[] = [];
  for (const [position, id] of ids.entries()) {
    nodes.push(
      await RaftNode.start({ ...common, id, transport: network.connect(nodeId(id)), storage: new MemoryStorage(), stateMachine: new SlotMachine(options.keys), seed: position + 1 }),
    );
  }
  const leader = nodes[0];
  if (leader === undefined) throw new Error('no nodes');
  leader.campaign();
  const deadline = performance.now() + 10_000;
  while (leader.status().role !== 'Leader') {
    if (performance.now() > deadline) throw new Error('no leader within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }

  const startRssBytes = process.memoryUsage.rss();
  let peakRssBytes = startRssBytes;
  const sampler = setInterval(() => {
    peakRssBytes = Math.max(peakRssBytes, process.memoryUsage.rss());
  }, 20);
  const payload = new Uint8Array(options.payloadBytes).fill(7);
  const startedMs = performance.now();
  let next = 0;
  let maxLogEntries = 0;
  const worker = async (): Promise<void> => {
    while (next < options.entries) {
      next++;
      await leader.propose(payload);
      if (next % 1_000 === 0) {
        for (const node of nodes) {
          const status = node.status();
          maxLogEntries = Math.max(maxLogEntries, status.lastIndex - status.snapshotIndex);
        }
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: options.inFlight }, worker));
  } finally {
    clearInterval(sampler);
  }
  peakRssBytes = Math.max(peakRssBytes, process.memoryUsage.rss());
  const elapsedMs = performance.now() - startedMs;
  const statuses = nodes.map((node) => node.status());
  for (const node of nodes) await node.stop({ transferLeadership: false });

  const leaderStatus = statuses[0];
  if (leaderStatus === undefined || leaderStatus.appliedIndex < options.entries) {
    throw new Error(`expected at least ${options.entries} applied entries, the leader applied ${leaderStatus?.appliedIndex ?? 0}`);
  }
  const BYTES_PER_MIB = 1024 * 1024;
  const mib = (bytes: number): string => `${(bytes / BYTES_PER_MIB).toFixed(1)} MiB`;
  print(
    `in-process 3-node cluster, memory transport and storage, ${options.entries.toLocaleString('en-US')} entries of ${options.payloadBytes} bytes, ${options.inFlight} in flight, snapshot every ${options.snapshotEveryEntries.toLocaleString('en-US')} entries`,
  );
  print(`  peak RSS ${mib(peakRssBytes)} (at start ${mib(startRssBytes)}); ${Math.round((options.entries / elapsedMs) * 1000).toLocaleString('en-US')} commits/s over ${(elapsedMs / 1000).toFixed(1)} s`);
  print(`  snapshot index per node: ${statuses.map((status) => `${status.id} ${status.snapshotIndex}`).join(', ')}; most log entries held by a node at a sample: ${maxLogEntries.toLocaleString('en-US')}`);
  print(`  reproduce: ${command}`);
  const note = `${options.entries} entries of ${options.payloadBytes} bytes, ${options.inFlight} in flight, snapshot every ${options.snapshotEveryEntries} entries`;
  const item = (name: string, unit: string, value: number, target?: { readonly text: string; readonly met: boolean }): Figure =>
    figure({ suite: 'memory', name, unit, raftlease: value, etcd: null, command, note, ...(target === undefined ? {} : { target: target.text, met: target.met }) });
  return [
    // The target is for a cluster that snapshots; --no-snapshots runs only to show what compaction saves.
    item('peak RSS of the process (3 in-process nodes)', 'MiB', peakRssBytes / BYTES_PER_MIB, options.snapshotEveryEntries < options.entries ? { text: 'raftlease < 200 MB', met: peakRssBytes < 200_000_000 } : undefined),
    item('RSS at start', 'MiB', startRssBytes / BYTES_PER_MIB),
    item('commits/s while filling the log', 'commits/s', (options.entries / elapsedMs) * 1000),
    item('most log entries held by a node at a sample', 'entries', maxLogEntries),
  ];
}
