#!/usr/bin/env node
/**
 * The `raftlease` command.
 *
 * @module
 */
import { parseArgs } from 'node:util';
import { runSimCli, SIM_USAGE } from '../../sim/cli.js';
import { runDemo } from './demo.js';

const USAGE = `usage: raftlease <command> [options]

commands:
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
    });
  }
  const { values, positionals } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { help: { type: 'boolean', short: 'h' }, 'tick-ms': { type: 'string' } },
  });
  const [command] = positionals;
  if (values.help === true || command === undefined) {
    process.stdout.write(USAGE);
    return command === undefined && values.help !== true ? 2 : 0;
  }
  switch (command) {
    case 'demo': {
      const tickIntervalMs = Number(values['tick-ms'] ?? '50');
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
