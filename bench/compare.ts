/**
 * The comparative benchmark (`npm run bench -- compare`): a 3-node raftlease cluster of real
 * `raftlease node` processes (TCP transport, durable file storage with fsync, HTTP API) against a
 * 3-member etcd 3.4 cluster, both on loopback with their own temporary data directories, measured
 * with the same workload, interleaved run by run in one invocation.
 *
 * - Latency: sequential cycles (one in flight) of tryAcquire, renew, release against raftlease's
 *   HTTP API on a kept-alive connection; for etcd, through the `etcd3` client as a user would: a lock
 *   acquire (`client.lock(key).acquire()`: a lease grant, then a put-if-absent transaction), a renew
 *   (`lease.keepaliveOnce()` on the lock's lease: one keepalive round trip) and a release
 *   (`lock.release()`: a lease revoke). Also a round trip without consensus on each side (GET
 *   /v1/status; a serializable get), to separate transport cost from replication.
 * - Throughput: raftlease acquire+release operations per second (each acquire and each release is one
 *   operation and one log write) against etcd puts per second, with 1, 16, 64 and 256 operations in
 *   flight; raftlease uses one kept-alive connection per in-flight client, etcd one etcd3 client
 *   (gRPC multiplexes on one connection). At 64 in flight also etcd lock acquire+release.
 * - Failover: SIGKILL the leader, then start an acquire (raftlease) / a lock acquire (etcd) every
 *   20 ms, rotating over the endpoints (the killed one first), without waiting for earlier ones
 *   (raftlease: a pool of kept-alive connections per member; etcd: one etcd3 client per member, whose
 *   gRPC connection multiplexes them); the time from the kill to the first success. The killed member is restarted and the cluster is healthy
 *   again before the next repetition. The time until a survivor says it leads is recorded too (the
 *   election part of the failover).
 * - Memory: the resident set size (VmRSS) of each member process, after start and at its peak.
 *
 * Latency and throughput clients talk to the leader on both sides (a follower forwards to the leader
 * on both, which would add a hop to each).
 *
 * @module
 */
import type * as Etcd3Module from 'etcd3';
import type { Etcd3, IOptions, Lease, Lock } from 'etcd3';
import { Client as UndiciClient, Pool, type Dispatcher } from 'undici';
import { figure, type Distribution, type Figure } from './figures.js';
import { EtcdCluster, RaftleaseCluster, cpuTimeMs, etcdVersion, jsonOrText, rssBytes, sleep, type HttpAnswer, type Member, type ProcessCluster } from './processes.js';
import { median, percentile } from './stats.js';

export type ComparePhase = 'latency' | 'throughput' | 'failover' | 'fast-failover';
export const COMPARE_PHASES: readonly ComparePhase[] = ['latency', 'throughput', 'failover', 'fast-failover'];

/** Parameters of the comparison. */
export interface CompareOptions {
  /** Sequential acquire-renew-release cycles per measured latency run. */
  readonly latencyCyclesPerRun: number;
  /** Cycles of the warm-up before the latency runs. */
  readonly latencyWarmupCycles: number;
  /** Measured runs of the latency phase (after a warm-up). */
  readonly runs: number;
  /** Measured runs of each throughput level (after a warm-up each). */
  readonly throughputRuns: number;
  readonly throughputLevels: readonly number[];
  readonly throughputRunMs: number;
  readonly throughputWarmupMs: number;
  /** Failover repetitions with default settings. */
  readonly failoverReps: number;
  /**
   * Failover repetitions with etcd tuned to raftlease's default timing (heartbeat 50 ms, election
   * 500 ms, as raftlease's 50 ms tick and 10-tick election timeout); raftlease keeps its defaults.
   */
  readonly fastFailoverReps: number;
  readonly phases: ReadonlySet<ComparePhase>;
  /** Run the etcd side (when etcd and the etcd3 package are installed). */
  readonly etcd: boolean;
  /** Start raftlease nodes with `node --cpu-prof --cpu-prof-dir DIR` (profiles are written on the final SIGTERM). */
  readonly cpuProfDir: string | null;
}

export interface CompareResult {
  readonly figures: Figure[];
  readonly distributions: Distribution[];
  readonly meta: Record<string, unknown>;
}

const OWNER = 'bench';
const TTL_MS = 30_000;
const TTL_S = 30;
/** One acquire attempt during a failover gives up after this long. */
const FAILOVER_ATTEMPT_TIMEOUT_MS = 3_000;
/** During a failover a new acquire attempt starts this often (on the next endpoint). */
const FAILOVER_PROBE_INTERVAL_MS = 20;
/** A failover without a successful acquire after this long fails the benchmark. */
const FAILOVER_LIMIT_MS = 30_000;
const PUT_VALUE = 'x'.repeat(64);

// ---------------------------------------------------------------------------------------------
// Clients

