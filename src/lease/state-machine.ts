/**
 * The replicated lease table: a deterministic state machine over the Raft log (design brief §4).
 *
 * No clock is read here. Time is counted by the leader's lessor, which proposes `Expire` when a
 * lease's countdown ends; the table only records who holds what, under which fencing token.
 *
 * @module
 */
import { Packr, Unpackr } from 'msgpackr';
import { LONE_SURROGATE, type LogIndex } from '../raft/index.js';
import { MAX_CHECKPOINT_BYTES, MaintenanceRecords, type MaintenanceCommand, type MaintenanceRecord, type MaintenanceResult } from './maintenance-records.js';

/** Longest key, in UTF-8 bytes. */
export const MAX_LEASE_KEY_BYTES = 1024;
/** Longest owner name, in UTF-8 bytes. */
export const MAX_LEASE_OWNER_BYTES = 256;
/** Longest client request id, in UTF-8 bytes. */
export const MAX_REQUEST_ID_BYTES = 128;
/** Longest lease a client may ask for: one day. */
export const MAX_LEASE_TTL_MS = 24 * 60 * 60 * 1000;
/** Most leases held at once; acquiring a new key beyond this is refused. */
export const MAX_LEASES = 100_000;
/** Client request ids remembered to answer retries; the oldest is forgotten first. */
export const DEFAULT_MAX_REMEMBERED_REQUESTS = 10_000;

/** A lease as the replicated table holds it. */
export interface LeaseRecord {
  readonly key: string;
  readonly owner: string;
  /** The log index of the entry that granted the lease: unique and increasing across all grants. */
  readonly fencingToken: LogIndex;
  /** The TTL of the latest grant or renewal, in milliseconds (counted by the leader). */
  readonly ttlMs: number;
  /** Renewals (and re-acquires) applied since the grant; an `Expire` names the count it was proposed for. */
  readonly renewals: number;
}

/** A command of the lease state machine. */
export type LeaseCommand =
  /** Take the lease on `key`, or re-take (renew) one `owner` already holds. */
  | { readonly type: 'Acquire'; readonly key: string; readonly owner: string; readonly ttlMs: number; readonly requestId: string }
  /** Extend a lease `owner` holds under `fencingToken` by a fresh `ttlMs`. */
  | { readonly type: 'Renew'; readonly key: string; readonly owner: string; readonly fencingToken: LogIndex; readonly ttlMs: number; readonly requestId: string }
  /**
   * Give up a lease `owner` holds under `fencingToken`. With `renewals`, only if the lease was not
   * renewed or re-acquired since that count: a release of an older `Lease` object of the same owner,
   * applied after that owner re-acquired the key, must not end the newer one.
   */
  | { readonly type: 'Release'; readonly key: string; readonly owner: string; readonly fencingToken: LogIndex; readonly requestId: string; readonly renewals?: number }
  /**
   * Proposed by the leader's lessor when the countdown of the grant `fencingToken`, as of its
   * `renewals`-th renewal, ran out. A renewal applied in between makes it stale.
   */
  | { readonly type: 'Expire'; readonly key: string; readonly fencingToken: LogIndex; readonly renewals: number };

/**
 * Every command of the lease table: the lease commands and the maintenance orchestrator's records,
 * which are fenced by the lease on the schedule's key (see `maintenance-records.ts`).
 */
export type LeaseTableCommand = LeaseCommand | MaintenanceCommand;

/** What applying a command did. */
export type LeaseResult =
  /** The lease is `owner`'s; `renewed` when it already held it (same token). */
  | { readonly type: 'Granted'; readonly lease: LeaseRecord; readonly renewed: boolean }
  /** Someone else holds the lease. */
  | { readonly type: 'Held'; readonly lease: LeaseRecord }
  | { readonly type: 'Released'; readonly lease: LeaseRecord }
  /** Renew or release refused: no lease on the key, or another holder or token than the caller named. */
  | { readonly type: 'NotHeld'; readonly key: string; readonly reason: 'NoLease' | 'OtherHolder' | 'TokenMismatch' | 'RenewedSince' }
  | { readonly type: 'Expired'; readonly lease: LeaseRecord }
  /** An Expire for a grant that is no longer in the table (released, re-granted or renewed since). */
  | { readonly type: 'ExpireIgnored'; readonly key: string }
  /** A malformed or out-of-bounds command; nothing changed. */
  | { readonly type: 'Rejected'; readonly reason: string }
  | MaintenanceResult;

