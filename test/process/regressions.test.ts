/**
 * Regressions of the HTTP API and `raftlease node` found with real processes, reproduced
 * deterministically: a delayed release after a re-acquire, renewals through a lagging follower, and
 * a slow exit after HTTP grants.
 *
 * A follower is made to lag deterministically with SIGSTOP: while it is stopped the kernel still
 * accepts connections and buffers requests for it, and the other two nodes keep committing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeProcess, freePorts, http, killAllChildren, sleep, status, waitFor, type HttpOutcome } from './support.js';

const IDS = ['n1', 'n2', 'n3'] as const;

let dir = '';
let nodes: NodeProcess[] = [];

/** Body of a 2xx/4xx answer, or throws (a harness problem). */
function body(outcome: HttpOutcome, expected: number, what: string): Record<string, unknown> {
  if (!outcome.ok || outcome.status !== expected || typeof outcome.body !== 'object' || outcome.body === null) {
    throw new Error(`${what}: expected ${expected}, got ${JSON.stringify(outcome)}`);
  }
  return outcome.body as Record<string, unknown>;
}

/** Runs `scenario` (which sets things up and observes) and then the check it returns. */
async function regression(_name: string, scenario: () => Promise<() => void>): Promise<void> {
  const check = await scenario();
  check();
}

/** The leader and a follower, as the cluster reports them now. */
async function roles(): Promise<{ leader: NodeProcess; follower: NodeProcess }> {
  return waitFor(
    'a leader known by every node',
    async () => {
      const answers = await Promise.all(nodes.map((member) => status(member.httpPort, 500)));
      const leaderId = answers.find((answer) => answer?.role === 'Leader')?.id;
      if (leaderId === undefined || !answers.every((answer) => answer?.leader === leaderId)) return null;
      const leader = nodes.find((member) => member.id === leaderId);
      const follower = nodes.find((member) => member.id !== leaderId);
      return leader === undefined || follower === undefined ? null : { leader, follower };
    },
    15_000,
  );
}