/**
 * A raftlease HTTP client on undici (the HTTP/1.1 client behind Node's `fetch`), by default on one
 * kept-alive connection: requests queue behind each other, as with one in-flight client. undici
 * costs this process about two thirds of the CPU time per request that `node:http` does, and the
 * benchmark's client shares the two cores with the cluster it measures (see docs/benchmarks.md).
 */
class RaftleaseClient {
  /** `dispatcher`: default one kept-alive connection to `port`. */
  constructor(
    readonly port: number,
    private readonly dispatcher: Dispatcher = new UndiciClient(`http://127.0.0.1:${port}`),
  ) {}

  /** Acquires `key`; resolves with the fencing token, rejects unless granted. */
  async acquire(key: string, timeoutMs = 10_000): Promise<number> {
    const answer = await this.exchange('POST', `/v1/locks/${encodeURIComponent(key)}/acquire`, `{"owner":"${OWNER}","ttlMs":${TTL_MS}}`, timeoutMs);
    const body = answer.body as { acquired?: unknown; token?: unknown } | null;
    if (answer.status !== 200 || body?.acquired !== true || typeof body.token !== 'number') throw new Error(`acquire '${key}': HTTP ${answer.status} ${JSON.stringify(answer.body)}`);
    return body.token;
  }

  async renew(key: string, token: number): Promise<void> {
    const answer = await this.exchange('POST', `/v1/locks/${encodeURIComponent(key)}/renew`, `{"owner":"${OWNER}","token":${token}}`, 10_000);
    if (answer.status !== 200) throw new Error(`renew '${key}': HTTP ${answer.status} ${JSON.stringify(answer.body)}`);
  }

  async release(key: string, token: number): Promise<void> {
    const answer = await this.exchange('POST', `/v1/locks/${encodeURIComponent(key)}/release`, `{"owner":"${OWNER}","token":${token}}`, 10_000);
    if (answer.status !== 200) throw new Error(`release '${key}': HTTP ${answer.status} ${JSON.stringify(answer.body)}`);
  }

  /** GET /v1/status: a round trip through the HTTP server without Raft. */
  async status(timeoutMs = 10_000): Promise<void> {
    const answer = await this.exchange('GET', '/v1/status', null, timeoutMs);
    if (answer.status !== 200) throw new Error(`status: HTTP ${answer.status}`);
  }

  /** Closes the connections, failing the requests still waiting on them. */
  close(): void {
    this.dispatcher.destroy().catch(() => undefined);
  }

