/**
 * Single-server membership changes with learners (thesis §4.1–4.3), as the core implements them: one
 * change at a time, each taking effect as soon as it is in a log; new nodes join as learners, which
 * replicate but neither vote nor count, and are promoted once caught up; a removed leader steps down
 * once its removal commits.
 *
 * Each `describe` names the rule's section, each `it` states the rule. Clusters are driven by hand;
 * the last block runs random schedules of membership changes, partitions, losses and restarts.
 */
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  DecodeError,
  EntryType,
  PROTOCOL_VERSION,
  decodeMembership,
  decodeMessage,
  encodeMembership,
  encodeMessage,
  logIndex,
  nodeId,
  term,
  type AppendRequest,
  type Entry,
  type Membership,
  type MembershipChange,
  type MembershipChangeOutcome,
  type Message,
  type NodeId,
  type PeerProgress,
} from '../../src/raft/index.js';
import { TestCluster, describeMessage, electedCluster } from '../support/cluster.js';

// ---------------------------------------------------------------------------------------------
// Bounds and fixtures

/** Rounds of "tick every node, deliver everything" allowed for an election to settle. */
const MAX_ELECTION_ROUNDS = 200;
const FIVE = ['n1', 'n2', 'n3', 'n4', 'n5'] as const;

const encoder = new TextEncoder();

function must<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`missing ${what}`);
  return value;
}

const members = (voters: readonly string[], learners: readonly string[] = []): Membership => ({ voters: voters.map(nodeId), learners: learners.map(nodeId) });


const between =
  (...ids: readonly string[]) =>
  (message: Message): boolean =>
    ids.includes(message.from) && ids.includes(message.to);

function refusalOf(outcome: MembershipChangeOutcome): string {
  return outcome.kind === 'Refused' ? outcome.refusal : `Appended at ${outcome.index}`;
}

function progressOf(cluster: TestCluster, leader: string, peer: string): PeerProgress {
  return must(cluster.node(leader).status().progress.get(nodeId(peer)), `progress of ${peer} on ${leader}`);
}

/** One heartbeat round from `leader`, everything delivered. */
function heartbeat(cluster: TestCluster, leader: string): void {
  cluster.tick(leader);
  cluster.deliverAll();
}

/**
 * n1 leads n1..n3 and `learner` was started empty, added as a learner and caught up (its match is the
 * commit index and it answered recently).
 */
function clusterWithLearner(learner = 'n4'): TestCluster {
  const cluster = electedCluster();
  cluster.addNode(learner);
  expect(cluster.changeMembership('n1', 'AddLearner', learner)).toMatchObject({ kind: 'Appended', index: 2 });
  cluster.deliverAll();
  heartbeat(cluster, 'n1');
  expect(cluster.node('n1').status().commitIndex).toBe(2);
  expect(progressOf(cluster, 'n1', learner)).toMatchObject({ match: 2, recentActive: true });
  return cluster;
}

/** Ticks the given nodes once each and delivers everything, until exactly one of them leads. */
function electAmong(cluster: TestCluster, ids: readonly string[]): string {
  for (let round = 0; round < MAX_ELECTION_ROUNDS; round++) {
    for (const id of ids) cluster.tick(id);
    cluster.deliverAll();
    const leaders = cluster.leaders().filter((id) => ids.includes(id));
    if (leaders.length === 1) return must(leaders[0], 'leader');
  }
  throw new Error(`no leader among ${ids.join(', ')} within ${MAX_ELECTION_ROUNDS} rounds`);
}

// ---------------------------------------------------------------------------------------------

