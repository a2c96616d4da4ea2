/**
 * Script-and-transcript tests of the Raft core: every `testdata/*.txt` file is a scenario whose
 * recorded output must match what the core does now. See `test/support/script.ts` for the format.
 *
 * To accept new output after a deliberate change, run `npm run test:update-transcripts` (it sets
 * RAFTLEASE_REWRITE=1, which rewrites the files instead of comparing them) and review the diff.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runScript } from '../support/script.js';

const testdataDirectory = join(dirname(fileURLToPath(import.meta.url)), 'testdata');
const rewrite = process.env['RAFTLEASE_REWRITE'] === '1';
const scriptFiles = readdirSync(testdataDirectory)
  .filter((file) => file.endsWith('.txt'))
  .sort();

describe('raft transcripts', () => {
  it('finds the scripts', () => {
    expect(scriptFiles.length).toBeGreaterThan(0);
  });

  for (const file of scriptFiles) {
    it(file, () => {
      const path = join(testdataDirectory, file);
      const recorded = readFileSync(path, 'utf8');
      const actual = runScript(recorded);
      if (rewrite) {
        if (actual !== recorded) writeFileSync(path, actual);
      } else {
        expect(actual, `${file} differs from its recorded transcript; if the change is intended, run npm run test:update-transcripts and review the diff`).toBe(recorded);
      }
      // A broken invariant is a bug even when a rewrite has recorded it.
      expect(actual, `${file} hit a broken invariant`).not.toMatch(/^\s*error: InvariantError/m);
    });
  }
});

describe('the script interpreter', () => {
  it('fills in the output of a command written without one, and keeps comments', () => {
    const script = '# start\ncluster n1\n\n# elect\ncampaign n1\n\nstatus\n';
    expect(runScript(script)).toBe(
      [
        '# start',
        'cluster n1',
        '----',
        'ok',
        '',
        '# elect',
        'campaign n1',
        '----',
        'n1: Leader term=1 vote=n1 leader=n1',
        'n1: commit=1 applied=[1@1:noop]',
        '',
        'status',
        '----',
        'n1: Leader term=1 vote=n1 leader=n1 last=1 commit=1 applied=1',
        '',
      ].join('\n'),
    );
  });

  it('reproduces a transcript it rendered', () => {
    const once = runScript('cluster n1 n2 n3\n\ncampaign n1\n\nstabilize\n\npropose-many n1 5 x\n\nstabilize\n\nlog\n');
    expect(runScript(once)).toBe(once);
    expect(once).toContain('n1: 1@1:noop 2..6@1:x1..x5');
  });

  it('names the line of a mistake in the script', () => {
    expect(() => runScript('cluster n1 n2\n\nfly n1\n')).toThrow(/script line 3: unknown command 'fly'/);
    expect(() => runScript('cluster n1 n2\n\ntick n9\n')).toThrow(/script line 3: unknown node 'n9'/);
    expect(() => runScript('campaign n1\n')).toThrow(/script line 1: no cluster yet/);
    expect(() => runScript('cluster n1 n2 preVoat=false\n')).toThrow(/unknown option 'preVoat'/);
  });
});
