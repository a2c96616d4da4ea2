/**
 * Randomized safety test of the Raft core under an adversarial network, storage and clock.
 *
 * fast-check generates a schedule: ticks (of one node or all), deliveries in any order, drops,
 * duplicates, proposals, forced campaigns, crashes (clean, or in the middle of a Ready), partitions
 * and heals. Each run also draws the flow-control limits and whether storage is synchronous (every
 * Ready handled at once, as `TestCluster.flush` does) or asynchronous (as the runtime does it: a
 * Ready's `messages` go out at once, its write lands only on a `persist` action, and the node keeps
 * being ticked and stepped meanwhile). After every action the harness checks, across all nodes and
 * against a history it keeps outside the core:
 *
 * - election safety: at most one leader per term, ever (roles observed, and the sender of every
 *   AppendEntries or heartbeat);
 * - log matching: two logs holding an entry with the same index and term are identical up to it;
 * - leader completeness: every committed entry is in the log of every leader of a term at or after
 *   the term of a node seen holding it committed;
 * - committed entries never change, in any node's memory or storage;
 * - state machine safety: each node applies, in order and once per incarnation, exactly the
 *   committed entry at each index, and only entries already durable in its own storage;
 * - proposals: a position a leader acknowledged (Appended, or a ProposeResponse) holds that proposal
 *   in every log; no proposal is appended twice in one term (forwarded-proposal deduplication);
 * - monotonicity: term and commit index never decrease, in memory within an incarnation and in the
 *   stored hard state across restarts;
 * - one vote per term: the stored vote never changes within a term, and no node grants its vote to
 *   two candidates in one term (checked on the VoteResponses sent, across restarts);
 * - the core never throws (an InvariantError fails the run like any violation).
 *
 * Each run ends with a liveness check: heal, complete every write, then rounds of "deliver
 * everything, tick every node": one leader must settle and keep every node following it for two
 * election timeouts, and a fresh proposal on it must then be applied on every node.
 *
 * A failure shrinks to a minimal schedule; the error shows it with the tail of the run's event log.
 * For a longer soak, set RAFTLEASE_SCHEDULE_RUNS (runs per cluster shape) and
 * RAFTLEASE_SCHEDULE_SEED; the defaults are fixed, so the test is deterministic.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RAFT_OPTIONS,
  EntryType,
  InvariantError,
  type Entry,
  type HardState,
  type LogIndex,
  type Message,
  type NodeId,
  type ProposeOutcome,
  type RaftOptions,
  type RawNode,
  type Ready,
} from '../../src/raft/index.js';
import { TestCluster, describeMessage } from '../support/cluster.js';

// ---------------------------------------------------------------------------------------------
// Schedules

type TornTrigger = 'tick' | 'deliver' | 'propose';

/**
 * A node: `n{node mod size + 1}`, or with `atLeader` one of the nodes that currently consider
 * themselves leader (`node` mod their count), when there is one.
 */
interface Target {
  readonly node: number;
  readonly atLeader: boolean;
}

type Action =
  /** Ticks one node `times` times (the clocks of different nodes need not agree). */
  | { readonly kind: 'tick'; readonly node: number; readonly times: number }
  /** Ticks every node once, `times` times. */
  | { readonly kind: 'tickAll'; readonly times: number }
  /** Delivers the message at position `pos` (mod queue length) of the queue: reordering. */
  | { readonly kind: 'deliver'; readonly pos: number }
  /** Delivers the `count` oldest messages in order: a stretch of well-behaved network. */
  | { readonly kind: 'burst'; readonly count: number }
  /**
   * A moment of calm: every write in flight completes, then every message now queued is delivered in
   * order (their answers stay queued).
   */
  | { readonly kind: 'calm' }
  /** Drops the message at position `pos`. */
  | { readonly kind: 'drop'; readonly pos: number }
  /** Puts a copy of the message at position `pos` at the end of the queue. */
  | { readonly kind: 'duplicate'; readonly pos: number }
  /** Client proposal on a node (appended by a leader, forwarded by a follower that knows one). */
  | ({ readonly kind: 'propose' } & Target)
  /** Campaigns at once (as if the election timeout had passed). */
  | { readonly kind: 'campaign'; readonly node: number }
  /** With asynchronous storage: the node's write in flight completes (a no-op otherwise). */
  | { readonly kind: 'persist'; readonly node: number }
  /** With asynchronous storage: every node's write in flight completes. */
  | { readonly kind: 'persistAll' }
  /**
   * Crash and restart from stored state: volatile state and any write in flight are lost, messages
   * already in the network are not.
   */
  | ({ readonly kind: 'crash' } & Target)
  /**
   * Crash in the middle of a Ready: a tick, a delivered message or a proposal produces a Ready, its
   * `messages` are sent (allowed before the write, see `Ready`), then the node crashes before its
   * write is durable: the hard state, entries and `messagesAfterPersist` are lost.
   */
  | ({ readonly kind: 'tornCrash'; readonly trigger: TornTrigger; readonly pos: number } & Target)
  /** Splits the nodes into those whose bit is set in `mask` and the rest (an empty side heals). */
  | { readonly kind: 'partition'; readonly mask: number }
  /** Cuts one node off from all others. */
  | ({ readonly kind: 'isolate' } & Target)
  | { readonly kind: 'heal' };

/** Fixed per test. */
interface ClusterShape {
  readonly size: 3 | 5;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
}

type Limits = Pick<
  RaftOptions,
  'maxEntriesPerMessage' | 'maxInflightMessages' | 'maxInflightBytes' | 'maxUncommittedBytes' | 'maxApplyEntriesPerReady'
>;