/** Something that changed in the table, for the leader's lessor. */
export type LeaseEvent =
  | { readonly type: 'Granted'; readonly lease: LeaseRecord; readonly renewed: boolean }
  | { readonly type: 'Removed'; readonly lease: LeaseRecord; readonly why: 'Released' | 'Expired' }
  | { readonly type: 'Restored' };

const packr = new Packr({ useRecords: false, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: false });
const utf8 = new TextEncoder();
/** Version 2 adds the maintenance records; version 1 snapshots (leases only) are still restored. */
const SNAPSHOT_VERSION = 2;
const RESULT_TYPES: ReadonlySet<string> = new Set(['Granted', 'Held', 'Released', 'NotHeld', 'Expired', 'ExpireIgnored', 'Rejected']);

/**
 * Encodes a command for the log. Throws a `TypeError` for strings that are not well-formed Unicode:
 * the encoding would replace their lone surrogates, so two different strings could arrive as one.
 */
export function encodeLeaseCommand(command: LeaseTableCommand): Uint8Array {
  const strings = [
    command.key,
    ...('owner' in command ? [command.owner] : []),
    ...('requestId' in command ? [command.requestId] : []),
    ...(command.type === 'FinishOccurrence' && command.error !== null ? [command.error] : []),
  ];
  if (strings.some((text) => LONE_SURROGATE.test(text))) throw new TypeError('lease command strings must be well-formed Unicode');
  switch (command.type) {
    case 'Acquire':
      return packr.pack(['A', command.key, command.owner, command.ttlMs, command.requestId]);
    case 'Renew':
      return packr.pack(['N', command.key, command.owner, command.fencingToken, command.ttlMs, command.requestId]);
    case 'Release':
      return packr.pack(
        command.renewals === undefined
          ? ['R', command.key, command.owner, command.fencingToken, command.requestId]
          : ['R', command.key, command.owner, command.fencingToken, command.requestId, command.renewals],
      );
    case 'Expire':
      return packr.pack(['E', command.key, command.fencingToken, command.renewals]);
    case 'BeginOccurrence':
      return packr.pack(['B', command.key, command.occurrenceMs, command.owner, command.fencingToken]);
    case 'Checkpoint':
      return packr.pack(['C', command.key, command.occurrenceMs, command.owner, command.fencingToken, command.data]);
    case 'FinishOccurrence':
      return packr.pack(['F', command.key, command.occurrenceMs, command.owner, command.fencingToken, command.result, command.error]);
    case 'MissOccurrence':
      return packr.pack(['M', command.key, command.occurrenceMs]);
  }
}

/** Whether `text` needs more than `maxBytes` bytes in UTF-8 (a UTF-16 unit takes at most 3). */
function longerThanUtf8(text: string, maxBytes: number): boolean {
  if (text.length * 3 <= maxBytes) return false;
  return utf8.encode(text).byteLength > maxBytes;
}

/** Why `key` is not an acceptable lease key, or null. */
export function invalidLeaseKey(key: unknown): string | null {
  if (typeof key !== 'string' || key.length === 0) return 'the key must be a non-empty string';
  if (LONE_SURROGATE.test(key)) return 'the key is not well-formed Unicode';
  if (longerThanUtf8(key, MAX_LEASE_KEY_BYTES)) return `the key is longer than ${MAX_LEASE_KEY_BYTES} UTF-8 bytes`;
  return null;
}

/** Why `owner` is not an acceptable owner name, or null. */
export function invalidLeaseOwner(owner: unknown): string | null {
  if (typeof owner !== 'string' || owner.length === 0) return 'the owner must be a non-empty string';
  if (LONE_SURROGATE.test(owner)) return 'the owner is not well-formed Unicode';
  if (longerThanUtf8(owner, MAX_LEASE_OWNER_BYTES)) return `the owner is longer than ${MAX_LEASE_OWNER_BYTES} UTF-8 bytes`;
  return null;
}

/** Why `ttlMs` is not an acceptable TTL, or null. */
export function invalidLeaseTtl(ttlMs: unknown): string | null {
  if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < 1 || ttlMs > MAX_LEASE_TTL_MS) {
    return `ttlMs must be an integer in [1, ${MAX_LEASE_TTL_MS}]`;
  }
  return null;
}

