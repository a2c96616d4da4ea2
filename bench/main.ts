/**
 * `npm run bench -- [core] [lease] [sim] [compare] [memory] [flags]`: benchmarks. Timing goals live here, never in tests.
 *
 * Without a suite it runs core, lease, sim and compare (memory measures this process's own RSS, so it
 * runs only when named). Flags:
 *   --quick           a reduced version of every suite (the whole default set in under a minute)
 *   --json            print one JSON object (meta, figures, distributions) on stdout; the progress lines go to stderr
 *   --out DIR         where to write <name>.json, .md and .html (default bench/results)
 *   --encode          core: encode every message with the wire codec
 *   --no-snapshots    memory: no compaction
 *   --no-etcd         compare: raftlease only
 *   --phases LIST     compare: some of latency,throughput,failover,fast-failover (default all)
 *   --cpu-prof-dir D  compare: start raftlease nodes with `node --cpu-prof --cpu-prof-dir D`
 *
 * @module
 */
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { COMPARE_PHASES, benchCompare, type ComparePhase } from './compare.js';
import { jsonReport, writeReport, type Distribution, type Figure } from './figures.js';
import { coreFigures, leaseFigures, simFigures } from './inprocess.js';
import { benchMemory } from './memory.js';

const DEFAULT_SUITES = ['core', 'lease', 'sim', 'compare'];
const KNOWN_SUITES = ['core', 'lease', 'sim', 'compare', 'memory'];

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    allowPositionals: true,
    options: {
      quick: { type: 'boolean' },
      encode: { type: 'boolean' },
      'no-snapshots': { type: 'boolean' },
      json: { type: 'boolean' },
      out: { type: 'string' },
      'no-etcd': { type: 'boolean' },
      phases: { type: 'string' },
      'cpu-prof-dir': { type: 'string' },
    },
  });
  const suites = positionals.length === 0 ? DEFAULT_SUITES : positionals;
  const unknown = suites.find((suite) => !KNOWN_SUITES.includes(suite));
  if (unknown !== undefined) throw new Error(`unknown benchmark '${unknown}'; known: ${KNOWN_SUITES.join(', ')}`);
  const quick = values.quick === true;
  const json = values.json === true;
  // With --json, stdout carries the JSON object only.
  const print = (line: string): void => {
    (json ? process.stderr : process.stdout).write(`${line}\n`);
  };
  const phases = values.phases === undefined ? COMPARE_PHASES : values.phases.split(',').filter((phase) => phase.length > 0);
  const badPhase = phases.find((phase) => !(COMPARE_PHASES as readonly string[]).includes(phase));
  if (badPhase !== undefined) throw new Error(`unknown --phases entry '${badPhase}'; known: ${COMPARE_PHASES.join(', ')}`);
  const commandFor = (suite: string, ...flags: (string | false)[]): string => ['npm run bench --', suite, quick ? '--quick' : false, ...flags].filter((part) => part !== false).join(' ');

  const figures: Figure[] = [];
  const distributions: Distribution[] = [];
  const meta: Record<string, unknown> = {
    date: new Date().toISOString(),
    invocation: `npm run bench --${process.argv.slice(2).map((arg) => ` ${arg}`).join('')}`,
    machine: `${cpus().length} cores, ${cpus()[0]?.model ?? 'unknown CPU'}, Node.js ${process.version}, ${process.platform}`,
    loadAverageAtStart: loadavg().map((value) => Number(value.toFixed(2))),
    quick,
  };
  if (positionals.length === 0) print(`running the suites ${DEFAULT_SUITES.join(', ')}${quick ? ' (quick)' : ''}; name one to run it alone (npm run bench -- compare)`);
  for (const suite of suites) {
    switch (suite) {
      case 'core': {
        const command = commandFor(suite, values.encode === true && '--encode');
        figures.push(
          ...(await coreFigures(
            { proposalsPerRun: quick ? 20_000 : 100_000, runs: quick ? 3 : 5, payloadBytes: 64, concurrencyLevels: [1, 64], encode: values.encode === true },
            command,
            print,
          )),
        );
        break;
      }
      case 'sim': {
        figures.push(...(await simFigures({ seedsPerRun: quick ? 5 : 20, sweepSeedsPerRun: quick ? 100 : 1_000, warmupSeeds: quick ? 10 : 40, runs: quick ? 3 : 5 }, commandFor(suite), print)));
        break;
      }
      case 'memory': {
        const noSnapshots = values['no-snapshots'] === true;
        const memoryFigures = await benchMemory(
          // --no-snapshots sets the interval beyond the run, to show what compaction saves.
          { entries: quick ? 200_000 : 1_000_000, snapshotEveryEntries: noSnapshots ? 1_000_000_000 : 10_000, payloadBytes: 64, inFlight: 64, keys: 1_000 },
          commandFor(suite, noSnapshots && '--no-snapshots'),
          print,
        );
        figures.push(...memoryFigures);
        break;
      }
      case 'lease': {
        figures.push(...(await leaseFigures({ cyclesPerRun: quick ? 1_000 : 5_000, runs: quick ? 3 : 5, concurrencyLevels: [1, 64] }, commandFor(suite), print)));
        break;
      }
      case 'compare': {
        const command = commandFor(
          suite,
          values['no-etcd'] === true && '--no-etcd',
          values.phases !== undefined && `--phases ${values.phases}`,
          values['cpu-prof-dir'] !== undefined && `--cpu-prof-dir ${values['cpu-prof-dir']}`,
        );
        print(`comparison with etcd: real processes on loopback, durable storage (fsync on), 3 members each${quick ? ' (quick: fewer operations and repetitions)' : ''}`);
        const result = await benchCompare(
          {
            latencyCyclesPerRun: quick ? 100 : 1_000,
            // Node's JIT and heap settle over about a thousand cycles (the first run after 300 warm-up
            // cycles had twice the later runs' p99); both systems get the same warm-up.
            latencyWarmupCycles: quick ? 100 : 1_000,
            runs: quick ? 2 : 3,
            throughputLevels: [1, 16, 64, 256],
            throughputRuns: quick ? 2 : 3,
            throughputRunMs: quick ? 300 : 3_000,
            throughputWarmupMs: quick ? 150 : 1_000,
            failoverReps: quick ? 2 : 20,
            fastFailoverReps: quick ? 1 : 20,
            phases: new Set(phases as ComparePhase[]),
            etcd: values['no-etcd'] !== true,
            cpuProfDir: values['cpu-prof-dir'] ?? null,
          },
          command,
          print,
        );
        figures.push(...result.figures);
        distributions.push(...result.distributions);
        Object.assign(meta, result.meta);
        break;
      }
      default:
        throw new Error(`unknown benchmark '${suite}'`);
    }
  }
  meta.loadAverageAtEnd = loadavg().map((value) => Number(value.toFixed(2)));
  if (figures.length === 0) return;
  const report = { meta, figures, distributions };
  const dir = values.out ?? fileURLToPath(new URL('../../bench/results/', import.meta.url));
  const base = `latest${positionals.length === 0 ? '' : `-${suites.join('-')}`}${quick ? '-quick' : ''}`;
  const written = writeReport(report, dir, base);
  print(`results: ${written.join(', ')}`);
  if (json) process.stdout.write(`${JSON.stringify(jsonReport(report))}\n`);
}

main()
  .catch((error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(() => {
    // Everything is written. etcd3 1.1.2 re-arms a 30 s keepalive timer when a keepalive answer
    // arrives after its lease was revoked, which would hold the process for up to 30 s: exit after 2 s
    // if anything is still pending (an unref'd timer fires only while something else holds the loop).
    setTimeout(() => process.exit(), 2_000).unref();
  });
