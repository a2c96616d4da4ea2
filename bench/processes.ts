/**
 * Real processes for the comparative benchmark (`npm run bench -- compare`): three `raftlease node`
 * processes or three etcd members on loopback, each with its own temporary data directory, ports and
 * log file.
 *
 * Every child is registered; all of them are SIGKILLed and the temporary directories removed when
 * the benchmark ends, fails, or receives SIGINT / SIGTERM / SIGHUP (Ctrl-C).
 *
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built `raftlease` command line. */
export const RAFTLEASE_MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

// ---------------------------------------------------------------------------------------------
// Cleanup: every child and temporary directory is registered here.

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let handlersInstalled = false;

/** SIGKILLs every registered child that still runs and removes every registered temporary directory. */
export function killEverything(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
      tempDirs.delete(dir);
    } catch {
      // A child killed a moment ago may still be writing; the directory stays in the temp folder.
    }
  }
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.once('exit', killEverything);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}: killing every raftlease node and etcd member this benchmark started\n`);
      killEverything();
      process.exit(130);
    });
  }
}

/** A new temporary directory, removed by {@link killEverything} or {@link removeTempDir}. */
export function makeTempDir(prefix: string): string {
  installHandlers();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  tempDirs.delete(dir);
}

function spawnRegistered(command: string, args: readonly string[], logPath: string): ChildProcess {
  installHandlers();
  const log = openSync(logPath, 'a');
  try {
    const child = spawn(command, args, { stdio: ['ignore', log, log] });
    children.add(child);
    child.once('exit', () => children.delete(child));
    // A failed spawn (ENOENT) reports through 'error'; the exit handler above still runs.
    child.once('error', () => children.delete(child));
    return child;
  } finally {
    closeSync(log);
  }
}

// ---------------------------------------------------------------------------------------------
// Small utilities

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => {
      resolve(false);
    });
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.close(() => {
        resolve(true);
      });
    });
  });
}

/**
 * `count` distinct free loopback ports, drawn below the kernel's ephemeral range (32768+ on Linux) so
 * that outgoing connections cannot take them between this check and the moment a process binds them.
 */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  // Bounded: a few hundred random draws; a busy machine rarely has more than a handful taken.
  for (let attempt = 0; ports.size < count && attempt < 500; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (!ports.has(port) && (await canBind(port))) ports.add(port);
  }
  if (ports.size < count) throw new Error(`found only ${ports.size} of ${count} free loopback ports`);
  return [...ports];
}

/** The resident set size of a process in bytes (VmRSS from /proc), or null when it is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? null : Number(match[1]) * 1024;
  } catch {
    return null;
  }
}

/**
 * CPU time (user + system, all threads) a process has used, in ms, from /proc/<pid>/stat; null when it
 * is gone. Assumes the usual 100 clock ticks per second (Linux USER_HZ).
 */
export function cpuTimeMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (which may hold spaces) start with the state (field 3).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return null;
  }
}

/** An HTTP answer with its body parsed as JSON (or the raw text when it is not JSON). */
export interface HttpAnswer {
  readonly status: number;
  readonly body: unknown;
}

/** An HTTP body parsed as JSON, or the text itself when it is not JSON (an error page, say). */
export function jsonOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * One HTTP request to 127.0.0.1:`port` with a JSON body, on a fresh connection (for health checks;
 * the measured clients are in compare.ts). Rejects on a connection error or after `timeoutMs` (the
 * request is then destroyed).
 */
export function httpJson(port: number, method: 'GET' | 'POST', path: string, body: string | null, timeoutMs: number): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = body === null ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.once('error', fail);
      response.once('end', () => {
        clearTimeout(timer);
        resolve({ status: response.statusCode ?? 0, body: jsonOrText(Buffer.concat(chunks).toString('utf8')) });
      });
    });
    const timer = setTimeout(() => {
      req.destroy(new Error(`${method} ${path} on port ${port}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    function fail(error: Error): void {
      clearTimeout(timer);
      reject(error);
    }
    req.once('error', fail);
    req.end(body ?? undefined);
  });
}

