/**
 * The `raftlease node` and `raftlease cluster` commands as real processes (the built binary): help,
 * usage errors with exit code 2 and a message naming the problem, the data directory lock, SIGTERM,
 * a JSON --config file, and a short narrated cluster run.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeProcess, ROOT, freeBasePort, freePorts, http, killAllChildren, runCli, spawnCli, status, waitFor, type NodeStatus } from './support.js';

let dir = '';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'raftlease-cli-'));
});

afterAll(() => {
  killAllChildren();
  rmSync(dir, { recursive: true, force: true });
});

/** A valid set of node flags (ports that are never bound: resolution fails before). */
function validFlags(): string[] {
  return ['--id', 'n1', '--listen', '127.0.0.1:1', '--http', '127.0.0.1:2', '--peers', 'n1=127.0.0.1:1,n2=127.0.0.1:3', '--data-dir', join(dir, 'never-created')];
}

function without(flags: readonly string[], flag: string): string[] {
  const index = flags.indexOf(flag);
  return index < 0 ? [...flags] : [...flags.slice(0, index), ...flags.slice(index + 2)];
}

function replaced(flags: readonly string[], flag: string, value: string): string[] {
  const index = flags.indexOf(flag);
  const copy = [...flags];
  copy[index + 1] = value;
  return copy;
}