/** Generated (and shrunk) per run. */
interface Scenario {
  /** Seed of the nodes' election jitter. */
  readonly seed: number;
  /**
   * False: every Ready is handled at once, as `TestCluster.flush` does. True: as the runtime does it,
   * a Ready's `messages` go out at once, but its write completes only on a `persist` action, and the
   * node keeps being ticked and stepped while the write is in flight.
   */
  readonly asyncStorage: boolean;
  /**
   * Flow-control limits: the defaults, or tiny ones so the leader sends its log in pieces (followers
   * ack partial prefixes), fills its in-flight window, refuses proposals and applies one entry per
   * Ready.
   */
  readonly limits: Limits;
  /**
   * Swarm testing: kinds of action this run skips, so some runs are free of some kinds of noise and
   * get deeper into the others.
   */
  readonly disabled: readonly Action['kind'][];
  readonly actions: readonly Action[];
}

const SWARM_KINDS: readonly Action['kind'][] = ['deliver', 'burst', 'calm', 'drop', 'duplicate', 'tick', 'tickAll', 'campaign', 'crash', 'tornCrash', 'partition', 'isolate', 'heal'];

const ELECTION_TIMEOUT_TICKS = 5;
/** Rounds (deliver everything, tick every node) the liveness phase allows for each of its steps. */
const LIVENESS_ROUNDS = 200;

const nodeArb = fc.nat({ max: 4 });
const posArb = fc.nat({ max: 1_000 });

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 20, arbitrary: fc.record({ kind: fc.constant('deliver' as const), pos: posArb }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('burst' as const), count: fc.integer({ min: 1, max: 12 }) }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('tick' as const), node: nodeArb, times: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('tickAll' as const), times: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 4, arbitrary: fc.constant<Action>({ kind: 'calm' }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('drop' as const), pos: posArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('duplicate' as const), pos: posArb }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('propose' as const), node: nodeArb, atLeader: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('campaign' as const), node: nodeArb }) },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('persist' as const), node: nodeArb }) },
  { weight: 6, arbitrary: fc.constant<Action>({ kind: 'persistAll' }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), node: nodeArb, atLeader: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('tornCrash' as const),
      node: nodeArb,
      atLeader: fc.boolean(),
      trigger: fc.constantFrom<TornTrigger>('tick', 'deliver', 'propose'),
      pos: posArb,
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('partition' as const), mask: fc.nat({ max: 31 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('isolate' as const), node: nodeArb, atLeader: fc.boolean() }) },
  { weight: 2, arbitrary: fc.constant<Action>({ kind: 'heal' }) },
);

const scenarioArb = (maxActions: number): fc.Arbitrary<Scenario> =>
  fc.record({
    seed: fc.nat({ max: 1_000 }),
    asyncStorage: fc.boolean(),
    limits: fc.record({
      maxEntriesPerMessage: fc.constantFrom(DEFAULT_RAFT_OPTIONS.maxEntriesPerMessage, 1, 2),
      maxInflightMessages: fc.constantFrom(DEFAULT_RAFT_OPTIONS.maxInflightMessages, 1, 2),
      maxInflightBytes: fc.constantFrom(DEFAULT_RAFT_OPTIONS.maxInflightBytes, 4),
      maxUncommittedBytes: fc.constantFrom(DEFAULT_RAFT_OPTIONS.maxUncommittedBytes, 8),
      maxApplyEntriesPerReady: fc.constantFrom(DEFAULT_RAFT_OPTIONS.maxApplyEntriesPerReady, 1),
    }),
    disabled: fc.subarray(SWARM_KINDS as Action['kind'][], { maxLength: 5 }),
    actions: fc.array(actionArb, { maxLength: maxActions, size: 'max' }),
  });

function describeAction(action: Action, size: number): string {
  const node = (n: number): string => `n${(n % size) + 1}`;
  const target = (t: Target): string => (t.atLeader ? `leader#${t.node}` : node(t.node));
  switch (action.kind) {
    case 'tick':
      return `tick ${node(action.node)} x${action.times}`;
    case 'tickAll':
      return `tickAll x${action.times}`;
    case 'burst':
      return `burst ${action.count}`;
    case 'deliver':
    case 'drop':
    case 'duplicate':
      return `${action.kind} #${action.pos}`;
    case 'propose':
    case 'crash':
    case 'isolate':
      return `${action.kind} ${target(action)}`;
    case 'campaign':
    case 'persist':
      return `${action.kind} ${node(action.node)}`;
    case 'tornCrash':
      return `tornCrash ${target(action)} after ${action.trigger}${action.trigger === 'deliver' ? ` #${action.pos}` : ''}`;
    case 'partition':
      return `partition mask=${action.mask}`;
    case 'calm':
    case 'persistAll':
    case 'heal':
      return action.kind;
  }
}

// ---------------------------------------------------------------------------------------------
// History and checks, all outside the core

class SafetyViolation extends Error {
  constructor(property: string, detail: string) {
    super(`${property}: ${detail}`);
    this.name = 'SafetyViolation';
  }
}

const decoder = new TextDecoder();
const entryKeys = new WeakMap<Entry, string>();
/** Identity of an entry's content: term, type and payload. */
function entryKey(entry: Entry): string {
  let key = entryKeys.get(entry);
  if (key === undefined) {
    key = `${entry.index}@${entry.term}:${entry.type === EntryType.Noop ? 'noop' : decoder.decode(entry.data)}`;
    entryKeys.set(entry, key);
  }
  return key;
}

function logOf(node: RawNode): Entry[] {
  return node.raft.log.slice(1 as LogIndex, Number.MAX_SAFE_INTEGER, Number.POSITIVE_INFINITY);
}

