/**
 * The HTTP API of one node: locks, status, metrics and the maintenance schedules (docs/operations.md).
 *
 * Any node answers: lock operations are proposed through the node's Raft log, which followers forward
 * to the leader. Bodies are JSON, bounded in size and validated; a bad request gets a 4xx answer that
 * names the problem, and nothing a client sends can crash the node.
 *
 * @module
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { register as defaultRegistry, type Registry } from 'prom-client';
import { RaftLeaseError, positiveInteger } from '../raft/index.js';
import { invalidLeaseKey, invalidLeaseOwner, invalidLeaseTtl, type LeaseNode } from '../lease/index.js';
import type { MaintenanceOrchestrator } from '../maintenance/index.js';

/** Largest request body accepted by default: 64 KiB. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
/** Default bound on open client connections; beyond it new connections are closed at once. */
export const DEFAULT_MAX_CONNECTIONS = 1_024;
/**
 * Default bound on requests being handled at once over all connections (pipelined ones included);
 * beyond it a request gets 503. Well below the Raft layer's 10,000 pending proposals and reads, so
 * one client cannot use up the budget every other client's writes need.
 */
export const DEFAULT_MAX_REQUESTS_IN_FLIGHT = 1_000;
/** Default: a connection with no traffic for this long is closed, one that never sends a byte too. */
export const DEFAULT_SOCKET_IDLE_TIMEOUT_MS = 65_000;

/** Options of {@link HttpApi}. */
export interface HttpApiOptions {
  readonly node: LeaseNode;
  /** Serves `GET /v1/maintenance/schedules` when given. */
  readonly orchestrator?: MaintenanceOrchestrator | null;
  /** The metrics served at `GET /metrics`. Default: prom-client's global registry. */
  readonly registry?: Registry;
  /** When set, every request must carry `Authorization: Bearer <token>`. */
  readonly bearerToken?: string | null;
  /** Largest request body, in bytes. Default 64 KiB. */
  readonly maxBodyBytes?: number;
  /** How long one read of a lock may wait to catch up with the leader. Default 5,000 ms. */
  readonly readTimeoutMs?: number;
  /** Open client connections at most. Default {@link DEFAULT_MAX_CONNECTIONS}. */
  readonly maxConnections?: number;
  /** Requests handled at once at most; beyond, 503. Default {@link DEFAULT_MAX_REQUESTS_IN_FLIGHT}. */
  readonly maxRequestsInFlight?: number;
  /**
   * A connection without traffic for this long is closed (above the 60 s keep-alive timeout, so it
   * catches connections that never send a request). Default {@link DEFAULT_SOCKET_IDLE_TIMEOUT_MS}.
   */
  readonly socketIdleTimeoutMs?: number;
  readonly logger?: Logger;
}

/** An expected failure of a request: its status and a message that says what to do. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The HTTP API server of one node. */
export class HttpApi {
  private readonly node: LeaseNode;
  private readonly orchestrator: MaintenanceOrchestrator | null;
  private readonly registry: Registry;
  private readonly bearerToken: string | null;
  private readonly maxBodyBytes: number;
  private readonly readTimeoutMs: number;
  private readonly maxConnections: number;
  private readonly maxRequestsInFlight: number;
  private readonly socketIdleTimeoutMs: number;
  private requestsInFlight = 0;
  private closing: Promise<void> | null = null;
  private readonly logger: Logger;
  private server: Server | null = null;

  constructor(options: HttpApiOptions) {
    this.node = options.node;
    this.orchestrator = options.orchestrator ?? null;
    this.registry = options.registry ?? defaultRegistry;
    this.bearerToken = options.bearerToken ?? null;
    this.maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.readTimeoutMs = options.readTimeoutMs ?? 5_000;
    this.maxConnections = positiveInteger('maxConnections', options.maxConnections ?? DEFAULT_MAX_CONNECTIONS, 1_000_000);
    this.maxRequestsInFlight = positiveInteger('maxRequestsInFlight', options.maxRequestsInFlight ?? DEFAULT_MAX_REQUESTS_IN_FLIGHT, 1_000_000);
    this.socketIdleTimeoutMs = positiveInteger('socketIdleTimeoutMs', options.socketIdleTimeoutMs ?? DEFAULT_SOCKET_IDLE_TIMEOUT_MS, 3_600_000);
    this.logger = options.logger ?? pino({ level: 'silent' });
  }

