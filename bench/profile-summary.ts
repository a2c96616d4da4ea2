/**
 * `node dist/bench/profile-summary.js FILE.cpuprofile [TOP]`: the functions with the most self time
 * in a V8 CPU profile (`node --cpu-prof`, e.g. from `npm run bench -- compare --cpu-prof-dir DIR`),
 * and the share of idle time, garbage collection and each source area (raftlease's src/ folders,
 * node internals, dependencies). Prints percentages of the sampled time.
 *
 * @module
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Which part of the program a URL belongs to. */
function area(url: string, name: string): string {
  if (name === '(idle)') return 'idle';
  if (name === '(garbage collector)') return 'garbage collection';
  if (name === '(program)') return '(program: native, not attributed)';
  const src = /\/(src|sim)\/([^/]+)\//.exec(url);
  if (src !== null && !url.includes('node_modules')) return `${src[1] ?? ''}/${src[2] ?? ''}`;
  const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dependency !== null) return `dependency ${dependency[1] ?? ''}`;
  if (url.startsWith('node:')) return `node ${url.slice(5).split('/')[0] ?? ''}`;
  if (url === '') return '(native / builtins)';
  return url;
}

function main(): void {
  const [file, topText] = process.argv.slice(2);
  if (file === undefined) {
    process.stderr.write('usage: node dist/bench/profile-summary.js FILE.cpuprofile [TOP]\n');
    process.exitCode = 2;
    return;
  }
  const top = Number(topText ?? '25');
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  let totalUs = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
    totalUs += delta;
  });
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const label = (node: ProfileNode): string => {
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName === '' ? '(anonymous)' : functionName;
    return `${name}${url === '' ? '' : ` ${url.replace(/^.*\/(src|sim|bench|node_modules)\//, '$1/')}:${lineNumber + 1}`}`;
  };
  // Inclusive time: each function once per sample, however deep it recurs.
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const node = byId.get(at);
      if (node === undefined) break;
      const name = label(node);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }
  const byFunction = new Map<string, number>();
  const byArea = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    const name = label(node);
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    const part = area(node.callFrame.url, node.callFrame.functionName);
    byArea.set(part, (byArea.get(part) ?? 0) + us);
  }
  const percent = (us: number): string => `${((us / totalUs) * 100).toFixed(1).padStart(5)}%`;
  const idle = byArea.get('idle') ?? 0;
  process.stdout.write(`${file}: ${(totalUs / 1e6).toFixed(1)} s sampled, ${percent(totalUs - idle)} busy\n\nby area (self time):\n`);
  for (const [part, us] of [...byArea].sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${percent(us)}  ${part}\n`);
  process.stdout.write(`\ntop ${top} functions (self time):\n`);
  for (const [name, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${percent(us)}  ${name}\n`);
  process.stdout.write(`\ntop ${top} functions (inclusive time: self and callees):\n`);
  const skip = new Set(['(root)', '(idle)']);
  for (const [name, us] of [...inclusive].filter(([name]) => !skip.has(name)).sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`  ${percent(us)}  ${name}\n`);
}

main();
