// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Time and randomness must be injected in the deterministic layers (the Raft core, the lease layer,
 * the orchestrator and the simulator), so that one seed replays one byte-identical run.
 */
const nondeterminism = [
  { object: 'Math', property: 'random', message: 'Use the injected seeded Prng.' },
  { object: 'Date', property: 'now', message: 'Use the injected Clock.' },
  { object: 'performance', property: 'now', message: 'Use the injected Clock.' },
  { object: 'globalThis', property: 'setTimeout', message: 'Use the injected Clock.' },
  { object: 'globalThis', property: 'setInterval', message: 'Use the injected Clock.' },
  { object: 'process', property: 'hrtime', message: 'Use the injected Clock.' },
];

/** Folders whose code must take time and randomness only from what is injected. */
export const deterministicFiles = ['src/raft/**/*.ts', 'src/lease/**/*.ts', 'src/maintenance/**/*.ts', 'sim/**/*.ts'];

/** The rules that keep those folders deterministic (also exercised by test/lint/determinism.test.ts). */
export const determinismRules = {
  'no-restricted-properties': ['error', ...nondeterminism],
  'no-restricted-globals': [
    'error',
    { name: 'setTimeout', message: 'Use the injected Clock.' },
    { name: 'setInterval', message: 'Use the injected Clock.' },
    { name: 'setImmediate', message: 'Use the injected Clock.' },
    { name: 'performance', message: 'Use the injected Clock.' },
  ],
  'no-restricted-syntax': [
    'error',
    { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'Use the injected Clock.' },
    { selector: "CallExpression[callee.name='Date'][arguments.length=0]", message: 'Use the injected Clock.' },
  ],
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      '@typescript-eslint/no-unnecessary-condition': ['error', { allowConstantLoopConditions: true }],
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  { files: deterministicFiles, rules: determinismRules },
  {
    files: ['**/*.js', 'eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