describe('thesis §4.1 proposeMembershipChange refusals', () => {
  it('a follower refuses with NotLeader and names the leader', () => {
    const cluster = electedCluster();
    const outcome = cluster.changeMembership('n2', 'AddLearner', 'n4');
    expect(outcome).toMatchObject({ kind: 'Refused', refusal: 'NotLeader', leaderHint: 'n1' });
    expect(cluster.node('n2').status().lastIndex).toBe(1);
  });

  it('a new leader refuses with ChangeInProgress until it has committed an entry of its own term', () => {
    const cluster = new TestCluster(['n1', 'n2', 'n3']);
    cluster.campaign('n1');
    cluster.deliverWhere((message) => message.type === 'VoteRequest' || message.type === 'VoteResponse');
    expect(cluster.leaders()).toEqual(['n1']);
    expect(cluster.node('n1').status()).toMatchObject({ lastIndex: 1, commitIndex: 0 });
    expect(refusalOf(cluster.changeMembership('n1', 'AddLearner', 'n4'))).toBe('ChangeInProgress');
    expect(cluster.node('n1').status().lastIndex).toBe(1);
    cluster.deliverAll();
    expect(cluster.node('n1').status().commitIndex).toBe(1);
    expect(cluster.changeMembership('n1', 'AddLearner', 'n4')).toMatchObject({ kind: 'Appended', index: 2, term: 1 });
  });

  it('refuses with ChangeInProgress while the previous change is not committed, and accepts once it is', () => {
    const cluster = electedCluster();
    expect(cluster.changeMembership('n1', 'AddLearner', 'n4').kind).toBe('Appended');
    expect(refusalOf(cluster.changeMembership('n1', 'AddLearner', 'n5'))).toBe('ChangeInProgress');
    expect(refusalOf(cluster.changeMembership('n1', 'RemoveNode', 'n4'))).toBe('ChangeInProgress');
    cluster.deliverAll();
    expect(cluster.node('n1').status().commitIndex).toBe(2);
    expect(cluster.changeMembership('n1', 'AddLearner', 'n5')).toMatchObject({
      kind: 'Appended',
      index: 3,
      membership: members(['n1', 'n2', 'n3'], ['n4', 'n5']),
    });
  });

  it('refuses with ChangeInProgress during a leadership transfer', () => {
    const cluster = electedCluster();
    cluster.partition(['n2'], ['n1', 'n3']);
    expect(cluster.node('n1').transferLeadership(nodeId('n2'))).toEqual({ kind: 'Started' });
    expect(refusalOf(cluster.changeMembership('n1', 'AddLearner', 'n4'))).toBe('ChangeInProgress');
  });

  it('refuses with InvalidChange: adding a member, promoting a non-learner, removing a non-member', () => {
    const cluster = electedCluster();
    expect(refusalOf(cluster.changeMembership('n1', 'AddLearner', 'n2'))).toBe('InvalidChange');
    expect(refusalOf(cluster.changeMembership('n1', 'PromoteLearner', 'n2'))).toBe('InvalidChange');
    expect(refusalOf(cluster.changeMembership('n1', 'PromoteLearner', 'n9'))).toBe('InvalidChange');
    expect(refusalOf(cluster.changeMembership('n1', 'RemoveNode', 'n9'))).toBe('InvalidChange');
    expect(cluster.changeMembership('n1', 'AddLearner', 'n4').kind).toBe('Appended');
    cluster.deliverAll();
    expect(refusalOf(cluster.changeMembership('n1', 'AddLearner', 'n4'))).toBe('InvalidChange');
    expect(cluster.node('n1').status().membership).toEqual(members(['n1', 'n2', 'n3'], ['n4']));
  });

  it('refuses with InvalidChange to remove the last voter', () => {
    const cluster = new TestCluster(['n1']);
    cluster.campaign('n1');
    expect(cluster.node('n1').status()).toMatchObject({ role: 'Leader', commitIndex: 1 });
    expect(refusalOf(cluster.changeMembership('n1', 'RemoveNode', 'n1'))).toBe('InvalidChange');
    expect(cluster.node('n1').status()).toMatchObject({ role: 'Leader', lastIndex: 1, membership: members(['n1']) });
  });

  it('refuses with LearnerNotCaughtUp to promote a learner whose match is below the commit index', () => {
    const cluster = electedCluster();
    // n4 is added before it runs: the leader knows nothing of its log.
    cluster.changeMembership('n1', 'AddLearner', 'n4');
    cluster.deliverAll();
    expect(cluster.node('n1').status().commitIndex).toBe(2);
    expect(progressOf(cluster, 'n1', 'n4').match).toBe(0);
    expect(refusalOf(cluster.changeMembership('n1', 'PromoteLearner', 'n4'))).toBe('LearnerNotCaughtUp');
    // Once it runs and catches up, it can be promoted.
    cluster.addNode('n4');
    heartbeat(cluster, 'n1');
    expect(progressOf(cluster, 'n1', 'n4').match).toBe(2);
    expect(cluster.changeMembership('n1', 'PromoteLearner', 'n4')).toMatchObject({ kind: 'Appended', membership: members(['n1', 'n2', 'n3', 'n4']) });
  });

  it('refuses with LearnerNotCaughtUp to promote a learner that has not answered within the last CheckQuorum round', () => {
    const cluster = clusterWithLearner();
    cluster.partition(['n4'], ['n1', 'n2', 'n3']);
    for (let tick = 0; tick < 10; tick++) heartbeat(cluster, 'n1');
    expect(progressOf(cluster, 'n1', 'n4')).toMatchObject({ match: 2, recentActive: false });
    expect(cluster.node('n1').status().commitIndex).toBe(2);
    expect(refusalOf(cluster.changeMembership('n1', 'PromoteLearner', 'n4'))).toBe('LearnerNotCaughtUp');
  });
});

