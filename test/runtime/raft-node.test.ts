import { afterEach, describe, expect, it } from 'vitest';
import { RaftLeaseError, RaftNode, ManualClock, MemoryNetwork, MemoryStorage, nodeId, ConfigError, type RaftNodeOptions, type RaftNodeStatus } from '../../src/index.js';
import { startRuntimeCluster, text, type RuntimeCluster } from '../support/runtime-cluster.js';

let cluster: RuntimeCluster | undefined;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = undefined;
});

/** Resolves `promise` while advancing virtual time in steps (bounded). */
async function settle<T>(c: RuntimeCluster, promise: Promise<T>, maxMs = 10_000): Promise<T> {
  let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  promise.then(
    (value) => (outcome = { ok: true, value }),
    (error: unknown) => (outcome = { ok: false, error }),
  );
  for (let waited = 0; outcome === undefined && waited < maxMs; waited += 10) await c.clock.advance(10);
  if (outcome === undefined) throw new Error(`not settled within ${maxMs} ms of virtual time`);
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

function roles(c: RuntimeCluster): Record<string, RaftNodeStatus['role']> {
  return Object.fromEntries([...c.nodes].map(([id, node]) => [id, node.status().role]));
}

describe('RaftNode', () => {
  it('elects exactly one leader and applies a proposal on every node, resolving with the result', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    expect(Object.values(roles(cluster)).filter((role) => role === 'Leader')).toHaveLength(1);
    const applied = await settle(cluster, leader.propose(text('x')));
    expect(applied.result).toBe(`${applied.index}:x`);
    await cluster.clock.advance(500);
    for (const machine of cluster.machines.values()) expect(machine.commands).toEqual(['x']);
    expect(cluster.fatalErrors).toEqual([]);
  });

  it('forwards a follower proposal to the leader and resolves it on the follower', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    const follower = [...cluster.nodes.values()].find((node) => node !== leader);
    if (follower === undefined) throw new Error('no follower');
    const applied = await settle(cluster, follower.propose(text('from-follower')));
    expect(applied.result).toBe(`${applied.index}:from-follower`);
    expect(leader.status().commitIndex).toBeGreaterThanOrEqual(applied.index);
  });

  it('reports status: leader tracks each follower match index', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    const applied = await settle(cluster, leader.propose(text('s')));
    await cluster.clock.advance(300);
    const status = leader.status();
    expect(status.role).toBe('Leader');
    expect(status.leader).toBe(leader.id);
    expect(status.appliedIndex).toBeGreaterThanOrEqual(applied.index);
    for (const id of cluster.ids) expect(status.followers[id]?.match).toBeGreaterThanOrEqual(applied.index);
  });

  it('elects a new leader when the old one is cut off, and the old one steps down (CheckQuorum)', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const oldLeader = await cluster.waitForLeader();
    const others = cluster.ids.filter((id) => id !== oldLeader.id).map(nodeId);
    cluster.network.isolate([oldLeader.id], others);
    await cluster.clock.advance(5_000);
    expect(oldLeader.status().role).not.toBe('Leader');
    const newLeader = cluster.leader();
    expect(newLeader).toBeDefined();
    expect(newLeader?.id).not.toBe(oldLeader.id);
    cluster.network.heal();
    const applied: unknown = await settle(cluster, oldLeader.propose(text('after-heal')), 10_000).catch((error: unknown) => error);
    // The old leader either forwards successfully or reports a typed, retryable error.
    if (applied instanceof Error) expect(applied).toBeInstanceOf(RaftLeaseError);
    else expect((applied as { result: string }).result).toContain('after-heal');
  });

  it('fails a forwarded proposal (OutcomeUnknown) and a forwarded read (ProposalDropped) as soon as the leader changes, long before their timeouts', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const oldLeader = await cluster.waitForLeader();
    const follower = [...cluster.nodes.values()].find((node) => node !== oldLeader);
    if (follower === undefined) throw new Error('no follower');
    cluster.network.isolate([oldLeader.id], cluster.ids.filter((id) => id !== oldLeader.id).map(nodeId));
    const startedMs = cluster.clock.nowMs();
    const settled: { proposal?: { error: unknown; atMs: number }; read?: { error: unknown; atMs: number } } = {};
    follower.propose(text('stranded'), { timeoutMs: 60_000 }).then(
      () => (settled.proposal = { error: null, atMs: cluster?.clock.nowMs() ?? NaN }),
      (error: unknown) => (settled.proposal = { error, atMs: cluster?.clock.nowMs() ?? NaN }),
    );
    follower.readIndex({ timeoutMs: 60_000 }).then(
      () => (settled.read = { error: null, atMs: cluster?.clock.nowMs() ?? NaN }),
      (error: unknown) => (settled.read = { error, atMs: cluster?.clock.nowMs() ?? NaN }),
    );
    for (let waited = 0; (settled.proposal === undefined || settled.read === undefined) && waited < 10_000; waited += 10) await cluster.clock.advance(10);
    // The majority elected another leader (or started an election): the old one never answered.
    expect(follower.status().leader).not.toBe(oldLeader.id);
    expect(settled.proposal?.error).toBeInstanceOf(RaftLeaseError);
    expect((settled.proposal?.error as RaftLeaseError).code).toBe('OutcomeUnknown');
    expect((settled.proposal?.error as RaftLeaseError).message).toContain(`the leader changed (was ${oldLeader.id})`);
    expect((settled.read?.error as RaftLeaseError).code).toBe('ProposalDropped');
    expect((settled.proposal?.atMs ?? Infinity) - startedMs).toBeLessThan(5_000);
    expect((settled.read?.atMs ?? Infinity) - startedMs).toBeLessThan(5_000);
  });

  it('refuses proposals with a typed error while no leader is known', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const error = await cluster.node('n1').propose(text('too-early')).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RaftLeaseError);
    expect((error as RaftLeaseError).code).toBe('ProposalDropped');
  });

  it('times out a proposal that cannot commit, with code Timeout', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    cluster.network.isolate([leader.id], cluster.ids.filter((id) => id !== leader.id).map(nodeId));
    const outcome = leader.propose(text('stranded'), { timeoutMs: 300 }).catch((caught: unknown) => caught);
    await cluster.clock.advance(400);
    const error = await outcome;
    expect(error).toBeInstanceOf(RaftLeaseError);
    expect((error as RaftLeaseError).code).toBe('Timeout');
  });

  it('rejects pending proposals with Stopped when the node stops', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    cluster.network.isolate([leader.id], cluster.ids.filter((id) => id !== leader.id).map(nodeId));
    const outcome = leader.propose(text('pending')).catch((caught: unknown) => caught);
    await leader.stop({ transferLeadership: false });
    const error = await outcome;
    expect((error as RaftLeaseError).code).toBe('Stopped');
    await expect(leader.propose(text('after'))).rejects.toMatchObject({ code: 'Stopped' });
  });

  it('keeps term, vote and log across a restart from the same storage', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    await settle(cluster, leader.propose(text('durable')));
    await cluster.clock.advance(300);
    const victim = cluster.ids.find((id) => id !== leader.id) ?? 'n1';
    const before = cluster.node(victim).status();
    await cluster.node(victim).stop();
    const restarted = await cluster.start(victim);
    expect(restarted.status().term).toBe(before.term);
    expect(restarted.status().lastIndex).toBe(before.lastIndex);
    await cluster.clock.advance(1_000);
    expect(cluster.machines.get(victim)?.commands).toEqual(['durable']);
  });

  it('stops and reports a storage failure instead of continuing', async () => {
    const clock = new ManualClock();
    const network = new MemoryNetwork();
    const storage = new MemoryStorage();
    storage.persist = () => Promise.reject(new Error('disk full'));
    const fatal: Error[] = [];
    const node = await RaftNode.start({
      id: 'solo',
      voters: ['solo'],
      transport: network.connect(nodeId('solo')),
      storage,
      clock,
      stateMachine: { apply: () => null },
      seed: 1,
      onFatalError: (error) => fatal.push(error),
    });
    await clock.advance(3_000);
    expect(fatal).toHaveLength(1);
    expect((fatal[0] as RaftLeaseError).code).toBe('StorageFailed');
    expect(node.status().role).toBe('Stopped');
    await expect(node.propose(text('x'))).rejects.toMatchObject({ code: 'Stopped' });
  });

  it('validates options with a ConfigError naming the field', async () => {
    const network = new MemoryNetwork();
    const start = (overrides: Partial<RaftNodeOptions<null>>): Promise<RaftNode<null>> =>
      RaftNode.start<null>({
        id: 'n1',
        voters: ['n1'],
        transport: network.connect(nodeId('n1')),
        storage: new MemoryStorage(),
        clock: new ManualClock(),
        stateMachine: { apply: () => null },
        ...overrides,
      });
    await expect(start({ tickIntervalMs: 0 })).rejects.toMatchObject({ field: 'tickIntervalMs' });
    await expect(start({ voters: ['n1', 'n1'] })).rejects.toBeInstanceOf(ConfigError);
    await expect(start({ snapshots: { intervalEntries: 10 } })).rejects.toMatchObject({ field: 'snapshots' });
  });

  it('a single-node cluster commits on its own', async () => {
    const clock = new ManualClock();
    const node = await RaftNode.start({
      id: 'solo',
      voters: ['solo'],
      transport: new MemoryNetwork().connect(nodeId('solo')),
      storage: new MemoryStorage(),
      clock,
      stateMachine: { apply: (command: Uint8Array) => command.byteLength },
      seed: 3,
    });
    await clock.advance(2_500);
    expect(node.status().role).toBe('Leader');
    const outcome = node.propose(new Uint8Array(5));
    await clock.advance(10);
    await expect(outcome).resolves.toMatchObject({ result: 5 });
    await node.stop();
  });
});