function invalidRequestId(requestId: unknown): string | null {
  if (typeof requestId !== 'string' || requestId.length === 0) return 'the request id must be a non-empty string';
  if (LONE_SURROGATE.test(requestId)) return 'the request id is not well-formed Unicode';
  if (longerThanUtf8(requestId, MAX_REQUEST_ID_BYTES)) return `the request id is longer than ${MAX_REQUEST_ID_BYTES} UTF-8 bytes`;
  return null;
}

/**
 * Decodes a command; returns a reason string for anything malformed (the state machine rejects it
 * deterministically, on every node alike).
 */
export function decodeLeaseCommand(bytes: Uint8Array): LeaseTableCommand | string {
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch {
    return 'not valid msgpack';
  }
  if (!Array.isArray(value)) return 'not an array';
  const [tag, key, a, b, c, d, e] = value as unknown[];
  const keyProblem = invalidLeaseKey(key);
  if (keyProblem !== null) return keyProblem;
  const validKey = key as string;
  switch (tag) {
    case 'A': {
      if (value.length !== 5) return 'Acquire takes 4 fields';
      const problem = invalidLeaseOwner(a) ?? invalidLeaseTtl(b) ?? invalidRequestId(c);
      if (problem !== null) return problem;
      return { type: 'Acquire', key: validKey, owner: a as string, ttlMs: b as number, requestId: c as string };
    }
    case 'N': {
      if (value.length !== 6) return 'Renew takes 5 fields';
      const problem = invalidLeaseOwner(a) ?? invalidFencingToken(b) ?? invalidLeaseTtl(c) ?? invalidRequestId(d);
      if (problem !== null) return problem;
      return { type: 'Renew', key: validKey, owner: a as string, fencingToken: b as LogIndex, ttlMs: c as number, requestId: d as string };
    }
    case 'R': {
      if (value.length !== 5 && value.length !== 6) return 'Release takes 4 or 5 fields';
      const problem =
        invalidLeaseOwner(a) ??
        invalidFencingToken(b) ??
        invalidRequestId(c) ??
        (value.length === 5 || (typeof d === 'number' && Number.isSafeInteger(d) && d >= 0) ? null : 'renewals must be a non-negative integer');
      if (problem !== null) return problem;
      const release = { type: 'Release' as const, key: validKey, owner: a as string, fencingToken: b as LogIndex, requestId: c as string };
      return value.length === 6 ? { ...release, renewals: d as number } : release;
    }
    case 'E': {
      if (value.length !== 4) return 'Expire takes 3 fields';
      const problem = invalidFencingToken(a) ?? (typeof b === 'number' && Number.isSafeInteger(b) && b >= 0 ? null : 'renewals must be a non-negative integer');
      if (problem !== null) return problem;
      return { type: 'Expire', key: validKey, fencingToken: a as LogIndex, renewals: b as number };
    }
    case 'B': {
      if (value.length !== 5) return 'BeginOccurrence takes 4 fields';
      const problem = invalidOccurrence(a) ?? invalidLeaseOwner(b) ?? invalidFencingToken(c);
      if (problem !== null) return problem;
      return { type: 'BeginOccurrence', key: validKey, occurrenceMs: a as number, owner: b as string, fencingToken: c as LogIndex };
    }
    case 'C': {
      if (value.length !== 6) return 'Checkpoint takes 5 fields';
      const problem =
        invalidOccurrence(a) ??
        invalidLeaseOwner(b) ??
        invalidFencingToken(c) ??
        (d instanceof Uint8Array ? (d.byteLength <= MAX_CHECKPOINT_BYTES ? null : `a checkpoint may take at most ${MAX_CHECKPOINT_BYTES} bytes`) : 'checkpoint data must be bytes');
      if (problem !== null) return problem;
      return { type: 'Checkpoint', key: validKey, occurrenceMs: a as number, owner: b as string, fencingToken: c as LogIndex, data: Uint8Array.from(d as Uint8Array) };
    }
    case 'F': {
      if (value.length !== 7) return 'FinishOccurrence takes 6 fields';
      const problem =
        invalidOccurrence(a) ??
        invalidLeaseOwner(b) ??
        invalidFencingToken(c) ??
        (d === 'ok' || d === 'error' ? null : "the result must be 'ok' or 'error'") ??
        (e === null || (typeof e === 'string' && !LONE_SURROGATE.test(e)) ? null : 'the error must be null or a well-formed string');
      if (problem !== null) return problem;
      return { type: 'FinishOccurrence', key: validKey, occurrenceMs: a as number, owner: b as string, fencingToken: c as LogIndex, result: d as 'ok' | 'error', error: e as string | null };
    }
    case 'M': {
      if (value.length !== 3) return 'MissOccurrence takes 2 fields';
      const problem = invalidOccurrence(a);
      if (problem !== null) return problem;
      return { type: 'MissOccurrence', key: validKey, occurrenceMs: a as number };
    }
    default:
      return 'unknown command';
  }
}