describe('thesis §4.1 a change takes effect as soon as it is in a log', () => {
  it('on the leader at once when appended, and on a follower as soon as the entry is in its log, before it commits', () => {
    const cluster = electedCluster();
    const before = members(['n1', 'n2', 'n3']);
    const after = members(['n1', 'n2', 'n3'], ['n4']);
    cluster.changeMembership('n1', 'AddLearner', 'n4');
    expect(cluster.node('n1').status()).toMatchObject({ membership: after, lastIndex: 2, commitIndex: 1 });
    expect([...cluster.node('n1').status().progress.keys()].sort()).toEqual(['n1', 'n2', 'n3', 'n4']);
    cluster.deliverOne(cluster.take((message) => message.type === 'AppendRequest' && message.to === 'n2'));
    expect(cluster.node('n2').status()).toMatchObject({ membership: after, lastIndex: 2, commitIndex: 1 });
    expect(cluster.node('n3').status().membership).toEqual(before);
    cluster.deliverAll();
    expect(cluster.node('n3').status().membership).toEqual(after);
  });

  it('a follower whose uncommitted membership entry is truncated by a new leader reverts to the previous membership', () => {
    const cluster = new TestCluster(FIVE, { preVote: false, checkQuorum: false });
    cluster.campaign('n1');
    cluster.deliverAll();
    heartbeat(cluster, 'n1');
    const five = members(FIVE);
    // n1 appends "add learner n6"; only n2 gets it, and n2's answer is lost.
    cluster.changeMembership('n1', 'AddLearner', 'n6');
    cluster.deliverOne(cluster.take((message) => message.type === 'AppendRequest' && message.to === 'n2'));
    cluster.dropAll();
    expect(cluster.node('n2').status()).toMatchObject({ membership: members(FIVE, ['n6']), commitIndex: 1, lastIndex: 2 });
    // n3 is elected by n3, n4, n5, whose logs lack the change, and overwrites index 2 with its no-op.
    cluster.partition(['n1', 'n2'], ['n3', 'n4', 'n5']);
    cluster.campaign('n3');
    cluster.deliverAll();
    expect(cluster.leaders()).toContain('n3');
    cluster.heal();
    heartbeat(cluster, 'n3');
    for (const id of ['n1', 'n2']) {
      const status = cluster.node(id).status();
      expect(status).toMatchObject({ role: 'Follower', term: 2, leader: 'n3', membership: five });
      expect(cluster.node(id).raft.log.entryAt(logIndex(2))).toMatchObject({ term: 2, type: EntryType.Noop });
    }
    expect(cluster.leaders()).toEqual(['n3']);
  });
});

