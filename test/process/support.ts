/**
 * Helpers for the tests that run the built `raftlease` binary as real processes: free loopback
 * ports, node processes with their output in files, one-shot CLI runs, small HTTP helpers, and a
 * registry of every child spawned so that nothing outlives the test file.
 *
 * The binary is dist/src/cli/main.js, built by test/global-setup.ts before the suite.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** The built command line. */
export const MAIN = join(ROOT, 'dist', 'src', 'cli', 'main.js');

// ---------------------------------------------------------------------------------------------
// Children: every process spawned here is registered and killed by killAllChildren (and at exit).

const children = new Set<ChildProcess>();

function register(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

/** SIGKILLs every child spawned through this module that is still running. */
export function killAllChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

process.once('exit', killAllChildren);

// ---------------------------------------------------------------------------------------------
// Ports

function canBind(port: number): Promise<ReturnType<typeof createServer> | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => {
      resolve(null);
    });
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      resolve(server);
    });
  });
}

/**
 * A base port B such that B + offset is free on 127.0.0.1 for every offset. Bases are drawn below
 * the kernel's ephemeral range (32768+ on Linux), so outgoing connections cannot take the ports
 * between this check and the moment a node binds them.
 */
export async function freeBasePort(offsets: readonly number[]): Promise<number> {
  const span = Math.max(...offsets);
  // Bounded: a few dozen random draws; a busy machine rarely has more than a handful taken.
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * (32_000 - 20_000 - span));
    const servers = await Promise.all(offsets.map((offset) => canBind(base + offset)));
    await Promise.all(servers.map((server) => (server === null ? Promise.resolve() : new Promise<void>((resolve) => server.close(() => { resolve(); })))));
    if (servers.every((server) => server !== null)) return base;
  }
  throw new Error(`no free set of loopback ports (offsets ${offsets.join(', ')}) after 50 attempts`);
}

/** `count` free, consecutive loopback ports. */
export async function freePorts(count: number): Promise<number[]> {
  const offsets = Array.from({ length: count }, (_, index) => index);
  const base = await freeBasePort(offsets);
  return offsets.map((offset) => base + offset);
}

// ---------------------------------------------------------------------------------------------
// One-shot CLI runs

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** True when the run was killed because it outlived its timeout. */
  readonly timedOut: boolean;
}

/** A running `raftlease` command: its process and its eventual result. */
export interface CliRun {
  readonly child: ChildProcess;
  readonly result: Promise<CliResult>;
}

/** Starts `node dist/src/cli/main.js ...args`, capturing its output (SIGKILL after `timeoutMs`). */
export function spawnCli(args: readonly string[], options: { readonly timeoutMs?: number; readonly cwd?: string; readonly env?: NodeJS.ProcessEnv } = {}): CliRun {
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  register(child);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, options.timeoutMs ?? 20_000);
  const result = new Promise<CliResult>((resolve, reject) => {
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    // 'close' (not 'exit'): the output streams are complete.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), timedOut });
    });
  });
  return { child, result };
}

