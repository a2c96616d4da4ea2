/**
 * Tests of the replicated lease table (src/lease/state-machine.ts).
 *
 * - The rules, one at a time: grants, re-acquires and renewals, `Held`, releases, `NotHeld`,
 *   leader-proposed expiry, retried request ids, the bounded request memory, malformed and
 *   out-of-bounds commands, the lease-count limit.
 * - A model-based property: random command sequences (acquire, renew, release, expire on 3 keys by 3
 *   owners, retries of earlier request ids, malformed commands) run against the table and against a
 *   naive model, compared after every step; fencing tokens of new grants strictly increase.
 * - Determinism and snapshots, events, and the command codec.
 */
import fc from 'fast-check';
import { pack, unpack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_REMEMBERED_REQUESTS,
  LeaseStateMachine,
  MAX_LEASES,
  MAX_LEASE_KEY_BYTES,
  MAX_LEASE_OWNER_BYTES,
  MAX_LEASE_TTL_MS,
  MAX_REQUEST_ID_BYTES,
  decodeLeaseCommand,
  encodeLeaseCommand,
  invalidLeaseKey,
  invalidLeaseOwner,
  invalidLeaseTtl,
  type LeaseCommand,
  type LeaseTableCommand,
  type LeaseEvent,
  type LeaseRecord,
  type LeaseResult,
} from '../../src/lease/state-machine.js';
import type { LogIndex } from '../../src/raft/types.js';

const SEED = 0x5eed_1ea5;

const li = (value: number): LogIndex => value as LogIndex;
const utf8Length = (text: string): number => Buffer.byteLength(text, 'utf8');

const acquire = (key: string, owner: string, ttlMs: number, requestId: string): LeaseCommand => ({ type: 'Acquire', key, owner, ttlMs, requestId });
const renew = (key: string, owner: string, fencingToken: number, ttlMs: number, requestId: string): LeaseCommand => ({
  type: 'Renew',
  key,
  owner,
  fencingToken: li(fencingToken),
  ttlMs,
  requestId,
});
const release = (key: string, owner: string, fencingToken: number, requestId: string): LeaseCommand => ({
  type: 'Release',
  key,
  owner,
  fencingToken: li(fencingToken),
  requestId,
});
const expire = (key: string, fencingToken: number, renewals: number): LeaseCommand => ({ type: 'Expire', key, fencingToken: li(fencingToken), renewals });

const record = (key: string, owner: string, fencingToken: number, ttlMs: number, renewals: number): LeaseRecord => ({
  key,
  owner,
  fencingToken: li(fencingToken),
  ttlMs,
  renewals,
});

/** Applies `command` at log index `index`. */
function run(sm: LeaseStateMachine, command: LeaseCommand, index: number): LeaseResult {
  return sm.apply(encodeLeaseCommand(command), li(index));
}

/** A private copy of the snapshot bytes (the encoder's buffer is shared). */
function state(sm: LeaseStateMachine): Buffer {
  return Buffer.from(sm.snapshot());
}

/**
 * The bytes as hex. (msgpackr caches a `dataView` property on buffers it decodes, so a buffer that
 * went through apply() or restore() no longer deep-equals a copy of itself.)
 */
function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** A table with events recorded. */
function recorded(options: { readonly maxRememberedRequests?: number } = {}): { sm: LeaseStateMachine; events: LeaseEvent[] } {
  const sm = new LeaseStateMachine(options);
  const events: LeaseEvent[] = [];
  sm.onEvent((event) => events.push(event));
  return { sm, events };
}

// ---------------------------------------------------------------------------------------------
// The rules

