/**
 * The simulator's command line: `raftlease sim run | sweep | replay`. Almost everything goes
 * through `runSimCli` in-process with a captured output (fast); one block spawns the built
 * `raftlease` binary to check that the wiring in src/cli/main.ts sets the exit code and splits
 * stdout from stderr.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayCommandLine, runSimCli, type CliOutput, type ExitCode } from '../../sim/cli.js';
import { parseJsonLines } from '../../sim/linearizability.js';
import { simulate } from '../../sim/simulation.js';

/** Short runs: 1 s of faults (plus the liveness phase, which ends at the first commit). */
const SHORT = ['--duration', '1000'] as const;

interface Captured {
  readonly output: CliOutput;
  /** Every chunk written to stdout, in order. */
  readonly chunks: string[];
  readonly stdout: () => string;
  readonly stderr: () => string;
}

/** A captured output; the wall clock advances by `wallStepMs` on every read, so sweep statistics are exact. */
function capture(isTerminal = false, wallStepMs = 250): Captured {
  const chunks: string[] = [];
  const errors: string[] = [];
  let now = 0;
  return {
    output: {
      out: (text) => chunks.push(text),
      err: (text) => errors.push(text),
      isTerminal,
      wallMs: () => (now += wallStepMs),
    },
    chunks,
    stdout: () => chunks.join(''),
    stderr: () => errors.join(''),
  };
}

async function run(args: readonly string[], isTerminal = false): Promise<{ code: ExitCode; stdout: string; stderr: string; chunks: string[] }> {
  const captured = capture(isTerminal);
  const code = await runSimCli(args, captured.output);
  return { code, stdout: captured.stdout(), stderr: captured.stderr(), chunks: captured.chunks };
}

/** The arguments after `sim` of a printed `npx raftlease sim run ...` command. */
function argsOf(command: string): string[] {
  const prefix = 'npx raftlease sim ';
  expect(command.startsWith(prefix), command).toBe(true);
  return command.slice(prefix.length).split(' ');
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

let dir = '';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'raftlease-sim-cli-'));
});

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