  /** Starts serving on `host:port` (port 0 picks a free one). Resolves with the bound address. */
  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer((request, response) => {
      void this.handle(request, response);
    });
    // Slow or stuck clients cannot hold sockets forever.
    server.requestTimeout = 30_000;
    server.headersTimeout = 10_000;
    server.keepAliveTimeout = 60_000;
    // Bounded file descriptors: idle or silent connections cannot pile up until the node cannot open
    // its own files.
    server.timeout = this.socketIdleTimeoutMs;
    server.maxConnections = this.maxConnections;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server.address() as AddressInfo;
  }

  /**
   * Stops accepting connections and closes the idle ones; requests in progress go on and are
   * answered. Call {@link close} afterwards. Idempotent.
   */
  stopAccepting(): void {
    const server = this.server;
    if (server === null || this.closing !== null) return;
    this.closing = new Promise<void>((resolve) => {
      server.close(() => {
        resolve();
      });
    });
    server.closeIdleConnections();
  }

  /** Stops accepting connections and closes every connection, busy or not. */
  async close(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    this.stopAccepting();
    this.server = null;
    server.closeAllConnections();
    await this.closing;
  }

  /** Handles one request; never rejects. */
  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (this.requestsInFlight >= this.maxRequestsInFlight) {
      send(response, 503, { error: { code: 'TooManyRequests', message: `${this.requestsInFlight} requests are being handled on this node; retry shortly` } }, undefined, { 'retry-after': '1' });
      return;
    }
    this.requestsInFlight++;
    try {
      await this.handleAdmitted(request, response);
    } finally {
      this.requestsInFlight--;
    }
  }

  private async handleAdmitted(request: IncomingMessage, response: ServerResponse): Promise<void> {
    try {
      const { status, body, contentType } = await this.route(request);
      send(response, status, body, contentType);
    } catch (error) {
      if (error instanceof HttpError) {
        send(response, error.status, { error: { code: error.code, message: error.message } }, undefined, error.headers);
        return;
      }
      if (request.socket.destroyed) {
        // The client went away mid-request: nobody to answer.
        this.logger.debug({ err: error, url: request.url }, 'client disconnected');
        return;
      }
      const mapped = mapError(error);
      if (mapped.status >= 500 && mapped.code === 'Internal') this.logger.error({ err: error, url: request.url }, 'request failed');
      send(response, mapped.status, { error: { code: mapped.code, message: mapped.message } }, undefined, mapped.status === 503 ? { 'retry-after': '1' } : undefined);
    }
  }

  private async route(request: IncomingMessage): Promise<{ status: number; body: unknown; contentType?: string }> {
    if (this.bearerToken !== null && !sameSecret(request.headers.authorization ?? '', `Bearer ${this.bearerToken}`)) {
      throw new HttpError(401, 'Unauthorized', 'missing or wrong bearer token (send Authorization: Bearer <token>)', { 'www-authenticate': 'Bearer' });
    }
    const path = requestPath(request.url ?? '');
    const method = request.method ?? 'GET';
    if (path === '/metrics') {
      requireMethod(method, 'GET');
      return { status: 200, body: await this.registry.metrics(), contentType: this.registry.contentType };
    }
    if (path === '/v1/status') {
      requireMethod(method, 'GET');
      return { status: 200, body: this.status() };
    }
    if (path === '/v1/maintenance/schedules') {
      requireMethod(method, 'GET');
      if (this.orchestrator === null) throw new HttpError(404, 'NotFound', 'this node runs no maintenance orchestrator');
      return { status: 200, body: { schedules: this.orchestrator.list() } };
    }
    const lockMatch = /^\/v1\/locks\/([^/]+)(?:\/(acquire|renew|release))?$/.exec(path);
    if (lockMatch !== null) {
      const key = decodeKey(lockMatch[1] ?? '');
      const action = lockMatch[2];
      if (action === undefined) {
        requireMethod(method, 'GET');
        return this.getLock(key);
      }
      requireMethod(method, 'POST');
      const body = await this.readJson(request);
      if (action === 'acquire') return this.acquire(body, key);
      if (action === 'renew') return this.renew(body, key);
      return this.release(body, key);
    }
    throw new HttpError(404, 'NotFound', `no route ${method} ${path}; see docs/operations.md`);
  }

  private status(): object {
    const status = this.node.raft.status();
    return {
      id: status.id,
      role: status.role,
      term: status.term,
      leader: status.leader,
      commitIndex: status.commitIndex,
      appliedIndex: status.appliedIndex,
      members: status.membership,
    };
  }

  private async getLock(key: string): Promise<{ status: number; body: unknown }> {
    // Linearizable: wait until this node has applied everything committed when the request arrived.
    await this.node.raft.readIndex({ timeoutMs: this.readTimeoutMs });
    const lease = this.node.table.get(key);
    if (lease === undefined) return { status: 404, body: { key, held: false } };
    return { status: 200, body: { key, held: true, holder: lease.owner, token: lease.fencingToken, ttlMs: lease.ttlMs } };
  }

  private async acquire(body: unknown, key: string): Promise<{ status: number; body: unknown }> {
    const fields = objectBody(body, ['owner', 'ttlMs']);
    const owner = stringField(fields, 'owner', invalidLeaseOwner);
    const ttlMs = fields.ttlMs;
    const ttlProblem = invalidLeaseTtl(ttlMs);
    if (ttlProblem !== null) throw new HttpError(400, 'InvalidArgument', `ttlMs: ${ttlProblem}`);
    // The HTTP client computes its own validity from when it sent the request (docs/lease-safety.md),
    // so no Lease object (and no timer) is kept here.
    const result = await this.node.acquireRecord(key, { owner, ttlMs: ttlMs as number });
    if (!result.acquired) return { status: 409, body: { acquired: false, holder: result.holder } };
    return { status: 200, body: { acquired: true, token: result.lease.fencingToken, ttlMs: result.lease.ttlMs, renewals: result.lease.renewals } };
  }

  private async renew(body: unknown, key: string): Promise<{ status: number; body: unknown }> {
    const fields = objectBody(body, ['owner', 'token', 'ttlMs']);
    const owner = stringField(fields, 'owner', invalidLeaseOwner);
    const token = tokenField(fields);
    const ttlMs = fields.ttlMs;
    if (ttlMs !== undefined) {
      const problem = invalidLeaseTtl(ttlMs);
      if (problem !== null) throw new HttpError(400, 'InvalidArgument', `ttlMs: ${problem}`);
    }
    const lease = await this.node.renewLease(key, { owner, fencingToken: token, ...(ttlMs === undefined ? {} : { ttlMs: ttlMs as number }) });
    return { status: 200, body: { renewed: true, token: lease.fencingToken, ttlMs: lease.ttlMs, renewals: lease.renewals } };
  }

  private async release(body: unknown, key: string): Promise<{ status: number; body: unknown }> {
    const fields = objectBody(body, ['owner', 'token', 'renewals']);
    const owner = stringField(fields, 'owner', invalidLeaseOwner);
    const token = tokenField(fields);
    const renewals = fields.renewals;
    if (renewals !== undefined && (typeof renewals !== 'number' || !Number.isSafeInteger(renewals) || renewals < 0)) {
      throw new HttpError(400, 'InvalidArgument', 'renewals: must be a non-negative integer (the renewals of the latest acquire or renew answer)');
    }
    try {
      // With `renewals`, a delayed release cannot end a lease its owner re-acquired or renewed since.
      await this.node.release(key, { owner, fencingToken: token, ...(renewals === undefined ? {} : { renewals }) });
    } catch (error) {
      if (error instanceof RaftLeaseError && error.code === 'InvalidArgument' && error.message.startsWith('no lease')) {
        throw new HttpError(409, 'NotHeld', error.message);
      }
      throw error;
    }
    return { status: 200, body: { released: true } };
  }

  /** Reads a JSON body of at most `maxBodyBytes`; 413 beyond, 400 when it is not JSON. */
  private async readJson(request: IncomingMessage): Promise<unknown> {
    const declared = Number(request.headers['content-length'] ?? '0');
    if (Number.isFinite(declared) && declared > this.maxBodyBytes) {
      throw new HttpError(413, 'PayloadTooLarge', `the body may take at most ${this.maxBodyBytes} bytes`, { connection: 'close' });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request as AsyncIterable<Buffer>) {
      size += chunk.byteLength;
      if (size > this.maxBodyBytes) {
        // Leaving the loop destroys the request stream: the connection cannot carry another request.
        throw new HttpError(413, 'PayloadTooLarge', `the body may take at most ${this.maxBodyBytes} bytes`, { connection: 'close' });
      }
      chunks.push(chunk);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.length === 0) throw new HttpError(400, 'InvalidArgument', 'a JSON body is required');
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new HttpError(400, 'InvalidArgument', 'the body is not valid JSON');
    }
  }
}