// ---------------------------------------------------------------------------------------------
// Clusters

/** One member of a benchmark cluster. */
export interface Member {
  readonly name: string;
  /** The port clients use: the raftlease HTTP API, or etcd's client URL. */
  readonly clientPort: number;
  /** Raft transport (raftlease) or peer URL (etcd) port. */
  readonly peerPort: number;
  readonly dataDir: string;
  readonly logPath: string;
  child: ChildProcess | null;
}

/** What one member says about the cluster. */
interface MemberView {
  /** The leader this member knows, as a member name (null: none known). */
  readonly leader: string | null;
  readonly isLeader: boolean;
  readonly term: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
}

/** A 3-member cluster of real processes on loopback. */
export abstract class ProcessCluster {
  readonly members: Member[];
  private readonly root: string;

  protected constructor(
    readonly system: 'raftlease' | 'etcd',
    /** Extra settings in the label, e.g. "tick 50 ms". */
    readonly settings: string,
    ports: readonly number[],
  ) {
    this.root = makeTempDir(`raftlease-bench-${system}-`);
    this.members = [0, 1, 2].map((index) => ({
      name: `${system === 'etcd' ? 'e' : 'n'}${index + 1}`,
      clientPort: ports[index * 2] ?? 0,
      peerPort: ports[index * 2 + 1] ?? 0,
      dataDir: join(this.root, `${system === 'etcd' ? 'e' : 'n'}${index + 1}`),
      logPath: join(this.root, `${system === 'etcd' ? 'e' : 'n'}${index + 1}.log`),
      child: null,
    }));
  }

  /** The command line that starts `member`. */
  abstract commandLine(member: Member): { command: string; args: string[] };

  /** What `member` says about the cluster, or null when it does not answer within `timeoutMs`. */
  abstract view(member: Member, timeoutMs: number): Promise<MemberView | null>;

  /** Starts every member and waits until the cluster is healthy; resolves with the leader. */
  async start(timeoutMs = 30_000): Promise<Member> {
    for (const member of this.members) this.startMember(member);
    return this.healthy(timeoutMs);
  }

  /** (Re)starts one member from its data directory. */
  startMember(member: Member): void {
    if (member.child !== null) throw new Error(`${member.name} is running already`);
    mkdirSync(member.dataDir, { recursive: true });
    const { command, args } = this.commandLine(member);
    const child = spawnRegistered(command, args, member.logPath);
    child.once('exit', () => {
      if (member.child === child) member.child = null;
    });
    member.child = child;
  }

  /** SIGKILLs one member. */
  kill(member: Member): void {
    const child = member.child;
    if (child === null) throw new Error(`${member.name} is not running`);
    member.child = null;
    child.kill('SIGKILL');
  }

  /** The process ids of the running members. */
  pids(): number[] {
    return this.members.flatMap((member) => (member.child?.pid === undefined ? [] : [member.child.pid]));
  }

  /**
   * Waits until every member runs and answers, all name the same leader, that leader says it leads,
   * and every member has applied what the leader had committed at the start of the round.
   */
  async healthy(timeoutMs: number): Promise<Member> {
    const deadline = performance.now() + timeoutMs;
    let last = 'no answer yet';
    // Bounded by the deadline.
    while (performance.now() < deadline) {
      const dead = this.members.find((member) => member.child === null);
      if (dead !== undefined) throw new Error(`${this.system} member ${dead.name} is not running; its log: ${dead.logPath}\n${tail(dead.logPath)}`);
      const views = await Promise.all(this.members.map((member) => this.view(member, 500)));
      const leaders = new Set(views.map((view) => view?.leader ?? null));
      const [leaderName] = [...leaders];
      const leader = this.members.find((member) => member.name === leaderName);
      const leaderView = leader === undefined ? null : views[this.members.indexOf(leader)];
      if (views.every((view) => view !== null) && leaders.size === 1 && leader !== undefined && leaderView?.isLeader === true) {
        const commit = leaderView.commitIndex;
        if (views.every((view) => view.appliedIndex >= commit)) return leader;
        last = `applied ${views.map((view) => view.appliedIndex).join('/')} < leader commit ${commit}`;
      } else {
        last = `leaders named: ${views.map((view, index) => `${this.members[index]?.name ?? '?'}→${view === null ? 'no answer' : (view.leader ?? 'none')}`).join(', ')}`;
      }
      await sleep(50);
    }
    throw new Error(`${this.system} cluster not healthy within ${timeoutMs} ms (${last}); logs in ${this.members.map((member) => member.logPath).join(', ')}`);
  }

