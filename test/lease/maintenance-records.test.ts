/**
 * Tests of the replicated maintenance records held by the lease table (src/lease/maintenance-records.ts,
 * applied through src/lease/state-machine.ts).
 *
 * - The rules, one command at a time: BeginOccurrence (the lease fence, first begins, idempotent
 *   repeats, resumes by a new holder, settled occurrences, superseded runs), Checkpoint (fenced by the
 *   run's token and by the current lease), FinishOccurrence (outcomes, duplicates, "never runs
 *   twice"), MissOccurrence (refused while a lease is held).
 * - Bounds: the history per schedule and the number of records.
 * - Snapshots: byte-identical round trips, version-1 snapshots, malformed maintenance rows.
 * - The command codec for maintenance commands, and malformed ones.
 * - A model-based property: random lease and maintenance commands against the table and a small
 *   model, compared after every step, with invariants (one finish per occurrence, no begin after
 *   settling, settledThroughMs never decreasing, resumed checkpoints).
 */
import fc from 'fast-check';
import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  MAINTENANCE_HISTORY_PER_SCHEDULE,
  MAX_CHECKPOINT_BYTES,
  MAX_MAINTENANCE_RECORDS,
  MAX_OUTCOME_ERROR_CHARS,
  type MaintenanceCommand,
  type MaintenanceRecord,
  type MaintenanceRun,
  type OccurrenceOutcome,
  type OccurrenceResult,
} from '../../src/lease/maintenance-records.js';
import {
  LeaseStateMachine,
  MAX_LEASE_KEY_BYTES,
  MAX_LEASE_OWNER_BYTES,
  decodeLeaseCommand,
  encodeLeaseCommand,
  type LeaseCommand,
  type LeaseEvent,
  type LeaseRecord,
  type LeaseResult,
  type LeaseTableCommand,
} from '../../src/lease/state-machine.js';
import type { LogIndex } from '../../src/raft/types.js';

const SEED = 0x5eed_3a1e;

const li = (value: number): LogIndex => value as LogIndex;
const utf8Length = (text: string): number => Buffer.byteLength(text, 'utf8');
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

// Lease commands (as in state-machine.test.ts).
const acquire = (key: string, owner: string, requestId: string, ttlMs = 1_000): LeaseCommand => ({ type: 'Acquire', key, owner, ttlMs, requestId });
const release = (key: string, owner: string, fencingToken: number, requestId: string): LeaseCommand => ({
  type: 'Release',
  key,
  owner,
  fencingToken: li(fencingToken),
  requestId,
});
const expire = (key: string, fencingToken: number, renewals: number): LeaseCommand => ({ type: 'Expire', key, fencingToken: li(fencingToken), renewals });

// Maintenance commands.
const begin = (key: string, occurrenceMs: number, owner: string, fencingToken: number): MaintenanceCommand => ({
  type: 'BeginOccurrence',
  key,
  occurrenceMs,
  owner,
  fencingToken: li(fencingToken),
});
const checkpoint = (key: string, occurrenceMs: number, owner: string, fencingToken: number, data: Uint8Array): MaintenanceCommand => ({
  type: 'Checkpoint',
  key,
  occurrenceMs,
  owner,
  fencingToken: li(fencingToken),
  data,
});
const finish = (key: string, occurrenceMs: number, owner: string, fencingToken: number, result: 'ok' | 'error', error: string | null = null): MaintenanceCommand => ({
  type: 'FinishOccurrence',
  key,
  occurrenceMs,
  owner,
  fencingToken: li(fencingToken),
  result,
  error,
});
const miss = (key: string, occurrenceMs: number): MaintenanceCommand => ({ type: 'MissOccurrence', key, occurrenceMs });

// Expected values.
const runOf = (occurrenceMs: number, owner: string, fencingToken: number, attempts: number, data: Uint8Array | null = null, checkpointToken: number | null = null): MaintenanceRun => ({
  occurrenceMs,
  owner,
  fencingToken: li(fencingToken),
  attempts,
  checkpoint: data,
  checkpointToken: checkpointToken === null ? null : li(checkpointToken),
});
const outcomeOf = (occurrenceMs: number, result: OccurrenceResult, owner: string | null, fencingToken: number | null, attempts: number, error: string | null = null): OccurrenceOutcome => ({
  occurrenceMs,
  result,
  owner,
  fencingToken: fencingToken === null ? null : li(fencingToken),
  attempts,
  error,
});
const recordOf = (key: string, settledThroughMs: number, current: MaintenanceRun | null, history: readonly OccurrenceOutcome[] = []): MaintenanceRecord => ({
  key,
  settledThroughMs,
  current,
  history,
});

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Applies `command` at log index `index`. */
function run(sm: LeaseStateMachine, command: LeaseTableCommand, index: number): LeaseResult {
  return sm.apply(encodeLeaseCommand(command), li(index));
}

/** The snapshot bytes as hex (msgpackr reuses its buffer, and caches properties on buffers it decoded). */
function hex(data: Uint8Array): string {
  return Buffer.from(data).toString('hex');
}

function state(sm: LeaseStateMachine): string {
  return hex(sm.snapshot());
}

/** A table with events recorded. */
function recorded(): { sm: LeaseStateMachine; events: LeaseEvent[] } {
  const sm = new LeaseStateMachine();
  const events: LeaseEvent[] = [];
  sm.onEvent((event) => events.push(event));
  return { sm, events };
}

/**
 * A table where alice acquired `k` at index 1 (token 1) and began occurrence 1000 at index 2, with a
 * checkpoint at index 3 when `withCheckpoint`.
 */
function running(withCheckpoint = false): LeaseStateMachine {
  const sm = new LeaseStateMachine();
  expect(run(sm, acquire('k', 'alice', 'r1'), 1)).toMatchObject({ type: 'Granted', lease: { fencingToken: 1 } });
  expect(run(sm, begin('k', 1_000, 'alice', 1), 2)).toMatchObject({ type: 'Begun' });
  if (withCheckpoint) expect(run(sm, checkpoint('k', 1_000, 'alice', 1, bytes('step-1')), 3)).toEqual({ type: 'Checkpointed', key: 'k', occurrenceMs: 1_000 });
  return sm;
}

// ---------------------------------------------------------------------------------------------
// BeginOccurrence

