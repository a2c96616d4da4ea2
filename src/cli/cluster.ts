/**
 * `raftlease cluster`: a local cluster of `raftlease node` processes on loopback with durable storage
 * and the demo maintenance schedules, narrated live: who leads, who holds which lock, which node ran
 * which occurrence. Halfway through it kills (SIGKILL) the node running a job, or else the leader,
 * and restarts it, so the narrative shows a failover and a resumed occurrence. This is `npm start`.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { UsageError, decimalInteger } from './node.js';

export const CLUSTER_USAGE = `usage: raftlease cluster [options]

Starts a local cluster of 'raftlease node' processes on 127.0.0.1 with durable storage and the demo
maintenance schedules, and narrates it. Halfway through, the node running a job (or the leader) is
killed with SIGKILL and restarted.

options:
  --nodes N          cluster size, 1–7 (default 3)
  --base-port P      Raft ports P+1..P+N, HTTP ports P+101..P+100+N (default 7000)
  --data-dir DIR     keep data and node logs here (default: a temporary directory, removed at the end)
  --duration S       seconds to run, 0 for until Ctrl-C (default 60)
  --no-chaos         do not kill and restart a node
  --tick-ms N        Raft tick in ms (default 50)
  -h, --help         show this help
`;

interface ClusterConfig {
  readonly nodes: number;
  readonly basePort: number;
  readonly dataDir: string | null;
  readonly durationS: number;
  readonly chaos: boolean;
  readonly tickMs: number;
}

export function resolveClusterConfig(argv: readonly string[]): ClusterConfig {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        nodes: { type: 'string' },
        'base-port': { type: 'string' },
        'data-dir': { type: 'string' },
        duration: { type: 'string' },
        'no-chaos': { type: 'boolean' },
        'tick-ms': { type: 'string' },
      },
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const integer = (flag: string, text: string | undefined, fallback: number, min: number, max: number): number => {
    if (text === undefined) return fallback;
    const value = decimalInteger(text);
    if (!Number.isInteger(value) || value < min || value > max) throw new UsageError(`--${flag} must be an integer in [${min}, ${max}], got '${text}'`);
    return value;
  };
  return {
    nodes: integer('nodes', values.nodes, 3, 1, 7),
    basePort: integer('base-port', values['base-port'], 7000, 1, 65_000),
    dataDir: values['data-dir'] ?? null,
    durationS: integer('duration', values.duration, 60, 0, 86_400),
    chaos: values['no-chaos'] !== true,
    tickMs: integer('tick-ms', values['tick-ms'], 50, 1, 10_000),
  };
}

interface Member {
  readonly id: string;
  readonly raftPort: number;
  readonly httpPort: number;
  process: ChildProcess | null;
}

interface Status {
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly commitIndex: number;
}

interface Outcome {
  readonly occurrenceMs: number;
  readonly result: string;
  readonly owner: string | null;
  readonly attempts: number;
}

interface ScheduleView {
  readonly schedule: { readonly id: string };
  readonly holder: string | null;
  readonly current: { readonly occurrenceMs: number; readonly owner: string; readonly attempts: number } | null;
  readonly recentOutcomes: readonly Outcome[];
}

/** Runs the narrated cluster. Resolves with the exit code. */
export async function runCluster(config: ClusterConfig, print: (line: string) => void): Promise<number> {
  const dataDir = config.dataDir ?? mkdtempSync(join(tmpdir(), 'raftlease-cluster-'));
  mkdirSync(dataDir, { recursive: true });
  const members: Member[] = Array.from({ length: config.nodes }, (_, index) => ({
    id: `n${index + 1}`,
    raftPort: config.basePort + 1 + index,
    httpPort: config.basePort + 101 + index,
    process: null,
  }));
  const peers = members.map((member) => `${member.id}=127.0.0.1:${member.raftPort}`).join(',');
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const startedAt = performance.now();
  const stamp = (): string => `${((performance.now() - startedAt) / 1_000).toFixed(1).padStart(6)} s`;
  const say = (line: string): void => {
    print(`${stamp()}  ${line}`);
  };

  const start = (member: Member): void => {
    const log = createWriteStream(join(dataDir, `${member.id}.log`), { flags: 'a' });
    const child = spawn(
      process.execPath,
      [
        main,
        'node',
        '--id',
        member.id,
        '--listen',
        `127.0.0.1:${member.raftPort}`,
        '--http',
        `127.0.0.1:${member.httpPort}`,
        '--peers',
        peers,
        '--data-dir',
        join(dataDir, member.id),
        '--tick-ms',
        String(config.tickMs),
        '--demo-schedules',
      ],
      // The narrator's status requests carry no token: a token inherited from this shell would lock
      // it out of its own cluster.
      { stdio: ['ignore', 'pipe', 'pipe'], env: withoutBearerToken(process.env) },
    );
    // Both streams into one file: it ends once the child's stdio has closed, and the check at the end
    // reads it only then.
    child.stdout.pipe(log, { end: false });
    child.stderr.pipe(log, { end: false });
    logsWritten.push(
      new Promise<void>((resolve) => {
        log.once('finish', resolve);
        log.once('error', () => {
          resolve();
        });
      }),
    );
    child.once('close', () => {
      log.end();
    });
    child.once('exit', (code, signal) => {
      if (member.process === child) member.process = null;
      if (signal !== 'SIGKILL' && signal !== 'SIGTERM' && code !== 0) {
        const failure = `${member.id} exited with ${signal ?? `code ${String(code)}`}`;
        failures.push(failure);
        say(`${failure}; see ${join(dataDir, `${member.id}.log`)}`);
      }
    });
    member.process = child;
  };

  const failures: string[] = [];
  const logsWritten: Promise<void>[] = [];
  say(`starting ${config.nodes} nodes on 127.0.0.1 (Raft ports ${members[0]?.raftPort ?? 0}–${members.at(-1)?.raftPort ?? 0}, HTTP ${members[0]?.httpPort ?? 0}–${members.at(-1)?.httpPort ?? 0}); data and logs in ${dataDir}`);
  for (const member of members) start(member);

  let leader: string | null = null;
  let leaderSeen = false;
  let term = 0;
  const holders = new Map<string, string | null>();
  const seenOutcomes = new Set<string>();
  const running = new Map<string, string>();
  let killed: { member: Member; atMs: number } | null = null;
  const kills: { readonly node: string; readonly atWallMs: number }[] = [];
  let chaosDone = !config.chaos || config.nodes < 3;
  const signals = { received: false };
  const onSignal = (): void => {
    signals.received = true;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  // Bounded by the duration (or a signal): one observation round per second.
  while (!signals.received && (config.durationS === 0 || performance.now() - startedAt < config.durationS * 1_000)) {
    await sleep(1_000);
    const statuses = await Promise.all(members.map((member) => (member.process === null ? Promise.resolve(null) : getJson<Status>(member.httpPort, '/v1/status'))));
    const leaderStatus = statuses.find((status) => status?.role === 'Leader') ?? null;
    const leaderId = leaderStatus === null ? null : members[statuses.indexOf(leaderStatus)]?.id ?? null;
    if (leaderId !== leader || (leaderStatus !== null && leaderStatus.term !== term)) {
      if (leaderId === null) say('no leader');
      else say(`${leaderId} leads (term ${leaderStatus?.term ?? 0}, commit index ${leaderStatus?.commitIndex ?? 0})`);
      leader = leaderId;
      if (leaderId !== null) leaderSeen = true;
      term = leaderStatus?.term ?? term;
    }
    const viewer = members.find((member, index) => member.process !== null && statuses[index] !== null);
    const view = viewer === undefined ? null : await getJson<{ schedules: ScheduleView[] }>(viewer.httpPort, '/v1/maintenance/schedules');
    for (const schedule of view?.schedules ?? []) {
      const id = schedule.schedule.id;
      if (holders.get(id) !== schedule.holder) {
        say(schedule.holder === null ? `lock ${id} is free` : `lock ${id} held by ${schedule.holder}`);
        holders.set(id, schedule.holder);
      }
      if (schedule.current !== null && schedule.holder !== null) {
        const key = `${id}@${schedule.current.occurrenceMs}#${schedule.current.attempts}`;
        if (running.get(id) !== key) {
          running.set(id, key);
          say(`${id} ${time(schedule.current.occurrenceMs)} running on ${schedule.current.owner}${schedule.current.attempts > 1 ? ` (attempt ${schedule.current.attempts}, resumed from its checkpoint)` : ''}`);
        }
      }
      for (const outcome of schedule.recentOutcomes) {
        const key = `${id}@${outcome.occurrenceMs}`;
        if (seenOutcomes.has(key)) continue;
        seenOutcomes.add(key);
        say(`${id} ${time(outcome.occurrenceMs)} ${outcome.result}${outcome.owner === null ? '' : ` on ${outcome.owner}`}${outcome.attempts > 1 ? ` after ${outcome.attempts} attempts` : ''}`);
      }
    }
    const elapsedS = (performance.now() - startedAt) / 1_000;
    const chaosAtS = Math.min(20, Math.max(10, config.durationS / 2 - 10));
    if (!chaosDone && killed === null && elapsedS > chaosAtS) {
      // Kill the node running a job (the occurrence must resume elsewhere); if none runs for a while,
      // the leader.
      const busy = view?.schedules.find((schedule) => schedule.current !== null && schedule.holder !== null)?.holder ?? null;
      const target = busy ?? (elapsedS > chaosAtS + 15 ? leader : null);
      const victim = members.find((member) => member.id === target && member.process !== null);
      if (victim !== undefined) {
        say(`SIGKILL ${victim.id}${busy !== null ? ' while it runs a job' : ' (the leader)'}`);
        victim.process?.kill('SIGKILL');
        victim.process = null;
        killed = { member: victim, atMs: performance.now() };
        kills.push({ node: victim.id, atWallMs: Date.now() });
      }
    }
    if (killed !== null && performance.now() - killed.atMs > 8_000) {
      say(`restarting ${killed.member.id} from its data directory`);
      start(killed.member);
      killed = null;
      chaosDone = true;
    }
  }
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  say('stopping the cluster (SIGTERM; leaders hand over first)');
  await Promise.all(members.map((member) => stopMember(member)));
  await Promise.race([Promise.all(logsWritten), sleep(5_000)]);
  // From the nodes' own logs, not the replicated records (which settle an occurrence once by
  // construction): every job start and end each node reported, with its process's clock.
  const runs = jobRunsFromLogs(members.map((member) => ({ node: member.id, text: readLog(join(dataDir, `${member.id}.log`)) })), kills);
  const twice = ranTwice(runs);
  say(`${seenOutcomes.size} occurrences settled; ${runs.length} job runs in the logs; ${twice.length === 0 ? 'none ran twice' : `RAN TWICE: ${twice.join('; ')}`}`);
  if (config.durationS >= 10 && !leaderSeen) failures.push('no leader was ever seen');
  for (const failure of failures) say(`FAILED: ${failure}`);
  const ok = twice.length === 0 && failures.length === 0;
  if (config.dataDir === null) {
    if (ok) rmSync(dataDir, { recursive: true, force: true });
    else say(`kept ${dataDir} for its logs`);
  }
  return ok ? 0 : 1;
}

function withoutBearerToken(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  delete copy.RAFTLEASE_BEARER_TOKEN;
  return copy;
}

function readLog(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** One job run as a node's log tells it: from its start line to its end line (or the node's kill). */
export interface LoggedRun {
  readonly node: string;
  readonly scheduleId: string;
  readonly occurrence: string;
  readonly fencingToken: number;
  readonly startMs: number;
  readonly endMs: number;
  readonly result: string | null;
}

/**
 * The job runs in the nodes' JSON-lines logs. A run without an end line ends at the first kill of its
 * node after its start, or at the node's last line.
 */
export function jobRunsFromLogs(logs: readonly { readonly node: string; readonly text: string }[], kills: readonly { readonly node: string; readonly atWallMs: number }[]): LoggedRun[] {
  const runs: LoggedRun[] = [];
  for (const { node, text } of logs) {
    const open = new Map<string, { scheduleId: string; occurrence: string; fencingToken: number; startMs: number }>();
    let lastMs = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      let record: { time?: unknown; msg?: unknown; scheduleId?: unknown; occurrence?: unknown; fencingToken?: unknown; result?: unknown };
      try {
        record = JSON.parse(line) as typeof record;
      } catch {
        continue;
      }
      if (typeof record.time !== 'number') continue;
      lastMs = record.time;
      if (typeof record.msg !== 'string' || typeof record.scheduleId !== 'string' || typeof record.occurrence !== 'string' || typeof record.fencingToken !== 'number') continue;
      const key = `${record.scheduleId}@${record.occurrence}#${record.fencingToken}`;
      if (/ (running|resuming) occurrence$/.test(record.msg)) {
        open.set(key, { scheduleId: record.scheduleId, occurrence: record.occurrence, fencingToken: record.fencingToken, startMs: record.time });
      } else if (/ occurrence (ok|error|aborted)$/.test(record.msg)) {
        const started = open.get(key);
        if (started === undefined) continue;
        open.delete(key);
        runs.push({ node, ...started, endMs: record.time, result: typeof record.result === 'string' ? record.result : null });
      }
    }
    for (const started of open.values()) {
      const kill = kills.find((candidate) => candidate.node === node && candidate.atWallMs >= started.startMs);
      runs.push({ node, ...started, endMs: kill?.atWallMs ?? lastMs, result: null });
    }
  }
  return runs;
}

