/**
 * The HTTP API of one node (src/server/http-api.ts) over real sockets: three LeaseNodes on a
 * MemoryNetwork (wire-encoded messages), MemoryStorage and the system clock with a fast tick, one
 * HttpApi per node on 127.0.0.1, driven by fetch (keep-alive), node:http (chunked bodies) and raw
 * node:net sockets (bytes no HTTP client would send).
 */
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { MemoryNetwork, MemoryStorage, SeededPrng, SystemClock, nodeId, randomIntBelow, type Prng } from '../../src/index.js';
import { LeaseNode, MAX_LEASE_KEY_BYTES, MAX_LEASE_OWNER_BYTES, MAX_LEASE_TTL_MS } from '../../src/lease/index.js';
import { MaintenanceMetrics, MaintenanceOrchestrator, registerRaftMetrics } from '../../src/maintenance/index.js';
import { HttpApi, type HttpApiOptions } from '../../src/server/http-api.js';

const IDS = ['n1', 'n2', 'n3'] as const;
/** Fast ticks: elections within a few hundred milliseconds of real time. */
const TICK_MS = 20;
const MARGIN_MS = 50;
/** A small body bound, so the 413 cases stay cheap. */
const MAX_BODY_BYTES = 4096;
const HOUR_MS = 3_600_000;

// ---------------------------------------------------------------------------------------------
// The cluster and its APIs

interface Served {
  readonly node: LeaseNode;
  readonly api: HttpApi;
  readonly base: string;
  readonly port: number;
}

interface Cluster {
  readonly nodes: LeaseNode[];
  readonly fatalErrors: Error[];
  readonly apis: HttpApi[];
  /** A fresh registry per test: no metric of another test can leak into /metrics. */
  readonly registry: Registry;
  /** Lines the APIs logged at error level (a request that failed with a 500). */
  readonly errorLogs: string[];
  readonly orchestrators: MaintenanceOrchestrator[];
  readonly network: MemoryNetwork;
}

let cluster: Cluster | undefined;
/** Unhandled rejections and uncaught exceptions while the test ran: the API must not produce any. */
let processFaults: unknown[] = [];
const onFault = (error: unknown): void => {
  processFaults.push(error);
};

beforeEach(() => {
  processFaults = [];
  process.on('unhandledRejection', onFault);
  process.on('uncaughtException', onFault);
});

afterEach(async () => {
  const c = cluster;
  cluster = undefined;
  try {
    if (c !== undefined) await stopCluster(c);
    // Let late socket callbacks run before judging.
    await sleep(10);
    expect(processFaults.map(String)).toEqual([]);
  } finally {
    process.off('unhandledRejection', onFault);
    process.off('uncaughtException', onFault);
  }
});

async function stopCluster(c: Cluster): Promise<void> {
  for (const orchestrator of c.orchestrators) await orchestrator.stop();
  for (const api of c.apis) await api.close();
  for (const node of c.nodes) {
    await node.raft.stop({ transferLeadership: false });
    await node.stop();
  }
  expect(c.fatalErrors).toEqual([]);
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  // Bounded by the deadline.
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

function stableLeader(nodes: readonly LeaseNode[]): LeaseNode | undefined {
  const leader = nodes.find((node) => node.raft.status().role === 'Leader');
  if (leader === undefined) return undefined;
  const id = leader.raft.status().id;
  return nodes.every((node) => node.raft.status().leader === id) ? leader : undefined;
}

/** Starts a cluster and makes it the test's (stopped after the test), or hands it to `own`. */
async function startCluster(own: (c: Cluster) => void = (c) => { cluster = c; }): Promise<Cluster> {
  const network = new MemoryNetwork({ encode: true });
  const clock = new SystemClock();
  const errorLogs: string[] = [];
  const c: Cluster = { nodes: [], fatalErrors: [], apis: [], registry: new Registry(), errorLogs, orchestrators: [], network };
  own(c);
  for (const [position, id] of IDS.entries()) {
    const node = await LeaseNode.start({
      id,
      voters: IDS,
      transport: network.connect(nodeId(id)),
      storage: new MemoryStorage(),
      clock,
      seed: 101 + position,
      tickIntervalMs: TICK_MS,
      onFatalError: (error) => c.fatalErrors.push(error),
      lease: { marginMs: MARGIN_MS },
    });
    c.nodes.push(node);
  }
  await waitFor('a leader every node knows', () => stableLeader(c.nodes) !== undefined, 10_000);
  return c;
}

/** The leader and the two followers, as they stand now. */
function roles(c: Cluster): { leader: LeaseNode; followers: [LeaseNode, LeaseNode] } {
  const leader = stableLeader(c.nodes);
  if (leader === undefined) throw new Error('no stable leader');
  const followers = c.nodes.filter((node) => node !== leader);
  const [first, second] = followers;
  if (first === undefined || second === undefined) throw new Error('expected two followers');
  return { leader, followers: [first, second] };
}

async function serve(c: Cluster, node: LeaseNode, options: Partial<Omit<HttpApiOptions, 'node'>> = {}): Promise<Served> {
  const logger = pino(
    { level: 'error' },
    {
      write(line: string) {
        c.errorLogs.push(line);
      },
    },
  );
  const api = new HttpApi({ node, registry: c.registry, maxBodyBytes: MAX_BODY_BYTES, logger, ...options });
  c.apis.push(api);
  const address = await api.listen('127.0.0.1', 0);
  return { node, api, port: address.port, base: `http://127.0.0.1:${address.port}` };
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers

interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  /** The parsed JSON body, or undefined when the body is not JSON. */
  readonly body: unknown;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

async function call(served: Served, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Reply> {
  const response = await fetch(`${served.base}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: parseJson(text) };
}

function get(served: Served, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return call(served, 'GET', path, undefined, headers);
}

function post(served: Served, path: string, json: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return call(served, 'POST', path, JSON.stringify(json), headers);
}

function lockPath(key: string, action?: 'acquire' | 'renew' | 'release'): string {
  return `/v1/locks/${encodeURIComponent(key)}${action === undefined ? '' : `/${action}`}`;
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${what} is not a JSON object: ${JSON.stringify(value)}`);
  return value as Record<string, unknown>;
}

/** The token of a 200 acquire answer. */
function tokenOf(reply: Reply): number {
  const token = asObject(reply.body, 'the acquire answer').token;
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token < 1) throw new Error(`not a fencing token: ${reply.text}`);
  return token;
}

/** The `error.message` of an error answer (and checks its shape). */
function errorMessage(reply: Reply): string {
  const error = asObject(asObject(reply.body, `the ${reply.status} answer ${JSON.stringify(reply.text)}`).error, 'error');
  const { code, message } = error;
  if (typeof code !== 'string' || code.length === 0 || typeof message !== 'string' || message.length === 0) {
    throw new Error(`an error answer without code and message: ${reply.text}`);
  }
  return message;
}

/**
 * A POST with a chunked body (no Content-Length). With `gapMs`, the chunks trickle in (a client
 * streaming a body); writing stops once the server has answered unless `stopOnAnswer` is false (a
 * client that sends its whole body regardless). Without `agent`, on a connection of its own.
 */
function postChunked(
  served: Served,
  path: string,
  chunks: readonly Buffer[],
  options: { readonly gapMs?: number; readonly agent?: Agent; readonly stopOnAnswer?: boolean } = {},
): Promise<{ status: number; text: string }> {
  const { gapMs = 0, agent = false, stopOnAnswer = true } = options;
  return new Promise((resolve, reject) => {
    let answered = false;
    const request = httpRequest(
      { host: '127.0.0.1', port: served.port, method: 'POST', path, agent, headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } },
      (response) => {
        answered = true;
        const parts: Buffer[] = [];
        response.on('data', (part: Buffer) => parts.push(part));
        response.on('end', () => {
          resolve({ status: response.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') });
        });
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    const write = async (): Promise<void> => {
      for (const chunk of chunks) {
        if ((stopOnAnswer && answered) || request.destroyed) break;
        request.write(chunk);
        if (gapMs > 0) await sleep(gapMs);
      }
      // Ends the body (the terminating chunk) like any client that was told to stop sending.
      if (!request.destroyed) request.end();
    };
    write().catch(reject);
  });
}

/** A GET through `agent` (which may reuse a kept-alive connection); rejects after `timeoutMs`. */
function getWithAgent(served: Served, path: string, agent: Agent, timeoutMs: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port: served.port, method: 'GET', path, agent }, (response) => {
      const parts: Buffer[] = [];
      response.on('data', (part: Buffer) => parts.push(part));
      response.on('end', () => {
        resolve({ status: response.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') });
      });
      response.on('error', reject);
    });
    // Counted from now, not from when the agent hands the request a socket.
    const timer = setTimeout(() => {
      request.destroy(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    request.on('close', () => {
      clearTimeout(timer);
    });
    request.on('error', reject);
    request.end();
  });
}

/**
 * Writes `payload` on a fresh TCP connection, optionally half-closes, and collects what the server
 * answers until it closes the connection or `waitMs` passes.
 */
function rawExchange(port: number, payload: Buffer | string, options: { readonly end?: boolean; readonly waitMs?: number } = {}): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const parts: Buffer[] = [];
    let settled = false;
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(parts).toString('latin1'));
    };
    const timer = setTimeout(finish, options.waitMs ?? 1_000);
    socket.on('data', (part: Buffer) => parts.push(part));
    socket.on('error', finish);
    socket.on('close', finish);
    socket.on('connect', () => {
      socket.write(payload);
      if (options.end !== false) socket.end();
    });
  });
}

/** Status codes of every HTTP response in a raw byte stream. */
function rawStatuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((match) => Number(match[1]));
}

