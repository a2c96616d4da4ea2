/**
 * `npm run bench -- [core] [sim] [memory] [lease] [--quick] [--encode] [--no-snapshots]`: benchmarks. Timing goals live here, never in tests.
 *
 * @module
 */
import { parseArgs } from 'node:util';
import { benchCore } from './core.js';
import { benchLease } from './lease.js';
import { benchMemory } from './memory.js';
import { benchSim } from './sim.js';

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: { quick: { type: 'boolean' }, encode: { type: 'boolean' }, 'no-snapshots': { type: 'boolean' } },
  });
  const suites = positionals.length === 0 ? ['core', 'sim'] : positionals;
  for (const suite of suites) {
    switch (suite) {
      case 'core': {
        const quick = values.quick === true;
        const flags = [suite, quick ? '--quick' : '', values.encode === true ? '--encode' : ''].filter((flag) => flag !== '').join(' ');
        await benchCore(
          {
            proposalsPerRun: quick ? 20_000 : 100_000,
            runs: quick ? 3 : 5,
            payloadBytes: 64,
            concurrencyLevels: [1, 64],
            encode: values.encode === true,
          },
          `npm run bench -- ${flags}`,
          (line) => process.stdout.write(`${line}\n`),
        );
        break;
      }
      case 'sim': {
        const quick = values.quick === true;
        await benchSim({ seedsPerRun: quick ? 5 : 20, runs: quick ? 3 : 5 }, `npm run bench -- sim${quick ? ' --quick' : ''}`, (line) => process.stdout.write(`${line}\n`));
        break;
      }
      case 'memory': {
        const quick = values.quick === true;
        const noSnapshots = values['no-snapshots'] === true;
        const flags = ['memory', quick ? '--quick' : '', noSnapshots ? '--no-snapshots' : ''].filter((flag) => flag !== '').join(' ');
        await benchMemory(
          // --no-snapshots sets the interval beyond the run, to show what compaction saves.
          { entries: quick ? 200_000 : 1_000_000, snapshotEveryEntries: noSnapshots ? 1_000_000_000 : 10_000, payloadBytes: 64, inFlight: 64, keys: 1_000 },
          `npm run bench -- ${flags}`,
          (line) => process.stdout.write(`${line}\n`),
        );
        break;
      }
      case 'lease': {
        const quick = values.quick === true;
        await benchLease({ cyclesPerRun: quick ? 1_000 : 5_000, runs: quick ? 3 : 5, concurrencyLevels: [1, 64] }, `npm run bench -- lease${quick ? ' --quick' : ''}`, (line) =>
          process.stdout.write(`${line}\n`),
        );
        break;
      }
      default:
        throw new Error(`unknown benchmark '${suite}'; known: core, sim, memory, lease`);
    }
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
