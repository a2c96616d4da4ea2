/**
 * The real-process fault test: three `raftlease node` processes on loopback (TCP transport, file
 * storage, HTTP API), lock clients hammering random nodes over keep-alive HTTP, and a chaos loop that
 * SIGKILLs a node (often the leader) and restarts it from its data directory, again and again.
 *
 * Every process on this machine reads the same monotonic clock, so the test can compare the clients'
 * beliefs directly. Each client loops: acquire a random key through a random node, hold it for a
 * random while renewing every 400 ms, then release it — or, one time in five, walk away and let the
 * leader expire it. A 503, a timeout or a connection error is an unknown outcome, never a grant.
 *
 * A client believes it holds a key from the moment the grant ARRIVES until
 * `sentAt + ttl·(1 − 2ρ) − margin`, counted from when it SENT the acquire or the latest successful
 * renewal (docs/lease-safety.md), or until it sends its release, whichever is first. (The belief
 * cannot start at the send: an acquire sent while another client holds the key is legitimately
 * granted once that client's release applies.) Checks:
 *
 * - no two clients' beliefs in the same key overlap;
 * - fencing tokens grow with grant order: a grant requested after another grant's answer carries a
 *   larger token — except that re-acquiring a lease one already holds answers with that lease's
 *   token, which an earlier acquire of the same owner may have created without the client learning
 *   it (a timeout); such a grant must still out-rank every grant on its key answered before it was
 *   requested, and the tokens answered before that earlier acquire was sent. A renewal never
 *   succeeds for a token older than a grant already answered on its key;
 * - the cluster has a leader known by a majority within RECOVERY_BOUND_MS of every kill (the
 *   distribution is printed);
 * - at the end every node converges (appliedIndex = the leader's commitIndex ≥ every acknowledged
 *   token), the linearizable GET /v1/locks/{key} agrees on every node, every lease left behind
 *   expires, and every node exits 0 on SIGTERM;
 * - reading each node's data directory afterwards (FileStorage), the committed logs agree, and
 *   replaying each through the lease table shows every acknowledged grant at its token's index:
 *   an Acquire granted to that owner on that key, with that token;
 * - no node process exited unless the test killed it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { EntryType, FileStorage, type Entry } from '../../src/index.js';
import { LeaseStateMachine, type LeaseResult } from '../../src/lease/index.js';
import { NodeProcess, distribution, freePorts, http, killAllChildren, sleep, status, waitFor, type HttpOutcome, type NodeStatus } from './support.js';

const IDS = ['n1', 'n2', 'n3'] as const;
const MAJORITY = Math.floor(IDS.length / 2) + 1;
const TICK_MS = 50;

const TTL_MS = 1_500;
const DRIFT = 200e-6;
const MARGIN_MS = 200;
/** How long a client trusts a grant or renewal, from when it sent the request. */
const VALIDITY_MS = TTL_MS * (1 - 2 * DRIFT) - MARGIN_MS;
const RENEW_EVERY_MS = 400;
const REQUEST_TIMEOUT_MS = 2_000;
const KEYS = ['alpha', 'beta'] as const;
const CLIENTS = 4;

/** Kills: `true` = the leader, `false` = a random follower. */
const KILL_PLAN = [true, false, true, true, false, true, false, true, true, false] as const;
const RECOVERY_BOUND_MS = 5_000;

interface Grant {
  readonly owner: string;
  readonly key: string;
  readonly token: number;
  readonly sentAt: number;
  readonly receivedAt: number;
  readonly via: string;
}

interface Renewal {
  readonly owner: string;
  readonly key: string;
  readonly token: number;
  readonly sentAt: number;
  readonly receivedAt: number;
}

interface UnknownAcquire {
  readonly owner: string;
  readonly key: string;
  readonly sentAt: number;
}