describe('BeginOccurrence', () => {
  it('refuses anyone but the lease holder under its exact token with Fenced NotHolder, changing nothing', () => {
    const { sm, events } = recorded();
    // No lease on the key at all.
    expect(run(sm, begin('k', 1_000, 'alice', 1), 1)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotHolder' });
    expect(sm.maintenanceRecord('k')).toBeUndefined();

    run(sm, acquire('k', 'alice', 'r1'), 2);
    run(sm, release('k', 'alice', 2, 'r2'), 3);
    run(sm, acquire('k', 'alice', 'r3'), 4);
    run(sm, acquire('other', 'bob', 'r4'), 5);
    const before = state(sm);
    events.length = 0;
    // Wrong owner with the right token; right owner with an older grant's token, a higher one, token 1.
    expect(run(sm, begin('k', 1_000, 'bob', 4), 6)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotHolder' });
    expect(run(sm, begin('k', 1_000, 'alice', 2), 7)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotHolder' });
    expect(run(sm, begin('k', 1_000, 'alice', 5), 8)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotHolder' });
    // Holding another key's lease is not enough.
    expect(run(sm, begin('k', 1_000, 'bob', 5), 9)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotHolder' });
    expect(run(sm, begin('free', 1_000, 'bob', 5), 10)).toEqual({ type: 'Fenced', key: 'free', reason: 'NotHolder' });
    expect(sm.maintenanceRecords()).toEqual([]);
    expect(state(sm)).toBe(before);

    // Once a run exists, a refused Begin leaves its record as it was.
    run(sm, begin('k', 1_000, 'alice', 4), 11);
    const record = sm.maintenanceRecord('k');
    const withRun = state(sm);
    expect(run(sm, begin('k', 2_000, 'bob', 4), 12)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotHolder' });
    expect(run(sm, begin('k', 1_000, 'alice', 2), 13)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotHolder' });
    expect(sm.maintenanceRecord('k')).toEqual(record);
    expect(state(sm)).toBe(withRun);
    // Maintenance commands change no lease: no lease events.
    expect(events).toEqual([]);
  });

  it('a first Begin answers Begun with attempts 1, not resumed, and settles everything before the occurrence', () => {
    const sm = new LeaseStateMachine();
    run(sm, acquire('k', 'alice', 'r1'), 7);
    const memory = sm.rememberedRequests();
    const first = runOf(1_000, 'alice', 7, 1);
    expect(run(sm, begin('k', 1_000, 'alice', 7), 8)).toEqual({ type: 'Begun', key: 'k', run: first, resumed: false });
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 999, first));
    expect(sm.maintenanceRecords()).toEqual([recordOf('k', 999, first)]);
    // Maintenance commands carry no request id: nothing is remembered for them.
    expect(sm.rememberedRequests()).toBe(memory);

    // Occurrence 0 (the epoch) is a valid occurrence: nothing before it is settled.
    run(sm, acquire('epoch', 'bob', 'r2'), 9);
    expect(run(sm, begin('epoch', 0, 'bob', 9), 10)).toEqual({ type: 'Begun', key: 'epoch', run: runOf(0, 'bob', 9, 1), resumed: false });
    expect(sm.maintenanceRecord('epoch')).toEqual(recordOf('epoch', -1, runOf(0, 'bob', 9, 1)));
    expect(sm.maintenanceRecords().map((record) => record.key)).toEqual(['epoch', 'k']);
  });

  it('a repeated Begin by the same runner under the same token is idempotent: the same run, attempts unchanged', () => {
    const sm = running(true);
    const expected = runOf(1_000, 'alice', 1, 1, bytes('step-1'), 1);
    const before = state(sm);
    expect(run(sm, begin('k', 1_000, 'alice', 1), 4)).toEqual({ type: 'Begun', key: 'k', run: expected, resumed: false });
    expect(run(sm, begin('k', 1_000, 'alice', 1), 5)).toEqual({ type: 'Begun', key: 'k', run: expected, resumed: false });
    expect(state(sm)).toBe(before);
    // Re-acquiring (renewing) keeps the token: still the same runner.
    expect(run(sm, acquire('k', 'alice', 'r2'), 6)).toMatchObject({ type: 'Granted', renewed: true, lease: { fencingToken: 1 } });
    expect(run(sm, begin('k', 1_000, 'alice', 1), 7)).toEqual({ type: 'Begun', key: 'k', run: expected, resumed: false });
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 999, expected));
  });

  const endings: readonly (readonly [string, LeaseCommand, string])[] = [
    ['expired', expire('k', 1, 0), 'bob'],
    ['was released', release('k', 'alice', 1, 'gone'), 'bob'],
    ['expired and the same owner acquired it again', expire('k', 1, 0), 'alice'],
  ];

  it.each(endings)('after the lease %s, the next holder resumes the run: attempts 2, resumed, the last checkpoint kept', (_name, ending, nextOwner) => {
    const sm = running(true);
    expect(run(sm, ending, 4).type).toMatch(/^(Expired|Released)$/);
    expect(run(sm, acquire('k', nextOwner, 'r5'), 5)).toMatchObject({ type: 'Granted', renewed: false, lease: { fencingToken: 5 } });
    const resumed = runOf(1_000, nextOwner, 5, 2, bytes('step-1'), 1);
    expect(run(sm, begin('k', 1_000, nextOwner, 5), 6)).toEqual({ type: 'Begun', key: 'k', run: resumed, resumed: true });
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 999, resumed));
    // The new runner repeating its Begin changes nothing either.
    const before = state(sm);
    expect(run(sm, begin('k', 1_000, nextOwner, 5), 7)).toEqual({ type: 'Begun', key: 'k', run: resumed, resumed: true });
    expect(state(sm)).toBe(before);
    // A third holder: attempts 3; the checkpoint it resumes from is the latest accepted one.
    expect(run(sm, checkpoint('k', 1_000, nextOwner, 5, bytes('step-2')), 8).type).toBe('Checkpointed');
    run(sm, expire('k', 5, 0), 9);
    run(sm, acquire('k', 'carol', 'r10'), 10);
    expect(run(sm, begin('k', 1_000, 'carol', 10), 11)).toEqual({ type: 'Begun', key: 'k', run: runOf(1_000, 'carol', 10, 3, bytes('step-2'), 5), resumed: true });
  });

  it('answers an occurrence at or before settledThroughMs with Settled, with its outcome when it is in the history', () => {
    const sm = running();
    run(sm, finish('k', 1_000, 'alice', 1, 'ok'), 3);
    const done = outcomeOf(1_000, 'ok', 'alice', 1, 1);
    const before = state(sm);
    expect(run(sm, begin('k', 1_000, 'alice', 1), 4)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 1_000, outcome: done });
    // Earlier occurrences nobody ran are settled too, without an outcome.
    expect(run(sm, begin('k', 500, 'alice', 1), 5)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 500, outcome: null });
    expect(run(sm, begin('k', 0, 'alice', 1), 6)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 0, outcome: null });
    expect(state(sm)).toBe(before);

    // Beginning 3000 settles 2000 (and everything up to 2999), never run.
    expect(run(sm, begin('k', 3_000, 'alice', 1), 7)).toMatchObject({ type: 'Begun', run: { occurrenceMs: 3_000, attempts: 1 } });
    expect(sm.maintenanceRecord('k')?.settledThroughMs).toBe(2_999);
    expect(run(sm, begin('k', 2_000, 'alice', 1), 8)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 2_000, outcome: null });
    expect(run(sm, begin('k', 2_999, 'alice', 1), 9)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 2_999, outcome: null });
    expect(sm.maintenanceRecord('k')?.current?.occurrenceMs).toBe(3_000);
  });

  it('beginning a newer occurrence while an older run is current appends the older to the history as missed', () => {
    const sm = running(true);
    run(sm, expire('k', 1, 0), 4);
    run(sm, acquire('k', 'bob', 'r5'), 5);
    run(sm, begin('k', 1_000, 'bob', 5), 6); // attempts 2
    run(sm, expire('k', 5, 0), 7);
    run(sm, acquire('k', 'carol', 'r8'), 8);
    const fresh = runOf(2_000, 'carol', 8, 1);
    expect(run(sm, begin('k', 2_000, 'carol', 8), 9)).toEqual({ type: 'Begun', key: 'k', run: fresh, resumed: false });
    const abandoned = outcomeOf(1_000, 'missed', 'bob', 5, 2);
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 1_999, fresh, [abandoned]));
    // The abandoned occurrence is settled, with that outcome.
    expect(run(sm, begin('k', 1_000, 'carol', 8), 10)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 1_000, outcome: abandoned });
    // And its runners can no longer checkpoint or finish it.
    expect(run(sm, checkpoint('k', 1_000, 'bob', 5, bytes('late')), 11)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotBegun' });
    expect(run(sm, finish('k', 1_000, 'bob', 5, 'ok'), 12)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 1_000, outcome: abandoned });
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 1_999, fresh, [abandoned]));
  });
});

// ---------------------------------------------------------------------------------------------
// Checkpoint

describe('Checkpoint', () => {
  it('is accepted from the current run’s owner under its token for its occurrence, and replaces the previous one', () => {
    const sm = running();
    expect(run(sm, checkpoint('k', 1_000, 'alice', 1, bytes('a')), 3)).toEqual({ type: 'Checkpointed', key: 'k', occurrenceMs: 1_000 });
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 999, runOf(1_000, 'alice', 1, 1, bytes('a'), 1)));
    expect(run(sm, checkpoint('k', 1_000, 'alice', 1, bytes('bb')), 4)).toEqual({ type: 'Checkpointed', key: 'k', occurrenceMs: 1_000 });
    expect(sm.maintenanceRecord('k')?.current).toEqual(runOf(1_000, 'alice', 1, 1, bytes('bb'), 1));
    // An empty checkpoint is a checkpoint (not "none").
    expect(run(sm, checkpoint('k', 1_000, 'alice', 1, new Uint8Array(0)), 5).type).toBe('Checkpointed');
    expect(sm.maintenanceRecord('k')?.current).toEqual(runOf(1_000, 'alice', 1, 1, new Uint8Array(0), 1));
  });

  it('refuses another owner, another token, another occurrence and a key without a run, changing nothing', () => {
    const sm = running(true);
    run(sm, acquire('other', 'bob', 'r4'), 4);
    const before = state(sm);
    const record = sm.maintenanceRecord('k');
    expect(run(sm, checkpoint('k', 1_000, 'bob', 1, bytes('x')), 5)).toEqual({ type: 'Fenced', key: 'k', reason: 'StaleToken' });
    expect(run(sm, checkpoint('k', 1_000, 'alice', 4, bytes('x')), 6)).toEqual({ type: 'Fenced', key: 'k', reason: 'StaleToken' });
    expect(run(sm, checkpoint('k', 2_000, 'alice', 1, bytes('x')), 7)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotBegun' });
    expect(run(sm, checkpoint('k', 999, 'alice', 1, bytes('x')), 8)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotBegun' });
    expect(run(sm, checkpoint('other', 1_000, 'bob', 4, bytes('x')), 9)).toEqual({ type: 'Fenced', key: 'other', reason: 'NotBegun' });
    expect(sm.maintenanceRecord('k')).toEqual(record);
    expect(sm.maintenanceRecord('other')).toBeUndefined();
    expect(state(sm)).toBe(before);
  });

  it('refuses a checkpoint under a stale token once another holder began the occurrence, keeping the stored checkpoint', () => {
    const sm = running(true);
    run(sm, expire('k', 1, 0), 4);
    run(sm, acquire('k', 'bob', 'r5'), 5);
    run(sm, begin('k', 1_000, 'bob', 5), 6);
    const before = state(sm);
    expect(run(sm, checkpoint('k', 1_000, 'alice', 1, bytes('stale')), 7)).toEqual({ type: 'Fenced', key: 'k', reason: 'StaleToken' });
    expect(sm.maintenanceRecord('k')?.current).toEqual(runOf(1_000, 'bob', 5, 2, bytes('step-1'), 1));
    expect(state(sm)).toBe(before);
    // Still refused once bob's lease is gone too: alice is not the run's runner any more.
    run(sm, expire('k', 5, 0), 8);
    expect(run(sm, checkpoint('k', 1_000, 'alice', 1, bytes('stale')), 9)).toEqual({ type: 'Fenced', key: 'k', reason: 'StaleToken' });
    // Bob's own checkpoint is accepted.
    expect(run(sm, checkpoint('k', 1_000, 'bob', 5, bytes('bob')), 10).type).toBe('Checkpointed');
    expect(sm.maintenanceRecord('k')?.current).toEqual(runOf(1_000, 'bob', 5, 2, bytes('bob'), 5));
  });

  it('refuses the old runner’s checkpoint while someone else holds the lease, before they began', () => {
    const sm = running(true);
    run(sm, expire('k', 1, 0), 4);
    run(sm, acquire('k', 'bob', 'r5'), 5);
    const before = state(sm);
    expect(run(sm, checkpoint('k', 1_000, 'alice', 1, bytes('late')), 6)).toEqual({ type: 'Fenced', key: 'k', reason: 'StaleToken' });
    expect(run(sm, finish('k', 1_000, 'alice', 1, 'ok'), 7)).toEqual({ type: 'Fenced', key: 'k', reason: 'StaleToken' });
    expect(state(sm)).toBe(before);
    // The same owner under a new grant is someone else too, until it begins.
    run(sm, release('k', 'bob', 5, 'r8'), 8);
    run(sm, acquire('k', 'alice', 'r9'), 9);
    expect(run(sm, checkpoint('k', 1_000, 'alice', 1, bytes('late')), 10)).toEqual({ type: 'Fenced', key: 'k', reason: 'StaleToken' });
    expect(sm.maintenanceRecord('k')?.current).toEqual(runOf(1_000, 'alice', 1, 1, bytes('step-1'), 1));
  });

  it('accepts the checkpoint (and finish) of a runner whose lease expired with nobody taking over', () => {
    const sm = running(true);
    run(sm, expire('k', 1, 0), 4);
    expect(sm.get('k')).toBeUndefined();
    expect(run(sm, checkpoint('k', 1_000, 'alice', 1, bytes('step-2')), 5)).toEqual({ type: 'Checkpointed', key: 'k', occurrenceMs: 1_000 });
    expect(sm.maintenanceRecord('k')?.current).toEqual(runOf(1_000, 'alice', 1, 1, bytes('step-2'), 1));
    expect(run(sm, finish('k', 1_000, 'alice', 1, 'ok'), 6)).toEqual({ type: 'Finished', key: 'k', outcome: outcomeOf(1_000, 'ok', 'alice', 1, 1), duplicate: false });
  });

  it(`rejects a checkpoint over ${MAX_CHECKPOINT_BYTES} bytes when decoding, changing nothing, and accepts exactly ${MAX_CHECKPOINT_BYTES}`, () => {
    const sm = running(true);
    const before = state(sm);
    const tooBig = encodeLeaseCommand(checkpoint('k', 1_000, 'alice', 1, new Uint8Array(MAX_CHECKPOINT_BYTES + 1).fill(7)));
    const reason = decodeLeaseCommand(tooBig);
    expect(reason).toEqual(expect.stringMatching(/at most 65536 bytes/));
    expect(sm.apply(tooBig, li(4))).toEqual({ type: 'Rejected', reason });
    expect(state(sm)).toBe(before);
    expect(sm.maintenanceRecord('k')?.current?.checkpoint).toEqual(bytes('step-1'));

    const largest = new Uint8Array(MAX_CHECKPOINT_BYTES);
    for (let i = 0; i < largest.length; i++) largest[i] = (i * 31) & 0xff;
    expect(run(sm, checkpoint('k', 1_000, 'alice', 1, largest), 5)).toEqual({ type: 'Checkpointed', key: 'k', occurrenceMs: 1_000 });
    const stored = sm.maintenanceRecord('k')?.current?.checkpoint;
    expect(stored?.byteLength).toBe(MAX_CHECKPOINT_BYTES);
    expect(hex(stored ?? new Uint8Array(0))).toBe(hex(largest));
    // A resuming holder gets those bytes.
    run(sm, expire('k', 1, 0), 6);
    run(sm, acquire('k', 'bob', 'r7'), 7);
    const resumed = run(sm, begin('k', 1_000, 'bob', 7), 8);
    expect(resumed.type).toBe('Begun');
    if (resumed.type === 'Begun') expect(hex(resumed.run.checkpoint ?? new Uint8Array(0))).toBe(hex(largest));
  });

  it('stores a copy of the checkpoint bytes: reusing the command buffer does not change the record', () => {
    const sm = running();
    const encoded = Buffer.from(encodeLeaseCommand(checkpoint('k', 1_000, 'alice', 1, bytes('abc'))));
    sm.apply(encoded, li(3));
    encoded.fill(0);
    expect(sm.maintenanceRecord('k')?.current?.checkpoint).toEqual(bytes('abc'));
  });
});