// ---------------------------------------------------------------------------------------------

describe('HttpApi', () => {
  it('serves the lock lifecycle on any node: forwarded acquire, conflict, linearizable read, renew, release, a larger token next', async () => {
    const c = await startCluster();
    const { leader, followers } = roles(c);
    const a = await serve(c, followers[0]);
    const b = await serve(c, leader);
    const third = await serve(c, followers[1]);
    const key = 'jobs/nightly compaction ü';

    // Acquire through a follower: forwarded to the leader.
    const acquired = await post(a, lockPath(key, 'acquire'), { owner: 'alice', ttlMs: 60_000 });
    expect(acquired.status, acquired.text).toBe(200);
    expect(acquired.body).toEqual({ acquired: true, token: expect.any(Number) as unknown, ttlMs: 60_000, renewals: 0 });
    expect(acquired.headers.get('content-type')).toMatch(/^application\/json/);
    const token = tokenOf(acquired);

    // Another owner through another node: refused, naming the holder.
    const refused = await post(b, lockPath(key, 'acquire'), { owner: 'bob', ttlMs: 60_000 });
    expect(refused.status, refused.text).toBe(409);
    expect(refused.body).toEqual({ acquired: false, holder: 'alice' });

    // A linearizable read on the third node sees the grant.
    const read = await get(third, lockPath(key));
    expect(read.status, read.text).toBe(200);
    expect(read.body).toEqual({ key, held: true, holder: 'alice', token, ttlMs: 60_000 });

    // Renew with owner and token; a new TTL may be named.
    const renewed = await post(third, lockPath(key, 'renew'), { owner: 'alice', token });
    expect(renewed.status, renewed.text).toBe(200);
    expect(renewed.body).toEqual({ renewed: true, token, ttlMs: 60_000, renewals: 1 });
    const renewedShorter = await post(third, lockPath(key, 'renew'), { owner: 'alice', token, ttlMs: 30_000 });
    expect(renewedShorter.status, renewedShorter.text).toBe(200);
    expect(renewedShorter.body).toEqual({ renewed: true, token, ttlMs: 30_000, renewals: 2 });

    // Renew with a wrong token, or as another owner: 409.
    const wrongToken = await post(third, lockPath(key, 'renew'), { owner: 'alice', token: token + 1 });
    expect(wrongToken.status, wrongToken.text).toBe(409);
    expect(errorMessage(wrongToken)).toContain(key);
    const wrongRenewer = await post(a, lockPath(key, 'renew'), { owner: 'bob', token });
    expect(wrongRenewer.status, wrongRenewer.text).toBe(409);

    // Release by the wrong owner, or with the wrong token: 409, and the lock stays held.
    const wrongOwner = await post(a, lockPath(key, 'release'), { owner: 'bob', token });
    expect(wrongOwner.status, wrongOwner.text).toBe(409);
    expect(errorMessage(wrongOwner)).toMatch(/nothing was released/);
    const wrongReleaseToken = await post(b, lockPath(key, 'release'), { owner: 'alice', token: token + 1 });
    expect(wrongReleaseToken.status, wrongReleaseToken.text).toBe(409);
    const stillHeld = await get(b, lockPath(key));
    expect(stillHeld.status, stillHeld.text).toBe(200);
    expect(stillHeld.body).toEqual({ key, held: true, holder: 'alice', token, ttlMs: 30_000 });

    // Release by the holder: 200, and every node then answers 404.
    const released = await post(a, lockPath(key, 'release'), { owner: 'alice', token });
    expect(released.status, released.text).toBe(200);
    expect(released.body).toEqual({ released: true });
    for (const served of [a, b, third]) {
      const gone = await get(served, lockPath(key));
      expect(gone.status, gone.text).toBe(404);
      expect(gone.body).toEqual({ key, held: false });
    }
    // The released lease cannot be renewed or released again.
    const renewAfterRelease = await post(a, lockPath(key, 'renew'), { owner: 'alice', token });
    expect(renewAfterRelease.status, renewAfterRelease.text).toBe(409);
    const releaseAgain = await post(a, lockPath(key, 'release'), { owner: 'alice', token });
    expect(releaseAgain.status, releaseAgain.text).toBe(409);

    // A new grant carries a larger fencing token.
    const next = await post(third, lockPath(key, 'acquire'), { owner: 'bob', ttlMs: 10_000 });
    expect(next.status, next.text).toBe(200);
    expect(tokenOf(next)).toBeGreaterThan(token);
    const nextRead = await get(a, lockPath(key));
    expect(nextRead.body).toEqual({ key, held: true, holder: 'bob', token: tokenOf(next), ttlMs: 10_000 });
  });

  it('renews and releases through a node other than the one that granted, right after the grant', async () => {
    // "Any node accepts requests": a client may send its renewal to any node as soon as its acquire
    // answered, without first reading through that node.
    const c = await startCluster();
    const { leader, followers } = roles(c);
    const granting = await serve(c, followers[0]);
    const others = [await serve(c, followers[1]), await serve(c, leader)];
    const failures: string[] = [];
    for (let round = 0; round < 10; round++) {
      const key = `handover-${round}`;
      const acquired = await post(granting, lockPath(key, 'acquire'), { owner: 'worker', ttlMs: 60_000 });
      expect(acquired.status, acquired.text).toBe(200);
      const token = tokenOf(acquired);
      const other = others[round % others.length];
      if (other === undefined) throw new Error('unreachable');
      const renewed = await post(other, lockPath(key, 'renew'), { owner: 'worker', token });
      if (renewed.status !== 200) failures.push(`round ${round}: renew on ${other.node.raft.id} right after the grant on ${granting.node.raft.id} answered ${renewed.status} ${renewed.text}`);
      const released = await post(other, lockPath(key, 'release'), { owner: 'worker', token });
      if (released.status !== 200) failures.push(`round ${round}: release answered ${released.status} ${released.text}`);
    }
    expect(failures).toEqual([]);
  });

  it('round-trips percent-encoded keys: slashes, spaces, unicode, and exactly the longest key', async () => {
    const c = await startCluster();
    const served = await serve(c, roles(c).followers[0]);
    const longest = 'é'.repeat(MAX_LEASE_KEY_BYTES / 2);
    for (const key of ['a/b/c', 'with space', '日本語', '100%', 'a?b#c', longest]) {
      const acquired = await post(served, lockPath(key, 'acquire'), { owner: 'o', ttlMs: 60_000 });
      expect(acquired.status, `${key.slice(0, 20)}: ${acquired.text}`).toBe(200);
      const read = await get(served, lockPath(key));
      expect(read.status, read.text).toBe(200);
      expect(asObject(read.body, 'read').key).toBe(key);
      // The read caught this node up: its own table has the grant.
      expect(served.node.table.get(key)?.owner).toBe('o');
    }
  });

  it('reports status on every node: the contract fields, one leader, the same leader and term everywhere', async () => {
    const c = await startCluster();
    const served = [];
    for (const node of c.nodes) served.push(await serve(c, node));
    // Wait until every node has applied what is committed (the leader's no-op), so the indexes line up.
    await waitFor('every node applied the commit index', () => c.nodes.every((node) => node.raft.status().appliedIndex === node.raft.status().commitIndex && node.raft.status().commitIndex > 0));
    const statuses: Record<string, unknown>[] = [];
    for (const one of served) {
      const reply = await get(one, '/v1/status');
      expect(reply.status, reply.text).toBe(200);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      const status = asObject(reply.body, 'status');
      expect(Object.keys(status).sort()).toEqual(['appliedIndex', 'commitIndex', 'id', 'leader', 'members', 'role', 'term']);
      expect(status.id).toBe(one.node.raft.id);
      expect(typeof status.term).toBe('number');
      expect(typeof status.commitIndex).toBe('number');
      expect(typeof status.appliedIndex).toBe('number');
      expect(status.appliedIndex as number).toBeLessThanOrEqual(status.commitIndex as number);
      expect(status.commitIndex as number).toBeGreaterThanOrEqual(1);
      expect(status.members).toEqual({ voters: expect.arrayContaining([...IDS]) as unknown, learners: [] });
      expect((asObject(status.members, 'members').voters as unknown[]).length).toBe(IDS.length);
      statuses.push(status);
    }
    const leaders = statuses.filter((status) => status.role === 'Leader');
    expect(leaders.map((status) => status.id)).toEqual([roles(c).leader.raft.id]);
    expect(statuses.filter((status) => status.role === 'Follower')).toHaveLength(2);
    expect(new Set(statuses.map((status) => status.leader))).toEqual(new Set([roles(c).leader.raft.id]));
    expect(new Set(statuses.map((status) => status.term)).size).toBe(1);
    expect(statuses[0]?.term).toBe(roles(c).leader.raft.status().term);
  });

  it('serves /metrics in the Prometheus text format with the registered metrics', async () => {
    const c = await startCluster();
    const metrics = new MaintenanceMetrics(c.registry);
    for (const node of c.nodes) registerRaftMetrics(node.raft.id, () => node.raft.status(), c.registry);
    metrics.runs.inc({ node: 'n1', schedule: 'vacuum', result: 'ok' }, 3);
    const { leader, followers } = roles(c);
    const served = await serve(c, followers[0]);

    const reply = await get(served, '/metrics');
    expect(reply.status, reply.text).toBe(200);
    expect(reply.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(reply.body).toBeUndefined(); // not JSON
    for (const name of [
      'raftlease_maintenance_runs_total',
      'raftlease_maintenance_run_duration_seconds',
      'raftlease_maintenance_runs_in_progress',
      'raftlease_maintenance_lock_acquire_duration_seconds',
      'raftlease_raft_term',
      'raftlease_raft_is_leader',
      'raftlease_raft_commit_index',
      'raftlease_raft_applied_index',
    ]) {
      expect(reply.text).toContain(`# HELP ${name} `);
      expect(reply.text).toMatch(new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, 'm'));
    }
    expect(reply.text).toContain('raftlease_maintenance_runs_total{node="n1",schedule="vacuum",result="ok"} 3');
    expect(reply.text).toContain(`raftlease_raft_is_leader{node="${leader.raft.id}"} 1`);
    expect(reply.text).toContain(`raftlease_raft_term{node="${leader.raft.id}"} ${leader.raft.status().term}`);
    // Every non-comment line is a sample: name, optional labels, a value.
    const samples = reply.text.split('\n').filter((line) => line.length > 0 && !line.startsWith('#'));
    expect(samples.length).toBeGreaterThan(8);
    for (const line of samples) expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (-?[0-9.]+(e[+-]?\d+)?|NaN|[+-]Inf)$/);
    // Nothing but GET.
    const posted = await call(served, 'POST', '/metrics', '{}');
    expect(posted.status, posted.text).toBe(405);
  });

  describe('validation', () => {
    // One cluster for the whole table: every case is refused before it reaches the log.
    let shared: Cluster | undefined;
    let served: Served | undefined;
    beforeAll(async () => {
      const c = await startCluster((started) => {
        shared = started;
      });
      served = await serve(c, roles(c).followers[0]);
    });
    afterAll(async () => {
      if (shared !== undefined) await stopCluster(shared);
    });
    const use = (): { c: Cluster; served: Served } => {
      if (shared === undefined || served === undefined) throw new Error('the shared cluster did not start');
      return { c: shared, served };
    };
    const good = { owner: 'alice', ttlMs: 60_000 };
    interface Case {
      readonly name: string;
      readonly method?: string;
      readonly path: string;
      /** Sent as is; undefined sends no body. */
      readonly body?: string;
      readonly status: number;
      /** What the error message must name. */
      readonly message: RegExp;
    }
    const acquire = lockPath('valid-key', 'acquire');
    const renew = lockPath('valid-key', 'renew');
    const release = lockPath('valid-key', 'release');
    const json = (value: unknown): string => JSON.stringify(value);
    const cases: Case[] = [
      { name: 'non-JSON body', path: acquire, body: '{"owner": "alice", ', status: 400, message: /JSON/ },
      { name: 'empty body', path: acquire, body: '', status: 400, message: /JSON body/ },
      { name: 'JSON array', path: acquire, body: json([good]), status: 400, message: /object/ },
      { name: 'JSON string', path: acquire, body: json('alice'), status: 400, message: /object/ },
      { name: 'JSON null', path: acquire, body: 'null', status: 400, message: /object/ },
      { name: 'missing owner', path: acquire, body: json({ ttlMs: 60_000 }), status: 400, message: /owner/ },
      { name: 'empty owner', path: acquire, body: json({ owner: '', ttlMs: 60_000 }), status: 400, message: /owner/ },
      { name: 'owner not a string', path: acquire, body: json({ owner: 42, ttlMs: 60_000 }), status: 400, message: /owner/ },
      { name: 'owner too long (ASCII)', path: acquire, body: json({ owner: 'o'.repeat(MAX_LEASE_OWNER_BYTES + 1), ttlMs: 60_000 }), status: 400, message: /owner.*256/ },
      { name: 'owner too long (UTF-8 bytes, not characters)', path: acquire, body: json({ owner: 'ü'.repeat(MAX_LEASE_OWNER_BYTES / 2 + 1), ttlMs: 60_000 }), status: 400, message: /owner.*256/ },
      { name: 'owner with a lone surrogate', path: acquire, body: '{"owner":"\\ud800","ttlMs":60000}', status: 400, message: /owner/ },
      { name: 'missing ttlMs', path: acquire, body: json({ owner: 'alice' }), status: 400, message: /ttlMs/ },
      { name: 'ttlMs 0', path: acquire, body: json({ owner: 'alice', ttlMs: 0 }), status: 400, message: /ttlMs/ },
      { name: 'ttlMs negative', path: acquire, body: json({ owner: 'alice', ttlMs: -1_000 }), status: 400, message: /ttlMs/ },
      { name: 'ttlMs a float', path: acquire, body: json({ owner: 'alice', ttlMs: 1_500.5 }), status: 400, message: /ttlMs/ },
      { name: 'ttlMs a string', path: acquire, body: json({ owner: 'alice', ttlMs: '60000' }), status: 400, message: /ttlMs/ },
      { name: 'ttlMs null', path: acquire, body: json({ owner: 'alice', ttlMs: null }), status: 400, message: /ttlMs/ },
      { name: 'ttlMs over one day', path: acquire, body: json({ owner: 'alice', ttlMs: MAX_LEASE_TTL_MS + 1 }), status: 400, message: /ttlMs/ },
      { name: 'ttlMs infinite (1e400)', path: acquire, body: '{"owner":"alice","ttlMs":1e400}', status: 400, message: /ttlMs/ },
      { name: 'ttlMs leaving no validity after the margin', path: acquire, body: json({ owner: 'alice', ttlMs: 1 }), status: 400, message: /ttlMs/ },
      { name: 'unknown extra field', path: acquire, body: json({ ...good, priority: 1 }), status: 400, message: /priority/ },
      { name: 'unknown field __proto__', path: acquire, body: '{"owner":"alice","ttlMs":60000,"__proto__":{"x":1}}', status: 400, message: /__proto__/ },
      { name: 'renew: missing token', path: renew, body: json({ owner: 'alice' }), status: 400, message: /token/ },
      { name: 'renew: token 0', path: renew, body: json({ owner: 'alice', token: 0 }), status: 400, message: /token/ },
      { name: 'renew: token negative', path: renew, body: json({ owner: 'alice', token: -3 }), status: 400, message: /token/ },
      { name: 'renew: token a float', path: renew, body: json({ owner: 'alice', token: 2.5 }), status: 400, message: /token/ },
      { name: 'renew: token a string', path: renew, body: json({ owner: 'alice', token: '7' }), status: 400, message: /token/ },
      { name: 'renew: token beyond 2^53', path: renew, body: json({ owner: 'alice', token: 2 ** 53 + 2 }), status: 400, message: /token/ },
      { name: 'renew: ttlMs 0', path: renew, body: json({ owner: 'alice', token: 5, ttlMs: 0 }), status: 400, message: /ttlMs/ },
      { name: 'renew: unknown field', path: renew, body: json({ owner: 'alice', token: 5, ttl: 1 }), status: 400, message: /'ttl'/ },
      { name: 'renew: empty owner', path: renew, body: json({ owner: '', token: 5 }), status: 400, message: /owner/ },
      { name: 'release: token 0', path: release, body: json({ owner: 'alice', token: 0 }), status: 400, message: /token/ },
      { name: 'release: token null', path: release, body: json({ owner: 'alice', token: null }), status: 400, message: /token/ },
      { name: 'release: missing owner', path: release, body: json({ token: 5 }), status: 400, message: /owner/ },
      { name: 'release: ttlMs is not a release field', path: release, body: json({ owner: 'alice', token: 5, ttlMs: 1_000 }), status: 400, message: /ttlMs/ },
      { name: 'key: truncated percent-encoding', path: '/v1/locks/%E0%A4%A/acquire', body: json(good), status: 400, message: /key/ },
      { name: 'key: bare percent sign', path: '/v1/locks/%/acquire', body: json(good), status: 400, message: /key/ },
      { name: 'key: %zz', path: '/v1/locks/a%zz/acquire', body: json(good), status: 400, message: /key/ },
      { name: 'key: an encoded lone surrogate', path: '/v1/locks/%ED%A0%80/acquire', body: json(good), status: 400, message: /key/ },
      { name: 'key: longer than 1024 bytes', path: lockPath('k'.repeat(MAX_LEASE_KEY_BYTES + 1), 'acquire'), body: json(good), status: 400, message: /key.*1024/ },
      { name: 'key: longer than 1024 UTF-8 bytes in 513 characters', path: lockPath('é'.repeat(MAX_LEASE_KEY_BYTES / 2 + 1), 'acquire'), body: json(good), status: 400, message: /key.*1024/ },
      { name: 'key: bad encoding on a read', method: 'GET', path: '/v1/locks/%E0%A4%A', status: 400, message: /key/ },
      { name: 'key: too long on a release', path: lockPath('k'.repeat(MAX_LEASE_KEY_BYTES + 1), 'release'), body: json({ owner: 'alice', token: 5 }), status: 400, message: /key/ },
      { name: 'unknown route', method: 'GET', path: '/v1/nothing-here', status: 404, message: /no route/ },
      { name: 'unknown route: root', method: 'GET', path: '/', status: 404, message: /no route/ },
      { name: 'unknown route: /v1/locks without a key', method: 'GET', path: '/v1/locks', status: 404, message: /no route/ },
      { name: 'unknown route: an unknown lock action', path: lockPath('valid-key') + '/steal', body: json(good), status: 404, message: /no route/ },
      { name: 'unknown route: a trailing segment', path: `${acquire}/more`, body: json(good), status: 404, message: /no route/ },
      { name: 'GET on acquire', method: 'GET', path: acquire, status: 405, message: /POST/ },
      { name: 'PUT on renew', method: 'PUT', path: renew, body: json({ owner: 'alice', token: 5 }), status: 405, message: /POST/ },
      { name: 'DELETE on a lock', method: 'DELETE', path: lockPath('valid-key'), status: 405, message: /GET/ },
      { name: 'POST on status', method: 'POST', path: '/v1/status', body: '{}', status: 405, message: /GET/ },
      { name: 'body one byte over maxBodyBytes (Content-Length)', path: acquire, body: json({ owner: 'alice', ttlMs: 60_000 }).padEnd(MAX_BODY_BYTES + 1, ' '), status: 413, message: /4096/ },
      { name: 'body far over maxBodyBytes (Content-Length)', path: acquire, body: json({ owner: 'x'.repeat(200_000), ttlMs: 60_000 }), status: 413, message: /4096/ },
    ];

    it.each(cases)('$name → $status', async ({ method, path, body, status, message }) => {
      const { served } = use();
      const leasesBefore = served.node.leases();
      const reply = await call(served, method ?? 'POST', path, body);
      expect(reply.status, reply.text).toBe(status);
      expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
      expect(errorMessage(reply)).toMatch(message);
      // The failed request changed nothing, and the node still serves.
      const after = await get(served, '/v1/status');
      expect(after.status).toBe(200);
      expect(served.node.leases()).toEqual(leasesBefore);
    });

    it('accepts the limits themselves: a 256-byte owner, a 1024-byte key, a one-day TTL, a body of exactly maxBodyBytes', async () => {
      const { served } = use();
      const owner = 'ü'.repeat(MAX_LEASE_OWNER_BYTES / 2);
      const key = 'k'.repeat(MAX_LEASE_KEY_BYTES);
      const reply = await post(served, lockPath(key, 'acquire'), { owner, ttlMs: MAX_LEASE_TTL_MS });
      expect(reply.status, reply.text).toBe(200);
      expect(asObject(reply.body, 'acquire').ttlMs).toBe(MAX_LEASE_TTL_MS);
      const exact = json({ owner: 'alice', ttlMs: 60_000 }).padEnd(MAX_BODY_BYTES, ' ');
      expect(Buffer.byteLength(exact)).toBe(MAX_BODY_BYTES);
      const exactReply = await call(served, 'POST', lockPath('exact', 'acquire'), exact);
      expect(exactReply.status, exactReply.text).toBe(200);
    });

    it('answers 413 to a chunked body larger than maxBodyBytes, and still serves afterwards', async () => {
      const { served } = use();
      // A valid JSON object padded past the bound, in several chunks, without a Content-Length.
      const text = json({ owner: 'alice', ttlMs: 60_000 }).padEnd(MAX_BODY_BYTES + 1_000, ' ');
      const bytes = Buffer.from(text);
      const chunks = [bytes.subarray(0, 1_000), bytes.subarray(1_000, 3_000), bytes.subarray(3_000)];
      const outcome = await postChunked(served, lockPath('chunked', 'acquire'), chunks).catch((error: unknown) => ({ status: -1, text: `request failed: ${String(error)}` }));
      expect(outcome, 'a chunked body over maxBodyBytes must get a 413 answer, not a dropped connection').toMatchObject({ status: 413 });
      expect(errorMessage({ status: outcome.status, headers: new Headers(), text: outcome.text, body: parseJson(outcome.text) })).toMatch(/4096/);
      // A client that streams a large body: the server must answer 413 once the bound is passed,
      // without waiting for (or choking on) the rest.
      const streamed = Array.from({ length: 64 }, () => Buffer.alloc(1_024, 0x20));
      streamed[0] = Buffer.from('{"owner":"alice","ttlMs":60000}'.padEnd(1_024, ' '));
      const streamedOutcome = await postChunked(served, lockPath('chunked', 'acquire'), streamed, { gapMs: 10 }).catch((error: unknown) => ({ status: -1, text: `request failed: ${String(error)}` }));
      expect(streamedOutcome, 'a streamed chunked body over maxBodyBytes must get a 413 answer, not a dropped connection').toMatchObject({ status: 413 });
      // A keep-alive client (node:http's pooling Agent, one socket) that streamed a too-large body gets
      // its 413, then sends its next request: the server must answer it on that connection, or close
      // the connection so the client opens a new one; it must not leave the connection open and mute.
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const first = await postChunked(served, lockPath('chunked', 'acquire'), streamed.slice(0, 8), { gapMs: 5, agent, stopOnAnswer: false }).catch((error: unknown) => ({ status: -1, text: String(error) }));
        expect(first.status, first.text).toBe(413);
        await sleep(50);
        const next = await getWithAgent(served, '/v1/status', agent, 2_000).catch((error: unknown) => ({ status: -1, text: String(error) }));
        expect(next, 'the request after a chunked 413 on the same keep-alive connection').toMatchObject({ status: 200 });
      } finally {
        agent.destroy();
      }
      // A chunked body within the bound is accepted.
      const small = await postChunked(served, lockPath('chunked', 'acquire'), [Buffer.from('{"owner":'), Buffer.from('"alice","ttlMs":60000}')]);
      expect(small.status, small.text).toBe(200);
      const read = await get(served, lockPath('chunked'));
      expect(asObject(read.body, 'read').holder).toBe('alice');
    });

    it('requires the bearer token when one is configured: 401 without it or with a wrong one, 200 with it', async () => {
      const { c } = use();
      const served = await serve(c, roles(c).followers[1], { bearerToken: 's3cret-token' });
      const attempts: { readonly headers: Record<string, string>; readonly label: string }[] = [
        { headers: {}, label: 'no Authorization header' },
        { headers: { authorization: 'Bearer wrong' }, label: 'a wrong token' },
        { headers: { authorization: 'Bearer s3cret-token2' }, label: 'a longer token' },
        { headers: { authorization: 'Bearer s3cret-toke' }, label: 'a prefix of the token' },
        { headers: { authorization: 's3cret-token' }, label: 'no Bearer scheme' },
        { headers: { authorization: 'Basic czNjcmV0LXRva2Vu' }, label: 'another scheme' },
      ];
      for (const { headers, label } of attempts) {
        for (const [method, path, body] of [
          ['GET', '/v1/status', undefined],
          ['GET', '/metrics', undefined],
          ['POST', lockPath('guarded', 'acquire'), json(good)],
          ['GET', '/v1/no-such-route', undefined],
        ] as const) {
          const reply = await call(served, method, path, body, headers);
          expect(reply.status, `${method} ${path} with ${label}: ${reply.text}`).toBe(401);
          expect(errorMessage(reply)).toMatch(/[Bb]earer/);
        }
      }
      expect(served.node.table.get('guarded')).toBeUndefined();
      const auth = { authorization: 'Bearer s3cret-token' };
      const status = await get(served, '/v1/status', auth);
      expect(status.status, status.text).toBe(200);
      const acquired = await post(served, lockPath('guarded', 'acquire'), good, auth);
      expect(acquired.status, acquired.text).toBe(200);
      const missing = await get(served, '/v1/no-such-route', auth);
      expect(missing.status).toBe(404);
    });
  });

  it('survives hostile input: fuzzed requests, raw garbage, truncated requests and a slowloris, then still serves', async () => {
    const c = await startCluster();
    const served = await serve(c, roles(c).followers[0]);
    const startedAt = performance.now();
    const prng = new SeededPrng(0x5eed_4a71);
    const failures: string[] = [];
    const allowed = new Set([200, 400, 404, 405, 409, 413]);

    // 1. Fuzzed requests from an HTTP client: random methods, paths, headers and bodies.
    let sent = 0;
    for (let iteration = 0; iteration < 2_000 && performance.now() - startedAt < 3_000; iteration++) {
      const request = fuzzRequest(prng);
      let status: number;
      let text: string;
      try {
        const answer = await sendFuzz(served.port, request);
        status = answer.status;
        text = answer.text;
      } catch (error) {
        failures.push(`#${iteration} ${describeFuzz(request)}: the request failed: ${String(error)}`);
        continue;
      }
      sent++;
      const problem = judgeFuzzAnswer(request, status, text, allowed);
      if (problem !== null) failures.push(`#${iteration} ${describeFuzz(request)}: ${problem}`);
      if (failures.length > 10) break;
    }
    expect(sent).toBeGreaterThan(100);

    // 2. Raw bytes no HTTP client sends. The server may answer 4xx or close the connection; never 5xx.
    const raw: { readonly name: string; readonly payload: Buffer | string; readonly expect?: number }[] = [];
    for (let round = 0; round < 30; round++) raw.push({ name: `random bytes #${round}`, payload: randomBytes(prng, 1 + randomIntBelow(prng, 2_000)) });
    raw.push(
      { name: 'an unknown method', payload: 'BREW /v1/status HTTP/1.1\r\nHost: x\r\n\r\n', expect: 400 },
      { name: 'a bad HTTP version', payload: 'GET /v1/status HTTP/7.3\r\nHost: x\r\n\r\n' },
      { name: 'a request line without a version', payload: 'GET /v1/status\r\n\r\n' },
      { name: 'an absolute-form target with a malformed host', payload: 'GET http://[/v1/status HTTP/1.1\r\nHost: x\r\n\r\n' },
      { name: 'an absolute-form target with a bad port', payload: 'GET http://node:99999/v1/status HTTP/1.1\r\nHost: x\r\n\r\n' },
      { name: 'non-ASCII bytes in the path', payload: Buffer.concat([Buffer.from('GET /v1/locks/'), Buffer.from([0xff, 0xfe, 0x80]), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')]) },
      { name: 'a header line without a colon', payload: 'GET /v1/status HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n', expect: 400 },
      { name: 'a 64 KiB header', payload: `GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(65_536)}\r\n\r\n`, expect: 431 },
      { name: 'Content-Length and Transfer-Encoding together', payload: 'POST /v1/locks/k/acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', expect: 400 },
      { name: 'a negative Content-Length', payload: 'POST /v1/locks/k/acquire HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', expect: 400 },
      { name: 'two different Content-Lengths', payload: 'POST /v1/locks/k/acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n{}{}' },
      { name: 'a malformed chunk size', payload: 'POST /v1/locks/k/acquire HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n' },
      { name: 'truncated headers', payload: 'GET /v1/status HTTP/1.1\r\nHost: x\r\nAccept: appl' },
      { name: 'a truncated body', payload: 'POST /v1/locks/k/acquire HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"owner":"al' },
      { name: 'a truncated chunked body', payload: 'POST /v1/locks/k/acquire HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{"owner":' },
      { name: 'a NUL in a header value', payload: 'GET /v1/status HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n', expect: 400 },
      { name: 'a request line of only spaces', payload: '     \r\n\r\n' },
      { name: 'TLS client hello bytes', payload: Buffer.from('16030100a5010000a103035f', 'hex') },
    );
    const rawFailures: string[] = [];
    for (const { name, payload, expect: expected } of raw) {
      const answer = await rawExchange(served.port, payload, { waitMs: 1_000 });
      const statuses = rawStatuses(answer);
      if (statuses.some((status) => status >= 500)) rawFailures.push(`${name} (${JSON.stringify(payload.toString().slice(0, 60))}): answered ${statuses.join(', ')}: ${answer.slice(answer.indexOf('\r\n\r\n') + 4, 300)}`);
      if (expected !== undefined && statuses[0] !== expected) rawFailures.push(`${name}: expected ${expected}, got ${statuses.join(', ') || 'no answer'}`);
    }
    // Two pipelined requests on one connection: both answered, in order.
    const pipelined = await rawExchange(served.port, 'GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { end: false });
    expect(rawStatuses(pipelined)).toEqual([200, 404]);
    // HTTP/1.0 without a Host header is still served.
    const http10 = await rawExchange(served.port, 'GET /v1/status HTTP/1.0\r\n\r\n');
    expect(rawStatuses(http10)).toEqual([200]);

    // 3. Slowloris: connections that trickle a header a byte at a time do not stop other clients.
    const slow = Array.from({ length: 20 }, () => connect({ host: '127.0.0.1', port: served.port }));
    for (const socket of slow) {
      socket.on('error', () => undefined);
      socket.write('GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    }
    for (let step = 0; step < 10; step++) {
      for (const socket of slow) socket.write('a');
      const before = performance.now();
      const reply = await get(served, '/v1/status');
      expect(reply.status).toBe(200);
      expect(performance.now() - before).toBeLessThan(1_000);
      await sleep(20);
    }
    for (const socket of slow) socket.destroy();

    // 4. Afterwards every node still answers, and a normal acquire works on the fuzzed node.
    for (const node of c.nodes) expect(node.raft.status().role).not.toBe('Stopped');
    const status = await get(served, '/v1/status');
    expect(status.status, status.text).toBe(200);
    expect(asObject(status.body, 'status').id).toBe(served.node.raft.id);
    const acquired = await post(served, lockPath('after-the-storm', 'acquire'), { owner: 'survivor', ttlMs: 60_000 });
    expect(acquired.status, acquired.text).toBe(200);
    const read = await get(served, lockPath('after-the-storm'));
    expect(asObject(read.body, 'read').holder).toBe('survivor');
    expect(processFaults.map(String)).toEqual([]);
    expect(c.fatalErrors).toEqual([]);
    expect(performance.now() - startedAt).toBeLessThan(12_000);
    // Judged last, so that one finding does not hide the others.
    expect([...failures, ...rawFailures], `requests the API mishandled:\n${[...failures, ...rawFailures].join('\n')}\nerror log:\n${c.errorLogs.slice(0, 3).join('')}`).toEqual([]);
  });

  it('lists the maintenance schedules when given an orchestrator, and 404s without one', async () => {
    const c = await startCluster();
    const { leader, followers } = roles(c);
    const orchestrator = new MaintenanceOrchestrator({ node: followers[0], clock: new SystemClock(), wallClock: { nowMs: () => Date.now() }, metrics: false });
    c.orchestrators.push(orchestrator);
    orchestrator.register({
      id: 'hourly-vacuum',
      intervalMs: HOUR_MS,
      windowMs: 10 * 60_000,
      estimatedDurationMs: 60_000,
      safetyMarginMs: 30_000,
      lockTtlMs: 5 * 60_000,
      run: () => Promise.resolve(),
    });
    const withSchedules = await serve(c, followers[0], { orchestrator });
    const without = await serve(c, leader);

    const before = Date.now();
    const reply = await get(withSchedules, '/v1/maintenance/schedules');
    expect(reply.status, reply.text).toBe(200);
    const schedules = asObject(reply.body, 'schedules answer').schedules;
    expect(Array.isArray(schedules)).toBe(true);
    expect(schedules).toHaveLength(1);
    const [entry] = schedules as unknown[];
    const listed = asObject(entry, 'schedule entry');
    expect(listed.schedule).toMatchObject({ id: 'hourly-vacuum', intervalMs: HOUR_MS, cron: null, windowMs: 600_000, estimatedDurationMs: 60_000, lockTtlMs: 300_000 });
    expect(listed).toMatchObject({ lastOutcome: null, current: null, holder: null, runningHere: false, recentOutcomes: [] });
    const next = listed.nextOccurrenceMs;
    expect(typeof next).toBe('number');
    expect((next as number) % HOUR_MS).toBe(0);
    expect(next as number).toBeGreaterThan(before - HOUR_MS);
    expect(next as number).toBeLessThanOrEqual(before + 2 * HOUR_MS);

    const notGet = await call(withSchedules, 'POST', '/v1/maintenance/schedules', '{}');
    expect(notGet.status, notGet.text).toBe(405);
    const missing = await get(without, '/v1/maintenance/schedules');
    expect(missing.status, missing.text).toBe(404);
    expect(errorMessage(missing)).toMatch(/orchestrator/);
  });
});

// ---------------------------------------------------------------------------------------------
// Fuzzing

interface FuzzRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer | null;
  readonly chunked: boolean;
}

function pick<T>(prng: Prng, items: readonly T[]): T {
  const item = items[randomIntBelow(prng, items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

function chance(prng: Prng, percent: number): boolean {
  return randomIntBelow(prng, 100) < percent;
}

function randomBytes(prng: Prng, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let position = 0; position < length; position++) bytes[position] = randomIntBelow(prng, 256);
  return bytes;
}

/** Printable ASCII without spaces: what node:http lets through in a path. */
function randomToken(prng: Prng, maxLength: number): string {
  const length = randomIntBelow(prng, maxLength + 1);
  let text = '';
  for (let position = 0; position < length; position++) text += String.fromCharCode(0x21 + randomIntBelow(prng, 0x7e - 0x21 + 1));
  return text;
}

function randomKeySegment(prng: Prng): string {
  switch (randomIntBelow(prng, 9)) {
    case 0:
      return 'fuzz-key';
    case 1:
      return encodeURIComponent(randomToken(prng, 20)) || 'x';
    case 2:
      return pick(prng, ['%', '%E0%A4%A', '%zz', '%ED%A0%80', '%00', '%2F', '%2e%2e', '..', '.', '%C0%AF', '%FF']);
    case 3:
      return 'k'.repeat(MAX_LEASE_KEY_BYTES - 2 + randomIntBelow(prng, 5));
    case 4:
      return encodeURIComponent('é'.repeat(510 + randomIntBelow(prng, 6)));
    case 5:
      return encodeURIComponent('日本語🔒');
    case 6:
      return randomToken(prng, 30).replace(/[/?#]/g, '_') || 'y';
    case 7:
      return `${'a%2F'.repeat(randomIntBelow(prng, 10))}b`;
    default:
      return `key${randomIntBelow(prng, 5)}`;
  }
}

function randomPath(prng: Prng): string {
  const query = chance(prng, 15) ? `?${randomToken(prng, 20).replace(/#/g, '')}` : '';
  switch (randomIntBelow(prng, 8)) {
    case 0:
      return `/v1/status${query}`;
    case 1:
      return `/metrics${query}`;
    case 2:
      return `/v1/maintenance/schedules${query}`;
    case 3:
      return `/v1/locks/${randomKeySegment(prng)}${query}`;
    case 4:
    case 5:
      return `/v1/locks/${randomKeySegment(prng)}/${pick(prng, ['acquire', 'renew', 'release', 'ACQUIRE', 'steal', ''])}${query}`;
    case 6:
      return pick(prng, ['/', '//', '/v1', '/v1/', '/v1/locks', '/v1/locks/', '/v1//locks/k/acquire', '/v1/locks/k/acquire/', '/v1/locks/k//acquire', '/../../etc/passwd', '/v1/locks/%2e%2e/acquire', '*']);
    default:
      return `/${randomToken(prng, 60)}`;
  }
}

function randomString(prng: Prng): string {
  switch (randomIntBelow(prng, 7)) {
    case 0:
      return '';
    case 1:
      return 'o'.repeat(250 + randomIntBelow(prng, 12));
    case 2:
      return '\ud800';
    case 3:
      return '🔒'.repeat(randomIntBelow(prng, 70));
    case 4:
      return '\u0000\n\r"\\';
    default:
      return randomToken(prng, 16);
  }
}

function randomNumber(prng: Prng): number {
  return pick(prng, [0, -1, 1, 1.5, 60_000, MAX_LEASE_TTL_MS, MAX_LEASE_TTL_MS + 1, 2 ** 53, -(2 ** 53), Number.MAX_VALUE, 5e-324, randomIntBelow(prng, 100_000)]);
}

function randomValue(prng: Prng, depth: number): unknown {
  switch (randomIntBelow(prng, depth > 3 ? 5 : 8)) {
    case 0:
      return null;
    case 1:
      return chance(prng, 50);
    case 2:
    case 3:
      return randomNumber(prng);
    case 4:
      return randomString(prng);
    case 5:
      return Array.from({ length: randomIntBelow(prng, 4) }, () => randomValue(prng, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      for (let field = 0; field < randomIntBelow(prng, 5); field++) object[pick(prng, ['owner', 'ttlMs', 'token', 'extra', '__proto__', 'constructor', ''])] = randomValue(prng, depth + 1);
      return object;
    }
  }
}

function randomBody(prng: Prng): Buffer | null {
  switch (randomIntBelow(prng, 10)) {
    case 0:
      return null;
    case 1:
      return randomBytes(prng, randomIntBelow(prng, 300));
    case 2: {
      // Deep nesting, within the body bound.
      const depth = 100 + randomIntBelow(prng, 1_900);
      return Buffer.from('['.repeat(depth) + ']'.repeat(depth));
    }
    case 3:
      return Buffer.from(JSON.stringify({ owner: randomString(prng), ttlMs: randomNumber(prng), token: randomNumber(prng) }).padEnd(MAX_BODY_BYTES + randomIntBelow(prng, 200), ' '));
    case 4:
      return Buffer.from(pick(prng, ['{', '}', '{"owner":', 'nul', 'NaN', '1e400', '"\\ud800"', '{"owner":"a","ttlMs":1e999}', '\ufeff{}', '{"a":1,"a":2}']));
    case 5:
    case 6:
      // Plausible lock requests.
      return Buffer.from(JSON.stringify({ owner: pick(prng, ['alice', 'bob', randomString(prng)]), ttlMs: pick(prng, [60_000, 1_000, randomNumber(prng)]) }));
    case 7:
      return Buffer.from(JSON.stringify({ owner: pick(prng, ['alice', 'bob']), token: pick(prng, [1, 2, 3, randomNumber(prng)]) }));
    default:
      return Buffer.from(JSON.stringify(randomValue(prng, 0)));
  }
}

function fuzzRequest(prng: Prng): FuzzRequest {
  const method = pick(prng, ['GET', 'GET', 'POST', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']);
  const headers: Record<string, string> = {};
  if (chance(prng, 60)) headers['content-type'] = pick(prng, ['application/json', 'text/plain', 'application/x-www-form-urlencoded', randomToken(prng, 30) || 'x/y']);
  if (chance(prng, 15)) headers.authorization = pick(prng, ['Bearer x', 'Basic abc', randomToken(prng, 40)]);
  if (chance(prng, 10)) headers.accept = randomToken(prng, 40);
  if (chance(prng, 10)) headers['x-fuzz'] = randomToken(prng, 200);
  if (chance(prng, 5)) headers.expect = '100-continue';
  return { method, path: randomPath(prng), headers, body: method === 'GET' || method === 'HEAD' ? (chance(prng, 10) ? randomBody(prng) : null) : randomBody(prng), chunked: chance(prng, 25) };
}

/** Why an answer to a fuzzed request breaks the contract, or null. */
function judgeFuzzAnswer(request: FuzzRequest, status: number, text: string, allowed: ReadonlySet<number>): string | null {
  if (!allowed.has(status)) return `status ${status} ${text.slice(0, 200)}`;
  if (status < 400 || request.method === 'HEAD') return null;
  const body = parseJson(text);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return `status ${status} with a body that is not a JSON object: ${text.slice(0, 200)}`;
  const fields = body as Record<string, unknown>;
  // The two answers that are not errors: a free lock (404) and a refused acquire (409).
  if (status === 404 && fields.held === false && typeof fields.key === 'string') return null;
  if (status === 409 && fields.acquired === false && typeof fields.holder === 'string') return null;
  try {
    errorMessage({ status, headers: new Headers(), text, body });
    return null;
  } catch (error) {
    return String(error);
  }
}

function describeFuzz(request: FuzzRequest): string {
  const body = request.body === null ? 'no body' : `${request.chunked ? 'chunked' : 'sized'} body ${JSON.stringify(request.body.subarray(0, 80).toString('latin1'))}${request.body.length > 80 ? `… (${request.body.length} bytes)` : ''}`;
  return `${request.method} ${request.path.slice(0, 120)} ${JSON.stringify(request.headers)} ${body}`;
}

function sendFuzz(port: number, fuzz: FuzzRequest): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...fuzz.headers };
    if (fuzz.body !== null) {
      if (fuzz.chunked) headers['transfer-encoding'] = 'chunked';
      else headers['content-length'] = String(fuzz.body.length);
    }
    const request = httpRequest({ host: '127.0.0.1', port, method: fuzz.method, path: fuzz.path, headers, agent: false, timeout: 5_000 }, (response) => {
      const parts: Buffer[] = [];
      response.on('data', (part: Buffer) => parts.push(part));
      response.on('end', () => {
        resolve({ status: response.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') });
      });
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('no answer within 5 s')));
    request.on('error', reject);
    if (fuzz.body !== null) {
      if (fuzz.chunked && fuzz.body.length > 1) {
        request.write(fuzz.body.subarray(0, fuzz.body.length >> 1));
        request.write(fuzz.body.subarray(fuzz.body.length >> 1));
      } else if (fuzz.body.length > 0) {
        request.write(fuzz.body);
      }
    }
    request.end();
  });
}


describe('HttpApi limits and shutdown', () => {
  /** The leader cut off from both followers: a write waits for a commit that cannot come. */
  function isolateLeader(c: Cluster): LeaseNode {
    const { leader, followers } = roles(c);
    c.network.isolate([nodeId(leader.raft.id)], followers.map((follower) => nodeId(follower.raft.id)));
    return leader;
  }

  it('answers 503 TooManyRequests with Retry-After beyond maxRequestsInFlight, and serves again once requests finish', async () => {
    const c = await startCluster();
    const served = await serve(c, roles(c).leader, { maxRequestsInFlight: 2 });
    c.network.isolate([nodeId(served.node.raft.id)], c.nodes.filter((node) => node !== served.node).map((node) => nodeId(node.raft.id)));
    const waiting = [post(served, lockPath('a', 'acquire'), { owner: 'alice', ttlMs: 60_000 }), post(served, lockPath('b', 'acquire'), { owner: 'bob', ttlMs: 60_000 })];
    await sleep(50);
    const refused = await get(served, '/v1/status');
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.body).toMatchObject({ error: { code: 'TooManyRequests' } });
    c.network.heal();
    expect((await Promise.all(waiting)).map((reply) => reply.status)).toEqual([200, 200]);
    expect((await get(served, '/v1/status')).status).toBe(200);
  }, 30_000);

  it('closes connections beyond maxConnections at once, and connections that stay silent after socketIdleTimeoutMs', async () => {
    const c = await startCluster();
    const served = await serve(c, roles(c).leader, { maxConnections: 2, socketIdleTimeoutMs: 300 });
    const closedAfterMs = (socket: ReturnType<typeof connect>): Promise<number> => {
      const startedMs = performance.now();
      return new Promise((resolve) => {
        socket.on('error', () => undefined);
        socket.once('close', () => {
          resolve(performance.now() - startedMs);
        });
      });
    };
    const sockets = [0, 1, 2].map(() => connect(served.port, '127.0.0.1'));
    const closes = sockets.map(closedAfterMs);
    const [first, second, third] = await Promise.all(closes);
    // The third is over the bound and closed at once; the two silent ones after the idle timeout.
    expect(third).toBeLessThan(250);
    expect(first).toBeGreaterThanOrEqual(250);
    expect(second).toBeGreaterThanOrEqual(250);
    expect((await get(served, '/v1/status')).status).toBe(200);
  }, 30_000);

  it('stopAccepting() refuses new connections while a waiting write is answered 503 when its node stops, not cut off', async () => {
    const c = await startCluster();
    const served = await serve(c, roles(c).leader);
    isolateLeader(c);
    const waiting = post(served, lockPath('k', 'acquire'), { owner: 'alice', ttlMs: 60_000 });
    await sleep(50);
    served.api.stopAccepting();
    await expect(get(served, '/v1/status')).rejects.toThrow();
    await served.node.stop();
    const reply = await waiting;
    expect(reply.status).toBe(503);
    expect(reply.body).toMatchObject({ error: { code: 'Stopped' } });
    await served.api.close();
  }, 30_000);

  it('refuses bad limits with a ConfigError naming the option', async () => {
    const c = await startCluster();
    const node = roles(c).leader;
    expect(() => new HttpApi({ node, maxConnections: 0 })).toThrow(/maxConnections/);
    expect(() => new HttpApi({ node, maxRequestsInFlight: 1.5 })).toThrow(/maxRequestsInFlight/);
    expect(() => new HttpApi({ node, socketIdleTimeoutMs: -1 })).toThrow(/socketIdleTimeoutMs/);
  });
});
