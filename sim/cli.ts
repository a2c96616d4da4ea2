/**
 * `raftlease sim run | sweep | replay`: the simulator on the command line.
 *
 * @module
 */
import { accessSync, constants, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { toJsonLines } from './linearizability.js';
import { simulate, type SimulationOptions, type SimulationResult } from './simulation.js';
import { describeResult, replayCommandLine, seedOutcome } from './describe.js';
import { runSeedsInWorkers, SweepWorkerMissingError, type SeedOutcome } from './sweep-pool.js';

export { replayCommandLine } from './describe.js';
import { renderTraceViewer } from './trace-viewer.js';

/** Where the CLI writes; injected so tests can capture it. */
export interface CliOutput {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  /** Whether stdout is a terminal (progress bar) or not (plain lines). */
  readonly isTerminal: boolean;
  /** Wall-clock milliseconds, for sweep statistics only (never inside a simulation). */
  readonly wallMs: () => number;
  /** Worker threads a sweep uses without `--workers` (the command line passes the core count; default 1). */
  readonly defaultSweepWorkers?: number;
}

/** Exit codes: 0 every check passed, 1 a violation, 2 bad arguments. */
export type ExitCode = 0 | 1 | 2;

/** Bad command-line usage; the message says what is wrong. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const SIM_USAGE = `usage:
  raftlease sim run --seed N [--nodes 3|5|7] [--workload kv|membership|lock|maintenance|none] [--duration MS] [--steps N]
                    [--drift-beyond-bound] [--lease-reads] [--json] [--history FILE] [--trace FILE]
  raftlease sim sweep --seeds A..B [--workers N] [--nodes 3|5|7] [--workload kv|membership|lock|maintenance|none] [--duration MS] [--json]
  raftlease sim replay --seed N (--trace FILE | --html FILE | both) [--nodes 3|5|7] [--workload kv|membership|lock|maintenance|none] [--duration MS]

  --duration MS   simulated milliseconds of the fault phase (default 10000); a liveness phase of up
                  to 10000 ms follows
  --steps N       bound on simulation events (default 20000000)
  --drift-beyond-bound
                  let clocks drift up to 10x the configured bound (200 ppm); such runs are labelled
  --lease-reads   serve kv reads from the leader lease (no clock jumps in such runs)
  --workers N     (sweep) simulate on N worker threads (default: one per CPU core); the output is the
                  same for any N, only the wall time differs
  --html FILE     (replay) write the run as one self-contained HTML page: a timeline with a lane per
                  node (role, term, clock offset), messages, partitions, crashes, pauses, the commit
                  index, lease holders and the violation; zoom with the wheel, drag to pan, click for details
`;

/** Runs `raftlease sim ...` with `args` (after `sim`). */
export async function runSimCli(args: readonly string[], output: CliOutput): Promise<ExitCode> {
  if (args.includes('--help') || args.includes('-h')) {
    output.out(SIM_USAGE);
    return 0;
  }
  try {
    const [command, ...rest] = args;
    switch (command) {
      case 'run':
        return await runCommand(rest, output);
      case 'sweep':
        return await sweepCommand(rest, output);
      case 'replay':
        return await replayTrace(rest, output);
      case undefined:
        throw new UsageError('missing subcommand: run, sweep or replay');
      default:
        throw new UsageError(`unknown subcommand '${command}': expected run, sweep or replay`);
    }
  } catch (error) {
    if (error instanceof UsageError || (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS'))) {
      output.err(`raftlease sim: ${error.message}\n\n${SIM_USAGE}`);
      return 2;
    }
    throw error;
  }
}

const OPTIONS = {
  seed: { type: 'string' },
  seeds: { type: 'string' },
  nodes: { type: 'string' },
  workload: { type: 'string' },
  duration: { type: 'string' },
  steps: { type: 'string' },
  json: { type: 'boolean' },
  'drift-beyond-bound': { type: 'boolean' },
  'lease-reads': { type: 'boolean' },
  history: { type: 'string' },
  trace: { type: 'string' },
  html: { type: 'string' },
  workers: { type: 'string' },
} as const;

type ParsedValues = ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];

/** Parses the flags; `allowed` lists the flags this subcommand takes besides the common ones. */
function parse(args: readonly string[], subcommand: string, allowed: readonly (keyof typeof OPTIONS)[]): ParsedValues {
  const { values } = parseArgs({ args: [...args], options: OPTIONS, allowPositionals: false, strict: true });
  const common: readonly string[] = ['nodes', 'workload', 'duration', 'steps', 'json', 'drift-beyond-bound', 'lease-reads'];
  for (const flag of Object.keys(values)) {
    if (!common.includes(flag) && !(allowed as readonly string[]).includes(flag)) throw new UsageError(`'sim ${subcommand}' does not take --${flag}`);
  }
  return values;
}

function integerOption(name: string, value: string | boolean | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^-?\d+$/.test(value)) throw new UsageError(`--${name} must be an integer, got '${String(value)}'`);
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${value}`);
  return parsed;
}

/** Refuses an output file whose folder does not exist or is not writable, before any simulation runs. */
function checkWritable(flag: string, file: string | undefined): void {
  if (file === undefined) return;
  try {
    accessSync(dirname(resolve(file)), constants.W_OK);
  } catch {
    throw new UsageError(`--${flag} ${file}: the folder does not exist or is not writable`);
  }
}

function commonOptions(values: ParsedValues): Omit<SimulationOptions, 'seed'> {
  const nodeCount = integerOption('nodes', values.nodes, 1, 9);
  if (nodeCount !== undefined && ![3, 5, 7].includes(nodeCount)) throw new UsageError(`--nodes must be 3, 5 or 7, got ${nodeCount}`);
  const workload = values.workload;
  if (workload !== undefined && workload !== 'kv' && workload !== 'membership' && workload !== 'lock' && workload !== 'maintenance' && workload !== 'none') {
    throw new UsageError(`--workload must be kv, membership, lock, maintenance or none, got '${workload}'`);
  }
  const faultPhaseMs = integerOption('duration', values.duration, 100, 86_400_000);
  const maxSteps = integerOption('steps', values.steps, 1, 1_000_000_000);
  return {
    ...(nodeCount === undefined ? {} : { nodeCount }),
    ...(workload === undefined ? {} : { workload }),
    ...(faultPhaseMs === undefined ? {} : { faultPhaseMs }),
    ...(maxSteps === undefined ? {} : { maxSteps }),
    ...(values['drift-beyond-bound'] === true ? { driftBeyondBound: true } : {}),
    ...(values['lease-reads'] === true ? { leaseReads: true } : {}),
  };
}

function summaryJson(result: SimulationResult, options: Omit<SimulationOptions, 'seed'>): object {
  return {
    seed: result.seed,
    ok: result.ok,
    violation: result.violation,
    nodes: result.nodeCount,
    steps: result.steps,
    simulatedMs: result.simulatedMs,
    livenessMs: result.livenessMs,
    committedEntries: result.committedEntries,
    historyEvents: result.history.length + result.lockHistory.length,
    linearizability: result.linearizability,
    leaseExclusion: result.leaseExclusion,
    ...(result.lockStats === null ? {} : { lockStats: result.lockStats }),
    ...(result.maintenanceStats === null ? {} : { maintenanceStats: result.maintenanceStats }),
    faults: result.faults,
    enabledFaults: result.enabledFaults,
    driftBeyondBound: result.driftBeyondBound,
    stats: result.stats,
    replay: result.ok ? null : replayCommandLine(result.seed, options),
  };
}

async function runCommand(args: readonly string[], output: CliOutput): Promise<ExitCode> {
  const values = parse(args, 'run', ['seed', 'history', 'trace']);
  const seed = integerOption('seed', values.seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  if (seed === undefined) throw new UsageError('--seed is required');
  const options = commonOptions(values);
  checkWritable('history', values.history);
  checkWritable('trace', values.trace);
  const result = await simulate({ seed, ...options, trace: values.trace !== undefined });
  if (values.history !== undefined) {
    // The lock workload's history has the same line format, with acquire/renew/release operations.
    const lines = result.lockHistory.length > 0 ? result.lockHistory.map((event) => `${JSON.stringify(event)}\n`).join('') : toJsonLines(result.history);
    writeFileSync(values.history, lines);
  }
  if (values.trace !== undefined) writeFileSync(values.trace, traceText(result));
  if (values.json === true) output.out(`${JSON.stringify(summaryJson(result, options))}\n`);
  else output.out(`${describeResult(result, options)}\n`);
  return result.ok ? 0 : 1;
}

async function replayTrace(args: readonly string[], output: CliOutput): Promise<ExitCode> {
  const values = parse(args, 'replay', ['seed', 'trace', 'html']);
  const seed = integerOption('seed', values.seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  if (seed === undefined) throw new UsageError('--seed is required');
  if (typeof values.trace !== 'string' && typeof values.html !== 'string') throw new UsageError('--trace FILE is required (or --html FILE, or both)');
  const options = commonOptions(values);
  checkWritable('trace', values.trace);
  checkWritable('html', values.html);
  const result = await simulate({ seed, ...options, trace: true, timeline: values.html !== undefined });
  const report = [describeResult(result, options)];
  if (values.trace !== undefined) {
    const lines = (result.trace ?? []).map((line) => {
      const space = line.indexOf(' ');
      return JSON.stringify({ timeNs: Number(line.slice(0, space)), event: line.slice(space + 1) });
    });
    const text = `${lines.join('\n')}\n`;
    writeFileSync(values.trace, text);
    report.push(`  trace: ${lines.length} events written to ${values.trace} (sha256 of the file ${createHash('sha256').update(text).digest('hex')})`);
  }
  if (values.html !== undefined) {
    const html = renderTraceViewer(result, { command: replayCommandLine(seed, options), workload: options.workload ?? 'kv' });
    writeFileSync(values.html, html);
    report.push(`  html: timeline written to ${values.html} (${Math.ceil(Buffer.byteLength(html) / 1024)} KiB, self-contained; open it in a browser)`);
  }
  output.out(`${report.join('\n')}\n`);
  return result.ok ? 0 : 1;
}

/** The trace as `run --trace` writes it: one event per line. Its SHA-256 is `result.traceHash`. */
function traceText(result: SimulationResult): string {
  return `${(result.trace ?? []).join('\n')}\n`;
}

/** Parses `A..B` into an inclusive range. */
export function parseSeedRange(text: string): { first: number; last: number } {
  const match = /^(-?\d+)\.\.(-?\d+)$/.exec(text);
  if (match === null) throw new UsageError(`--seeds must look like A..B, got '${text}'`);
  const first = Number(match[1]);
  const last = Number(match[2]);
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || last < first) throw new UsageError(`--seeds range ${text} is empty or out of range`);
  if (last - first >= 10_000_000) throw new UsageError(`--seeds range ${text} has more than 10,000,000 seeds; split it`);
  return { first, last };
}

async function sweepCommand(args: readonly string[], output: CliOutput): Promise<ExitCode> {
  const values = parse(args, 'sweep', ['seeds', 'workers']);
  if (typeof values.seeds !== 'string') throw new UsageError('--seeds A..B is required');
  const { first, last } = parseSeedRange(values.seeds);
  const options = commonOptions(values);
  const workers = integerOption('workers', values.workers, 1, MAX_SWEEP_WORKERS) ?? Math.min(MAX_SWEEP_WORKERS, Math.max(1, output.defaultSweepWorkers ?? 1));
  let summary: SweepSummary;
  try {
    summary = await sweep(first, last, options, output, values.json !== true, workers);
  } catch (error) {
    if (error instanceof SweepWorkerMissingError) throw new UsageError(error.message);
    throw error;
  }
  if (values.json === true) output.out(`${JSON.stringify(summary)}\n`);
  return summary.failed.length === 0 ? 0 : 1;
}

/** Most worker threads a sweep starts. */
const MAX_SWEEP_WORKERS = 64;

/** The outcome of a sweep. */
export interface SweepSummary {
  readonly seedsRun: number;
  readonly passed: number;
  readonly failed: readonly { readonly seed: number; readonly property: string; readonly message: string; readonly replay: string }[];
  readonly simulatedMs: number;
  readonly wallMs: number;
  readonly events: number;
  readonly eventsPerSecond: number;
  readonly simulatedPerWall: number;
  /** Worker threads that ran the seeds (1: the calling thread). */
  readonly workers: number;
}

/** Runs every seed in [first, last] on `workers` threads (1: in this thread), reporting progress; returns the summary. */
export async function sweep(first: number, last: number, options: Omit<SimulationOptions, 'seed'>, output: CliOutput, narrate: boolean, workers = 1): Promise<SweepSummary> {
  const startedMs = output.wallMs();
  const total = last - first + 1;
  const failed: { seed: number; property: string; message: string; replay: string }[] = [];
  let simulatedMs = 0;
  let events = 0;
  // Outcomes arrive in seed order however many workers run, so the output does not depend on them.
  const onOutcome = (outcome: SeedOutcome): void => {
    simulatedMs += outcome.simulatedMs;
    events += outcome.steps;
    if (!outcome.ok && outcome.violation !== null) {
      failed.push({ seed: outcome.seed, property: outcome.violation.property, message: outcome.violation.message, replay: replayCommandLine(outcome.seed, options) });
      if (narrate) output.out(`${output.isTerminal ? '\r\x1b[K' : ''}${outcome.description}\n`);
    }
    const done = outcome.seed - first + 1;
    if (narrate && output.isTerminal) {
      const width = 30;
      const filled = Math.round((done / total) * width);
      output.out(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} seeds, ${failed.length} failed`);
    } else if (narrate && (done % 50 === 0 || done === total)) {
      output.out(`${done}/${total} seeds, ${failed.length} failed\n`);
    }
  };
  const threads = Math.max(1, Math.min(workers, total));
  if (threads > 1) {
    await runSeedsInWorkers(first, last, options, threads, onOutcome);
  } else {
    for (let seed = first; seed <= last; seed++) {
      onOutcome(seedOutcome(await simulate({ seed, ...options }), options));
    }
  }
  const wallMs = Math.max(1, output.wallMs() - startedMs);
  const summary: SweepSummary = {
    seedsRun: total,
    passed: total - failed.length,
    failed,
    simulatedMs,
    wallMs,
    events,
    eventsPerSecond: Math.round((events / wallMs) * 1000),
    simulatedPerWall: Math.round(simulatedMs / wallMs),
    workers: threads,
  };
  if (narrate) {
    if (output.isTerminal) output.out('\n');
    output.out(
      `seeds ${summary.seedsRun}, passed ${summary.passed}, failed ${failed.length}${failed.length > 0 ? ` (${failed.map((f) => f.seed).join(', ')})` : ''}; ` +
        `simulated ${(simulatedMs / 1000).toFixed(1)} s in ${(wallMs / 1000).toFixed(1)} s wall (${summary.simulatedPerWall}x${threads > 1 ? ` on ${threads} workers` : ''}), ${summary.eventsPerSecond} events/s\n`,
    );
  }
  return summary;
}