describe('thesis §4.2.1 learners', () => {
  it('a learner receives the log and applies entries', () => {
    const cluster = clusterWithLearner();
    cluster.propose('n1', 'x');
    cluster.deliverAll();
    expect(cluster.appliedData('n4')).toEqual(['x']);
    expect(cluster.node('n4').status()).toMatchObject({ role: 'Follower', leader: 'n1', commitIndex: 3, membership: members(['n1', 'n2', 'n3'], ['n4']) });
  });

  it('a learner never campaigns, however long it hears from no leader, and cannot be made leader by a transfer', () => {
    const cluster = clusterWithLearner();
    for (let tick = 0; tick < 200; tick++) cluster.tick('n4');
    cluster.campaign('n4');
    expect(cluster.queue.filter((message) => message.from === 'n4')).toEqual([]);
    expect(cluster.node('n4').status()).toMatchObject({ role: 'Follower', term: 1 });
    expect(cluster.node('n1').transferLeadership(nodeId('n4'))).toEqual({ kind: 'Refused', reason: 'UnknownTarget' });
    cluster.deliverOne({ type: 'TimeoutNow', from: nodeId('n1'), to: nodeId('n4'), term: term(1) });
    expect(cluster.queue.filter((message) => message.from === 'n4')).toEqual([]);
    expect(cluster.node('n4').status()).toMatchObject({ role: 'Follower', term: 1 });
  });

  it('a learner’s acknowledgement does not count toward commit', () => {
    const cluster = clusterWithLearner();
    cluster.partition(['n1', 'n4'], ['n2', 'n3']);
    cluster.propose('n1', 'y');
    cluster.deliverAll();
    expect(cluster.node('n4').status().lastIndex).toBe(3);
    expect(progressOf(cluster, 'n1', 'n4').match).toBe(3);
    expect(cluster.node('n1').status().commitIndex).toBe(2);
    cluster.heal();
    heartbeat(cluster, 'n1');
    expect(cluster.node('n1').status().commitIndex).toBe(3);
  });

  it('after PromoteLearner the new voter counts: n1 and n2 alone are not a majority of four voters, the promoted node’s acknowledgement commits', () => {
    const cluster = clusterWithLearner();
    expect(cluster.changeMembership('n1', 'PromoteLearner', 'n4')).toMatchObject({ kind: 'Appended', index: 3, membership: members(['n1', 'n2', 'n3', 'n4']) });
    cluster.deliverAll();
    expect(cluster.node('n1').status().commitIndex).toBe(3);
    expect(cluster.node('n4').status().membership).toEqual(members(['n1', 'n2', 'n3', 'n4']));
    cluster.partition(['n1', 'n2', 'n4'], ['n3']);
    cluster.propose('n1', 'z');
    // n1 and n2 alone are two of four voters: not a majority.
    cluster.deliverWhere(between('n1', 'n2'));
    expect(cluster.node('n2').status().lastIndex).toBe(4);
    expect(cluster.node('n1').status().commitIndex).toBe(3);
    cluster.deliverAll();
    expect(cluster.node('n1').status().commitIndex).toBe(4);
    expect(cluster.appliedData('n4')).toEqual(['z']);
  });

  it('a promoted learner may campaign and win', () => {
    const cluster = clusterWithLearner();
    cluster.changeMembership('n1', 'PromoteLearner', 'n4');
    cluster.deliverAll();
    heartbeat(cluster, 'n1');
    cluster.node('n1').transferLeadership(nodeId('n4'));
    cluster.flush('n1');
    cluster.deliverAll();
    expect(cluster.leaders()).toEqual(['n4']);
    cluster.propose('n4', 'from n4');
    cluster.deliverAll();
    for (const id of ['n1', 'n2', 'n3', 'n4']) expect(cluster.appliedData(id)).toEqual(['from n4']);
  });
});

describe('thesis §4.2.2 removing the leader', () => {
  it('a leader that removes itself leads until the change commits, without counting itself, then steps down and never campaigns; the others elect a leader', () => {
    const cluster = electedCluster();
    cluster.partition(['n3'], ['n1', 'n2']);
    expect(cluster.changeMembership('n1', 'RemoveNode', 'n1')).toMatchObject({ kind: 'Appended', index: 2, membership: members(['n2', 'n3']) });
    cluster.deliverAll();
    // n1 and n2 hold the entry, but n1 no longer counts: of the voters n2 and n3, only n2 has it.
    expect(cluster.node('n2').status().lastIndex).toBe(2);
    expect(cluster.node('n1').status()).toMatchObject({ role: 'Leader', commitIndex: 1, membership: members(['n2', 'n3']) });
    expect(cluster.node('n1').propose(encoder.encode('still leading')).kind).toBe('Appended');
    cluster.flush('n1');
    cluster.deliverAll();
    expect(cluster.node('n1').status()).toMatchObject({ role: 'Leader', commitIndex: 1 });

    cluster.heal();
    heartbeat(cluster, 'n1');
    const n1 = cluster.node('n1').status();
    expect(n1).toMatchObject({ role: 'Follower', term: 1 });
    expect(n1.commitIndex).toBeGreaterThanOrEqual(2);
    expect(cluster.node('n2').status().commitIndex).toBeGreaterThanOrEqual(2);

    const mark = cluster.trace.length;
    const leader = electAmong(cluster, ['n1', 'n2', 'n3']);
    expect(['n2', 'n3']).toContain(leader);
    for (let round = 0; round < 50; round++) {
      for (const id of ['n1', 'n2', 'n3']) cluster.tick(id);
      cluster.deliverAll();
    }
    expect(cluster.trace.slice(mark).filter((line) => line.startsWith('n1->') && line.includes('VoteRequest'))).toEqual([]);
    expect(cluster.node('n1').status().role).toBe('Follower');
    expect(cluster.leaders()).toEqual([leader]);
    cluster.propose(leader, 'after');
    cluster.deliverAll();
    expect(cluster.appliedData('n2')).toContain('after');
    expect(cluster.appliedData('n3')).toContain('after');
  });
});