describe('regressions', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'raftlease-regressions-'));
    const ports = await freePorts(IDS.length * 2);
    const peers = IDS.map((id, index) => `${id}=127.0.0.1:${ports[index] ?? 0}`).join(',');
    nodes = IDS.map(
      (id, index) => new NodeProcess({ id, raftPort: ports[index] ?? 0, httpPort: ports[IDS.length + index] ?? 0, peers, dataDir: join(dir, id), logDir: dir, tickMs: 50 }),
    );
    for (const member of nodes) member.start();
    await roles();
  }, 30_000);

  afterAll(async () => {
    await Promise.all(nodes.map((member) => member.stop(5_000).catch(() => null)));
    killAllChildren();
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  // src/server/http-api.ts release → LeaseNode.release(key, {owner, fencingToken}) proposes a Release
  // without the renewal count, which ends the owner's lease under that token whatever happened since.
  // Re-acquiring with the same owner (which operations.md calls safe) answers with the SAME token. So
  // a release whose answer was lost (timeout, 503, a dead connection), applied after the owner
  // re-acquired, ends the new grant while the client trusts it, and another client gets the key.
  it('a delayed HTTP release that names its renewals does not end the lease its owner re-acquired since', async () => {
    await regression('stale release', async () => {
      const key = 'stale-release';
      const ttlMs = 10_000;
      const { leader, follower } = await roles();
      const first = body(await http(leader.httpPort, 'POST', `/v1/locks/${key}/acquire`, { owner: 'A', ttlMs }), 200, 'A acquires');
      await sleep(300);
      follower.signal('SIGSTOP');
      let reacquireSentAt = 0;
      let second: Record<string, unknown>;
      try {
        // The release reaches a stopped follower: the client gives up on it (outcome unknown).
        const release = await http(follower.httpPort, 'POST', `/v1/locks/${key}/release`, { owner: 'A', token: first.token, renewals: first.renewals }, 500);
        if (release.ok) throw new Error(`the release answered although its node is stopped: ${JSON.stringify(release)}`);
        // "Retrying an acquire with the same owner is safe: it returns the same lease."
        reacquireSentAt = performance.now();
        second = body(await http(leader.httpPort, 'POST', `/v1/locks/${key}/acquire`, { owner: 'A', ttlMs }), 200, 'A re-acquires');
        if (second.token !== first.token) throw new Error(`the re-acquire answered token ${String(second.token)}, not ${String(first.token)}`);
      } finally {
        follower.signal('SIGCONT');
      }
      await sleep(1_000);
      const other = await http(leader.httpPort, 'POST', `/v1/locks/${key}/acquire`, { owner: 'B', ttlMs });
      const otherAt = performance.now();
      // A trusts its re-acquired lease until sentAt + ttl·(1 − 2ρ) − margin.
      const aValidUntil = reacquireSentAt + ttlMs * (1 - 2 * 200e-6) - 200;
      if (otherAt >= aValidUntil) throw new Error('the scenario took longer than A trusts its lease');
      return () => {
        expect(other, `B was answered ${Math.round(otherAt - reacquireSentAt)} ms after A re-acquired #${String(second.token)}, which A trusts for ${Math.round(aValidUntil - reacquireSentAt)} ms`).toMatchObject({
          ok: true,
          status: 409,
          body: { acquired: false, holder: 'A' },
        });
      };
    });
  }, 30_000);

  // src/lease/lock.ts renewLease: `ttlMs = options.ttlMs ?? this.table.get(key)?.ttlMs` reads the
  // answering node's own table, which a follower may not have brought up to date yet: with no entry
  // for the key it answers 409 LeaseLost for a lease that is held.
  it('a renewal without ttlMs through a lagging follower renews a held lease', async () => {
    await regression('renew on a lagging follower', async () => {
      const key = 'renew-lagging';
      const { leader, follower } = await roles();
      follower.signal('SIGSTOP');
      let renewal: HttpOutcome;
      try {
        const grant = body(await http(leader.httpPort, 'POST', `/v1/locks/${key}/acquire`, { owner: 'C', ttlMs: 5_000 }), 200, 'C acquires');
        const pending = http(follower.httpPort, 'POST', `/v1/locks/${key}/renew`, { owner: 'C', token: grant.token }, 5_000);
        await sleep(50);
        follower.signal('SIGCONT');
        renewal = await pending;
      } finally {
        follower.signal('SIGCONT');
      }
      if (!renewal.ok) throw new Error(`the renewal got no answer: ${renewal.reason}`);
      return () => {
        expect(renewal).toMatchObject({ ok: true, status: 200, body: { renewed: true, ttlMs: 5_000 } });
      };
    });
  }, 30_000);

  // Same line: when the lagging follower still has the key's PREVIOUS lease (another owner's, with
  // another TTL), the renewal silently takes that lease's TTL. Longer: the lock outlives a crashed
  // holder by far; shorter: a client that trusts the TTL it acquired with (not the one in the renewal's
  // answer) believes past the leader's expiry.
  it('a renewal without ttlMs keeps the lease’s own TTL, not the TTL of the key’s previous lease', async () => {
    await regression('renew takes a stale TTL', async () => {
      const key = 'renew-stale-ttl';
      const { leader, follower } = await roles();
      const previous = body(await http(leader.httpPort, 'POST', `/v1/locks/${key}/acquire`, { owner: 'A', ttlMs: 60_000 }), 200, 'A acquires');
      await sleep(300);
      follower.signal('SIGSTOP');
      let renewal: HttpOutcome;
      try {
        body(await http(leader.httpPort, 'POST', `/v1/locks/${key}/release`, { owner: 'A', token: previous.token }), 200, 'A releases');
        const grant = body(await http(leader.httpPort, 'POST', `/v1/locks/${key}/acquire`, { owner: 'B', ttlMs: 2_000 }), 200, 'B acquires');
        const pending = http(follower.httpPort, 'POST', `/v1/locks/${key}/renew`, { owner: 'B', token: grant.token }, 5_000);
        await sleep(50);
        follower.signal('SIGCONT');
        renewal = await pending;
      } finally {
        follower.signal('SIGCONT');
      }
      if (!renewal.ok || renewal.status !== 200) throw new Error(`the renewal was not granted: ${JSON.stringify(renewal)}`);
      const renewed = renewal.body;
      const lock = body(await http(leader.httpPort, 'GET', `/v1/locks/${key}`), 200, 'read the lock');
      return () => {
        expect({ renewal: renewed, lock }).toMatchObject({ renewal: { ttlMs: 2_000 }, lock: { holder: 'B', ttlMs: 2_000 } });
      };
    });
  }, 30_000);

  // src/lease/lock.ts tryAcquire returns a HeldLease, whose constructor arms a (ref'd) timer for the
  // lease's validity; the HTTP API drops the object and nothing cancels the timer. After SIGTERM the
  // node logs 'stopped' at once but the process lives on until the validity of the last lease granted
  // over HTTP ends: ttl·(1 − 2ρ) − 1,000 ms, up to a day for the largest TTL.
  it('SIGTERM ends the process promptly after an HTTP grant with a long TTL', async () => {
    await regression('exit delayed by HTTP grants', async () => {
      const [raftPort = 0, httpPort = 0] = await freePorts(2);
      const solo = new NodeProcess({ id: 'solo', raftPort, httpPort, peers: `solo=127.0.0.1:${raftPort}`, dataDir: join(dir, 'solo'), logDir: dir, tickMs: 50 });
      solo.start();
      let exitMs: number;
      try {
        await waitFor('the single node to lead', async () => ((await status(httpPort))?.role === 'Leader' ? true : null), 15_000);
        body(await http(httpPort, 'POST', '/v1/locks/long/acquire', { owner: 'D', ttlMs: 60_000 }), 200, 'D acquires');
        const sentAt = performance.now();
        const exit = await solo.stop(5_000);
        exitMs = performance.now() - sentAt;
        if (exit === null) throw new Error('the node was not running');
      } finally {
        await solo.stop(1_000);
      }
      return () => {
        expect(exitMs, 'ms from SIGTERM to exit').toBeLessThan(3_000);
      };
    });
  }, 30_000);
});