// ---------------------------------------------------------------------------------------------
// FinishOccurrence

describe('FinishOccurrence', () => {
  it('records ok with owner, token and attempts, settles the occurrence and clears the current run', () => {
    const sm = running(true);
    const done = outcomeOf(1_000, 'ok', 'alice', 1, 1);
    expect(run(sm, finish('k', 1_000, 'alice', 1, 'ok'), 4)).toEqual({ type: 'Finished', key: 'k', outcome: done, duplicate: false });
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 1_000, null, [done]));
    // An error text sent with 'ok' is not kept.
    run(sm, begin('k', 2_000, 'alice', 1), 5);
    expect(run(sm, finish('k', 2_000, 'alice', 1, 'ok', 'ignored'), 6)).toEqual({ type: 'Finished', key: 'k', outcome: outcomeOf(2_000, 'ok', 'alice', 1, 1), duplicate: false });
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 2_000, null, [done, outcomeOf(2_000, 'ok', 'alice', 1, 1)]));
  });

  it(`records error with its text, cut to ${MAX_OUTCOME_ERROR_CHARS} characters, and the attempts of a resumed run`, () => {
    const sm = running();
    run(sm, expire('k', 1, 0), 3);
    run(sm, acquire('k', 'bob', 'r4'), 4);
    run(sm, begin('k', 1_000, 'bob', 4), 5);
    const long = 'e'.repeat(MAX_OUTCOME_ERROR_CHARS) + 'TAIL';
    const failed = outcomeOf(1_000, 'error', 'bob', 4, 2, 'e'.repeat(MAX_OUTCOME_ERROR_CHARS));
    expect(run(sm, finish('k', 1_000, 'bob', 4, 'error', long), 6)).toEqual({ type: 'Finished', key: 'k', outcome: failed, duplicate: false });
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 1_000, null, [failed]));

    // Exactly the limit is kept whole; a short one as is; no text at all is an empty text.
    const exact = 'é'.repeat(MAX_OUTCOME_ERROR_CHARS);
    run(sm, begin('k', 2_000, 'bob', 4), 7);
    expect(run(sm, finish('k', 2_000, 'bob', 4, 'error', exact), 8)).toMatchObject({ type: 'Finished', outcome: { result: 'error', error: exact, attempts: 1 } });
    run(sm, begin('k', 3_000, 'bob', 4), 9);
    expect(run(sm, finish('k', 3_000, 'bob', 4, 'error', 'boom: disk full'), 10)).toMatchObject({ outcome: { error: 'boom: disk full' } });
    run(sm, begin('k', 4_000, 'bob', 4), 11);
    expect(run(sm, finish('k', 4_000, 'bob', 4, 'error', null), 12)).toMatchObject({ outcome: { result: 'error', error: '' } });
    expect(sm.maintenanceRecord('k')?.history.map((outcome) => outcome.error?.length)).toEqual([MAX_OUTCOME_ERROR_CHARS, MAX_OUTCOME_ERROR_CHARS, 15, 0]);
  });

  it('does not cut an error text inside a surrogate pair (the stored text stays well-formed and survives a snapshot)', () => {
    const sm = running();
    // 999 units then a 2-unit emoji: a cut at 1,000 units would keep only the high surrogate.
    const message = 'x'.repeat(MAX_OUTCOME_ERROR_CHARS - 1) + '😀 and more';
    const result = run(sm, finish('k', 1_000, 'alice', 1, 'error', message), 3);
    expect(result.type).toBe('Finished');
    const stored = sm.maintenanceRecord('k')?.history[0]?.error ?? '';
    expect(stored.length).toBeLessThanOrEqual(MAX_OUTCOME_ERROR_CHARS);
    expect(message.startsWith(stored)).toBe(true);
    expect(LONE_SURROGATE.test(stored), 'the stored error ends in a lone surrogate').toBe(false);
    // A node restored from a snapshot must hold the same outcome as the node that applied the log.
    const restored = new LeaseStateMachine();
    restored.restore(sm.snapshot());
    expect(restored.maintenanceRecords()).toEqual(sm.maintenanceRecords());
  });

  it('answers a repeated identical Finish as a duplicate, changing nothing; a different result is Settled', () => {
    const sm = running();
    const command = encodeLeaseCommand(finish('k', 1_000, 'alice', 1, 'error', 'boom'));
    const first = sm.apply(Buffer.from(command), li(3));
    const failed = outcomeOf(1_000, 'error', 'alice', 1, 1, 'boom');
    expect(first).toEqual({ type: 'Finished', key: 'k', outcome: failed, duplicate: false });
    const before = state(sm);
    expect(sm.apply(Buffer.from(command), li(4))).toEqual({ type: 'Finished', key: 'k', outcome: failed, duplicate: true });
    expect(sm.apply(Buffer.from(command), li(5))).toEqual({ type: 'Finished', key: 'k', outcome: failed, duplicate: true });
    expect(sm.maintenanceRecord('k')?.history).toEqual([failed]);
    expect(state(sm)).toBe(before);
    // The same runner claiming another result is not a retry of the recorded finish.
    expect(run(sm, finish('k', 1_000, 'alice', 1, 'ok'), 6)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 1_000, outcome: failed });
    // Nor is someone else's finish with the same result.
    expect(run(sm, finish('k', 1_000, 'bob', 1, 'error', 'boom'), 7)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 1_000, outcome: failed });
    expect(run(sm, finish('k', 1_000, 'alice', 2, 'error', 'boom'), 8)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 1_000, outcome: failed });
    expect(state(sm)).toBe(before);
  });

  it('refuses a Finish under a stale token after another holder took the run over', () => {
    const sm = running(true);
    run(sm, expire('k', 1, 0), 4);
    run(sm, acquire('k', 'bob', 'r5'), 5);
    run(sm, begin('k', 1_000, 'bob', 5), 6);
    const before = state(sm);
    expect(run(sm, finish('k', 1_000, 'alice', 1, 'ok'), 7)).toEqual({ type: 'Fenced', key: 'k', reason: 'StaleToken' });
    expect(run(sm, finish('k', 1_000, 'alice', 5, 'ok'), 8)).toEqual({ type: 'Fenced', key: 'k', reason: 'StaleToken' });
    expect(state(sm)).toBe(before);
    expect(run(sm, finish('k', 1_000, 'bob', 5, 'ok'), 9)).toEqual({ type: 'Finished', key: 'k', outcome: outcomeOf(1_000, 'ok', 'bob', 5, 2), duplicate: false });
    // The stale runner's finish now meets a settled occurrence.
    expect(run(sm, finish('k', 1_000, 'alice', 1, 'ok'), 10)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 1_000, outcome: outcomeOf(1_000, 'ok', 'bob', 5, 2) });
  });

  it('refuses a Finish for an occurrence nobody began with Fenced NotBegun', () => {
    const sm = new LeaseStateMachine();
    run(sm, acquire('k', 'alice', 'r1'), 1);
    expect(run(sm, finish('k', 1_000, 'alice', 1, 'ok'), 2)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotBegun' });
    expect(sm.maintenanceRecord('k')).toBeUndefined();
    run(sm, begin('k', 1_000, 'alice', 1), 3);
    const before = state(sm);
    expect(run(sm, finish('k', 2_000, 'alice', 1, 'ok'), 4)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotBegun' });
    expect(state(sm)).toBe(before);
  });

  it('never runs an occurrence twice: after its Finish, every Begin of it is Settled, even under a fresh lease', () => {
    const sm = running(true);
    const done = outcomeOf(1_000, 'ok', 'alice', 1, 1);
    run(sm, finish('k', 1_000, 'alice', 1, 'ok'), 4);
    const settledAnswer = { type: 'Settled', key: 'k', occurrenceMs: 1_000, outcome: done };
    expect(run(sm, begin('k', 1_000, 'alice', 1), 5)).toEqual(settledAnswer);
    run(sm, release('k', 'alice', 1, 'r6'), 6);
    run(sm, acquire('k', 'bob', 'r7'), 7);
    expect(run(sm, begin('k', 1_000, 'bob', 7), 8)).toEqual(settledAnswer);
    run(sm, expire('k', 7, 0), 9);
    run(sm, acquire('k', 'alice', 'r10'), 10);
    expect(run(sm, begin('k', 1_000, 'alice', 10), 11)).toEqual(settledAnswer);
    run(sm, release('k', 'alice', 10, 'r12'), 12);
    expect(run(sm, miss('k', 1_000), 13)).toEqual(settledAnswer);
    expect(run(sm, checkpoint('k', 1_000, 'alice', 1, bytes('again')), 14)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotBegun' });
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 1_000, null, [done]));
  });
});

