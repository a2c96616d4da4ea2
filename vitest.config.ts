import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The process tests (test/process) run the built binary: build dist/ once before the suite.
    globalSetup: ['test/global-setup.ts'],
    // Simulator sweeps and property tests are CPU-bound; two workers match the CI machine.
    maxWorkers: 2,
    testTimeout: 60_000,
  },
});