describe('help', () => {
  it.each([
    ['node', 'usage: raftlease node --id ID'],
    ['cluster', 'usage: raftlease cluster [options]'],
  ])('raftlease %s --help prints the usage and exits 0', async (command, usage) => {
    const result = await runCli([command, '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(usage);
    expect(result.stderr).toBe('');
  });
});

describe('usage errors exit 2 and name the problem', () => {
  const cases: [string, () => string[], RegExp][] = [
    ['missing --id', () => ['node', ...without(validFlags(), '--id')], /--id is required/],
    ['--id not in --peers', () => ['node', ...replaced(validFlags(), '--id', 'n9')], /--id n9 is not among --peers \(n1, n2\)/],
    ['bad HOST:PORT', () => ['node', ...replaced(validFlags(), '--listen', 'localhost')], /--listen must be HOST:PORT .*got 'localhost'/],
    ['a port out of range', () => ['node', ...replaced(validFlags(), '--http', '127.0.0.1:70000')], /--http must be HOST:PORT .*got '127\.0\.0\.1:70000'/],
    ['an unknown flag', () => ['node', ...validFlags(), '--bogus'], /--bogus/],
    ['--tick-ms 0', () => ['node', ...validFlags(), '--tick-ms', '0'], /--tick-ms must be an integer in \[1, 10000\], got '0'/],
    ['--tls-cert without --tls-key', () => ['node', ...validFlags(), '--tls-cert', join(ROOT, 'test/fixtures/tls/n1.pem')], /--tls-key/],
    ['an unreadable --config', () => ['node', '--config', join(dir, 'missing.json')], /cannot read --config .*missing\.json/],
    [
      'a config file with an unknown key',
      () => {
        const file = join(dir, 'unknown-key.json');
        writeFileSync(file, JSON.stringify({ id: 'n1', tickMS: 50 }));
        return ['node', '--config', file];
      },
      /unknown-key\.json: unknown key 'tickMS'/,
    ],
    ['--log-level bogus', () => ['node', ...validFlags(), '--log-level', 'bogus'], /--log-level must be one of .*got 'bogus'/],
    ['cluster --nodes 9', () => ['cluster', '--nodes', '9'], /--nodes must be an integer in \[1, 7\], got '9'/],
    ['--tick-ms in hexadecimal', () => ['node', ...validFlags(), '--tick-ms', '0x10'], /--tick-ms must be an integer in \[1, 10000\], got '0x10'/],
    ['cluster --duration 1e2', () => ['cluster', '--duration', '1e2'], /--duration must be an integer in \[0, 86400\], got '1e2'/],
    ['an empty bearer token', () => ['node', ...validFlags(), '--bearer-token', ''], /bearer token .*must be non-empty/],
    ['a bearer token with a trailing space', () => ['node', ...validFlags(), '--bearer-token', 's3cret '], /without leading or trailing spaces/],
    ['two peers at one address', () => ['node', ...replaced(validFlags(), '--peers', 'n1=127.0.0.1:1,n2=127.0.0.1:1')], /--peers gives n1 and n2 the same address 127\.0\.0\.1:1/],
    ['a cluster flag that does not exist', () => ['cluster', '--chaos-monkey'], /--chaos-monkey/],
  ];
  it.each(cases)('%s', async (_name, args, message) => {
    const argv = args();
    const result = await runCli(argv);
    expect(result.timedOut).toBe(false);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain(`usage: raftlease ${argv[0] ?? ''}`);
    expect(result.stdout).toBe('');
    expect(result.code).toBe(2);
  });
});

describe('usage errors of the top-level command exit 2 with the usage', () => {
  it.each([
    ['an unknown flag', ['--bogus'], /--bogus/],
    ['demo with an unknown flag', ['demo', '--bogus'], /--bogus/],
    ['demo --tick-ms without its value', ['demo', '--tick-ms'], /--tick-ms/],
  ])('%s', async (_name, argv, message) => {
    const result = await runCli(argv);
    expect(result.timedOut).toBe(false);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain('usage: raftlease <command>');
    expect(result.code).toBe(2);
  });

  it('demo --tick-ms in hexadecimal is refused', async () => {
    const result = await runCli(['demo', '--tick-ms', '0x10']);
    expect(result.stderr).toMatch(/--tick-ms must be an integer between 1 and 10000, got 0x10/);
    expect(result.code).toBe(2);
  });
});

describe('a running node', () => {
  it('exits with an error naming --http when the HTTP port is taken, and leaves its data directory free', async () => {
    const [raftPort = 0, httpPort = 0, otherHttpPort = 0] = await freePorts(3);
    const dataDir = join(dir, 'http-port-taken');
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(httpPort, '127.0.0.1', resolve));
    try {
      const flags = ['node', '--id', 'n1', '--listen', `127.0.0.1:${raftPort}`, '--peers', `n1=127.0.0.1:${raftPort}`, '--data-dir', dataDir, '--tick-ms', '50'];
      const failed = await runCli([...flags, '--http', `127.0.0.1:${httpPort}`], { timeoutMs: 20_000 });
      expect(failed.timedOut, 'the node must exit, not run on without its API').toBe(false);
      expect(failed.code).toBe(1);
      expect(failed.stderr).toMatch(new RegExp(`cannot serve the HTTP API on --http 127\\.0\\.0\\.1:${httpPort}: .*EADDRINUSE`));
      // Everything it had started was stopped: the Raft port and the data directory are free again.
      const node = new NodeProcess({ id: 'n1', raftPort, httpPort: otherHttpPort, peers: `n1=127.0.0.1:${raftPort}`, dataDir, logDir: dir, tickMs: 50 });
      node.start();
      try {
        await waitFor('the node on the same data directory and Raft port to answer', () => status(otherHttpPort), 15_000);
      } finally {
        await node.stop(10_000);
      }
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => { resolve(); }));
    }
  }, 60_000);

  it('refuses a data directory another running node holds, and exits 0 on SIGTERM', async () => {
    const [raftPort = 0, httpPort = 0, otherRaftPort = 0, otherHttpPort = 0] = await freePorts(4);
    const dataDir = join(dir, 'shared-data');
    const first = new NodeProcess({ id: 'n1', raftPort, httpPort, peers: `n1=127.0.0.1:${raftPort}`, dataDir, logDir: dir, tickMs: 50 });
    first.start();
    try {
      await waitFor('the first node to answer', () => status(httpPort), 15_000);
      const second = await runCli(['node', '--id', 'n1', '--listen', `127.0.0.1:${otherRaftPort}`, '--http', `127.0.0.1:${otherHttpPort}`, '--peers', `n1=127.0.0.1:${otherRaftPort}`, '--data-dir', dataDir], {
        timeoutMs: 15_000,
      });
      expect(second.timedOut).toBe(false);
      expect(second.code).not.toBe(0);
      expect(second.stderr).toContain(dataDir);
      expect(second.stderr).toMatch(/in use by process \d+/);
      // The first node is unaffected.
      expect(await status(httpPort)).not.toBeNull();
    } finally {
      const exit = await first.stop(10_000);
      expect(exit?.signal ?? null).toBeNull();
      expect(exit?.code).toBe(0);
    }
  }, 40_000);

  it('starts from a JSON --config file (flags win over it) and serves the lock API', async () => {
    const [raftPort = 0, filePort = 0, flagPort = 0] = await freePorts(3);
    const config = join(dir, 'node.json');
    writeFileSync(
      config,
      JSON.stringify({
        id: 'solo',
        listen: `127.0.0.1:${raftPort}`,
        http: `127.0.0.1:${filePort}`,
        peers: { solo: `127.0.0.1:${raftPort}` },
        dataDir: join(dir, 'solo-data'),
        tickMs: 50,
        logLevel: 'warn',
      }),
    );
    const run = spawnCli(['node', '--config', config, '--http', `127.0.0.1:${flagPort}`], { timeoutMs: 30_000 });
    try {
      const leader = await waitFor(
        'the single node to lead',
        async (): Promise<NodeStatus | null> => {
          const answer = await status(flagPort);
          return answer?.role === 'Leader' ? answer : null;
        },
        15_000,
      );
      expect(leader.id).toBe('solo');
      const grant = await http(flagPort, 'POST', '/v1/locks/config-test/acquire', { owner: 'tester', ttlMs: 1_500 });
      expect(grant).toMatchObject({ ok: true, status: 200, body: { acquired: true, ttlMs: 1_500 } });
      // The file's HTTP address lost to the flag.
      expect(await status(filePort, 300)).toBeNull();
    } finally {
      run.child.kill('SIGTERM');
    }
    const exit = await run.result;
    expect(exit.timedOut).toBe(false);
    expect(exit.signal).toBeNull();
    expect(exit.code).toBe(0);
    // logLevel 'warn' from the file: the info lines of a normal start and stop are not written.
    expect(exit.stdout).not.toContain('node started');
    expect(exit.stdout).not.toContain('differs from the port');
  }, 40_000);

  it('warns when --listen and the node\'s own --peers entry name different ports (a port mapping or a typing error)', async () => {
    const [listenPort = 0, advertisedPort = 0, httpPort = 0] = await freePorts(3);
    const run = spawnCli(['node', '--id', 'solo', '--listen', `127.0.0.1:${listenPort}`, '--http', `127.0.0.1:${httpPort}`, '--peers', `solo=127.0.0.1:${advertisedPort}`, '--data-dir', join(dir, 'mapped-data'), '--log-level', 'warn'], { timeoutMs: 30_000 });
    try {
      await waitFor('the node to answer', () => status(httpPort), 15_000);
    } finally {
      run.child.kill('SIGTERM');
    }
    const exit = await run.result;
    expect(exit.code).toBe(0);
    const warning = exit.stdout.split('\n').find((line) => line.includes('differs from the port --peers gives this node'));
    expect(warning).toBeDefined();
    expect(JSON.parse(warning ?? '{}')).toMatchObject({ level: 40, listen: { port: listenPort }, advertised: { port: advertisedPort } });
  }, 40_000);
});