function invalidOccurrence(occurrenceMs: unknown): string | null {
  return typeof occurrenceMs === 'number' && Number.isSafeInteger(occurrenceMs) && occurrenceMs >= 0 ? null : 'the occurrence must be a non-negative integer (epoch ms)';
}

/** Why `token` is not an acceptable fencing token, or null. */
export function invalidFencingToken(token: unknown): string | null {
  return typeof token === 'number' && Number.isSafeInteger(token) && token >= 1 ? null : 'the fencing token must be a positive integer';
}

/**
 * The lease table. Deterministic: its state depends only on the commands applied, in order, and on
 * their log indexes.
 *
 * - **Fencing tokens** are the log index of the granting entry (design brief §4): every grant's entry
 *   has a higher index than every earlier one, so tokens are unique and strictly increasing across
 *   all grants in the cluster. Re-acquiring a lease one holds keeps its token.
 * - **Replicated renewals**: `Renew` (or re-acquiring) bumps the lease's `renewals` count, and the
 *   lessor's `Expire` names the count its countdown belongs to, so an `Expire` racing a renewal that
 *   was applied first is ignored. Renewals the leader answers from its own countdown never reach the
 *   table (`LeaseNode.renewOnLeader`; design brief §4, docs/lease-safety.md).
 * - **Retries apply once** (thesis §6.3): `Acquire`, `Renew` and `Release` carry a client request id; a
 *   command whose id was seen returns the first result and changes nothing. The table remembers the
 *   last `maxRememberedRequests` ids (default 10,000) and forgets the oldest first: a retry that
 *   arrives after that many newer requests is applied as new. For `Acquire` that is harmless (the same
 *   owner re-acquires the same lease, or finds it held); a stale `Release` names a fencing token, so it
 *   cannot release a newer grant.
 * - **Bounds**: keys up to 1,024 bytes, owners up to 256, TTLs from 1 ms to one day, at most 100,000
 *   leases, strings well-formed Unicode; anything else is rejected without changing the table (nor
 *   the request memory).
 */
export class LeaseStateMachine {
  private readonly leases = new Map<string, LeaseRecord>();
  /** The maintenance orchestrator's records, fenced by the leases above. */
  private readonly maintenance = new MaintenanceRecords((key) => this.leases.get(key));
  /** Request id → the result first returned, in the order they were applied. */
  private readonly requests = new Map<string, LeaseResult>();
  /**
   * The same ids in a ring, oldest at `oldestRequest`: finding the oldest through the Map's iterator
   * walks over every entry deleted before it, which made each apply cost microseconds once full.
   */
  private requestRing: (string | undefined)[] = [];
  private oldestRequest = 0;
  private readonly maxRememberedRequests: number;
  private listener: ((event: LeaseEvent) => void) | null = null;
  /** The change the command being applied made, announced once the command is fully applied. */
  private pendingEvent: LeaseEvent | null = null;

  constructor(options: { readonly maxRememberedRequests?: number } = {}) {
    this.maxRememberedRequests = options.maxRememberedRequests ?? DEFAULT_MAX_REMEMBERED_REQUESTS;
    if (!Number.isSafeInteger(this.maxRememberedRequests) || this.maxRememberedRequests < 1) {
      throw new RangeError(`maxRememberedRequests must be a positive integer, got ${this.maxRememberedRequests}`);
    }
  }

  /** Receives every change (the leader's lessor starts and stops countdowns from them). */
  onEvent(listener: ((event: LeaseEvent) => void) | null): void {
    this.listener = listener;
  }

  /** The lease on `key`, if any. */
  get(key: string): LeaseRecord | undefined {
    return this.leases.get(key);
  }