// ---------------------------------------------------------------------------------------------
// Codec

describe('codec: membership entries', () => {
  const conf = (index: number, membership: Membership): Entry => ({ index: logIndex(index), term: term(2), type: EntryType.ConfChange, data: encodeMembership(membership) });
  const append = (entries: readonly Entry[]): AppendRequest => ({
    type: 'AppendRequest',
    from: nodeId('n1'),
    to: nodeId('n2'),
    term: term(2),
    prevLogIndex: logIndex(4),
    prevLogTerm: term(1),
    entries,
    leaderCommit: logIndex(4),
  });
  const testPackr = new Packr({ useRecords: false, variableMapSize: true });

  it('ConfChange entries round-trip through encodeMessage/decodeMessage with their membership intact', () => {
    const membership = members(['n1', 'n2', 'n3'], ['n4']);
    const message = append([
      { index: logIndex(5), term: term(2), type: EntryType.Normal, data: encoder.encode('x') },
      conf(6, membership),
      conf(7, members(['n1'])),
    ]);
    const decoded = decodeMessage(encodeMessage(message));
    if (decoded.type !== 'AppendRequest') throw new Error(`decoded a ${decoded.type}`);
    expect(decoded.entries.map((decodedEntry) => [decodedEntry.index, decodedEntry.term, decodedEntry.type, Array.from(decodedEntry.data)])).toEqual(
      message.entries.map((original) => [original.index, original.term, original.type, Array.from(original.data)]),
    );
    expect(decodeMembership(must(decoded.entries[1], 'conf entry').data)).toEqual(membership);
    expect(decodeMembership(must(decoded.entries[2], 'conf entry').data)).toEqual(members(['n1']));
  });

  it('a ConfChange entry whose data is not a valid membership is refused with DecodeError', () => {
    const malformed: readonly Uint8Array[] = [
      encoder.encode('voters: n1, n2'),
      new Uint8Array(0),
      testPackr.pack([PROTOCOL_VERSION, ['n1', 'n1'], []]),
      testPackr.pack([PROTOCOL_VERSION, ['n1', 'n2'], ['n2']]),
      testPackr.pack([PROTOCOL_VERSION + 1, ['n1'], []]),
      testPackr.pack([PROTOCOL_VERSION, ['n1', ''], []]),
      testPackr.pack([PROTOCOL_VERSION, ['n1'], [], 'extra']),
      testPackr.pack([PROTOCOL_VERSION, 'n1', []]),
    ];
    for (const data of malformed) {
      const bytes = encodeMessage(append([{ index: logIndex(5), term: term(2), type: EntryType.ConfChange, data }]));
      expect(() => decodeMessage(bytes), `ConfChange data ${Array.from(data).join(',')}`).toThrow(DecodeError);
      // The same bytes in a normal entry are just application data.
      const asNormal = decodeMessage(encodeMessage(append([{ index: logIndex(5), term: term(2), type: EntryType.Normal, data }])));
      expect(asNormal.type).toBe('AppendRequest');
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Election safety across configurations: random schedules

type Action =
  | { readonly kind: 'tick'; readonly node: number; readonly times: number }
  | { readonly kind: 'tickAll'; readonly times: number }
  | { readonly kind: 'deliver'; readonly pos: number }
  | { readonly kind: 'burst'; readonly count: number }
  /** Delivers every message queued now, in order (their answers stay queued). */
  | { readonly kind: 'calm' }
  | { readonly kind: 'drop'; readonly pos: number }
  | { readonly kind: 'duplicate'; readonly pos: number }
  | { readonly kind: 'propose'; readonly node: number }
  | { readonly kind: 'change'; readonly change: MembershipChange['kind']; readonly node: number; readonly at: number }
  | { readonly kind: 'campaign'; readonly node: number }
  | { readonly kind: 'partition'; readonly mask: number }
  | { readonly kind: 'heal' }
  | { readonly kind: 'restart'; readonly node: number }
  | { readonly kind: 'compact'; readonly node: number };

interface Scenario {
  readonly seed: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** Swarm testing: kinds of action this run skips, so some runs get deeper into the others. */
  readonly disabled: readonly Action['kind'][];
  readonly actions: readonly Action[];
}

const SWARM_KINDS: readonly Action['kind'][] = ['deliver', 'burst', 'calm', 'drop', 'duplicate', 'tick', 'tickAll', 'campaign', 'partition', 'restart', 'compact'];

const nodeArb = fc.nat({ max: 4 });
const posArb = fc.nat({ max: 1_000 });
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 20, arbitrary: fc.record({ kind: fc.constant('deliver' as const), pos: posArb }) },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('burst' as const), count: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 6, arbitrary: fc.constant<Action>({ kind: 'calm' }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('tick' as const), node: nodeArb, times: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('tickAll' as const), times: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('drop' as const), pos: posArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('duplicate' as const), pos: posArb }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('propose' as const), node: nodeArb }) },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('change' as const),
      change: fc.constantFrom<MembershipChange['kind']>('AddLearner', 'AddLearner', 'PromoteLearner', 'PromoteLearner', 'RemoveNode'),
      node: fc.nat({ max: 15 }),
      at: nodeArb,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('campaign' as const), node: nodeArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('partition' as const), mask: fc.nat({ max: 31 }) }) },
  { weight: 3, arbitrary: fc.constant<Action>({ kind: 'heal' }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('restart' as const), node: nodeArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('compact' as const), node: nodeArb }) },
);
const scenarioArb = (maxActions: number): fc.Arbitrary<Scenario> =>
  fc.record({
    seed: fc.nat({ max: 1_000 }),
    preVote: fc.boolean(),
    checkQuorum: fc.boolean(),
    disabled: fc.subarray(SWARM_KINDS as Action['kind'][], { maxLength: 5 }),
    actions: fc.array(actionArb, { minLength: maxActions / 5, maxLength: maxActions, size: 'max' }),
  });

