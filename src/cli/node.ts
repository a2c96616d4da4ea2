/**
 * `raftlease node`: one cluster member as a process — TCP transport, durable file storage, the lease
 * table, the maintenance orchestrator and the HTTP API — configured from flags and/or a JSON file.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { pino, type Logger } from 'pino';
import { register as defaultRegistry } from 'prom-client';
import { ConfigError } from '../raft/index.js';
import { FileStorage, SystemClock, SystemWallClock, TcpTransport, sleepOn, type Clock } from '../runtime/index.js';
import { LeaseNode } from '../lease/index.js';
import { MaintenanceMetrics, MaintenanceOrchestrator, registerTransportMetrics, type JobContext, type MaintenanceScheduleOptions } from '../maintenance/index.js';
import { HttpApi } from '../server/http-api.js';

/** A host and port. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** Everything `raftlease node` needs, after flags and the config file were merged and validated. */
export interface NodeConfig {
  readonly id: string;
  readonly clusterId: string;
  readonly listen: Endpoint;
  readonly http: Endpoint;
  readonly peers: Readonly<Record<string, Endpoint>>;
  readonly dataDir: string;
  readonly tls: { readonly cert: string; readonly key: string; readonly ca: string } | null;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly bearerToken: string | null;
  readonly tickIntervalMs: number;
  /** Run the demo maintenance schedules (what `raftlease cluster` shows). */
  readonly demoSchedules: boolean;
}

/** A usage problem: exit code 2 with this message. */
export class UsageError extends Error {}

export const NODE_USAGE = `usage: raftlease node --id ID --listen HOST:PORT --http HOST:PORT --peers ID=HOST:PORT,... --data-dir DIR [options]

Runs one cluster member until SIGINT or SIGTERM (a leader hands leadership over first).

options:
  --id ID                  this node's id; must be one of --peers
  --listen HOST:PORT       Raft transport address (TCP)
  --http HOST:PORT         HTTP API address (default loopback only: use 127.0.0.1)
  --peers LIST             every member, this one included: n1=127.0.0.1:7001,n2=127.0.0.1:7002,...
  --data-dir DIR           write-ahead log, snapshots and the lock file
  --cluster-id ID          refuses peers of other clusters (default raftlease)
  --config FILE            JSON file with the same settings (camelCase keys); flags win
  --tls-cert FILE --tls-key FILE --tls-ca FILE
                           mutual TLS between members (all three, or none)
  --bearer-token TOKEN     required on every HTTP request (or RAFTLEASE_BEARER_TOKEN)
  --tick-ms N              Raft tick in ms (default 50: elections after 10–20 ticks, 0.5–1 s)
  --log-level LEVEL        fatal, error, warn, info (default), debug, trace or silent
  --demo-schedules         run the demo maintenance schedules
  -h, --help               show this help
`;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Parses `HOST:PORT`. */
export function parseEndpoint(flag: string, text: string): Endpoint {
  const match = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (match === null || !Number.isInteger(port) || port < 0 || port > 65_535) throw new UsageError(`--${flag} must be HOST:PORT (port 0–65535), got '${text}'`);
  return { host: (match[1] ?? '').replace(/^\[|\]$/g, ''), port };
}

/** Parses `id=host:port,...`. */
export function parsePeers(text: string): Record<string, Endpoint> {
  const peers: Record<string, Endpoint> = {};
  for (const item of text.split(',').filter((part) => part.length > 0)) {
    const equals = item.indexOf('=');
    if (equals <= 0) throw new UsageError(`--peers entries must be ID=HOST:PORT, got '${item}'`);
    const id = item.slice(0, equals);
    if (peers[id] !== undefined) throw new UsageError(`--peers names ${id} twice`);
    const endpoint = parseEndpoint('peers', item.slice(equals + 1));
    const sharing = Object.entries(peers).find(([, other]) => other.host === endpoint.host && other.port === endpoint.port);
    if (sharing !== undefined) throw new UsageError(`--peers gives ${sharing[0]} and ${id} the same address ${endpoint.host}:${endpoint.port}`);
    peers[id] = endpoint;
  }
  if (Object.keys(peers).length === 0) throw new UsageError('--peers must name at least this node');
  return peers;
}

/**
 * A flag's value as a non-negative integer written in decimal digits only, or NaN: `Number()` would
 * also take `0x10`, `1e2` or ` 7 `. Callers check the range.
 */
export function decimalInteger(text: string): number {
  return /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
}