// ---------------------------------------------------------------------------------------------
// MissOccurrence

describe('MissOccurrence', () => {
  it('is refused with Fenced LeaseHeld while anyone holds the lease on the key, changing nothing', () => {
    const sm = running();
    const before = state(sm);
    // The runner holds it.
    expect(run(sm, miss('k', 1_000), 3)).toEqual({ type: 'Fenced', key: 'k', reason: 'LeaseHeld' });
    expect(run(sm, miss('k', 2_000), 4)).toEqual({ type: 'Fenced', key: 'k', reason: 'LeaseHeld' });
    expect(state(sm)).toBe(before);
    // Someone who has not begun holds it.
    run(sm, expire('k', 1, 0), 5);
    run(sm, acquire('k', 'bob', 'r6'), 6);
    expect(run(sm, miss('k', 1_000), 7)).toEqual({ type: 'Fenced', key: 'k', reason: 'LeaseHeld' });
    // A key without a record but with a lease.
    run(sm, acquire('fresh', 'carol', 'r8'), 8);
    expect(run(sm, miss('fresh', 1_000), 9)).toEqual({ type: 'Fenced', key: 'fresh', reason: 'LeaseHeld' });
    expect(sm.maintenanceRecord('fresh')).toBeUndefined();
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 999, runOf(1_000, 'alice', 1, 1)));
  });

  it('settles a crashed run as missed with its last runner and attempts', () => {
    const sm = running(true);
    run(sm, expire('k', 1, 0), 4);
    run(sm, acquire('k', 'bob', 'r5'), 5);
    run(sm, begin('k', 1_000, 'bob', 5), 6);
    run(sm, expire('k', 5, 0), 7);
    const missed = outcomeOf(1_000, 'missed', 'bob', 5, 2);
    expect(run(sm, miss('k', 1_000), 8)).toEqual({ type: 'Missed', key: 'k', outcome: missed });
    expect(sm.maintenanceRecord('k')).toEqual(recordOf('k', 1_000, null, [missed]));
    // Its runner can no longer finish or checkpoint it.
    expect(run(sm, finish('k', 1_000, 'bob', 5, 'ok'), 9)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 1_000, outcome: missed });
    expect(run(sm, checkpoint('k', 1_000, 'bob', 5, bytes('x')), 10)).toEqual({ type: 'Fenced', key: 'k', reason: 'NotBegun' });
  });

  it('settles an occurrence nobody began with no owner and 0 attempts; a run of an older occurrence is missed first', () => {
    const sm = new LeaseStateMachine();
    const nobody = outcomeOf(5_000, 'missed', null, null, 0);
    expect(run(sm, miss('fresh', 5_000), 1)).toEqual({ type: 'Missed', key: 'fresh', outcome: nobody });
    expect(sm.maintenanceRecord('fresh')).toEqual(recordOf('fresh', 5_000, null, [nobody]));

    const other = running();
    run(other, expire('k', 1, 0), 3);
    expect(run(other, miss('k', 2_000), 4)).toEqual({ type: 'Missed', key: 'k', outcome: outcomeOf(2_000, 'missed', null, null, 0) });
    expect(other.maintenanceRecord('k')).toEqual(recordOf('k', 2_000, null, [outcomeOf(1_000, 'missed', 'alice', 1, 1), outcomeOf(2_000, 'missed', null, null, 0)]));
  });

  it('answers an occurrence at or before settledThroughMs with Settled, changing nothing', () => {
    const sm = new LeaseStateMachine();
    run(sm, miss('k', 2_000), 1);
    const before = state(sm);
    expect(run(sm, miss('k', 2_000), 2)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 2_000, outcome: outcomeOf(2_000, 'missed', null, null, 0) });
    expect(run(sm, miss('k', 1_000), 3)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 1_000, outcome: null });
    expect(state(sm)).toBe(before);
    // A later occurrence is missed in turn.
    expect(run(sm, miss('k', 3_000), 4)).toMatchObject({ type: 'Missed', outcome: { occurrenceMs: 3_000 } });
    expect(sm.maintenanceRecord('k')?.settledThroughMs).toBe(3_000);
  });
});

// ---------------------------------------------------------------------------------------------
// Bounds

describe('bounds', () => {
  it(`keeps at most ${MAINTENANCE_HISTORY_PER_SCHEDULE} outcomes per schedule, dropping the oldest first`, () => {
    const sm = new LeaseStateMachine();
    const total = MAINTENANCE_HISTORY_PER_SCHEDULE + 8;
    for (let i = 1; i <= total; i++) {
      expect(run(sm, miss('k', i * 1_000), i).type).toBe('Missed');
      expect(sm.maintenanceRecord('k')?.history.length).toBe(Math.min(i, MAINTENANCE_HISTORY_PER_SCHEDULE));
    }
    const history = sm.maintenanceRecord('k')?.history ?? [];
    expect(history.map((outcome) => outcome.occurrenceMs)).toEqual(Array.from({ length: MAINTENANCE_HISTORY_PER_SCHEDULE }, (_, n) => (n + 9) * 1_000));
    // A dropped occurrence is still settled, without its outcome.
    expect(run(sm, miss('k', 8_000), total + 1)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 8_000, outcome: null });
    expect(run(sm, miss('k', 9_000), total + 2)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 9_000, outcome: outcomeOf(9_000, 'missed', null, null, 0) });

    // A finish goes through the same bound.
    run(sm, acquire('k', 'alice', 'r1'), 100);
    run(sm, begin('k', 50_000, 'alice', 100), 101);
    run(sm, finish('k', 50_000, 'alice', 100, 'ok'), 102);
    const after = sm.maintenanceRecord('k')?.history ?? [];
    expect(after).toHaveLength(MAINTENANCE_HISTORY_PER_SCHEDULE);
    expect(after[0]?.occurrenceMs).toBe(10_000);
    expect(after.at(-1)).toEqual(outcomeOf(50_000, 'ok', 'alice', 100, 1));
    // A retried finish whose outcome was dropped meanwhile is answered Settled, not Finished again.
    for (let i = 1; i <= MAINTENANCE_HISTORY_PER_SCHEDULE; i++) {
      run(sm, begin('k', 50_000 + i * 1_000, 'alice', 100), 102 + 2 * i);
      run(sm, finish('k', 50_000 + i * 1_000, 'alice', 100, 'ok'), 103 + 2 * i);
    }
    expect(run(sm, finish('k', 50_000, 'alice', 100, 'ok'), 500)).toEqual({ type: 'Settled', key: 'k', occurrenceMs: 50_000, outcome: null });
  });

  it(`keeps records for at most ${MAX_MAINTENANCE_RECORDS} schedules: a Begin or Miss for one more is Rejected`, () => {
    const sm = new LeaseStateMachine();
    for (let i = 0; i < MAX_MAINTENANCE_RECORDS; i++) {
      const result = run(sm, miss(`s-${i}`, 1_000), i + 1);
      if (result.type !== 'Missed') throw new Error(`schedule ${i} was not recorded: ${result.type}`);
    }
    expect(sm.maintenanceRecords()).toHaveLength(MAX_MAINTENANCE_RECORDS);
    let index = MAX_MAINTENANCE_RECORDS + 1;
    run(sm, acquire('one-more', 'alice', 'r1'), index);
    const token = index;
    const full = { type: 'Rejected', reason: expect.stringMatching(/10000 schedules have maintenance records; no room for 'one-more'/) as unknown };
    // The holder passes the fence, but there is no room for its schedule.
    let before = state(sm);
    expect(run(sm, begin('one-more', 1_000, 'alice', token), ++index)).toEqual(full);
    expect(state(sm)).toBe(before);
    run(sm, release('one-more', 'alice', token, 'r2'), ++index);
    before = state(sm);
    expect(run(sm, miss('one-more', 1_000), ++index)).toEqual(full);
    expect(run(sm, miss('one-more', 0), ++index)).toEqual(full);
    expect(sm.maintenanceRecord('one-more')).toBeUndefined();
    expect(state(sm)).toBe(before);
    // Existing schedules go on as usual.
    expect(run(sm, miss('s-7', 2_000), ++index)).toMatchObject({ type: 'Missed', outcome: { occurrenceMs: 2_000 } });
    run(sm, acquire('s-8', 'bob', 'r3'), ++index);
    expect(run(sm, begin('s-8', 2_000, 'bob', index), ++index)).toMatchObject({ type: 'Begun', run: { attempts: 1 } });
    expect(sm.maintenanceRecords()).toHaveLength(MAX_MAINTENANCE_RECORDS);
  });
});

// ---------------------------------------------------------------------------------------------
// Snapshots

/** A table with leases, remembered requests and every kind of maintenance record. */
function populated(): LeaseStateMachine {
  const sm = new LeaseStateMachine();
  // 'a': a resumed run with a checkpoint written by the previous runner, and a history.
  run(sm, acquire('a', 'alice', 'r1'), 1);
  run(sm, begin('a', 1_000, 'alice', 1), 2);
  run(sm, finish('a', 1_000, 'alice', 1, 'error', 'first try failed'), 3);
  run(sm, begin('a', 2_000, 'alice', 1), 4);
  run(sm, checkpoint('a', 2_000, 'alice', 1, Uint8Array.from([0, 1, 2, 255, 128])), 5);
  run(sm, expire('a', 1, 0), 6);
  run(sm, acquire('a', 'bob', 'r7'), 7);
  run(sm, begin('a', 2_000, 'bob', 7), 8);
  // 'b': only history (a missed occurrence nobody began, then an ok one).
  run(sm, miss('b', 500), 9);
  run(sm, acquire('b', 'carol', 'r10'), 10);
  run(sm, begin('b', 1_500, 'carol', 10), 11);
  run(sm, finish('b', 1_500, 'carol', 10, 'ok'), 12);
  // 'c': a run without a checkpoint, whose lease is gone.
  run(sm, acquire('c', 'dave', 'r13'), 13);
  run(sm, begin('c', 0, 'dave', 13), 14);
  run(sm, release('c', 'dave', 13, 'r15'), 15);
  // 'd': an empty checkpoint.
  run(sm, acquire('d', 'erin', 'r16'), 16);
  run(sm, begin('d', 7, 'erin', 16), 17);
  run(sm, checkpoint('d', 7, 'erin', 16, new Uint8Array(0)), 18);
  return sm;
}

const GOOD_RUN = [2_000, 'bob', 7, 2, Buffer.from([1, 2, 3]), 1];
const GOOD_OUTCOME = [1_000, 1, 'alice', 1, 1, 'boom'];
const goodRow = (key = 'k'): unknown[] => [key, 1_999, GOOD_RUN, [GOOD_OUTCOME]];
const v2 = (rows: unknown): Uint8Array => pack([2, [], [], rows]);