describe('LeaseStateMachine rules', () => {
  it('grants a free key, with the log index of the granting entry as fencing token', () => {
    const sm = new LeaseStateMachine();
    const lease = record('jobs/backup', 'alice', 17, 5_000, 0);
    expect(run(sm, acquire('jobs/backup', 'alice', 5_000, 'r1'), 17)).toEqual({ type: 'Granted', lease, renewed: false });
    expect(sm.get('jobs/backup')).toEqual(lease);
    expect(sm.list()).toEqual([lease]);
    expect(sm.rememberedRequests()).toBe(1);
    // Another free key granted later gets that later entry's index.
    expect(run(sm, acquire('jobs/gc', 'alice', 5_000, 'r2'), 18)).toEqual({ type: 'Granted', lease: record('jobs/gc', 'alice', 18, 5_000, 0), renewed: false });
  });

  it('lets the holder re-acquire: same token, renewed: true, the new ttlMs, one more renewal', () => {
    const sm = new LeaseStateMachine();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 3);
    const renewed = record('k', 'alice', 3, 2_500, 1);
    expect(run(sm, acquire('k', 'alice', 2_500, 'r2'), 9)).toEqual({ type: 'Granted', lease: renewed, renewed: true });
    expect(sm.get('k')).toEqual(renewed);
    expect(run(sm, acquire('k', 'alice', 40, 'r3'), 12)).toEqual({ type: 'Granted', lease: record('k', 'alice', 3, 40, 2), renewed: true });
    expect(sm.list()).toHaveLength(1);
  });

  it('answers another owner with Held and the holder, changing no lease', () => {
    const sm = new LeaseStateMachine();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 1);
    const before = sm.list();
    expect(run(sm, acquire('k', 'bob', 9_000, 'r2'), 2)).toEqual({ type: 'Held', lease: record('k', 'alice', 1, 1_000, 0) });
    expect(sm.list()).toEqual(before);
  });

  it('renews a lease for its holder under its token: fresh ttlMs, same token, one more renewal', () => {
    const sm = new LeaseStateMachine();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 4);
    const lease = record('k', 'alice', 4, 7_000, 1);
    expect(run(sm, renew('k', 'alice', 4, 7_000, 'r2'), 5)).toEqual({ type: 'Granted', lease, renewed: true });
    expect(sm.get('k')).toEqual(lease);
  });

  it('refuses Renew with NotHeld (NoLease, OtherHolder, TokenMismatch) and changes no lease', () => {
    const sm = new LeaseStateMachine();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 4);
    const before = sm.list();
    expect(run(sm, renew('free', 'alice', 4, 1_000, 'r2'), 5)).toEqual({ type: 'NotHeld', key: 'free', reason: 'NoLease' });
    expect(run(sm, renew('k', 'bob', 4, 1_000, 'r3'), 6)).toEqual({ type: 'NotHeld', key: 'k', reason: 'OtherHolder' });
    expect(run(sm, renew('k', 'alice', 3, 1_000, 'r4'), 7)).toEqual({ type: 'NotHeld', key: 'k', reason: 'TokenMismatch' });
    expect(sm.list()).toEqual(before);
  });

  it('releases the lease for its holder under the right token, freeing the key', () => {
    const { sm, events } = recorded();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 2);
    run(sm, acquire('other', 'bob', 1_000, 'r2'), 3);
    expect(run(sm, release('k', 'alice', 2, 'r3'), 4)).toEqual({ type: 'Released', lease: record('k', 'alice', 2, 1_000, 0) });
    expect(sm.get('k')).toBeUndefined();
    expect(sm.list()).toEqual([record('other', 'bob', 3, 1_000, 0)]);
    expect(events.at(-1)).toEqual({ type: 'Removed', lease: record('k', 'alice', 2, 1_000, 0), why: 'Released' });
    // The key is free: anyone gets it, under a new, higher token.
    expect(run(sm, acquire('k', 'carol', 500, 'r4'), 5)).toEqual({ type: 'Granted', lease: record('k', 'carol', 5, 500, 0), renewed: false });
  });

  it('refuses Release with NotHeld for a free key, another holder or a wrong token, and changes no lease', () => {
    const { sm, events } = recorded();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 6);
    const before = sm.list();
    events.length = 0;
    expect(run(sm, release('free', 'alice', 6, 'r2'), 7)).toEqual({ type: 'NotHeld', key: 'free', reason: 'NoLease' });
    expect(run(sm, release('k', 'bob', 6, 'r3'), 8)).toEqual({ type: 'NotHeld', key: 'k', reason: 'OtherHolder' });
    expect(run(sm, release('k', 'alice', 5, 'r4'), 9)).toEqual({ type: 'NotHeld', key: 'k', reason: 'TokenMismatch' });
    expect(run(sm, release('k', 'alice', 7, 'r5'), 10)).toEqual({ type: 'NotHeld', key: 'k', reason: 'TokenMismatch' });
    // Both wrong: the holder is checked first.
    expect(run(sm, release('k', 'bob', 5, 'r6'), 11)).toEqual({ type: 'NotHeld', key: 'k', reason: 'OtherHolder' });
    expect(sm.list()).toEqual(before);
    expect(events).toEqual([]);
  });

  it('removes the lease on an Expire naming its current token and renewal count', () => {
    const { sm, events } = recorded();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 2);
    run(sm, acquire('j', 'bob', 1_000, 'r2'), 3);
    const memory = sm.rememberedRequests();
    expect(run(sm, expire('k', 2, 0), 4)).toEqual({ type: 'Expired', lease: record('k', 'alice', 2, 1_000, 0) });
    expect(sm.get('k')).toBeUndefined();
    expect(sm.list()).toEqual([record('j', 'bob', 3, 1_000, 0)]);
    expect(events.at(-1)).toEqual({ type: 'Removed', lease: record('k', 'alice', 2, 1_000, 0), why: 'Expired' });
    // Expire carries no request id: nothing is remembered for it.
    expect(sm.rememberedRequests()).toBe(memory);
  });

  it('ignores an Expire from an earlier grant (released and re-granted since) and keeps the new grant', () => {
    const sm = new LeaseStateMachine();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 2);
    run(sm, release('k', 'alice', 2, 'r2'), 3);
    run(sm, acquire('k', 'alice', 1_000, 'r3'), 4);
    // Same owner, same renewal count 0: only the token tells the grants apart.
    expect(run(sm, expire('k', 2, 0), 5)).toEqual({ type: 'ExpireIgnored', key: 'k' });
    expect(sm.get('k')).toEqual(record('k', 'alice', 4, 1_000, 0));
    // After an expiry and a grant to someone else, too.
    run(sm, expire('k', 4, 0), 6);
    run(sm, acquire('k', 'bob', 1_000, 'r4'), 7);
    expect(run(sm, expire('k', 4, 0), 8)).toEqual({ type: 'ExpireIgnored', key: 'k' });
    expect(sm.get('k')).toEqual(record('k', 'bob', 7, 1_000, 0));
    expect(run(sm, expire('never-held', 7, 0), 9)).toEqual({ type: 'ExpireIgnored', key: 'never-held' });
    expect(sm.list()).toEqual([record('k', 'bob', 7, 1_000, 0)]);
  });

  it('ignores an Expire whose renewal count is stale (a Renew or re-acquire was applied first)', () => {
    const sm = new LeaseStateMachine();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 2);
    run(sm, renew('k', 'alice', 2, 1_000, 'r2'), 3);
    expect(run(sm, expire('k', 2, 0), 4)).toEqual({ type: 'ExpireIgnored', key: 'k' });
    run(sm, acquire('k', 'alice', 1_000, 'r3'), 5);
    expect(run(sm, expire('k', 2, 1), 6)).toEqual({ type: 'ExpireIgnored', key: 'k' });
    expect(run(sm, expire('k', 2, 3), 7)).toEqual({ type: 'ExpireIgnored', key: 'k' });
    expect(sm.get('k')).toEqual(record('k', 'alice', 2, 1_000, 2));
    expect(run(sm, expire('k', 2, 2), 8)).toEqual({ type: 'Expired', lease: record('k', 'alice', 2, 1_000, 2) });
  });

  it('answers a retried Acquire with its first result and does not re-grant a released lease', () => {
    const { sm, events } = recorded();
    const first = encodeLeaseCommand(acquire('k', 'alice', 1_000, 'r1'));
    const granted = sm.apply(first, li(1));
    run(sm, release('k', 'alice', 1, 'r2'), 2);
    const before = state(sm);
    events.length = 0;
    expect(sm.apply(first, li(3))).toEqual(granted);
    expect(sm.get('k')).toBeUndefined();
    expect(state(sm)).toEqual(before);
    expect(events).toEqual([]);
  });

  it('answers a retried Release with its first result and changes nothing', () => {
    const sm = new LeaseStateMachine();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 1);
    const released = run(sm, release('k', 'alice', 1, 'r2'), 2);
    expect(released.type).toBe('Released');
    run(sm, acquire('k', 'alice', 1_000, 'r3'), 3);
    let before = state(sm);
    // Applied as new it would be a TokenMismatch; the first answer is returned instead.
    expect(run(sm, release('k', 'alice', 1, 'r2'), 4)).toEqual(released);
    expect(sm.get('k')).toEqual(record('k', 'alice', 3, 1_000, 0));
    expect(state(sm)).toEqual(before);

    // A first NotHeld stays the answer even once the release would succeed.
    run(sm, release('k', 'alice', 3, 'r4'), 5);
    expect(run(sm, release('k', 'alice', 7, 'r5'), 6)).toEqual({ type: 'NotHeld', key: 'k', reason: 'NoLease' });
    expect(run(sm, acquire('k', 'alice', 1_000, 'r6'), 7)).toMatchObject({ type: 'Granted', lease: { fencingToken: 7 } });
    before = state(sm);
    expect(run(sm, release('k', 'alice', 7, 'r5'), 8)).toEqual({ type: 'NotHeld', key: 'k', reason: 'NoLease' });
    expect(sm.get('k')).toEqual(record('k', 'alice', 7, 1_000, 0));
    expect(state(sm)).toEqual(before);
  });

  it('answers a seen request id with the first result whatever command it now carries', () => {
    const sm = new LeaseStateMachine();
    const first = run(sm, acquire('k', 'alice', 1_000, 'same'), 1);
    const before = state(sm);
    expect(run(sm, acquire('other', 'bob', 1_000, 'same'), 2)).toEqual(first);
    expect(run(sm, release('k', 'alice', 1, 'same'), 3)).toEqual(first);
    expect(run(sm, renew('k', 'alice', 1, 50, 'same'), 4)).toEqual(first);
    expect(state(sm)).toEqual(before);
  });

  it('remembers at most maxRememberedRequests ids, forgets the oldest first, and applies a forgotten retry as new', () => {
    const sm = new LeaseStateMachine({ maxRememberedRequests: 3 });
    const r1 = encodeLeaseCommand(acquire('a', 'alice', 1_000, 'r1'));
    const r2 = encodeLeaseCommand(release('a', 'alice', 1, 'r2'));
    expect(sm.apply(r1, li(1)).type).toBe('Granted');
    const released = sm.apply(r2, li(2));
    expect(released.type).toBe('Released');
    run(sm, acquire('b', 'bob', 1_000, 'r3'), 3);
    expect(sm.rememberedRequests()).toBe(3);
    run(sm, acquire('c', 'carol', 1_000, 'r4'), 4);
    expect(sm.rememberedRequests()).toBe(3);

    // r2 is still remembered (r1, the oldest, was forgotten).
    const before = state(sm);
    expect(sm.apply(r2, li(5))).toEqual(released);
    expect(state(sm)).toEqual(before);

    // r1 was forgotten: the retry is applied as new and re-grants, under the new index.
    expect(sm.apply(r1, li(6))).toEqual({ type: 'Granted', lease: record('a', 'alice', 6, 1_000, 0), renewed: false });
    expect(sm.rememberedRequests()).toBe(3);

    // That pushed r2 out; a stale Release applied as new cannot release the newer grant.
    expect(sm.apply(r2, li(7))).toEqual({ type: 'NotHeld', key: 'a', reason: 'TokenMismatch' });
    expect(sm.get('a')).toEqual(record('a', 'alice', 6, 1_000, 0));

    for (let i = 0; i < 50; i++) {
      run(sm, acquire(`x${i % 4}`, `o${i % 3}`, 1_000, `bulk-${i}`), 8 + i);
      expect(sm.rememberedRequests()).toBe(3);
    }
  });

  it(`remembers ${DEFAULT_MAX_REMEMBERED_REQUESTS} request ids by default`, () => {
    const sm = new LeaseStateMachine();
    const first = run(sm, acquire('k', 'alice', 1_000, 'id-0'), 1);
    for (let i = 1; i < DEFAULT_MAX_REMEMBERED_REQUESTS; i++) run(sm, release('none', 'alice', 1, `id-${i}`), i + 1);
    expect(sm.rememberedRequests()).toBe(DEFAULT_MAX_REMEMBERED_REQUESTS);
    // Still remembered: the retry changes nothing (a new Acquire would renew).
    expect(run(sm, acquire('k', 'alice', 1_000, 'id-0'), 20_000)).toEqual(first);
    run(sm, release('none', 'alice', 1, 'one-more'), 20_001);
    expect(sm.rememberedRequests()).toBe(DEFAULT_MAX_REMEMBERED_REQUESTS);
    // Now forgotten: applied as new, a re-acquire.
    expect(run(sm, acquire('k', 'alice', 1_000, 'id-0'), 20_002)).toMatchObject({ type: 'Granted', renewed: true });
  });

  it('refuses a memory bound that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new LeaseStateMachine({ maxRememberedRequests: bad })).toThrow(RangeError);
    }
    expect(new LeaseStateMachine({ maxRememberedRequests: 1 }).rememberedRequests()).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Malformed and out-of-bounds commands