/** Runs `node dist/src/cli/main.js ...args` to completion (SIGKILL after `timeoutMs`). */
export function runCli(args: readonly string[], options: { readonly timeoutMs?: number; readonly cwd?: string; readonly env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return spawnCli(args, options).result;
}

// ---------------------------------------------------------------------------------------------
// Long-running node processes

export interface NodeSpec {
  readonly id: string;
  readonly raftPort: number;
  readonly httpPort: number;
  /** The --peers list. */
  readonly peers: string;
  readonly dataDir: string;
  /** Where `<id>.out` (stdout) and `<id>.err` (stderr) go, appended across restarts. */
  readonly logDir: string;
  readonly tickMs?: number;
  readonly extraArgs?: readonly string[];
}

export interface ExitRecord {
  readonly incarnation: number;
  readonly pid: number | undefined;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The test asked for it (a kill or a stop); anything else is a crash. */
  readonly expected: boolean;
  readonly atMs: number;
}

/** One cluster member run as `raftlease node`, restartable from its data directory. */
export class NodeProcess {
  readonly id: string;
  readonly httpPort: number;
  readonly outFile: string;
  readonly errFile: string;
  readonly exits: ExitRecord[] = [];
  private child: ChildProcess | null = null;
  private incarnation = 0;
  private expecting = false;
  private exited: Promise<ExitRecord> | null = null;

  constructor(readonly spec: NodeSpec) {
    this.id = spec.id;
    this.httpPort = spec.httpPort;
    this.outFile = join(spec.logDir, `${spec.id}.out`);
    this.errFile = join(spec.logDir, `${spec.id}.err`);
  }

  get running(): boolean {
    return this.child !== null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts a new incarnation (the previous one must have exited). */
  start(): void {
    if (this.child !== null) throw new Error(`${this.id} is already running`);
    this.incarnation++;
    const incarnation = this.incarnation;
    const banner = `--- ${this.id} incarnation ${incarnation} started at ${performance.now().toFixed(0)} ms ---\n`;
    appendFileSync(this.outFile, banner);
    appendFileSync(this.errFile, banner);
    const out = openSync(this.outFile, 'a');
    const err = openSync(this.errFile, 'a');
    const { spec } = this;
    const args = [
      MAIN,
      'node',
      '--id',
      spec.id,
      '--listen',
      `127.0.0.1:${spec.raftPort}`,
      '--http',
      `127.0.0.1:${spec.httpPort}`,
      '--peers',
      spec.peers,
      '--data-dir',
      spec.dataDir,
      ...(spec.tickMs === undefined ? [] : ['--tick-ms', String(spec.tickMs)]),
      ...(spec.extraArgs ?? []),
    ];
    let child: ChildProcess;
    try {
      // The node writes straight into the files: its output never waits on this process.
      child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', out, err] });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    register(child);
    this.child = child;
    this.expecting = false;
    this.exited = new Promise<ExitRecord>((resolve) => {
      child.once('exit', (code, signal) => {
        const record: ExitRecord = { incarnation, pid: child.pid, code, signal, expected: this.expecting, atMs: performance.now() };
        this.exits.push(record);
        if (this.child === child) {
          this.child = null;
          this.exited = null;
        }
        resolve(record);
      });
    });
  }

  /** Sends `signal` to the running incarnation and resolves when it has exited. */
  async kill(signal: NodeJS.Signals): Promise<ExitRecord> {
    const child = this.child;
    const exited = this.exited;
    if (child === null || exited === null) throw new Error(`${this.id} is not running`);
    this.expecting = true;
    child.kill(signal);
    return exited;
  }

  /** Sends `signal` (e.g. SIGSTOP, SIGCONT) to the running incarnation without waiting for anything. */
  signal(signal: NodeJS.Signals): void {
    if (this.child === null) throw new Error(`${this.id} is not running`);
    this.child.kill(signal);
  }

  /** SIGTERM, and SIGKILL if the node has not exited after `graceMs`. */
  async stop(graceMs = 15_000): Promise<ExitRecord | null> {
    const child = this.child;
    if (child === null) return null;
    // A stopped (SIGSTOP) process would hold the SIGTERM until it runs again.
    child.kill('SIGCONT');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    try {
      return await this.kill('SIGTERM');
    } finally {
      clearTimeout(timer);
    }
  }

  /** The last lines of the node's stdout and stderr. */
  logTail(lines = 30): string {
    return [this.outFile, this.errFile].map((file) => `==> ${file} <==\n${tailOf(file, lines)}`).join('\n');
  }
}

/** The last `lines` lines of a file ('' if it does not exist). */
export function tailOf(file: string, lines: number): string {
  if (!existsSync(file)) return '';
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

// ---------------------------------------------------------------------------------------------
// HTTP

/** An HTTP answer, or the reason there was none. */
export type HttpOutcome = { readonly ok: true; readonly status: number; readonly body: unknown } | { readonly ok: false; readonly reason: string };

/** One request to a node's HTTP API on 127.0.0.1; never rejects. Uses fetch's keep-alive pool. */
export async function http(port: number, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 2_000): Promise<HttpOutcome> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      signal: AbortSignal.timeout(timeoutMs),
      ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text) as unknown;
    } catch {
      // Not JSON (e.g. /metrics): keep the text.
    }
    return { ok: true, status: response.status, body: parsed };
  } catch (error) {
    const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return { ok: false, reason: `${error instanceof Error ? error.name : 'Error'}${cause}` };
  }
}

/** `GET /v1/status` of one node. */
export interface NodeStatus {
  readonly id: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly commitIndex: number;
  readonly appliedIndex: number;
}

/** The node's status, or null when it does not answer. */
export async function status(port: number, timeoutMs = 1_000): Promise<NodeStatus | null> {
  const outcome = await http(port, 'GET', '/v1/status', undefined, timeoutMs);
  if (!outcome.ok || outcome.status !== 200) return null;
  return outcome.body as NodeStatus;
}

// ---------------------------------------------------------------------------------------------
// Time

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Polls `probe` every `intervalMs` until it returns a value other than null/undefined; throws after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined>, timeoutMs: number, intervalMs = 50): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  // Bounded by the deadline.
  for (;;) {
    const value = await probe();
    if (value !== null && value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Nearest-rank percentile of an ascending list (p in [0, 1]). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** "min … / median … / p90 … / max …" of a list of milliseconds. */
export function distribution(values: readonly number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return 'n=0';
  const ms = (value: number): string => `${Math.round(value)} ms`;
  return `n=${sorted.length} min ${ms(sorted[0] ?? 0)} / median ${ms(percentile(sorted, 0.5))} / p90 ${ms(percentile(sorted, 0.9))} / max ${ms(sorted.at(-1) ?? 0)}`;
}