describe('RaftNode message timing', () => {
  it('flushes new entries before the leader\'s own write and acknowledgements before applying, and leaves commit notifications until after the apply', async () => {
    const ids = ['n1', 'n2', 'n3'];
    const clock = new ManualClock();
    const network = new MemoryNetwork({ encode: true });
    const events: string[] = [];
    const nodes: RaftNode<string>[] = [];
    for (const id of ids) {
      const inner = network.connect(nodeId(id));
      const storage = new MemoryStorage();
      nodes.push(
        await RaftNode.start<string>({
          id,
          voters: ids,
          clock,
          seed: ids.indexOf(id) + 1,
          transport: {
            listen: (handler) => {
              inner.listen((message) => {
                events.push(`${id} recv ${message.type}`);
                handler(message);
              });
            },
            send: (message) => {
              events.push(`${id} send ${message.type}${message.type === 'AppendRequest' && message.entries.length > 0 ? ' with entries' : ''}`);
              inner.send(message);
            },
            flush: () => events.push(`${id} flush`),
            close: () => inner.close(),
          },
          storage: {
            load: () => storage.load(),
            persist: (batch) => {
              events.push(`${id} persist`);
              return storage.persist(batch);
            },
            saveSnapshot: (snapshot, compactIndex) => storage.saveSnapshot(snapshot, compactIndex),
            close: () => storage.close(),
          },
          stateMachine: {
            apply: (command) => {
              const value = new TextDecoder().decode(command);
              events.push(`${id} apply ${value}`);
              return value;
            },
          },
        }),
      );
    }
    try {
      let leader: RaftNode<string> | undefined;
      for (let waited = 0; leader === undefined && waited < 10_000; waited += 100) {
        await clock.advance(100);
        leader = nodes.find((node) => node.status().role === 'Leader');
      }
      if (leader === undefined) throw new Error('no leader');
      const leaderId = leader.id;
      const followerIds = ids.filter((id) => id !== leaderId);
      await clock.advance(200);
      events.length = 0;
      const proposed = leader.propose(text('x'));
      for (let waited = 0; waited < 1_000 && !events.includes(`${leaderId} apply x`); waited += 10) await clock.advance(10);
      await proposed;
      for (const id of followerIds) for (let waited = 0; waited < 1_000 && !events.includes(`${id} apply x`); waited += 10) await clock.advance(10);
      const of = (id: string): string[] => events.filter((event) => event.startsWith(`${id} `)).map((event) => event.slice(id.length + 1));
      // Leader: both followers' entries, then a flush, then its own write (thesis §10.2.1).
      expect(of(leaderId).slice(0, 4)).toEqual(['send AppendRequest with entries', 'send AppendRequest with entries', 'flush', 'persist']);
      // Followers: the write, the acknowledgement, a flush — before anything is applied.
      for (const id of followerIds) {
        const followerEvents = of(id);
        const persisted = followerEvents.indexOf('persist');
        expect(followerEvents.slice(persisted, persisted + 3)).toEqual(['persist', 'send AppendResponse', 'flush']);
        expect(followerEvents.indexOf('apply x')).toBeGreaterThan(persisted + 2);
      }
      // Leader: the commit notifications of the Ready that applies x, and no flush behind the apply
      // (until the next input starts another loop).
      const leaderEvents = of(leaderId);
      const applied = leaderEvents.indexOf('apply x');
      expect(leaderEvents.slice(applied - 2, applied)).toEqual(['send AppendRequest', 'send AppendRequest']);
      expect(leaderEvents[applied + 1]).not.toBe('flush');
    } finally {
      for (const node of nodes) await node.stop({ transferLeadership: false });
    }
  });
});

