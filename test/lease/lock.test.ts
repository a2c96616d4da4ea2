/**
 * LeaseNode / DistributedLock: three real RaftNodes with the lease table as their state machine, on a
 * MemoryNetwork, MemoryStorage and one ManualClock. Everything is driven by advancing virtual time, so
 * every run is identical.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  ConfigError,
  ManualClock,
  MemoryNetwork,
  MemoryStorage,
  RaftLeaseError,
  nodeId,
  type LogIndex,
  type Message,
  type MessageHandler,
  type Transport,
} from '../../src/index.js';
import {
  LeaseNode,
  decodeLeaseCommand,
  encodeLeaseCommand,
  type AcquireResult,
  type Lease,
  type LeaseCommand,
  type LeaseTableCommand,
  type LeaseNodeOptions,
  type LeaseOptions,
  type LeaseResult,
} from '../../src/lease/index.js';

const IDS = ['n1', 'n2', 'n3'] as const;
type Id = (typeof IDS)[number];
/** Raft tick and (by default) the lessor's check interval. */
const TICK_MS = 100;
const DRIFT_PPM = 200;
const MARGIN_MS = 100;

/** What the holder may trust of a lease of `ttlMs`: ttl·(1 − 2ρ) − margin, floored as in `validityMs`. */
function validity(ttlMs: number, marginMs = MARGIN_MS, driftPpm = DRIFT_PPM): number {
  return Math.floor((ttlMs * (1_000_000 - 2 * driftPpm)) / 1_000_000) - marginMs;
}

/** One entry a node's lease table applied, with the virtual time it was applied at. */
interface AppliedEntry {
  readonly index: number;
  readonly atMs: number;
  readonly command: LeaseTableCommand | string;
  readonly result: LeaseResult;
}

/** A transport that can drop chosen outgoing messages (a finer knife than MemoryNetwork.cut). */
class FilteringTransport implements Transport {
  drop: ((message: Message) => boolean) | null = null;

  constructor(private readonly inner: Transport) {}

  listen(handler: MessageHandler): void {
    this.inner.listen(handler);
  }

