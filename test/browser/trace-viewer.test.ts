/**
 * The trace viewer in a real browser: Debian's Chromium, driven by playwright-core (never a
 * downloaded browser), opens a page of a run that broke lease exclusion (the deliberately broken
 * lessor) and one of a passing run, with every network request refused. It checks that the lanes and
 * the violation are drawn, clicks events and reads the details panel, zooms, pans, and saves
 * screenshots to test/browser/artifacts/ (ignored by git).
 *
 * Without Chromium the tests skip and say how to install it (`apt-get install chromium`); set
 * CHROMIUM_PATH to use another binary.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simulate, type SimulationOptions } from '../../sim/simulation.js';
import { renderTraceViewer } from '../../sim/trace-viewer.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const SKIP_NOTE = `Chromium not found at ${CHROMIUM}: install Debian's package with \`apt-get install chromium\` (or set CHROMIUM_PATH) to run the trace viewer's browser tests`;
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));

const BROKEN_LOCK: Omit<SimulationOptions, 'seed'> = { nodeCount: 5, workload: 'lock', faultPhaseMs: 5_000, testOnlyLessorExpiresEarly: true };

if (!HAVE_CHROMIUM) console.warn(`test/browser/trace-viewer.test.ts: ${SKIP_NOTE}`);

let browser: Browser | null = null;
let dir = '';
let violationPage = '';
let passingPage = '';
let violationProperty = '';

/** A page with every request that is not the file itself refused (the viewer must need none). */
async function open(file: string): Promise<{ page: Page; errors: string[]; requests: string[] }> {
  if (browser === null) throw new Error('no browser');
  const page = await browser.newPage({ viewport: { width: 1500, height: 950 } });
  const errors: string[] = [];
  const requests: string[] = [];
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url === pathToFileURL(file).href) return route.continue();
    requests.push(url);
    return route.abort();
  });
  await page.goto(pathToFileURL(file).href);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
  return { page, errors, requests };
}

/**
 * Clicks the first element matching `selector` at a point where it is on top (not hidden under a
 * message arrow or a marker), with a real mouse click.
 */
async function clickItem(page: Page, selector: string): Promise<void> {
  const point = await page.evaluate((sel) => {
    // Runs in the page (the project compiles without the DOM library, hence the narrow types).
    interface PageElement {
      getBoundingClientRect(): { left: number; top: number; width: number; height: number; bottom: number };
      contains(other: PageElement): boolean;
    }
    const page = globalThis as unknown as {
      document: { querySelectorAll(selector: string): ArrayLike<PageElement>; elementFromPoint(x: number, y: number): PageElement | null };
      innerWidth: number;
      innerHeight: number;
    };
    const document = page.document;
    for (const element of Array.from(document.querySelectorAll(sel))) {
      const rect = element.getBoundingClientRect();
      const candidates: [number, number][] = [];
      for (let i = 0; i < 20; i++) {
        // Inside the box, away from its edges (a click lands on whole pixels).
        const f = (i + 0.5) / 20;
        // Both diagonals (for arrows) and a grid (for boxes).
        candidates.push([rect.left + f * rect.width, rect.top + f * rect.height], [rect.left + f * rect.width, rect.bottom - f * rect.height]);
        for (let j = 1; j < 6; j++) candidates.push([rect.left + f * rect.width, rect.top + (j / 6) * rect.height]);
      }
      for (const [x, y] of candidates) {
        if (x < 0 || y < 0 || x >= page.innerWidth || y >= page.innerHeight) continue;
        const hit = document.elementFromPoint(x, y);
        if (hit !== null && (hit === element || element.contains(hit))) return { x, y };
      }
    }
    return null;
  }, selector);
  if (point === null) throw new Error(`nothing matching ${selector} can be clicked`);
  await page.mouse.click(point.x, point.y);
}

async function viewOf(page: Page): Promise<{ start: number; end: number }> {
  const svg = page.locator('[data-timeline]');
  return { start: Number(await svg.getAttribute('data-view-start')), end: Number(await svg.getAttribute('data-view-end')) };
}

