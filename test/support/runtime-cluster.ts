/** A cluster of real RaftNodes on memory transport, memory storage and one manual clock. */
import { ManualClock, MemoryNetwork, MemoryStorage, RaftNode, nodeId, type RaftNodeOptions, type StateMachine } from '../../src/index.js';

/** A state machine that records every command and returns "index:text". */
export class RecordingStateMachine implements StateMachine<string> {
  readonly commands: string[] = [];

  apply(command: Uint8Array, index: number): string {
    const text = new TextDecoder().decode(command);
    this.commands.push(text);
    return `${index}:${text}`;
  }
}

export interface RuntimeCluster {
  readonly clock: ManualClock;
  readonly network: MemoryNetwork;
  readonly ids: string[];
  readonly nodes: Map<string, RaftNode<string>>;
  readonly storages: Map<string, MemoryStorage>;
  readonly machines: Map<string, RecordingStateMachine>;
  readonly fatalErrors: Error[];
  start(id: string, overrides?: Partial<RaftNodeOptions<string>>): Promise<RaftNode<string>>;
  node(id: string): RaftNode<string>;
  leader(): RaftNode<string> | undefined;
  /** Advances virtual time until a leader exists (bounded). */
  waitForLeader(maxMs?: number): Promise<RaftNode<string>>;
  stopAll(): Promise<void>;
}

export async function startRuntimeCluster(ids: string[], options: { encode?: boolean; seed?: number } = {}): Promise<RuntimeCluster> {
  const clock = new ManualClock();
  const network = new MemoryNetwork({ encode: options.encode ?? true });
  const nodes = new Map<string, RaftNode<string>>();
  const storages = new Map<string, MemoryStorage>();
  const machines = new Map<string, RecordingStateMachine>();
  const fatalErrors: Error[] = [];
  const cluster: RuntimeCluster = {
    clock,
    network,
    ids,
    nodes,
    storages,
    machines,
    fatalErrors,
    async start(id, overrides = {}) {
      const storage = storages.get(id) ?? new MemoryStorage();
      storages.set(id, storage);
      const machine = new RecordingStateMachine();
      machines.set(id, machine);
      const node = await RaftNode.start<string>({
        id,
        voters: ids,
        transport: network.connect(nodeId(id)),
        storage,
        clock,
        stateMachine: machine,
        seed: (options.seed ?? 7) * 100 + ids.indexOf(id),
        onFatalError: (error) => fatalErrors.push(error),
        ...overrides,
      });
      nodes.set(id, node);
      return node;
    },
    node(id) {
      const node = nodes.get(id);
      if (node === undefined) throw new Error(`no node ${id}`);
      return node;
    },
    leader() {
      return [...nodes.values()].find((node) => node.status().role === 'Leader');
    },
    async waitForLeader(maxMs = 10_000) {
      for (let waited = 0; waited <= maxMs; waited += 100) {
        const leader = cluster.leader();
        if (leader !== undefined) return leader;
        await clock.advance(100);
      }
      throw new Error(`no leader within ${maxMs} ms of virtual time`);
    },
    async stopAll() {
      for (const node of nodes.values()) await node.stop({ transferLeadership: false });
    },
  };
  for (const id of ids) await cluster.start(id);
  return cluster;
}

export const text = (value: string): Uint8Array => new TextEncoder().encode(value);
