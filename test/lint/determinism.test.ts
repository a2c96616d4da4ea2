import { ESLint, type Linter } from 'eslint';
import tseslint from 'typescript-eslint';
import { describe, expect, it } from 'vitest';
// @ts-expect-error -- the ESLint config is plain JavaScript without type declarations.
import { determinismRules, deterministicFiles } from '../../eslint.config.js';

// The same rule objects the project's eslint.config.js applies, without the type-aware rules.
const linter = new ESLint({
  overrideConfigFile: true,
  overrideConfig: [
    { files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } },
    { files: deterministicFiles as string[], rules: determinismRules as Linter.RulesRecord },
  ],
});

async function violations(code: string, filePath: string): Promise<string[]> {
  const [result] = await linter.lintText(code, { filePath });
  return (result?.messages ?? []).map((message) => `${message.ruleId ?? 'parse'}: ${message.message}`);
}

const forbidden = [
  'const x = Math.random();',
  'const t = Date.now();',
  'const t = performance.now();',
  'const t = process.hrtime();',
  'const t = process.hrtime.bigint();',
  'setTimeout(() => undefined, 1);',
  'setInterval(() => undefined, 1);',
  'globalThis.setTimeout(() => undefined, 1);',
  'const d = new Date();',
];

describe('determinism lint rule', () => {
  for (const folder of ['src/raft', 'src/lease', 'src/maintenance', 'sim']) {
    for (const code of forbidden) {
      it(`rejects \`${code}\` in ${folder}/`, async () => {
        expect(await violations(code, `${folder}/example.ts`)).not.toEqual([]);
      });
    }
  }

  it('allows the same code in the runtime, which owns the real clock', async () => {
    for (const code of forbidden) expect(await violations(code, 'src/runtime/example.ts')).toEqual([]);
  });

  it('allows injected time and explicit dates in deterministic folders', async () => {
    expect(await violations('const t = clock.nowMs(); const d = new Date(0);', 'src/raft/example.ts')).toEqual([]);
  });
});