  /** One request; rejects on a connection error or when no complete answer came within `timeoutMs`. */
  private async exchange(method: 'GET' | 'POST', path: string, body: string | null, timeoutMs: number): Promise<HttpAnswer> {
    const response = await this.dispatcher.request({
      origin: `http://127.0.0.1:${this.port}`,
      method,
      path,
      ...(body === null ? {} : { body, headers: { 'content-type': 'application/json' } }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    return { status: response.statusCode, body: jsonOrText(await response.body.text()) };
  }
}

type EtcdModule = typeof Etcd3Module;
type Policy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/**
 * A fault-handling policy that only calls through: the failover loop does its own retrying (the same
 * for both systems), so etcd3's default retries and circuit breaker (which stops calling a host for
 * 5 s after three failures) do not add to the measured time.
 */
const passThrough = {
  execute: <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> => Promise.resolve().then(() => fn({ signal: new AbortController().signal })),
} as unknown as Policy;

/** The lease behind an etcd3 lock (the lock keeps it private; a user renewing a lock needs it). */
function lockLease(lock: Lock): Lease | undefined {
  return (lock as unknown as { lease?: Lease }).lease;
}

// ---------------------------------------------------------------------------------------------
// Samples

interface LatencySamples {
  readonly acquire: number[];
  readonly renew: number[];
  readonly release: number[];
  readonly noop: number[];
}

function emptySamples(): LatencySamples {
  return { acquire: [], renew: [], release: [], noop: [] };
}

function appendSamples(into: LatencySamples, from: LatencySamples): void {
  into.acquire.push(...from.acquire);
  into.renew.push(...from.renew);
  into.release.push(...from.release);
  into.noop.push(...from.noop);
}

async function raftleaseLatencyRun(client: RaftleaseClient, cycles: number, prefix: string): Promise<LatencySamples> {
  const samples = emptySamples();
  for (let i = 0; i < cycles; i++) {
    const key = `${prefix}-${i}`;
    let started = performance.now();
    const token = await client.acquire(key);
    samples.acquire.push(performance.now() - started);
    started = performance.now();
    await client.renew(key, token);
    samples.renew.push(performance.now() - started);
    started = performance.now();
    await client.release(key, token);
    samples.release.push(performance.now() - started);
    started = performance.now();
    await client.status();
    samples.noop.push(performance.now() - started);
  }
  return samples;
}

async function etcdLatencyRun(client: Etcd3, cycles: number, prefix: string): Promise<LatencySamples> {
  const samples = emptySamples();
  for (let i = 0; i < cycles; i++) {
    const lock = client.lock(`${prefix}/${i}`).ttl(TTL_S);
    let started = performance.now();
    await lock.acquire();
    samples.acquire.push(performance.now() - started);
    const lease = lockLease(lock);
    if (lease === undefined) throw new Error('etcd3 lock without a lease after acquire');
    started = performance.now();
    await lease.keepaliveOnce();
    samples.renew.push(performance.now() - started);
    started = performance.now();
    await lock.release();
    samples.release.push(performance.now() - started);
    started = performance.now();
    await client.get(`${prefix}/noop`).serializable(true).string();
    samples.noop.push(performance.now() - started);
  }
  return samples;
}

interface Throughput {
  readonly perSecond: number;
  readonly operations: number;
}

/** Runs `operation(worker, sequence)` (which resolves with the operations it did) in `inFlight` closed loops for `durationMs`. */
async function closedLoop(inFlight: number, durationMs: number, operation: (worker: number, sequence: number) => Promise<number>): Promise<Throughput> {
  let operations = 0;
  const started = performance.now();
  const deadline = started + durationMs;
  await Promise.all(
    Array.from({ length: inFlight }, async (_, worker) => {
      for (let sequence = 0; performance.now() < deadline; sequence++) {
        // Not `operations += await …`: that reads the total before the await and loses the other workers' counts.
        const done = await operation(worker, sequence);
        operations += done;
      }
    }),
  );
  return { perSecond: (operations / (performance.now() - started)) * 1000, operations };
}

interface Measured {
  readonly perSecond: number;
  /** CPU time (user + system) of the member processes per operation, in µs. */
  readonly serverUsPerOp: number;
  /** CPU time of this benchmark process per operation, in µs. */
  readonly clientUsPerOp: number;
}

/** Runs `run` and measures the CPU time the member processes `pids` and this process spent on it. */
async function metered(pids: readonly number[], run: () => Promise<Throughput>): Promise<Measured> {
  const before = pids.map((pid) => cpuTimeMs(pid) ?? 0);
  const self = process.cpuUsage();
  const result = await run();
  const used = process.cpuUsage(self);
  const serverMs = pids.reduce((sum, pid, index) => sum + ((cpuTimeMs(pid) ?? 0) - (before[index] ?? 0)), 0);
  const operations = Math.max(1, result.operations);
  return { perSecond: result.perSecond, serverUsPerOp: (serverMs * 1000) / operations, clientUsPerOp: (used.user + used.system) / operations };
}

// ---------------------------------------------------------------------------------------------
// Failover

interface FailoverDriver {
  /** Opens (keeps alive) a connection to every member. */
  warm(members: readonly Member[]): Promise<void>;
  /** One acquire attempt on `member`; rejects on any failure or after FAILOVER_ATTEMPT_TIMEOUT_MS. */
  attempt(member: Member, key: string): Promise<void>;
  /** Releases what a successful attempt acquired (not timed). */
  release(member: Member, key: string): Promise<void>;
  /** Closes every connection, abandoning the attempts still waiting. */
  close(): void;
}

function raftleaseFailoverDriver(): FailoverDriver {
  const clients = new Map<string, RaftleaseClient>();
  const tokens = new Map<string, number>();
  const clientOf = (member: Member): RaftleaseClient => {
    let client = clients.get(member.name);
    if (client === undefined) {
      // Kept-alive connections without a limit: a probe does not queue behind one still waiting.
      client = new RaftleaseClient(member.clientPort, new Pool(`http://127.0.0.1:${member.clientPort}`));
      clients.set(member.name, client);
    }
    return client;
  };
  return {
    warm: async (members) => {
      await Promise.all(members.map((member) => clientOf(member).status()));
    },
    attempt: async (member, key) => {
      tokens.set(key, await clientOf(member).acquire(key, FAILOVER_ATTEMPT_TIMEOUT_MS));
    },
    release: async (member, key) => {
      await clientOf(member).release(key, tokens.get(key) ?? 0);
    },
    close: () => {
      for (const client of clients.values()) client.close();
    },
  };
}

function etcdFailoverDriver(etcd3: EtcdModule, cluster: EtcdCluster): FailoverDriver {
  const clients = new Map<string, Etcd3>();
  const locks = new Map<string, Lock>();
  const attempted: Lock[] = [];
  const clientOf = (member: Member): Etcd3 => {
    let client = clients.get(member.name);
    if (client === undefined) {
      client = new etcd3.Etcd3({
        hosts: cluster.clientUrl(member),
        faultHandling: { host: () => passThrough, global: passThrough },
        defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + FAILOVER_ATTEMPT_TIMEOUT_MS }),
      });
      clients.set(member.name, client);
    }
    return client;
  };
  return {
    warm: async (members) => {
      await Promise.all(members.map((member) => clientOf(member).get('bench/warm').serializable(true).string()));
    },
    attempt: async (member, key) => {
      const lock = clientOf(member).lock(key).ttl(TTL_S);
      attempted.push(lock);
      await lock.acquire();
      locks.set(key, lock);
    },
    release: async (_member, key) => {
      await locks.get(key)?.release();
    },
    close: () => {
      // Stop every lease's background keepalive (it would retry for two TTLs), then the connections.
      for (const lock of attempted) lockLease(lock)?.release();
      for (const client of clients.values()) client.close();
    },
  };
}

interface FailoverSample {
  /** From the SIGKILL to the first successful acquire. */
  readonly totalMs: number;
  /** From the SIGKILL to the first answer of a survivor saying it leads (polled every ~10 ms). */
  readonly electedMs: number;
  readonly attempts: number;
}

/**
 * One failover: waits until the cluster is healthy, SIGKILLs the leader, and from that moment starts
 * an acquire attempt every FAILOVER_PROBE_INTERVAL_MS, rotating over the endpoints (the killed one
 * first, as a client that used the leader would), without waiting for the earlier ones (a probe never
 * queues behind one still waiting: raftlease opens another pooled connection, etcd's gRPC
 * multiplexes): an attempt sent while there is no leader may wait for its timeout on both systems
 * (a proposal forwarded to a dead leader is lost), and the figure is meant to show when the cluster
 * serves acquires again, not the client's timeout. Restarts the killed member afterwards.
 */
async function failoverRep(cluster: ProcessCluster, driver: FailoverDriver, label: string): Promise<FailoverSample> {
  const leader = await cluster.healthy(60_000);
  // Not timed: connections to every member (a member restarted a moment ago may refuse the first).
  for (let attempt = 1; ; attempt++) {
    try {
      await driver.warm(cluster.members);
      break;
    } catch (error) {
      if (attempt >= 100) throw new Error(`${cluster.system}: cannot reach every member before a failover: ${error instanceof Error ? error.message : String(error)}`);
      await sleep(100);
    }
  }
  const order = [leader, ...cluster.members.filter((member) => member !== leader)];
  const state: { electedMs: number | null; watching: boolean; winner: { member: Member; key: string; totalMs: number } | null; lastError: string } = {
    electedMs: null,
    watching: true,
    winner: null,
    lastError: '',
  };
  const killedAt = performance.now();
  cluster.kill(leader);
  const watcher = (async () => {
    while (state.watching) {
      if ((await cluster.newLeader(leader)) !== null) {
        state.electedMs = performance.now() - killedAt;
        return;
      }
      await sleep(10);
    }
  })();
  let attempts = 0;
  let wake: () => void = () => undefined;
  try {
    // Bounded by FAILOVER_LIMIT_MS.
    while (state.winner === null) {
      if (performance.now() - killedAt > FAILOVER_LIMIT_MS) {
        throw new Error(`${cluster.system}: no successful acquire within ${FAILOVER_LIMIT_MS} ms of killing the leader ${leader.name} (${attempts} attempts; last error: ${state.lastError})`);
      }
      const member = order[attempts % order.length] ?? leader;
      attempts++;
      const key = `${label}-${attempts}`;
      driver.attempt(member, key).then(
        () => {
          if (state.winner === null) state.winner = { member, key, totalMs: performance.now() - killedAt };
          wake();
        },
        (error: unknown) => {
          state.lastError = error instanceof Error ? error.message : String(error);
        },
      );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, FAILOVER_PROBE_INTERVAL_MS);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    state.watching = false;
    await watcher;
  }
  const { winner } = state;
  await driver.release(winner.member, winner.key).catch(() => undefined);
  cluster.startMember(leader);
  return { totalMs: winner.totalMs, electedMs: Math.min(state.electedMs ?? winner.totalMs, winner.totalMs), attempts };
}

// ---------------------------------------------------------------------------------------------
// Memory

class RssSampler {
  readonly peak = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly clusters: () => readonly ProcessCluster[]) {
    this.timer = setInterval(() => {
      this.sample();
    }, 250);
    this.timer.unref();
  }