  /** The first member other than `old` that says it leads (null when none does yet). */
  async newLeader(old: Member): Promise<Member | null> {
    const others = this.members.filter((member) => member !== old && member.child !== null);
    const views = await Promise.all(others.map((member) => this.view(member, 200)));
    const index = views.findIndex((view) => view?.isLeader === true);
    return others[index] ?? null;
  }

  /**
   * Stops every member and removes the data directories: SIGKILL, or with `graceful` SIGTERM (then
   * SIGKILL after 15 s), which a CPU profile needs to be written. A graceful stop of all members at
   * once is slow on both systems (the leader tries to hand over to followers that are stopping too).
   */
  async stop(graceful = false): Promise<void> {
    await Promise.all(
      this.members.map(async (member) => {
        const child = member.child;
        if (child === null) return;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            child.kill('SIGKILL');
          }, 15_000);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          child.kill(graceful ? 'SIGTERM' : 'SIGKILL');
        });
        member.child = null;
      }),
    );
    removeTempDir(this.root);
  }

  /** The command that starts member `n1`/`e1`, for the report. */
  describe(): string {
    const first = this.members[0];
    if (first === undefined) return '';
    const { command, args } = this.commandLine(first);
    return [command === process.execPath ? 'node' : command, ...args.map((arg) => (arg === RAFTLEASE_MAIN ? 'dist/src/cli/main.js' : arg))].join(' ');
  }
}

function tail(path: string): string {
  if (!existsSync(path)) return '(no log)';
  return readFileSync(path, 'utf8').split('\n').slice(-15).join('\n');
}

/** Three `raftlease node` processes: TCP transport, durable file storage (fsync per batch), HTTP API. */
export class RaftleaseCluster extends ProcessCluster {
  private constructor(
    ports: readonly number[],
    private readonly tickMs: number | null,
    private readonly nodeFlags: readonly string[],
  ) {
    super('raftlease', tickMs === null ? 'CLI defaults (tick 50 ms)' : `--tick-ms ${tickMs}`, ports);
  }

  /** `tickMs` null: the CLI default. `nodeFlags`: flags for the Node.js runtime (e.g. --cpu-prof). */
  static async create(tickMs: number | null, nodeFlags: readonly string[] = []): Promise<RaftleaseCluster> {
    return new RaftleaseCluster(await freePorts(6), tickMs, nodeFlags);
  }

  commandLine(member: Member): { command: string; args: string[] } {
    const peers = this.members.map((other) => `${other.name}=127.0.0.1:${other.peerPort}`).join(',');
    return {
      command: process.execPath,
      args: [
        ...this.nodeFlags,
        RAFTLEASE_MAIN,
        'node',
        '--id',
        member.name,
        '--listen',
        `127.0.0.1:${member.peerPort}`,
        '--http',
        `127.0.0.1:${member.clientPort}`,
        '--peers',
        peers,
        '--data-dir',
        member.dataDir,
        ...(this.tickMs === null ? [] : ['--tick-ms', String(this.tickMs)]),
        '--log-level',
        'warn',
      ],
    };
  }