/** Counters over all runs, so a generator that never reaches the interesting cases is noticed. */
interface Coverage {
  leadersElected: number;
  committedEntries: number;
  runsWithLeaderChangeAfterCommit: number;
  truncations: number;
  crashes: number;
  tornCrashes: number;
  /** Proposal outcomes by kind (and refusal). */
  proposals: Record<string, number>;
}

function newCoverage(): Coverage {
  return {
    leadersElected: 0,
    committedEntries: 0,
    runsWithLeaderChangeAfterCommit: 0,
    truncations: 0,
    crashes: 0,
    tornCrashes: 0,
    proposals: {},
  };
}

interface CommittedRecord {
  readonly key: string;
  /** Lowest term of a node seen holding the entry committed: every leader from then on must hold it. */
  observedTerm: number;
}

interface Incarnation {
  readonly node: RawNode;
  term: number;
  commit: number;
  vote: NodeId | null;
  /** The last log seen, to count truncations. */
  lastLog: Entry[];
}

class Harness {
  readonly cluster: TestCluster;
  readonly ids: NodeId[];
  private readonly asyncStorage: boolean;
  /** With asynchronous storage: the Ready whose write is in flight, per node. */
  private readonly inFlight = new Map<NodeId, Ready>();
  /** Writes complete at once (the liveness phase). */
  private settling = false;
  private readonly cuts = new Set<string>();
  /** What happened, one line per action or message, for failure reports. */
  readonly events: string[] = [];
  private proposalCounter = 0;
  private requestId = 0;

  // History.
  private readonly leaderOfTerm = new Map<number, NodeId>();
  private readonly committed = new Map<number, CommittedRecord>();
  /** "voter@term" -> candidate granted, from every VoteResponse sent. */
  private readonly votesGranted = new Map<string, NodeId>();
  /** Payload -> term -> index, over every log ever seen. */
  private readonly proposalPlaces = new Map<string, Map<number, number>>();
  private readonly proposed = new Set<string>();
  private readonly requestData = new Map<number, string>();
  /** "index@term" -> payload, for every proposal a leader said it appended there. */
  private readonly acknowledged = new Map<string, string>();
  private readonly storedSeen = new Map<NodeId, HardState>();
  private readonly incarnations = new Map<NodeId, Incarnation>();
  private readonly seenMessages = new WeakSet<Message>();
  private commitSeenAtTerm = 0;
  private leaderChangedAfterCommit = false;

  constructor(
    readonly shape: ClusterShape,
    scenario: Scenario,
    private readonly coverage: Coverage,
  ) {
    const names = Array.from({ length: shape.size }, (_, i) => `n${i + 1}`);
    this.cluster = new TestCluster(names, {
      seed: scenario.seed + 1,
      electionTimeoutTicks: ELECTION_TIMEOUT_TICKS,
      heartbeatIntervalTicks: 1,
      preVote: shape.preVote,
      checkQuorum: shape.checkQuorum,
      ...scenario.limits,
    });
    this.ids = names as NodeId[];
    this.asyncStorage = scenario.asyncStorage;
  }

  private id(n: number): NodeId {
    const id = this.ids[n % this.ids.length];
    if (id === undefined) throw new Error('no node');
    return id;
  }

  private log(event: string): void {
    this.events.push(event);
  }

  /** The last events, for a failure report. */
  tail(count = 150): string {
    const skipped = this.events.length - count;
    return [...(skipped > 0 ? [`(${skipped} earlier events)`] : []), ...this.events.slice(-count)].join('\n');
  }

  // -------------------------------------------------------------------------------------------
  // Driving the nodes

  /** After an input to a node: handle its Readies at once, or start its next write. */
  private afterInput(id: NodeId): void {
    if (!this.asyncStorage) this.cluster.flush(id);
    else if (this.settling) this.completeWrites(id);
    else this.startWrite(id);
  }

  /** Takes the node's next Ready unless a write is in flight: sends `messages`, starts the write. */
  private startWrite(id: NodeId): void {
    const node = this.cluster.node(id);
    if (this.inFlight.has(id) || !node.hasReady()) return;
    const ready = node.ready();
    this.cluster.queue.push(...ready.messages);
    this.inFlight.set(id, ready);
  }

  /** The node's write in flight lands: persist, send what waited for it, apply, advance. */
  private finishWrite(id: NodeId): void {
    const ready = this.inFlight.get(id);
    const stored = this.cluster.stored.get(id);
    if (ready === undefined || stored === undefined) return;
    this.inFlight.delete(id);
    if (ready.hardState !== null) stored.hardState = ready.hardState;
    const first = ready.entries[0];
    if (first !== undefined) {
      stored.entries.length = Math.min(stored.entries.length, first.index - 1);
      stored.entries.push(...ready.entries);
    }
    this.cluster.queue.push(...ready.messagesAfterPersist);
    this.cluster.applied.get(id)?.push(...ready.committedEntries);
    this.cluster.node(id).advance();
    this.startWrite(id);
  }

  private completeWrites(id: NodeId): void {
    for (let round = 0; round < 1_000 && this.inFlight.has(id); round++) this.finishWrite(id);
    this.startWrite(id);
    for (let round = 0; round < 1_000 && this.inFlight.has(id); round++) this.finishWrite(id);
  }

  private takeAt(pos: number): Message | undefined {
    const queue = this.cluster.queue;
    if (queue.length === 0) return undefined;
    return queue.splice(pos % queue.length, 1)[0];
  }

  private linkUp(message: Message): boolean {
    return !this.cuts.has(`${message.from}->${message.to}`);
  }

