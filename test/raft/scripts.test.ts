/**
 * Script-and-transcript tests of the Raft core: every `testdata/*.txt` file is a scenario whose
 * recorded output must match what the core does now. See `test/support/script.ts` for the format.
 *
 * To accept new output after a deliberate change, run `npm run test:update-transcripts` (it sets
 * RAFTLEASE_REWRITE=1, which rewrites the files instead of comparing) and review the diff.
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
        return;
      }
      expect(actual, `${file} differs from its recorded transcript; if the change is intended, run npm run test:update-transcripts and review the diff`).toBe(recorded);
    });
  }
});