function send(response: ServerResponse, status: number, body: unknown, contentType?: string, headers?: Record<string, string>): void {
  if (response.headersSent) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  response.writeHead(status, { 'content-type': contentType ?? 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  response.end(text);
}

function requireMethod(method: string, allowed: string): void {
  if (method !== allowed) throw new HttpError(405, 'MethodNotAllowed', `use ${allowed}`, { allow: allowed });
}

/** The path of an origin-form request target (`/path?query`); anything else is a 400. */
function requestPath(target: string): string {
  // Absolute or protocol-relative targets would be routed by the path after a host: refuse them.
  if (!target.startsWith('/') || target.startsWith('//')) throw new HttpError(400, 'InvalidArgument', 'the request target must be a path starting with a single /');
  const end = target.search(/[?#]/);
  return end < 0 ? target : target.slice(0, end);
}

/** Compares secrets in time independent of where they differ. */
function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

function decodeKey(encoded: string): string {
  let key: string;
  try {
    key = decodeURIComponent(encoded);
  } catch {
    throw new HttpError(400, 'InvalidArgument', 'the key is not valid percent-encoding');
  }
  const problem = invalidLeaseKey(key);
  if (problem !== null) throw new HttpError(400, 'InvalidArgument', problem);
  return key;
}

function objectBody(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'InvalidArgument', 'the body must be a JSON object');
  const unknownField = Object.keys(body).find((field) => !allowed.includes(field));
  if (unknownField !== undefined) throw new HttpError(400, 'InvalidArgument', `unknown field '${unknownField}'; allowed: ${allowed.join(', ')}`);
  return body as Record<string, unknown>;
}

function stringField(fields: Record<string, unknown>, name: string, check: (value: unknown) => string | null): string {
  const problem = check(fields[name]);
  if (problem !== null) throw new HttpError(400, 'InvalidArgument', `${name}: ${problem}`);
  return fields[name] as string;
}

function tokenField(fields: Record<string, unknown>): number {
  const token = fields.token;
  if (typeof token !== 'number' || !Number.isSafeInteger(token) || token < 1) throw new HttpError(400, 'InvalidArgument', 'token: must be a positive integer (the fencing token of the grant)');
  return token;
}

function mapError(error: unknown): { status: number; code: string; message: string } {
  if (error instanceof RaftLeaseError) {
    switch (error.code) {
      case 'InvalidArgument':
        return { status: 400, code: error.code, message: error.message };
      case 'LeaseLost':
        return { status: 409, code: error.code, message: error.message };
      case 'NotLeader':
      case 'ProposalDropped':
      case 'Timeout':
      case 'OutcomeUnknown':
      case 'Stopped':
      case 'TooManyPendingProposals':
        return { status: 503, code: error.code, message: `${error.message}; retry (for acquire: the request may still have applied — retrying with the same owner is safe)` };
      case 'ProposalTooLarge':
        return { status: 413, code: error.code, message: error.message };
      case 'InvalidConfig':
      case 'InvalidMembershipChange':
      case 'LearnerNotCaughtUp':
      case 'MalformedMessage':
      case 'MembershipChangeInProgress':
      case 'SnapshotFailed':
      case 'StorageFailed':
        return { status: 500, code: error.code, message: error.message };
    }
  }
  return { status: 500, code: 'Internal', message: 'internal error; see the node log' };
}