  send(message: Message): void {
    if (this.drop?.(message) === true) return;
    this.inner.send(message);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

interface Cluster {
  readonly clock: ManualClock;
  readonly network: MemoryNetwork;
  readonly nodes: Map<Id, LeaseNode>;
  readonly storages: Map<Id, MemoryStorage>;
  readonly transports: Map<Id, FilteringTransport>;
  /** Per node: every entry its lease table applied, in order. */
  readonly applied: Map<Id, AppliedEntry[]>;
  readonly fatalErrors: Error[];
}

let running: Cluster | undefined;

afterEach(async () => {
  const c = running;
  running = undefined;
  if (c === undefined) return;
  for (const node of c.nodes.values()) {
    // Stop the Raft node first without a leadership hand-over, which would need the clock to move.
    await node.raft.stop({ transferLeadership: false });
    await node.stop();
  }
  expect(c.fatalErrors).toEqual([]);
});

interface ClusterOptions {
  readonly lease?: LeaseOptions;
  readonly extra?: Partial<Omit<LeaseNodeOptions, 'lease'>>;
  /** Which node to make leader at once (null: none, let the test decide). Default n1. */
  readonly leader?: Id | null;
}

async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const c: Cluster = {
    clock: new ManualClock(),
    network: new MemoryNetwork({ encode: true }),
    nodes: new Map(),
    storages: new Map(),
    transports: new Map(),
    applied: new Map(),
    fatalErrors: [],
  };
  running = c;
  for (const [position, id] of IDS.entries()) {
    const storage = new MemoryStorage();
    const transport = new FilteringTransport(c.network.connect(nodeId(id)));
    const node = await LeaseNode.start({
      id,
      voters: IDS,
      transport,
      storage,
      clock: c.clock,
      seed: 11 + position,
      tickIntervalMs: TICK_MS,
      onFatalError: (error) => c.fatalErrors.push(error),
      lease: { maxClockDriftPpm: DRIFT_PPM, marginMs: MARGIN_MS, ...options.lease },
      ...options.extra,
    });
    c.nodes.set(id, node);
    c.storages.set(id, storage);
    c.transports.set(id, transport);
    c.applied.set(id, recordApplies(c, node));
  }
  const leader = options.leader === undefined ? 'n1' : options.leader;
  if (leader !== null) {
    node(c, leader).raft.campaign();
    await c.clock.advance(TICK_MS);
    await advanceUntil(c, () => IDS.every((id) => node(c, id).raft.status().leader === leader), 5_000);
  }
  return c;
}

/** Wraps the table's apply (the RaftNode calls it through the object) to log what was applied when. */
function recordApplies(c: Cluster, leaseNode: LeaseNode): AppliedEntry[] {
  const log: AppliedEntry[] = [];
  const table = leaseNode.table;
  const apply = table.apply.bind(table);
  table.apply = (command: Uint8Array, index: LogIndex): LeaseResult => {
    const result = apply(command, index);
    log.push({ index, atMs: c.clock.nowMs(), command: decodeLeaseCommand(command), result });
    return result;
  };
  return log;
}

function node(c: Cluster, id: Id): LeaseNode {
  const found = c.nodes.get(id);
  if (found === undefined) throw new Error(`no node ${id}`);
  return found;
}

function applied(c: Cluster, id: Id): AppliedEntry[] {
  return c.applied.get(id) ?? [];
}

function leaderId(c: Cluster): Id | undefined {
  return IDS.find((id) => node(c, id).raft.status().role === 'Leader');
}

/** Commands of one type that `id` applied, optionally only those for `key`. */
function appliedCommands<T extends LeaseCommand['type']>(c: Cluster, id: Id, type: T, key?: string): { entry: AppliedEntry; command: Extract<LeaseCommand, { type: T }> }[] {
  const out: { entry: AppliedEntry; command: Extract<LeaseCommand, { type: T }> }[] = [];
  for (const entry of applied(c, id)) {
    const command = entry.command;
    if (typeof command === 'string' || command.type !== type) continue;
    if (key !== undefined && command.key !== key) continue;
    out.push({ entry, command: command as Extract<LeaseCommand, { type: T }> });
  }
  return out;
}

/** When `id` applied the Expire that removed `key`'s lease with `fencingToken` (undefined: not yet). */
function expiredAt(c: Cluster, id: Id, key: string, fencingToken: number): number | undefined {
  return appliedCommands(c, id, 'Expire', key).find(({ entry }) => entry.result.type === 'Expired' && entry.result.lease.fencingToken === fencingToken)?.entry.atMs;
}

async function advance(c: Cluster, ms: number, stepMs = 10): Promise<void> {
  for (let done = 0; done < ms; done += stepMs) await c.clock.advance(Math.min(stepMs, ms - done));
}

async function advanceTo(c: Cluster, atMs: number): Promise<void> {
  const ms = atMs - c.clock.nowMs();
  if (ms > 0) await advance(c, ms);
}

/** Advances in `stepMs` steps until `predicate` holds (bounded). */
async function advanceUntil(c: Cluster, predicate: () => boolean, maxMs = 20_000, stepMs = 10): Promise<void> {
  for (let waited = 0; !predicate(); waited += stepMs) {
    if (waited >= maxMs) throw new Error(`condition not reached within ${maxMs} ms of virtual time`);
    await c.clock.advance(stepMs);
  }
}

type Outcome<T> = { readonly ok: true; readonly value: T; readonly atMs: number } | { readonly ok: false; readonly error: unknown; readonly atMs: number };

/** Records when and how `promise` settles, on the cluster's clock. */
function watch<T>(c: Cluster, promise: Promise<T>): { readonly outcome: () => Outcome<T> | undefined } {
  let outcome: Outcome<T> | undefined;
  promise.then(
    (value) => (outcome = { ok: true, value, atMs: c.clock.nowMs() }),
    (error: unknown) => (outcome = { ok: false, error, atMs: c.clock.nowMs() }),
  );
  return { outcome: () => outcome };
}

/** Advances virtual time until `promise` settles (bounded) and returns its outcome. */
async function settleOutcome<T>(c: Cluster, promise: Promise<T>, maxMs = 20_000): Promise<Outcome<T>> {
  const watched = watch(c, promise);
  await advanceUntil(c, () => watched.outcome() !== undefined, maxMs, 1);
  const outcome = watched.outcome();
  if (outcome === undefined) throw new Error('unreachable');
  return outcome;
}

async function settle<T>(c: Cluster, promise: Promise<T>, maxMs = 20_000): Promise<T> {
  const outcome = await settleOutcome(c, promise, maxMs);
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

async function grant(c: Cluster, id: Id, key: string, ttlMs: number, owner?: string): Promise<Lease> {
  const result = await settle(c, node(c, id).tryAcquire(key, owner === undefined ? { ttlMs } : { ttlMs, owner }));
  if (!result.acquired) throw new Error(`expected ${key} to be granted, it is held by ${result.holder}`);
  return result.lease;
}

/** Records when the signal aborted and whether each node's table still held the lease at that moment. */
function watchSignal(c: Cluster, lease: Lease): { atMs: number | null; heldEverywhere: boolean | null; reason: unknown } {
  const seen: { atMs: number | null; heldEverywhere: boolean | null; reason: unknown } = { atMs: null, heldEverywhere: null, reason: undefined };
  lease.signal.addEventListener('abort', () => {
    seen.atMs = c.clock.nowMs();
    seen.heldEverywhere = IDS.every((id) => node(c, id).table.get(lease.key)?.fencingToken === lease.fencingToken);
    seen.reason = lease.signal.reason;
  });
  return seen;
}

function expectCode(error: unknown, code: string): void {
  expect(error).toBeInstanceOf(RaftLeaseError);
  expect((error as RaftLeaseError).code).toBe(code);
}

/** Every node's view of `key` once replication settles. */
async function expectEverywhere(c: Cluster, key: string, expected: { owner: string; fencingToken: number } | undefined): Promise<void> {
  await advance(c, 2 * TICK_MS);
  for (const id of IDS) {
    const record = node(c, id).table.get(key);
    if (expected === undefined) expect(record, `${key} on ${id}`).toBeUndefined();
    else expect(record, `${key} on ${id}`).toMatchObject(expected);
  }
}

function sleep(c: Cluster, ms: number): Promise<void> {
  return new Promise((resolve) => {
    c.clock.setTimer(ms, resolve);
  });
}

describe('tryAcquire', () => {
  it('grants on a follower and on the leader, with the index of the granting entry as fencing token', async () => {
    const c = await startCluster();
    const onFollower = await grant(c, 'n2', 'alpha', 5_000);
    const onLeader = await grant(c, 'n1', 'beta', 5_000);

    for (const [lease, key, owner] of [
      [onFollower, 'alpha', 'n2'],
      [onLeader, 'beta', 'n1'],
    ] as const) {
      expect(lease).toMatchObject({ key, owner, ttlMs: 5_000 });
      // The entry at index `fencingToken` in the leader's durable log is this very Acquire…
      const entry = c.storages
        .get('n1')
        ?.contents()
        .entries.find((stored) => stored.index === lease.fencingToken);
      expect(entry).toBeDefined();
      expect(decodeLeaseCommand(entry?.data ?? new Uint8Array())).toMatchObject({ type: 'Acquire', key, owner, ttlMs: 5_000 });
      // …and every node applied it at that index as the (first) grant.
      for (const id of IDS) {
        const grants = appliedCommands(c, id, 'Acquire', key);
        expect(grants).toHaveLength(1);
        expect(grants[0]?.entry.index).toBe(lease.fencingToken);
        expect(grants[0]?.entry.result).toMatchObject({ type: 'Granted', renewed: false, lease: { fencingToken: lease.fencingToken, renewals: 0 } });
      }
    }
    expect(onLeader.fencingToken).toBeGreaterThan(onFollower.fencingToken);

    // A second owner is refused and told who holds it, from a follower and from the leader.
    const before = node(c, 'n1').leases();
    await expect(settle(c, node(c, 'n3').tryAcquire('alpha', { ttlMs: 5_000 }))).resolves.toEqual({ acquired: false, holder: 'n2' });
    await expect(settle(c, node(c, 'n1').tryAcquire('alpha', { ttlMs: 5_000, owner: 'someone-else' }))).resolves.toEqual({ acquired: false, holder: 'n2' });
    await expect(settle(c, node(c, 'n2').tryAcquire('beta', { ttlMs: 5_000 }))).resolves.toEqual({ acquired: false, holder: 'n1' });
    expect(node(c, 'n1').leases()).toEqual(before);

    // The same owner re-acquiring gets the same token (from its node and from another one).
    const again = await grant(c, 'n2', 'alpha', 5_000);
    const elsewhere = await grant(c, 'n3', 'alpha', 4_000, 'n2');
    expect(again.fencingToken).toBe(onFollower.fencingToken);
    expect(elsewhere.fencingToken).toBe(onFollower.fencingToken);
    expect(elsewhere.ttlMs).toBe(4_000);
    await expectEverywhere(c, 'alpha', { owner: 'n2', fencingToken: onFollower.fencingToken });
    expect(node(c, 'n3').table.get('alpha')).toMatchObject({ renewals: 2, ttlMs: 4_000 });
  });

  it('retries while no leader is known yet, and grants once one is elected', async () => {
    const c = await startCluster({ leader: null });
    const pending = watch(c, node(c, 'n3').tryAcquire('early', { ttlMs: 5_000 }));
    await advance(c, 300);
    expect(pending.outcome()).toBeUndefined();
    node(c, 'n2').raft.campaign();
    await advanceUntil(c, () => pending.outcome() !== undefined, 5_000, 1);
    const outcome = pending.outcome();
    expect(outcome?.ok).toBe(true);
    expect((outcome as { value: AcquireResult } | undefined)?.value.acquired).toBe(true);
    expect(appliedCommands(c, 'n2', 'Acquire', 'early')).toHaveLength(1);
  });
});

describe('fencing tokens', () => {
  it('strictly increase across successive grants of a key: release, another owner, expiry, re-grant', async () => {
    const c = await startCluster();
    const tokens: number[] = [];

    const first = await grant(c, 'n2', 'k', 1_000, 'a');
    tokens.push(first.fencingToken);
    await settle(c, first.release());

    const second = await grant(c, 'n3', 'k', 1_000, 'b');
    tokens.push(second.fencingToken);
    // An unrelated key in between takes a token from the same sequence.
    const unrelated = await grant(c, 'n1', 'other', 10_000, 'z');
    expect(unrelated.fencingToken).toBeGreaterThan(second.fencingToken);

    // b never renews: the leader expires it, then c gets the key.
    await advanceUntil(c, () => expiredAt(c, 'n1', 'k', second.fencingToken) !== undefined, 5_000);
    await expectEverywhere(c, 'k', undefined);
    const third = await grant(c, 'n1', 'k', 1_000, 'c');
    tokens.push(third.fencingToken);
    expect(third.fencingToken).toBeGreaterThan(unrelated.fencingToken);
    await settle(c, third.release());

    // The first owner again: a new grant, a new (larger) token.
    const fourth = await grant(c, 'n2', 'k', 1_000, 'a');
    tokens.push(fourth.fencingToken);

    for (let position = 1; position < tokens.length; position++) expect(tokens[position]).toBeGreaterThan(tokens[position - 1] ?? Infinity);
    // Each token is the index at which the leader applied that grant.
    const grantIndexes = appliedCommands(c, 'n1', 'Acquire', 'k')
      .filter(({ entry }) => entry.result.type === 'Granted' && !entry.result.renewed)
      .map(({ entry }) => entry.index);
    expect(grantIndexes).toEqual(tokens);
  });
});

describe('holder validity', () => {
  it('validUntil = send time + ttl·(1 − 2ρ) − margin, counted from the send, not the answer', async () => {
    const c = await startCluster({ leader: null });
    const ttlMs = 3_333;
    const sentAtMs = c.clock.nowMs();
    // No leader yet: the request is retried for a while, so the answer comes well after the send.
    const result = watch(c, node(c, 'n2').tryAcquire('v', { ttlMs }));
    await advance(c, 400);
    node(c, 'n1').raft.campaign();
    await advanceUntil(c, () => result.outcome() !== undefined, 5_000, 1);
    const outcome = result.outcome();
    if (outcome?.ok !== true || !outcome.value.acquired) throw new Error('not granted');
    const lease = outcome.value.lease;
    expect(outcome.atMs).toBeGreaterThan(sentAtMs + 400);

    // floor(3333 · 0.9996) − 100 = floor(3331.6668) − 100 = 3231.
    expect(validity(ttlMs)).toBe(3_231);
    expect(lease.validUntil).toBe(sentAtMs + 3_231);
    expect(lease.remainingMs()).toBe(lease.validUntil - c.clock.nowMs());

    const aborted = watchSignal(c, lease);
    await c.clock.advance(lease.validUntil - 1 - c.clock.nowMs());
    expect(lease.signal.aborted).toBe(false);
    expect(lease.remainingMs()).toBe(1);
    await c.clock.advance(1);
    expect(lease.signal.aborted).toBe(true);
    expect(aborted.atMs).toBe(lease.validUntil);
    expect(lease.remainingMs()).toBe(0);
    expectCode(aborted.reason, 'LeaseLost');
    // The holder gives up while every node still records it as the holder.
    expect(aborted.heldEverywhere).toBe(true);
  });

  it('the margin is subtracted exactly (margin 1,000 ms, ttl 1,002 ms leaves 1 ms)', async () => {
    const c = await startCluster({ lease: { marginMs: 1_000 } });
    const sentAtMs = c.clock.nowMs();
    const lease = await grant(c, 'n1', 'thin', 1_002);
    expect(validity(1_002, 1_000)).toBe(1);
    expect(lease.validUntil).toBe(sentAtMs + 1);
  });

  it('a successful renew() moves validUntil to renew send time + validity; the signal does not abort at the old time', async () => {
    const c = await startCluster();
    const ttlMs = 2_000;
    const acquiredAtMs = c.clock.nowMs();
    const lease = await grant(c, 'n1', 'r', ttlMs);
    expect(lease.validUntil).toBe(acquiredAtMs + validity(ttlMs));
    const oldValidUntil = lease.validUntil;
    const aborted = watchSignal(c, lease);

    await advance(c, 1_000);
    // Make the renewal slow: the leader cannot commit while cut off, so it is answered 300 ms later.
    const others = IDS.filter((id) => id !== 'n1').map(nodeId);
    c.network.isolate([nodeId('n1')], others);
    const renewSentAtMs = c.clock.nowMs();
    const renewal = watch(c, lease.renew());
    await advance(c, 300);
    expect(renewal.outcome()).toBeUndefined();
    c.network.heal();
    await advanceUntil(c, () => renewal.outcome() !== undefined, 2_000, 1);
    const renewed = renewal.outcome();
    expect(renewed?.ok).toBe(true);
    expect(renewed?.atMs).toBeGreaterThan(renewSentAtMs + 300);

    expect(lease.validUntil).toBe(renewSentAtMs + validity(ttlMs));
    await advanceTo(c, oldValidUntil + 50);
    expect(lease.signal.aborted).toBe(false);
    expect(lease.remainingMs()).toBe(lease.validUntil - c.clock.nowMs());
    await advanceUntil(c, () => lease.signal.aborted, 5_000, 1);
    expect(aborted.atMs).toBe(renewSentAtMs + validity(ttlMs));
    expect(aborted.heldEverywhere).toBe(true);
  });
});

describe('leader-side expiry', () => {
  it('without renewals the leader expires a lease after its TTL; the holder gave up before', async () => {
    const c = await startCluster();
    const cases = [
      { holder: 'n2', key: 'on-follower', ttlMs: 1_500 },
      { holder: 'n1', key: 'on-leader', ttlMs: 2_700 },
      { holder: 'n3', key: 'short', ttlMs: 1_234 },
    ] as const;
    const leases = [];
    for (const { holder, key, ttlMs } of cases) {
      const lease = await grant(c, holder, key, ttlMs);
      leases.push({ lease, ttlMs, signal: watchSignal(c, lease) });
    }
    await advance(c, 4_000);

    for (const { lease, ttlMs, signal } of leases) {
      const grantedOnLeaderAtMs = appliedCommands(c, 'n1', 'Acquire', lease.key)[0]?.entry.atMs ?? NaN;
      const expiredOnLeaderAtMs = expiredAt(c, 'n1', lease.key, lease.fencingToken) ?? NaN;
      // Counted on the leader's clock from when it applied the grant, checked every tick.
      expect(expiredOnLeaderAtMs).toBeGreaterThanOrEqual(grantedOnLeaderAtMs + ttlMs);
      expect(expiredOnLeaderAtMs).toBeLessThanOrEqual(grantedOnLeaderAtMs + ttlMs + TICK_MS + 20);
      // One Expire proposal per lease.
      expect(appliedCommands(c, 'n1', 'Expire', lease.key)).toHaveLength(1);
      // The holder's signal aborted first, while every node still held the lease.
      expect(signal.atMs).toBe(lease.validUntil);
      expect(signal.atMs ?? Infinity).toBeLessThan(expiredOnLeaderAtMs);
      expect(signal.heldEverywhere).toBe(true);
      for (const id of IDS) {
        expect(node(c, id).table.get(lease.key)).toBeUndefined();
        expect(expiredAt(c, id, lease.key, lease.fencingToken) ?? Infinity).toBeGreaterThan(signal.atMs ?? Infinity);
      }
    }
    expect(node(c, 'n2').leases()).toEqual([]);
  });

  it('an Expire that races a renewal applied first is ignored; the countdown restarts from the renewal', async () => {
    // Replicated renewals: the race is ordered by the log.
    const c = await startCluster({ lease: { leaderLocalRenewals: false } });
    const grantedAtMs = c.clock.nowMs();
    const lease = await grant(c, 'n1', 'race', 2_000);
    const signal = watchSignal(c, lease);
    // The leader appends the renewal but cannot commit it; its countdown (grant + 2,000 ms) runs out
    // meanwhile, so it appends an Expire for renewal count 0 right after the renewal.
    await advanceTo(c, grantedAtMs + 1_800);
    c.network.isolate([nodeId('n1')], [nodeId('n2'), nodeId('n3')]);
    const renewal = watch(c, lease.renew());
    await advanceTo(c, grantedAtMs + 2_150);
    c.network.heal();
    await advanceUntil(c, () => renewal.outcome() !== undefined, 2_000, 1);

    const log = applied(c, 'n1').filter((entry) => typeof entry.command !== 'string' && entry.command.key === 'race');
    expect(log.map((entry) => [typeof entry.command === 'string' ? entry.command : entry.command.type, entry.result.type])).toEqual([
      ['Acquire', 'Granted'],
      ['Renew', 'Granted'],
      ['Expire', 'ExpireIgnored'],
    ]);
    expect(log[2]?.command).toMatchObject({ type: 'Expire', fencingToken: lease.fencingToken, renewals: 0 });
    const renewedAtMs = log[1]?.atMs ?? NaN;
    expect(node(c, 'n2').table.get('race')).toMatchObject({ fencingToken: lease.fencingToken, renewals: 1 });
    // The holder had already given up at its own deadline, before the leader's countdown ran out.
    expect(signal.atMs).toBe(grantedAtMs + validity(2_000));

    // The next Expire names renewal count 1 and comes a full TTL after the renewal was applied.
    await advanceUntil(c, () => expiredAt(c, 'n1', 'race', lease.fencingToken) !== undefined, 5_000);
    const expiredAtMs = expiredAt(c, 'n1', 'race', lease.fencingToken) ?? NaN;
    expect(expiredAtMs).toBeGreaterThanOrEqual(renewedAtMs + 2_000);
    expect(expiredAtMs).toBeLessThanOrEqual(renewedAtMs + 2_000 + TICK_MS + 20);
    expect(appliedCommands(c, 'n1', 'Expire', 'race').map(({ command }) => command.renewals)).toEqual([0, 1]);
    await expectEverywhere(c, 'race', undefined);
  });

  it('a new leader (old one stopped) restarts the countdown at full TTL', async () => {
    const c = await startCluster();
    const lease = await grant(c, 'n2', 'job', 2_000);
    const signal = watchSignal(c, lease);
    const grantedAtMs = appliedCommands(c, 'n1', 'Acquire', 'job')[0]?.entry.atMs ?? NaN;
    await advance(c, 1_500);

    const stopping = watch(c, node(c, 'n1').stop());
    await advanceUntil(c, () => leaderId(c) !== undefined && leaderId(c) !== 'n1', 5_000, 1);
    const takeoverAtMs = c.clock.nowMs();
    const successor = leaderId(c);
    if (successor === undefined) throw new Error('no successor');
    await advanceUntil(c, () => stopping.outcome() !== undefined, 5_000);

    await advanceUntil(c, () => expiredAt(c, successor, 'job', lease.fencingToken) !== undefined, 10_000, 1);
    const expiredAtMs = expiredAt(c, successor, 'job', lease.fencingToken) ?? NaN;
    expect(expiredAtMs).toBeGreaterThanOrEqual(takeoverAtMs + 2_000);
    expect(expiredAtMs).toBeLessThanOrEqual(takeoverAtMs + 2_000 + TICK_MS + 20);
    // Well past the old leader's deadline (grant + 2,000 ms): the countdown really restarted.
    expect(expiredAtMs).toBeGreaterThan(grantedAtMs + 3_000);
    expect(signal.atMs).toBe(lease.validUntil);
    expect(signal.atMs ?? Infinity).toBeLessThan(grantedAtMs + 2_000);
    for (const id of IDS.filter((other) => other !== 'n1')) {
      await advanceUntil(c, () => node(c, id).table.get('job') === undefined, 1_000);
      expect(expiredAt(c, id, 'job', lease.fencingToken) ?? -Infinity).toBeGreaterThanOrEqual(takeoverAtMs + 2_000);
    }
  });

  it('a new leader (old one cut off) restarts the countdown; the deposed leader cannot expire it early', async () => {
    const c = await startCluster();
    const lease = await grant(c, 'n3', 'job', 2_000);
    const signal = watchSignal(c, lease);
    await advance(c, 1_500);

    c.network.isolate([nodeId('n1')], [nodeId('n2'), nodeId('n3')]);
    const stillHeld = (): boolean => node(c, 'n2').table.get('job') !== undefined && node(c, 'n3').table.get('job') !== undefined;
    // The deposed leader still believes it leads for a while (until CheckQuorum): look at the majority side.
    const successorOf = (): Id | undefined => (['n2', 'n3'] as const).find((id) => node(c, id).raft.status().role === 'Leader');
    await advanceUntil(c, () => {
      expect(stillHeld()).toBe(true);
      return successorOf() !== undefined;
    }, 10_000, 1);
    const takeoverAtMs = c.clock.nowMs();
    const successor = successorOf();
    if (successor === undefined) throw new Error('no successor');
    // Past its own deadline (grant + 2,000 ms) the deposed leader proposed an Expire it cannot commit.
    const strandedExpire = c.storages
      .get('n1')
      ?.contents()
      .entries.map((entry) => decodeLeaseCommand(entry.data))
      .find((command) => typeof command !== 'string' && command.type === 'Expire');
    expect(strandedExpire).toMatchObject({ type: 'Expire', key: 'job', fencingToken: lease.fencingToken });

    // Not expired anywhere before the new leader counted a full TTL.
    await advanceUntil(c, () => {
      if (c.clock.nowMs() < takeoverAtMs + 2_000) expect(stillHeld()).toBe(true);
      return !stillHeld();
    }, 5_000, 1);
    const expiredAtMs = expiredAt(c, successor, 'job', lease.fencingToken) ?? NaN;
    expect(expiredAtMs).toBeGreaterThanOrEqual(takeoverAtMs + 2_000);
    expect(expiredAtMs).toBeLessThanOrEqual(takeoverAtMs + 2_000 + TICK_MS + 20);
    expect(signal.atMs ?? Infinity).toBeLessThan(takeoverAtMs);

    // The deposed leader rejoins and converges on the same history: one Expire applied, same index.
    c.network.heal();
    await advanceUntil(c, () => expiredAt(c, 'n1', 'job', lease.fencingToken) !== undefined, 5_000);
    const indexOf = (id: Id): number | undefined => appliedCommands(c, id, 'Expire', 'job').find(({ entry }) => entry.result.type === 'Expired')?.entry.index;
    expect(indexOf('n1')).toBe(indexOf(successor));
    for (const id of IDS) expect(node(c, id).table.get('job')).toBeUndefined();
  });
});

describe('renew, release, keepAlive', () => {
  it('renew() after the lease expired rejects with LeaseLost and proposes nothing', async () => {
    const c = await startCluster();
    const lease = await grant(c, 'n2', 'e', 1_000);
    await advanceUntil(c, () => expiredAt(c, 'n1', 'e', lease.fencingToken) !== undefined, 5_000);
    expect(lease.signal.aborted).toBe(true);
    const renewsBefore = appliedCommands(c, 'n1', 'Renew').length;
    const outcome = await settleOutcome(c, lease.renew());
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expectCode(outcome.error, 'LeaseLost');
    await advance(c, 200);
    expect(appliedCommands(c, 'n1', 'Renew')).toHaveLength(renewsBefore);
  });

  it('renew() of a lease that is gone from the table (released elsewhere, re-granted) rejects with LeaseLost and aborts the signal', async () => {
    const c = await startCluster();
    const lease = await grant(c, 'n2', 'g', 10_000, 'worker');
    // Another client with the same owner name re-acquires (same token) and releases: the key is free.
    const twin = await grant(c, 'n3', 'g', 10_000, 'worker');
    expect(twin.fencingToken).toBe(lease.fencingToken);
    await settle(c, twin.release());
    const next = await grant(c, 'n1', 'g', 10_000, 'other');
    expect(lease.signal.aborted).toBe(false);

    const signal = watchSignal(c, lease);
    const outcome = await settleOutcome(c, lease.renew());
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expectCode(outcome.error, 'LeaseLost');
    expect(lease.signal.aborted).toBe(true);
    expect(signal.atMs).toBe(outcome.atMs);
    expectCode(signal.reason, 'LeaseLost');
    // The other owner's lease is untouched.
    await expectEverywhere(c, 'g', { owner: 'other', fencingToken: next.fencingToken });
    expect(appliedCommands(c, 'n1', 'Renew', 'g').map(({ entry }) => entry.result)).toEqual([{ type: 'NotHeld', key: 'g', reason: 'OtherHolder' }]);
  });

  it('release() aborts the signal at once, frees the key everywhere, and is idempotent', async () => {
    const c = await startCluster();
    const lease = await grant(c, 'n3', 'rel', 10_000);
    const signal = watchSignal(c, lease);
    const releasedAtMs = c.clock.nowMs();
    const first = lease.release();
    const second = lease.release();
    // Before anything is committed: the holder stops trusting the lease when it decides to release.
    expect(lease.signal.aborted).toBe(true);
    expect(signal.atMs).toBe(releasedAtMs);
    expectCode(signal.reason, 'LeaseLost');
    await settle(c, Promise.all([first, second]));
    await settle(c, lease.release());
    await expectEverywhere(c, 'rel', undefined);
    expect(appliedCommands(c, 'n1', 'Release', 'rel')).toHaveLength(1);
    expect(appliedCommands(c, 'n1', 'Release', 'rel')[0]?.entry.result.type).toBe('Released');

    // renew() after release rejects with LeaseLost without proposing anything.
    const outcome = await settleOutcome(c, lease.renew());
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expectCode(outcome.error, 'LeaseLost');
    expect(appliedCommands(c, 'n1', 'Renew', 'rel')).toHaveLength(0);

    // Releasing a lease the leader already expired resolves too, and does not touch a newer grant.
    const expiring = await grant(c, 'n2', 'rel', 1_000);
    await advanceUntil(c, () => expiredAt(c, 'n1', 'rel', expiring.fencingToken) !== undefined, 5_000);
    const newer = await grant(c, 'n1', 'rel', 10_000, 'newer');
    await settle(c, expiring.release());
    await expectEverywhere(c, 'rel', { owner: 'newer', fencingToken: newer.fencingToken });
  });

  it('keepAlive keeps the lease across several TTLs, and once stopped the lease runs out and expires', async () => {
    const c = await startCluster();
    const ttlMs = 1_000;
    const lease = await grant(c, 'n2', 'ka', ttlMs);
    const signal = watchSignal(c, lease);
    expect(() => lease.keepAlive({ intervalMs: 0 })).toThrow(expect.objectContaining({ code: 'InvalidArgument' }) as Error);
    expect(() => lease.keepAlive({ intervalMs: Number.NaN })).toThrow(expect.objectContaining({ code: 'InvalidArgument' }) as Error);
    const stop = lease.keepAlive({ intervalMs: 300 });

    for (let round = 0; round < 10; round++) {
      await advance(c, 500);
      expect(lease.signal.aborted).toBe(false);
      expect(lease.remainingMs()).toBeGreaterThan(0);
      expect(node(c, 'n1').table.get('ka')?.fencingToken).toBe(lease.fencingToken);
    }
    // 5 s = 5 TTLs later: still the same grant, renewed through the log many times.
    const renewals = node(c, 'n1').table.get('ka')?.renewals ?? 0;
    expect(renewals).toBeGreaterThanOrEqual(15);
    expect(appliedCommands(c, 'n1', 'Expire', 'ka')).toHaveLength(0);

    stop();
    const stoppedAtMs = c.clock.nowMs();
    const renewsAtStop = appliedCommands(c, 'n1', 'Renew', 'ka').length;
    await advanceUntil(c, () => expiredAt(c, 'n1', 'ka', lease.fencingToken) !== undefined, 5_000);
    const expired = expiredAt(c, 'n1', 'ka', lease.fencingToken) ?? NaN;
    // At most one renewal was already in flight; none were sent after stop().
    expect(appliedCommands(c, 'n1', 'Renew', 'ka').length).toBeLessThanOrEqual(renewsAtStop + 1);
    expect(signal.atMs ?? Infinity).toBeLessThanOrEqual(stoppedAtMs + validity(ttlMs));
    expect(signal.atMs ?? Infinity).toBeLessThan(expired);
    expect(signal.heldEverywhere).toBe(true);
    expect(expired).toBeLessThanOrEqual(stoppedAtMs + ttlMs + TICK_MS + 20);
    await expectEverywhere(c, 'ka', undefined);
  });
});

describe('acquire', () => {
  it('waits without polling and gets the lock right after the holder releases', async () => {
    const c = await startCluster();
    const held = await grant(c, 'n2', 'job', 8_000, 'alice');
    const startedAtMs = c.clock.nowMs();
    // bob's fallback re-check would be min(timeout, max(tick, 8000 / 4)) = 2,000 ms away.
    const waiting = watch(c, node(c, 'n3').acquire('job', { ttlMs: 8_000, owner: 'bob', timeoutMs: 20_000 }));
    await advance(c, 500);
    expect(waiting.outcome()).toBeUndefined();
    const bobAcquires = (): number => appliedCommands(c, 'n1', 'Acquire', 'job').filter(({ command }) => command.owner === 'bob').length;
    expect(bobAcquires()).toBe(1);

    await settle(c, held.release());
    await advanceUntil(c, () => waiting.outcome() !== undefined, 5_000, 1);
    const outcome = waiting.outcome();
    if (outcome?.ok !== true) throw new Error('acquire failed');
    const releaseAppliedOnWaiterAtMs = appliedCommands(c, 'n3', 'Release', 'job')[0]?.entry.atMs ?? NaN;
    expect(outcome.atMs - releaseAppliedOnWaiterAtMs).toBeLessThanOrEqual(20);
    expect(outcome.atMs).toBeLessThan(startedAtMs + 2_000);
    expect(bobAcquires()).toBe(2);
    expect(outcome.value).toMatchObject({ key: 'job', owner: 'bob' });
    expect(outcome.value.fencingToken).toBeGreaterThan(held.fencingToken);
    await expectEverywhere(c, 'job', { owner: 'bob', fencingToken: outcome.value.fencingToken });
  });

  it('is woken by the leader expiring the holder, too', async () => {
    const c = await startCluster();
    const held = await grant(c, 'n1', 'job', 1_000, 'alice');
    const waiting = watch(c, node(c, 'n2').acquire('job', { ttlMs: 40_000, owner: 'bob', timeoutMs: 30_000 }));
    await advanceUntil(c, () => waiting.outcome() !== undefined, 5_000, 1);
    const outcome = waiting.outcome();
    if (outcome?.ok !== true) throw new Error('acquire failed');
    const expiredOnWaiterAtMs = expiredAt(c, 'n2', 'job', held.fencingToken) ?? NaN;
    expect(outcome.atMs - expiredOnWaiterAtMs).toBeLessThanOrEqual(20);
    expect(appliedCommands(c, 'n1', 'Acquire', 'job').filter(({ command }) => command.owner === 'bob')).toHaveLength(2);
  });

  it('rejects with Timeout when the holder keeps the lock', async () => {
    const c = await startCluster();
    const held = await grant(c, 'n2', 'job', 1_500, 'alice');
    const stop = held.keepAlive({ intervalMs: 400 });
    const startedAtMs = c.clock.nowMs();
    const outcome = await settleOutcome(c, node(c, 'n3').acquire('job', { ttlMs: 1_500, owner: 'bob', timeoutMs: 1_000 }));
    stop();
    expect(outcome.ok).toBe(false);
    if (!outcome.ok) expectCode(outcome.error, 'Timeout');
    expect(outcome.atMs).toBeGreaterThanOrEqual(startedAtMs + 1_000);
    expect(outcome.atMs).toBeLessThanOrEqual(startedAtMs + 1_000 + 50);
    expect(held.signal.aborted).toBe(false);
    expect(node(c, 'n1').table.get('job')).toMatchObject({ owner: 'alice', fencingToken: held.fencingToken });
  });

  it('rejects when its signal is aborted: before the call, or while waiting', async () => {
    const c = await startCluster();
    const held = await grant(c, 'n2', 'job', 10_000, 'alice');

    const early = new AbortController();
    const reason = new Error('gave up before starting');
    early.abort(reason);
    const refused = await settleOutcome(c, node(c, 'n3').acquire('job', { ttlMs: 5_000, owner: 'bob', signal: early.signal }));
    expect(refused).toMatchObject({ ok: false, error: reason });
    const onFree = await settleOutcome(c, node(c, 'n3').tryAcquire('free', { ttlMs: 5_000, signal: early.signal }));
    expect(onFree).toMatchObject({ ok: false, error: reason });

    const later = new AbortController();
    const waiting = watch(c, node(c, 'n3').acquire('job', { ttlMs: 5_000, owner: 'bob', signal: later.signal, timeoutMs: 20_000 }));
    await advance(c, 300);
    expect(waiting.outcome()).toBeUndefined();
    const abortedAtMs = c.clock.nowMs();
    const gaveUp = new Error('gave up while waiting');
    later.abort(gaveUp);
    await c.clock.advance(0);
    expect(waiting.outcome()).toMatchObject({ ok: false, error: gaveUp, atMs: abortedAtMs });

    // bob's waiter is gone: freeing the key does not make bob take it.
    await settle(c, held.release());
    await advance(c, 3_000);
    await expectEverywhere(c, 'job', undefined);
    expect(node(c, 'n1').table.get('free')).toBeUndefined();
    expect(appliedCommands(c, 'n1', 'Acquire', 'job').filter(({ command }) => command.owner === 'bob')).toHaveLength(1);
  });
});

describe('withLock', () => {
  it('runs fn with a live lease kept alive beyond the TTL, and releases afterwards', async () => {
    const c = await startCluster();
    const ttlMs = 1_200;
    let seen: Lease | undefined;
    const checks: { aborted: boolean; remainingMs: number; tableToken: number | undefined }[] = [];
    const result = await settle(
      c,
      node(c, 'n2').withLock('wl', { ttlMs, owner: 'runner' }, async (lease) => {
        seen = lease;
        for (let round = 0; round < 8; round++) {
          await sleep(c, 500);
          checks.push({ aborted: lease.signal.aborted, remainingMs: lease.remainingMs(), tableToken: node(c, 'n1').table.get('wl')?.fencingToken });
        }
        return 'done';
      }),
    );
    expect(result).toBe('done');
    if (seen === undefined) throw new Error('fn did not run');
    const lease = seen;
    // 4 s of work with a 1.2 s TTL: the lease stayed valid and held the whole time.
    expect(checks).toHaveLength(8);
    for (const check of checks) expect(check).toMatchObject({ aborted: false, tableToken: lease.fencingToken });
    for (const check of checks) expect(check.remainingMs).toBeGreaterThan(0);
    expect(appliedCommands(c, 'n1', 'Expire', 'wl')).toHaveLength(0);
    // Released on the way out.
    expect(lease.signal.aborted).toBe(true);
    await expectEverywhere(c, 'wl', undefined);
    expect(appliedCommands(c, 'n1', 'Release', 'wl').map(({ entry }) => entry.result.type)).toEqual(['Released']);
  });

  it('releases even if fn throws, and the error propagates', async () => {
    const c = await startCluster();
    const boom = new Error('boom');
    let seen: Lease | undefined;
    const outcome = await settleOutcome(
      c,
      node(c, 'n3').withLock('wl', { ttlMs: 1_500 }, async (lease) => {
        seen = lease;
        await sleep(c, 2_000);
        expect(lease.signal.aborted).toBe(false);
        throw boom;
      }),
    );
    expect(outcome).toMatchObject({ ok: false, error: boom });
    expect(seen?.signal.aborted).toBe(true);
    await expectEverywhere(c, 'wl', undefined);
    // The key is free for someone else right away.
    const next = await grant(c, 'n1', 'wl', 1_500, 'next');
    expect(next.fencingToken).toBeGreaterThan(seen?.fencingToken ?? Infinity);
  });
});

describe('bad input', () => {
  it('rejects bad keys, owners and TTLs with InvalidArgument and changes nothing', async () => {
    const c = await startCluster({ lease: { marginMs: 1_000 } });
    await grant(c, 'n1', 'present', 60_000);
    await advance(c, 300);
    const tableBefore = IDS.map((id) => node(c, id).leases());
    const lastIndexBefore = IDS.map((id) => node(c, id).raft.status().lastIndex);

    const bad: { key: string; ttlMs: number; owner?: string }[] = [
      { key: '', ttlMs: 5_000 },
      // 513 two-byte characters: 1,026 UTF-8 bytes although only 513 UTF-16 units.
      { key: 'é'.repeat(513), ttlMs: 5_000 },
      { key: 'k'.repeat(1_025), ttlMs: 5_000 },
      { key: 'k', ttlMs: 5_000, owner: '' },
      { key: 'k', ttlMs: 5_000, owner: 'o'.repeat(257) },
      { key: 'k', ttlMs: 0 },
      { key: 'k', ttlMs: -5_000 },
      { key: 'k', ttlMs: 5_000.5 },
      { key: 'k', ttlMs: Number.NaN },
      { key: 'k', ttlMs: 24 * 60 * 60 * 1000 + 1 },
      // Too short for the drift bound and the margin: floor(1000 · 0.9996) − 1000 < 0, and 1001 leaves 0.
      { key: 'k', ttlMs: 1_000 },
      { key: 'k', ttlMs: 1_001 },
      // A bad request for a key that exists must not disturb it either.
      { key: 'present', ttlMs: 0 },
    ];
    for (const { key, ttlMs, owner } of bad) {
      const options = owner === undefined ? { ttlMs } : { ttlMs, owner };
      for (const id of ['n1', 'n2'] as const) {
        const attempts: (() => Promise<unknown>)[] = [
          () => node(c, id).tryAcquire(key, options),
          () => node(c, id).acquire(key, { ...options, timeoutMs: 1_000 }),
          () => node(c, id).withLock(key, options, () => Promise.reject(new Error('fn must not run'))),
        ];
        for (const attempt of attempts) {
          const outcome = await settleOutcome(c, attempt());
          expect(outcome.ok, `${key.slice(0, 8)} ttl ${ttlMs} owner ${String(owner)}`).toBe(false);
          if (!outcome.ok) expectCode(outcome.error, 'InvalidArgument');
        }
      }
    }
    // The boundaries are accepted: exactly 1,024 bytes of key, 256 of owner, one day of TTL, ttl 1,002 ms.
    const bytes1024 = 'é'.repeat(512);
    expect(new TextEncoder().encode(bytes1024).byteLength).toBe(1_024);
    expect(IDS.map((id) => node(c, id).leases())).toEqual(tableBefore);
    expect(IDS.map((id) => node(c, id).raft.status().lastIndex)).toEqual(lastIndexBefore);
    for (const [key, ttlMs, owner] of [
      [bytes1024, 5_000, 'o'],
      ['k', 5_000, 'o'.repeat(256)],
      ['day', 24 * 60 * 60 * 1000, 'o'],
      ['thin', 1_002, 'o'],
    ] as const) {
      const lease = await grant(c, 'n2', key, ttlMs, owner);
      expect(lease.key).toBe(key);
    }
  });

  it('invalid lease options give a ConfigError naming a lease.* field', async () => {
    const network = new MemoryNetwork();
    const cases: [LeaseOptions, string][] = [
      [{ maxClockDriftPpm: -1 }, 'lease.maxClockDriftPpm'],
      [{ maxClockDriftPpm: 100_000 }, 'lease.maxClockDriftPpm'],
      [{ maxClockDriftPpm: 1.5 }, 'lease.maxClockDriftPpm'],
      [{ marginMs: -1 }, 'lease.marginMs'],
      [{ marginMs: Number.POSITIVE_INFINITY }, 'lease.marginMs'],
      [{ expiryCheckIntervalMs: 0 }, 'lease.expiryCheckIntervalMs'],
      [{ expiryCheckIntervalMs: Number.NaN }, 'lease.expiryCheckIntervalMs'],
      [{ defaultOwner: '' }, 'lease.defaultOwner'],
      [{ defaultOwner: 'o'.repeat(257) }, 'lease.defaultOwner'],
      [{ requestTimeoutMs: 0 }, 'lease.requestTimeoutMs'],
      [{ requestTimeoutMs: -10 }, 'lease.requestTimeoutMs'],
    ];
    for (const [lease, field] of cases) {
      const started = LeaseNode.start({
        id: 'solo',
        voters: ['solo'],
        transport: network.connect(nodeId('solo')),
        storage: new MemoryStorage(),
        clock: new ManualClock(),
        seed: 1,
        lease,
      });
      await expect(started).rejects.toBeInstanceOf(ConfigError);
      await expect(started).rejects.toMatchObject({ code: 'InvalidConfig', field });
      expect(field.startsWith('lease.')).toBe(true);
    }
  });
});

describe('retries apply once', () => {
  it('a forwarded Acquire whose leader crashed is retried after the leader change and applies once', async () => {
    // Snapshot after every entry so a lagging follower catches up by snapshot, which fails its pending
    // proposal with OutcomeUnknown; the lease layer then retries the same command (same request id).
    const c = await startCluster({ extra: { snapshots: { intervalEntries: 1, trailingEntries: 0 } } });
    const leaderTransport = c.transports.get('n1');
    if (leaderTransport === undefined) throw new Error('no transport');
    // n2 hears the leader's answer to its forwarded proposal, but none of its log entries.
    leaderTransport.drop = (message) => message.to === 'n2' && message.type !== 'ProposeResponse';
    const acquiring = watch(c, node(c, 'n2').tryAcquire('once', { ttlMs: 10_000, owner: 'bob' }));
    await c.clock.advance(0);
    const firstAttempt = appliedCommands(c, 'n1', 'Acquire', 'once');
    expect(firstAttempt).toHaveLength(1);
    const firstIndex = firstAttempt[0]?.entry.index ?? NaN;
    expect(node(c, 'n3').raft.status().lastIndex).toBeGreaterThanOrEqual(firstIndex);
    expect(node(c, 'n2').raft.status().lastIndex).toBeLessThan(firstIndex);
    expect(acquiring.outcome()).toBeUndefined();

    // The leader crashes (no hand-over); n3 takes over and commits the entry; n2 catches up by snapshot.
    await node(c, 'n1').raft.stop({ transferLeadership: false });
    await node(c, 'n1').stop();
    await advanceUntil(c, () => acquiring.outcome() !== undefined, 10_000, 1);
    const outcome = acquiring.outcome();
    if (outcome?.ok !== true || !outcome.value.acquired) throw new Error(`not granted: ${JSON.stringify(outcome)}`);
    expect(leaderId(c)).toBe('n3');
    expect(node(c, 'n2').raft.status().snapshotIndex).toBeGreaterThanOrEqual(firstIndex);

    // The same command (same request id) is in the log twice; the table applied it once.
    const onNewLeader = appliedCommands(c, 'n3', 'Acquire', 'once');
    expect(onNewLeader).toHaveLength(2);
    expect(onNewLeader[1]?.command).toEqual(onNewLeader[0]?.command);
    expect(onNewLeader[1]?.entry.index).toBeGreaterThan(firstIndex);
    expect(onNewLeader[1]?.entry.result).toEqual(onNewLeader[0]?.entry.result);
    expect(outcome.value.lease.fencingToken).toBe(firstIndex);
    for (const id of ['n2', 'n3'] as const) {
      await advanceUntil(c, () => node(c, id).table.get('once') !== undefined, 1_000);
      expect(node(c, id).table.get('once')).toEqual({ key: 'once', owner: 'bob', fencingToken: firstIndex, ttlMs: 10_000, renewals: 0 });
    }
  });

  it('two submits of the same command bytes yield one grant', async () => {
    const c = await startCluster();
    const leaseNode = node(c, 'n2');
    const command: LeaseCommand = { type: 'Acquire', key: 'dup', owner: 'bob', ttlMs: 10_000, requestId: leaseNode.requestId() };
    const first = await settle(c, leaseNode.submit(command, undefined));
    const second = await settle(c, node(c, 'n3').submit(command, undefined));
    expect(first).toMatchObject({ type: 'Granted', renewed: false });
    expect(second).toEqual(first);
    // A different request id for the same owner is a re-acquire: same token, renewal counted.
    const third = await settle(c, leaseNode.submit({ ...command, requestId: leaseNode.requestId() }, undefined));
    expect(third).toMatchObject({ type: 'Granted', renewed: true, lease: { renewals: 1 } });
    const grants = appliedCommands(c, 'n1', 'Acquire', 'dup');
    expect(grants).toHaveLength(3);
    expect(encodeLeaseCommand(command)).toEqual(encodeLeaseCommand(grants[1]?.command ?? command));
    await expectEverywhere(c, 'dup', { owner: 'bob', fencingToken: grants[0]?.entry.index ?? NaN });
    expect(node(c, 'n3').table.get('dup')?.renewals).toBe(1);
  });
});

describe('regressions of lease client fixes', () => {
  it('acquire() takes the lock at once when the release is applied on its node between its Held answer and its wait', async () => {
    const c = await startCluster();
    const held = await grant(c, 'n2', 'job', 8_000, 'alice');
    const waiter = node(c, 'n3');
    // For each of bob's tryAcquire rounds: the answer, and whether the waiter's table still named alice then.
    const rounds: { acquired: boolean; aliceOnWaiter: boolean }[] = [];
    const tryAcquire = waiter.tryAcquire.bind(waiter);
    waiter.tryAcquire = async (key, options) => {
      const result = await tryAcquire(key, options);
      rounds.push({ acquired: result.acquired, aliceOnWaiter: waiter.table.get(key)?.owner === 'alice' });
      return result;
    };
    const startedAtMs = c.clock.nowMs();
    // bob's fallback re-check would be min(timeout, max(tick, 8000 / 4)) = 2,000 ms away.
    const waiting = watch(c, waiter.acquire('job', { ttlMs: 8_000, owner: 'bob', timeoutMs: 20_000 }));
    const releasing = watch(c, held.release());
    await advanceUntil(c, () => waiting.outcome() !== undefined, 5_000, 1);
    const outcome = waiting.outcome();
    if (outcome?.ok !== true) throw new Error(`acquire failed: ${String(outcome?.ok === false ? outcome.error : outcome)}`);
    expect(releasing.outcome()?.ok).toBe(true);

    // The race really happened: bob's first answer was Held, and by then the waiter had applied the release.
    const log = applied(c, 'n3').filter((entry) => typeof entry.command !== 'string' && entry.command.key === 'job');
    expect(log.map((entry) => [typeof entry.command === 'string' ? entry.command : `${entry.command.type}:${'owner' in entry.command ? entry.command.owner : ''}`, entry.result.type])).toEqual([
      ['Acquire:alice', 'Granted'],
      ['Acquire:bob', 'Held'],
      ['Release:alice', 'Released'],
      ['Acquire:bob', 'Granted'],
    ]);
    expect(rounds[0]).toMatchObject({ acquired: false, aliceOnWaiter: false });
    expect(rounds).toHaveLength(2);
    expect(rounds[1]?.acquired).toBe(true);
    // Taken right away, not after the 2,000 ms fallback.
    expect(outcome.atMs - startedAtMs).toBeLessThanOrEqual(100);
    expect(outcome.value).toMatchObject({ key: 'job', owner: 'bob' });
    expect(outcome.value.fencingToken).toBeGreaterThan(held.fencingToken);
    await expectEverywhere(c, 'job', { owner: 'bob', fencingToken: outcome.value.fencingToken });
  });

  it('a node restarted with the same storage and seed makes new request ids; a mismatched dedup answer is never a grant', async () => {
    const c = await startCluster({ leader: 'n2' });
    const firstIncarnation = node(c, 'n2');
    const firstInstanceId = firstIncarnation.raft.instanceId;
    const alice = await grant(c, 'n2', 'job', 10_000, 'alice');
    await settle(c, alice.release());
    const aliceRequestIds = applied(c, 'n2').flatMap((entry) => (typeof entry.command !== 'string' && 'requestId' in entry.command && entry.command.key === 'job' ? [entry.command.requestId] : []));
    expect(aliceRequestIds).toHaveLength(2);

    // n2 stops (handing leadership over) and starts again on the same storage with the same seed.
    await settle(c, firstIncarnation.stop());
    const secondIncarnation = await restartNode(c, 'n2');
    await advanceUntil(c, () => IDS.every((id) => node(c, id).raft.status().leader !== null && node(c, id).raft.status().leader !== 'n2'), 5_000);
    expect(secondIncarnation.raft.instanceId).not.toBe(firstInstanceId);
    expect(aliceRequestIds).not.toContain(secondIncarnation.requestId());

    const carol = await grant(c, 'n3', 'job', 10_000, 'carol');
    await expect(settle(c, secondIncarnation.tryAcquire('job', { ttlMs: 10_000, owner: 'bob' }))).resolves.toEqual({ acquired: false, holder: 'carol' });
    await expectEverywhere(c, 'job', { owner: 'carol', fencingToken: carol.fencingToken });
    for (const { command, entry } of appliedCommands(c, 'n2', 'Acquire', 'job').filter(({ command }) => command.owner === 'bob')) {
      expect(aliceRequestIds).not.toContain(command.requestId);
      expect(entry.result).toMatchObject({ type: 'Held', lease: { owner: 'carol' } });
    }

    // Force the collision: bob's first request reuses alice's acquire id, so the table answers with
    // alice's old grant. That answer names another owner: it is retried with a fresh id, not returned.
    const realRequestId = secondIncarnation.requestId.bind(secondIncarnation);
    let reused = 0;
    secondIncarnation.requestId = () => (reused++ === 0 ? (aliceRequestIds[0] ?? '') : realRequestId());
    await expect(settle(c, secondIncarnation.tryAcquire('job', { ttlMs: 10_000, owner: 'bob' }))).resolves.toEqual({ acquired: false, holder: 'carol' });
    expect(reused).toBe(2);
    // Every request reuses alice's acquire id: the answers never match, and bob gets an error, not a lease.
    secondIncarnation.requestId = () => aliceRequestIds[0] ?? '';
    const collided = await settleOutcome(c, secondIncarnation.tryAcquire('job', { ttlMs: 10_000, owner: 'bob' }));
    expect(collided.ok).toBe(false);
    if (!collided.ok) expect(collided.error).toBeInstanceOf(RaftLeaseError);
    await expectEverywhere(c, 'job', { owner: 'carol', fencingToken: carol.fencingToken });
  });

  it("renew() applied after the holder's signal aborted rejects with LeaseLost, and the signal stays aborted", async () => {
    // Replicated renewals: the late renewal is applied through the log.
    const c = await startCluster({ lease: { leaderLocalRenewals: false } });
    const ttlMs = 2_000;
    const grantedAtMs = c.clock.nowMs();
    const lease = await grant(c, 'n1', 'late', ttlMs);
    const validUntil = grantedAtMs + validity(ttlMs);
    expect(lease.validUntil).toBe(validUntil);
    const signal = watchSignal(c, lease);

    // The leader is cut off just before the holder's deadline, so the renewal cannot commit in time.
    await advanceTo(c, grantedAtMs + 1_800);
    c.network.isolate([nodeId('n1')], [nodeId('n2'), nodeId('n3')]);
    const renewal = watch(c, lease.renew());
    await advanceTo(c, validUntil + 50);
    expect(lease.signal.aborted).toBe(true);
    expect(signal.atMs).toBe(validUntil);
    expect(renewal.outcome()).toBeUndefined();
    c.network.heal();
    await advanceUntil(c, () => renewal.outcome() !== undefined, 2_000, 1);

    // The renewal was applied (granted by the table), but only after the holder had given the lease up.
    const renews = appliedCommands(c, 'n1', 'Renew', 'late');
    expect(renews.map(({ entry }) => entry.result)).toMatchObject([{ type: 'Granted', renewed: true, lease: { fencingToken: lease.fencingToken, renewals: 1 } }]);
    expect(renews[0]?.entry.atMs ?? -Infinity).toBeGreaterThan(validUntil);
    const outcome = renewal.outcome();
    expect(outcome?.ok).toBe(false);
    if (outcome?.ok === false) expectCode(outcome.error, 'LeaseLost');
    expect(lease.signal.aborted).toBe(true);
    expectCode(signal.reason, 'LeaseLost');
    expect(lease.remainingMs()).toBe(0);
    expect(lease.validUntil).toBe(validUntil);
    await advance(c, 500);
    expect(lease.remainingMs()).toBe(0);
    // A second renew() is refused at once, proposing nothing.
    const again = await settleOutcome(c, lease.renew());
    expect(again.ok).toBe(false);
    if (!again.ok) expectCode(again.error, 'LeaseLost');
    expect(appliedCommands(c, 'n1', 'Renew', 'late')).toHaveLength(1);

    // Releasing it names the renewal count the late renewal reached, so the key is freed at once.
    await settle(c, lease.release());
    expect(appliedCommands(c, 'n1', 'Release', 'late').map(({ entry }) => entry.result.type)).toEqual(['Released']);
    await expectEverywhere(c, 'late', undefined);
  });

  it("release() of an older Lease object does not end the same owner's newer re-acquire", async () => {
    const c = await startCluster();
    const older = await grant(c, 'n2', 'job', 10_000, 'o');
    const newer = await grant(c, 'n3', 'job', 10_000, 'o');
    expect(newer.fencingToken).toBe(older.fencingToken);
    await expectEverywhere(c, 'job', { owner: 'o', fencingToken: older.fencingToken });
    expect(node(c, 'n1').table.get('job')?.renewals).toBe(1);
    const newerSignal = watchSignal(c, newer);

    await settle(c, older.release());
    expect(older.signal.aborted).toBe(true);
    expect(appliedCommands(c, 'n1', 'Release', 'job').map(({ command, entry }) => [command.renewals, entry.result])).toEqual([
      [0, { type: 'NotHeld', key: 'job', reason: 'RenewedSince' }],
    ]);
    await expectEverywhere(c, 'job', { owner: 'o', fencingToken: older.fencingToken });
    expect(node(c, 'n1').table.get('job')?.renewals).toBe(1);

    // The newer lease lasts its full validity, held everywhere the whole time.
    while (c.clock.nowMs() < newer.validUntil - 100) {
      await advance(c, 100);
      expect(newer.signal.aborted).toBe(false);
      expect(node(c, 'n1').table.get('job')?.owner).toBe('o');
    }
    await advanceTo(c, newer.validUntil - 1);
    expect(newer.signal.aborted).toBe(false);
    expect(newer.remainingMs()).toBe(1);
    expect(newerSignal.atMs).toBeNull();
    expect(appliedCommands(c, 'n1', 'Expire', 'job')).toHaveLength(0);

    const releasedAtMs = c.clock.nowMs();
    await settle(c, newer.release());
    expect(newerSignal.atMs).toBe(releasedAtMs);
    expect(appliedCommands(c, 'n1', 'Release', 'job').map(({ command, entry }) => [command.renewals, entry.result.type])).toEqual([
      [0, 'NotHeld'],
      [1, 'Released'],
    ]);
    await expectEverywhere(c, 'job', undefined);
  });

  for (const [marginMs, shortest] of [
    [0, 2],
    [1_000, 1_002],
  ] as const) {
    it(`the 'ttl too short' message names the shortest accepted TTL (margin ${marginMs} ms: ${shortest} ms)`, async () => {
      const c = await startCluster({ lease: { marginMs } });
      const named = async (ttlMs: number): Promise<number> => {
        const refused = await settleOutcome(c, node(c, 'n2').tryAcquire('short', { ttlMs }));
        if (refused.ok) throw new Error(`ttl ${ttlMs} was accepted`);
        expectCode(refused.error, 'InvalidArgument');
        const message = (refused.error as Error).message;
        const match = /use at least (\d+) ms/.exec(message);
        if (match === null) throw new Error(`no 'use at least N ms' in: ${message}`);
        return Number(match[1]);
      };
      const minimum = await named(1);
      expect(minimum).toBe(shortest);
      expect(validity(minimum, marginMs)).toBeGreaterThan(0);
      expect(validity(minimum - 1, marginMs)).toBeLessThanOrEqual(0);
      // One below is refused, naming the same minimum…
      expect(await named(minimum - 1)).toBe(minimum);
      // …and the named TTL is accepted, leaving the holder some validity.
      const sentAtMs = c.clock.nowMs();
      const lease = await grant(c, 'n2', 'short', minimum);
      expect(lease.ttlMs).toBe(minimum);
      expect(lease.validUntil - sentAtMs).toBe(validity(minimum, marginMs));
      expect(lease.validUntil).toBeGreaterThan(sentAtMs);
      expect(appliedCommands(c, 'n1', 'Acquire', 'short').map(({ entry }) => entry.result)).toMatchObject([{ type: 'Granted', lease: { owner: 'n2', ttlMs: minimum } }]);
    });
  }
});

/**
 * Starts `id` again (the caller stopped it) on the same storage with the same seed and the default test
 * lease options, and puts the new incarnation in its place in the cluster.
 */
async function restartNode(c: Cluster, id: Id): Promise<LeaseNode> {
  const storage = c.storages.get(id);
  if (storage === undefined) throw new Error(`no storage for ${id}`);
  const transport = new FilteringTransport(c.network.connect(nodeId(id)));
  const restarted = await LeaseNode.start({
    id,
    voters: IDS,
    transport,
    storage,
    clock: c.clock,
    seed: 11 + IDS.indexOf(id),
    tickIntervalMs: TICK_MS,
    onFatalError: (error) => c.fatalErrors.push(error),
    lease: { maxClockDriftPpm: DRIFT_PPM, marginMs: MARGIN_MS },
  });
  c.nodes.set(id, restarted);
  c.transports.set(id, transport);
  c.applied.set(id, recordApplies(c, restarted));
  return restarted;
}

describe('LeaseNode.release(key, token): releasing without a Lease object', () => {
  it('releases the lease named by key, owner and token, and refuses unknown tokens with InvalidArgument, changing nothing', async () => {
    const c = await startCluster();
    const lease = await grant(c, 'n2', 'job', 10_000, 'alice');
    const wrongToken = await settleOutcome(c, node(c, 'n3').release('job', { fencingToken: lease.fencingToken + 1, owner: 'alice' }));
    expect(wrongToken.ok).toBe(false);
    if (!wrongToken.ok) expect(wrongToken.error).toMatchObject({ code: 'InvalidArgument' });
    const wrongOwner = await settleOutcome(c, node(c, 'n3').release('job', { fencingToken: lease.fencingToken, owner: 'bob' }));
    if (!wrongOwner.ok) expect(wrongOwner.error).toMatchObject({ code: 'InvalidArgument' });
    expect(wrongOwner.ok).toBe(false);
    const noLease = await settleOutcome(c, node(c, 'n3').release('other', { fencingToken: 1, owner: 'alice' }));
    expect(noLease.ok).toBe(false);
    for (const id of IDS) expect(node(c, id).table.get('job')).toMatchObject({ owner: 'alice', fencingToken: lease.fencingToken });
    await settle(c, node(c, 'n3').release('job', { fencingToken: lease.fencingToken, owner: 'alice' }));
    await advanceUntil(c, () => IDS.every((id) => node(c, id).table.get('job') === undefined), 2_000);
    const bad = await settleOutcome(c, node(c, 'n1').release('job', { fencingToken: 0, owner: 'alice' }));
    if (!bad.ok) expect(bad.error).toMatchObject({ code: 'InvalidArgument' });
    expect(bad.ok).toBe(false);
  });
});

describe('leader-local renewals (design brief §4, docs/lease-safety.md)', () => {
  it('a renewal on the leader writes nothing to the log, and the leader counts a full TTL from it', async () => {
    const c = await startCluster();
    const ttlMs = 2_000;
    const lease = await grant(c, 'n1', 'local', ttlMs);
    const logLength = node(c, 'n1').raft.status().lastIndex;
    await advance(c, 1_000);
    const renewSentAtMs = c.clock.nowMs();
    await settle(c, lease.renew());
    expect(node(c, 'n1').renewalStats()).toEqual({ leaderLocal: 1, replicated: 0 });
    expect(appliedCommands(c, 'n1', 'Renew', 'local')).toEqual([]);
    expect(node(c, 'n1').raft.status().lastIndex).toBe(logLength);
    expect(lease.validUntil).toBe(renewSentAtMs + validity(ttlMs));
    expect(node(c, 'n2').table.get('local')).toMatchObject({ fencingToken: lease.fencingToken, renewals: 0 });
    // Without further renewals the leader expires it a full TTL after the renewal, not after the grant.
    await advanceUntil(c, () => expiredAt(c, 'n1', 'local', lease.fencingToken) !== undefined, 10_000);
    expect(expiredAt(c, 'n1', 'local', lease.fencingToken)).toBeGreaterThanOrEqual(renewSentAtMs + ttlMs);
    expect(lease.signal.aborted).toBe(true);
  });

  it('a renewal on a follower goes through the log', async () => {
    const c = await startCluster();
    const onFollower = await grant(c, 'n2', 'far', 5_000);
    await settle(c, onFollower.renew());
    expect(node(c, 'n2').renewalStats()).toEqual({ leaderLocal: 0, replicated: 1 });
    expect(appliedCommands(c, 'n1', 'Renew', 'far')).toHaveLength(1);
  });

  it('with leaderLocalRenewals: false a renewal on the leader goes through the log', async () => {
    const c = await startCluster({ lease: { leaderLocalRenewals: false } });
    const onLeader = await grant(c, 'n1', 'near', 5_000);
    await settle(c, onLeader.renew());
    expect(node(c, 'n1').renewalStats()).toEqual({ leaderLocal: 0, replicated: 1 });
    expect(appliedCommands(c, 'n1', 'Renew', 'near')).toHaveLength(1);
  });

  it('renewLease with another TTL than the lease’s goes through the log (a new leader counts the table’s TTL)', async () => {
    const c = await startCluster();
    const lease = await grant(c, 'n1', 'ttl', 5_000);
    const same = await settle(c, node(c, 'n1').renewLease('ttl', { fencingToken: lease.fencingToken }));
    expect(same).toMatchObject({ ttlMs: 5_000, renewals: 0 });
    expect(node(c, 'n1').renewalStats()).toEqual({ leaderLocal: 1, replicated: 0 });
    const longer = await settle(c, node(c, 'n1').renewLease('ttl', { fencingToken: lease.fencingToken, ttlMs: 9_000 }));
    expect(longer).toMatchObject({ ttlMs: 9_000, renewals: 1 });
    expect(node(c, 'n1').renewalStats()).toEqual({ leaderLocal: 1, replicated: 1 });
    expect(appliedCommands(c, 'n1', 'Renew', 'ttl')).toHaveLength(1);
  });

  it('a leader cut off from the quorum never renews locally: the holder’s validity is not extended and it gives up in time', async () => {
    const c = await startCluster();
    const ttlMs = 2_000;
    const grantedAtMs = c.clock.nowMs();
    const lease = await grant(c, 'n1', 'cut', ttlMs);
    const signal = watchSignal(c, lease);
    c.network.isolate([nodeId('n1')], [nodeId('n2'), nodeId('n3')]);
    const renewal = watch(c, lease.renew());
    await advanceTo(c, grantedAtMs + validity(ttlMs) + 10);
    expect(renewal.outcome()?.ok).not.toBe(true);
    expect(node(c, 'n1').renewalStats().leaderLocal).toBe(0);
    expect(lease.validUntil).toBe(grantedAtMs + validity(ttlMs));
    expect(signal.atMs).toBe(grantedAtMs + validity(ttlMs));
    // The majority elects a leader that restarts the countdown and expires the lease after a full TTL.
    await advanceUntil(c, () => expiredAt(c, 'n2', 'cut', lease.fencingToken) !== undefined, 20_000);
    expect(['n2', 'n3']).toContain(leaderId(c));
    // The cut-off node stepped down; its renewal fell back to the log and could not be answered.
    await advanceUntil(c, () => renewal.outcome() !== undefined, 20_000);
    expect(renewal.outcome()?.ok).toBe(false);
    expect(node(c, 'n1').renewalStats().leaderLocal).toBe(0);
  });

  for (const broken of [false, true]) {
    it(`${broken ? 'a broken renewal that skips the confirmation round lets two holders overlap' : 'the confirmation round keeps a deposed leader that has not noticed from renewing'} (checkQuorum off, leader cut off)`, async () => {
      // Without CheckQuorum the cut-off leader keeps believing it leads; only the confirmation round
      // stops it from extending its holder's lease while the majority moves on.
      const c = await startCluster({ lease: broken ? { testOnlyRenewalBug: 'WithoutConfirmation' } : {}, extra: { raft: { checkQuorum: false } } });
      const ttlMs = 2_000;
      const lease = await grant(c, 'n1', 'split', ttlMs);
      const stopKeepAlive = lease.keepAlive({ intervalMs: 500 });
      c.network.isolate([nodeId('n1')], [nodeId('n2'), nodeId('n3')]);
      const majorityLeader = (): Id | undefined => (['n2', 'n3'] as const).find((id) => node(c, id).raft.status().role === 'Leader');
      await advanceUntil(c, () => majorityLeader() !== undefined, 10_000);
      const taken = watch(c, node(c, majorityLeader() ?? 'n2').acquire('split', { ttlMs, owner: 'other', timeoutMs: 20_000 }));
      await advanceUntil(c, () => taken.outcome() !== undefined, 20_000);
      stopKeepAlive();
      const outcome = taken.outcome();
      if (outcome?.ok === false) throw outcome.error;
      expect(node(c, 'n1').raft.status().role).toBe('Leader');
      // Overlap: the old holder still believes it holds the lease when the other owner got it.
      expect(!lease.signal.aborted && lease.remainingMs() > 0).toBe(broken);
      expect(node(c, 'n1').renewalStats().leaderLocal > 0).toBe(broken);
    });
  }

  it('after local renewals, a new leader restarts the countdown at full TTL: the lease outlives the holder’s belief', async () => {
    const c = await startCluster();
    const ttlMs = 2_000;
    const lease = await grant(c, 'n1', 'handover', ttlMs);
    for (let round = 0; round < 3; round++) {
      await advance(c, 500);
      await settle(c, lease.renew());
    }
    expect(node(c, 'n1').renewalStats().leaderLocal).toBe(3);
    const lastValidUntil = lease.validUntil;
    // The leader crashes right after the last local renewal; the others elect a new leader.
    const crashedAtMs = c.clock.nowMs();
    await node(c, 'n1').raft.stop({ transferLeadership: false });
    await node(c, 'n1').stop();
    c.nodes.delete('n1');
    await advanceUntil(c, () => expiredAt(c, 'n2', 'handover', lease.fencingToken) !== undefined, 20_000);
    const expiredAtMs = expiredAt(c, 'n2', 'handover', lease.fencingToken) ?? NaN;
    // The new leader was elected after the crash and counted a full TTL from then.
    expect(expiredAtMs).toBeGreaterThanOrEqual(crashedAtMs + ttlMs);
    expect(expiredAtMs).toBeGreaterThan(lastValidUntil);
  });
});