  private deliver(message: Message): void {
    if (!this.linkUp(message)) {
      this.log(`  lost (partition) ${describeMessage(message)}`);
      return;
    }
    this.log(`  deliver ${describeMessage(message)}`);
    this.cluster.node(message.to).step(message);
    this.afterInput(message.to);
  }

  /** Offers a fresh payload to a node; the caller handles the node's Ready. */
  private propose(id: NodeId): { data: string; outcome: ProposeOutcome } {
    const data = `p${++this.proposalCounter}`;
    const requestId = ++this.requestId;
    this.proposed.add(data);
    this.requestData.set(requestId, data);
    const outcome = this.cluster.node(id).propose(new TextEncoder().encode(data), requestId);
    this.log(`  ${data} on ${id}: ${JSON.stringify(outcome)}`);
    const kind = outcome.kind === 'Refused' ? `${outcome.kind}:${outcome.refusal}` : outcome.kind;
    this.coverage.proposals[kind] = (this.coverage.proposals[kind] ?? 0) + 1;
    if (outcome.kind === 'Appended') this.acknowledge(outcome.index, outcome.term, data, `${id} answered Appended`);
    return { data, outcome };
  }

  /** Crash and restart: volatile state and the write in flight are lost. */
  private restart(id: NodeId): void {
    const lost = this.inFlight.get(id);
    if (lost !== undefined) {
      this.log(
        `  write lost: hardState=${JSON.stringify(lost.hardState)} entries=${lost.entries.map((e) => entryKey(e)).join(' ')} afterPersist=${lost.messagesAfterPersist.length}`,
      );
    }
    this.inFlight.delete(id);
    this.cluster.start(id);
    this.afterInput(id);
  }

  run(action: Action): void {
    this.log(`> ${describeAction(action, this.ids.length)}`);
    switch (action.kind) {
      case 'tick': {
        const id = this.id(action.node);
        for (let i = 0; i < action.times; i++) {
          this.cluster.node(id).tick();
          this.afterInput(id);
        }
        return;
      }
      case 'tickAll':
        for (let i = 0; i < action.times; i++) {
          for (const id of this.ids) {
            this.cluster.node(id).tick();
            this.afterInput(id);
          }
          this.check();
        }
        return;
      case 'deliver': {
        const message = this.takeAt(action.pos);
        if (message !== undefined) this.deliver(message);
        return;
      }
      case 'burst':
        for (let i = 0; i < action.count; i++) {
          const message = this.cluster.queue.shift();
          if (message === undefined) break;
          this.deliver(message);
          this.check();
        }
        return;
      case 'calm': {
        for (const id of this.ids) this.finishWrite(id);
        this.check();
        const batch = this.cluster.queue;
        this.cluster.queue = [];
        for (const message of batch) {
          this.deliver(message);
          this.check();
        }
        return;
      }
      case 'drop': {
        const message = this.takeAt(action.pos);
        if (message !== undefined) this.log(`  dropped ${describeMessage(message)}`);
        return;
      }
      case 'duplicate': {
        const queue = this.cluster.queue;
        const message = queue[action.pos % Math.max(1, queue.length)];
        if (message !== undefined) {
          queue.push(message);
          this.log(`  duplicated ${describeMessage(message)}`);
        }
        return;
      }
      case 'propose': {
        const id = this.target(action);
        this.propose(id);
        this.afterInput(id);
        return;
      }
      case 'campaign': {
        const id = this.id(action.node);
        this.cluster.node(id).campaign();
        this.afterInput(id);
        return;
      }
      case 'persist':
        this.finishWrite(this.id(action.node));
        return;
      case 'persistAll':
        for (const id of this.ids) this.finishWrite(id);
        return;
      case 'crash':
        this.coverage.crashes++;
        this.restart(this.target(action));
        return;
      case 'tornCrash':
        this.coverage.tornCrashes++;
        this.tornCrash(this.target(action), action.trigger, action.pos);
        return;
      case 'partition':
        this.partition(this.ids.filter((_, i) => (action.mask & (1 << i)) !== 0));
        return;
      case 'isolate':
        this.partition([this.target(action)]);
        return;
      case 'heal':
        this.heal();
        return;
    }
  }

  heal(): void {
    this.cuts.clear();
    this.cluster.heal();
  }

  /** Cuts every link between `inside` and the other nodes (both ways). */
  private partition(inside: readonly NodeId[]): void {
    const outside = this.ids.filter((id) => !inside.includes(id));
    this.cuts.clear();
    for (const a of inside) {
      for (const b of outside) {
        this.cuts.add(`${a}->${b}`);
        this.cuts.add(`${b}->${a}`);
      }
    }
    this.cluster.partition(inside, outside);
    this.log(`  groups [${inside.join(' ')}] [${outside.join(' ')}]`);
  }

  private target(target: Target): NodeId {
    if (target.atLeader) {
      const leaders = this.ids.filter((id) => this.cluster.node(id).status().role === 'Leader');
      const leader = leaders[target.node % Math.max(1, leaders.length)];
      if (leader !== undefined) return leader;
    }
    return this.id(target.node);
  }

  private tornCrash(id: NodeId, trigger: TornTrigger, pos: number): void {
    const node = this.cluster.node(id);
    switch (trigger) {
      case 'tick':
        node.tick();
        break;
      case 'deliver': {
        const queue = this.cluster.queue;
        const mine = queue.flatMap((message, index) => (message.to === id ? [index] : []));
        const at = mine[pos % Math.max(1, mine.length)];
        if (at === undefined) break;
        const [message] = queue.splice(at, 1);
        if (message === undefined) break;
        this.log(`  ${this.linkUp(message) ? 'step' : 'lost (partition)'} ${describeMessage(message)}`);
        if (this.linkUp(message)) node.step(message);
        break;
      }
      case 'propose':
        this.propose(id);
        break;
    }
    if (!this.inFlight.has(id) && node.hasReady()) {
      const ready = node.ready();
      // Sent before the write, as the Ready contract allows; the write itself never lands.
      this.cluster.queue.push(...ready.messages);
      for (const message of ready.messages) this.log(`  sent before the write ${describeMessage(message)}`);
      this.inFlight.set(id, ready);
    }
    this.restart(id);
  }

