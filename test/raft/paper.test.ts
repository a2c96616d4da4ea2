/**
 * One test per rule of the Raft paper (Ongaro & Ousterhout 2014, Figure 2 and §5) and of the
 * thesis rules the core implements (pre-vote §9.6, check-quorum §6.2), plus the core's own limits.
 *
 * Each `describe` names the section, each `it` states the rule. Tests either step one {@link RawNode}
 * with hand-written messages (to look at a single reaction and its {@link Ready}) or drive a
 * {@link TestCluster} by hand (to look at a protocol exchange). Nothing runs on its own: every tick,
 * delivery and drop is written in the test.
 */
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  EntryType,
  RawNode,
  SeededPrng,
  logIndex,
  nodeId,
  randomIntBelow,
  resolveRaftConfig,
  term,
  type AppendRequest,
  type Entry,
  type Message,
  type NodeId,
  type RaftOptions,
  type Ready,
  type VoteRequest,
} from '../../src/raft/index.js';
import { TestCluster, describeMessage, drain, type StoredState } from '../support/cluster.js';

// ---------------------------------------------------------------------------------------------
// Bounds and fixtures

/** Most Ready batches one drain handles; a node needing more is stuck in a loop. */
/** Most delivery rounds of a selective delivery before we call the network non-quiescent. */
/** Election timeout used where the test counts ticks. */
const ELECTION_TIMEOUT_TICKS = 10;
const THREE = ['n1', 'n2', 'n3'] as const;
const FIVE = ['n1', 'n2', 'n3', 'n4', 'n5'] as const;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string): Uint8Array => encoder.encode(text);

function must<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`missing ${what}`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Log fixtures. A normal entry's payload is "index@term", so two logs that agree on (index, term)
// hold byte-identical entries, as the Log Matching Property says they must.

function entry(index: number, entryTerm: number): Entry {
  return { index: logIndex(index), term: term(entryTerm), type: EntryType.Normal, data: bytes(`${index}@${entryTerm}`) };
}

/** A log whose entry i+1 has term `terms[i]`. */
function logOf(terms: readonly number[]): Entry[] {
  return terms.map((entryTerm, position) => entry(position + 1, entryTerm));
}

/** The terms of a node's in-memory log, index 1 first. */
function termsOf(node: RawNode): number[] {
  const terms: number[] = [];
  const last = node.raft.log.lastIndex();
  for (let index = 1; index <= last; index++) terms.push(must(node.raft.log.termAt(logIndex(index)), `term at ${index}`));
  return terms;
}

// ---------------------------------------------------------------------------------------------
// One node, stepped by hand

interface NodeSetup {
  readonly id?: string;
  readonly voters?: readonly string[];
  /** Terms of the stored log, index 1 first. */
  readonly logTerms?: readonly number[];
  /** Stored current term; defaults to the last log term. */
  readonly currentTerm?: number;
  readonly vote?: string;
  readonly commit?: number;
  readonly options?: Partial<RaftOptions>;
  readonly seed?: number;
}

function makeNode(setup: NodeSetup = {}): RawNode {
  const entries = logOf(setup.logTerms ?? []);
  const config = resolveRaftConfig({
    id: nodeId(setup.id ?? 'n1'),
    voters: (setup.voters ?? THREE).map(nodeId),
    ...setup.options,
  });
  return new RawNode({
    config,
    prng: new SeededPrng(setup.seed ?? 1),
    hardState: {
      term: term(setup.currentTerm ?? entries.at(-1)?.term ?? 0),
      vote: setup.vote === undefined ? null : nodeId(setup.vote),
      commit: logIndex(setup.commit ?? 0),
    },
    entries,
    applied: logIndex(0),
  });
}


function stepAndDrain(node: RawNode, message: Message): Ready[] {
  node.step(message);
  return drain(node);
}

const sentNow = (readys: readonly Ready[]): Message[] => readys.flatMap((ready) => ready.messages);
const sentAfterPersist = (readys: readonly Ready[]): Message[] => readys.flatMap((ready) => ready.messagesAfterPersist);
const allSent = (readys: readonly Ready[]): Message[] => [...sentNow(readys), ...sentAfterPersist(readys)];

function ofType<T extends Message['type']>(messages: readonly Message[], type: T): Extract<Message, { type: T }>[] {
  return messages.filter((message): message is Extract<Message, { type: T }> => message.type === type);
}

function voteRequest(fields: {
  from: string;
  to: string;
  term: number;
  lastLogIndex: number;
  lastLogTerm: number;
  preVote?: boolean;
}): VoteRequest {
  return {
    type: 'VoteRequest',
    from: nodeId(fields.from),
    to: nodeId(fields.to),
    term: term(fields.term),
    preVote: fields.preVote ?? false,
    lastLogIndex: logIndex(fields.lastLogIndex),
    lastLogTerm: term(fields.lastLogTerm),
    leadershipTransfer: false,
  };
}

function appendRequest(fields: {
  from: string;
  to: string;
  term: number;
  prevLogIndex: number;
  prevLogTerm: number;
  entries?: readonly Entry[];
  leaderCommit?: number;
}): AppendRequest {
  return {
    type: 'AppendRequest',
    from: nodeId(fields.from),
    to: nodeId(fields.to),
    term: term(fields.term),
    prevLogIndex: logIndex(fields.prevLogIndex),
    prevLogTerm: term(fields.prevLogTerm),
    entries: fields.entries ?? [],
    leaderCommit: logIndex(fields.leaderCommit ?? 0),
  };
}

// ---------------------------------------------------------------------------------------------
// Clusters, driven by hand

const involves =
  (id: string) =>
  (message: Message): boolean =>
    message.from === id || message.to === id;


function electLeader(cluster: TestCluster, id: string): void {
  cluster.campaign(id);
  cluster.deliverAll();
  expect(cluster.leaders()).toEqual([id]);
}

/** One tick on every node, then everything delivered. */
function tickAll(cluster: TestCluster, ids: readonly string[], times = 1): void {
  for (let round = 0; round < times; round++) {
    for (const id of ids) cluster.tick(id);
    cluster.deliverAll();
  }
}

/** Replaces what a node stored and restarts it from there. */
function seedNode(cluster: TestCluster, id: string, logTerms: readonly number[], fields: { term: number; vote?: string; commit?: number }): RawNode {
  const stored = must(cluster.stored.get(nodeId(id)), `stored state of ${id}`);
  stored.entries = logOf(logTerms);
  stored.hardState = {
    term: term(fields.term),
    vote: fields.vote === undefined ? null : nodeId(fields.vote),
    commit: logIndex(fields.commit ?? 0),
  };
  return cluster.start(id);
}

/** A Ready collected by a cluster node, with what that node had made durable when it was collected. */
interface ObservedReady {
  readonly node: NodeId;
  readonly ready: Ready;
  readonly durableBefore: StoredState;
}

/** What is durable once the Ready's writes are done (the cluster's storage rule). */
function durableAfter(observed: ObservedReady): StoredState {
  const entries = observed.durableBefore.entries.slice();
  const first = observed.ready.entries[0];
  if (first !== undefined) {
    entries.length = first.index - 1;
    entries.push(...observed.ready.entries);
  }
  return { hardState: observed.ready.hardState ?? observed.durableBefore.hardState, snapshot: null, entries };
}

/** Records every Ready the cluster collects from these nodes (until they are restarted). */
function observeReadys(cluster: TestCluster, ids: readonly string[]): ObservedReady[] {
  const observed: ObservedReady[] = [];
  for (const id of ids) {
    const node = cluster.node(id);
    const stored = must(cluster.stored.get(nodeId(id)), `stored state of ${id}`);
    const collect = node.ready.bind(node);
    node.ready = (): Ready => {
      const durableBefore: StoredState = { hardState: stored.hardState, snapshot: stored.snapshot, entries: stored.entries.slice() };
      const ready = collect();
      observed.push({ node: nodeId(id), ready, durableBefore });
      return ready;
    };
  }
  return observed;
}

/** Ticks one node (nothing delivered) until it sends a (pre-)vote request; returns the tick count. */
function ticksUntilCampaign(cluster: TestCluster, id: string, limit: number): number {
  for (let ticks = 1; ticks <= limit; ticks++) {
    cluster.tick(id);
    if (cluster.queue.some((message) => message.type === 'VoteRequest' && message.from === id)) return ticks;
  }
  throw new Error(`${id} did not campaign within ${limit} ticks`);
}