class SafetyViolation extends Error {
  constructor(property: string, detail: string) {
    super(`${property}: ${detail}`);
    this.name = 'SafetyViolation';
  }
}

interface MembershipCoverage {
  leaders: number;
  leadersAfterChange: number;
  changesAppended: Record<string, number>;
  changesCommitted: number;
  snapshotsInstalled: number;
  compactions: number;
  stateMachineChecks: number;
}

const entryKey = (entry: Entry): string => `${entry.index}@${entry.term}:${entry.type}:${Array.from(entry.data).join(',')}`;

/** Drives one schedule on n1..n3 (founders) and n4, n5 (started empty), checking after every step. */
class MembershipHarness {
  readonly cluster: TestCluster;
  readonly ids: readonly NodeId[] = FIVE.map(nodeId);
  readonly events: string[] = [];
  private readonly leaderOfTerm = new Map<number, NodeId>();
  private readonly committed = new Map<number, { readonly key: string; readonly entry: Entry }>();
  private readonly seen = new WeakSet<Message>();
  private proposals = 0;
  private changeCommittedAtTerm: number | null = null;

  constructor(
    scenario: Scenario,
    private readonly coverage: MembershipCoverage,
  ) {
    this.cluster = new TestCluster(['n1', 'n2', 'n3'], {
      seed: scenario.seed + 1,
      electionTimeoutTicks: 5,
      heartbeatIntervalTicks: 1,
      preVote: scenario.preVote,
      checkQuorum: scenario.checkQuorum,
      maxSnapshotChunkBytes: 16,
      maxInflightSnapshotChunks: 2,
    });
    this.cluster.addNode('n4');
    this.cluster.addNode('n5');
    // Every run starts from an elected leader, so the schedule spends its actions on changes.
    this.cluster.campaign('n1');
    this.cluster.deliverAll();
    this.cluster.tick('n1');
    this.cluster.deliverAll();
  }

  private id(n: number): NodeId {
    return must(this.ids[n % this.ids.length], 'node id');
  }

  /** A current leader (the `n`-th of them), or node `n` when none leads. */
  private leaderOr(n: number): NodeId {
    const leaders = this.cluster.leaders();
    return leaders[n % Math.max(1, leaders.length)] ?? this.id(n);
  }

  private deliver(message: Message): void {
    this.events.push(`  ${this.cluster.deliverOne(message) ? 'deliver' : 'lost'} ${describeMessage(message)}`);
    this.check();
  }

  private takeAt(pos: number): Message | undefined {
    const queue = this.cluster.queue;
    if (queue.length === 0) return undefined;
    return queue.splice(pos % queue.length, 1)[0];
  }