  // -------------------------------------------------------------------------------------------
  // Checks

  /** Runs every safety check against the current state. */
  check(): void {
    const logs = new Map<NodeId, Entry[]>();
    for (const id of this.ids) logs.set(id, logOf(this.cluster.node(id)));
    this.checkMessages();
    this.checkNodes(logs);
    this.checkLogMatching(logs);
    this.checkCommitted(logs);
    this.checkLeaderCompleteness(logs);
    this.checkApplied();
    this.checkStored();
  }

  private checkMessages(): void {
    for (const message of this.cluster.queue) {
      if (this.seenMessages.has(message)) continue;
      this.seenMessages.add(message);
      if (message.type === 'AppendRequest' || message.type === 'Heartbeat') {
        this.recordLeader(message.term, message.from, `it sent ${describeMessage(message)}`);
      }
      if (message.type === 'VoteResponse' && !message.preVote && message.granted) {
        const key = `${message.from}@${message.term}`;
        const earlier = this.votesGranted.get(key);
        if (earlier !== undefined && earlier !== message.to) {
          throw new SafetyViolation('one vote per term', `${message.from} granted its term-${message.term} vote to ${earlier} and to ${message.to}`);
        }
        this.votesGranted.set(key, message.to);
      }
      if (message.type === 'ProposeResponse' && message.refusal === null) {
        const data = this.requestData.get(message.requestId) ?? `unknown request ${message.requestId}`;
        this.acknowledge(message.index, message.entryTerm, data, `${message.from} answered ${describeMessage(message)}`);
      }
    }
  }

  /** A leader said `data` is appended at (index, term): that position can hold nothing else. */
  private acknowledge(index: number, entryTerm: number, data: string, how: string): void {
    const key = `${index}@${entryTerm}`;
    const earlier = this.acknowledged.get(key);
    if (earlier !== undefined && earlier !== data) {
      throw new SafetyViolation('proposal outcome', `${key} was acknowledged for ${earlier} and for ${data} (${how})`);
    }
    this.acknowledged.set(key, data);
  }

  private recordLeader(leaderTerm: number, id: NodeId, how: string): void {
    const known = this.leaderOfTerm.get(leaderTerm);
    if (known === undefined) {
      this.leaderOfTerm.set(leaderTerm, id);
      this.coverage.leadersElected++;
      if (this.committed.size > 0 && leaderTerm > this.commitSeenAtTerm) this.leaderChangedAfterCommit = true;
    } else if (known !== id) {
      throw new SafetyViolation('election safety', `${known} and ${id} both leaders of term ${leaderTerm} (${how})`);
    }
  }

  private checkNodes(logs: ReadonlyMap<NodeId, Entry[]>): void {
    for (const id of this.ids) {
      const node = this.cluster.node(id);
      const status = node.status();
      if (status.role === 'Leader') this.recordLeader(status.term, id, 'role');
      const log = logs.get(id) ?? [];
      let incarnation = this.incarnations.get(id);
      if (incarnation === undefined || incarnation.node !== node) {
        incarnation = { node, term: status.term, commit: status.commitIndex, vote: status.vote, lastLog: log };
        this.incarnations.set(id, incarnation);
      }
      if (status.term < incarnation.term) {
        throw new SafetyViolation('term monotonic', `${id} went from term ${incarnation.term} back to ${status.term}`);
      }
      if (status.commitIndex < incarnation.commit) {
        throw new SafetyViolation('commit monotonic', `${id} commit index went from ${incarnation.commit} back to ${status.commitIndex}`);
      }
      if (status.term === incarnation.term && incarnation.vote !== null && status.vote !== incarnation.vote) {
        throw new SafetyViolation('one vote per term', `${id} changed its term-${status.term} vote from ${incarnation.vote} to ${String(status.vote)}`);
      }
      if (status.commitIndex > status.lastIndex) {
        throw new SafetyViolation('commit within log', `${id} commit ${status.commitIndex} beyond last index ${status.lastIndex}`);
      }
      // A truncation: an entry the node held is gone or replaced.
      for (let i = 0; i < incarnation.lastLog.length; i++) {
        const before = incarnation.lastLog[i];
        if (before !== undefined && log[i] !== before && (log[i] === undefined || entryKey(log[i] as Entry) !== entryKey(before))) {
          this.coverage.truncations++;
          break;
        }
      }
      incarnation.term = status.term;
      incarnation.commit = status.commitIndex;
      incarnation.vote = status.vote;
      incarnation.lastLog = log;
    }
  }