  async view(member: Member, timeoutMs: number): Promise<MemberView | null> {
    try {
      const answer = await httpJson(member.clientPort, 'GET', '/v1/status', null, timeoutMs);
      if (answer.status !== 200 || typeof answer.body !== 'object' || answer.body === null) return null;
      const body = answer.body as { role?: unknown; term?: unknown; leader?: unknown; commitIndex?: unknown; appliedIndex?: unknown };
      return {
        leader: typeof body.leader === 'string' ? body.leader : null,
        isLeader: body.role === 'Leader',
        term: Number(body.term),
        commitIndex: Number(body.commitIndex),
        appliedIndex: Number(body.appliedIndex),
      };
    } catch {
      return null;
    }
  }
}

/** The etcd binary's version line, or null when `etcd` is not on the PATH. */
export function etcdVersion(): string | null {
  const result = spawnSync('etcd', ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (result.error !== undefined || result.status !== 0) return null;
  return /etcd Version: (\S+)/.exec(result.stdout)?.[1] ?? result.stdout.split('\n')[0] ?? 'unknown';
}

/** Three etcd members (WAL fsync is always on in etcd 3.4). */
export class EtcdCluster extends ProcessCluster {
  private readonly token = `raftlease-bench-${process.pid}-${Math.floor(Math.random() * 1e9).toString(36)}`;
  /** etcd member ids (decimal, as the JSON gateway prints them) to member names, learned from status answers. */
  private readonly ids = new Map<string, string>();

  private constructor(
    ports: readonly number[],
    private readonly timing: { readonly heartbeatMs: number; readonly electionMs: number } | null,
  ) {
    super('etcd', timing === null ? 'defaults (heartbeat 100 ms, election timeout 1000 ms)' : `--heartbeat-interval ${timing.heartbeatMs} --election-timeout ${timing.electionMs}`, ports);
  }

  /** `timing` null: etcd's defaults (heartbeat 100 ms, election timeout 1,000 ms). */
  static async create(timing: { readonly heartbeatMs: number; readonly electionMs: number } | null): Promise<EtcdCluster> {
    return new EtcdCluster(await freePorts(6), timing);
  }

  clientUrl(member: Member): string {
    return `http://127.0.0.1:${member.clientPort}`;
  }

  commandLine(member: Member): { command: string; args: string[] } {
    const initial = this.members.map((other) => `${other.name}=http://127.0.0.1:${other.peerPort}`).join(',');
    return {
      command: 'etcd',
      args: [
        '--name',
        member.name,
        '--data-dir',
        member.dataDir,
        '--listen-client-urls',
        this.clientUrl(member),
        '--advertise-client-urls',
        this.clientUrl(member),
        '--listen-peer-urls',
        `http://127.0.0.1:${member.peerPort}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${member.peerPort}`,
        '--initial-cluster',
        initial,
        '--initial-cluster-token',
        this.token,
        '--initial-cluster-state',
        'new',
        ...(this.timing === null ? [] : ['--heartbeat-interval', String(this.timing.heartbeatMs), '--election-timeout', String(this.timing.electionMs)]),
        '--logger',
        'zap',
        '--log-level',
        'warn',
      ],
    };
  }

  async view(member: Member, timeoutMs: number): Promise<MemberView | null> {
    try {
      const answer = await httpJson(member.clientPort, 'POST', '/v3/maintenance/status', '{}', timeoutMs);
      if (answer.status !== 200 || typeof answer.body !== 'object' || answer.body === null) return null;
      const body = answer.body as { header?: { member_id?: unknown }; leader?: unknown; raftTerm?: unknown; raftIndex?: unknown; raftAppliedIndex?: unknown };
      const self = typeof body.header?.member_id === 'string' ? body.header.member_id : '';
      this.ids.set(self, member.name);
      const leaderId = typeof body.leader === 'string' && body.leader !== '0' ? body.leader : null;
      return {
        leader: leaderId === null ? null : (this.ids.get(leaderId) ?? `id ${leaderId}`),
        isLeader: leaderId !== null && leaderId === self,
        term: Number(body.raftTerm ?? 0),
        commitIndex: Number(body.raftIndex ?? 0),
        appliedIndex: Number(body.raftAppliedIndex ?? 0),
      };
    } catch {
      return null;
    }
  }
}
