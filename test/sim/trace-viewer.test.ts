/**
 * The trace viewer without a browser: the page is self-contained (no URL, no external script or
 * stylesheet), embeds its data as JSON with a lane for every node and the violation, is
 * byte-identical for the same seed, and recording the timeline leaves the run's trace unchanged.
 * test/browser/trace-viewer.test.ts opens the same pages in Chromium.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSimCli, type CliOutput } from '../../sim/cli.js';
import { simulate, type SimulationOptions, type SimulationResult } from '../../sim/simulation.js';
import { DEFAULT_MAX_MESSAGE_ARROWS, parseTraceEvents, renderTraceViewer, traceViewerData } from '../../sim/trace-viewer.js';

/** The broken lessor (counts half of each TTL), which the lock checkers catch within a few seeds. */
const BROKEN_LOCK: Omit<SimulationOptions, 'seed'> = { nodeCount: 5, workload: 'lock', faultPhaseMs: 5_000, testOnlyLessorExpiresEarly: true };
const PASSING: SimulationOptions = { seed: 3, nodeCount: 3, faultPhaseMs: 2_000 };

/** The first seed of `options` whose run finds a violation. */
async function firstViolatingSeed(options: Omit<SimulationOptions, 'seed'>, maxSeeds = 1_000): Promise<number> {
  for (let seed = 1; seed <= maxSeeds; seed++) {
    if ((await simulate({ ...options, seed })).violation !== null) return seed;
  }
  throw new Error(`no violation in ${maxSeeds} seeds`);
}

/** The JSON a page embeds. */
function embeddedData(html: string): Record<string, unknown> {
  const match = /<script type="application\/json" id="trace-data">([\s\S]*?)<\/script>/.exec(html);
  expect(match, 'the page embeds its data in <script type="application/json">').not.toBeNull();
  return JSON.parse(match?.[1] ?? 'null') as Record<string, unknown>;
}

let violating: SimulationResult;
let violatingSeed = 0;
let passing: SimulationResult;

beforeAll(async () => {
  violatingSeed = await firstViolatingSeed(BROKEN_LOCK);
  violating = await simulate({ ...BROKEN_LOCK, seed: violatingSeed, trace: true, timeline: true });
  passing = await simulate({ ...PASSING, trace: true, timeline: true });
}, 120_000);