const malformedRows: readonly (readonly [string, Uint8Array])[] = [
  ['records that are not an array', v2('rows')],
  ['records as a map', v2({ k: goodRow() })],
  ['a row that is not an array', v2(['k'])],
  ['a row with 3 fields', v2([['k', 1_999, null]])],
  ['a row with 5 fields', v2([[...goodRow(), null]])],
  ['a row with an empty key', v2([goodRow('')])],
  ['a row with a numeric key', v2([[7, 1_999, null, []]])],
  ['a row with settledThroughMs -2', v2([['k', -2, null, []]])],
  ['a row with a fractional settledThroughMs', v2([['k', 1.5, null, []]])],
  ['a row with a string settledThroughMs', v2([['k', '1999', null, []]])],
  ['a row whose history is not an array', v2([['k', 1_999, null, 'none']])],
  [`a history of ${MAINTENANCE_HISTORY_PER_SCHEDULE + 1} outcomes`, v2([['k', 1_999, null, Array.from({ length: MAINTENANCE_HISTORY_PER_SCHEDULE + 1 }, (_, n) => [n, 2, null, null, 0, null])]])],
  ['a run with 5 fields', v2([['k', 1_999, GOOD_RUN.slice(0, 5), []]])],
  ['a run with 7 fields', v2([['k', 1_999, [...GOOD_RUN, null], []]])],
  ['a run that is a string', v2([['k', 1_999, 'run', []]])],
  ['a run with a negative occurrence', v2([['k', 1_999, [-1, 'bob', 7, 2, null, null], []]])],
  ['a run with a numeric owner', v2([['k', 1_999, [2_000, 5, 7, 2, null, null], []]])],
  ['a run with token 0', v2([['k', 1_999, [2_000, 'bob', 0, 2, null, null], []]])],
  ['a run with 0 attempts', v2([['k', 1_999, [2_000, 'bob', 7, 0, null, null], []]])],
  ['a run with a string checkpoint', v2([['k', 1_999, [2_000, 'bob', 7, 2, 'bytes', 7], []]])],
  ['a run with a checkpoint as an array of numbers', v2([['k', 1_999, [2_000, 'bob', 7, 2, [1, 2], 7], []]])],
  [`a run with a checkpoint of ${MAX_CHECKPOINT_BYTES + 1} bytes`, v2([['k', 1_999, [2_000, 'bob', 7, 2, Buffer.alloc(MAX_CHECKPOINT_BYTES + 1), 7], []]])],
  ['a run with checkpoint token 0', v2([['k', 1_999, [2_000, 'bob', 7, 2, null, 0], []]])],
  ['an outcome with 5 fields', v2([['k', 1_999, null, [GOOD_OUTCOME.slice(0, 5)]]])],
  ['an outcome that is not an array', v2([['k', 1_999, null, ['ok']]])],
  ['an outcome with result code 3', v2([['k', 1_999, null, [[1_000, 3, 'alice', 1, 1, null]]]])],
  ['an outcome with result code -1', v2([['k', 1_999, null, [[1_000, -1, 'alice', 1, 1, null]]]])],
  ['an outcome with a fractional result code', v2([['k', 1_999, null, [[1_000, 0.5, 'alice', 1, 1, null]]]])],
  ['an outcome with the result as a string', v2([['k', 1_999, null, [[1_000, 'ok', 'alice', 1, 1, null]]]])],
  ['an outcome with a negative occurrence', v2([['k', 1_999, null, [[-5, 0, 'alice', 1, 1, null]]]])],
  ['an outcome with a numeric owner', v2([['k', 1_999, null, [[1_000, 0, 3, 1, 1, null]]]])],
  ['an outcome with token 0', v2([['k', 1_999, null, [[1_000, 0, 'alice', 0, 1, null]]]])],
  ['an outcome with negative attempts', v2([['k', 1_999, null, [[1_000, 0, 'alice', 1, -1, null]]]])],
  ['an outcome with a numeric error', v2([['k', 1_999, null, [[1_000, 1, 'alice', 1, 1, 404]]]])],
  [`an outcome with an error of ${MAX_OUTCOME_ERROR_CHARS + 1} characters`, v2([['k', 1_999, null, [[1_000, 1, 'alice', 1, 1, 'e'.repeat(MAX_OUTCOME_ERROR_CHARS + 1)]]]])],
  ['a good row then a bad one', v2([goodRow('a'), ['b', 1_999, [2_000, 'bob', 7, 2, null, null, null], []]])],
  ['a good row and a bad lease', pack([2, [['k', 'alice', 0, 1_000, 0]], [], [goodRow()]])],
];

describe('snapshots', () => {
  it('round-trips maintenance records byte-identically, checkpoint bytes and history included, and the restored table continues alike', () => {
    const original = populated();
    const snapshot = Buffer.from(original.snapshot());
    const restored = new LeaseStateMachine();
    run(restored, acquire('stale', 'zed', 'x'), 1);
    run(restored, miss('stale', 1), 2); // replaced by the restore
    restored.restore(snapshot);
    expect(hex(restored.snapshot())).toBe(hex(snapshot));
    expect(restored.maintenanceRecords()).toEqual(original.maintenanceRecords());
    expect(restored.maintenanceRecord('stale')).toBeUndefined();
    expect(restored.maintenanceRecord('a')).toEqual(
      recordOf('a', 1_999, runOf(2_000, 'bob', 7, 2, Uint8Array.from([0, 1, 2, 255, 128]), 1), [outcomeOf(1_000, 'error', 'alice', 1, 1, 'first try failed')]),
    );
    expect(restored.maintenanceRecord('d')?.current?.checkpoint).toEqual(new Uint8Array(0));
    expect(restored.list()).toEqual(original.list());

    // The restored table answers the next commands exactly like the original.
    const next: readonly LeaseTableCommand[] = [
      begin('a', 2_000, 'bob', 7),
      checkpoint('a', 2_000, 'bob', 7, bytes('more')),
      finish('a', 2_000, 'bob', 7, 'ok'),
      finish('a', 2_000, 'bob', 7, 'ok'),
      finish('b', 1_500, 'carol', 10, 'ok'),
      miss('c', 0),
      begin('b', 1_500, 'carol', 10),
      checkpoint('d', 7, 'erin', 16, bytes('x')),
    ];
    for (const [n, command] of next.entries()) {
      expect(run(restored, command, 100 + n), command.type).toEqual(run(original, command, 100 + n));
      expect(hex(restored.snapshot())).toBe(hex(original.snapshot()));
    }
  });

  it('restores a version-1 snapshot ([1, leases, requests]) with its leases and no maintenance records', () => {
    const sm = populated();
    const lease: LeaseRecord = { key: 'k', owner: 'alice', fencingToken: li(4), ttlMs: 1_000, renewals: 2 };
    const granted = { type: 'Granted', lease: { key: 'k', owner: 'alice', fencingToken: 4, ttlMs: 1_000, renewals: 0 }, renewed: false };
    sm.restore(pack([1, [['k', 'alice', 4, 1_000, 2]], [['req-1', granted]]]));
    expect(sm.maintenanceRecords()).toEqual([]);
    expect(sm.maintenanceRecord('a')).toBeUndefined();
    expect(sm.list()).toEqual([lease]);
    expect(sm.rememberedRequests()).toBe(1);
    // The retried request is answered from memory; the table works on from there.
    expect(run(sm, acquire('k', 'alice', 'req-1'), 50)).toEqual(granted);
    expect(run(sm, begin('k', 1_000, 'alice', 4), 51)).toEqual({ type: 'Begun', key: 'k', run: runOf(1_000, 'alice', 4, 1), resumed: false });
    // Written back as version 2.
    const written = Buffer.from(sm.snapshot());
    const again = new LeaseStateMachine();
    again.restore(written);
    expect(again.maintenanceRecords()).toEqual(sm.maintenanceRecords());
  });

  it('accepts the baseline row the malformed cases are built from', () => {
    const sm = new LeaseStateMachine();
    sm.restore(v2([goodRow('a'), goodRow('b')]));
    expect(sm.maintenanceRecord('a')).toEqual(recordOf('a', 1_999, runOf(2_000, 'bob', 7, 2, Uint8Array.from([1, 2, 3]), 1), [outcomeOf(1_000, 'error', 'alice', 1, 1, 'boom')]));
    expect(sm.maintenanceRecords()).toHaveLength(2);
    // The limits themselves are accepted.
    sm.restore(
      v2([
        ['k', -1, [0, 'o', 1, 1, Buffer.alloc(MAX_CHECKPOINT_BYTES), null], Array.from({ length: MAINTENANCE_HISTORY_PER_SCHEDULE }, () => [0, 1, null, null, 0, 'e'.repeat(MAX_OUTCOME_ERROR_CHARS)])],
      ]),
    );
    expect(sm.maintenanceRecord('k')?.history).toHaveLength(MAINTENANCE_HISTORY_PER_SCHEDULE);
    expect(sm.maintenanceRecord('k')?.current?.checkpoint?.byteLength).toBe(MAX_CHECKPOINT_BYTES);
  });

  it.each(malformedRows)('refuses %s with a TypeError and leaves the table unchanged', (_name, data) => {
    const { sm, events } = recorded();
    run(sm, acquire('held', 'carol', 'r1'), 5);
    run(sm, begin('held', 1_000, 'carol', 5), 6);
    run(sm, checkpoint('held', 1_000, 'carol', 5, bytes('cp')), 7);
    const before = state(sm);
    const records = sm.maintenanceRecords();
    events.length = 0;
    expect(() => {
      sm.restore(data);
    }).toThrow(TypeError);
    expect(state(sm)).toBe(before);
    expect(sm.maintenanceRecords()).toEqual(records);
    expect(sm.list()).toHaveLength(1);
    expect(events).toEqual([]);
  });

  it(`refuses a snapshot with more than ${MAX_MAINTENANCE_RECORDS} records, and accepts exactly that many`, () => {
    const rows = Array.from({ length: MAX_MAINTENANCE_RECORDS + 1 }, (_, n) => [`s-${String(n).padStart(5, '0')}`, 0, null, []]);
    const sm = new LeaseStateMachine();
    run(sm, miss('mine', 1), 1);
    const before = state(sm);
    expect(() => {
      sm.restore(v2(rows));
    }).toThrow(TypeError);
    expect(state(sm)).toBe(before);
    sm.restore(v2(rows.slice(1)));
    expect(sm.maintenanceRecords()).toHaveLength(MAX_MAINTENANCE_RECORDS);
    // Full: no room for another schedule.
    expect(run(sm, miss('mine', 1), 2).type).toBe('Rejected');
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

const keyArb = boundedString(100, MAX_LEASE_KEY_BYTES);
const ownerArb = boundedString(40, MAX_LEASE_OWNER_BYTES);
const occurrenceArb = fc.oneof(fc.constantFrom(0, 1_000, Number.MAX_SAFE_INTEGER), fc.maxSafeNat());
const tokenArb = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }).map(li);

/** A checkpoint of 1,000 bytes up to the limit, in a pattern that depends on a seed. */
const bigBytesArb = fc
  .tuple(fc.oneof(fc.integer({ min: 1_000, max: MAX_CHECKPOINT_BYTES }), fc.constant(MAX_CHECKPOINT_BYTES)), fc.nat(255))
  .map(([length, seed]) => {
    const data = new Uint8Array(length).fill(seed);
    for (let i = 0; i < length; i += 997) data[i] = (i >> 3) & 0xff;
    data[length - 1] = 0xff - seed;
    return data;
  });

const maintenanceCommandArb: fc.Arbitrary<MaintenanceCommand> = fc.oneof(
  fc.record({ key: keyArb, occurrenceMs: occurrenceArb, owner: ownerArb, fencingToken: tokenArb }).map((fields): MaintenanceCommand => ({ type: 'BeginOccurrence', ...fields })),
  fc
    .record({ key: keyArb, occurrenceMs: occurrenceArb, owner: ownerArb, fencingToken: tokenArb, data: fc.oneof(fc.uint8Array({ maxLength: 64 }), bigBytesArb) })
    .map((fields): MaintenanceCommand => ({ type: 'Checkpoint', ...fields })),
  fc
    .record({
      key: keyArb,
      occurrenceMs: occurrenceArb,
      owner: ownerArb,
      fencingToken: tokenArb,
      result: fc.constantFrom('ok' as const, 'error' as const),
      error: fc.option(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 50 }), fc.string({ maxLength: 1_200 }))),
    })
    .map((fields): MaintenanceCommand => ({ type: 'FinishOccurrence', ...fields })),
  fc.record({ key: keyArb, occurrenceMs: occurrenceArb }).map((fields): MaintenanceCommand => ({ type: 'MissOccurrence', ...fields })),
);