  private checkLogMatching(logs: ReadonlyMap<NodeId, Entry[]>): void {
    for (let a = 0; a < this.ids.length; a++) {
      for (let b = a + 1; b < this.ids.length; b++) {
        const idA = this.ids[a] as NodeId;
        const idB = this.ids[b] as NodeId;
        const logA = logs.get(idA) ?? [];
        const logB = logs.get(idB) ?? [];
        const common = Math.min(logA.length, logB.length);
        let firstDifference = -1;
        for (let i = 0; i < common; i++) {
          const x = logA[i] as Entry;
          const y = logB[i] as Entry;
          if (firstDifference < 0 && entryKey(x) !== entryKey(y)) firstDifference = i;
          if (firstDifference >= 0 && x.term === y.term) {
            throw new SafetyViolation(
              'log matching',
              `${idA} and ${idB} both hold an entry at index ${i + 1} in term ${x.term}, but differ at index ${firstDifference + 1}: ` +
                `${entryKey(logA[firstDifference] as Entry)} vs ${entryKey(logB[firstDifference] as Entry)}`,
            );
          }
        }
      }
    }
    // Forwarded-proposal deduplication: no payload twice in one term. Acknowledged positions.
    for (const log of logs.values()) {
      for (const entry of log) {
        const promised = this.acknowledged.get(`${entry.index}@${entry.term}`);
        if (promised !== undefined && entryKey(entry) !== `${entry.index}@${entry.term}:${promised}`) {
          throw new SafetyViolation('proposal outcome', `${promised} was acknowledged at ${entry.index}@${entry.term}, but a log holds ${entryKey(entry)} there`);
        }
        if (entry.type !== EntryType.Normal) continue;
        const data = decoder.decode(entry.data);
        if (!this.proposed.has(data)) throw new SafetyViolation('validity', `entry ${entryKey(entry)} was never proposed`);
        let places = this.proposalPlaces.get(data);
        if (places === undefined) {
          places = new Map();
          this.proposalPlaces.set(data, places);
        }
        const index = places.get(entry.term);
        if (index === undefined) places.set(entry.term, entry.index);
        else if (index !== entry.index) {
          throw new SafetyViolation('proposal deduplication', `${data} appended at indexes ${index} and ${entry.index} in term ${entry.term}`);
        }
      }
    }
  }

  private checkCommitted(logs: ReadonlyMap<NodeId, Entry[]>): void {
    for (const id of this.ids) {
      const status = this.cluster.node(id).status();
      const log = logs.get(id) ?? [];
      for (let index = 1; index <= status.commitIndex; index++) {
        const entry = log[index - 1];
        if (entry === undefined) throw new SafetyViolation('commit within log', `${id} committed index ${index} it does not hold`);
        const record = this.committed.get(index);
        if (record === undefined) {
          this.committed.set(index, { key: entryKey(entry), observedTerm: status.term });
          this.coverage.committedEntries++;
          if (this.commitSeenAtTerm === 0) this.commitSeenAtTerm = status.term;
        } else if (record.key !== entryKey(entry)) {
          throw new SafetyViolation('committed entries never change', `${id} holds ${entryKey(entry)} committed, but ${record.key} was committed at index ${index}`);
        } else {
          record.observedTerm = Math.min(record.observedTerm, status.term);
        }
      }
    }
  }

  private checkLeaderCompleteness(logs: ReadonlyMap<NodeId, Entry[]>): void {
    for (const id of this.ids) {
      const status = this.cluster.node(id).status();
      if (status.role !== 'Leader') continue;
      const log = logs.get(id) ?? [];
      for (const [index, record] of this.committed) {
        if (record.observedTerm > status.term) continue;
        const entry = log[index - 1];
        if (entry === undefined || entryKey(entry) !== record.key) {
          throw new SafetyViolation(
            'leader completeness',
            `${id}, leader of term ${status.term}, holds ${entry === undefined ? 'nothing' : entryKey(entry)} at index ${index} ` +
              `where ${record.key} was committed (seen committed in term ${record.observedTerm})`,
          );
        }
      }
    }
  }

  private checkApplied(): void {
    for (const id of this.ids) {
      const applied = this.cluster.applied.get(id) ?? [];
      for (let position = 0; position < applied.length; position++) {
        const entry = applied[position] as Entry;
        if (entry.index !== position + 1) {
          throw new SafetyViolation('state machine safety', `${id} applied index ${entry.index} as its application #${position + 1} (skipped or applied twice)`);
        }
        const record = this.committed.get(entry.index);
        if (record?.key !== entryKey(entry)) {
          throw new SafetyViolation('state machine safety', `${id} applied ${entryKey(entry)}, but ${record?.key ?? 'nothing'} is committed at index ${entry.index}`);
        }
        // Only durable entries are applied: a crash must not make a node forget what it applied.
        const durable = this.cluster.stored.get(id)?.entries[entry.index - 1];
        if (durable === undefined || entryKey(durable) !== entryKey(entry)) {
          throw new SafetyViolation('state machine safety', `${id} applied ${entryKey(entry)}, but its storage holds ${durable === undefined ? 'nothing' : entryKey(durable)} there`);
        }
      }
    }
  }