describe('RaftNode.readIndex', () => {
  it('on the leader and on a follower, resolves only after the node applied every write that completed before it', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    const follower = [...cluster.nodes.values()].find((node) => node !== leader);
    if (follower === undefined) throw new Error('no follower');
    const written = await settle(cluster, leader.propose(text('w1')));
    for (const node of [leader, follower]) {
      const index = await settle(cluster, node.readIndex());
      expect(index).toBeGreaterThanOrEqual(written.index);
      expect(node.status().appliedIndex).toBeGreaterThanOrEqual(index);
      expect(cluster.machines.get(node.id)?.commands).toContain('w1');
    }
  });

  it('a leader cut off from the others cannot serve a read: it times out or is refused', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    cluster.network.isolate([leader.id], cluster.ids.filter((id) => id !== leader.id).map(nodeId));
    const outcome = leader.readIndex({ timeoutMs: 3_000 }).catch((caught: unknown) => caught);
    await cluster.clock.advance(4_000);
    const error = await outcome;
    expect(error).toBeInstanceOf(RaftLeaseError);
    expect(['Timeout', 'NotLeader']).toContain((error as RaftLeaseError).code);
  });

  it('refusal errors carry a stack trace unless refusalStackTraces is false, which changes nothing else', async () => {
    const network = new MemoryNetwork();
    const refusal = async (refusalStackTraces: boolean | undefined): Promise<RaftLeaseError> => {
      const id = refusalStackTraces === undefined ? 'default' : String(refusalStackTraces);
      const node = await RaftNode.start<null>({
        id,
        // Two silent peers: no leader is ever known, so every proposal is refused.
        voters: [id, `${id}-peer-1`, `${id}-peer-2`],
        transport: network.connect(nodeId(id)),
        storage: new MemoryStorage(),
        clock: new ManualClock(),
        stateMachine: { apply: () => null },
        ...(refusalStackTraces === undefined ? {} : { refusalStackTraces }),
      });
      const error = await node.propose(text('x')).catch((caught: unknown) => caught);
      await node.stop();
      expect(error).toBeInstanceOf(RaftLeaseError);
      return error as RaftLeaseError;
    };
    const limitBefore = Error.stackTraceLimit;
    for (const withStack of [await refusal(undefined), await refusal(true)]) {
      expect(withStack.code).toBe('ProposalDropped');
      expect(withStack.stack).toMatch(/\n\s+at /);
    }
    const withoutStack = await refusal(false);
    const reference = await refusal(undefined);
    expect(withoutStack).toMatchObject({ code: 'ProposalDropped', name: 'ProposalDroppedError', message: reference.message });
    expect(withoutStack.stack).toBe(`ProposalDroppedError: ${reference.message}`);
    expect(Error.stackTraceLimit, 'the global limit is restored').toBe(limitBefore);
  });

  it('is refused with ProposalDropped while no leader is known', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    await expect(cluster.node('n1').readIndex()).rejects.toMatchObject({ code: 'ProposalDropped' });
  });
});