const malformedCommands: readonly (readonly [string, Uint8Array, RegExp])[] = [
  ['Begin with 3 fields', pack(['B', 'k', 1_000, 'alice']), /BeginOccurrence takes 4 fields/],
  ['Begin with 5 fields', pack(['B', 'k', 1_000, 'alice', 1, 0]), /BeginOccurrence takes 4 fields/],
  ['Begin with a negative occurrence', pack(['B', 'k', -1, 'alice', 1]), /occurrence must be a non-negative integer/],
  ['Begin with a fractional occurrence', pack(['B', 'k', 1_000.5, 'alice', 1]), /occurrence must be a non-negative integer/],
  ['Begin with a string occurrence', pack(['B', 'k', '1000', 'alice', 1]), /occurrence must be a non-negative integer/],
  ['Begin with an unsafe occurrence', pack(['B', 'k', 2 ** 53, 'alice', 1]), /occurrence must be a non-negative integer/],
  ['Begin with a NaN occurrence', pack(['B', 'k', Number.NaN, 'alice', 1]), /occurrence must be a non-negative integer/],
  ['Begin with an empty owner', pack(['B', 'k', 1_000, '', 1]), /owner must be a non-empty string/],
  ['Begin with a numeric owner', pack(['B', 'k', 1_000, 7, 1]), /owner must be a non-empty string/],
  ['Begin with a fractional token', pack(['B', 'k', 1_000, 'alice', 1.5]), /fencing token must be a positive integer/],
  ['Begin with token 0', pack(['B', 'k', 1_000, 'alice', 0]), /fencing token must be a positive integer/],
  ['Begin with a string token', pack(['B', 'k', 1_000, 'alice', '1']), /fencing token must be a positive integer/],
  ['Begin with an empty key', pack(['B', '', 1_000, 'alice', 1]), /key must be a non-empty string/],
  ['Checkpoint with 4 fields', pack(['C', 'k', 1_000, 'alice', 1]), /Checkpoint takes 5 fields/],
  ['Checkpoint with 6 fields', pack(['C', 'k', 1_000, 'alice', 1, Buffer.from([1]), 0]), /Checkpoint takes 5 fields/],
  ['Checkpoint with a string as data', pack(['C', 'k', 1_000, 'alice', 1, 'abc']), /checkpoint data must be bytes/],
  ['Checkpoint with an array as data', pack(['C', 'k', 1_000, 'alice', 1, [1, 2, 3]]), /checkpoint data must be bytes/],
  ['Checkpoint with nil data', pack(['C', 'k', 1_000, 'alice', 1, null]), /checkpoint data must be bytes/],
  [`Checkpoint with ${MAX_CHECKPOINT_BYTES + 1} bytes`, pack(['C', 'k', 1_000, 'alice', 1, Buffer.alloc(MAX_CHECKPOINT_BYTES + 1)]), /at most 65536 bytes/],
  ['Checkpoint with a negative occurrence', pack(['C', 'k', -1_000, 'alice', 1, Buffer.from([1])]), /occurrence must be a non-negative integer/],
  ['Checkpoint with a non-integer token', pack(['C', 'k', 1_000, 'alice', 0.25, Buffer.from([1])]), /fencing token must be a positive integer/],
  ['Finish with 5 fields', pack(['F', 'k', 1_000, 'alice', 1, 'ok']), /FinishOccurrence takes 6 fields/],
  ['Finish with 7 fields', pack(['F', 'k', 1_000, 'alice', 1, 'ok', null, null]), /FinishOccurrence takes 6 fields/],
  ['Finish with result missed', pack(['F', 'k', 1_000, 'alice', 1, 'missed', null]), /result must be 'ok' or 'error'/],
  ['Finish with result OK', pack(['F', 'k', 1_000, 'alice', 1, 'OK', null]), /result must be 'ok' or 'error'/],
  ['Finish with a numeric result', pack(['F', 'k', 1_000, 'alice', 1, 0, null]), /result must be 'ok' or 'error'/],
  ['Finish with a numeric error', pack(['F', 'k', 1_000, 'alice', 1, 'error', 500]), /error must be null or a well-formed string/],
  ['Finish with a negative occurrence', pack(['F', 'k', -1, 'alice', 1, 'ok', null]), /occurrence must be a non-negative integer/],
  ['Finish with a non-integer token', pack(['F', 'k', 1_000, 'alice', 2.5, 'ok', null]), /fencing token must be a positive integer/],
  ['Miss with 1 field', pack(['M', 'k']), /MissOccurrence takes 2 fields/],
  ['Miss with 3 fields', pack(['M', 'k', 1_000, 0]), /MissOccurrence takes 2 fields/],
  ['Miss with a negative occurrence', pack(['M', 'k', -1]), /occurrence must be a non-negative integer/],
  ['Miss with a fractional occurrence', pack(['M', 'k', 0.5]), /occurrence must be a non-negative integer/],
  ['Miss with a nil occurrence', pack(['M', 'k', null]), /occurrence must be a non-negative integer/],
  ['Miss with a numeric key', pack(['M', 1, 1_000]), /key must be a non-empty string/],
];