describe('raftlease cluster', () => {
  it('runs a 3-node cluster for 25 s without chaos, names a leader and settles an occurrence', async () => {
    const base = await freeBasePort([1, 2, 3, 101, 102, 103]);
    const result = await runCli(['cluster', '--nodes', '3', '--duration', '25', '--no-chaos', '--base-port', String(base)], { timeoutMs: 60_000 });
    const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
    expect(result.timedOut, context).toBe(false);
    expect(result.code, context).toBe(0);
    expect(result.stdout, context).toMatch(/\bn[1-3] leads \(term \d+, commit index \d+\)/);
    expect(result.stdout, context).toMatch(/\bok on n[1-3]\b/);
    expect(result.stdout, context).toMatch(/none ran twice/);
    expect(result.stdout, context).not.toMatch(/SIGKILL/);
  }, 70_000);

  it('exits 1 and keeps its directory of logs when its nodes cannot start', async () => {
    const base = await freeBasePort([1, 2, 3, 101, 102, 103]);
    // The Raft ports are taken: every node exits at once.
    const blockers = [1, 2, 3].map(() => createServer());
    await Promise.all(blockers.map((blocker, index) => new Promise<void>((resolve) => blocker.listen(base + 1 + index, '127.0.0.1', resolve))));
    try {
      const result = await runCli(['cluster', '--nodes', '3', '--duration', '4', '--no-chaos', '--base-port', String(base)], { timeoutMs: 60_000 });
      const context = `stdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
      expect(result.timedOut, context).toBe(false);
      expect(result.code, context).toBe(1);
      expect(result.stdout, context).toMatch(/FAILED: n1 exited with code 1/);
      const kept = /kept (\S+) for its logs/.exec(result.stdout)?.[1];
      expect(kept, context).toBeDefined();
      expect(existsSync(join(kept ?? '', 'n1.log'))).toBe(true);
      rmSync(kept ?? '', { recursive: true, force: true });
    } finally {
      await Promise.all(blockers.map((blocker) => new Promise<void>((resolve) => blocker.close(() => { resolve(); }))));
    }
  }, 70_000);
});