describe('the trace viewer in Chromium', () => {
  beforeAll(async () => {
    if (!HAVE_CHROMIUM) return;
    dir = mkdtempSync(join(tmpdir(), 'raftlease-viewer-browser-'));
    mkdirSync(ARTIFACTS, { recursive: true });
    let seed = 1;
    for (; seed <= 1_000; seed++) if ((await simulate({ ...BROKEN_LOCK, seed })).violation !== null) break;
    const broken = await simulate({ ...BROKEN_LOCK, seed, trace: true, timeline: true });
    violationProperty = broken.violation?.property ?? '';
    violationPage = join(dir, 'violation.html');
    writeFileSync(violationPage, renderTraceViewer(broken, { workload: 'lock', command: `simulate({ seed: ${seed}, workload: 'lock', testOnlyLessorExpiresEarly: true })` }));
    const passing = await simulate({ seed: 42, trace: true, timeline: true });
    expect(passing.ok).toBe(true);
    passingPage = join(dir, 'passing.html');
    writeFileSync(passingPage, renderTraceViewer(passing, { workload: 'kv', command: 'npx raftlease sim run --seed 42' }));
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('draws a lane per node and marks the violation; clicking shows details; wheel, buttons and drag zoom and pan', async (context) => {
    context.skip(!HAVE_CHROMIUM, SKIP_NOTE);
    expect(violationProperty).toBe('LeaseExclusion');
    const { page, errors, requests } = await open(violationPage);

    // Lanes, with role bands, clock lines and the lease rows.
    for (const node of ['n1', 'n2', 'n3', 'n4', 'n5']) {
      const lane = page.locator(`[data-lane="${node}"]`);
      await expect.poll(() => lane.count()).toBe(1);
      expect(await lane.locator('[data-kind="role"]').count()).toBeGreaterThan(0);
      expect(await lane.locator('[data-kind="clock"]').count()).toBe(1);
    }
    expect(await page.locator('[data-lane]').count()).toBe(5);
    expect(await page.locator('[data-kind="role"][data-role="L"]').count()).toBeGreaterThan(0);
    expect(await page.locator('[data-kind="message"]').count()).toBeGreaterThan(50);
    expect(await page.locator('[data-chart="commit"] polyline').count()).toBeGreaterThan(0);
    expect(await page.locator('[data-lease-key] [data-kind="lease"]').count()).toBeGreaterThan(0);
    expect(await page.locator('[data-kind="lease"].overlap').count()).toBeGreaterThanOrEqual(2);

    // The violation: a red line and a label with property and message.
    const violation = page.locator('[data-violation]');
    expect(await violation.count()).toBe(1);
    expect(await violation.getAttribute('data-property')).toBe('LeaseExclusion');
    expect(await violation.locator('.violation-line').count()).toBe(1);
    expect(await violation.locator('.violation-text').textContent()).toMatch(/^LeaseExclusion: 'lock\d'/);
    expect(await page.locator('#summary').textContent()).toContain('VIOLATION: LeaseExclusion');
    await page.screenshot({ path: join(ARTIFACTS, 'trace-viewer-violation.png'), fullPage: true });

    // Click the violation's label: the details panel names the property and the message.
    const details = page.locator('[data-details]');
    await clickItem(page, '[data-violation] .violation-box');
    await expect.poll(() => details.getAttribute('data-details-kind')).toBe('violation');
    expect(await details.textContent()).toContain('LeaseExclusion');
    expect(await details.textContent()).toContain('believed it held the lease');

    // Click an event marker (a node's start): its trace line.
    await clickItem(page, '[data-kind="event"][data-event="start"]');
    await expect.poll(() => details.getAttribute('data-details-kind')).toBe('event');
    expect(await details.textContent()).toMatch(/start n\d incarnation=0/);

    // Click a lease: owner and fencing token.
    await clickItem(page, '[data-kind="lease"].overlap');
    await expect.poll(() => details.getAttribute('data-details-kind')).toBe('lease');
    expect(await details.textContent()).toContain('fencing token');

    // Zoom to the violation (button): the view narrows around it, and messages become clickable.
    const whole = await viewOf(page);
    const atNs = Number(await violation.getAttribute('data-time-ns'));
    await page.locator('[data-action="violation"]').click();
    await expect.poll(async () => (await viewOf(page)).end - (await viewOf(page)).start).toBeLessThan((whole.end - whole.start) / 5);
    const near = await viewOf(page);
    expect(near.start).toBeLessThan(atNs);
    expect(near.end).toBeGreaterThan(atNs);
    await clickItem(page, '[data-kind="message"]');
    await expect.poll(() => details.getAttribute('data-details-kind')).toBe('message');
    expect(await details.textContent()).toMatch(/from(n\d)to(n\d)term\d+/);
    expect(await details.textContent()).toContain('sent at');
    await page.screenshot({ path: join(ARTIFACTS, 'trace-viewer-violation-zoomed.png'), fullPage: true });

    // Wheel over the plot zooms in around the cursor; the button zooms out; a drag pans.
    await page.locator('[data-action="fit"]').click();
    await expect.poll(() => viewOf(page)).toEqual(whole);
    const box = await page.locator('[data-timeline]').boundingBox();
    if (box === null) throw new Error('no timeline box');
    await page.mouse.move(box.x + box.width / 2, box.y + 100);
    await page.mouse.wheel(0, -600);
    await expect.poll(async () => (await viewOf(page)).end - (await viewOf(page)).start).toBeLessThan((whole.end - whole.start) * 0.6);
    const zoomed = await viewOf(page);
    await page.locator('[data-action="zoom-out"]').click();
    await expect.poll(async () => (await viewOf(page)).end - (await viewOf(page)).start).toBeGreaterThan(zoomed.end - zoomed.start);
    const beforeDrag = await viewOf(page);
    await page.mouse.move(box.x + box.width / 2, box.y + 100);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2 - 200, box.y + 100, { steps: 5 });
    await page.mouse.up();
    await expect.poll(async () => (await viewOf(page)).start).toBeGreaterThan(beforeDrag.start);
    await page.locator('[data-action="zoom-in"]').click();

    expect(errors).toEqual([]);
    expect(requests).toEqual([]);
    await page.close();
  });

  it('draws a passing run: lanes, roles, crashes or pauses if any, and no violation', async (context) => {
    context.skip(!HAVE_CHROMIUM, SKIP_NOTE);
    const { page, errors, requests } = await open(passingPage);
    expect(await page.locator('[data-lane]').count()).toBe(5);
    expect(await page.locator('[data-violation]').count()).toBe(0);
    expect(await page.locator('[data-action="violation"]').isHidden()).toBe(true);
    expect(await page.locator('#summary').textContent()).toMatch(/^ok · 5 nodes, workload kv/);
    expect(await page.locator('[data-kind="role"][data-role="L"]').count()).toBeGreaterThan(0);
    expect(await page.locator('[data-kind="crash"]').count()).toBeGreaterThan(0);
    expect(await page.locator('[data-kind="pause"]').count()).toBeGreaterThan(0);

    // A click in a lane's role band: the node's state at that time (role, commit index, clock offset).
    await clickItem(page, '[data-lane="n1"] [data-kind="role"]');
    await expect.poll(() => page.locator('[data-details]').getAttribute('data-details-kind')).toBe('role');
    const text = await page.locator('[data-details]').textContent();
    expect(text).toContain('commit index then');
    expect(text).toContain('clock offset then');

    // The heartbeat toggle redraws without heartbeats.
    await page.locator('#show-heartbeats').uncheck();
    await expect.poll(() => page.locator('[data-kind="message"][data-type="Heartbeat"]').count()).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, 'trace-viewer-passing.png'), fullPage: true });
    expect(errors).toEqual([]);
    expect(requests).toEqual([]);
    await page.close();
  });
});
