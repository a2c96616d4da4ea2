/**
 * Vitest global setup: the process tests (test/process) spawn the built `raftlease` binary
 * (dist/src/cli/main.js), so the suite first compiles src, sim and bench once with
 * `npx tsc -p tsconfig.build.json`. A failed build stops the run with the compiler's output.
 * Set RAFTLEASE_SKIP_BUILD=1 to reuse an existing dist/ (e.g. when iterating on one unit test).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export default function setup(): void {
  if (process.env.RAFTLEASE_SKIP_BUILD === '1') return;
  const result = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, encoding: 'utf8', timeout: 300_000, shell: process.platform === 'win32' });
  if (result.error !== undefined || result.status !== 0) {
    const why = result.error !== undefined ? result.error.message : result.signal !== null ? `killed by ${result.signal}` : `exit code ${String(result.status)}`;
    throw new Error(
      `global setup: 'npx tsc -p tsconfig.build.json' failed (${why}); the process tests need a fresh dist/.\n${result.stdout}${result.stderr}`.trimEnd(),
    );
  }
}
