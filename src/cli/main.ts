#!/usr/bin/env node
/**
 * The `raftlease` command.
 *
 * @module
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { runSimCli, SIM_USAGE } from '../../sim/cli.js';
import { runDemo } from './demo.js';
import { CLUSTER_USAGE, resolveClusterConfig, runCluster } from './cluster.js';
import { NODE_USAGE, decimalInteger, isUsageProblem, resolveNodeConfig, runNode } from './node.js';

const USAGE = `usage: raftlease <command> [options]

commands:
  cluster   start a local cluster of node processes with demo maintenance schedules and narrate it
            (what 'npm start' runs); see 'raftlease cluster --help'
  node      run one cluster member (TCP, durable storage, HTTP API); see 'raftlease node --help'
  demo      run a three-node cluster in this process and narrate an election, proposals and a failover
            --tick-ms N   milliseconds per Raft tick (default 50)
  sim       the deterministic simulator (run, sweep, replay); see 'raftlease sim --help'

options:
  -h, --help     show this help
`;

async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'sim') {
    if (argv[1] === '--help' || argv[1] === '-h') {
      process.stdout.write(SIM_USAGE);
      return 0;
    }
    return runSimCli(argv.slice(1), {
      out: (text) => process.stdout.write(text),
      err: (text) => process.stderr.write(text),
      isTerminal: process.stdout.isTTY,
      wallMs: () => performance.now(),
      defaultSweepWorkers: availableParallelism(),
    });
  }
  if (argv[0] === 'node' || argv[0] === 'cluster') {
    const command = argv[0];
    const rest = argv.slice(1);
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(command === 'node' ? NODE_USAGE : CLUSTER_USAGE);
      return 0;
    }
    try {
      if (command === 'node') return await runNode(resolveNodeConfig(rest));
      return await runCluster(resolveClusterConfig(rest), (line) => process.stdout.write(`${line}\n`));
    } catch (error) {
      if (!isUsageProblem(error)) throw error;
      process.stderr.write(`raftlease ${command}: ${error instanceof Error ? error.message : String(error)}\n\n${command === 'node' ? NODE_USAGE : CLUSTER_USAGE}`);
      return 2;
    }
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      options: { help: { type: 'boolean', short: 'h' }, 'tick-ms': { type: 'string' } },
    });
  } catch (error) {
    // An unknown flag or a flag without its value: a usage error like any other (exit 2).
    process.stderr.write(`raftlease: ${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command] = positionals;
  if (values.help === true || command === undefined) {
    process.stdout.write(USAGE);
    return command === undefined && values.help !== true ? 2 : 0;
  }
  switch (command) {
    case 'demo': {
      const tickIntervalMs = decimalInteger(values['tick-ms'] ?? '50');
      if (!Number.isInteger(tickIntervalMs) || tickIntervalMs < 1 || tickIntervalMs > 10_000) {
        process.stderr.write(`raftlease: --tick-ms must be an integer between 1 and 10000, got ${values['tick-ms'] ?? ''}\n`);
        return 2;
      }
      await runDemo({ print: (line) => process.stdout.write(`${line}\n`), tickIntervalMs });
      return 0;
    }
    default:
      process.stderr.write(`raftlease: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`raftlease: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