describe('sim run', () => {
  it('exits 0 and prints a summary line with the seed and ok', async () => {
    const { code, stdout, stderr } = await run(['run', '--seed', '3', ...SHORT]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const [head] = stdout.split('\n');
    expect(head).toMatch(/^seed 3: ok — 5 nodes, \d+ events, \d+ simulated ms, faults: /);
    expect(stdout).toMatch(/linearizability ok/);
    expect(stdout).not.toMatch(/VIOLATION|replay:/);
  });

  it('--json prints exactly one JSON object with the documented fields', async () => {
    const { code, stdout, stderr } = await run(['run', '--seed', '3', '--nodes', '3', ...SHORT, '--json']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout.endsWith('\n')).toBe(true);
    expect(stdout.trimEnd().split('\n')).toHaveLength(1);
    const summary = JSON.parse(stdout) as Record<string, unknown>;
    expect(Object.keys(summary)).toEqual(
      expect.arrayContaining(['seed', 'ok', 'violation', 'nodes', 'steps', 'simulatedMs', 'livenessMs', 'committedEntries', 'historyEvents', 'linearizability', 'faults', 'enabledFaults', 'stats', 'replay']),
    );
    expect(summary).toMatchObject({ seed: 3, ok: true, violation: null, nodes: 3, linearizability: 'ok', replay: null });
    expect(Number.isInteger(summary.steps) && (summary.steps as number) > 0).toBe(true);
    expect(summary.simulatedMs).toBeGreaterThanOrEqual(1000);
    expect(Array.isArray(summary.enabledFaults)).toBe(true);
    for (const fault of summary.enabledFaults as unknown[]) expect(typeof fault).toBe('string');
  });

  it('--history writes JSON lines that parseJsonLines reads: invokes and oks with integer nanosecond times', async () => {
    const file = join(dir, 'history.jsonl');
    const { code, stdout } = await run(['run', '--seed', '3', ...SHORT, '--history', file, '--json']);
    expect(code).toBe(0);
    const summary = JSON.parse(stdout) as { historyEvents: number; simulatedMs: number };
    const history = parseJsonLines(readFileSync(file, 'utf8'));
    expect(history).toHaveLength(summary.historyEvents);
    expect(history.some((event) => event.type === 'invoke')).toBe(true);
    expect(history.some((event) => event.type === 'ok')).toBe(true);
    for (const event of history) {
      expect(Number.isSafeInteger(event.time), `time ${event.time}`).toBe(true);
      expect(event.time).toBeGreaterThanOrEqual(0);
      // Nanoseconds, not milliseconds: bounded by the simulated time in ns.
      expect(event.time).toBeLessThanOrEqual(Math.round(summary.simulatedMs * 1e6));
    }
    // At least one event is well past the first simulated millisecond, i.e. the unit is ns.
    expect(Math.max(...history.map((event) => event.time))).toBeGreaterThan(1e6);
  });

  it('--trace writes the trace, byte-identical for the same seed and different for another', async () => {
    const first = join(dir, 'trace-a.txt');
    const again = join(dir, 'trace-b.txt');
    const other = join(dir, 'trace-c.txt');
    expect(await run(['run', '--seed', '5', ...SHORT, '--trace', first])).toMatchObject({ code: 0 });
    expect(await run(['run', '--seed', '5', ...SHORT, '--trace', again])).toMatchObject({ code: 0 });
    expect(await run(['run', '--seed', '6', ...SHORT, '--trace', other])).toMatchObject({ code: 0 });
    const bytes = readFileSync(first);
    expect(bytes.length).toBeGreaterThan(0);
    expect(readFileSync(again).equals(bytes)).toBe(true);
    expect(readFileSync(other).equals(bytes)).toBe(false);
    const lines = bytes.toString('utf8').trimEnd().split('\n');
    expect(lines[0]).toMatch(/^0 start seed=5 nodes=5 faults=/);
    expect(lines.length).toBeGreaterThan(100);
    for (const line of lines) expect(line).toMatch(/^\d+ \S/);
  });

  it('exits 1 and prints the violation and a replay command that reproduces it', async () => {
    // A step bound too small for the run to finish is a Liveness violation: the one violation
    // reachable through command-line arguments alone.
    const { code, stdout, stderr } = await run(['run', '--seed', '2', ...SHORT, '--steps', '50']);
    expect(stderr).toBe('');
    expect(code).toBe(1);
    expect(stdout).toMatch(/^seed 2: VIOLATION — /);
    expect(stdout).toMatch(/Liveness at step 50 .*step bound of 50 events reached/);
    const replay = /^ {2}replay: (.*)$/m.exec(stdout)?.[1];
    expect(replay).toBe('npx raftlease sim run --seed 2 --duration 1000 --steps 50');

    const again = await run([...argsOf(replay ?? ''), '--json']);
    expect(again.code).toBe(1);
    const summary = JSON.parse(again.stdout) as { ok: boolean; violation: { property: string; step: number }; replay: string };
    expect(summary.ok).toBe(false);
    expect(summary.violation).toMatchObject({ property: 'Liveness', step: 50 });
    expect(summary.replay).toBe(replay);
  });
});

describe('usage errors exit 2 and name the problem', () => {
  const cases: readonly { readonly name: string; readonly args: readonly string[]; readonly message: RegExp }[] = [
    { name: 'missing subcommand', args: [], message: /missing subcommand/ },
    { name: 'unknown subcommand', args: ['frobnicate'], message: /unknown subcommand 'frobnicate'/ },
    { name: 'missing --seed', args: ['run'], message: /--seed is required/ },
    { name: 'missing --seed value', args: ['run', '--seed'], message: /--seed/ },
    { name: 'non-integer --seed', args: ['run', '--seed', '1.5'], message: /--seed must be an integer, got '1\.5'/ },
    { name: 'non-numeric --seed', args: ['run', '--seed', 'abc'], message: /--seed must be an integer, got 'abc'/ },
    { name: '--nodes 4', args: ['run', '--seed', '1', '--nodes', '4'], message: /--nodes must be 3, 5 or 7, got 4/ },
    { name: '--workload foo', args: ['run', '--seed', '1', '--workload', 'foo'], message: /--workload must be kv, membership, lock, maintenance or none, got 'foo'/ },
    { name: '--duration below the minimum', args: ['run', '--seed', '1', '--duration', '50'], message: /--duration must be between 100 and/ },
    { name: '--steps 0', args: ['run', '--seed', '1', '--steps', '0'], message: /--steps must be between 1 and/ },
    { name: 'missing --seeds', args: ['sweep'], message: /--seeds A\.\.B is required/ },
    { name: '--seeds 5..1', args: ['sweep', '--seeds', '5..1'], message: /--seeds range 5\.\.1 is empty/ },
    { name: '--seeds garbage', args: ['sweep', '--seeds', 'garbage'], message: /--seeds must look like A\.\.B, got 'garbage'/ },
    { name: 'too many seeds', args: ['sweep', '--seeds', '0..10000000'], message: /more than 10,000,000 seeds/ },
    { name: 'an unknown flag', args: ['run', '--seed', '1', '--bogus'], message: /--bogus/ },
    { name: 'a positional argument', args: ['run', '--seed', '1', 'extra'], message: /'extra'/ },
    { name: '`run --seeds` (a sweep flag)', args: ['run', '--seeds', '1..2'], message: /'sim run' does not take --seeds/ },
    { name: '`sweep --seed` (a run flag)', args: ['sweep', '--seeds', '1..2', '--seed', '1'], message: /'sim sweep' does not take --seed/ },
    { name: '`sweep --trace` (a run flag)', args: ['sweep', '--seeds', '1..2', '--trace', 'x'], message: /'sim sweep' does not take --trace/ },
    { name: '`replay --history` (a run flag)', args: ['replay', '--seed', '1', '--trace', 'x', '--history', 'y'], message: /'sim replay' does not take --history/ },
    { name: 'replay without --trace', args: ['replay', '--seed', '1'], message: /--trace FILE is required/ },
  ];

  for (const { name, args, message } of cases) {
    it(name, async () => {
      const { code, stdout, stderr } = await run(args);
      expect(code).toBe(2);
      expect(stdout).toBe('');
      expect(stderr).toMatch(/^raftlease sim: /);
      expect(stderr).toMatch(message);
      expect(stderr).toContain('usage:');
    });
  }
});

describe('sim sweep', () => {
  it('prints plain progress lines and a summary when stdout is not a terminal', async () => {
    const { code, stdout, stderr } = await run(['sweep', '--seeds', '1..3', ...SHORT]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).not.toContain('\r');
    expect(stdout).not.toContain('\x1b');
    const lines = stdout.trimEnd().split('\n');
    expect(lines).toContain('3/3 seeds, 0 failed');
    expect(lines.at(-1)).toMatch(/^seeds 3, passed 3, failed 0; simulated \d+\.\d s in \d+\.\d s wall \(\d+x\), \d+ events\/s$/);
  });

  it('--json prints exactly one JSON object with the statistics and no progress', async () => {
    const { code, stdout } = await run(['sweep', '--seeds', '1..3', ...SHORT, '--json']);
    expect(code).toBe(0);
    expect(stdout.trimEnd().split('\n')).toHaveLength(1);
    const summary = JSON.parse(stdout) as { seedsRun: number; passed: number; failed: unknown[]; simulatedMs: number; wallMs: number; events: number; eventsPerSecond: number };
    expect(summary).toMatchObject({ seedsRun: 3, passed: 3, failed: [] });
    expect(summary.simulatedMs).toBeGreaterThanOrEqual(3 * 1000);
    // The injected wall clock advances 250 ms per read: one read before and one after the sweep.
    expect(summary.wallMs).toBe(250);
    expect(summary.events).toBeGreaterThan(0);
    expect(summary.eventsPerSecond).toBe(Math.round((summary.events / summary.wallMs) * 1000));
  });

  it('draws a progress bar with carriage returns on a terminal', async () => {
    const { code, stdout, chunks } = await run(['sweep', '--seeds', '1..2', ...SHORT], true);
    expect(code).toBe(0);
    expect(chunks.filter((chunk) => chunk.startsWith('\r['))).toEqual([
      `\r[${'#'.repeat(15)}${'.'.repeat(15)}] 1/2 seeds, 0 failed`,
      `\r[${'#'.repeat(30)}] 2/2 seeds, 0 failed`,
    ]);
    expect(stdout).toMatch(/\n(seeds 2, passed 2, failed 0; [^\n]*)\n$/);
  });

  it('--workers must be between 1 and 64; more workers than seeds start only one per seed', async () => {
    const zero = await run(['sweep', '--seeds', '1..2', ...SHORT, '--workers', '0']);
    expect(zero.code).toBe(2);
    expect(zero.stderr).toContain('--workers must be between 1 and 64, got 0');
    // One seed needs no worker thread: it runs in this thread (these tests run from the sources).
    const single = await run(['sweep', '--seeds', '4..4', ...SHORT, '--workers', '8', '--json']);
    expect(single.code).toBe(0);
    expect(JSON.parse(single.stdout)).toMatchObject({ seedsRun: 1, workers: 1 });
  });

  it('says how to build when the worker script is missing (running from the TypeScript sources)', async () => {
    const { code, stderr } = await run(['sweep', '--seeds', '1..2', ...SHORT, '--workers', '2']);
    expect(code).toBe(2);
    expect(stderr).toMatch(/the sweep's worker script .*sweep-worker\.js does not exist; build the package \(npm run build\) or run the sweep with --workers 1/);
  });

  it('exits 1 on a violation, narrating each failing seed with its replay command', async () => {
    const { code, stdout } = await run(['sweep', '--seeds', '1..2', ...SHORT, '--steps', '50']);
    expect(code).toBe(1);
    expect(stdout).toMatch(/^seed 1: VIOLATION/m);
    expect(stdout).toMatch(/^seed 2: VIOLATION/m);
    expect(stdout).toContain('  replay: npx raftlease sim run --seed 1 --duration 1000 --steps 50\n');
    expect(stdout).toContain('  replay: npx raftlease sim run --seed 2 --duration 1000 --steps 50\n');
    expect(stdout).toMatch(/seeds 2, passed 0, failed 2 \(1, 2\); /);

    const terminal = await run(['sweep', '--seeds', '1..1', ...SHORT, '--steps', '50'], true);
    expect(terminal.code).toBe(1);
    // The bar's line is cleared before the violation is printed over it.
    expect(terminal.chunks.some((chunk) => chunk.startsWith('\r\x1b[Kseed 1: VIOLATION'))).toBe(true);

    const json = await run(['sweep', '--seeds', '1..2', ...SHORT, '--steps', '50', '--json']);
    expect(json.code).toBe(1);
    const summary = JSON.parse(json.stdout) as { passed: number; failed: { seed: number; property: string; message: string; replay: string }[] };
    expect(summary.passed).toBe(0);
    expect(summary.failed).toEqual([
      { seed: 1, property: 'Liveness', message: 'step bound of 50 events reached', replay: 'npx raftlease sim run --seed 1 --duration 1000 --steps 50' },
      { seed: 2, property: 'Liveness', message: 'step bound of 50 events reached', replay: 'npx raftlease sim run --seed 2 --duration 1000 --steps 50' },
    ]);
  });
});

describe('sim replay', () => {
  it('writes one JSON object per trace event, with integer timeNs and an event string, and reports the sha256', async () => {
    const file = join(dir, 'replay.jsonl');
    const { code, stdout, stderr } = await run(['replay', '--seed', '4', '--trace', file, ...SHORT]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^seed 4: ok — /);
    const lines = readFileSync(file, 'utf8').split('\n');
    expect(lines.pop()).toBe('');
    expect(lines.length).toBeGreaterThan(100);
    for (const line of lines) {
      const record = JSON.parse(line) as Record<string, unknown>;
      expect(Object.keys(record)).toEqual(['timeNs', 'event']);
      expect(Number.isSafeInteger(record.timeNs), line).toBe(true);
      expect(typeof record.event).toBe('string');
    }
    expect(JSON.parse(lines[0] ?? '')).toMatchObject({ timeNs: 0, event: expect.stringMatching(/^start seed=4 /) as unknown });
    const reported = new RegExp(`trace: ${lines.length} events written to (.*) \\(sha256 of the file ([0-9a-f]{64})\\)`).exec(stdout);
    expect(reported?.[1]).toBe(file);

    // The reported hash is the written file's, so sha256sum confirms it.
    expect(reported?.[2]).toBe(sha256(readFileSync(file, 'utf8')));
    const raw = join(dir, 'replay-raw.txt');
    expect((await run(['run', '--seed', '4', ...SHORT, '--trace', raw])).code).toBe(0);
    const rawText = readFileSync(raw, 'utf8');
    expect(rawText.trimEnd().split('\n')).toHaveLength(lines.length);
    expect(sha256(rawText)).toBe((await simulate({ seed: 4, faultPhaseMs: 1000, trace: true })).traceHash);
  });
});

describe('replayCommandLine', () => {
  it('names every option that was given, in a form `sim run` accepts', async () => {
    const command = replayCommandLine(9, { nodeCount: 3, workload: 'none', faultPhaseMs: 1000, maxSteps: 40 });
    expect(command).toBe('npx raftlease sim run --seed 9 --nodes 3 --workload none --duration 1000 --steps 40');
    const { code, stdout } = await run([...argsOf(command), '--json']);
    expect(code).toBe(1);
    expect(JSON.parse(stdout)).toMatchObject({ seed: 9, nodes: 3, ok: false, replay: command, linearizability: 'skipped' });
  });

  it('formats the replay of a safety violation from a deliberately broken core', async () => {
    // Raft options cannot be passed on the command line, so the broken core runs through `simulate`.
    const result = await simulate({ seed: 1, faultPhaseMs: 1000, raft: { testOnlyBugs: ['ReplyBeforePersistingVote'] } });
    expect(result.violation?.property).toBe('DurableBeforeSend');
    expect(replayCommandLine(result.seed, { faultPhaseMs: 1000 })).toBe('npx raftlease sim run --seed 1 --duration 1000');
  });

  // A negative seed must be written `--seed=-5`: `--seed -5` reads as an option.
  it('prints a replay command that `sim run` accepts for a negative seed', async () => {
    expect((await run(['run', '--seed=-5', ...SHORT, '--steps', '50'])).code).toBe(1);
    const command = replayCommandLine(-5, { faultPhaseMs: 1000, maxSteps: 50 });
    const { code, stderr } = await run(argsOf(command));
    expect(stderr).toBe('');
    expect(code).toBe(1);
  });
});

const MAIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUILT = existsSync(MAIN);

function raftlease(args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [MAIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe.skipIf(!BUILT)(BUILT ? 'the raftlease binary (dist/src/cli/main.js)' : 'the raftlease binary — SKIPPED: dist/src/cli/main.js is missing; run `npm run build`', () => {
  it('`raftlease sim run --seed 3` exits 0 and prints the summary on stdout', () => {
    const { status, stdout, stderr } = raftlease(['sim', 'run', '--seed', '3', ...SHORT]);
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(stdout).toMatch(/^seed 3: ok — 5 nodes, /);
  });

  it('`sim sweep --workers 2` prints exactly what `--workers 1` prints, apart from the wall time and worker count', () => {
    const strip = (text: string): string => text.replace(/ in \d+\.\d s wall \(\d+x( on \d+ workers)?\), \d+ events\/s/, '');
    const one = raftlease(['sim', 'sweep', '--seeds', '1..5', ...SHORT, '--workers', '1']);
    const two = raftlease(['sim', 'sweep', '--seeds', '1..5', ...SHORT, '--workers', '2']);
    expect(one.stderr).toBe('');
    expect(two.stderr).toBe('');
    expect(one.status).toBe(0);
    expect(two.status).toBe(0);
    expect(two.stdout).toMatch(/\(\d+x on 2 workers\)/);
    expect(strip(two.stdout)).toBe(strip(one.stdout));
  });

  it('`sim sweep --workers 3 --json` reports the failing seeds in seed order, as one worker does', () => {
    const args = ['sim', 'sweep', '--seeds', '1..7', ...SHORT, '--steps', '200', '--json'];
    const one = raftlease([...args, '--workers', '1']);
    const three = raftlease([...args, '--workers', '3']);
    expect(one.status).toBe(1);
    expect(three.status).toBe(1);
    type Summary = { seedsRun: number; passed: number; failed: { seed: number }[]; simulatedMs: number; events: number; workers: number };
    const a = JSON.parse(one.stdout) as Summary;
    const b = JSON.parse(three.stdout) as Summary;
    expect(a.workers).toBe(1);
    expect(b.workers).toBe(3);
    expect(a.failed.length).toBeGreaterThan(0);
    expect(b.failed).toEqual(a.failed);
    expect(b.failed.map((failure) => failure.seed)).toEqual([...b.failed.map((failure) => failure.seed)].sort((x, y) => x - y));
    expect({ seedsRun: b.seedsRun, passed: b.passed, simulatedMs: b.simulatedMs, events: b.events }).toEqual({ seedsRun: a.seedsRun, passed: a.passed, simulatedMs: a.simulatedMs, events: a.events });
  });

  it('`raftlease sim run` with a bad argument exits 2 with the message on stderr', () => {
    const { status, stdout, stderr } = raftlease(['sim', 'run', '--seed', 'x']);
    expect(status).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/^raftlease sim: --seed must be an integer, got 'x'/);
    expect(stderr).toContain('usage:');
  });
});

describe('help and unusable output paths', () => {
  it('prints the usage and exits 0 for --help after a subcommand', async () => {
    const { code, stdout } = await run(['run', '--help']);
    expect(code).toBe(0);
    expect(stdout).toContain('raftlease sim run --seed N');
  });

  it('refuses an output file in a folder that does not exist, before simulating, with exit code 2', async () => {
    const { code, stderr } = await run(['run', '--seed', '1', ...SHORT, '--trace', '/nonexistent-folder/trace.txt']);
    expect(code).toBe(2);
    expect(stderr).toContain('--trace /nonexistent-folder/trace.txt: the folder does not exist or is not writable');
  });
});

describe('sim run --workload lock', () => {
  it('--history writes the lock client history: JSON lines with exactly process, type, f, key, value, time', async () => {
    const file = join(dir, 'lock-history.jsonl');
    const { code, stdout, stderr } = await run(['run', '--seed', '3', '--workload', 'lock', '--duration', '2000', '--history', file]);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^seed 3: ok — /);
    const text = readFileSync(file, 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.slice(0, -1).split('\n');
    expect(lines.length).toBeGreaterThan(0);
    const events = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    let previousTime = -Infinity;
    for (const [position, event] of events.entries()) {
      const where = `line ${position + 1}: ${lines[position] ?? ''}`;
      expect(Object.keys(event).sort(), where).toEqual(['f', 'key', 'process', 'time', 'type', 'value']);
      expect(['acquire', 'renew', 'release'], where).toContain(event.f);
      expect(['invoke', 'ok', 'fail', 'info'], where).toContain(event.type);
      expect(Number.isSafeInteger(event.process), where).toBe(true);
      expect(typeof event.key, where).toBe('string');
      expect(Number.isSafeInteger(event.time), where).toBe(true);
      expect(event.time as number, where).toBeGreaterThanOrEqual(previousTime);
      previousTime = event.time as number;
    }
    // A real lock workload: acquisitions were attempted and some succeeded.
    expect(events.some((event) => event.f === 'acquire' && event.type === 'invoke')).toBe(true);
    expect(events.some((event) => event.f === 'acquire' && event.type === 'ok')).toBe(true);
  });

  it('--workload bogus is a usage error that names lock among the accepted values', async () => {
    const { code, stdout, stderr } = await run(['run', '--seed', '3', '--workload', 'bogus']);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/--workload must be [^\n]*\block\b[^\n]*, got 'bogus'/);
  });
});