/** Over the limit by one byte, in characters of 2, 3 and 4 UTF-8 bytes (fewer UTF-16 units than bytes). */
const KEY_OVER_2 = 'é'.repeat(512) + 'x'; // 1,025 bytes, 513 units
const KEY_OVER_3 = '€'.repeat(341) + 'xx'; // 1,025 bytes, 343 units
const KEY_OVER_4 = '😀'.repeat(256) + 'x'; // 1,025 bytes, 513 units
const KEY_AT_LIMIT = '€'.repeat(341) + 'x'; // 1,024 bytes
const OWNER_OVER = 'ü'.repeat(128) + 'x'; // 257 bytes
const OWNER_AT_LIMIT = 'ü'.repeat(128); // 256 bytes
const REQUEST_ID_OVER = 'ñ'.repeat(64) + 'x'; // 129 bytes
const REQUEST_ID_AT_LIMIT = 'ñ'.repeat(64); // 128 bytes

const validAcquire = Buffer.from(encodeLeaseCommand(acquire('k', 'alice', 1_000, 'rq')));

const malformed: readonly (readonly [string, Uint8Array, RegExp])[] = [
  ['empty bytes', new Uint8Array(0), /not valid msgpack/],
  ['a truncated command', validAcquire.subarray(0, validAcquire.length - 1), /not valid msgpack/],
  ['a command followed by a stray byte', Buffer.concat([validAcquire, Buffer.from([0x01])]), /not valid msgpack/],
  ['a truncated array header', new Uint8Array([0x95, 0xa1]), /not valid msgpack/],
  ['a string', pack('A'), /not an array/],
  ['a map', pack({ type: 'Acquire', key: 'k', owner: 'alice', ttlMs: 1_000, requestId: 'rq' }), /not an array/],
  ['nil', pack(null), /not an array/],
  ['an empty array', pack([]), /key/],
  ['an unknown tag', pack(['X', 'k', 'alice', 1_000, 'rq']), /unknown command/],
  ['a lower-case tag', pack(['a', 'k', 'alice', 1_000, 'rq']), /unknown command/],
  ['a numeric tag', pack([65, 'k', 'alice', 1_000, 'rq']), /unknown command/],
  ['Acquire with 3 fields', pack(['A', 'k', 'alice', 1_000]), /Acquire takes 4 fields/],
  ['Acquire with 5 fields', pack(['A', 'k', 'alice', 1_000, 'rq', 1]), /Acquire takes 4 fields/],
  ['Renew with 4 fields', pack(['N', 'k', 'alice', 1, 1_000]), /Renew takes 5 fields/],
  ['Renew with 6 fields', pack(['N', 'k', 'alice', 1, 1_000, 'rq', 0]), /Renew takes 5 fields/],
  ['Release with 3 fields', pack(['R', 'k', 'alice', 1]), /Release takes 4 or 5 fields/],
  ['Release with 6 fields', pack(['R', 'k', 'alice', 1, 'rq', 0, 0]), /Release takes 4 or 5 fields/],
  ['Release with a bad renewal count', pack(['R', 'k', 'alice', 1, 'rq', 'rq']), /renewals must be a non-negative integer/],
  ['Expire with 2 fields (no renewal count)', pack(['E', 'k', 1]), /Expire takes 3 fields/],
  ['Expire with 4 fields', pack(['E', 'k', 1, 0, 0]), /Expire takes 3 fields/],
  ['an empty key', pack(['A', '', 'alice', 1_000, 'rq']), /key must be a non-empty string/],
  ['a numeric key', pack(['A', 7, 'alice', 1_000, 'rq']), /key must be a non-empty string/],
  ['a key of 1,025 bytes in 2-byte characters', pack(['A', KEY_OVER_2, 'alice', 1_000, 'rq']), /key is longer than 1024 UTF-8 bytes/],
  ['a key of 1,025 bytes in 3-byte characters', pack(['A', KEY_OVER_3, 'alice', 1_000, 'rq']), /key is longer than 1024 UTF-8 bytes/],
  ['a key of 1,025 bytes in 4-byte characters', pack(['E', KEY_OVER_4, 1, 0]), /key is longer than 1024 UTF-8 bytes/],
  ['an empty owner', pack(['A', 'k', '', 1_000, 'rq']), /owner must be a non-empty string/],
  ['an owner of 257 bytes', pack(['A', 'k', OWNER_OVER, 1_000, 'rq']), /owner is longer than 256 UTF-8 bytes/],
  ['an owner of 257 bytes in Release', pack(['R', 'k', OWNER_OVER, 1, 'rq']), /owner is longer than 256 UTF-8 bytes/],
  ['a numeric owner', pack(['R', 'k', 5, 1, 'rq']), /owner must be a non-empty string/],
  ['ttl 0', pack(['A', 'k', 'alice', 0, 'rq']), /ttlMs must be an integer/],
  ['a negative ttl', pack(['A', 'k', 'alice', -5, 'rq']), /ttlMs must be an integer/],
  ['a fractional ttl', pack(['A', 'k', 'alice', 1.5, 'rq']), /ttlMs must be an integer/],
  ['a ttl of one day and 1 ms', pack(['A', 'k', 'alice', MAX_LEASE_TTL_MS + 1, 'rq']), /ttlMs must be an integer/],
  ['a NaN ttl', pack(['A', 'k', 'alice', Number.NaN, 'rq']), /ttlMs must be an integer/],
  ['an infinite ttl', pack(['A', 'k', 'alice', Number.POSITIVE_INFINITY, 'rq']), /ttlMs must be an integer/],
  ['a string ttl', pack(['A', 'k', 'alice', '1000', 'rq']), /ttlMs must be an integer/],
  ['an int64 ttl', pack(['A', 'k', 'alice', 1000n, 'rq']), /ttlMs must be an integer/],
  ['ttl 0 in Renew', pack(['N', 'k', 'alice', 1, 0, 'rq']), /ttlMs must be an integer/],
  ['token 0 in Release', pack(['R', 'k', 'alice', 0, 'rq']), /fencing token must be a positive integer/],
  ['a negative token in Release', pack(['R', 'k', 'alice', -1, 'rq']), /fencing token must be a positive integer/],
  ['a fractional token in Release', pack(['R', 'k', 'alice', 1.5, 'rq']), /fencing token must be a positive integer/],
  ['an unsafe token in Release', pack(['R', 'k', 'alice', 2 ** 53, 'rq']), /fencing token must be a positive integer/],
  ['token 0 in Renew', pack(['N', 'k', 'alice', 0, 1_000, 'rq']), /fencing token must be a positive integer/],
  ['token 0 in Expire', pack(['E', 'k', 0, 0]), /fencing token must be a positive integer/],
  ['a string token in Expire', pack(['E', 'k', '1', 0]), /fencing token must be a positive integer/],
  ['a negative renewal count in Expire', pack(['E', 'k', 1, -1]), /renewals must be a non-negative integer/],
  ['a fractional renewal count in Expire', pack(['E', 'k', 1, 0.5]), /renewals must be a non-negative integer/],
  ['an empty request id', pack(['A', 'k', 'alice', 1_000, '']), /request id must be a non-empty string/],
  ['a numeric request id', pack(['R', 'k', 'alice', 1, 42]), /request id must be a non-empty string/],
  ['a request id of 129 bytes', pack(['A', 'k', 'alice', 1_000, REQUEST_ID_OVER]), /request id is longer than 128 UTF-8 bytes/],
];

