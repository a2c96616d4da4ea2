/**
 * `raftlease demo`: a real three-node cluster in one process (memory transport with the wire codec,
 * memory storage, the system clock). It elects a leader, commits proposals from every node, cuts the
 * leader off, shows a new leader taking over, heals, and prints each step.
 *
 * @module
 */
import { pino } from 'pino';
import { MemoryNetwork, MemoryStorage, RaftNode, SystemClock, nodeId, type NodeId, type StateMachine } from '../index.js';

/** A replicated counter per key: `incr key` adds one and returns the new value. */
class CounterStateMachine implements StateMachine<number> {
  private readonly counters = new Map<string, number>();

  apply(command: Uint8Array): number {
    const [verb, key] = new TextDecoder().decode(command).split(' ');
    if (verb !== 'incr' || key === undefined) return -1;
    const value = (this.counters.get(key) ?? 0) + 1;
    this.counters.set(key, value);
    return value;
  }

  value(key: string): number {
    return this.counters.get(key) ?? 0;
  }
}

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Where to print progress. */
  readonly print: (line: string) => void;
  /** Milliseconds per Raft tick. */
  readonly tickIntervalMs: number;
}

/** Longest the demo waits for any one step, in milliseconds. */
const STEP_DEADLINE_MS = 15_000;

/** Runs the demo; resolves when the cluster has stopped. Throws if a step does not happen in time. */
export async function runDemo(options: DemoOptions): Promise<void> {
  const { print } = options;
  const ids = ['n1', 'n2', 'n3'];
  const clock = new SystemClock();
  const network = new MemoryNetwork({ encode: true });
  const logger = pino({ level: 'warn' });
  const machines = new Map<string, CounterStateMachine>();
  const nodes = new Map<string, RaftNode<number>>();
  for (const id of ids) {
    const machine = new CounterStateMachine();
    machines.set(id, machine);
    nodes.set(
      id,
      await RaftNode.start<number>({
        id,
        voters: ids,
        transport: network.connect(nodeId(id)),
        storage: new MemoryStorage(),
        clock,
        stateMachine: machine,
        tickIntervalMs: options.tickIntervalMs,
        logger,
      }),
    );
  }
  const started = clock.nowMs();
  const elapsed = (): string => `${String(Math.round(clock.nowMs() - started)).padStart(5)} ms`;
  print(`${elapsed()}  started ${ids.join(', ')} (tick ${options.tickIntervalMs} ms, election timeout ${10 * options.tickIntervalMs}–${20 * options.tickIntervalMs} ms)`);

  try {
    const leader = await waitForLeader(nodes, null);
    print(`${elapsed()}  ${leader} elected leader in term ${must(nodes, leader).status().term}`);

    for (const id of ids) {
      const applied = await must(nodes, id).propose(new TextEncoder().encode('incr jobs'));
      print(`${elapsed()}  ${id} proposed "incr jobs" -> committed at index ${applied.index}, counter = ${applied.result}${id === leader ? '' : ` (forwarded to ${leader})`}`);
    }

    print(`${elapsed()}  cutting ${leader} off from the others`);
    network.isolate([nodeId(leader)], ids.filter((id) => id !== leader).map(nodeId));
    const successor = await waitForLeader(nodes, leader);
    print(`${elapsed()}  ${successor} elected leader in term ${must(nodes, successor).status().term}; ${leader} still believes it leads term ${must(nodes, leader).status().term}`);
    await waitUntil(() => must(nodes, leader).status().role !== 'Leader', `${leader} steps down`);
    print(`${elapsed()}  ${leader} stepped down: it heard from no quorum for an election timeout (CheckQuorum)`);
    const applied = await must(nodes, successor).propose(new TextEncoder().encode('incr jobs'));
    print(`${elapsed()}  ${successor} proposed "incr jobs" -> committed at index ${applied.index}, counter = ${applied.result}`);

    print(`${elapsed()}  healing the partition`);
    network.heal();
    await waitUntil(() => ids.every((id) => must(nodes, id).status().appliedIndex >= applied.index), 'every node catches up');
    for (const id of ids) {
      const status = must(nodes, id).status();
      print(`${elapsed()}  ${id}: ${status.role.padEnd(8)} term ${status.term}, commit ${status.commitIndex}, applied ${status.appliedIndex}, counter = ${machines.get(id)?.value('jobs')}`);
    }
    const current = [...nodes.entries()].find(([, node]) => node.status().role === 'Leader');
    if (current !== undefined) {
      const [leaderId, leaderNode] = current;
      await leaderNode.stop();
      const next = [...nodes.entries()].find(([id, node]) => id !== leaderId && node.status().role === 'Leader');
      print(`${elapsed()}  ${leaderId} stopped after handing leadership to ${next?.[0] ?? 'nobody (transfer did not complete)'} (leadership transfer, no election timeout)`);
    }
  } finally {
    for (const node of nodes.values()) await node.stop({ transferLeadership: false });
    print(`${elapsed()}  stopped`);
  }
}

function must(nodes: Map<string, RaftNode<number>>, id: string): RaftNode<number> {
  const node = nodes.get(id);
  if (node === undefined) throw new Error(`no node ${id}`);
  return node;
}

async function waitForLeader(nodes: Map<string, RaftNode<number>>, other: NodeId | string | null): Promise<string> {
  let found: string | undefined;
  await waitUntil(() => {
    const leaders = [...nodes.entries()].filter(([id, node]) => id !== other && node.status().role === 'Leader');
    found = leaders[0]?.[0];
    return found !== undefined;
  }, 'a leader is elected');
  return found ?? '';
}

async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + STEP_DEADLINE_MS;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${STEP_DEADLINE_MS} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