interface Belief {
  readonly owner: string;
  readonly key: string;
  readonly token: number;
  readonly start: number;
  /** Moves earlier when the owner releases the lease under another grant of it (a re-acquire). */
  end: number;
  /** The client sent a release at `end`, or trusted the lease until its validity ran out. */
  endedBy: 'release' | 'validity';
}

interface Kill {
  readonly victim: string;
  readonly wasLeader: boolean;
  /** Kill → a leader known by a majority, or null if none within the bound. */
  readonly recoveryMs: number | null;
  readonly newLeader: string | null;
}

const counts = {
  acquired: 0,
  refused: 0,
  acquireUnknown: 0,
  renewed: 0,
  renewLost: 0,
  renewUnknown: 0,
  released: 0,
  releaseNotHeld: 0,
  releaseUnknown: 0,
  walkedAway: 0,
};

let dir = '';
let nodes: NodeProcess[] = [];
let failed = false;
/** Set when the chaos is over, or by afterAll (a timed-out test must not keep clients or chaos going). */
const control = { stopClients: false, stopChaos: false };
const clientsRun = (): boolean => !control.stopClients;
const chaosRuns = (): boolean => !control.stopChaos;

function pick<T>(items: readonly T[]): T {
  const item = items[Math.floor(Math.random() * items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

function between(min: number, max: number): number {
  return min + Math.random() * (max - min);
}

function node(id: string): NodeProcess {
  const found = nodes.find((candidate) => candidate.id === id);
  if (found === undefined) throw new Error(`no node ${id}`);
  return found;
}

/** Statuses of the running nodes, by id (a node that does not answer is absent). */
async function statuses(): Promise<Map<string, NodeStatus>> {
  const running = nodes.filter((candidate) => candidate.running);
  const answers = await Promise.all(running.map((candidate) => status(candidate.httpPort, 500)));
  const result = new Map<string, NodeStatus>();
  running.forEach((candidate, index) => {
    const answer = answers[index];
    if (answer !== null && answer !== undefined) result.set(candidate.id, answer);
  });
  return result;
}

/** A leader that a majority of the cluster names and that itself says it leads, or null. */
async function leaderKnownByMajority(): Promise<string | null> {
  const all = await statuses();
  for (const [id, own] of all) {
    if (own.role !== 'Leader') continue;
    const followers = [...all.values()].filter((other) => other.leader === id && other.term === own.term).length;
    if (followers >= MAJORITY) return id;
  }
  return null;
}

function isBody(outcome: HttpOutcome, status: number): outcome is { ok: true; status: number; body: Record<string, unknown> } {
  return outcome.ok && outcome.status === status && typeof outcome.body === 'object' && outcome.body !== null;
}

describe('real processes under SIGKILL chaos', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'raftlease-fault-'));
    const ports = await freePorts(IDS.length * 2);
    const peers = IDS.map((id, index) => `${id}=127.0.0.1:${ports[index] ?? 0}`).join(',');
    nodes = IDS.map(
      (id, index) =>
        new NodeProcess({
          id,
          raftPort: ports[index] ?? 0,
          httpPort: ports[IDS.length + index] ?? 0,
          peers,
          dataDir: join(dir, id),
          logDir: dir,
          tickMs: TICK_MS,
        }),
    );
    for (const member of nodes) member.start();
    await waitFor('a first leader', leaderKnownByMajority, 20_000);
  }, 30_000);

  afterAll(async () => {
    control.stopClients = true;
    control.stopChaos = true;
    await Promise.all(nodes.map((member) => member.stop(5_000).catch(() => null)));
    killAllChildren();
    if (failed) console.log(`fault test: data directories and node logs kept in ${dir}`);
    else if (dir !== '') rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('keeps leases exclusive, tokens ordered and acknowledged grants durable, and recovers a leader after every kill', async () => {
    onTestFailed(() => {
      failed = true;
      for (const member of nodes) console.log(`--- ${member.id} (exits: ${JSON.stringify(member.exits)})\n${member.logTail(40)}`);
    });

    const grants: Grant[] = [];
    const renewals: Renewal[] = [];
    const unknownAcquires: UnknownAcquire[] = [];
    const beliefs: Belief[] = [];
    const oddities: string[] = [];

    const call = (path: string, body: unknown): { via: NodeProcess; outcome: Promise<HttpOutcome> } => {
      // Clients do not know which nodes are up: a dead node is a connection error, i.e. "unknown".
      const via = pick(nodes);
      return { via, outcome: http(via.httpPort, 'POST', path, body, REQUEST_TIMEOUT_MS) };
    };

    const client = async (name: string): Promise<void> => {
      // A release carries the `renewals` of the latest answer, so a release whose outcome was unknown
      // and that applies late cannot end a lease this owner re-acquired since (same token).
      const owner = name;
      // Bounded by control.stopClients, which the test sets once the chaos is over.
      while (clientsRun()) {
        const key = pick(KEYS);
        const sentAt = performance.now();
        const { via, outcome: pending } = call(`/v1/locks/${key}/acquire`, { owner, ttlMs: TTL_MS });
        const outcome = await pending;
        const receivedAt = performance.now();
        if (isBody(outcome, 409)) {
          counts.refused++;
          if (outcome.body.holder === owner) oddities.push(`${owner} was refused ${key} because it holds it itself`);
          await sleep(between(10, 60));
          continue;
        }
        if (!isBody(outcome, 200)) {
          // 503, a timeout, a connection error: the acquire may or may not apply. Not a grant, and
          // no belief: that is the safe reading.
          counts.acquireUnknown++;
          unknownAcquires.push({ owner, key, sentAt });
          if (outcome.ok && outcome.status !== 503) oddities.push(`acquire ${key} via ${via.id}: unexpected ${outcome.status} ${JSON.stringify(outcome.body)}`);
          await sleep(between(20, 100));
          continue;
        }
        const token = outcome.body.token;
        const grantedTtl = outcome.body.ttlMs;
        if (typeof token !== 'number' || outcome.body.acquired !== true || typeof grantedTtl !== 'number') {
          oddities.push(`acquire ${key}: malformed grant ${JSON.stringify(outcome.body)}`);
          continue;
        }
        counts.acquired++;
        let renewalsKnown = typeof outcome.body.renewals === 'number' ? outcome.body.renewals : 0;
        grants.push({ owner, key, token, sentAt, receivedAt, via: via.id });
        const validity = (ttl: number): number => Math.min(ttl, TTL_MS) * (1 - 2 * DRIFT) - MARGIN_MS;
        let validUntil = sentAt + validity(grantedTtl);
        const holdUntil = receivedAt + between(100, 1_200);
        // Some clients walk away without releasing: the next holder then gets the key only through
        // the leader's expiry, which is where the validity arithmetic is tested.
        const walkAway = Math.random() < 0.2;
        let lost = false;
        // Bounded by holdUntil (and by validUntil, which only renewals move).
        while (!lost && clientsRun()) {
          const now = performance.now();
          if (now >= holdUntil || now >= validUntil) break;
          await sleep(Math.min(RENEW_EVERY_MS, holdUntil - now));
          if (performance.now() >= holdUntil) break;
          const renewSentAt = performance.now();
          // ttlMs is explicit: without it the answering node takes the TTL from its own table, which
          // may lag (a follower that has not applied the grant yet answers 409 LeaseLost, or renews
          // with the TTL of the key's previous lease).
          const renewal: HttpOutcome = await call(`/v1/locks/${key}/renew`, { owner, token, ttlMs: TTL_MS }).outcome;
          const renewReceivedAt = performance.now();
          if (isBody(renewal, 200)) {
            const renewedTtl = renewal.body.ttlMs;
            if (renewal.body.token !== token || typeof renewedTtl !== 'number') oddities.push(`renew ${key} #${token}: answered ${JSON.stringify(renewal.body)}`);
            counts.renewed++;
            if (typeof renewal.body.renewals === 'number') renewalsKnown = renewal.body.renewals;
            renewals.push({ owner, key, token, sentAt: renewSentAt, receivedAt: renewReceivedAt });
            validUntil = Math.max(validUntil, renewSentAt + validity(typeof renewedTtl === 'number' ? renewedTtl : 0));
          } else if (isBody(renewal, 409)) {
            // The lease is gone (expired, because this client's renewals did not get through in time).
            counts.renewLost++;
            lost = true;
          } else {
            counts.renewUnknown++;
            if (renewal.ok && renewal.status !== 503) oddities.push(`renew ${key}: unexpected ${renewal.status} ${JSON.stringify(renewal.body)}`);
          }
        }
        const releaseSentAt = performance.now();
        // A lost lease, or one walked away from, keeps its belief until validUntil: nobody else may
        // hold the key before then.
        const end = lost || walkAway ? validUntil : Math.min(releaseSentAt, validUntil);
        // A grant that arrives after its validity already ended opens no belief at all.
        if (end > receivedAt) beliefs.push({ owner, key, token, start: receivedAt, end, endedBy: end === releaseSentAt ? 'release' : 'validity' });
        if (lost) continue;
        if (!walkAway) {
          // Releasing ends every belief this owner has in this lease: a walked-away grant of it that
          // the owner has re-acquired since (same token) is over too.
          for (const belief of beliefs) {
            if (belief.owner === owner && belief.key === key && belief.token === token && belief.end > releaseSentAt) {
              belief.end = Math.max(belief.start, releaseSentAt);
              belief.endedBy = 'release';
            }
          }
        }
        if (walkAway) {
          counts.walkedAway++;
          continue;
        }
        const released = await call(`/v1/locks/${key}/release`, { owner, token, renewals: renewalsKnown }).outcome;
        if (isBody(released, 200)) counts.released++;
        else if (isBody(released, 409)) counts.releaseNotHeld++;
        else counts.releaseUnknown++;
      }
    };

    const clients = Array.from({ length: CLIENTS }, (_, index) => client(`client-${index + 1}`));

    // ---- chaos -------------------------------------------------------------------------------
    const kills: Kill[] = [];
    const chaosStarted = performance.now();
    await sleep(1_500);
    for (const killLeader of KILL_PLAN) {
      if (!chaosRuns()) break;
      const leader = await waitFor('a leader before the next kill', leaderKnownByMajority, 10_000);
      const victim = killLeader ? node(leader) : pick(nodes.filter((candidate) => candidate.id !== leader));
      const killedAt = performance.now();
      await victim.kill('SIGKILL');
      let recoveryMs: number | null = null;
      let newLeader: string | null = null;
      // Bounded: three times the bound, so one slow recovery is measured rather than cut off.
      while (performance.now() - killedAt < 3 * RECOVERY_BOUND_MS) {
        newLeader = await leaderKnownByMajority();
        if (newLeader !== null) {
          recoveryMs = performance.now() - killedAt;
          break;
        }
        await sleep(25);
      }
      kills.push({ victim: victim.id, wasLeader: victim.id === leader, recoveryMs, newLeader });
      await sleep(between(300, 1_500));
      if (!chaosRuns()) break;
      victim.start();
      await waitFor(`${victim.id} to answer after its restart`, async () => {
        const answer = await status(victim.httpPort, 500);
        return answer !== null && answer.leader !== null ? answer : null;
      }, 15_000);
      await sleep(between(500, 1_500));
    }
    const chaosMs = performance.now() - chaosStarted;
    await sleep(1_000);
    control.stopClients = true;
    await Promise.all(clients);
    const clientsStoppedAt = performance.now();

    // ---- convergence and the HTTP view -----------------------------------------------------
    const maxToken = Math.max(0, ...grants.map((grant) => grant.token));
    const converged = await waitFor(
      'every node to apply everything the leader committed',
      async () => {
        const all = await statuses();
        const leader = [...all.values()].find((candidate) => candidate.role === 'Leader');
        if (all.size < IDS.length || leader === undefined) return null;
        const settled = [...all.values()].every((candidate) => candidate.leader === leader.id && candidate.appliedIndex === leader.commitIndex);
        return settled ? { leader: leader.id, commitIndex: leader.commitIndex, appliedIndexes: [...all.values()].map((candidate) => candidate.appliedIndex) } : null;
      },
      15_000,
      100,
    );
    const lockViews: string[] = [];
    for (const key of KEYS) {
      // Linearizable reads on every node; an expiry committing between two reads makes them differ,
      // so read again (bounded) until one round agrees.
      const agreed = await waitFor(
        `every node to report the same lease on ${key}`,
        async () => {
          const answers = await Promise.all(nodes.map((member) => http(member.httpPort, 'GET', `/v1/locks/${key}`, undefined, 3_000)));
          const views = answers.map((answer) => (answer.ok && (answer.status === 200 || answer.status === 404) ? JSON.stringify(answer.body) : null));
          return views.every((view) => view !== null && view === views[0]) ? views[0] : null;
        },
        10_000,
        100,
      );
      lockViews.push(`${key}: ${agreed}`);
    }

    // Every lease left behind (walked away from, released with an unknown outcome, or granted by an
    // acquire the node kept retrying after its client gave up, up to the node's 5 s request timeout)
    // expires: the lessor still works after all the leader changes.
    const expiredAfterMs = await waitFor(
      'every lease to expire on every node',
      async () => {
        const answers = await Promise.all(nodes.flatMap((member) => KEYS.map((key) => http(member.httpPort, 'GET', `/v1/locks/${key}`, undefined, 3_000))));
        return answers.every((answer) => answer.ok && answer.status === 404) ? performance.now() - clientsStoppedAt : null;
      },
      15_000,
      100,
    );

    // ---- stop everything; every node must exit 0 on SIGTERM -----------------------------------
    const stops = await Promise.all(nodes.map((member) => member.stop(15_000)));

    // ---- read the data directories -------------------------------------------------------------
    const logs = new Map<string, { commit: number; snapshotIndex: number; entries: Map<number, Entry>; results: Map<number, LeaseResult> }>();
    for (const member of nodes) {
      const storage = await FileStorage.open(member.spec.dataDir);
      try {
        const state = await storage.load();
        const table = new LeaseStateMachine();
        const snapshotIndex = state.snapshot?.metadata.index ?? 0;
        if (state.snapshot !== null && state.snapshot !== undefined) table.restore(state.snapshot.data);
        const entries = new Map<number, Entry>();
        const results = new Map<number, LeaseResult>();
        for (const entry of state.entries) {
          if (entry.index <= snapshotIndex) continue;
          entries.set(entry.index, entry);
          if (entry.index <= state.hardState.commit && entry.type === EntryType.Normal) results.set(entry.index, table.apply(entry.data, entry.index));
        }
        logs.set(member.id, { commit: state.hardState.commit, snapshotIndex, entries, results });
      } finally {
        await storage.close();
      }
    }

    // ---- report ----------------------------------------------------------------------------------
    const recoveries = kills.flatMap((kill) => (kill.recoveryMs === null ? [] : [kill.recoveryMs]));
    const leaderRecoveries = kills.flatMap((kill) => (kill.wasLeader && kill.recoveryMs !== null ? [kill.recoveryMs] : []));
    console.log(
      [
        `fault test: ${kills.length} SIGKILLs (${kills.filter((kill) => kill.wasLeader).length} of the leader) in ${(chaosMs / 1_000).toFixed(1)} s; ${CLIENTS} clients on ${KEYS.length} keys, TTL ${TTL_MS} ms, validity ${VALIDITY_MS.toFixed(1)} ms from send`,
        `  kills: ${kills.map((kill) => `${kill.victim}${kill.wasLeader ? '(leader)' : ''}→${kill.recoveryMs === null ? 'NO LEADER' : `${Math.round(kill.recoveryMs)} ms, ${kill.newLeader ?? ''}`}`).join('; ')}`,
        `  kill → leader known by a majority, all kills:    ${distribution(recoveries)}`,
        `  kill → leader known by a majority, leader kills: ${distribution(leaderRecoveries)}`,
        `  client operations: ${JSON.stringify(counts)}`,
        `  grants ${grants.length}, beliefs ${beliefs.length}, renewals ${renewals.length}, max token ${maxToken}; converged at commit ${converged.commitIndex} (leader ${converged.leader})`,
        `  final locks: ${lockViews.join('; ')}; every lease expired ${Math.round(expiredAfterMs)} ms after the clients stopped`,
        `  logs: ${[...logs].map(([id, log]) => `${id} commit ${log.commit}, snapshot ${log.snapshotIndex}, ${log.entries.size} entries`).join('; ')}`,
      ].join('\n'),
    );

    // ---- checks ------------------------------------------------------------------------------------
    const problems: string[] = [...oddities];

    // Exclusion: no two clients believe they hold the same key at the same moment.
    const handoverGaps: number[] = [];
    const expiryHandoverGaps: number[] = [];
    for (const key of KEYS) {
      const onKey = beliefs.filter((belief) => belief.key === key).sort((a, b) => a.start - b.start);
      onKey.forEach((belief, index) => {
        const next = onKey.slice(index + 1).find((other) => other.owner !== belief.owner);
        if (next === undefined) return;
        handoverGaps.push(next.start - belief.end);
        if (belief.endedBy === 'validity') expiryHandoverGaps.push(next.start - belief.end);
      });
      for (let i = 0; i < onKey.length; i++) {
        for (let j = i + 1; j < onKey.length; j++) {
          const a = onKey[i];
          const b = onKey[j];
          if (a === undefined || b === undefined || b.start >= a.end) break;
          if (a.owner !== b.owner) {
            problems.push(`overlapping beliefs on ${key}: ${a.owner} #${a.token} [${a.start.toFixed(1)}, ${a.end.toFixed(1)}] and ${b.owner} #${b.token} [${b.start.toFixed(1)}, ${b.end.toFixed(1)}]`);
          }
        }
      }
    }

    console.log(
      [
        `  gap from a belief's end to the next other owner's belief on its key: ${distribution(handoverGaps)}`,
        `    of which beliefs that ran to their validity end (walked away, lost or renewals too slow): ${distribution(expiryHandoverGaps)}`,
      ].join('\n'),
    );

    // Fencing: a grant requested after another grant's answer carries a larger token, unless it may
    // be a re-acquire of a lease its owner still held: then it answers with that lease's token, which
    // came from an earlier acquire of the same key by the same owner — acknowledged with that token,
    // or one whose outcome the client never learned. Such a grant must still out-rank every other
    // grant on its key answered before it was requested, and every grant answered before the
    // earliest such acquire was sent.
    for (const later of grants) {
      const originsSentAt = [
        ...unknownAcquires.filter((unknown) => unknown.owner === later.owner && unknown.key === later.key && unknown.sentAt < later.sentAt).map((unknown) => unknown.sentAt),
        ...grants.filter((grant) => grant !== later && grant.owner === later.owner && grant.key === later.key && grant.token === later.token && grant.sentAt < later.sentAt).map((grant) => grant.sentAt),
      ];
      const earliestOrigin = Math.min(...originsSentAt);
      for (const earlier of grants) {
        if (earlier === later || earlier.receivedAt >= later.sentAt || later.token > earlier.token) continue;
        const sameLease = later.token === earlier.token && later.owner === earlier.owner && later.key === earlier.key;
        const mayReacquire = earlier.key !== later.key && earlier.receivedAt >= earliestOrigin;
        if (sameLease || mayReacquire) continue;
        problems.push(`token order: ${later.owner} got #${later.token} on ${later.key} (sent ${later.sentAt.toFixed(1)}) after ${earlier.owner} got #${earlier.token} on ${earlier.key} (answered ${earlier.receivedAt.toFixed(1)})`);
      }
    }
    for (const renewal of renewals) {
      const newer = grants.find((grant) => grant.key === renewal.key && grant.receivedAt < renewal.sentAt && grant.token > renewal.token);
      if (newer !== undefined) problems.push(`stale renewal: ${renewal.owner} renewed #${renewal.token} on ${renewal.key} after ${newer.owner} was granted #${newer.token}`);
    }

    // Recovery after every kill.
    for (const kill of kills) {
      if (kill.recoveryMs === null || kill.recoveryMs > RECOVERY_BOUND_MS) {
        problems.push(`no leader known by a majority within ${RECOVERY_BOUND_MS} ms after killing ${kill.victim}: ${kill.recoveryMs === null ? 'none at all' : `${Math.round(kill.recoveryMs)} ms`}`);
      }
    }

    // Convergence covers every acknowledged grant.
    if (converged.commitIndex < maxToken) problems.push(`the converged commit index ${converged.commitIndex} is below the largest acknowledged token ${maxToken}`);

    // Durability: every acknowledged grant is in every node's committed log, as that grant.
    const commonCommit = Math.min(...[...logs.values()].map((log) => log.commit));
    const [first, ...others] = [...logs];
    for (const [id, log] of others) {
      if (first === undefined) break;
      for (let index = Math.max(first[1].snapshotIndex, log.snapshotIndex) + 1; index <= commonCommit; index++) {
        const a = first[1].entries.get(index);
        const b = log.entries.get(index);
        if (a === undefined || b === undefined || a.term !== b.term || a.type !== b.type || Buffer.compare(Buffer.from(a.data), Buffer.from(b.data)) !== 0) {
          problems.push(`committed logs differ at index ${index}: ${first[0]} and ${id}`);
          break;
        }
      }
    }
    let coveredBySnapshots = 0;
    for (const [id, log] of logs) {
      if (log.commit < maxToken) problems.push(`${id}: durable commit index ${log.commit} is below the largest acknowledged token ${maxToken}`);
      for (const grant of grants) {
        if (grant.token <= log.snapshotIndex) {
          coveredBySnapshots++;
          continue;
        }
        const result = log.results.get(grant.token);
        const granted =
          result?.type === 'Granted' && !result.renewed && result.lease.key === grant.key && result.lease.owner === grant.owner && result.lease.fencingToken === grant.token;
        // A re-acquire of the same lease answers with the original token, whose entry is the first grant.
        if (!granted) problems.push(`${id}: index ${grant.token} (acknowledged grant of ${grant.key} to ${grant.owner}) holds ${JSON.stringify(result ?? null)}`);
      }
    }
    if (coveredBySnapshots > 0) console.log(`  ${coveredBySnapshots} grant checks fell below a snapshot (only the token bound was checked for those)`);

    // No node exited on its own; every node exited 0 on SIGTERM.
    for (const member of nodes) {
      for (const exit of member.exits) {
        if (!exit.expected) problems.push(`${member.id} incarnation ${exit.incarnation} exited on its own: code ${String(exit.code)}, signal ${String(exit.signal)}`);
      }
    }
    stops.forEach((stop, index) => {
      if (stop === null || stop.code !== 0) problems.push(`${nodes[index]?.id ?? '?'} did not exit 0 on SIGTERM: ${JSON.stringify(stop)}`);
    });

    // The run must have exercised something.
    if (counts.acquired < 20) problems.push(`only ${counts.acquired} grants: the clients barely ran`);
    if (kills.filter((kill) => kill.wasLeader).length < 3) problems.push('fewer than 3 leader kills');

    if (problems.length > 0) {
      for (const member of nodes) console.log(`--- ${member.id}\n${member.logTail(40)}`);
    }
    expect(problems).toEqual([]);
  }, 150_000);
});