describe('malformed and out-of-bounds commands', () => {
  it.each(malformed)('rejects %s and changes nothing', (_name, bytes, reason) => {
    const { sm, events } = recorded();
    run(sm, acquire('k', 'alice', 1_000, 'r1'), 1);
    run(sm, acquire('j', 'bob', 1_000, 'rq'), 2);
    const before = state(sm);
    const memory = sm.rememberedRequests();
    events.length = 0;
    const result = sm.apply(bytes, li(3));
    expect(result.type).toBe('Rejected');
    expect(result).toEqual({ type: 'Rejected', reason: expect.stringMatching(reason) as unknown });
    expect(decodeLeaseCommand(bytes)).toBe((result as Extract<LeaseResult, { type: 'Rejected' }>).reason);
    expect(state(sm)).toEqual(before);
    expect(sm.rememberedRequests()).toBe(memory);
    expect(events).toEqual([]);
  });

  it('counts key, owner and request-id limits in UTF-8 bytes, and accepts values at the limits', () => {
    expect(utf8Length(KEY_AT_LIMIT)).toBe(MAX_LEASE_KEY_BYTES);
    expect(utf8Length(OWNER_AT_LIMIT)).toBe(MAX_LEASE_OWNER_BYTES);
    expect(utf8Length(REQUEST_ID_AT_LIMIT)).toBe(MAX_REQUEST_ID_BYTES);
    for (const over of [KEY_OVER_2, KEY_OVER_3, KEY_OVER_4]) {
      expect(utf8Length(over)).toBe(MAX_LEASE_KEY_BYTES + 1);
      expect(over.length).toBeLessThan(MAX_LEASE_KEY_BYTES);
      expect(invalidLeaseKey(over)).toMatch(/longer than/);
    }
    expect(invalidLeaseKey(KEY_AT_LIMIT)).toBeNull();
    expect(invalidLeaseKey('😀'.repeat(256))).toBeNull();
    expect(invalidLeaseOwner(OWNER_AT_LIMIT)).toBeNull();
    expect(invalidLeaseOwner(OWNER_OVER)).toMatch(/longer than/);
    expect(invalidLeaseTtl(1)).toBeNull();
    expect(invalidLeaseTtl(MAX_LEASE_TTL_MS)).toBeNull();
    expect(invalidLeaseTtl(MAX_LEASE_TTL_MS + 1)).not.toBeNull();

    const sm = new LeaseStateMachine();
    expect(run(sm, acquire(KEY_AT_LIMIT, OWNER_AT_LIMIT, MAX_LEASE_TTL_MS, REQUEST_ID_AT_LIMIT), 1)).toEqual({
      type: 'Granted',
      lease: record(KEY_AT_LIMIT, OWNER_AT_LIMIT, 1, MAX_LEASE_TTL_MS, 0),
      renewed: false,
    });
    expect(run(sm, acquire('short', 'o', 1, 'x'), 2)).toMatchObject({ type: 'Granted', lease: { ttlMs: 1 } });
    expect(run(sm, expire('short', Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER), 3)).toEqual({ type: 'ExpireIgnored', key: 'short' });
    expect(sm.list()).toHaveLength(2);
  });

  it(`refuses to hold more than ${MAX_LEASES} leases, but still renews held ones and grants again once one is freed`, () => {
    const sm = new LeaseStateMachine({ maxRememberedRequests: 1 });
    for (let i = 1; i <= MAX_LEASES; i++) {
      const result = run(sm, acquire(`key-${i}`, 'alice', 1_000, `r-${i}`), i);
      if (result.type !== 'Granted') throw new Error(`lease ${i} was not granted: ${result.type}`);
    }
    expect(sm.list()).toHaveLength(MAX_LEASES);
    const before = sm.list();

    const full = run(sm, acquire('one-too-many', 'bob', 1_000, 'full'), MAX_LEASES + 1);
    expect(full).toEqual({ type: 'Rejected', reason: expect.stringMatching(/100000 leases are held/) as unknown });
    expect(sm.get('one-too-many')).toBeUndefined();
    expect(sm.list()).toEqual(before);

    // Held keys still answer as usual.
    expect(run(sm, acquire('key-7', 'alice', 2_000, 'again'), MAX_LEASES + 2)).toMatchObject({ type: 'Granted', renewed: true });
    expect(run(sm, acquire('key-8', 'bob', 2_000, 'other'), MAX_LEASES + 3)).toMatchObject({ type: 'Held' });
    expect(run(sm, renew('key-9', 'alice', 9, 2_000, 'renew'), MAX_LEASES + 4)).toMatchObject({ type: 'Granted', renewed: true });

    run(sm, release('key-1', 'alice', 1, 'free-one'), MAX_LEASES + 5);
    expect(run(sm, acquire('one-too-many', 'bob', 1_000, 'fits'), MAX_LEASES + 6)).toEqual({
      type: 'Granted',
      lease: record('one-too-many', 'bob', MAX_LEASES + 6, 1_000, 0),
      renewed: false,
    });
    expect(run(sm, acquire('and-another', 'bob', 1_000, 'full-again'), MAX_LEASES + 7).type).toBe('Rejected');
  });
});

// ---------------------------------------------------------------------------------------------
// Model-based property: random command sequences against a naive model

const KEYS = ['alpha', 'béta', '鍵'] as const;
const OWNERS = ['alice', 'bob', 'carol'] as const;
const pickOf = <T>(items: readonly T[], n: number): T => items[n % items.length] as T;

/** Where a token named by a command comes from: the key's current lease, any earlier grant, or anywhere. */
type TokenPick = { readonly from: 'current' | 'issued' | 'random'; readonly n: number };
type Op =
  | { readonly kind: 'acquire'; readonly key: number; readonly owner: number; readonly ttl: number }
  | { readonly kind: 'renew'; readonly key: number; readonly owner: number; readonly asHolder: boolean; readonly token: TokenPick; readonly ttl: number }
  | { readonly kind: 'release'; readonly key: number; readonly owner: number; readonly asHolder: boolean; readonly token: TokenPick }
  | { readonly kind: 'expire'; readonly key: number; readonly token: TokenPick; readonly currentRenewals: boolean; readonly renewals: number }
  /** Re-send an earlier Acquire/Renew/Release byte for byte. */
  | { readonly kind: 'retry'; readonly pick: number }
  /** A new command that reuses an earlier request id. */
  | { readonly kind: 'reuseId'; readonly pick: number; readonly key: number; readonly owner: number; readonly ttl: number }
  | { readonly kind: 'malformed'; readonly pick: number };

const tokenPickArb: fc.Arbitrary<TokenPick> = fc.record({
  from: fc.constantFrom('current', 'current', 'current', 'issued', 'random'),
  n: fc.nat(1_000),
});
const keyArb = fc.nat(KEYS.length - 1);
const ownerArb = fc.nat(OWNERS.length - 1);
/** Renew and Release usually come from the holder (when there is one). */
const asHolderArb = fc.constantFrom(true, true, false);
const ttlArb = fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: MAX_LEASE_TTL_MS }));

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('acquire' as const), key: keyArb, owner: ownerArb, ttl: ttlArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('renew' as const), key: keyArb, owner: ownerArb, asHolder: asHolderArb, token: tokenPickArb, ttl: ttlArb }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('release' as const), key: keyArb, owner: ownerArb, asHolder: asHolderArb, token: tokenPickArb }) },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('expire' as const), key: keyArb, token: tokenPickArb, currentRenewals: fc.constantFrom(true, true, true, false), renewals: fc.nat(3) }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('retry' as const), pick: fc.nat(1_000) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reuseId' as const), pick: fc.nat(1_000), key: keyArb, owner: ownerArb, ttl: ttlArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('malformed' as const), pick: fc.nat(1_000) }) },
);

/** A command sequence, each with the gap to the next log index, and the request-memory bound. */
const scenarioArb = fc.record({
  ops: fc.array(fc.tuple(opArb, fc.constantFrom(1, 1, 1, 2, 5)), { minLength: 1, maxLength: 60, size: 'max' }),
  bound: fc.integer({ min: 2, max: 12 }),
});

const MALFORMED_IN_SEQUENCES = [
  new Uint8Array(0),
  pack(['A', '', 'alice', 5, 'bad-1']),
  pack(['A', 'alpha', 'alice', 0, 'bad-2']),
  pack(['R', 'alpha', 'alice', 0, 'bad-3']),
  pack(['E', 'alpha', 1]),
  pack(['Z', 'alpha']),
];

/** The naive model: a Map of leases and a first-in-first-out list of remembered request ids. */
class LeaseModel {
  readonly leases = new Map<string, LeaseRecord>();
  readonly memory: { readonly requestId: string; readonly result: LeaseResult; readonly step: number }[] = [];
  /** Tokens of every fresh grant, in order. */
  readonly issued: number[] = [];

  constructor(readonly bound: number) {}

