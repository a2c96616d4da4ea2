/**
 * The end-of-run check of `raftlease cluster`: job runs read back from the nodes' JSON-lines logs,
 * and the two ways an occurrence can have run twice (two ok finishes, or two nodes at once).
 */
import { describe, expect, it } from 'vitest';
import { jobRunsFromLogs, ranTwice } from '../../src/cli/cluster.js';

const OCCURRENCE = '2026-01-01T00:01:00.000Z';

function line(time: number, msg: string, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({ level: 30, time, node: 'x', scheduleId: 'compaction', occurrence: OCCURRENCE, fencingToken: 7, msg, ...fields });
}

describe('jobRunsFromLogs', () => {
  it('pairs start and end lines per fencing token, ends an unfinished run at its node\'s kill, and skips lines that are not JSON', () => {
    const n1 = [
      'raftlease: some plain text',
      line(1_000, 'schedule compaction running occurrence', { attempt: 1 }),
      JSON.stringify({ level: 30, time: 1_500, msg: 'unrelated' }),
      line(2_000, 'schedule compaction occurrence ok', { result: 'ok' }),
      '{"truncated',
    ].join('\n');
    const n2 = [line(3_000, 'schedule compaction running occurrence', { fencingToken: 9 }), JSON.stringify({ level: 30, time: 3_500, msg: 'later' })].join('\n');
    const runs = jobRunsFromLogs(
      [
        { node: 'n1', text: n1 },
        { node: 'n2', text: n2 },
      ],
      [{ node: 'n2', atWallMs: 3_200 }],
    );
    expect(runs).toEqual([
      { node: 'n1', scheduleId: 'compaction', occurrence: OCCURRENCE, fencingToken: 7, startMs: 1_000, endMs: 2_000, result: 'ok' },
      { node: 'n2', scheduleId: 'compaction', occurrence: OCCURRENCE, fencingToken: 9, startMs: 3_000, endMs: 3_200, result: null },
    ]);
  });
});

describe('ranTwice', () => {
  const run = (node: string, fencingToken: number, startMs: number, endMs: number, result: string | null) => ({ node, scheduleId: 'compaction', occurrence: OCCURRENCE, fencingToken, startMs, endMs, result });

  it('accepts a run cut off by a crash and resumed elsewhere afterwards', () => {
    expect(ranTwice([run('n1', 7, 1_000, 2_000, null), run('n2', 9, 5_000, 6_000, 'ok')])).toEqual([]);
  });

  it('reports two ok finishes of one occurrence', () => {
    expect(ranTwice([run('n1', 7, 1_000, 2_000, 'ok'), run('n2', 9, 5_000, 6_000, 'ok')])).toEqual([`compaction ${OCCURRENCE} finished ok 2 times (n1, n2)`]);
  });

  it('reports two nodes running one occurrence at overlapping times', () => {
    expect(ranTwice([run('n1', 7, 1_000, 4_000, 'aborted'), run('n2', 9, 3_000, 6_000, 'ok')])).toEqual([`compaction ${OCCURRENCE} ran on n1 (token 7) and n2 (token 9) at once`]);
  });
});