describe('maintenance command codec', () => {
  it('round-trips every maintenance command', () => {
    const seen = { BeginOccurrence: 0, Checkpoint: 0, FinishOccurrence: 0, MissOccurrence: 0, bigCheckpoints: 0, errors: 0 };
    fc.assert(
      fc.property(maintenanceCommandArb, (command) => {
        seen[command.type]++;
        if (command.type === 'Checkpoint' && command.data.byteLength > 1_000) seen.bigCheckpoints++;
        if (command.type === 'FinishOccurrence' && command.error !== null) seen.errors++;
        const decoded = decodeLeaseCommand(encodeLeaseCommand(command));
        // Checkpoint bytes compared as hex (element-wise deep equality of 64 KiB arrays is slow).
        const comparable = (value: LeaseTableCommand | string): unknown => (typeof value !== 'string' && value.type === 'Checkpoint' ? { ...value, data: hex(value.data) } : value);
        expect(comparable(decoded)).toEqual(comparable(command));
        if (typeof decoded !== 'string' && decoded.type === 'Checkpoint') expect(decoded.data).toBeInstanceOf(Uint8Array);
      }),
      { seed: SEED + 3, numRuns: 400 },
    );
    for (const [what, count] of Object.entries(seen)) expect(count, `generator coverage of ${what}`).toBeGreaterThanOrEqual(20);
  });

  it('refuses maintenance strings that are not well-formed Unicode when encoding', () => {
    expect(() => encodeLeaseCommand(begin('k', 1, 'a\uD800', 1))).toThrow(TypeError);
    expect(() => encodeLeaseCommand(miss('\uDC00', 1))).toThrow(TypeError);
    expect(() => encodeLeaseCommand(finish('k', 1, 'alice', 1, 'error', 'bad \uD800 text'))).toThrow(TypeError);
  });

  it.each(malformedCommands)('rejects %s and changes nothing', (_name, data, reason) => {
    const { sm, events } = recorded();
    run(sm, acquire('k', 'alice', 'r1'), 1);
    run(sm, begin('k', 1_000, 'alice', 1), 2);
    run(sm, checkpoint('k', 1_000, 'alice', 1, bytes('cp')), 3);
    run(sm, miss('other', 1_000), 4);
    const before = state(sm);
    const records = sm.maintenanceRecords();
    const memory = sm.rememberedRequests();
    events.length = 0;
    const decoded = decodeLeaseCommand(data);
    expect(decoded).toEqual(expect.stringMatching(reason));
    expect(sm.apply(data, li(5))).toEqual({ type: 'Rejected', reason: decoded });
    expect(state(sm)).toBe(before);
    expect(sm.maintenanceRecords()).toEqual(records);
    expect(sm.rememberedRequests()).toBe(memory);
    expect(events).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// Model-based property

const M_KEYS = ['sched/a', 'sched/b'] as const;
const M_OWNERS = ['alice', 'bob', 'carol'] as const;
const OCCURRENCES = [1_000, 2_000, 3_000] as const;
const pickOf = <T>(items: readonly T[], n: number): T => items[n % items.length] as T;

/** Whose credentials a command carries: the lease holder's, the current runner's, any earlier runner's, or anyone's. */
type Who = { readonly from: 'holder' | 'runner' | 'pastRunner' | 'anyone'; readonly owner: number; readonly token: number };
/** The current run's occurrence (when there is one), or one from {@link OCCURRENCES}. */
type OccurrencePick = { readonly from: 'run' | 'any'; readonly n: number };
type MOp =
  | { readonly kind: 'acquire'; readonly key: number; readonly owner: number }
  | { readonly kind: 'release'; readonly key: number; readonly who: Who }
  | { readonly kind: 'expire'; readonly key: number; readonly stale: boolean }
  | { readonly kind: 'begin'; readonly key: number; readonly occurrence: OccurrencePick; readonly who: Who }
  | { readonly kind: 'checkpoint'; readonly key: number; readonly occurrence: OccurrencePick; readonly who: Who; readonly data: Uint8Array }
  | { readonly kind: 'finish'; readonly key: number; readonly occurrence: OccurrencePick; readonly who: Who; readonly result: 'ok' | 'error'; readonly error: string | null }
  | { readonly kind: 'miss'; readonly key: number; readonly occurrence: OccurrencePick }
  /** Re-send an earlier maintenance command byte for byte (a retried proposal). */
  | { readonly kind: 'resend'; readonly pick: number };

const whoArb = (weights: { holder: number; runner: number; pastRunner: number; anyone: number }): fc.Arbitrary<Who> =>
  fc.record({
    from: fc.oneof(
      { weight: weights.holder, arbitrary: fc.constant('holder' as const) },
      { weight: weights.runner, arbitrary: fc.constant('runner' as const) },
      { weight: weights.pastRunner, arbitrary: fc.constant('pastRunner' as const) },
      { weight: weights.anyone, arbitrary: fc.constant('anyone' as const) },
    ),
    owner: fc.nat(100),
    token: fc.nat(100),
  });
const occurrencePickArb: fc.Arbitrary<OccurrencePick> = fc.record({ from: fc.constantFrom('run' as const, 'any' as const, 'any' as const), n: fc.nat(100) });
/** Mostly the current run's occurrence (to retry, resume and finish it). */
const runOccurrenceArb: fc.Arbitrary<OccurrencePick> = fc.record({ from: fc.constantFrom('run' as const, 'run' as const, 'run' as const, 'any' as const), n: fc.nat(100) });
/** As often a newer occurrence as the current run's (to supersede a run as well as resume it). */
const beginOccurrenceArb: fc.Arbitrary<OccurrencePick> = fc.record({ from: fc.constantFrom('run' as const, 'run' as const, 'any' as const), n: fc.nat(100) });
const mKeyArb = fc.nat(10);

const mOpArb: fc.Arbitrary<MOp> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('acquire' as const), key: mKeyArb, owner: fc.nat(10) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('release' as const), key: mKeyArb, who: whoArb({ holder: 4, runner: 0, pastRunner: 0, anyone: 1 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('expire' as const), key: mKeyArb, stale: fc.constantFrom(false, false, false, true) }) },
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant('begin' as const), key: mKeyArb, occurrence: beginOccurrenceArb, who: whoArb({ holder: 8, runner: 1, pastRunner: 1, anyone: 1 }) }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('checkpoint' as const),
      key: mKeyArb,
      occurrence: runOccurrenceArb,
      who: whoArb({ holder: 2, runner: 6, pastRunner: 2, anyone: 1 }),
      data: fc.uint8Array({ maxLength: 6 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('finish' as const),
      key: mKeyArb,
      occurrence: runOccurrenceArb,
      who: whoArb({ holder: 2, runner: 6, pastRunner: 2, anyone: 1 }),
      result: fc.constantFrom('ok' as const, 'error' as const),
      error: fc.option(fc.string({ maxLength: 12 })),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('miss' as const), key: mKeyArb, occurrence: occurrencePickArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('resend' as const), pick: fc.nat(1_000) }) },
);

const mScenarioArb = fc.record({
  keys: fc.integer({ min: 1, max: 2 }),
  owners: fc.integer({ min: 2, max: 3 }),
  ops: fc.array(fc.tuple(mOpArb, fc.constantFrom(1, 1, 1, 2, 3)), { minLength: 1, maxLength: 60, size: 'max' }),
});

interface ModelRun {
  occurrenceMs: number;
  owner: string;
  token: number;
  attempts: number;
  checkpoint: Uint8Array | null;
  checkpointToken: number | null;
}

interface ModelSchedule {
  settledThroughMs: number;
  current: ModelRun | null;
  /** Oldest first, at most MAINTENANCE_HISTORY_PER_SCHEDULE. */
  readonly history: OccurrenceOutcome[];
}

/**
 * The model: leases as a Map (owner, grant index, renewals), schedules as a Map with a mutable
 * current run and a bounded outcome list. Written from the documented rules, not from the code.
 */
class MaintenanceModel {
  readonly leases = new Map<string, LeaseRecord>();
  readonly schedules = new Map<string, ModelSchedule>();
  /** Tokens of every fresh grant. */
  readonly issued: number[] = [];
  /** Everyone who began a run (owner, token), per key. */
  readonly runners = new Map<string, { owner: string; token: number }[]>();

  apply(command: LeaseTableCommand, index: number): LeaseResult {
    switch (command.type) {
      case 'Acquire': {
        const lease = this.leases.get(command.key);
        if (lease !== undefined && lease.owner !== command.owner) return { type: 'Held', lease };
        const next: LeaseRecord =
          lease === undefined
            ? { key: command.key, owner: command.owner, fencingToken: li(index), ttlMs: command.ttlMs, renewals: 0 }
            : { ...lease, ttlMs: command.ttlMs, renewals: lease.renewals + 1 };
        if (lease === undefined) this.issued.push(index);
        this.leases.set(command.key, next);
        return { type: 'Granted', lease: next, renewed: lease !== undefined };
      }
      case 'Release': {
        const lease = this.leases.get(command.key);
        if (lease === undefined) return { type: 'NotHeld', key: command.key, reason: 'NoLease' };
        if (lease.owner !== command.owner) return { type: 'NotHeld', key: command.key, reason: 'OtherHolder' };
        if (lease.fencingToken !== command.fencingToken) return { type: 'NotHeld', key: command.key, reason: 'TokenMismatch' };
        this.leases.delete(command.key);
        return { type: 'Released', lease };
      }
      case 'Expire': {
        const lease = this.leases.get(command.key);
        if (lease === undefined || lease.fencingToken !== command.fencingToken || lease.renewals !== command.renewals) return { type: 'ExpireIgnored', key: command.key };
        this.leases.delete(command.key);
        return { type: 'Expired', lease };
      }
      case 'Renew':
        throw new Error('the scenarios do not renew');
      case 'BeginOccurrence':
        return this.begin(command.key, command.occurrenceMs, command.owner, command.fencingToken);
      case 'Checkpoint':
      case 'FinishOccurrence': {
        const { key, occurrenceMs, owner, fencingToken } = command;
        const schedule = this.schedules.get(key);
        if (command.type === 'FinishOccurrence' && schedule !== undefined && occurrenceMs <= schedule.settledThroughMs) {
          const outcome = schedule.history.find((item) => item.occurrenceMs === occurrenceMs) ?? null;
          if (outcome?.owner === owner && outcome.fencingToken === fencingToken && outcome.result === command.result) return { type: 'Finished', key, outcome, duplicate: true };
          return { type: 'Settled', key, occurrenceMs, outcome };
        }
        const current = schedule?.current ?? null;
        if (schedule === undefined || current === null || current.occurrenceMs !== occurrenceMs) return { type: 'Fenced', key, reason: 'NotBegun' };
        if (current.owner !== owner || current.token !== fencingToken) return { type: 'Fenced', key, reason: 'StaleToken' };
        const lease = this.leases.get(key);
        if (lease !== undefined && lease.fencingToken !== fencingToken) return { type: 'Fenced', key, reason: 'StaleToken' };
        if (command.type === 'Checkpoint') {
          current.checkpoint = Uint8Array.from(command.data);
          current.checkpointToken = fencingToken;
          return { type: 'Checkpointed', key, occurrenceMs };
        }
        const outcome: OccurrenceOutcome = {
          occurrenceMs,
          result: command.result,
          owner,
          fencingToken,
          attempts: current.attempts,
          error: command.result === 'ok' ? null : (command.error ?? '').slice(0, MAX_OUTCOME_ERROR_CHARS),
        };
        this.settle(schedule, outcome);
        return { type: 'Finished', key, outcome, duplicate: false };
      }
      case 'MissOccurrence': {
        const { key, occurrenceMs } = command;
        const schedule = this.schedules.get(key);
        if (schedule !== undefined && occurrenceMs <= schedule.settledThroughMs) return this.settled(schedule, key, occurrenceMs);
        if (this.leases.has(key)) return { type: 'Fenced', key, reason: 'LeaseHeld' };
        const target = schedule ?? this.create(key);
        const current = target.current;
        let outcome: OccurrenceOutcome;
        if (current !== null && current.occurrenceMs === occurrenceMs) outcome = missedRun(current);
        else {
          if (current !== null) this.push(target, missedRun(current));
          outcome = { occurrenceMs, result: 'missed', owner: null, fencingToken: null, attempts: 0, error: null };
        }
        this.settle(target, outcome);
        return { type: 'Missed', key, outcome };
      }
    }
  }

  private begin(key: string, occurrenceMs: number, owner: string, token: number): LeaseResult {
    const lease = this.leases.get(key);
    if (lease === undefined || lease.owner !== owner || lease.fencingToken !== token) return { type: 'Fenced', key, reason: 'NotHolder' };
    const existing = this.schedules.get(key);
    if (existing !== undefined && occurrenceMs <= existing.settledThroughMs) return this.settled(existing, key, occurrenceMs);
    const schedule = existing ?? this.create(key);
    const current = schedule.current;
    if (current !== null && current.occurrenceMs === occurrenceMs) {
      if (current.token !== token) {
        current.owner = owner;
        current.token = token;
        current.attempts++;
        this.runners.get(key)?.push({ owner, token });
      }
      return { type: 'Begun', key, run: toRun(current), resumed: current.attempts > 1 };
    }
    if (current !== null) this.push(schedule, missedRun(current));
    schedule.current = { occurrenceMs, owner, token, attempts: 1, checkpoint: null, checkpointToken: null };
    schedule.settledThroughMs = occurrenceMs - 1;
    this.runners.get(key)?.push({ owner, token });
    return { type: 'Begun', key, run: toRun(schedule.current), resumed: false };
  }

  private create(key: string): ModelSchedule {
    const schedule: ModelSchedule = { settledThroughMs: -1, current: null, history: [] };
    this.schedules.set(key, schedule);
    this.runners.set(key, []);
    return schedule;
  }