function configErrorOf(build: () => unknown): ConfigError {
  try {
    build();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError, but the configuration was accepted');
}

// ---------------------------------------------------------------------------------------------
// A random schedule, for the rules that must hold after every step of every run.

interface ScheduleRecord {
  /** Every persisted hard state of every node, in order. */
  readonly hardStates: Map<string, { term: number; vote: NodeId | null }[]>;
  /** Leaders seen, by term. */
  readonly leadersByTerm: Map<number, Set<string>>;
  /** For each applied index, the payload every node applied there. */
  readonly appliedByIndex: Map<number, Set<string>>;
  restarts: number;
  maxTerm: number;
}

function runRandomSchedule(seed: number, steps: number): ScheduleRecord {
  const cluster = new TestCluster(FIVE, { seed, electionTimeoutTicks: 5 });
  const prng = new SeededPrng(seed);
  const pick = <T>(items: readonly T[]): T => must(items[randomIntBelow(prng, items.length)], 'random pick');
  const record: ScheduleRecord = {
    hardStates: new Map(FIVE.map((id) => [id, []])),
    leadersByTerm: new Map(),
    appliedByIndex: new Map(),
    restarts: 0,
    maxTerm: 0,
  };
  let requestId = 0;
  for (let step = 0; step < steps; step++) {
    const action = randomIntBelow(prng, 100);
    if (action < 40) {
      cluster.tick(pick(FIVE));
    } else if (action < 75) {
      for (let count = randomIntBelow(prng, 8); count >= 0 && cluster.queue.length > 0; count--) {
        const [message] = cluster.queue.splice(randomIntBelow(prng, cluster.queue.length), 1);
        if (message !== undefined) cluster.deliverOne(message);
      }
    } else if (action < 80) {
      cluster.queue.splice(randomIntBelow(prng, Math.max(cluster.queue.length, 1)), 1);
    } else if (action < 88) {
      const id = pick(FIVE);
      requestId++;
      cluster.node(id).propose(bytes(`p${requestId}`), requestId);
      cluster.flush(id);
    } else if (action < 91) {
      const isolated = FIVE.filter(() => randomIntBelow(prng, 3) === 0);
      cluster.partition(isolated, FIVE.filter((id) => !isolated.includes(id)));
    } else if (action < 95) {
      cluster.heal();
    } else if (action < 97) {
      cluster.start(pick(FIVE));
      record.restarts++;
    } else {
      cluster.deliverAll();
    }
    for (const id of FIVE) {
      const stored = must(cluster.stored.get(nodeId(id)), `stored state of ${id}`);
      must(record.hardStates.get(id), 'history').push({ term: stored.hardState.term, vote: stored.hardState.vote });
      record.maxTerm = Math.max(record.maxTerm, stored.hardState.term);
      const status = cluster.node(id).status();
      if (status.role === 'Leader') {
        const leaders = record.leadersByTerm.get(status.term) ?? new Set<string>();
        leaders.add(id);
        record.leadersByTerm.set(status.term, leaders);
      }
      for (const applied of cluster.applied.get(nodeId(id)) ?? []) {
        const seen = record.appliedByIndex.get(applied.index) ?? new Set<string>();
        seen.add(`${applied.term}:${decoder.decode(applied.data)}`);
        record.appliedByIndex.set(applied.index, seen);
      }
    }
  }
  return record;
}

const SCHEDULE_SEEDS = [1, 2, 3, 4, 5, 6, 7, 8];
const SCHEDULE_STEPS = 1500;
const schedules = new Map<number, ScheduleRecord>();
function schedule(seed: number): ScheduleRecord {
  const cached = schedules.get(seed);
  if (cached !== undefined) return cached;
  const record = runRandomSchedule(seed, SCHEDULE_STEPS);
  schedules.set(seed, record);
  return record;
}

// =============================================================================================

describe('§5.1 terms', () => {
  it('a leader that sees a higher term in a response reverts to follower and adopts the term', () => {
    const cluster = new TestCluster(THREE);
    electLeader(cluster, 'n1');
    cluster.deliverOne({
      type: 'AppendResponse',
      from: nodeId('n2'),
      to: nodeId('n1'),
      term: term(5),
      success: false,
      index: logIndex(1),
      rejectHintIndex: logIndex(0),
      rejectHintTerm: term(0),
    });
    const status = cluster.node('n1').status();
    expect(status.role).toBe('Follower');
    expect(status.term).toBe(5);
    expect(status.leader).toBeNull();
    // The new term is persisted, with no vote in it yet.
    expect(must(cluster.stored.get(nodeId('n1')), 'n1 stored').hardState).toMatchObject({ term: 5, vote: null });
  });

  it('a candidate that sees a higher term in a vote response reverts to follower and adopts the term', () => {
    const node = makeNode({ options: { preVote: false } });
    node.campaign();
    drain(node);
    expect(node.status()).toMatchObject({ role: 'Candidate', term: 1 });
    stepAndDrain(node, { type: 'VoteResponse', from: nodeId('n2'), to: nodeId('n1'), term: term(4), preVote: false, granted: false });
    expect(node.status()).toMatchObject({ role: 'Follower', term: 4, vote: null });
  });

  it('a follower that sees a higher-term AppendEntries adopts the term and follows its sender', () => {
    const node = makeNode({ logTerms: [1], currentTerm: 2 });
    const readys = stepAndDrain(node, appendRequest({ from: 'n2', to: 'n1', term: 7, prevLogIndex: 1, prevLogTerm: 1 }));
    expect(node.status()).toMatchObject({ role: 'Follower', term: 7, leader: 'n2' });
    expect(readys.map((ready) => ready.hardState).find((hardState) => hardState !== null)).toMatchObject({ term: 7 });
  });

  it('a vote request with a stale term is not granted and changes nothing', () => {
    const node = makeNode({ logTerms: [1, 1], currentTerm: 3 });
    const readys = stepAndDrain(node, voteRequest({ from: 'n2', to: 'n1', term: 2, lastLogIndex: 10, lastLogTerm: 2 }));
    expect(ofType(allSent(readys), 'VoteResponse').filter((response) => response.granted)).toEqual([]);
    expect(node.status()).toMatchObject({ term: 3, vote: null, role: 'Follower' });
    expect(readys.every((ready) => ready.hardState === null)).toBe(true);
  });

  it('an AppendEntries with a stale term is rejected with the current term and changes nothing', () => {
    const node = makeNode({ logTerms: [1, 1], currentTerm: 3 });
    const readys = stepAndDrain(
      node,
      appendRequest({ from: 'n2', to: 'n1', term: 2, prevLogIndex: 2, prevLogTerm: 1, entries: [entry(3, 2)], leaderCommit: 3 }),
    );
    expect(termsOf(node)).toEqual([1, 1]);
    expect(node.status()).toMatchObject({ term: 3, leader: null, commitIndex: 0 });
    const responses = ofType(allSent(readys), 'AppendResponse');
    // The reply carries the current term so the stale leader learns it is stale (Figure 2).
    expect(responses).toHaveLength(1);
    expect(responses[0]).toMatchObject({ to: 'n2', success: false, term: 3 });
  });

  it('a heartbeat with a stale term neither advances the commit index nor names a leader', () => {
    const node = makeNode({ logTerms: [1, 1], currentTerm: 3 });
    stepAndDrain(node, { type: 'Heartbeat', from: nodeId('n2'), to: nodeId('n1'), term: term(2), commit: logIndex(2), context: 0 });
    expect(node.status()).toMatchObject({ term: 3, leader: null, commitIndex: 0 });
  });

  it.each(SCHEDULE_SEEDS)('the persisted term never decreases, across crashes and restarts (random schedule, seed %i)', (seed) => {
    const record = schedule(seed);
    // The schedule must have exercised what the rule is about.
    expect(record.maxTerm, `seed ${seed}`).toBeGreaterThan(2);
    expect(record.restarts, `seed ${seed}`).toBeGreaterThan(0);
    for (const [id, history] of record.hardStates) {
      for (let step = 1; step < history.length; step++) {
        const before = must(history[step - 1], 'previous hard state');
        const after = must(history[step], 'hard state');
        expect(after.term, `seed ${seed}, ${id}, step ${step}`).toBeGreaterThanOrEqual(before.term);
      }
    }
  });
});

describe('§5.2 leader election', () => {
  it('a follower that hears from no leader starts an election after between electionTimeoutTicks and 2·electionTimeoutTicks ticks', () => {
    const observed = new Set<number>();
    for (let seed = 1; seed <= 30; seed++) {
      const cluster = new TestCluster(THREE, { seed, electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
      const ticks = ticksUntilCampaign(cluster, 'n1', 4 * ELECTION_TIMEOUT_TICKS);
      expect(ticks, `seed ${seed}`).toBeGreaterThanOrEqual(ELECTION_TIMEOUT_TICKS);
      expect(ticks, `seed ${seed}`).toBeLessThan(2 * ELECTION_TIMEOUT_TICKS);
      observed.add(ticks);
    }
    // Drawn at random, not a constant.
    expect(observed.size).toBeGreaterThan(3);
  });

  it('election timeouts are randomized per node, and the same seed draws the same timeouts', () => {
    const draw = (seed: number): number[] => {
      const cluster = new TestCluster(FIVE, { seed, electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
      return FIVE.map((id) => ticksUntilCampaign(cluster, id, 4 * ELECTION_TIMEOUT_TICKS));
    };
    const first = draw(3);
    expect(new Set(first).size).toBeGreaterThan(1);
    expect(draw(3)).toEqual(first);
  });

  it('a follower that keeps hearing from the leader never starts an election', () => {
    const cluster = new TestCluster(THREE, { electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
    electLeader(cluster, 'n1');
    tickAll(cluster, THREE, 10 * ELECTION_TIMEOUT_TICKS);
    expect(cluster.leaders()).toEqual(['n1']);
    for (const id of THREE) expect(cluster.node(id).status().term).toBe(1);
    expect(cluster.trace.filter((line) => line.includes('VoteRequest') && !line.startsWith('n1->'))).toEqual([]);
  });

  it('a candidate increments its term and votes for itself, and sends vote requests only after persisting that vote', () => {
    const node = makeNode({ options: { preVote: false } });
    node.campaign();
    const ready = node.ready();
    expect(node.status()).toMatchObject({ role: 'Candidate', term: 1, vote: 'n1' });
    expect(ready.hardState).toEqual({ term: 1, vote: 'n1', commit: 0 });
    expect(ready.mustPersist).toBe(true);
    expect(ofType(ready.messages, 'VoteRequest')).toEqual([]);
    const requests = ofType(ready.messagesAfterPersist, 'VoteRequest');
    expect(requests.map((request) => request.to).sort()).toEqual(['n2', 'n3']);
    for (const request of requests) expect(request).toMatchObject({ term: 1, preVote: false, lastLogIndex: 0, lastLogTerm: 0 });
    node.advance();
  });

  it('after winning the pre-vote, the candidate persists its term and self-vote before its vote requests go out', () => {
    const node = makeNode();
    node.campaign();
    drain(node);
    node.step({ type: 'VoteResponse', from: nodeId('n2'), to: nodeId('n1'), term: term(1), preVote: true, granted: true });
    const ready = node.ready();
    expect(ready.hardState).toEqual({ term: 1, vote: 'n1', commit: 0 });
    expect(ofType(ready.messages, 'VoteRequest')).toEqual([]);
    expect(ofType(ready.messagesAfterPersist, 'VoteRequest').map((request) => [request.to, request.term, request.preVote])).toEqual([
      ['n2', 1, false],
      ['n3', 1, false],
    ]);
    node.advance();
  });

  it('a candidate wins with votes from a majority of the cluster, and not with fewer', () => {
    const cluster = new TestCluster(FIVE, { preVote: false });
    cluster.campaign('n1');
    cluster.deliverWhere(involves('n2'));
    // Itself and n2: 2 of 5.
    expect(cluster.node('n1').status().role).toBe('Candidate');
    cluster.deliverWhere(involves('n3'));
    // Itself, n2 and n3: 3 of 5, a majority, while n4 and n5 have not answered.
    expect(cluster.node('n1').status()).toMatchObject({ role: 'Leader', term: 1 });
    expect(cluster.queue.some((message) => message.type === 'VoteRequest' && message.to === 'n4')).toBe(true);
  });

  it('a candidate that receives AppendEntries from a leader of its own term becomes that leader’s follower', () => {
    const cluster = new TestCluster(THREE, { preVote: false });
    cluster.campaign('n1');
    cluster.campaign('n2');
    expect(cluster.node('n2').status()).toMatchObject({ role: 'Candidate', term: 1 });
    cluster.deliverWhere((message) => involves('n1')(message) && involves('n3')(message));
    expect(cluster.node('n1').status()).toMatchObject({ role: 'Leader', term: 1 });
    const append = cluster.take((message) => message.type === 'AppendRequest' && message.to === 'n2');
    expect(append.term).toBe(1);
    cluster.deliverOne(append);
    expect(cluster.node('n2').status()).toMatchObject({ role: 'Follower', term: 1, leader: 'n1' });
  });

  it('each server votes for at most one candidate per term, first come first served, and remembers it across a restart', () => {
    const cluster = new TestCluster(THREE, { preVote: false });
    cluster.campaign('n1');
    cluster.campaign('n2');
    const fromN1 = cluster.take((message) => message.type === 'VoteRequest' && message.from === 'n1' && message.to === 'n3');
    const fromN2 = cluster.take((message) => message.type === 'VoteRequest' && message.from === 'n2' && message.to === 'n3');
    expect(fromN1.term).toBe(fromN2.term);
    cluster.queue = [];
    cluster.deliverOne(fromN1);
    cluster.deliverOne(fromN2);
    expect(ofType(cluster.queue, 'VoteResponse').map((response) => [response.to, response.granted])).toEqual([
      ['n1', true],
      ['n2', false],
    ]);
    expect(must(cluster.stored.get(nodeId('n3')), 'n3 stored').hardState).toMatchObject({ term: 1, vote: 'n1' });

    cluster.queue = [];
    cluster.start('n3');
    cluster.deliverOne(fromN2);
    expect(ofType(cluster.queue, 'VoteResponse').map((response) => [response.to, response.granted])).toEqual([['n2', false]]);
    expect(cluster.node('n3').status().vote).toBe('n1');
  });

  it.each(SCHEDULE_SEEDS)('no server persists two different votes in one term (random schedule, seed %i)', (seed) => {
    const record = schedule(seed);
    let votesSeen = 0;
    for (const [id, history] of record.hardStates) {
      const voteByTerm = new Map<number, NodeId>();
      for (const hardState of history) {
        if (hardState.vote === null) continue;
        votesSeen++;
        const earlier = voteByTerm.get(hardState.term);
        if (earlier !== undefined) expect(hardState.vote, `seed ${seed}, ${id}, term ${hardState.term}`).toBe(earlier);
        voteByTerm.set(hardState.term, hardState.vote);
      }
    }
    expect(votesSeen).toBeGreaterThan(0);
  });

  it.each(SCHEDULE_SEEDS)('at most one leader is elected in a term (election safety, random schedule, seed %i)', (seed) => {
    const record = schedule(seed);
    expect(record.leadersByTerm.size, `seed ${seed}`).toBeGreaterThan(1);
    for (const [leaderTerm, leaders] of record.leadersByTerm) expect([...leaders], `seed ${seed}, term ${leaderTerm}`).toHaveLength(1);
  });

  it.each([1, 2, 3, 4, 5])('split votes are resolved by randomized timeouts (seed %i)', (seed) => {
    const cluster = new TestCluster(THREE, { seed, preVote: false, electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
    for (const id of THREE) cluster.campaign(id);
    cluster.deliverAll();
    // Everyone voted for itself in term 1: nobody won.
    expect(cluster.leaders()).toEqual([]);
    for (const id of THREE) expect(cluster.node(id).status()).toMatchObject({ term: 1, vote: id });
    let ticks = 0;
    while (cluster.leaders().length === 0 && ticks < 20 * ELECTION_TIMEOUT_TICKS) {
      tickAll(cluster, THREE);
      ticks++;
    }
    const leaders = cluster.leaders();
    expect(leaders).toHaveLength(1);
    const leaderTerm = cluster.node(must(leaders[0], 'leader')).status().term;
    expect(leaderTerm).toBeGreaterThan(1);
    // The loser of the race follows the winner.
    for (const id of THREE) expect(cluster.node(id).status()).toMatchObject({ term: leaderTerm, leader: leaders[0] });
  });
});

describe('§5.4.1 election restriction: votes go only to candidates whose log is at least as up to date', () => {
  // The voter's log ends with (index 3, term 2).
  const voterLog = [1, 1, 2];
  const askForVote = (lastLogIndex: number, lastLogTerm: number): { granted: boolean; voter: RawNode } => {
    const voter = makeNode({ id: 'n2', logTerms: voterLog, currentTerm: 2 });
    const readys = stepAndDrain(voter, voteRequest({ from: 'n1', to: 'n2', term: 3, lastLogIndex, lastLogTerm }));
    const responses = ofType(sentAfterPersist(readys), 'VoteResponse');
    expect(responses).toHaveLength(1);
    return { granted: must(responses[0], 'vote response').granted, voter };
  };

  it('a candidate whose last entry has a later term wins, even with a shorter log', () => {
    expect(askForVote(2, 3).granted).toBe(true);
  });

  it('with equal last terms, a candidate whose log is at least as long wins', () => {
    expect(askForVote(3, 2).granted).toBe(true);
    expect(askForVote(5, 2).granted).toBe(true);
  });

  it('with equal last terms, a candidate with a shorter log loses', () => {
    expect(askForVote(2, 2).granted).toBe(false);
  });

  it('a candidate whose last entry has an earlier term loses, even with a longer log', () => {
    const { granted, voter } = askForVote(9, 1);
    expect(granted).toBe(false);
    // Refusing the vote does not excuse the voter from adopting the newer term.
    expect(voter.status()).toMatchObject({ term: 3, vote: null });
  });

  it('a node missing committed entries cannot win an election', () => {
    const cluster = new TestCluster(THREE, { preVote: false, checkQuorum: false });
    electLeader(cluster, 'n1');
    cluster.partition(['n3'], ['n1', 'n2']);
    cluster.propose('n1', 'committed');
    cluster.deliverAll();
    tickAll(cluster, ['n1']);
    expect(cluster.node('n1').status().commitIndex).toBe(2);
    expect(cluster.node('n3').status().lastIndex).toBe(1);

    cluster.heal();
    cluster.campaign('n3');
    const answers: boolean[] = [];
    cluster.deliverAll((message) => {
      if (message.type === 'VoteResponse' && message.to === 'n3') answers.push(message.granted);
      return true;
    });
    expect(answers).toEqual([false, false]);
    expect(cluster.node('n3').status().role).not.toBe('Leader');

    // Whoever wins next holds the committed entry.
    for (let ticks = 0; ticks < 20 * ELECTION_TIMEOUT_TICKS && cluster.leaders().length === 0; ticks++) tickAll(cluster, THREE);
    expect(cluster.leaders()).toHaveLength(1);
    expect(cluster.leaders()).not.toContain('n3');
    tickAll(cluster, THREE, 2);
    for (const id of THREE) expect(cluster.appliedData(id)).toEqual(['committed']);
  });
});

describe('§5.3 log replication (Figure 2, AppendEntries receiver)', () => {
  it('the consistency check rejects AppendEntries whose prevLogIndex/prevLogTerm the follower does not hold', () => {
    const follower = makeNode({ id: 'n2', logTerms: [1, 1, 1], currentTerm: 2 });
    const cases = [
      { prevLogIndex: 3, prevLogTerm: 2 }, // the follower has index 3, but from term 1
      { prevLogIndex: 5, prevLogTerm: 1 }, // the follower has no index 5
    ];
    for (const { prevLogIndex, prevLogTerm } of cases) {
      const readys = stepAndDrain(
        follower,
        appendRequest({ from: 'n1', to: 'n2', term: 2, prevLogIndex, prevLogTerm, entries: [entry(prevLogIndex + 1, 2)], leaderCommit: 1 }),
      );
      expect(termsOf(follower)).toEqual([1, 1, 1]);
      expect(readys.flatMap((ready) => ready.entries)).toEqual([]);
      expect(follower.status().commitIndex).toBe(0);
      const responses = ofType(allSent(readys), 'AppendResponse');
      expect(responses).toHaveLength(1);
      expect(responses[0]).toMatchObject({ success: false, index: prevLogIndex, term: 2 });
    }
    // Control: a request that does match is accepted.
    const readys = stepAndDrain(follower, appendRequest({ from: 'n1', to: 'n2', term: 2, prevLogIndex: 3, prevLogTerm: 1, entries: [entry(4, 2)] }));
    expect(termsOf(follower)).toEqual([1, 1, 1, 2]);
    expect(ofType(allSent(readys), 'AppendResponse')[0]).toMatchObject({ success: true, index: 4 });
  });

  it('a conflicting entry and all that follow it are deleted and replaced by the leader’s entries', () => {
    const follower = makeNode({ id: 'n2', logTerms: [1, 1, 1, 1], currentTerm: 1 });
    const readys = stepAndDrain(follower, appendRequest({ from: 'n1', to: 'n2', term: 3, prevLogIndex: 1, prevLogTerm: 1, entries: [entry(2, 1), entry(3, 3)] }));
    expect(termsOf(follower)).toEqual([1, 1, 3]);
    // Storage is told to overwrite from the first conflicting index, and only that.
    expect(readys.flatMap((ready) => ready.entries)).toEqual([entry(3, 3)]);
    expect(ofType(sentAfterPersist(readys), 'AppendResponse')).toMatchObject([{ success: true, index: 3 }]);
  });

  it('entries the follower already holds are not appended again, and a shorter matching request truncates nothing', () => {
    const follower = makeNode({ id: 'n2', logTerms: [1, 1, 1], currentTerm: 1 });
    const readys = stepAndDrain(follower, appendRequest({ from: 'n1', to: 'n2', term: 1, prevLogIndex: 0, prevLogTerm: 0, entries: [entry(1, 1), entry(2, 1)] }));
    expect(termsOf(follower)).toEqual([1, 1, 1]);
    expect(readys.flatMap((ready) => ready.entries)).toEqual([]);
    // Acknowledges what the request covered, not the follower's whole log.
    expect(ofType(sentAfterPersist(readys), 'AppendResponse')).toMatchObject([{ success: true, index: 2 }]);
  });

  it('the follower sets commitIndex = min(leaderCommit, index of the last new entry)', () => {
    const follower = makeNode({ id: 'n2', logTerms: [1, 1, 1, 1, 1], currentTerm: 1 });
    // leaderCommit is 4 but this request only vouches for entries up to 2.
    stepAndDrain(follower, appendRequest({ from: 'n1', to: 'n2', term: 1, prevLogIndex: 1, prevLogTerm: 1, entries: [entry(2, 1)], leaderCommit: 4 }));
    expect(follower.status().commitIndex).toBe(2);
    // leaderCommit below the last new entry: leaderCommit wins.
    stepAndDrain(follower, appendRequest({ from: 'n1', to: 'n2', term: 1, prevLogIndex: 2, prevLogTerm: 1, entries: [entry(3, 1), entry(4, 1)], leaderCommit: 3 }));
    expect(follower.status().commitIndex).toBe(3);
    // An older leaderCommit never lowers it.
    stepAndDrain(follower, appendRequest({ from: 'n1', to: 'n2', term: 1, prevLogIndex: 4, prevLogTerm: 1, leaderCommit: 1 }));
    expect(follower.status().commitIndex).toBe(3);
  });

  it('the leader’s commit index reaches followers with its next AppendEntries', () => {
    const cluster = new TestCluster(THREE);
    electLeader(cluster, 'n1');
    cluster.propose('n1', 'x');
    const carriesCommit2 = (message: Message): boolean => message.type === 'AppendRequest' && message.leaderCommit >= 2;
    cluster.deliverWhere((message) => !carriesCommit2(message));
    expect(cluster.node('n1').status().commitIndex).toBe(2);
    for (const id of ['n2', 'n3']) expect(cluster.node(id).status().commitIndex).toBe(1);
    expect(cluster.queue.filter(carriesCommit2).map((message) => message.to).sort()).toEqual(['n2', 'n3']);
    cluster.deliverAll();
    for (const id of THREE) {
      expect(cluster.node(id).status().commitIndex).toBe(2);
      expect(cluster.appliedData(id)).toEqual(['x']);
    }
  });

  it('the leader’s commit index reaches followers with its next heartbeat when no AppendEntries carries it', () => {
    const cluster = new TestCluster(THREE);
    electLeader(cluster, 'n1');
    cluster.propose('n1', 'x');
    const carriesCommit2 = (message: Message): boolean => message.type === 'AppendRequest' && message.leaderCommit >= 2;
    cluster.deliverWhere((message) => !carriesCommit2(message));
    expect(cluster.queue.filter(carriesCommit2)).toHaveLength(2);
    cluster.dropAll();
    for (const id of ['n2', 'n3']) expect(cluster.node(id).status().commitIndex).toBe(1);
    cluster.tick('n1');
    expect(ofType(cluster.queue, 'Heartbeat').map((heartbeat) => heartbeat.commit)).toEqual([2, 2]);
    cluster.deliverAll();
    for (const id of ['n2', 'n3']) {
      expect(cluster.node(id).status().commitIndex).toBe(2);
      expect(cluster.appliedData(id)).toEqual(['x']);
    }
  });

  // Figure 7: the leader of term 8 and six possible follower logs.
  const FIGURE_7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
  const FIGURE_7_FOLLOWERS = {
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6],
    b: [1, 1, 1, 4],
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    e: [1, 1, 1, 4, 4, 4, 4],
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
  };
  it.each(Object.entries(FIGURE_7_FOLLOWERS))('the leader brings follower (%s) of Figure 7 in line with its log, in at most one rejection', (_name, followerLog) => {
    const cluster = new TestCluster(THREE);
    seedNode(cluster, 'n1', FIGURE_7_LEADER, { term: 7 });
    seedNode(cluster, 'n2', FIGURE_7_LEADER, { term: 7 });
    seedNode(cluster, 'n3', followerLog, { term: 7 });
    let rejections = 0;
    cluster.campaign('n1');
    cluster.deliverAll((message) => {
      if (message.type === 'AppendResponse' && !message.success && message.from === 'n3') rejections++;
      return true;
    });
    expect(cluster.node('n1').status()).toMatchObject({ role: 'Leader', term: 8 });
    const expected = [...FIGURE_7_LEADER, 8];
    expect(termsOf(cluster.node('n3'))).toEqual(expected);
    expect(must(cluster.stored.get(nodeId('n3')), 'n3 stored').entries.map((stored) => stored.term)).toEqual(expected);
    expect(rejections).toBeLessThanOrEqual(1);
  });

  it('a follower with a long divergent log is brought in line in far fewer round trips than the divergence (fast back-off)', () => {
    const divergence = 100;
    const leaderLog = [1, ...Array<number>(50).fill(3)];
    const cluster = new TestCluster(THREE);
    seedNode(cluster, 'n1', leaderLog, { term: 3 });
    seedNode(cluster, 'n2', leaderLog, { term: 3 });
    seedNode(cluster, 'n3', [1, ...Array<number>(divergence).fill(2)], { term: 2 });
    let rejections = 0;
    cluster.campaign('n1');
    cluster.deliverAll((message) => {
      if (message.type === 'AppendResponse' && !message.success && message.from === 'n3') rejections++;
      return true;
    });
    expect(cluster.leaders()).toEqual(['n1']);
    expect(termsOf(cluster.node('n3'))).toEqual([...leaderLog, 4]);
    expect(rejections).toBeGreaterThan(0);
    expect(rejections).toBeLessThanOrEqual(2);
  });

  // §5.3: "the leader retries AppendEntries RPCs indefinitely ... until all followers eventually store
  // all log entries". Here the lost entry is the last one, so only a retransmission can deliver it.
  it('the leader retries AppendEntries until every follower stores every entry, even when messages are lost', () => {
    const cluster = new TestCluster(THREE, { electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
    electLeader(cluster, 'n1');
    expect(cluster.propose('n1', 'x')).toMatchObject({ kind: 'Appended', index: 2 });
    // The network loses the AppendEntries carrying 'x' to both followers.
    expect(ofType(cluster.queue, 'AppendRequest').map((message) => message.to)).toEqual(['n2', 'n3']);
    cluster.dropAll();
    // Heartbeats keep flowing; the leader must resend what was lost.
    tickAll(cluster, THREE, 5 * ELECTION_TIMEOUT_TICKS);
    expect(cluster.leaders()).toEqual(['n1']);
    for (const id of ['n2', 'n3']) expect(cluster.node(id).status().lastIndex, `${id} last index`).toBe(2);
    for (const id of THREE) expect(cluster.appliedData(id), `${id} applied`).toEqual(['x']);
  });

  // The same rule when the lost messages fill the in-flight window: the window must reopen.
  it('a follower whose whole in-flight window was lost still catches up', () => {
    const cluster = new TestCluster(THREE, { electionTimeoutTicks: ELECTION_TIMEOUT_TICKS, maxInflightMessages: 2, maxEntriesPerMessage: 1 });
    electLeader(cluster, 'n1');
    cluster.propose('n1', 'a');
    cluster.propose('n1', 'b');
    // Both messages of n3's window are lost; n2 gets everything.
    cluster.deliverWhere((message) => !involves('n3')(message));
    expect(cluster.node('n1').status().progress.get(nodeId('n3'))).toMatchObject({ state: 'Replicate', inflightMessages: 2 });
    cluster.dropAll();
    cluster.propose('n1', 'c');
    cluster.deliverAll();
    tickAll(cluster, THREE, 5 * ELECTION_TIMEOUT_TICKS);
    expect(cluster.leaders()).toEqual(['n1']);
    expect(cluster.appliedData('n3')).toEqual(['a', 'b', 'c']);
  });
});

describe('§5.4.2 committing entries from previous terms', () => {
  it('a leader does not commit an entry of an earlier term by counting replicas; it commits it with the no-op of its own term', () => {
    const cluster = new TestCluster(THREE, { maxEntriesPerMessage: 1 });
    // n1 led term 2 and appended 2@2 but replicated it nowhere; nothing past index 1 is committed.
    seedNode(cluster, 'n1', [1, 2], { term: 2, vote: 'n1', commit: 1 });
    seedNode(cluster, 'n2', [1], { term: 2, vote: 'n1', commit: 1 });
    seedNode(cluster, 'n3', [1], { term: 1, commit: 1 });
    cluster.partition(['n3'], ['n1', 'n2']);
    cluster.campaign('n1');
    const commitsSeen = new Set<number>();
    let sawPreviousTermOnMajority = false;
    for (let step = 0; step < 200 && cluster.queue.length > 0; step++) {
      cluster.deliverOne(must(cluster.queue.shift(), 'queued message'));
      const leader = cluster.node('n1').status();
      if (leader.role !== 'Leader') continue;
      commitsSeen.add(leader.commitIndex);
      if (leader.progress.get(nodeId('n2'))?.match === 2) {
        // 2@2 is on n1 and n2, a majority, and must still not count as committed.
        sawPreviousTermOnMajority = true;
        expect(leader.commitIndex).toBe(1);
      }
    }
    expect(sawPreviousTermOnMajority).toBe(true);
    const leader = cluster.node('n1').status();
    expect(leader).toMatchObject({ role: 'Leader', term: 3, commitIndex: 3 });
    // The commit index jumped from 1 straight to the no-op of term 3.
    expect([...commitsSeen].sort()).toEqual([1, 3]);
    expect(cluster.node('n1').raft.log.entryAt(logIndex(3))).toMatchObject({ term: 3, type: EntryType.Noop });
    expect(cluster.appliedData('n1')).toEqual(['1@1', '2@2']);
  });
});

describe('§8 no-op entry at the start of a term', () => {
  it('a new leader appends an empty no-op entry of its own term and replicates it', () => {
    const cluster = new TestCluster(THREE, { checkQuorum: false, preVote: false });
    electLeader(cluster, 'n1');
    const noop = cluster.node('n1').raft.log.entryAt(logIndex(1));
    expect(noop).toMatchObject({ index: 1, term: 1, type: EntryType.Noop });
    expect(must(noop, 'noop').data.byteLength).toBe(0);
    for (const id of THREE) expect(must(cluster.stored.get(nodeId(id)), `${id} stored`).entries).toEqual([noop]);

    cluster.propose('n1', 'x');
    cluster.deliverAll();
    electLeader(cluster, 'n2');
    expect(cluster.node('n2').raft.log.entryAt(logIndex(3))).toMatchObject({ index: 3, term: 2, type: EntryType.Noop });
    expect(cluster.node('n2').status().commitIndex).toBe(3);
  });
});

describe('Persistence (Ready contract: acknowledge only what is durable)', () => {
  /** Elections, a divergent follower, proposals, heartbeats and a change of leader, all observed. */
  function observedScenario(): ObservedReady[] {
    const cluster = new TestCluster(THREE, { electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
    seedNode(cluster, 'n1', [1, 1], { term: 2 });
    seedNode(cluster, 'n2', [1, 1], { term: 2 });
    seedNode(cluster, 'n3', [1, 2, 2], { term: 2 });
    const observed = observeReadys(cluster, THREE);
    electLeader(cluster, 'n1');
    for (const text of ['a', 'b', 'c']) cluster.propose('n1', text);
    cluster.propose('n2', 'd');
    cluster.deliverAll();
    tickAll(cluster, THREE, 3);
    // A new leader among n2 and n3; n1's messages of the old term are lost.
    cluster.partition(['n1'], ['n2', 'n3']);
    for (let ticks = 0; ticks < 20 * ELECTION_TIMEOUT_TICKS && !['n2', 'n3'].some((id) => cluster.node(id).status().role === 'Leader'); ticks++) {
      tickAll(cluster, ['n2', 'n3']);
    }
    cluster.dropAll();
    cluster.heal();
    // The new leader speaks first, so n1 learns the new term before it could send anything stale
    // (stale-term traffic has its own test below).
    tickAll(cluster, ['n2', 'n3']);
    tickAll(cluster, THREE, 3);
    expect(cluster.leaders()).toHaveLength(1);
    expect(cluster.leaders()).not.toContain('n1');
    return observed;
  }

  it('AppendEntries responses and granted votes are sent only after persisting, never with Ready.messages', () => {
    const observed = observedScenario();
    let acknowledgements = 0;
    let rejections = 0;
    let votes = 0;
    let leaderAppendsSentAtOnce = 0;
    for (const { node, ready } of observed) {
      for (const message of ready.messages) {
        expect(message.type, `${node} sent ${describeMessage(message)} before persisting`).not.toBe('AppendResponse');
        expect(message.type, `${node} sent ${describeMessage(message)} before persisting`).not.toBe('HeartbeatResponse');
        if (message.type === 'VoteResponse') expect(message.preVote, `${node} sent ${describeMessage(message)} before persisting`).toBe(true);
        if (message.type === 'AppendRequest') leaderAppendsSentAtOnce++;
      }
      for (const message of ready.messagesAfterPersist) {
        if (message.type === 'AppendResponse') {
          if (message.success) acknowledgements++;
          else rejections++;
        }
        if (message.type === 'VoteResponse' && message.granted) votes++;
      }
    }
    expect(acknowledgements).toBeGreaterThan(0);
    expect(rejections).toBeGreaterThan(0);
    expect(votes).toBeGreaterThan(0);
    // The leader may send AppendEntries while its own write is in progress (thesis §10.2.1).
    expect(leaderAppendsSentAtOnce).toBeGreaterThan(0);
  });

  it('what an acknowledgement or a granted vote promises is durable once the Ready is persisted', () => {
    const observed = observedScenario();
    let checked = 0;
    for (const item of observed) {
      const durable = durableAfter(item);
      for (const message of item.ready.messagesAfterPersist) {
        if (message.type === 'AppendResponse' && message.success) {
          expect(durable.entries.length, `${item.node}: ${describeMessage(message)}`).toBeGreaterThanOrEqual(message.index);
          checked++;
        }
        if (message.type === 'VoteResponse' && message.granted && !message.preVote) {
          expect(durable.hardState, `${item.node}: ${describeMessage(message)}`).toMatchObject({ term: message.term, vote: message.to });
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('committed entries are handed to the application only once they are durable', () => {
    const observed = observedScenario();
    let applied = 0;
    for (const { node, ready, durableBefore } of observed) {
      for (const committed of ready.committedEntries) {
        expect(durableBefore.entries[committed.index - 1], `${node} applies ${committed.index}@${committed.term}`).toEqual(committed);
        applied++;
      }
    }
    expect(applied).toBeGreaterThan(0);
  });

  it('a single-node leader applies its own entry only after persisting it', () => {
    const node = makeNode({ voters: ['n1'] });
    node.campaign();
    drain(node);
    expect(node.status()).toMatchObject({ role: 'Leader', commitIndex: 1 });
    expect(node.propose(bytes('x'))).toMatchObject({ kind: 'Appended', index: 2 });
    const first = node.ready();
    expect(first.entries.map((appended) => appended.index)).toEqual([2]);
    expect(first.committedEntries.map((committed) => committed.index)).not.toContain(2);
    node.advance();
    const second = node.ready();
    expect(second.committedEntries.map((committed) => committed.index)).toEqual([2]);
    node.advance();
  });

  // Ready.messages "depend on nothing unpersisted"; a response carrying a term not yet durable does.
  it('a rejection of a stale-term AppendEntries is not sent before the newer term it carries is durable', () => {
    const follower = makeNode({ id: 'n2', logTerms: [1], currentTerm: 1 });
    // A candidate of term 3 makes n2 adopt term 3 (not yet persisted)...
    follower.step(voteRequest({ from: 'n3', to: 'n2', term: 3, lastLogIndex: 1, lastLogTerm: 1 }));
    // ...and then the deposed leader of term 1 sends AppendEntries.
    follower.step(appendRequest({ from: 'n1', to: 'n2', term: 1, prevLogIndex: 1, prevLogTerm: 1 }));
    const ready = follower.ready();
    expect(ready.hardState).toMatchObject({ term: 3 });
    expect(ofType(ready.messages, 'AppendResponse'), 'sent with Ready.messages, before term 3 is durable').toEqual([]);
    expect(ofType(ready.messagesAfterPersist, 'AppendResponse')).toMatchObject([{ to: 'n1', success: false, term: 3 }]);
    follower.advance();
  });
});

describe('Pre-vote (thesis §9.6)', () => {
  it('a pre-candidate does not change its term or vote; its requests carry term + 1', () => {
    const node = makeNode({ logTerms: [1], currentTerm: 4 });
    node.campaign();
    const ready = node.ready();
    expect(node.status()).toMatchObject({ role: 'PreCandidate', term: 4, vote: null });
    expect(ready.hardState).toBeNull();
    expect(ofType(ready.messages, 'VoteRequest').map((request) => [request.to, request.term, request.preVote])).toEqual([
      ['n2', 5, true],
      ['n3', 5, true],
    ]);
    node.advance();
  });

  it('a pre-vote request carries term + 1 but changes neither the voter’s term nor its vote', () => {
    const voter = makeNode({ id: 'n2', logTerms: [1], currentTerm: 1 });
    const readys = stepAndDrain(voter, voteRequest({ from: 'n1', to: 'n2', term: 2, lastLogIndex: 1, lastLogTerm: 1, preVote: true }));
    expect(ofType(allSent(readys), 'VoteResponse')).toMatchObject([{ to: 'n1', term: 2, preVote: true, granted: true }]);
    expect(voter.status()).toMatchObject({ term: 1, vote: null, role: 'Follower' });
    expect(readys.every((ready) => ready.hardState === null)).toBe(true);
  });

  it('a node partitioned away that keeps timing out does not raise its term', () => {
    const cluster = new TestCluster(THREE, { electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
    electLeader(cluster, 'n1');
    cluster.partition(['n3'], ['n1', 'n2']);
    tickAll(cluster, THREE, 10 * ELECTION_TIMEOUT_TICKS);
    const preVotes = cluster.trace.filter((line) => line.startsWith('drop n3->') && line.includes('VoteRequest') && line.includes(' pre '));
    // It campaigned again and again...
    expect(preVotes.length).toBeGreaterThan(4);
    // ...without ever raising its term.
    expect(cluster.node('n3').status().term).toBe(1);
    expect(must(cluster.stored.get(nodeId('n3')), 'n3 stored').hardState.term).toBe(1);
    expect(cluster.leaders()).toEqual(['n1']);
  });

  it('a node that rejoins after a partition does not depose the healthy leader', () => {
    const cluster = new TestCluster(THREE, { electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
    electLeader(cluster, 'n1');
    cluster.partition(['n3'], ['n1', 'n2']);
    tickAll(cluster, THREE, 10 * ELECTION_TIMEOUT_TICKS);
    cluster.heal();
    tickAll(cluster, THREE, 10 * ELECTION_TIMEOUT_TICKS);
    expect(cluster.leaders()).toEqual(['n1']);
    for (const id of THREE) expect(cluster.node(id).status()).toMatchObject({ term: 1, leader: 'n1' });
  });
});

describe('CheckQuorum (thesis §6.2) and the leader lease on votes (thesis §4.2.3)', () => {
  it('a leader that hears from no quorum for an election timeout steps down', () => {
    const cluster = new TestCluster(THREE, { electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
    electLeader(cluster, 'n1');
    cluster.partition(['n1'], ['n2', 'n3']);
    let ticks = 0;
    while (cluster.node('n1').status().role === 'Leader' && ticks < 10 * ELECTION_TIMEOUT_TICKS) {
      tickAll(cluster, ['n1']);
      ticks++;
    }
    expect(cluster.node('n1').status()).toMatchObject({ role: 'Follower', term: 1, leader: null });
    // Not before one full election timeout without contact, and no later than two.
    expect(ticks).toBeGreaterThanOrEqual(ELECTION_TIMEOUT_TICKS);
    expect(ticks).toBeLessThanOrEqual(2 * ELECTION_TIMEOUT_TICKS);
  });

  it('a leader that hears from a quorum stays leader', () => {
    const cluster = new TestCluster(THREE, { electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
    electLeader(cluster, 'n1');
    // n3 is gone, but n2 and n1 are a quorum.
    cluster.partition(['n3'], ['n1', 'n2']);
    tickAll(cluster, ['n1', 'n2'], 10 * ELECTION_TIMEOUT_TICKS);
    expect(cluster.leaders()).toEqual(['n1']);
  });

  it('a follower that heard from its leader within the election timeout ignores a vote request with a higher term', () => {
    const cluster = new TestCluster(THREE, { electionTimeoutTicks: ELECTION_TIMEOUT_TICKS });
    electLeader(cluster, 'n1');
    const lastIndex = cluster.node('n2').status().lastIndex;
    const request = voteRequest({ from: 'n3', to: 'n2', term: 5, lastLogIndex: lastIndex, lastLogTerm: 1 });
    cluster.deliverOne(request);
    expect(cluster.queue.filter((message) => message.from === 'n2')).toEqual([]);
    expect(cluster.node('n2').status()).toMatchObject({ term: 1, leader: 'n1', vote: 'n1' });

    // Control: once an election timeout passes without the leader, the same request is granted.
    cluster.partition(['n2'], ['n1', 'n3']);
    tickAll(cluster, ['n2'], ELECTION_TIMEOUT_TICKS);
    cluster.dropAll();
    cluster.node('n2').step(request);
    cluster.flush('n2');
    expect(ofType(cluster.queue, 'VoteResponse')).toMatchObject([{ to: 'n3', term: 5, granted: true, preVote: false }]);
    expect(cluster.node('n2').status()).toMatchObject({ term: 5, vote: 'n3' });
  });

  it('without CheckQuorum the same vote request is granted at once', () => {
    const cluster = new TestCluster(THREE, { checkQuorum: false });
    electLeader(cluster, 'n1');
    const lastIndex = cluster.node('n2').status().lastIndex;
    cluster.deliverOne(voteRequest({ from: 'n3', to: 'n2', term: 5, lastLogIndex: lastIndex, lastLogTerm: 1 }));
    expect(ofType(cluster.queue, 'VoteResponse')).toMatchObject([{ to: 'n3', term: 5, granted: true }]);
  });
});

describe('Flow control', () => {
  it('a follower in probe state gets at most one AppendEntries in flight until it answers', () => {
    const cluster = new TestCluster(THREE);
    cluster.campaign('n1');
    // n1 wins with n2's vote; nothing reaches n3 or comes back from it.
    cluster.deliverWhere((message) => !involves('n3')(message));
    expect(cluster.leaders()).toEqual(['n1']);
    for (const text of ['a', 'b', 'c', 'd']) cluster.propose('n1', text);
    cluster.deliverWhere((message) => !involves('n3')(message));
    expect(cluster.node('n1').status().commitIndex).toBe(5);
    expect(cluster.node('n1').status().progress.get(nodeId('n3'))?.state).toBe('Probe');
    expect(ofType(cluster.queue, 'AppendRequest').filter((message) => message.to === 'n3')).toHaveLength(1);

    // Once n3 answers, the leader streams the rest.
    cluster.deliverAll();
    expect(cluster.node('n1').status().progress.get(nodeId('n3'))?.state).toBe('Replicate');
    expect(cluster.appliedData('n3')).toEqual(['a', 'b', 'c', 'd']);
  });

  it('a follower in replicate state gets no more than maxInflightMessages AppendEntries in flight', () => {
    const maxInflightMessages = 2;
    const cluster = new TestCluster(THREE, { maxInflightMessages, maxEntriesPerMessage: 1 });
    electLeader(cluster, 'n1');
    expect(cluster.node('n1').status().progress.get(nodeId('n3'))?.state).toBe('Replicate');
    for (const text of ['a', 'b', 'c', 'd', 'e']) cluster.propose('n1', text);
    cluster.deliverWhere((message) => !involves('n3')(message));
    expect(cluster.node('n1').status().commitIndex).toBe(6);
    expect(ofType(cluster.queue, 'AppendRequest').filter((message) => message.to === 'n3')).toHaveLength(maxInflightMessages);
    expect(cluster.node('n1').status().progress.get(nodeId('n3'))?.inflightMessages).toBe(maxInflightMessages);
    cluster.deliverAll();
    expect(cluster.appliedData('n3')).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('a follower in replicate state stops receiving once maxInflightBytes are in flight', () => {
    const cluster = new TestCluster(THREE, { maxInflightBytes: 10, maxEntriesPerMessage: 1 });
    electLeader(cluster, 'n1');
    for (const text of ['aaaaaa', 'bbbbbb', 'cccccc']) cluster.propose('n1', text);
    cluster.deliverWhere((message) => !involves('n3')(message));
    // 6 bytes in flight is under the limit, 12 is not: two messages.
    expect(ofType(cluster.queue, 'AppendRequest').filter((message) => message.to === 'n3')).toHaveLength(2);
    cluster.deliverAll();
    expect(cluster.appliedData('n3')).toEqual(['aaaaaa', 'bbbbbb', 'cccccc']);
  });

  it('the leader refuses proposals beyond maxUncommittedBytes with ProposalDropped until entries commit', () => {
    const cluster = new TestCluster(THREE, { maxUncommittedBytes: 10 });
    electLeader(cluster, 'n1');
    // Nothing is delivered, so nothing commits.
    expect(cluster.propose('n1', 'aaaaaa')).toMatchObject({ kind: 'Appended', index: 2 });
    expect(cluster.propose('n1', 'bbbbbb')).toEqual({ kind: 'Refused', refusal: 'ProposalDropped', leaderHint: 'n1' });
    expect(cluster.node('n1').status().lastIndex).toBe(2);
    // Exactly at the limit is still admitted.
    expect(cluster.propose('n1', 'cccc')).toMatchObject({ kind: 'Appended', index: 3 });
    expect(cluster.propose('n1', 'd')).toMatchObject({ kind: 'Refused', refusal: 'ProposalDropped' });
    cluster.deliverAll();
    expect(cluster.node('n1').status().commitIndex).toBe(3);
    expect(cluster.propose('n1', 'bbbbbb')).toMatchObject({ kind: 'Appended', index: 4 });
  });

  it('one proposal larger than maxUncommittedBytes is admitted when nothing is uncommitted', () => {
    const cluster = new TestCluster(THREE, { maxUncommittedBytes: 10 });
    electLeader(cluster, 'n1');
    expect(cluster.propose('n1', 'x'.repeat(20))).toMatchObject({ kind: 'Appended', index: 2 });
    expect(cluster.propose('n1', 'y')).toMatchObject({ kind: 'Refused', refusal: 'ProposalDropped' });
  });

  it('proposals over maxProposalBytes are refused with ProposalTooLarge, at the leader and at a follower', () => {
    const cluster = new TestCluster(THREE, { maxProposalBytes: 8 });
    electLeader(cluster, 'n1');
    expect(cluster.propose('n1', '123456789')).toEqual({ kind: 'Refused', refusal: 'ProposalTooLarge', leaderHint: 'n1' });
    expect(cluster.propose('n1', '12345678')).toMatchObject({ kind: 'Appended' });
    cluster.deliverAll();
    expect(cluster.node('n2').propose(bytes('123456789'), 1)).toEqual({ kind: 'Refused', refusal: 'ProposalTooLarge', leaderHint: 'n1' });
    cluster.flush('n2');
    expect(ofType(cluster.queue, 'ProposeRequest')).toEqual([]);
    // A forwarded request over the limit is refused by the leader as well.
    cluster.deliverOne({ type: 'ProposeRequest', from: nodeId('n2'), to: nodeId('n1'), term: term(0), requestId: 9, leaderTerm: term(1), data: bytes('123456789') });
    expect(ofType(cluster.queue, 'ProposeResponse')).toMatchObject([{ to: 'n2', requestId: 9, refusal: 'ProposalTooLarge', index: 0 }]);
    expect(cluster.node('n1').status().lastIndex).toBe(2);
  });

  it('no AppendEntries carries more than maxEntriesPerMessage entries', () => {
    const maxEntriesPerMessage = 3;
    const cluster = new TestCluster(THREE, { maxEntriesPerMessage });
    electLeader(cluster, 'n1');
    const leader = cluster.node('n1');
    for (let count = 1; count <= 10; count++) expect(leader.propose(bytes(`e${count}`), count).kind).toBe('Appended');
    cluster.flush('n1');
    const sizes: number[] = [];
    cluster.deliverAll((message) => {
      if (message.type === 'AppendRequest') sizes.push(message.entries.length);
      return true;
    });
    expect(Math.max(...sizes)).toBe(maxEntriesPerMessage);
    for (const id of THREE) expect(cluster.node(id).status().commitIndex).toBe(11);
  });
});

describe('Proposals', () => {
  it('a follower forwards a proposal to the leader it knows and learns the index and term it got', () => {
    const cluster = new TestCluster(THREE);
    electLeader(cluster, 'n2');
    const observed = observeReadys(cluster, ['n1']);
    expect(cluster.node('n1').propose(bytes('hello'), 42)).toEqual({ kind: 'Forwarded', leader: 'n2' });
    cluster.flush('n1');
    expect(ofType(cluster.queue, 'ProposeRequest')).toMatchObject([{ from: 'n1', to: 'n2', requestId: 42 }]);
    cluster.deliverAll();
    const outcomes = observed.flatMap(({ ready }) => ready.forwardedOutcomes);
    expect(outcomes).toEqual([{ requestId: 42, index: 2, term: 1, refusal: null, leaderHint: 'n2' }]);
    expect(cluster.trace.filter((line) => line.includes('ProposeResponse'))).toEqual(['n2->n1 ProposeResponse term=0 request=42 index=2@1']);
    cluster.tick('n2');
    cluster.deliverAll();
    for (const id of THREE) expect(cluster.appliedData(id)).toEqual(['hello']);
  });

  it('without a known leader a proposal is refused with ProposalDropped', () => {
    const cluster = new TestCluster(THREE);
    expect(cluster.propose('n1', 'x')).toEqual({ kind: 'Refused', refusal: 'ProposalDropped', leaderHint: null });
    expect(cluster.queue).toEqual([]);
    expect(cluster.node('n1').status().lastIndex).toBe(0);
  });

  it('a node that is not the leader answers a forwarded proposal with NotLeader and names the leader it knows', () => {
    const cluster = new TestCluster(THREE);
    electLeader(cluster, 'n1');
    cluster.deliverOne({ type: 'ProposeRequest', from: nodeId('n2'), to: nodeId('n3'), term: term(0), requestId: 5, leaderTerm: term(1), data: bytes('x') });
    expect(ofType(cluster.queue, 'ProposeResponse')).toMatchObject([{ to: 'n2', requestId: 5, refusal: 'NotLeader', leaderHint: 'n1' }]);
    expect(cluster.node('n3').status().lastIndex).toBe(1);
  });

  it('a duplicated ProposeRequest is appended only once', () => {
    const cluster = new TestCluster(THREE);
    electLeader(cluster, 'n1');
    const observed = observeReadys(cluster, ['n2']);
    cluster.node('n2').propose(bytes('once'), 7);
    cluster.flush('n2');
    const request = cluster.take((message) => message.type === 'ProposeRequest');
    cluster.queue.push(request, request);
    cluster.deliverAll();
    cluster.tick('n1');
    cluster.deliverAll();
    const leaderLog = cluster.node('n1').raft.log;
    const copies = [];
    for (let index = 1; index <= leaderLog.lastIndex(); index++) {
      const held = must(leaderLog.entryAt(logIndex(index)), `entry ${index}`);
      if (decoder.decode(held.data) === 'once') copies.push(index);
    }
    expect(copies).toEqual([2]);
    // Both copies are answered, with the same place in the log.
    expect(observed.flatMap(({ ready }) => ready.forwardedOutcomes)).toEqual([
      { requestId: 7, index: 2, term: 1, refusal: null, leaderHint: 'n1' },
      { requestId: 7, index: 2, term: 1, refusal: null, leaderHint: 'n1' },
    ]);
    for (const id of THREE) expect(cluster.appliedData(id)).toEqual(['once']);
  });
});

describe('§5.4.3 state machine safety (random schedules)', () => {
  it.each(SCHEDULE_SEEDS)('no two servers apply different entries at the same index (seed %i)', (seed) => {
    const record = schedule(seed);
    expect(record.appliedByIndex.size, `seed ${seed}`).toBeGreaterThan(3);
    for (const [index, applied] of record.appliedByIndex) expect([...applied], `seed ${seed}, index ${index}`).toHaveLength(1);
  });
});

describe('Configuration validation', () => {
  const base = { id: nodeId('n1'), voters: THREE.map(nodeId) };

  it('fills every default for a minimal valid configuration', () => {
    const config = resolveRaftConfig(base);
    expect(config).toMatchObject({ id: 'n1', voters: ['n1', 'n2', 'n3'], electionTimeoutTicks: 10, heartbeatIntervalTicks: 1, preVote: true, checkQuorum: true });
  });

  it('rejects a heartbeat interval that is not below the election timeout, naming heartbeatIntervalTicks', () => {
    for (const heartbeatIntervalTicks of [10, 11]) {
      const error = configErrorOf(() => resolveRaftConfig({ ...base, electionTimeoutTicks: 10, heartbeatIntervalTicks }));
      expect(error.field).toBe('heartbeatIntervalTicks');
      expect(error.code).toBe('InvalidConfig');
    }
    expect(resolveRaftConfig({ ...base, electionTimeoutTicks: 10, heartbeatIntervalTicks: 9 }).heartbeatIntervalTicks).toBe(9);
  });

  it('accepts an empty voter list (a node that joins a running cluster) and rejects a non-list, naming voters', () => {
    expect(resolveRaftConfig({ ...base, voters: [] }).voters).toEqual([]);
    expect(configErrorOf(() => resolveRaftConfig({ ...base, voters: 'n1' as never })).field).toBe('voters');
  });

  it('rejects a voter listed twice, naming voters', () => {
    expect(configErrorOf(() => resolveRaftConfig({ ...base, voters: ['n1', 'n2', 'n1'].map(nodeId) })).field).toBe('voters');
  });

  it('rejects an empty node id, naming id', () => {
    expect(configErrorOf(() => resolveRaftConfig({ ...base, id: nodeId('') })).field).toBe('id');
  });

  it.each([
    ['electionTimeoutTicks', 0],
    ['electionTimeoutTicks', 2.5],
    ['maxEntriesPerMessage', 0],
    ['maxInflightMessages', -1],
    ['maxUncommittedBytes', Number.NaN],
    ['maxProposalBytes', 0],
  ] as const)('rejects %s = %s, naming the field', (field, value) => {
    const error = configErrorOf(() => resolveRaftConfig({ ...base, [field]: value }));
    expect(error.field).toBe(field);
  });

  it('rejects a non-boolean preVote, naming preVote', () => {
    const error = configErrorOf(() => resolveRaftConfig({ ...base, preVote: 'yes' as unknown as boolean }));
    expect(error.field).toBe('preVote');
  });
});