describe('the trace viewer page', () => {
  it('is self-contained: no URL anywhere, no external script, stylesheet, image or frame', () => {
    for (const html of [renderTraceViewer(violating), renderTraceViewer(passing)]) {
      expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
      expect(html).not.toMatch(/https?:\/\//i);
      expect(html).not.toMatch(/\b(src|href)\s*=/i);
      expect(html).not.toMatch(/<(link|img|iframe|object|embed)\b/i);
      expect(html).not.toMatch(/@import|url\((?!#)/i);
      // Two scripts: the embedded JSON and the inline script, neither loaded from anywhere.
      const scripts = html.match(/<script\b[^>]*>/g) ?? [];
      expect(scripts).toEqual(['<script type="application/json" id="trace-data">', '<script>']);
      expect(html).toContain("default-src 'none'");
    }
  });

  it('embeds a lane for every node, the roles, messages and leases, and the violation with its property and message', () => {
    expect(violating.violation?.property).toBe('LeaseExclusion');
    const html = renderTraceViewer(violating, { workload: 'lock' });
    const data = embeddedData(html);
    expect(data.nodes).toEqual(['n1', 'n2', 'n3', 'n4', 'n5']);
    const roles = data.roles as [number, number, string, number, number, number][];
    for (let node = 0; node < 5; node++) {
      expect(roles.some((row) => row[1] === node && row[2] === 'F'), `a Follower band for n${node + 1}`).toBe(true);
    }
    expect(roles.some((row) => row[2] === 'L'), 'someone led').toBe(true);
    expect((data.messages as unknown[]).length).toBeGreaterThan(100);
    expect((data.commits as unknown[]).length).toBeGreaterThan(0);
    expect(data.keys).toEqual(['lock0', 'lock1']);
    const leases = data.leases as unknown[][];
    expect(leases.some((lease) => lease[3] === 0), 'lease table intervals').toBe(true);
    expect(leases.some((lease) => lease[3] === 1), 'client belief intervals').toBe(true);
    const violation = data.violation as { property: string; message: string; atNs: number; detectedNs: number; overlap: { key: string; fromNs: number; toNs: number } | null };
    expect(violation.property).toBe('LeaseExclusion');
    expect(violation.message).toBe(violating.violation?.message);
    expect(violation.detectedNs).toBe(violating.violation?.timeNs);
    // Detected at the end of the run; marked where the overlap began.
    expect(violation.overlap?.key).toMatch(/^lock\d$/);
    expect(violation.atNs).toBe(violation.overlap?.fromNs);
    expect(violation.atNs).toBeLessThanOrEqual(violation.detectedNs);
    // The page draws what the browser test looks for.
    for (const hook of ['data-lane=', 'data-violation', 'data-details', 'data-kind="message"', 'data-action="zoom-in"']) expect(html).toContain(hook);
    // A passing run has no violation.
    expect(embeddedData(renderTraceViewer(passing)).violation).toBeNull();
  });

  it('is byte-identical for the same seed (two runs, two renderings)', async () => {
    const again = await simulate({ ...BROKEN_LOCK, seed: violatingSeed, trace: true, timeline: true });
    expect(renderTraceViewer(again, { workload: 'lock' })).toBe(renderTraceViewer(violating, { workload: 'lock' }));
    const passingAgain = await simulate({ ...PASSING, trace: true, timeline: true });
    expect(renderTraceViewer(passingAgain)).toBe(renderTraceViewer(passing));
    expect(renderTraceViewer(passing)).not.toBe(renderTraceViewer(violating));
  });

  it('leaves the trace of a seed unchanged (recording the timeline only observes)', async () => {
    for (const options of [PASSING, { ...BROKEN_LOCK, seed: violatingSeed }, { seed: 11, workload: 'maintenance', faultPhaseMs: 2_000 } as const]) {
      const plain = await simulate({ ...options, trace: true });
      const recorded = await simulate({ ...options, trace: true, timeline: true });
      expect(plain.timeline).toBeNull();
      expect(recorded.timeline).not.toBeNull();
      expect(recorded.traceHash).toBe(plain.traceHash);
      expect(recorded.steps).toBe(plain.steps);
      expect(recorded.violation).toEqual(plain.violation);
    }
  });

  it('thins messages beyond the bound, keeps election messages, and says so on the page', () => {
    const full = traceViewerData(violating);
    expect(full.messagesThinned).toBeNull();
    expect(renderTraceViewer(violating)).not.toContain('Messages thinned');
    const thin = traceViewerData(violating, { maxMessages: 200 });
    const messages = thin.messages as [number, number, number, number][];
    const types = thin.messageTypes as string[];
    expect(messages.length).toBeLessThanOrEqual(200);
    expect(thin.messagesTotal).toBe(full.messagesTotal);
    expect(thin.messagesThinned).toMatch(/^Messages thinned: \d+ of \d+ message arrows are drawn/);
    const votes = (rows: [number, number, number, number][], names: string[]): number => rows.filter((row) => names[row[3]] === 'VoteRequest').length;
    expect(votes(messages, types)).toBe(votes(full.messages as [number, number, number, number][], full.messageTypes as string[]));
    // Sorted by send time after thinning.
    for (let index = 1; index < messages.length; index++) expect(messages[index]?.[0]).toBeGreaterThanOrEqual(messages[index - 1]?.[0] ?? 0);
    expect(renderTraceViewer(violating, { maxMessages: 200 })).toContain('Messages thinned');
    expect(DEFAULT_MAX_MESSAGE_ARROWS).toBe(20_000);
  });

  it('stays well under a few MB for a default 10 s run', async () => {
    const result = await simulate({ seed: 42, trace: true, timeline: true });
    const html = renderTraceViewer(result);
    expect(html.length).toBeLessThan(3_000_000);
  });

  it('refuses a run recorded without the timeline', async () => {
    const result = await simulate({ ...PASSING, trace: true });
    expect(() => renderTraceViewer(result)).toThrow(/trace: true and timeline: true/);
  });
});

describe('parseTraceEvents', () => {
  it('keeps starts, crashes, pauses, clock jumps, partitions, transfers, membership and snapshots; leaves deliveries and plain disk writes out', () => {
    const events = parseTraceEvents(
      [
        '0 start seed=1 nodes=3 faults=crash',
        '0 start n1 incarnation=0',
        '5 recv n1->n2 Heartbeat term=1',
        '6 drop n1->n3 Heartbeat',
        '7 disk n2 entries=1 hard=1/n1/0',
        '8 disk n2 snapshot=10 compact=8',
        '9 crash n3 torn=none',
        '10 pause n2 until=500',
        '11 clock-jump n1 +20ms',
        '12 partition one-way [n1 n2]',
        '13 transfer n1 -> n2',
        '14 membership n2: AddLearner n3',
        '15 restore n3 snapshot=10',
        '16 heal-network',
        '17 heal',
        '18 caught-up index=12',
      ],
      ['n1', 'n2', 'n3'],
    );
    expect(events.map((event) => [event.timeNs, event.node, event.kind])).toEqual([
      [0, -1, 'run-start'],
      [0, 0, 'start'],
      [8, 1, 'snapshot'],
      [9, 2, 'crash'],
      [10, 1, 'pause'],
      [11, 0, 'clock-jump'],
      [12, -1, 'partition'],
      [13, 0, 'transfer'],
      [14, 1, 'membership'],
      [15, 2, 'restore'],
      [16, -1, 'heal-network'],
      [17, -1, 'heal'],
      [18, -1, 'caught-up'],
    ]);
  });
});

describe('sim replay --html', () => {
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'raftlease-viewer-'));
  });
  afterAll(() => {
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  async function run(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const output: CliOutput = { out: (text) => out.push(text), err: (text) => err.push(text), isTerminal: false, wallMs: () => 0 };
    const code = await runSimCli(args, output);
    return { code, stdout: out.join(''), stderr: err.join('') };
  }

  it('writes the page (alone or with --trace), the same bytes for the same seed and flags', async () => {
    const first = join(dir, 'a.html');
    const second = join(dir, 'b.html');
    const trace = join(dir, 'trace.jsonl');
    const alone = await run(['replay', '--seed', '3', '--nodes', '3', '--duration', '2000', '--html', first]);
    expect(alone.stderr).toBe('');
    expect(alone.code).toBe(0);
    expect(alone.stdout).toMatch(new RegExp(`html: timeline written to ${first.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(\\d+ KiB, self-contained`));
    expect(alone.stdout).not.toContain('trace:');
    const both = await run(['replay', '--seed', '3', '--nodes', '3', '--duration', '2000', '--html', second, '--trace', trace]);
    expect(both.code).toBe(0);
    expect(both.stdout).toContain('trace: ');
    expect(readFileSync(first, 'utf8')).toBe(readFileSync(second, 'utf8'));
    const html = readFileSync(first, 'utf8');
    expect(html).toContain('npx raftlease sim run --seed 3 --nodes 3 --duration 2000');
    expect(html).toBe(renderTraceViewer(passing, { command: 'npx raftlease sim run --seed 3 --nodes 3 --duration 2000', workload: 'kv' }));
  });

  it('needs --trace or --html, and refuses --html in a missing folder', async () => {
    expect(await run(['replay', '--seed', '1'])).toMatchObject({ code: 2, stderr: expect.stringMatching(/--trace FILE is required \(or --html FILE, or both\)/) as unknown });
    expect(await run(['replay', '--seed', '1', '--html', '/nonexistent-folder/x.html'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--html /nonexistent-folder/x.html: the folder does not exist or is not writable') as unknown });
    expect(await run(['run', '--seed', '1', '--html', 'x.html'])).toMatchObject({ code: 2, stderr: expect.stringContaining("'sim run' does not take --html") as unknown });
  });
});