  /** Samples now; returns the largest member's RSS per system. */
  sample(): Map<string, number> {
    const now = new Map<string, number>();
    for (const cluster of this.clusters()) {
      for (const pid of cluster.pids()) {
        const rss = rssBytes(pid);
        if (rss === null) continue;
        now.set(cluster.system, Math.max(now.get(cluster.system) ?? 0, rss));
        this.peak.set(cluster.system, Math.max(this.peak.get(cluster.system) ?? 0, rss));
      }
    }
    return now;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

// ---------------------------------------------------------------------------------------------
// The suite

/** `count` and `noun`, plural unless the count is 1. */
function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** The median of the runs, or null when there were none. */
function medianOrNull(values: readonly number[]): number | null {
  return values.length === 0 ? null : median(values);
}

function stat(samples: readonly number[], which: 'p50' | 'p90' | 'p99' | 'max'): number | null {
  if (samples.length === 0) return null;
  if (which === 'max') return Math.max(...samples);
  return percentile(samples, Number(which.slice(1)));
}

function describe(item: Figure): string {
  const value = (number: number | null): string => (number === null ? '—' : `${number >= 100 ? number.toFixed(0) : number >= 1 ? number.toFixed(2) : number.toFixed(3)} ${item.unit}`);
  const ratio = item.ratio === null ? '' : `; raftlease/etcd ${item.ratio.toFixed(2)}x`;
  const target = item.target === undefined ? '' : ` (target ${item.target}: ${item.met === true ? 'met' : item.met === false ? 'MISSED' : 'not measured'})`;
  const spread = (runs: readonly number[] | undefined): string => (runs === undefined || runs.length < 2 ? '' : ` [runs ${Math.min(...runs).toFixed(item.unit === 'ms' ? 3 : 0)}–${Math.max(...runs).toFixed(item.unit === 'ms' ? 3 : 0)}]`);
  return `  ${item.name}${item.note === undefined ? '' : ` (${item.note})`}: raftlease ${value(item.raftlease)}${spread(item.runs?.raftlease)} | etcd ${value(item.etcd)}${spread(item.runs?.etcd)}${ratio}${target}`;
}

/** Runs the comparison; prints one line per figure and the reproducing command after each phase. */
export async function benchCompare(options: CompareOptions, command: string, print: (line: string) => void): Promise<CompareResult> {
  const figures: Figure[] = [];
  const distributions: Distribution[] = [];
  let phaseStarted = performance.now();
  /** Prints the reproducing command and how long the phase took. */
  const reproduce = (): void => {
    print(`  reproduce: ${command}`);
    print(`  (${((performance.now() - phaseStarted) / 1000).toFixed(1)} s)`);
    phaseStarted = performance.now();
  };
  const emit = (items: Figure[]): void => {
    for (const item of items) {
      figures.push(item);
      print(describe(item));
    }
  };

  // ---- etcd available?
  let etcd3: EtcdModule | null = null;
  let version: string | null = null;
  if (options.etcd) {
    version = etcdVersion();
    if (version === null) print('  etcd not found on the PATH: the etcd side of every figure is skipped (null). Install etcd 3.4 to compare.');
    else {
      if (!version.startsWith('3.4.')) print(`  etcd ${version} found: the targets were set against etcd 3.4 (Debian's etcd-server); the etcd columns are this version's`);
      try {
        etcd3 = await import('etcd3');
      } catch (error) {
        print(`  the 'etcd3' npm package cannot be loaded (${error instanceof Error ? error.message : String(error)}): the etcd side is skipped. Run npm install.`);
      }
    }
  } else print('  --no-etcd: the etcd side of every figure is skipped (null)');
  const withEtcd = etcd3 !== null;

  const active: ProcessCluster[] = [];
  const sampler = new RssSampler(() => active);
  const profiling = options.cpuProfDir !== null;
  const nodeFlags = options.cpuProfDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir];
  try {
    // ---- clusters with default settings
    const raftlease = await RaftleaseCluster.create(null, nodeFlags);
    active.push(raftlease);
    const etcd = withEtcd ? await EtcdCluster.create(null) : null;
    if (etcd !== null) active.push(etcd);
    print(`  starting raftlease: 3 x ${raftlease.describe()}`);
    if (etcd !== null) print(`  starting etcd ${version ?? ''}: 3 x ${etcd.describe()}`);
    const [raftleaseLeader, etcdLeader] = await Promise.all([raftlease.start(), etcd?.start() ?? Promise.resolve(null)]);
    await sleep(1_000);
    const idle = sampler.sample();
    const mib = (bytes: number | undefined): number | null => (bytes === undefined ? null : bytes / 1024 / 1024);
    const memoryFigures: Figure[] = [figure({ suite: 'compare', name: 'RSS per node process after start (largest of 3)', unit: 'MiB', raftlease: mib(idle.get('raftlease')), etcd: mib(idle.get('etcd')), command })];

    let etcdClient: Etcd3 | null = null;
    if (etcd3 !== null && etcd !== null && etcdLeader !== null) etcdClient = new etcd3.Etcd3({ hosts: etcd.clientUrl(etcdLeader) });

    // ---- latency
    if (options.phases.has('latency')) {
      print(`latency: ${options.runs} runs x ${options.latencyCyclesPerRun} sequential cycles (acquire, renew, release, no-op round trip) per system, interleaved, after ${options.latencyWarmupCycles} warm-up cycles; clients on the leader`);
      const client = new RaftleaseClient(raftleaseLeader.clientPort);
      try {
        await raftleaseLatencyRun(client, options.latencyWarmupCycles, 'warm');
        if (etcdClient !== null) await etcdLatencyRun(etcdClient, options.latencyWarmupCycles, 'bench/warm');
        const pooled = { raftlease: emptySamples(), etcd: emptySamples() };
        const perRun = { raftlease: [] as LatencySamples[], etcd: [] as LatencySamples[] };
        for (let run = 0; run < options.runs; run++) {
          const mine = await raftleaseLatencyRun(client, options.latencyCyclesPerRun, `lat${run}`);
          appendSamples(pooled.raftlease, mine);
          perRun.raftlease.push(mine);
          if (etcdClient !== null) {
            const theirs = await etcdLatencyRun(etcdClient, options.latencyCyclesPerRun, `bench/lat${run}`);
            appendSamples(pooled.etcd, theirs);
            perRun.etcd.push(theirs);
          }
        }
        const ops = [
          { key: 'acquire', name: 'tryAcquire latency', etcdName: 'lock acquire', targets: { p50: 0.4, p99: 0.5 } },
          { key: 'renew', name: 'renew latency', etcdName: 'lease keepaliveOnce', targets: { p50: 1 } },
          { key: 'release', name: 'release latency', etcdName: 'lock release', targets: { p50: 0.6 } },
          { key: 'noop', name: 'round trip without consensus', etcdName: 'serializable get; raftlease: GET /v1/status', targets: {} },
        ] as const;
        const items: Figure[] = [];
        for (const op of ops) {
          for (const which of ['p50', 'p90', 'p99', 'max'] as const) {
            const goal = (op.targets as Partial<Record<typeof which, number>>)[which];
            const item = figure({
              suite: 'compare',
              name: `${op.name} ${which}`,
              note: `etcd: ${op.etcdName}`,
              unit: 'ms',
              raftlease: stat(pooled.raftlease[op.key], which),
              etcd: etcdClient === null ? null : stat(pooled.etcd[op.key], which),
              command,
              runs: { raftlease: perRun.raftlease.map((run) => stat(run[op.key], which) ?? 0), etcd: perRun.etcd.map((run) => stat(run[op.key], which) ?? 0) },
            });
            items.push(goal === undefined ? item : { ...item, target: `raftlease/etcd ≤ ${goal}`, met: item.ratio === null ? null : item.ratio <= goal });
          }
          distributions.push({
            title: `${op.name} (sequential, ${pooled.raftlease[op.key].length} operations)`,
            unit: 'ms',
            series: [
              { label: `raftlease ${op.key === 'noop' ? 'GET /v1/status' : op.key}`, samples: pooled.raftlease[op.key] },
              ...(etcdClient === null ? [] : [{ label: `etcd ${op.etcdName.replace(/; raftlease.*/, '')}`, samples: pooled.etcd[op.key] }]),
            ],
          });
        }
        emit(items);
      } finally {
        client.close();
      }
      reproduce();
    }

    // ---- throughput
    if (options.phases.has('throughput')) {
      print(`throughput: ${options.throughputRuns} runs x ${options.throughputRunMs} ms per level and system, interleaved, after a ${options.throughputWarmupMs} ms warm-up each; raftlease acquire+release operations/s (one connection per in-flight client) vs etcd puts/s (one etcd3 client)`);
      const clients = new Map<number, RaftleaseClient[]>();
      for (const level of options.throughputLevels) clients.set(level, Array.from({ length: level }, () => new RaftleaseClient(raftleaseLeader.clientPort)));
      const raftleaseRun = (level: number, durationMs: number, prefix: string): Promise<Throughput> => {
        const pool = clients.get(level) ?? [];
        return closedLoop(level, durationMs, async (worker, sequence) => {
          const client = pool[worker];
          if (client === undefined) throw new Error('no client');
          const key = `${prefix}-${worker}-${sequence}`;
          const token = await client.acquire(key);
          await client.release(key, token);
          return 2;
        });
      };
      const etcdPutRun = async (level: number, durationMs: number): Promise<Throughput | null> => {
        const client = etcdClient;
        if (client === null) return null;
        return closedLoop(level, durationMs, async (worker) => {
          await client.put(`bench/put/${worker}`).value(PUT_VALUE);
          return 1;
        });
      };
      const etcdLockRun = async (level: number, durationMs: number, prefix: string): Promise<Throughput | null> => {
        const client = etcdClient;
        if (client === null) return null;
        return closedLoop(level, durationMs, async (worker, sequence) => {
          const lock = client.lock(`${prefix}/${worker}/${sequence}`).ttl(TTL_S);
          await lock.acquire();
          await lock.release();
          return 2;
        });
      };
      const lockLevel = options.throughputLevels.includes(64) ? 64 : null;
      const results = new Map<number, { raftlease: Measured[]; etcd: Measured[]; etcdLock: number[] }>();
      try {
        for (const level of options.throughputLevels) {
          await raftleaseRun(level, options.throughputWarmupMs, `warm${level}`);
          await etcdPutRun(level, options.throughputWarmupMs);
          if (level === lockLevel) await etcdLockRun(level, options.throughputWarmupMs, `bench/warm${level}`);
          results.set(level, { raftlease: [], etcd: [], etcdLock: [] });
        }
        for (let run = 0; run < options.throughputRuns; run++) {
          for (const level of options.throughputLevels) {
            const entry = results.get(level);
            if (entry === undefined) continue;
            entry.raftlease.push(await metered(raftlease.pids(), () => raftleaseRun(level, options.throughputRunMs, `tp${run}-${level}`)));
            if (etcd !== null && etcdClient !== null) {
              entry.etcd.push(await metered(etcd.pids(), async () => (await etcdPutRun(level, options.throughputRunMs)) ?? { perSecond: 0, operations: 0 }));
            }
            if (level === lockLevel) {
              const locks = await etcdLockRun(level, options.throughputRunMs, `bench/tp${run}`);
              if (locks !== null) entry.etcdLock.push(locks.perSecond);
            }
          }
        }
      } finally {
        for (const pool of clients.values()) for (const client of pool) client.close();
      }
      const items: Figure[] = [];
      for (const level of options.throughputLevels) {
        const found = results.get(level);
        if (found === undefined) continue;
        const entry = { raftlease: found.raftlease.map((run) => run.perSecond), etcd: found.etcd.map((run) => run.perSecond), etcdLock: found.etcdLock };
        const item = figure({
          suite: 'compare',
          name: `acquire+release throughput, ${level} in flight`,
          note: `etcd: put; median of ${entry.raftlease.length} runs`,
          unit: 'ops/s',
          raftlease: medianOrNull(entry.raftlease),
          etcd: medianOrNull(entry.etcd),
          command,
          runs: { raftlease: entry.raftlease, etcd: entry.etcd },
        });
        items.push(level === 64 ? { ...item, target: 'raftlease/etcd ≥ 2', met: item.ratio === null ? null : item.ratio >= 2 } : item);
        if (level === lockLevel) {
          items.push(
            figure({
              suite: 'compare',
              name: `acquire+release throughput against etcd locks, ${level} in flight`,
              note: `etcd: lock acquire + release (3 writes per pair); median of ${entry.raftlease.length} runs`,
              unit: 'ops/s',
              raftlease: medianOrNull(entry.raftlease),
              etcd: medianOrNull(entry.etcdLock),
              command,
              runs: { raftlease: entry.raftlease, etcd: entry.etcdLock },
            }),
          );
        }
        if (level === 64) {
          // Where the CPU goes: the two cores are shared by the members and this client.
          for (const [which, pick] of [
            ['the 3 member processes', (run: Measured) => run.serverUsPerOp],
            ['the benchmark client process', (run: Measured) => run.clientUsPerOp],
          ] as const) {
            items.push(
              figure({
                suite: 'compare',
                name: `CPU time per operation at ${level} in flight, ${which}`,
                note: `user + system; etcd: put; median of ${found.raftlease.length} runs`,
                unit: 'µs',
                raftlease: medianOrNull(found.raftlease.map(pick)),
                etcd: medianOrNull(found.etcd.map(pick)),
                command,
              }),
            );
          }
        }
      }
      emit(items);
      reproduce();
    }
    etcdClient?.close();
    etcdClient = null;

    // ---- failover with default settings
    const failoverFigures = (samples: { raftlease: FailoverSample[]; etcd: FailoverSample[] }, settings: string, defaults: boolean): Figure[] => {
      const items: Figure[] = [];
      for (const which of ['p50', 'p90', 'p99', 'max'] as const) {
        const item = figure({
          suite: 'compare',
          name: `failover ${which}, ${settings}`,
          note: `SIGKILL the leader → next successful acquire; ${plural(samples.raftlease.length, 'kill')}`,
          unit: 'ms',
          raftlease: stat(
            samples.raftlease.map((sample) => sample.totalMs),
            which,
          ),
          etcd: withEtcd
            ? stat(
                samples.etcd.map((sample) => sample.totalMs),
                which,
              )
            : null,
          command,
        });
        items.push(defaults && which === 'p99' ? { ...item, target: 'raftlease < 1,000 ms', met: item.raftlease === null ? null : item.raftlease < 1_000 } : item);
      }
      for (const which of ['p50', 'p99'] as const) {
        items.push(
          figure({
            suite: 'compare',
            name: `failover ${which}, ${settings}: until a survivor says it leads`,
            note: 'the election part',
            unit: 'ms',
            raftlease: stat(
              samples.raftlease.map((sample) => sample.electedMs),
              which,
            ),
            etcd: withEtcd
              ? stat(
                  samples.etcd.map((sample) => sample.electedMs),
                  which,
                )
              : null,
            command,
          }),
        );
      }
      distributions.push({
        title: `failover, ${settings} (${plural(samples.raftlease.length, 'kill')})`,
        unit: 'ms',
        series: [{ label: 'raftlease', samples: samples.raftlease.map((sample) => sample.totalMs) }, ...(withEtcd ? [{ label: 'etcd', samples: samples.etcd.map((sample) => sample.totalMs) }] : [])],
      });
      return items;
    };
    const runFailover = async (raftleaseCluster: ProcessCluster, etcdCluster: EtcdCluster | null, reps: number, tag: string): Promise<{ raftlease: FailoverSample[]; etcd: FailoverSample[] }> => {
      const samples = { raftlease: [] as FailoverSample[], etcd: [] as FailoverSample[] };
      for (let rep = 0; rep < reps; rep++) {
        const mine = raftleaseFailoverDriver();
        try {
          samples.raftlease.push(await failoverRep(raftleaseCluster, mine, `${tag}-${rep}`));
        } finally {
          mine.close();
        }
        if (etcd3 !== null && etcdCluster !== null) {
          const theirs = etcdFailoverDriver(etcd3, etcdCluster);
          try {
            samples.etcd.push(await failoverRep(etcdCluster, theirs, `bench/${tag}-${rep}`));
          } finally {
            theirs.close();
          }
        }
      }
      // Leave both clusters whole.
      await Promise.all([raftleaseCluster.healthy(60_000), etcdCluster?.healthy(60_000)]);
      return samples;
    };
    if (options.phases.has('failover')) {
      const settings = 'default settings';
      print(`failover: ${options.failoverReps} SIGKILLs of the leader per system, interleaved (raftlease ${raftlease.settings}; etcd ${etcd?.settings ?? 'not run'}); from the kill, an acquire attempt every ${FAILOVER_PROBE_INTERVAL_MS} ms rotating over the endpoints without waiting for earlier ones (timeout ${FAILOVER_ATTEMPT_TIMEOUT_MS} ms)`);
      const samples = await runFailover(raftlease, etcd, options.failoverReps, 'fo');
      emit(failoverFigures(samples, settings, true));
      reproduce();
    }

    // ---- memory (peak over the phases above)
    sampler.sample();
    memoryFigures.push(
      figure({
        suite: 'compare',
        name: 'RSS per node process, peak during the phases above (largest of 3)',
        unit: 'MiB',
        raftlease: mib(sampler.peak.get('raftlease')),
        etcd: mib(sampler.peak.get('etcd')),
        command,
      }),
    );
    print('memory: VmRSS of the member processes, sampled every 250 ms');
    emit(memoryFigures);
    reproduce();
    active.length = 0;
    await Promise.all([raftlease.stop(profiling), etcd?.stop()]);

    // ---- failover with etcd tuned to raftlease's default timing
    if (options.phases.has('fast-failover') && options.fastFailoverReps > 0) {
      const fastRaftlease = await RaftleaseCluster.create(null, nodeFlags);
      const fastEtcd = withEtcd ? await EtcdCluster.create({ heartbeatMs: 50, electionMs: 500 }) : null;
      active.push(fastRaftlease, ...(fastEtcd === null ? [] : [fastEtcd]));
      const settings = `raftlease ${fastRaftlease.settings}, etcd ${fastEtcd?.settings ?? 'not run'}`;
      print(`failover with etcd tuned to raftlease's default timing: ${options.fastFailoverReps} SIGKILLs of the leader per system, interleaved (${settings})`);
      await Promise.all([fastRaftlease.start(), fastEtcd?.start()]);
      const samples = await runFailover(fastRaftlease, fastEtcd, options.fastFailoverReps, 'ffo');
      emit(failoverFigures(samples, settings, false));
      reproduce();
      active.length = 0;
      await Promise.all([fastRaftlease.stop(profiling), fastEtcd?.stop()]);
    }
  } finally {
    sampler.stop();
    await Promise.all(active.map((cluster) => cluster.stop(profiling && cluster.system === 'raftlease')));
  }
  return {
    figures,
    distributions,
    meta: {
      etcd: version === null ? 'not run' : `etcd ${version} (etcd3 npm client)`,
      etcdVersion: withEtcd ? version : null,
      raftleaseNode: 'dist/src/cli/main.js node (TCP transport, file storage with fsync per batch, HTTP API), CLI defaults unless labelled',
    },
  };
}