/** Merges flags over the config file and validates everything; throws UsageError. */
export function resolveNodeConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): NodeConfig {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      allowPositionals: false,
      options: {
        id: { type: 'string' },
        listen: { type: 'string' },
        http: { type: 'string' },
        peers: { type: 'string' },
        'data-dir': { type: 'string' },
        'cluster-id': { type: 'string' },
        config: { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'tls-ca': { type: 'string' },
        'bearer-token': { type: 'string' },
        'tick-ms': { type: 'string' },
        'log-level': { type: 'string' },
        'demo-schedules': { type: 'boolean' },
      },
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  let file: Record<string, unknown> = {};
  if (values.config !== undefined) {
    let text: string;
    try {
      text = readFileSync(values.config, 'utf8');
    } catch (error) {
      throw new UsageError(`cannot read --config ${values.config}: ${error instanceof Error ? error.message : String(error)}`);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
      file = parsed as Record<string, unknown>;
    } catch (error) {
      throw new UsageError(`--config ${values.config} is not a JSON object: ${error instanceof Error ? error.message : String(error)}`);
    }
    const known = ['id', 'listen', 'http', 'peers', 'dataDir', 'clusterId', 'tlsCert', 'tlsKey', 'tlsCa', 'bearerToken', 'tickMs', 'logLevel', 'demoSchedules'];
    const unknownKey = Object.keys(file).find((key) => !known.includes(key));
    if (unknownKey !== undefined) throw new UsageError(`--config ${values.config}: unknown key '${unknownKey}'; known: ${known.join(', ')}`);
  }
  const pick = (flag: string, key: string): string | undefined => {
    const fromFlag = (values as Record<string, unknown>)[flag];
    if (typeof fromFlag === 'string') return fromFlag;
    const fromFile = file[key];
    if (fromFile === undefined) return undefined;
    if (key === 'peers' && typeof fromFile === 'object' && fromFile !== null && !Array.isArray(fromFile)) {
      return Object.entries(fromFile as Record<string, unknown>).map(([id, address]) => `${id}=${String(address)}`).join(',');
    }
    if (typeof fromFile !== 'string' && typeof fromFile !== 'number') throw new UsageError(`config key '${key}' must be a string`);
    return String(fromFile);
  };
  const required = (flag: string, key: string): string => {
    const value = pick(flag, key);
    if (value === undefined || value.length === 0) throw new UsageError(`--${flag} is required (or '${key}' in --config)`);
    return value;
  };
  const id = required('id', 'id');
  const peers = parsePeers(required('peers', 'peers'));
  if (peers[id] === undefined) throw new UsageError(`--id ${id} is not among --peers (${Object.keys(peers).join(', ')})`);
  const listen = parseEndpoint('listen', required('listen', 'listen'));
  const http = parseEndpoint('http', required('http', 'http'));
  const dataDir = required('data-dir', 'dataDir');
  const clusterId = pick('cluster-id', 'clusterId') ?? 'raftlease';
  const tlsFiles = [pick('tls-cert', 'tlsCert'), pick('tls-key', 'tlsKey'), pick('tls-ca', 'tlsCa')];
  let tls: NodeConfig['tls'] = null;
  if (tlsFiles.some((item) => item !== undefined)) {
    const [certFile, keyFile, caFile] = tlsFiles;
    if (certFile === undefined || keyFile === undefined || caFile === undefined) throw new UsageError('give all of --tls-cert, --tls-key and --tls-ca, or none');
    const read = (flag: string, path: string): string => {
      try {
        return readFileSync(path, 'utf8');
      } catch (error) {
        throw new UsageError(`cannot read --${flag} ${path}: ${error instanceof Error ? error.message : String(error)}`);
      }
    };
    tls = { cert: read('tls-cert', certFile), key: read('tls-key', keyFile), ca: read('tls-ca', caFile) };
  }
  const logLevel = pick('log-level', 'logLevel') ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got '${logLevel}'`);
  const tickText = pick('tick-ms', 'tickMs') ?? '50';
  const tickIntervalMs = decimalInteger(tickText);
  if (!Number.isInteger(tickIntervalMs) || tickIntervalMs < 1 || tickIntervalMs > 10_000) throw new UsageError(`--tick-ms must be an integer in [1, 10000], got '${tickText}'`);
  const bearerToken = pick('bearer-token', 'bearerToken') ?? env.RAFTLEASE_BEARER_TOKEN ?? null;
  // An empty token (or one with surrounding spaces, which HTTP trims from headers) could never match.
  if (bearerToken !== null && (bearerToken.length === 0 || bearerToken.trim() !== bearerToken)) {
    throw new UsageError('the bearer token (--bearer-token, bearerToken or RAFTLEASE_BEARER_TOKEN) must be non-empty, without leading or trailing spaces; unset it to serve without one');
  }
  const demoSchedules = values['demo-schedules'] === true || file.demoSchedules === true;
  return { id, clusterId, listen, http, peers, dataDir, tls, logLevel: logLevel as NodeConfig['logLevel'], bearerToken, tickIntervalMs, demoSchedules };
}

/** The demo schedules `raftlease cluster` runs: short, so that a minute shows several occurrences. */
export function demoSchedules(clock: Clock): MaintenanceScheduleOptions[] {
  const job = (steps: number, stepMs: number) => async (context: JobContext): Promise<void> => {
    const from = typeof context.lastCheckpoint === 'number' ? context.lastCheckpoint : 0;
    context.logger.info({ from, steps, attempt: context.attempt }, from > 0 ? `resuming at step ${from}` : 'starting');
    for (let step = from; step < steps; step++) {
      await sleepOn(clock, stepMs, context.signal);
      await context.checkpoint(step + 1);
    }
  };
  // Lock TTLs well inside the windows: a runner killed mid-job loses its lock in time for another
  // node to resume the occurrence while the window is open.
  return [
    { id: 'demo-compaction', intervalMs: 20_000, windowMs: 15_000, estimatedDurationMs: 4_000, safetyMarginMs: 2_000, lockTtlMs: 6_000, run: job(8, 750) },
    { id: 'demo-backup', intervalMs: 30_000, windowMs: 20_000, estimatedDurationMs: 5_000, safetyMarginMs: 2_000, lockTtlMs: 7_000, jitterMs: 500, run: job(8, 800) },
  ];
}

/** Runs a node until SIGINT/SIGTERM. Resolves with the exit code. */
export async function runNode(config: NodeConfig): Promise<number> {
  const logger: Logger = pino({ level: config.logLevel, base: { node: config.id } });
  const clock = new SystemClock();
  // What has started, to stop in reverse order when a later step fails (a port in use, say): the
  // process must then exit rather than run on as a member without an API.
  const started: (() => Promise<void>)[] = [];
  let services: Services;
  try {
    services = await startServices(config, logger, clock, started);
  } catch (error) {
    for (const stop of started.reverse()) {
      await stop().catch((failure: unknown) => {
        logger.warn({ err: failure }, 'stopping after a failed start');
      });
    }
    throw error;
  }
  const { storage, transport, node, orchestrator, api, address } = services;
  logger.info({ raft: config.listen, http: `${address.address}:${address.port}`, dataDir: config.dataDir }, 'node started');
  const advertised = config.peers[config.id];
  if (advertised !== undefined && config.listen.port !== 0 && advertised.port !== config.listen.port) {
    // Legitimate behind a port mapping (a container), a typing error otherwise: peers dial the advertised port.
    logger.warn({ listen: config.listen, advertised }, `--listen port ${config.listen.port} differs from the port --peers gives this node (${advertised.port}); peers connect to ${advertised.port}, which must forward to ${config.listen.port}`);
  }
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'stopping');
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  // New connections are refused first; requests in progress are answered: those waiting on the log
  // get 503 Stopped when the node stops, and only then do the remaining connections close.
  api.stopAccepting();
  await orchestrator.stop();
  await node.stop({ transferLeadership: true });
  await new Promise<void>((resolve) => setImmediate(resolve));
  await api.close();
  await transport.close();
  await storage.close();
  logger.info('stopped');
  return typeof process.exitCode === 'number' ? process.exitCode : 0;
}

interface Services {
  readonly storage: FileStorage;
  readonly transport: TcpTransport;
  readonly node: LeaseNode;
  readonly orchestrator: MaintenanceOrchestrator;
  readonly api: HttpApi;
  readonly address: AddressInfo;
}

/** Starts storage, transport, node, orchestrator and HTTP API in order, pushing each one's stop onto `started`. */
async function startServices(config: NodeConfig, logger: Logger, clock: SystemClock, started: (() => Promise<void>)[]): Promise<Services> {
  const storage = await FileStorage.open(config.dataDir, { logger });
  started.push(() => storage.close());
  const transport = await TcpTransport.start({
    clusterId: config.clusterId,
    nodeId: config.id,
    listen: config.listen,
    peers: config.peers,
    logger,
    ...(config.tls === null ? {} : { tls: config.tls }),
  });
  started.push(() => transport.close());
  const node = await LeaseNode.start({
    id: config.id,
    voters: Object.keys(config.peers),
    transport,
    storage,
    clock,
    logger,
    tickIntervalMs: config.tickIntervalMs,
    onFatalError: (error) => {
      logger.fatal({ err: error }, 'the node stopped after a fatal error');
      process.exitCode = 1;
      process.kill(process.pid, 'SIGTERM');
    },
  });
  started.push(() => node.stop({ transferLeadership: true }));
  const metrics = new MaintenanceMetrics(defaultRegistry);
  registerTransportMetrics(config.id, () => ({ ...transport.stats() }), defaultRegistry);
  const orchestrator = new MaintenanceOrchestrator({ node, clock, wallClock: new SystemWallClock(), logger, metrics });
  if (config.demoSchedules) for (const schedule of demoSchedules(clock)) orchestrator.register(schedule);
  orchestrator.start();
  started.push(() => orchestrator.stop());
  const api = new HttpApi({ node, orchestrator, registry: defaultRegistry, bearerToken: config.bearerToken, logger });
  try {
    const address = await api.listen(config.http.host, config.http.port);
    return { storage, transport, node, orchestrator, api, address };
  } catch (error) {
    throw new Error(`cannot serve the HTTP API on --http ${config.http.host}:${config.http.port}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
}

/** Validation errors of the configuration surface as usage errors (exit 2). */
export function isUsageProblem(error: unknown): boolean {
  return error instanceof UsageError || error instanceof ConfigError;
}