  /** The result of `command` (null: malformed) at `index`, and the step whose answer it repeats, if any. */
  apply(command: LeaseCommand | null, index: number, step: number): { result: LeaseResult; answeredFrom: number | null } {
    if (command === null) return { result: { type: 'Rejected', reason: 'malformed' }, answeredFrom: null };
    if (command.type === 'Expire') {
      const lease = this.leases.get(command.key);
      if (lease === undefined || lease.fencingToken !== command.fencingToken || lease.renewals !== command.renewals) {
        return { result: { type: 'ExpireIgnored', key: command.key }, answeredFrom: null };
      }
      this.leases.delete(command.key);
      return { result: { type: 'Expired', lease }, answeredFrom: null };
    }
    const seen = this.memory.find((entry) => entry.requestId === command.requestId);
    if (seen !== undefined) return { result: seen.result, answeredFrom: seen.step };
    const result = this.applyNew(command, index);
    this.memory.push({ requestId: command.requestId, result, step });
    if (this.memory.length > this.bound) this.memory.shift();
    return { result, answeredFrom: null };
  }

  private applyNew(command: Exclude<LeaseCommand, { type: 'Expire' }>, index: number): LeaseResult {
    const lease = this.leases.get(command.key);
    if (command.type === 'Acquire') {
      if (lease === undefined) {
        const granted = record(command.key, command.owner, index, command.ttlMs, 0);
        this.leases.set(command.key, granted);
        this.issued.push(index);
        return { type: 'Granted', lease: granted, renewed: false };
      }
      if (lease.owner !== command.owner) return { type: 'Held', lease };
      const renewed = record(command.key, command.owner, lease.fencingToken, command.ttlMs, lease.renewals + 1);
      this.leases.set(command.key, renewed);
      return { type: 'Granted', lease: renewed, renewed: true };
    }
    if (lease === undefined) return { type: 'NotHeld', key: command.key, reason: 'NoLease' };
    if (lease.owner !== command.owner) return { type: 'NotHeld', key: command.key, reason: 'OtherHolder' };
    if (lease.fencingToken !== command.fencingToken) return { type: 'NotHeld', key: command.key, reason: 'TokenMismatch' };
    if (command.type === 'Release') {
      this.leases.delete(command.key);
      return { type: 'Released', lease };
    }
    const renewed = record(command.key, command.owner, lease.fencingToken, command.ttlMs, lease.renewals + 1);
    this.leases.set(command.key, renewed);
    return { type: 'Granted', lease: renewed, renewed: true };
  }