  private checkStored(): void {
    for (const id of this.ids) {
      const stored = this.cluster.stored.get(id);
      if (stored === undefined) continue;
      const hard = stored.hardState;
      const before = this.storedSeen.get(id);
      if (before !== undefined) {
        if (hard.term < before.term) throw new SafetyViolation('term monotonic', `${id} stored term went from ${before.term} back to ${hard.term}`);
        if (hard.commit < before.commit) {
          throw new SafetyViolation('commit monotonic', `${id} stored commit went from ${before.commit} back to ${hard.commit}`);
        }
        if (hard.term === before.term && before.vote !== null && hard.vote !== before.vote) {
          throw new SafetyViolation('one vote per term', `${id} stored term-${hard.term} vote changed from ${before.vote} to ${String(hard.vote)}`);
        }
      }
      this.storedSeen.set(id, hard);
      stored.entries.forEach((entry, position) => {
        if (entry.index !== position + 1) throw new SafetyViolation('stored log', `${id} stored ${entryKey(entry)} at position ${position + 1}`);
      });
      if (hard.commit > stored.entries.length) {
        throw new SafetyViolation('commit within log', `${id} stored commit ${hard.commit} beyond its stored log (${stored.entries.length})`);
      }
      for (let index = 1; index <= hard.commit; index++) {
        const entry = stored.entries[index - 1] as Entry;
        const record = this.committed.get(index);
        if (record !== undefined && record.key !== entryKey(entry)) {
          throw new SafetyViolation('committed entries never change', `${id} stored ${entryKey(entry)} as committed, but ${record.key} was committed at index ${index}`);
        }
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Liveness

  /** Delivers every queued message, oldest first, checking after each delivery. */
  private drain(): void {
    for (let delivered = 0; this.cluster.queue.length > 0; delivered++) {
      if (delivered > 20_000) throw new Error('liveness: the network did not quiesce');
      const message = this.cluster.queue.shift();
      if (message !== undefined) this.deliver(message);
      this.check();
    }
  }

  private rounds(maxRounds: number, done: () => boolean): boolean {
    for (let round = 0; round < maxRounds; round++) {
      this.drain();
      if (done()) return true;
      for (const id of this.ids) {
        this.cluster.node(id).tick();
        this.afterInput(id);
        this.check();
      }
    }
    this.drain();
    return done();
  }

  /** The one leader, when every node is in its term and follows it; null otherwise. */
  private settledLeader(): { id: NodeId; term: number } | null {
    const statuses = this.ids.map((id) => this.cluster.node(id).status());
    const leaders = statuses.filter((status) => status.role === 'Leader');
    const leader = leaders[0];
    if (leaders.length !== 1 || leader === undefined) return null;
    const settled = statuses.every((status) => status.term === leader.term && status.leader === leader.id);
    return settled ? { id: leader.id, term: leader.term } : null;
  }

  private describeRoles(): string {
    return this.ids
      .map((id) => {
        const status = this.cluster.node(id).status();
        return `${id}:${status.role}@${status.term} leader=${String(status.leader)} last=${status.lastIndex} commit=${status.commitIndex}`;
      })
      .join(', ');
  }

  /**
   * Heals the network; then, delivering everything and ticking every node each round, one leader
   * must settle and keep its followers for two election timeouts, and a fresh proposal on it must
   * be applied on every node.
   */
  checkLiveness(): void {
    this.log('> liveness: heal, complete writes, deliver everything, tick every node');
    this.heal();
    this.settling = true;
    for (const id of this.ids) this.afterInput(id);
    this.check();
    let streak = 0;
    let previous = '';
    const settledLongEnough = (): boolean => {
      const leader = this.settledLeader();
      const key = leader === null ? '' : `${leader.id}@${leader.term}`;
      streak = key !== '' && key === previous ? streak + 1 : key === '' ? 0 : 1;
      previous = key;
      return streak > 2 * ELECTION_TIMEOUT_TICKS;
    };
    if (!this.rounds(LIVENESS_ROUNDS, settledLongEnough)) {
      throw new Error(`liveness: no leader settled for ${2 * ELECTION_TIMEOUT_TICKS} rounds within ${LIVENESS_ROUNDS} rounds (${this.describeRoles()})`);
    }
    const leader = this.settledLeader()?.id;
    if (leader === undefined) throw new Error('liveness: leader vanished');
    const { data, outcome } = this.propose(leader);
    this.afterInput(leader);
    if (outcome.kind !== 'Appended') throw new Error(`liveness: settled leader ${leader} refused a proposal: ${JSON.stringify(outcome)}`);
    this.check();
    const appliedEverywhere = (): boolean => this.ids.every((id) => this.cluster.appliedData(id).includes(data));
    if (!this.rounds(LIVENESS_ROUNDS, appliedEverywhere)) {
      const where = this.ids.map((id) => `${id}:${this.cluster.appliedData(id).includes(data) ? 'applied' : 'missing'}`);
      throw new Error(
        `liveness: proposal ${data} (${JSON.stringify(outcome)}) not applied everywhere after ${LIVENESS_ROUNDS} rounds (${where.join(', ')}; ${this.describeRoles()})`,
      );
    }
    if (this.leaderChangedAfterCommit) this.coverage.runsWithLeaderChangeAfterCommit++;
  }
}

/** Runs one schedule; throws (with the schedule and event tail) on the first violation. */
function runScenario(shape: ClusterShape, scenario: Scenario, coverage: Coverage, options = { liveness: true }): Harness {
  const harness = new Harness(shape, scenario, coverage);
  const schedule = scenario.actions.filter((action) => !scenario.disabled.includes(action.kind));
  let step = -1;
  try {
    harness.check();
    for (step = 0; step < schedule.length; step++) {
      harness.run(schedule[step] as Action);
      harness.check();
    }
    step = -1;
    if (options.liveness) harness.checkLiveness();
    return harness;
  } catch (error) {
    const where = step >= 0 ? `after action #${step + 1} of ${schedule.length}` : 'in the liveness phase';
    const kind = error instanceof InvariantError ? 'the core threw an InvariantError' : error instanceof SafetyViolation ? 'safety violated' : 'failed';
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(
      `${kind} ${where}: ${message}\n` +
        `cluster: ${JSON.stringify(shape)} ${JSON.stringify({ ...scenario, disabled: undefined, actions: undefined })}\n` +
        `schedule: ${schedule.map((action) => describeAction(action, shape.size)).join('; ')}\n` +
        `events (tail):\n${harness.tail()}`,
      { cause: error },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The tests

const SHAPES: readonly ClusterShape[] = [
  { size: 3, preVote: true, checkQuorum: true },
  { size: 3, preVote: false, checkQuorum: false },
  { size: 3, preVote: true, checkQuorum: false },
  { size: 3, preVote: false, checkQuorum: true },
  { size: 5, preVote: true, checkQuorum: true },
  { size: 5, preVote: false, checkQuorum: false },
  { size: 5, preVote: true, checkQuorum: false },
  { size: 5, preVote: false, checkQuorum: true },
];

const BASE_SEED = Number(process.env.RAFTLEASE_SCHEDULE_SEED ?? 0x5eed_0717);
/** Runs per cluster shape; about 3 ms each. */
const NUM_RUNS = Number(process.env.RAFTLEASE_SCHEDULE_RUNS ?? 200);
const MAX_ACTIONS = 300;

describe('Raft core under a random adversarial schedule', () => {
  SHAPES.forEach((shape, index) => {
    const name = `${shape.size} nodes, preVote ${shape.preVote ? 'on' : 'off'}, checkQuorum ${shape.checkQuorum ? 'on' : 'off'}`;
    it(`keeps every safety property and recovers: ${name}`, () => {
      const coverage = newCoverage();
      fc.assert(
        fc.property(scenarioArb(MAX_ACTIONS), (scenario) => {
          runScenario(shape, scenario, coverage);
        }),
        { seed: BASE_SEED + index, numRuns: NUM_RUNS },
      );
      // The schedules must reach the interesting situations, or the test proves little.
      expect(coverage.leadersElected).toBeGreaterThan(NUM_RUNS);
      expect(coverage.committedEntries).toBeGreaterThan(NUM_RUNS * 2);
      expect(coverage.runsWithLeaderChangeAfterCommit).toBeGreaterThan(NUM_RUNS / 10);
      expect(coverage.truncations).toBeGreaterThan(NUM_RUNS / 20);
      expect(coverage.crashes + coverage.tornCrashes).toBeGreaterThan(NUM_RUNS);
      expect(coverage.proposals.Appended ?? 0).toBeGreaterThan(NUM_RUNS);
      expect(coverage.proposals.Forwarded ?? 0).toBeGreaterThan(NUM_RUNS / 2);
    });
  });
});

/**
 * Figure 8 of the paper (§5.4.2), which random schedules rarely reach: n1 leads term 3 and puts
 * 2@1, an entry of its first term, on a majority (n1, n3), sending it alone (maxEntriesPerMessage
 * 1) so n3 acknowledges index 2 before the term-3 no-op. Counting replicas would commit it; then n2,
 * whose last entry is 2@2, wins term 4 with n3's vote and overwrites it. The core must not have
 * committed 2@1. (With the commit rule broken, the harness reports a leader-completeness violation
 * at the election of term 4.)
 */
const FIGURE_8: readonly Action[] = (() => {
  const n1 = { node: 0, atLeader: false };
  const n2 = { node: 1, atLeader: false };
  const calm = (times: number): Action[] => Array.from({ length: times }, () => ({ kind: 'calm' }));
  return [
    // n1 leads term 1 and commits its no-op 1@1 everywhere.
    { kind: 'campaign', node: 0 },
    ...calm(5),
    // Cut off, n1 appends 2@1 alone.
    { kind: 'isolate', ...n1 },
    { kind: 'propose', ...n1 },
    ...calm(1),
    // n2 wins term 2 with n3's vote; its no-op 2@2 reaches no one.
    { kind: 'campaign', node: 1 },
    ...calm(2),
    { kind: 'isolate', ...n2 },
    ...calm(1),
    // n1 restarts, loses term 2 (n3 voted for n2), wins term 3 with n3's vote, and brings n3 to 2@1.
    { kind: 'crash', ...n1 },
    { kind: 'campaign', node: 0 },
    ...calm(2),
    { kind: 'campaign', node: 0 },
    ...calm(6),
    // n1 is cut off before its no-op 3@3 reaches n3.
    { kind: 'isolate', ...n1 },
    ...calm(1),
    // n2 restarts, loses term 3, wins term 4 with n3's vote (2@2 is more up to date than 2@1).
    { kind: 'crash', ...n2 },
    { kind: 'campaign', node: 1 },
    ...calm(2),
    { kind: 'campaign', node: 1 },
    ...calm(5),
  ];
})();

describe('Raft core under a directed schedule', () => {
  it('does not commit an entry of an earlier term by counting replicas (Figure 8)', () => {
    const shape: ClusterShape = { size: 3, preVote: false, checkQuorum: false };
    const scenario: Scenario = {
      seed: 0,
      asyncStorage: false,
      limits: {
        maxEntriesPerMessage: 1,
        maxInflightMessages: DEFAULT_RAFT_OPTIONS.maxInflightMessages,
        maxInflightBytes: DEFAULT_RAFT_OPTIONS.maxInflightBytes,
        maxUncommittedBytes: DEFAULT_RAFT_OPTIONS.maxUncommittedBytes,
        maxApplyEntriesPerReady: DEFAULT_RAFT_OPTIONS.maxApplyEntriesPerReady,
      },
      disabled: [],
      actions: FIGURE_8,
    };
    const harness = runScenario(shape, scenario, newCoverage(), { liveness: false });
    // The schedule reached Figure 8 (d): n2 leads term 4 and has replaced n3's 2@1 with its 2@2.
    expect(harness.cluster.node('n2').status()).toMatchObject({ role: 'Leader', term: 4 });
    expect(logOf(harness.cluster.node('n3'))[1]).toMatchObject({ index: 2, term: 2, type: EntryType.Noop });
    expect(harness.events.some((event) => event.includes('n3->n1 AppendResponse term=3 ok index=2'))).toBe(true);
    harness.checkLiveness();
  });
});
