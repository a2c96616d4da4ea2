/**
 * Benchmark figures and their reports: the JSON object (`--json`), the Markdown table and a
 * self-contained HTML page with latency distribution charts (inline SVG, no network), written to
 * bench/results/.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { percentile } from './stats.js';

/** One figure: raftlease's value, etcd's (null where etcd was not run) and raftlease / etcd. */
export interface Figure {
  /** Which suite measured it: core, lease, sim or compare. */
  readonly suite: string;
  readonly name: string;
  readonly unit: string;
  readonly raftlease: number | null;
  readonly etcd: number | null;
  /** raftlease / etcd; null where either is missing. */
  readonly ratio: number | null;
  /** The command that reproduces the figure. */
  readonly command: string;
  /** The target from the product issue, in words (e.g. "ratio ≤ 0.4"). */
  readonly target?: string;
  /** Whether this run meets the target (null: no target or not measurable). */
  readonly met?: boolean | null;
  /** The per-run values behind a median, for the spread. */
  readonly runs?: { readonly raftlease?: readonly number[]; readonly etcd?: readonly number[] };
  readonly note?: string;
}

/** Builds a figure, computing the ratio. */
export function figure(fields: Omit<Figure, 'ratio'>): Figure {
  const { suite, name, unit, raftlease, etcd, ...rest } = fields;
  const ratio = raftlease !== null && etcd !== null && etcd !== 0 && Number.isFinite(raftlease) && Number.isFinite(etcd) ? raftlease / etcd : null;
  // Key order for readers of the JSON: the values and the ratio first.
  return { suite, name, unit, raftlease, etcd, ratio, ...rest };
}

/** Sorted samples of one distribution, for the charts. */
export interface Distribution {
  readonly title: string;
  readonly unit: string;
  readonly series: readonly { readonly label: string; readonly samples: readonly number[] }[];
}

/** Everything one invocation measured. */
export interface BenchReport {
  readonly meta: Record<string, unknown>;
  readonly figures: readonly Figure[];
  readonly distributions: readonly Distribution[];
}