  run(action: Action): void {
    this.events.push(`> ${JSON.stringify(action)}`);
    const cluster = this.cluster;
    switch (action.kind) {
      case 'tick':
        cluster.tick(this.id(action.node), action.times);
        return;
      case 'tickAll':
        for (let round = 0; round < action.times; round++) {
          for (const id of this.ids) cluster.tick(id);
          this.check();
        }
        return;
      case 'deliver': {
        const message = this.takeAt(action.pos);
        if (message !== undefined) this.deliver(message);
        return;
      }
      case 'burst':
        for (let count = 0; count < action.count; count++) {
          const message = cluster.queue.shift();
          if (message === undefined) return;
          this.deliver(message);
        }
        return;
      case 'calm': {
        const batch = cluster.queue;
        cluster.queue = [];
        for (const message of batch) this.deliver(message);
        return;
      }
      case 'drop':
        this.takeAt(action.pos);
        return;
      case 'duplicate': {
        const message = cluster.queue[action.pos % Math.max(1, cluster.queue.length)];
        if (message !== undefined) cluster.queue.push(message);
        return;
      }
      case 'propose':
        cluster.propose(this.leaderOr(action.node), `p${++this.proposals}`);
        return;
      case 'change': {
        const at = this.leaderOr(action.at);
        const target = this.changeTarget(at, action.change, action.node);
        const outcome = cluster.changeMembership(at, action.change, target);
        this.events.push(`  ${at}: ${action.change} ${target} -> ${JSON.stringify(outcome)}`);
        if (outcome.kind === 'Appended') this.coverage.changesAppended[action.change] = (this.coverage.changesAppended[action.change] ?? 0) + 1;
        return;
      }
      case 'campaign':
        cluster.campaign(this.id(action.node));
        return;
      case 'partition': {
        const inside = this.ids.filter((_, i) => (action.mask & (1 << i)) !== 0);
        cluster.partition(inside, this.ids.filter((id) => !inside.includes(id)));
        return;
      }
      case 'heal':
        cluster.heal();
        return;
      case 'restart':
        cluster.start(this.id(action.node));
        cluster.flush(this.id(action.node));
        return;
      case 'compact': {
        const id = this.id(action.node);
        const status = cluster.node(id).status();
        if (status.appliedIndex <= status.snapshotIndex) return;
        cluster.compact(id);
        this.coverage.compactions++;
        return;
      }
    }
  }

  /**
   * Mostly a node the change makes sense for in `at`'s membership (an outsider to add, a learner to
   * promote, a member to remove), so few changes are refused as invalid; sometimes any node.
   */
  private changeTarget(at: NodeId, change: MembershipChange['kind'], pick: number): NodeId {
    const { voters, learners } = this.cluster.node(at).status().membership;
    const candidates =
      change === 'AddLearner'
        ? this.ids.filter((id) => !voters.includes(id) && !learners.includes(id))
        : change === 'PromoteLearner'
          ? learners
          : [...voters, ...learners];
    return pick % 4 === 3 ? this.id(pick) : (candidates[pick % Math.max(1, candidates.length)] ?? this.id(pick));
  }

  private recordLeader(leaderTerm: number, leader: NodeId, how: string): void {
    const earlier = this.leaderOfTerm.get(leaderTerm);
    if (earlier === undefined) {
      this.leaderOfTerm.set(leaderTerm, leader);
      this.coverage.leaders++;
      if (this.changeCommittedAtTerm !== null && leaderTerm > this.changeCommittedAtTerm) this.coverage.leadersAfterChange++;
    } else if (earlier !== leader) {
      throw new SafetyViolation('election safety', `${earlier} and ${leader} both led term ${leaderTerm} (${how})`);
    }
  }

  check(): void {
    const cluster = this.cluster;
    for (const message of cluster.queue) {
      if (this.seen.has(message)) continue;
      this.seen.add(message);
      if (message.type === 'AppendRequest' || message.type === 'Heartbeat' || message.type === 'InstallSnapshot') {
        this.recordLeader(message.term, message.from, `it sent ${describeMessage(message)}`);
      }
    }
    for (const id of this.ids) {
      const node = cluster.node(id);
      const status = node.status();
      if (status.role === 'Leader') this.recordLeader(status.term, id, 'its role');
      // Committed entries never change, whoever holds them and in whatever configuration.
      for (let index = node.raft.log.snapshotIndex() + 1; index <= status.commitIndex; index++) {
        const held = node.raft.log.entryAt(logIndex(index));
        if (held === undefined) throw new SafetyViolation('commit within log', `${id} committed ${index}, which it does not hold`);
        const record = this.committed.get(index);
        if (record === undefined) {
          this.committed.set(index, { key: entryKey(held), entry: held });
          if (held.type === EntryType.ConfChange) {
            this.coverage.changesCommitted++;
            this.changeCommittedAtTerm ??= status.term;
          }
        } else if (record.key !== entryKey(held)) {
          throw new SafetyViolation('committed entries never change', `${id} holds ${entryKey(held)} at committed index ${index}, ${record.key} was committed there`);
        }
      }
      // A snapshot covers committed entries only: its last entry is the committed one.
      const snapshot = node.raft.snapshot();
      const snapshotRecord = snapshot === null ? undefined : this.committed.get(snapshot.metadata.index);
      if (snapshot !== null && snapshot.metadata.index > 0 && snapshotRecord !== undefined && snapshotRecord.entry.term !== snapshot.metadata.term) {
        throw new SafetyViolation('snapshot safety', `${id}'s snapshot at ${snapshot.metadata.index} has term ${snapshot.metadata.term}, the committed entry is ${snapshotRecord.key}`);
      }
      if (snapshot !== null && snapshot.metadata.index > status.commitIndex) {
        throw new SafetyViolation('snapshot safety', `${id} holds a snapshot at ${snapshot.metadata.index} beyond its commit index ${status.commitIndex}`);
      }
      this.checkStateMachine(id, status.appliedIndex);
    }
  }