describe('RaftNode leadership transfer', () => {
  it('transferLeadership() hands over to the chosen follower and resolves when it leads', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    const target = cluster.ids.find((id) => id !== leader.id) ?? '';
    await settle(cluster, leader.transferLeadership(target));
    expect(cluster.node(target).status().role).toBe('Leader');
    expect(leader.status().role).toBe('Follower');
  });

  it('stop() on a leader hands leadership over first, without waiting for an election timeout', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    const stoppedAt = cluster.clock.nowMs();
    await settle(cluster, leader.stop());
    const successor = [...cluster.nodes.values()].find((node) => node !== leader && node.status().role === 'Leader');
    expect(successor).toBeDefined();
    // A transfer takes a few message delays; an election would take at least 1 s (10 ticks of 100 ms).
    expect(cluster.clock.nowMs() - stoppedAt).toBeLessThan(1_000);
  });

  it('rejects with NotLeader on a follower', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    const follower = [...cluster.nodes.values()].find((node) => node !== leader);
    await expect(follower?.transferLeadership()).rejects.toMatchObject({ code: 'NotLeader' });
  });
});

describe('abort signals', () => {
  it('an aborted wait rejects with the signal’s reason; an already-aborted signal refuses at once', async () => {
    cluster = await startRuntimeCluster(['n1', 'n2', 'n3']);
    const leader = await cluster.waitForLeader();
    cluster.network.isolate([leader.id], cluster.ids.filter((id) => id !== leader.id).map(nodeId));
    const controller = new AbortController();
    const outcome = leader.propose(text('stuck'), { signal: controller.signal }).catch((caught: unknown) => caught);
    controller.abort(new Error('caller gave up'));
    expect(await outcome).toMatchObject({ message: 'caller gave up' });
    expect(leader.status().pendingProposals).toBe(0);
    await expect(leader.readIndex({ signal: controller.signal })).rejects.toMatchObject({ message: 'caller gave up' });
  });
});