  /** Every lease, in key order. */
  list(): LeaseRecord[] {
    return [...this.leases.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** The maintenance record of schedule `key`, if any. */
  maintenanceRecord(key: string): MaintenanceRecord | undefined {
    return this.maintenance.get(key);
  }

  /** Every maintenance record, in key order. */
  maintenanceRecords(): MaintenanceRecord[] {
    return this.maintenance.list();
  }

  /** Number of request ids remembered. */
  rememberedRequests(): number {
    return this.requests.size;
  }

  /** Applies one committed command at log index `index`. */
  apply(command: Uint8Array, index: LogIndex): LeaseResult {
    const decoded = decodeLeaseCommand(command);
    if (typeof decoded === 'string') return { type: 'Rejected', reason: decoded };
    this.pendingEvent = null;
    let result: LeaseResult;
    if (decoded.type === 'Expire') {
      result = this.expire(decoded.key, decoded.fencingToken, decoded.renewals);
    } else if (!('requestId' in decoded)) {
      // Maintenance commands are idempotent by themselves (a repeated Begin or Finish of the same
      // runner answers as the first), so they need no request memory.
      result = this.maintenance.apply(decoded);
    } else {
      const earlier = this.requests.get(decoded.requestId);
      if (earlier !== undefined) return earlier;
      if (decoded.type === 'Acquire') result = this.acquire(decoded, index);
      else if (decoded.type === 'Renew') result = this.renew(decoded);
      else result = this.release(decoded);
      // A rejection changed nothing, so a retry may try again (the table may have room by then).
      if (result.type !== 'Rejected') this.remember(decoded.requestId, result);
    }
    const event = this.takePendingEvent();
    if (event !== null) this.listener?.(event);
    return result;
  }

  private takePendingEvent(): LeaseEvent | null {
    const event = this.pendingEvent;
    this.pendingEvent = null;
    return event;
  }

  private acquire(command: Extract<LeaseCommand, { type: 'Acquire' }>, index: LogIndex): LeaseResult {
    const current = this.leases.get(command.key);
    if (current !== undefined && current.owner !== command.owner) return { type: 'Held', lease: current };
    if (current === undefined && this.leases.size >= MAX_LEASES) return { type: 'Rejected', reason: `${MAX_LEASES} leases are held; release some first` };
    const lease: LeaseRecord = {
      key: command.key,
      owner: command.owner,
      fencingToken: current?.fencingToken ?? index,
      ttlMs: command.ttlMs,
      renewals: current === undefined ? 0 : current.renewals + 1,
    };
    this.leases.set(command.key, lease);
    const renewed = current !== undefined;
    this.pendingEvent = { type: 'Granted', lease, renewed };
    return { type: 'Granted', lease, renewed };
  }

  private renew(command: Extract<LeaseCommand, { type: 'Renew' }>): LeaseResult {
    const current = this.leases.get(command.key);
    if (current === undefined) return { type: 'NotHeld', key: command.key, reason: 'NoLease' };
    if (current.owner !== command.owner) return { type: 'NotHeld', key: command.key, reason: 'OtherHolder' };
    if (current.fencingToken !== command.fencingToken) return { type: 'NotHeld', key: command.key, reason: 'TokenMismatch' };
    const lease: LeaseRecord = { ...current, ttlMs: command.ttlMs, renewals: current.renewals + 1 };
    this.leases.set(command.key, lease);
    this.pendingEvent = { type: 'Granted', lease, renewed: true };
    return { type: 'Granted', lease, renewed: true };
  }

  private release(command: Extract<LeaseCommand, { type: 'Release' }>): LeaseResult {
    const current = this.leases.get(command.key);
    if (current === undefined) return { type: 'NotHeld', key: command.key, reason: 'NoLease' };
    if (current.owner !== command.owner) return { type: 'NotHeld', key: command.key, reason: 'OtherHolder' };
    if (current.fencingToken !== command.fencingToken) return { type: 'NotHeld', key: command.key, reason: 'TokenMismatch' };
    if (command.renewals !== undefined && command.renewals !== current.renewals) return { type: 'NotHeld', key: command.key, reason: 'RenewedSince' };
    this.leases.delete(command.key);
    this.pendingEvent = { type: 'Removed', lease: current, why: 'Released' };
    return { type: 'Released', lease: current };
  }

  private expire(key: string, fencingToken: LogIndex, renewals: number): LeaseResult {
    const current = this.leases.get(key);
    if (current?.fencingToken !== fencingToken || current.renewals !== renewals) return { type: 'ExpireIgnored', key };
    this.leases.delete(key);
    this.pendingEvent = { type: 'Removed', lease: current, why: 'Expired' };
    return { type: 'Expired', lease: current };
  }

  private remember(requestId: string, result: LeaseResult): void {
    // Bounded: one insertion evicts at most one (the oldest) id.
    if (this.requests.size >= this.maxRememberedRequests) {
      const oldest = this.requestRing[this.oldestRequest];
      if (oldest !== undefined) this.requests.delete(oldest);
    }
    this.requests.set(requestId, result);
    if (this.requestRing.length < this.maxRememberedRequests) {
      this.requestRing.push(requestId);
    } else {
      this.requestRing[this.oldestRequest] = requestId;
      this.oldestRequest = (this.oldestRequest + 1) % this.maxRememberedRequests;
    }
  }

  /** The whole table and the request memory, deterministically serialized (keys sorted, ids in applied order). */
  snapshot(): Uint8Array {
    const leases = this.list().map((lease) => [lease.key, lease.owner, lease.fencingToken, lease.ttlMs, lease.renewals]);
    const requests = [...this.requests].map(([requestId, result]) => [requestId, result]);
    return packr.pack([SNAPSHOT_VERSION, leases, requests, this.maintenance.snapshotRows()]);
  }

  /** Replaces the whole state with a snapshot's. Throws a `TypeError` on bytes that are not a lease snapshot. */
  restore(data: Uint8Array): void {
    let value: unknown;
    try {
      value = unpackr.unpack(data);
    } catch (error) {
      throw new TypeError('a lease table snapshot must be msgpack', { cause: error });
    }
    const isVersion1 = Array.isArray(value) && value.length === 3 && value[0] === 1;
    const isVersion2 = Array.isArray(value) && value.length === 4 && value[0] === SNAPSHOT_VERSION;
    if (!isVersion1 && !isVersion2) throw new TypeError('not a lease table snapshot of a known version');
    const [, leases, requests, maintenanceRows] = value as [unknown, unknown, unknown, unknown];
    if (!Array.isArray(leases) || !Array.isArray(requests)) throw new TypeError('malformed lease table snapshot');
    const restoredLeases = new Map<string, LeaseRecord>();
    for (const row of leases as unknown[]) {
      if (!Array.isArray(row) || row.length !== 5) throw new TypeError('malformed lease in snapshot');
      const [key, owner, fencingToken, ttlMs, renewals] = row as unknown[];
      const problem = invalidLeaseKey(key) ?? invalidLeaseOwner(owner) ?? invalidFencingToken(fencingToken) ?? invalidLeaseTtl(ttlMs);
      if (problem !== null) throw new TypeError(`malformed lease in snapshot: ${problem}`);
      if (typeof renewals !== 'number' || !Number.isSafeInteger(renewals) || renewals < 0) throw new TypeError('malformed lease in snapshot: renewals');
      restoredLeases.set(key as string, { key: key as string, owner: owner as string, fencingToken: fencingToken as LogIndex, ttlMs: ttlMs as number, renewals });
    }
    const restoredRequests = new Map<string, LeaseResult>();
    for (const row of requests as unknown[]) {
      if (!Array.isArray(row) || row.length !== 2 || invalidRequestId(row[0]) !== null || typeof row[1] !== 'object' || row[1] === null) {
        throw new TypeError('malformed request in snapshot');
      }
      const result = toPlainResult(row[1]);
      if (!RESULT_TYPES.has((result as { type?: unknown }).type as string)) throw new TypeError('malformed request result in snapshot');
      restoredRequests.set(row[0] as string, result);
    }
    // Keep this node's bound even if the snapshot came from a node configured with a larger one.
    while (restoredRequests.size > this.maxRememberedRequests) {
      const oldest = restoredRequests.keys().next();
      if (oldest.done === true) break;
      restoredRequests.delete(oldest.value);
    }
    // Validated before anything changes: a malformed snapshot leaves the table as it was.
    const maintenance = new MaintenanceRecords(() => undefined);
    maintenance.restoreRows(isVersion2 ? maintenanceRows : []);
    this.maintenance.restoreRows(maintenance.snapshotRows());
    this.leases.clear();
    for (const [key, lease] of restoredLeases) this.leases.set(key, lease);
    this.requests.clear();
    for (const [requestId, result] of restoredRequests) this.requests.set(requestId, result);
    this.requestRing = [...restoredRequests.keys()];
    this.oldestRequest = 0;
    this.listener?.({ type: 'Restored' });
  }
}

/** msgpack decodes nested objects as Maps (mapsAsObjects: false); results are plain objects. */
function toPlainResult(value: unknown): LeaseResult {
  const plain = (item: unknown): unknown => {
    if (item instanceof Map) return Object.fromEntries([...item].map(([key, inner]) => [String(key), plain(inner)]));
    return item;
  };
  return plain(value) as LeaseResult;
}