/** Occurrences that finished ok more than once, or ran on two nodes at overlapping times. */
export function ranTwice(runs: readonly LoggedRun[]): string[] {
  const problems: string[] = [];
  const byOccurrence = new Map<string, LoggedRun[]>();
  for (const run of runs) {
    const key = `${run.scheduleId} ${run.occurrence}`;
    const list = byOccurrence.get(key);
    if (list === undefined) byOccurrence.set(key, [run]);
    else list.push(run);
  }
  for (const [key, list] of byOccurrence) {
    const ok = list.filter((run) => run.result === 'ok');
    if (ok.length > 1) problems.push(`${key} finished ok ${ok.length} times (${ok.map((run) => run.node).join(', ')})`);
    for (const [index, first] of list.entries()) {
      for (const second of list.slice(index + 1)) {
        if (first.node !== second.node && first.startMs < second.endMs && second.startMs < first.endMs) {
          problems.push(`${key} ran on ${first.node} (token ${first.fencingToken}) and ${second.node} (token ${second.fencingToken}) at once`);
        }
      }
    }
  }
  return problems;
}

async function stopMember(member: Member): Promise<void> {
  const child = member.process;
  if (child === null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function time(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(11, 19);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function getJson<T>(port: number, path: string): Promise<T | null> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(800) });
    if (!response.ok) return null;
    return (await response.json()) as T;
  } catch {
    return null;
  }
}