  table(): LeaseRecord[] {
    return [...this.leases.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}

interface Step {
  readonly op: Op['kind'];
  readonly bytes: Uint8Array;
  readonly index: LogIndex;
  readonly command: LeaseCommand | null;
  readonly expected: LeaseResult;
  /** For an answer from request memory, the step that first produced it. */
  readonly answeredFrom: number | null;
  readonly tableAfter: LeaseRecord[];
  readonly memoryAfter: number;
}

/** Turns generated operations into concrete commands, interpreting their raw numbers against the model. */
function buildScenario(ops: readonly (readonly [Op, number])[], bound: number): Step[] {
  const model = new LeaseModel(bound);
  const steps: Step[] = [];
  const requests: { bytes: Uint8Array; command: LeaseCommand }[] = [];
  let index = 0;
  const token = (key: string, pick: TokenPick): number => {
    const current = model.leases.get(key);
    if (pick.from === 'current' && current !== undefined) return current.fencingToken;
    if (pick.from !== 'random' && model.issued.length > 0) return pickOf(model.issued, pick.n);
    return 1 + (pick.n % Math.max(1, index + 2));
  };
  const owner = (key: string, pick: number, asHolder: boolean): string => (asHolder ? model.leases.get(key)?.owner : undefined) ?? pickOf(OWNERS, pick);
  for (const [op, gap] of ops) {
    index += gap;
    let command: LeaseCommand | null;
    let bytes: Uint8Array | undefined;
    const requestId = `req-${steps.length}`;
    switch (op.kind) {
      case 'acquire':
        command = acquire(pickOf(KEYS, op.key), pickOf(OWNERS, op.owner), op.ttl, requestId);
        break;
      case 'renew': {
        const key = pickOf(KEYS, op.key);
        command = renew(key, owner(key, op.owner, op.asHolder), token(key, op.token), op.ttl, requestId);
        break;
      }
      case 'release': {
        const key = pickOf(KEYS, op.key);
        command = release(key, owner(key, op.owner, op.asHolder), token(key, op.token), requestId);
        break;
      }
      case 'expire': {
        const key = pickOf(KEYS, op.key);
        const renewals = op.currentRenewals ? (model.leases.get(key)?.renewals ?? op.renewals) : op.renewals;
        command = expire(key, token(key, op.token), renewals);
        break;
      }
      case 'retry': {
        if (requests.length === 0) continue;
        const earlier = pickOf(requests, op.pick);
        command = earlier.command;
        bytes = earlier.bytes;
        break;
      }
      case 'reuseId': {
        if (requests.length === 0) continue;
        const earlier = pickOf(requests, op.pick).command;
        if (earlier.type === 'Expire') throw new Error('only requests are remembered');
        command = acquire(pickOf(KEYS, op.key), pickOf(OWNERS, op.owner), op.ttl, earlier.requestId);
        break;
      }
      case 'malformed':
        command = null;
        bytes = pickOf(MALFORMED_IN_SEQUENCES, op.pick);
        break;
    }
    bytes ??= encodeLeaseCommand(command as LeaseCommand);
    if (command !== null && command.type !== 'Expire' && op.kind !== 'retry') requests.push({ bytes, command });
    const { result, answeredFrom } = model.apply(command, index, steps.length);
    steps.push({
      op: op.kind,
      bytes,
      index: li(index),
      command,
      expected: result,
      answeredFrom,
      tableAfter: model.table(),
      memoryAfter: model.memory.length,
    });
  }
  return steps;
}

/** Compares a result with the model's; a model `Rejected` stands for any rejection reason. */
function expectResult(actual: LeaseResult, expected: LeaseResult, where: string): void {
  if (expected.type === 'Rejected') expect(actual.type, where).toBe('Rejected');
  else expect(actual, where).toEqual(expected);
}

describe('model-based: random command sequences', () => {
  it('matches the model after every step, and every new grant gets a higher fencing token than all earlier ones', () => {
    const coverage = {
      freshGrants: 0,
      regrantsOfAFreedKey: 0,
      reacquires: 0,
      renews: 0,
      held: 0,
      released: 0,
      noLease: 0,
      otherHolder: 0,
      tokenMismatch: 0,
      expired: 0,
      expireIgnored: 0,
      staleRenewalExpireIgnored: 0,
      retriesAnsweredFromMemory: 0,
      forgottenRetriesAppliedAsNew: 0,
      reusedIdsAnsweredFromMemory: 0,
      rejected: 0,
      memoryFull: 0,
    };
    fc.assert(
      fc.property(scenarioArb, ({ ops, bound }) => {
        const steps = buildScenario(ops, bound);
        const sm = new LeaseStateMachine({ maxRememberedRequests: bound });
        let highestToken = 0;
        const everGranted = new Set<string>();
        for (const [position, step] of steps.entries()) {
          const where = `step ${position}: ${step.op} at index ${step.index}`;
          const holderBefore = step.command === null ? undefined : sm.get(step.command.key);
          const result = sm.apply(step.bytes, step.index);
          expectResult(result, step.expected, where);

          if (result.type === 'Granted' && step.answeredFrom === null) {
            if (result.renewed) {
              expect(result.lease.fencingToken, `${where}: a renewal keeps the token`).toBe(holderBefore?.fencingToken);
              if (step.command?.type === 'Renew') coverage.renews++;
              else coverage.reacquires++;
            } else {
              expect(result.lease.fencingToken, `${where}: the token is the granting index`).toBe(step.index);
              expect(result.lease.fencingToken, `${where}: tokens strictly increase`).toBeGreaterThan(highestToken);
              highestToken = result.lease.fencingToken;
              coverage.freshGrants++;
              if (everGranted.has(result.lease.key)) coverage.regrantsOfAFreedKey++;
              everGranted.add(result.lease.key);
            }
          }
          if (step.answeredFrom !== null) {
            if (step.op === 'retry') coverage.retriesAnsweredFromMemory++;
            if (step.op === 'reuseId') coverage.reusedIdsAnsweredFromMemory++;
          } else if (step.op === 'retry') coverage.forgottenRetriesAppliedAsNew++;
          if (result.type === 'Held') coverage.held++;
          if (result.type === 'Released' && step.answeredFrom === null) coverage.released++;
          if (result.type === 'NotHeld' && result.reason === 'NoLease') coverage.noLease++;
          if (result.type === 'NotHeld' && result.reason === 'OtherHolder') coverage.otherHolder++;
          if (result.type === 'NotHeld' && result.reason === 'TokenMismatch') coverage.tokenMismatch++;
          if (result.type === 'Expired') coverage.expired++;
          if (result.type === 'ExpireIgnored') {
            coverage.expireIgnored++;
            if (step.command?.type === 'Expire' && holderBefore?.fencingToken === step.command.fencingToken) coverage.staleRenewalExpireIgnored++;
          }
          if (result.type === 'Rejected') coverage.rejected++;
          if (step.memoryAfter === bound) coverage.memoryFull++;

          expect(sm.list(), `${where}: the table`).toEqual(step.tableAfter);
          for (const key of KEYS) expect(sm.get(key), `${where}: get(${key})`).toEqual(step.tableAfter.find((lease) => lease.key === key));
          expect(sm.rememberedRequests(), `${where}: remembered ids`).toBe(step.memoryAfter);
          expect(sm.rememberedRequests()).toBeLessThanOrEqual(bound);
          // Tokens in the table are distinct and none is above the highest grant so far.
          const tokens = sm.list().map((lease) => lease.fencingToken);
          expect(new Set(tokens).size, `${where}: distinct tokens`).toBe(tokens.length);
          for (const held of tokens) expect(held).toBeLessThanOrEqual(highestToken);
        }
      }),
      { seed: SEED, numRuns: 300 },
    );
    for (const [situation, count] of Object.entries(coverage)) expect(count, `generator coverage of ${situation}`).toBeGreaterThanOrEqual(25);
  });
});

// ---------------------------------------------------------------------------------------------
// Determinism and snapshots

describe('determinism and snapshots', () => {
  it('gives two tables fed the same commands the same results and byte-identical snapshots', () => {
    fc.assert(
      fc.property(scenarioArb, ({ ops, bound }) => {
        const steps = buildScenario(ops, bound);
        const one = new LeaseStateMachine({ maxRememberedRequests: bound });
        const two = new LeaseStateMachine({ maxRememberedRequests: bound });
        for (const step of steps) {
          expect(two.apply(step.bytes, step.index)).toEqual(one.apply(step.bytes, step.index));
          expect(hex(two.snapshot())).toBe(hex(one.snapshot()));
        }
      }),
      { seed: SEED + 1, numRuns: 200 },
    );
  });

  it('lets a table restored from a snapshot continue exactly like the original, retries included', () => {
    let retriesAnsweredFromRestoredMemory = 0;
    let nonEmptySnapshots = 0;
    fc.assert(
      fc.property(scenarioArb, fc.nat(1_000), ({ ops, bound }, cutPick) => {
        const steps = buildScenario(ops, bound);
        const cut = cutPick % (steps.length + 1);
        const original = new LeaseStateMachine({ maxRememberedRequests: bound });
        const results = steps.map((step) => original.apply(step.bytes, step.index));

        const prefix = new LeaseStateMachine({ maxRememberedRequests: bound });
        for (const step of steps.slice(0, cut)) prefix.apply(step.bytes, step.index);
        const snapshot = state(prefix);
        const { sm: restored, events } = recorded({ maxRememberedRequests: bound });
        run(restored, acquire('stale', 'zed', 1, 'stale-state'), 1); // replaced by the restore
        restored.restore(snapshot);
        expect(events.at(-1)).toEqual({ type: 'Restored' });
        expect(hex(restored.snapshot())).toBe(hex(snapshot));
        expect(restored.list()).toEqual(prefix.list());
        expect(restored.rememberedRequests()).toBe(prefix.rememberedRequests());
        if (prefix.list().length > 0) nonEmptySnapshots++;

        for (const [position, step] of steps.entries()) {
          if (position < cut) continue;
          expect(restored.apply(step.bytes, step.index), `step ${position}`).toEqual(results[position]);
          if (step.answeredFrom !== null && step.answeredFrom < cut) retriesAnsweredFromRestoredMemory++;
        }
        expect(hex(restored.snapshot())).toBe(hex(original.snapshot()));
      }),
      { seed: SEED + 2, numRuns: 200 },
    );
    expect(retriesAnsweredFromRestoredMemory).toBeGreaterThanOrEqual(25);
    expect(nonEmptySnapshots).toBeGreaterThanOrEqual(25);
  });

  it('writes leases in key order and request ids in applied order, whatever order the grants came in', () => {
    const sm = new LeaseStateMachine();
    run(sm, acquire('m', 'alice', 1_000, 'id-c'), 1);
    run(sm, acquire('z', 'alice', 1_000, 'id-a'), 2);
    run(sm, acquire('a', 'alice', 1_000, 'id-b'), 3);
    run(sm, acquire('m', 'alice', 1_000, 'id-d'), 4); // a renewal: no new row
    const [version, leases, requests] = unpack(sm.snapshot()) as [unknown, unknown[][], unknown[][]];
    expect(version).toBe(2);
    expect(leases.map((row) => row[0])).toEqual(['a', 'm', 'z']);
    expect(requests.map((row) => row[0])).toEqual(['id-c', 'id-a', 'id-b', 'id-d']);
    expect(sm.list().map((lease) => lease.key)).toEqual(['a', 'm', 'z']);
  });

  it('restores an empty snapshot into an empty table, dropping leases and remembered ids', () => {
    const sm = new LeaseStateMachine();
    const first = run(sm, acquire('k', 'alice', 1_000, 'r1'), 1);
    sm.restore(new LeaseStateMachine().snapshot());
    expect(sm.list()).toEqual([]);
    expect(sm.rememberedRequests()).toBe(0);
    // r1 is forgotten: applied as new, under the new index.
    expect(run(sm, acquire('k', 'alice', 1_000, 'r1'), 2)).toEqual({ type: 'Granted', lease: record('k', 'alice', 2, 1_000, 0), renewed: false });
    expect(first).toMatchObject({ lease: { fencingToken: 1 } });
  });

  const lease = ['k', 'alice', 1, 1_000, 0];
  const notSnapshots: readonly (readonly [string, Uint8Array])[] = [
    ['a string', pack('not a snapshot')],
    ['nil', pack(null)],
    ['a map', pack({ version: 1 })],
    ['another version', pack([2, [], []])],
    ['version as a string', pack(['1', [], []])],
    ['too many parts', pack([1, [], [], []])],
    ['too few parts', pack([1, []])],
    ['leases not an array', pack([1, {}, []])],
    ['requests not an array', pack([1, [], 'x'])],
    ['a lease row with 4 fields', pack([1, [['k', 'alice', 1, 1_000]], []])],
    ['a lease row that is not an array', pack([1, ['k'], []])],
    ['a lease with an empty key', pack([1, [['', 'alice', 1, 1_000, 0]], []])],
    ['a lease with a key over 1,024 bytes', pack([1, [[KEY_OVER_2, 'alice', 1, 1_000, 0]], []])],
    ['a lease with an owner over 256 bytes', pack([1, [['k', OWNER_OVER, 1, 1_000, 0]], []])],
    ['a lease with token 0', pack([1, [['k', 'alice', 0, 1_000, 0]], []])],
    ['a lease with ttl 0', pack([1, [['k', 'alice', 1, 0, 0]], []])],
    ['a lease with a ttl over one day', pack([1, [['k', 'alice', 1, MAX_LEASE_TTL_MS + 1, 0]], []])],
    ['a lease with a negative renewal count', pack([1, [['k', 'alice', 1, 1_000, -1]], []])],
    ['a lease with a fractional renewal count', pack([1, [['k', 'alice', 1, 1_000, 0.5]], []])],
    ['a good lease then a bad one', pack([1, [lease, ['j', 'bob', 1, 1_000, 'x']], []])],
    ['a request row with an empty id', pack([1, [lease], [['', { type: 'ExpireIgnored', key: 'k' }]]])],
    ['a request row with an id over 128 bytes', pack([1, [lease], [[REQUEST_ID_OVER, { type: 'ExpireIgnored', key: 'k' }]]])],
    ['a request row with a nil result', pack([1, [lease], [['r', null]]])],
    ['a request row with a string result', pack([1, [lease], [['r', 'Granted']]])],
    ['a request row with one part', pack([1, [lease], [['r']]])],
    ['empty bytes', new Uint8Array(0)],
    ['a truncated snapshot', state(new LeaseStateMachine()).subarray(0, 2)],
    ['a snapshot followed by a stray byte', Buffer.concat([state(new LeaseStateMachine()), Buffer.from([0x01])])],
  ];

  it.each(notSnapshots)('refuses %s with a TypeError and keeps the previous state', (_name, bytes) => {
    const { sm, events } = recorded();
    run(sm, acquire('held', 'carol', 3_000, 'r1'), 5);
    const before = state(sm);
    events.length = 0;
    expect(() => {
      sm.restore(bytes);
    }).toThrow(TypeError);
    expect(state(sm)).toEqual(before);
    expect(sm.list()).toEqual([record('held', 'carol', 5, 3_000, 0)]);
    expect(sm.rememberedRequests()).toBe(1);
    expect(events).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Events

describe('events', () => {
  it('reports grants (with the renewed flag), removals (Released, Expired) and restores, and nothing for refusals', () => {
    const { sm, events } = recorded();
    const first = encodeLeaseCommand(acquire('k', 'alice', 1_000, 'r1'));
    sm.apply(first, li(1));
    run(sm, acquire('k', 'alice', 2_000, 'r2'), 2);
    run(sm, renew('k', 'alice', 1, 3_000, 'r3'), 3);
    // No change, no event: Held, NotHeld, ExpireIgnored, a retry, a rejection.
    run(sm, acquire('k', 'bob', 1_000, 'r4'), 4);
    run(sm, release('k', 'bob', 1, 'r5'), 5);
    run(sm, renew('k', 'alice', 2, 1_000, 'r6'), 6);
    run(sm, expire('k', 1, 0), 7);
    sm.apply(first, li(8));
    sm.apply(pack(['A', '', 'alice', 1, 'r7']), li(9));
    run(sm, release('k', 'alice', 1, 'r8'), 10);
    run(sm, acquire('k', 'bob', 500, 'r9'), 11);
    run(sm, expire('k', 11, 0), 12);
    sm.restore(sm.snapshot());

    expect(events).toEqual([
      { type: 'Granted', lease: record('k', 'alice', 1, 1_000, 0), renewed: false },
      { type: 'Granted', lease: record('k', 'alice', 1, 2_000, 1), renewed: true },
      { type: 'Granted', lease: record('k', 'alice', 1, 3_000, 2), renewed: true },
      { type: 'Removed', lease: record('k', 'alice', 1, 3_000, 2), why: 'Released' },
      { type: 'Granted', lease: record('k', 'bob', 11, 500, 0), renewed: false },
      { type: 'Removed', lease: record('k', 'bob', 11, 500, 0), why: 'Expired' },
      { type: 'Restored' },
    ]);

    // A listener sees the table already changed.
    let seen: LeaseRecord | undefined;
    sm.onEvent((event) => {
      if (event.type === 'Granted') seen = sm.get(event.lease.key);
    });
    run(sm, acquire('z', 'carol', 1, 'r10'), 13);
    expect(seen).toEqual(record('z', 'carol', 13, 1, 0));

    // Detached: no more events.
    sm.onEvent(null);
    const count = events.length;
    run(sm, acquire('y', 'carol', 1, 'r11'), 14);
    sm.restore(sm.snapshot());
    expect(events).toHaveLength(count);
  });
});

// ---------------------------------------------------------------------------------------------
// The command codec

/** A well-formed string of 1 to `maxBytes` UTF-8 bytes, often with multi-byte characters. */
function boundedString(maxGraphemes: number, maxBytes: number): fc.Arbitrary<string> {
  return fc
    .oneof(fc.string({ unit: 'grapheme', minLength: 1, maxLength: maxGraphemes }), fc.string({ minLength: 1, maxLength: maxGraphemes }))
    .filter((text) => utf8Length(text) <= maxBytes);
}

const commandArb: fc.Arbitrary<LeaseCommand> = fc.oneof(
  fc
    .record({ key: boundedString(200, MAX_LEASE_KEY_BYTES), owner: boundedString(60, MAX_LEASE_OWNER_BYTES), ttlMs: fc.integer({ min: 1, max: MAX_LEASE_TTL_MS }), requestId: boundedString(30, MAX_REQUEST_ID_BYTES) })
    .map((fields): LeaseCommand => ({ type: 'Acquire', ...fields })),
  fc
    .record({
      key: boundedString(200, MAX_LEASE_KEY_BYTES),
      owner: boundedString(60, MAX_LEASE_OWNER_BYTES),
      fencingToken: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      ttlMs: fc.integer({ min: 1, max: MAX_LEASE_TTL_MS }),
      requestId: boundedString(30, MAX_REQUEST_ID_BYTES),
    })
    .map((fields): LeaseCommand => ({ type: 'Renew', ...fields, fencingToken: li(fields.fencingToken) })),
  fc
    .record({
      key: boundedString(200, MAX_LEASE_KEY_BYTES),
      owner: boundedString(60, MAX_LEASE_OWNER_BYTES),
      fencingToken: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      requestId: boundedString(30, MAX_REQUEST_ID_BYTES),
    })
    .map((fields): LeaseCommand => ({ type: 'Release', ...fields, fencingToken: li(fields.fencingToken) })),
  fc
    .record({ key: boundedString(200, MAX_LEASE_KEY_BYTES), fencingToken: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), renewals: fc.maxSafeNat() })
    .map((fields): LeaseCommand => ({ type: 'Expire', ...fields, fencingToken: li(fields.fencingToken) })),
);

/** Checks a decoded command is within every bound and survives another encode/decode. */
function expectWellFormed(tableCommand: LeaseTableCommand): void {
  expect(invalidLeaseKey(tableCommand.key)).toBeNull();
  // Maintenance commands have their own suite (maintenance-records.test.ts); here they only round-trip.
  if (!('requestId' in tableCommand) && tableCommand.type !== 'Expire') {
    expect(decodeLeaseCommand(encodeLeaseCommand(tableCommand))).toEqual(tableCommand);
    return;
  }
  const command: LeaseCommand = tableCommand;
  if (command.type !== 'Expire') {
    expect(invalidLeaseOwner(command.owner)).toBeNull();
    expect(command.requestId.length).toBeGreaterThan(0);
    expect(utf8Length(command.requestId)).toBeLessThanOrEqual(MAX_REQUEST_ID_BYTES);
  }
  if (command.type === 'Acquire' || command.type === 'Renew') expect(invalidLeaseTtl(command.ttlMs)).toBeNull();
  if (command.type !== 'Acquire') {
    expect(Number.isSafeInteger(command.fencingToken) && command.fencingToken >= 1).toBe(true);
  }
  if (command.type === 'Expire') expect(Number.isSafeInteger(command.renewals) && command.renewals >= 0).toBe(true);
  // JSON: a -0 renewal count decodes as 0 once re-encoded, which toEqual would tell apart.
  expect(JSON.stringify(decodeLeaseCommand(encodeLeaseCommand(command)))).toBe(JSON.stringify(command));
}

describe('command codec', () => {
  it('round-trips every command type', () => {
    const seen = { Acquire: 0, Renew: 0, Release: 0, Expire: 0, multiByteKeys: 0 };
    fc.assert(
      fc.property(commandArb, (command) => {
        seen[command.type]++;
        if (utf8Length(command.key) > command.key.length) seen.multiByteKeys++;
        expect(decodeLeaseCommand(encodeLeaseCommand(command))).toEqual(command);
      }),
      { seed: SEED + 3, numRuns: 400 },
    );
    for (const [what, count] of Object.entries(seen)) expect(count, `generator coverage of ${what}`).toBeGreaterThanOrEqual(40);
  });

  it('keeps encoded bytes intact while the shared encoder buffer is reused', () => {
    const first = acquire('k', 'alice', 1_000, 'r1');
    const bytes = encodeLeaseCommand(first);
    const copy = Buffer.from(bytes);
    for (let i = 0; i < 20_000; i++) encodeLeaseCommand(expire(`key-${i}`, i + 1, i));
    expect(Buffer.from(bytes)).toEqual(copy);
    expect(decodeLeaseCommand(bytes)).toEqual(first);
  });

  it('never throws on arbitrary bytes, and the table rejects exactly what decoding rejects', () => {
    let commands = 0;
    let rejected = 0;
    /** Random bytes, and valid encodings with one byte changed or cut short (more of which decode). */
    const bytesArb = fc.oneof(
      fc.uint8Array({ maxLength: 80 }),
      fc.tuple(commandArb, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.boolean()).map(([command, at, value, cut]) => {
        const bytes = Buffer.from(encodeLeaseCommand(command));
        const position = at % bytes.length;
        if (cut) return bytes.subarray(0, position);
        bytes[position] = value;
        return bytes;
      }),
    );
    fc.assert(
      fc.property(bytesArb, (bytes) => {
        const decoded = decodeLeaseCommand(bytes);
        const sm = new LeaseStateMachine();
        const result = sm.apply(bytes, li(1));
        if (typeof decoded === 'string') {
          rejected++;
          expect(result).toEqual({ type: 'Rejected', reason: decoded });
          expect(sm.list()).toEqual([]);
          expect(sm.rememberedRequests()).toBe(0);
        } else {
          commands++;
          expectWellFormed(decoded);
          expect(result.type).not.toBe('Rejected');
        }
      }),
      { seed: SEED + 4, numRuns: 1_000 },
    );
    expect(commands).toBeGreaterThanOrEqual(50);
    expect(rejected).toBeGreaterThanOrEqual(50);
  });

  it('never throws on arbitrary msgpack values, and whatever it accepts is well-formed', () => {
    let commands = 0;
    let rejected = 0;
    const field = fc.oneof(
      fc.string(),
      fc.string({ unit: 'grapheme', maxLength: 5 }),
      fc.constantFrom('', 'k', 'alice', 'A', 'N', 'R', 'E'),
      fc.integer(),
      fc.integer({ min: 0, max: 5 }),
      fc.maxSafeInteger(),
      fc.double(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      fc.uint8Array({ maxLength: 4 }),
      fc.array(fc.integer(), { maxLength: 3 }),
      fc.dictionary(fc.string(), fc.integer(), { maxKeys: 2 }),
    );
    /** Arrays shaped like commands: each field usually valid, sometimes anything; sometimes a field too many or too few. */
    const valid: Record<string, fc.Arbitrary<unknown>> = {
      key: fc.constantFrom('k', 'béta', '鍵'),
      owner: fc.constantFrom('alice', 'bob'),
      ttl: fc.oneof(fc.integer({ min: 1, max: MAX_LEASE_TTL_MS }), fc.constant(5.0)),
      token: fc.integer({ min: 1, max: 1_000 }),
      renewals: fc.nat(5),
      id: fc.constantFrom('r1', 'r2'),
    };
    const layouts: Record<string, readonly string[]> = {
      A: ['key', 'owner', 'ttl', 'id'],
      N: ['key', 'owner', 'token', 'ttl', 'id'],
      R: ['key', 'owner', 'token', 'id'],
      E: ['key', 'token', 'renewals'],
    };
    const shaped = fc.constantFrom('A', 'N', 'R', 'E').chain((tag) =>
      fc
        .tuple(
          fc.tuple(...(layouts[tag] ?? []).map((kind) => fc.oneof({ weight: 6, arbitrary: valid[kind] ?? field }, { weight: 1, arbitrary: field }))),
          fc.constantFrom('exact', 'exact', 'exact', 'extra', 'short'),
          field,
        )
        .map(([fields, length, extra]) => {
          const value: unknown[] = [tag, ...fields];
          if (length === 'extra') value.push(extra);
          if (length === 'short') value.pop();
          return value;
        }),
    );
    const valueArb = fc.oneof(fc.anything(), shaped, fc.array(fc.anything(), { maxLength: 6 }), fc.tuple(field, field, field, field));
    fc.assert(
      fc.property(valueArb, (value) => {
        const decoded = decodeLeaseCommand(pack(value));
        if (typeof decoded === 'string') rejected++;
        else {
          commands++;
          expectWellFormed(decoded);
        }
      }),
      { seed: SEED + 5, numRuns: 3_000 },
    );
    expect(commands).toBeGreaterThanOrEqual(150);
    expect(rejected).toBeGreaterThanOrEqual(1_000);
  });
});

describe('regressions', () => {
  it('strings that are not well-formed Unicode are rejected: they would arrive changed, and two request ids could collide', () => {
    expect(() => encodeLeaseCommand({ type: 'Acquire', key: 'k\uD800', owner: 'alice', ttlMs: 5, requestId: 'r1' })).toThrow(TypeError);
    expect(() => encodeLeaseCommand({ type: 'Acquire', key: 'k', owner: 'a\uDC00', ttlMs: 5, requestId: 'r2' })).toThrow(TypeError);
    expect(() => encodeLeaseCommand({ type: 'Release', key: 'k', owner: 'bob', fencingToken: li(1), requestId: 'x\uD800' })).toThrow(TypeError);
    expect(() => encodeLeaseCommand({ type: 'Expire', key: '\uDC00k', fencingToken: li(1), renewals: 0 })).toThrow(TypeError);
    expect(invalidLeaseKey('k\uD800')).toMatch(/well-formed/);
    expect(invalidLeaseOwner('\uDC00')).toMatch(/well-formed/);
  });

  it('restore() keeps this node’s request-memory bound, dropping the oldest ids', () => {
    const big = new LeaseStateMachine({ maxRememberedRequests: 5 });
    for (let i = 0; i < 5; i++) big.apply(encodeLeaseCommand({ type: 'Release', key: 'k', owner: 'o', fencingToken: li(1), requestId: `r${i}` }), li(i + 1));
    const small = new LeaseStateMachine({ maxRememberedRequests: 2 });
    small.restore(big.snapshot());
    expect(small.rememberedRequests()).toBe(2);
    // The two newest ids survive: r3 is answered from memory, r0 applies as new.
    big.apply(encodeLeaseCommand({ type: 'Acquire', key: 'k', owner: 'o', ttlMs: 5, requestId: 'g' }), li(6));
    small.apply(encodeLeaseCommand({ type: 'Acquire', key: 'k', owner: 'o', ttlMs: 5, requestId: 'g' }), li(6));
    expect(small.apply(encodeLeaseCommand({ type: 'Release', key: 'k', owner: 'o', fencingToken: li(6), requestId: 'r0' }), li(7)).type).toBe('Released');
  });

  it('a rejection is not remembered: a retry after the table has room applies', () => {
    const sm = new LeaseStateMachine();
    for (let i = 0; i < MAX_LEASES; i++) sm.apply(encodeLeaseCommand({ type: 'Acquire', key: `k${i}`, owner: 'o', ttlMs: 5, requestId: `a${i}` }), li(i + 1));
    const full = encodeLeaseCommand({ type: 'Acquire', key: 'extra', owner: 'o', ttlMs: 5, requestId: 'extra' });
    expect(sm.apply(full, li(MAX_LEASES + 1)).type).toBe('Rejected');
    sm.apply(encodeLeaseCommand({ type: 'Release', key: 'k0', owner: 'o', fencingToken: li(1), requestId: 'free' }), li(MAX_LEASES + 2));
    expect(sm.apply(full, li(MAX_LEASES + 3)).type).toBe('Granted');
  });

  it('restore() refuses request results of unknown shape', () => {
    const sm = new LeaseStateMachine();
    expect(() => {
      sm.restore(pack([1, [], [['r1', {}]]]));
    }).toThrow(TypeError);
  });

  it('the listener sees a command only after it is fully applied (its request id remembered)', () => {
    const sm = new LeaseStateMachine();
    const seen: number[] = [];
    sm.onEvent(() => seen.push(sm.rememberedRequests()));
    sm.apply(encodeLeaseCommand({ type: 'Acquire', key: 'k', owner: 'o', ttlMs: 5, requestId: 'r1' }), li(1));
    expect(seen).toEqual([1]);
  });
});

describe('release by renewal count', () => {
  it('a release naming an older renewal count does not end a lease the owner re-acquired since; one naming the current count does', () => {
    const sm = new LeaseStateMachine();
    sm.apply(encodeLeaseCommand({ type: 'Acquire', key: 'k', owner: 'o', ttlMs: 5, requestId: 'a1' }), li(1));
    sm.apply(encodeLeaseCommand({ type: 'Acquire', key: 'k', owner: 'o', ttlMs: 5, requestId: 'a2' }), li(2));
    expect(sm.apply(encodeLeaseCommand({ type: 'Release', key: 'k', owner: 'o', fencingToken: li(1), requestId: 'r1', renewals: 0 }), li(3))).toEqual({
      type: 'NotHeld',
      key: 'k',
      reason: 'RenewedSince',
    });
    expect(sm.get('k')?.renewals).toBe(1);
    expect(sm.apply(encodeLeaseCommand({ type: 'Release', key: 'k', owner: 'o', fencingToken: li(1), requestId: 'r2', renewals: 1 }), li(4)).type).toBe('Released');
    expect(sm.get('k')).toBeUndefined();
  });
});
