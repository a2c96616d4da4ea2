/**
 * The in-process suites (core, lease, sim) as figures for the combined report: each suite runs as
 * before and prints its lines; the lines are also read back into figures (etcd: null). A line that no
 * longer matches stops the benchmark, so the report cannot silently drop a figure.
 *
 * @module
 */
import { benchCore, type CoreBenchOptions } from './core.js';
import { figure, type Figure } from './figures.js';
import { benchLease, type LeaseBenchOptions } from './lease.js';
import { benchSim, type SimBenchOptions } from './sim.js';

const NUMBER = String.raw`([\d,]+(?:\.\d+)?)`;
const SPREAD = String.raw`median ${NUMBER} ([^(]+?) \(min ${NUMBER}, max ${NUMBER}, (\d+) runs\)`;

function num(text: string | undefined): number {
  return Number((text ?? '').replace(/,/g, ''));
}

function spread(match: RegExpExecArray, at: number): { median: number; unit: string; min: number; max: number } {
  return { median: num(match[at]), unit: match[at + 1] ?? '', min: num(match[at + 2]), max: num(match[at + 3]) };
}

/** Runs a suite, printing its lines, and returns them. */
async function capture(run: (print: (line: string) => void) => Promise<void>, print: (line: string) => void): Promise<string[]> {
  const lines: string[] = [];
  await run((line) => {
    lines.push(line);
    print(line);
  });
  return lines;
}

function parsed(suite: string, figures: Figure[], lines: readonly string[]): Figure[] {
  if (figures.length === 0) throw new Error(`could not read any figure from the '${suite}' suite's output:\n${lines.join('\n')}`);
  return figures;
}

/** `npm run bench -- core`: commits/s and commit latency at each level. */
export async function coreFigures(options: CoreBenchOptions, command: string, print: (line: string) => void): Promise<Figure[]> {
  const lines = await capture((out) => benchCore(options, command, out), print);
  const pattern = new RegExp(String.raw`^\s*(\d+) in flight: ${SPREAD}; commit latency p50 ${NUMBER} ms, p99 ${NUMBER} ms`);
  const figures: Figure[] = [];
  const label = `in-process core${options.encode ? ', wire codec on' : ''}`;
  for (const line of lines) {
    const match = pattern.exec(line);
    if (match === null) continue;
    const level = match[1] ?? '?';
    const { median, min, max } = spread(match, 2);
    // The targets of docs/benchmarks.md, for the memory transport without the wire codec.
    const goal = options.encode ? undefined : level === '1' ? 30_000 : level === '64' ? 200_000 : undefined;
    figures.push(
      figure({
        suite: 'core',
        name: `${label}: commits/s, ${level} in flight`,
        note: `median of ${options.runs} runs, min–max ${min}–${max}`,
        unit: 'commits/s',
        raftlease: median,
        etcd: null,
        command,
        ...(goal === undefined ? {} : { target: `≥ ${goal.toLocaleString('en-US')}`, met: median >= goal }),
      }),
    );
    figures.push(figure({ suite: 'core', name: `${label}: commit latency p50, ${level} in flight`, unit: 'ms', raftlease: num(match[7]), etcd: null, command }));
    figures.push(figure({ suite: 'core', name: `${label}: commit latency p99, ${level} in flight`, unit: 'ms', raftlease: num(match[8]), etcd: null, command }));
  }
  return parsed('core', figures, lines);
}

/** `npm run bench -- lease`: acquires/s and operation latency at each level. */
export async function leaseFigures(options: LeaseBenchOptions, command: string, print: (line: string) => void): Promise<Figure[]> {
  const lines = await capture((out) => benchLease(options, command, out), print);
  const latency = String.raw`p50 ${NUMBER} / p99 ${NUMBER} ms`;
  const pattern = new RegExp(String.raw`^\s*(\d+) in flight: ${SPREAD}; tryAcquire ${latency}; renew ${latency}; release ${latency}`);
  const figures: Figure[] = [];
  for (const line of lines) {
    const match = pattern.exec(line);
    if (match === null) continue;
    const level = match[1] ?? '?';
    const { median, min, max } = spread(match, 2);
    const name = `in-process lease (memory transport)`;
    figures.push(
      figure({
        suite: 'lease',
        name: `${name}: acquire-renew-release cycles/s, ${level} in flight`,
        note: `median of ${options.runs} runs, min–max ${min}–${max}`,
        unit: 'cycles/s',
        raftlease: median,
        etcd: null,
        command,
      }),
    );
    for (const [offset, op] of [
      [7, 'tryAcquire'],
      [9, 'renew'],
      [11, 'release'],
    ] as const) {
      figures.push(figure({ suite: 'lease', name: `${name}: ${op} p50, ${level} in flight`, unit: 'ms', raftlease: num(match[offset]), etcd: null, command }));
      figures.push(figure({ suite: 'lease', name: `${name}: ${op} p99, ${level} in flight`, unit: 'ms', raftlease: num(match[offset + 1]), etcd: null, command }));
    }
  }
  return parsed('lease', figures, lines);
}

/** `npm run bench -- sim`: simulated time per wall time and events/s per variant. */
export async function simFigures(options: SimBenchOptions, command: string, print: (line: string) => void): Promise<Figure[]> {
  const lines = await capture((out) => benchSim(options, command, out), print);
  const pattern = new RegExp(String.raw`^\s*(.+?): ${SPREAD}; ${SPREAD}`);
  const figures: Figure[] = [];
  for (const line of lines) {
    const match = pattern.exec(line);
    if (match === null) continue;
    const variant = match[1] ?? '?';
    const speed = spread(match, 2);
    const rate = spread(match, 7);
    figures.push(
      figure({
        suite: 'sim',
        name: `simulation speed, ${variant}`,
        note: `median of ${options.runs} runs, min–max ${speed.min}–${speed.max}`,
        unit: 'x real time',
        raftlease: speed.median,
        etcd: null,
        command,
        // The target is the machine's: a sweep on every core. One thread's figure is shown beside it.
        ...(variant.startsWith('sim sweep') ? { target: '≥ 1,000x', met: speed.median >= 1000 } : {}),
      }),
    );
    figures.push(figure({ suite: 'sim', name: `simulated events/s, ${variant}`, note: `median of ${options.runs} runs`, unit: 'events/s', raftlease: rate.median, etcd: null, command }));
  }
  return parsed('sim', figures, lines);
}