  /** The node's state machine (restored snapshot plus applied entries) holds exactly the committed payloads up to its applied index. */
  private checkStateMachine(id: NodeId, appliedIndex: number): void {
    const expected: string[] = [];
    for (let index = 1; index <= appliedIndex; index++) {
      const record = this.committed.get(index);
      if (record === undefined) return;
      if (record.entry.type === EntryType.Normal) expected.push(new TextDecoder().decode(record.entry.data));
    }
    this.coverage.stateMachineChecks++;
    const actual = this.cluster.appliedData(id);
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      throw new SafetyViolation('state machine safety', `${id} applied ${JSON.stringify(actual)} up to ${appliedIndex}, committed were ${JSON.stringify(expected)}`);
    }
  }

  finish(): void {
    this.coverage.snapshotsInstalled += this.cluster.trace.filter((line) => line.includes('restores snapshot')).length;
  }
}

const MEMBERSHIP_SEED = Number(process.env.RAFTLEASE_SCHEDULE_SEED ?? 0x5eed_0a11);
const MEMBERSHIP_RUNS = Number(process.env.RAFTLEASE_SCHEDULE_RUNS ?? 150);
const MAX_ACTIONS = 250;

describe('election safety across configurations (random schedules)', () => {
  it('at most one leader per term and committed entries never change, under membership changes, partitions, losses, restarts and compaction', () => {
    const coverage: MembershipCoverage = {
      leaders: 0,
      leadersAfterChange: 0,
      changesAppended: {},
      changesCommitted: 0,
      snapshotsInstalled: 0,
      compactions: 0,
      stateMachineChecks: 0,
    };
    fc.assert(
      fc.property(scenarioArb(MAX_ACTIONS), (scenario) => {
        const harness = new MembershipHarness(scenario, coverage);
        const schedule = scenario.actions.filter((action) => !scenario.disabled.includes(action.kind));
        let step = 0;
        try {
          harness.check();
          for (step = 0; step < schedule.length; step++) {
            harness.run(must(schedule[step], 'action'));
            harness.check();
          }
          harness.finish();
        } catch (error) {
          const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
          throw new Error(`${message}\nafter action #${step + 1}\nevents (tail):\n${harness.events.slice(-120).join('\n')}`, { cause: error });
        }
      }),
      { seed: MEMBERSHIP_SEED, numRuns: MEMBERSHIP_RUNS },
    );
    // The schedules must reach the interesting situations, or the property proves little.
    expect(coverage.leaders).toBeGreaterThan(MEMBERSHIP_RUNS);
    expect(coverage.changesAppended.AddLearner ?? 0).toBeGreaterThan(MEMBERSHIP_RUNS / 2);
    expect(coverage.changesAppended.PromoteLearner ?? 0).toBeGreaterThan(MEMBERSHIP_RUNS / 10);
    expect(coverage.changesAppended.RemoveNode ?? 0).toBeGreaterThan(MEMBERSHIP_RUNS / 10);
    expect(coverage.changesCommitted).toBeGreaterThan(MEMBERSHIP_RUNS / 2);
    expect(coverage.leadersAfterChange).toBeGreaterThan(MEMBERSHIP_RUNS / 10);
    expect(coverage.compactions).toBeGreaterThan(MEMBERSHIP_RUNS);
    expect(coverage.snapshotsInstalled).toBeGreaterThan(MEMBERSHIP_RUNS / 10);
    expect(coverage.stateMachineChecks).toBeGreaterThan(MEMBERSHIP_RUNS * 10);
  });
});