  private settled(schedule: ModelSchedule, key: string, occurrenceMs: number): LeaseResult {
    return { type: 'Settled', key, occurrenceMs, outcome: schedule.history.find((item) => item.occurrenceMs === occurrenceMs) ?? null };
  }

  private settle(schedule: ModelSchedule, outcome: OccurrenceOutcome): void {
    this.push(schedule, outcome);
    schedule.settledThroughMs = outcome.occurrenceMs;
    schedule.current = null;
  }

  private push(schedule: ModelSchedule, outcome: OccurrenceOutcome): void {
    schedule.history.push(outcome);
    while (schedule.history.length > MAINTENANCE_HISTORY_PER_SCHEDULE) schedule.history.shift();
  }

  records(): MaintenanceRecord[] {
    return [...this.schedules.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([key, schedule]) => recordOf(key, schedule.settledThroughMs, schedule.current === null ? null : toRun(schedule.current), [...schedule.history]));
  }

  leaseList(): LeaseRecord[] {
    return [...this.leases.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}

function toRun(run: ModelRun): MaintenanceRun {
  return runOf(run.occurrenceMs, run.owner, run.token, run.attempts, run.checkpoint, run.checkpointToken);
}

function missedRun(run: ModelRun): OccurrenceOutcome {
  return outcomeOf(run.occurrenceMs, 'missed', run.owner, run.token, run.attempts);
}

/** Turns a generated operation into a concrete command, reading the model's state; null to skip. */
function commandFor(op: MOp, model: MaintenanceModel, keys: number, owners: number, index: number, sent: readonly LeaseTableCommand[], step: number): LeaseTableCommand | null {
  const ownerNames = M_OWNERS.slice(0, owners);
  const keyOf = (n: number): string => pickOf(M_KEYS.slice(0, keys), n);
  const credentials = (key: string, who: Who): { owner: string; token: number } => {
    const lease = model.leases.get(key);
    const current = model.schedules.get(key)?.current ?? null;
    const past = model.runners.get(key) ?? [];
    if (who.from === 'runner' && current !== null) return { owner: current.owner, token: current.token };
    if ((who.from === 'holder' || who.from === 'runner') && lease !== undefined) return { owner: lease.owner, token: lease.fencingToken };
    if (who.from === 'pastRunner' && past.length > 0) return pickOf(past, who.token);
    const token = model.issued.length > 0 && who.token % 4 !== 0 ? pickOf(model.issued, who.token) : 1 + (who.token % (index + 1));
    return { owner: pickOf(ownerNames, who.owner), token };
  };
  const occurrenceOf = (key: string, pick: OccurrencePick): number => {
    const current = model.schedules.get(key)?.current ?? null;
    return pick.from === 'run' && current !== null ? current.occurrenceMs : pickOf(OCCURRENCES, pick.n);
  };
  switch (op.kind) {
    case 'acquire':
      return acquire(keyOf(op.key), pickOf(ownerNames, op.owner), `req-${step}`);
    case 'release': {
      const key = keyOf(op.key);
      const { owner, token } = credentials(key, op.who);
      return release(key, owner, token, `req-${step}`);
    }
    case 'expire': {
      const key = keyOf(op.key);
      const lease = model.leases.get(key);
      if (lease === undefined) return expire(key, 1, 0);
      return expire(key, lease.fencingToken, lease.renewals + (op.stale ? 1 : 0));
    }
    case 'begin': {
      const key = keyOf(op.key);
      const { owner, token } = credentials(key, op.who);
      return begin(key, occurrenceOf(key, op.occurrence), owner, token);
    }
    case 'checkpoint': {
      const key = keyOf(op.key);
      const { owner, token } = credentials(key, op.who);
      return checkpoint(key, occurrenceOf(key, op.occurrence), owner, token, op.data);
    }
    case 'finish': {
      const key = keyOf(op.key);
      const { owner, token } = credentials(key, op.who);
      return finish(key, occurrenceOf(key, op.occurrence), owner, token, op.result, op.error);
    }
    case 'miss': {
      const key = keyOf(op.key);
      return miss(key, occurrenceOf(key, op.occurrence));
    }
    case 'resend':
      return sent.length === 0 ? null : pickOf(sent, op.pick);
  }
}

describe('model-based: random lease and maintenance commands', () => {
  it('matches the model after every step, and keeps the invariants of one run per occurrence', () => {
    const coverage = {
      freshBegins: 0,
      resumes: 0,
      repeatedBegins: 0,
      supersededRuns: 0,
      settledBegins: 0,
      notHolder: 0,
      checkpointed: 0,
      checkpointedWithoutLease: 0,
      staleToken: 0,
      notBegun: 0,
      finishedOk: 0,
      finishedError: 0,
      duplicateFinishes: 0,
      settledFinishes: 0,
      missedRuns: 0,
      missedUnbegun: 0,
      leaseHeld: 0,
      resumedWithCheckpoint: 0,
    };
    fc.assert(
      fc.property(mScenarioArb, ({ keys, owners, ops }) => {
        const model = new MaintenanceModel();
        const sm = new LeaseStateMachine();
        const sent: LeaseTableCommand[] = [];
        /** key@occurrence of every non-duplicate Finished. */
        const finished = new Set<string>();
        /** key@occurrence of every occurrence answered Finished or Missed. */
        const closed = new Set<string>();
        /** key@occurrence → the data of the last accepted checkpoint. */
        const lastCheckpoint = new Map<string, Uint8Array>();
        const settledThrough = new Map<string, number>();
        let index = 0;
        for (const [step, [op, gap]] of ops.entries()) {
          index += gap;
          const command = commandFor(op, model, keys, owners, index, sent, step);
          if (command === null) continue;
          if (command.type !== 'Acquire' && command.type !== 'Release' && command.type !== 'Expire' && command.type !== 'Renew') sent.push(command);
          const where = `step ${step}: ${op.kind} ${JSON.stringify(command, (_k, value: unknown) => (value instanceof Uint8Array ? hex(value) : value))} at ${index}`;
          const leaseBefore = sm.get(command.key);
          const recordBefore = sm.maintenanceRecord(command.key);

          const result = sm.apply(encodeLeaseCommand(command), li(index));
          const expected = model.apply(command, index);
          expect(result, where).toEqual(expected);
          expect(sm.maintenanceRecords(), `${where}: records`).toEqual(model.records());
          expect(sm.list(), `${where}: leases`).toEqual(model.leaseList());

          // Invariants, from the table's own answers.
          const id = 'occurrenceMs' in command ? `${command.key}@${command.occurrenceMs}` : '';
          switch (result.type) {
            case 'Begun': {
              if (command.type !== 'BeginOccurrence') throw new Error(where);
              expect(closed.has(id), `${where}: Begun after the occurrence was finished or missed`).toBe(false);
              expect(command.occurrenceMs, `${where}: Begun an occurrence already settled`).toBeGreaterThan(recordBefore?.settledThroughMs ?? -1);
              expect(leaseBefore, `${where}: only the holder begins`).toMatchObject({ owner: command.owner, fencingToken: command.fencingToken });
              expect(result.run.checkpoint, `${where}: the run resumes from the last accepted checkpoint`).toEqual(lastCheckpoint.get(id) ?? null);
              if (recordBefore?.current?.occurrenceMs === command.occurrenceMs) {
                if (recordBefore.current.fencingToken === command.fencingToken) coverage.repeatedBegins++;
                else {
                  coverage.resumes++;
                  if (result.run.checkpoint !== null) coverage.resumedWithCheckpoint++;
                }
              } else {
                coverage.freshBegins++;
                if (recordBefore?.current != null) coverage.supersededRuns++;
              }
              break;
            }
            case 'Checkpointed':
              if (command.type !== 'Checkpoint') throw new Error(where);
              expect(recordBefore?.current, `${where}: only the current runner checkpoints`).toMatchObject({ owner: command.owner, fencingToken: command.fencingToken });
              lastCheckpoint.set(id, command.data);
              coverage.checkpointed++;
              if (leaseBefore === undefined) coverage.checkpointedWithoutLease++;
              break;
            case 'Finished':
              if (command.type !== 'FinishOccurrence') throw new Error(where);
              if (result.duplicate) coverage.duplicateFinishes++;
              else {
                expect(finished.has(id), `${where}: a second Finished for one occurrence`).toBe(false);
                expect(recordBefore?.current, `${where}: only the current runner finishes`).toMatchObject({ owner: command.owner, fencingToken: command.fencingToken });
                finished.add(id);
                if (result.outcome.result === 'ok') coverage.finishedOk++;
                else coverage.finishedError++;
              }
              closed.add(id);
              break;
            case 'Missed':
              closed.add(id);
              expect(leaseBefore, `${where}: missed while a lease was held`).toBeUndefined();
              if (result.outcome.owner === null) coverage.missedUnbegun++;
              else coverage.missedRuns++;
              break;
            case 'Settled':
              if (command.type === 'BeginOccurrence') coverage.settledBegins++;
              if (command.type === 'FinishOccurrence') coverage.settledFinishes++;
              break;
            case 'Fenced':
              if (result.reason === 'NotHolder') coverage.notHolder++;
              if (result.reason === 'StaleToken') coverage.staleToken++;
              if (result.reason === 'NotBegun') coverage.notBegun++;
              if (result.reason === 'LeaseHeld') coverage.leaseHeld++;
              break;
            case 'Granted':
            case 'Held':
            case 'Released':
            case 'NotHeld':
            case 'Expired':
            case 'ExpireIgnored':
            case 'Rejected':
              break;
          }
          for (const record of sm.maintenanceRecords()) {
            const previous = settledThrough.get(record.key) ?? -1;
            expect(record.settledThroughMs, `${where}: settledThroughMs of ${record.key} decreased`).toBeGreaterThanOrEqual(previous);
            settledThrough.set(record.key, record.settledThroughMs);
            if (record.current !== null) expect(record.current.occurrenceMs).toBeGreaterThan(record.settledThroughMs);
            expect(record.history.length).toBeLessThanOrEqual(MAINTENANCE_HISTORY_PER_SCHEDULE);
          }
        }
        // The end state survives a snapshot byte for byte.
        const snapshot = Buffer.from(sm.snapshot());
        const restored = new LeaseStateMachine();
        restored.restore(snapshot);
        expect(hex(restored.snapshot())).toBe(hex(snapshot));
        expect(restored.maintenanceRecords()).toEqual(sm.maintenanceRecords());
      }),
      { seed: SEED, numRuns: 800 },
    );
    for (const [situation, count] of Object.entries(coverage)) expect(count, `generator coverage of ${situation}`).toBeGreaterThanOrEqual(10);
  });
});