/** A number with `digits` decimals and thousands separators. */
export function formatNumber(value: number | null, digits: number): string {
  if (value === null || !Number.isFinite(value)) return '—';
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** Enough decimals for the magnitude. */
export function autoDigits(value: number | null): number {
  if (value === null || !Number.isFinite(value)) return 0;
  const magnitude = Math.abs(value);
  if (magnitude >= 1000) return 0;
  if (magnitude >= 100) return 1;
  if (magnitude >= 1) return 2;
  return 3;
}

function metText(met: boolean | null | undefined): string {
  if (met === true) return 'met';
  if (met === false) return '**missed**';
  return '';
}

/** The etcd column's heading: the version measured, when the report has one. */
function etcdHeading(report: BenchReport): string {
  const version = report.meta.etcdVersion;
  return typeof version === 'string' ? `etcd ${version}` : 'etcd';
}

/** The Markdown table of all figures. */
export function markdownTable(report: BenchReport): string {
  const lines = [
    `| suite | figure | raftlease | ${etcdHeading(report)} | raftlease / etcd | target | | reproduce |`,
    '| --- | --- | ---: | ---: | ---: | --- | --- | --- |',
  ];
  for (const item of report.figures) {
    const cell = (value: number | null): string => (value === null ? '—' : `${formatNumber(value, autoDigits(value))} ${item.unit}`);
    lines.push(
      `| ${item.suite} | ${item.name}${item.note === undefined ? '' : ` (${item.note})`} | ${cell(item.raftlease)} | ${cell(item.etcd)} | ${item.ratio === null ? '—' : `${formatNumber(item.ratio, 2)}x`} | ${item.target ?? ''} | ${metText(item.met)} | \`${item.command}\` |`,
    );
  }
  const meta = Object.entries(report.meta)
    .map(([key, value]) => `${key}: ${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join('; ');
  return `${lines.join('\n')}\n\n${meta}\n`;
}

const COLORS = ['#1f6feb', '#d1242f', '#2da44e', '#8250df'];

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * An SVG chart of each series' latency by percentile: x is the percentile on a tail-expanding scale
 * (−log10(1 − q): p50, p90, p99 and p99.9 are evenly spaced), y the value on a log scale, so the
 * median and the tail are both readable.
 */
export function percentileSvg(distribution: Distribution): string {
  const width = 640;
  const left = 60;
  const right = 16;
  const series = distribution.series.filter((item) => item.samples.length > 0);
  const legendHeight = 16 * series.length;
  const top = 28 + legendHeight;
  const bottom = 44;
  const height = top + 240 + bottom;
  const all = series.flatMap((item) => item.samples).filter((value) => value > 0);
  if (all.length === 0) return '';
  const lo = Math.floor(Math.log10(Math.max(1e-3, Math.min(...all))));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...all))));
  const maxCount = Math.max(...series.map((item) => item.samples.length));
  const tailMax = Math.max(1, Math.log10(maxCount + 1));
  const x = (tail: number): number => left + (tail / tailMax) * (width - left - right);
  const y = (value: number): number => top + (1 - (Math.log10(Math.max(value, 10 ** lo)) - lo) / (hi - lo)) * (height - top - bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${left}" y="16" font-size="13" font-weight="bold">${escapeXml(distribution.title)}</text>`,
  ];
  for (let exponent = lo; exponent <= hi; exponent++) {
    const gy = y(10 ** exponent);
    parts.push(`<line x1="${left}" y1="${gy.toFixed(1)}" x2="${width - right}" y2="${gy.toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`<text x="${left - 4}" y="${(gy + 4).toFixed(1)}" text-anchor="end">${10 ** exponent >= 1 ? String(10 ** exponent) : (10 ** exponent).toFixed(-exponent)}</text>`);
  }
  for (const [tail, text] of [
    [0, 'p0'],
    [Math.log10(2), 'p50'],
    [1, 'p90'],
    [2, 'p99'],
    [3, 'p99.9'],
    [4, 'p99.99'],
  ] as const) {
    if (tail > tailMax) break;
    parts.push(`<line x1="${x(tail).toFixed(1)}" y1="${top}" x2="${x(tail).toFixed(1)}" y2="${height - bottom}" stroke="#eee"/>`);
    parts.push(`<text x="${x(tail).toFixed(1)}" y="${height - bottom + 14}" text-anchor="middle">${text}</text>`);
  }
  parts.push(`<text x="${(left + width - right) / 2}" y="${height - 10}" text-anchor="middle">percentile (tail-expanding scale); y: ${escapeXml(distribution.unit)}, log scale</text>`);
  series.forEach((item, index) => {
    const sorted = [...item.samples].sort((a, b) => a - b);
    const n = sorted.length;
    const points: string[] = [];
    // At most ~500 points per line, denser towards the tail.
    let previousX = -1;
    for (let i = 0; i < n; i++) {
      const px = x(-Math.log10(1 - (i + 1) / (n + 1)));
      if (px - previousX < 1 && i !== n - 1) continue;
      previousX = px;
      points.push(`${px.toFixed(1)},${y(sorted[i] ?? 0).toFixed(1)}`);
    }
    const color = COLORS[index % COLORS.length] ?? '#000';
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.8" points="${points.join(' ')}"/>`);
    const label = `${item.label}: p50 ${formatNumber(percentile(sorted, 50), 3)}, p99 ${formatNumber(percentile(sorted, 99), 3)}, max ${formatNumber(sorted.at(-1) ?? null, 3)} (n=${n})`;
    parts.push(`<rect x="${left}" y="${24 + index * 16}" width="12" height="3" fill="${color}"/>`);
    parts.push(`<text x="${left + 18}" y="${29 + index * 16}">${escapeXml(label)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** A self-contained HTML page: the table and one chart per distribution. */
export function htmlPage(report: BenchReport): string {
  const rows = report.figures
    .map((item) => {
      const cell = (value: number | null): string => (value === null ? '—' : `${formatNumber(value, autoDigits(value))} ${escapeXml(item.unit)}`);
      return `<tr><td>${escapeXml(item.suite)}</td><td>${escapeXml(item.name)}${item.note === undefined ? '' : ` <small>(${escapeXml(item.note)})</small>`}</td><td>${cell(item.raftlease)}</td><td>${cell(item.etcd)}</td><td>${item.ratio === null ? '—' : `${formatNumber(item.ratio, 2)}x`}</td><td>${escapeXml(item.target ?? '')}</td><td class="${item.met === false ? 'missed' : ''}">${item.met === true ? 'met' : item.met === false ? 'missed' : ''}</td><td><code>${escapeXml(item.command)}</code></td></tr>`;
    })
    .join('\n');
  const charts = report.distributions.map((distribution) => `<figure>${percentileSvg(distribution)}</figure>`).join('\n');
  const meta = Object.entries(report.meta)
    .map(([key, value]) => `<li><b>${escapeXml(key)}</b>: ${escapeXml(typeof value === 'string' ? value : JSON.stringify(value))}</li>`)
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>raftlease benchmarks</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1400px}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}td:nth-child(3),td:nth-child(4),td:nth-child(5){text-align:right;white-space:nowrap}.missed{color:#d1242f;font-weight:bold}figure{display:inline-block;margin:8px}code{font-size:11px}</style>
</head><body>
<h1>raftlease benchmarks</h1>
<ul>${meta}</ul>
<h2>Latency distributions</h2>
${charts}
<h2>Figures</h2>
<table><tr><th>suite</th><th>figure</th><th>raftlease</th><th>${escapeXml(etcdHeading(report))}</th><th>raftlease / etcd</th><th>target</th><th></th><th>reproduce</th></tr>
${rows}
</table>
</body></html>
`;
}

/** The report as JSON: every figure, and quantiles of each distribution (not every sample). */
export function jsonReport(report: BenchReport): object {
  const distributions = report.distributions.map((distribution) => ({
    title: distribution.title,
    unit: distribution.unit,
    series: distribution.series.map((series) => ({
      label: series.label,
      count: series.samples.length,
      quantiles: Object.fromEntries([0, 10, 25, 50, 75, 90, 95, 99, 99.9, 100].map((p) => [`p${p}`, percentile(series.samples, p)])),
    })),
  }));
  return { meta: report.meta, figures: report.figures, distributions };
}

/** Writes `<base>.json`, `<base>.md` and `<base>.html` into `dir`; returns the paths. */
export function writeReport(report: BenchReport, dir: string, base: string): string[] {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, `${base}.json`);
  const markdown = join(dir, `${base}.md`);
  const html = join(dir, `${base}.html`);
  writeFileSync(json, `${JSON.stringify(jsonReport(report), null, 2)}\n`);
  writeFileSync(markdown, markdownTable(report));
  writeFileSync(html, htmlPage(report));
  return [json, markdown, html];
}
