/**
 * Model-based property tests of RaftLog: random operation sequences run against the log and against
 * a naive array model, with every observable compared after every step.
 *
 * Operations carry raw random numbers that are interpreted against the model's current state, so
 * every generated sequence is valid (or, for the `bad*` operations, invalid on purpose).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvariantError } from '../../src/raft/errors.js';
import { RaftLog } from '../../src/raft/log.js';
import { EntryType, type Entry, type LogIndex, type Term } from '../../src/raft/types.js';

const SEED = 0x5eed_0002;
/** Leader appends stop growing the log past this, so the quadratic checks stay cheap. */
const MAX_LOG_LENGTH = 40;

// ---------------------------------------------------------------------------------------------
// Entries

let serial = 0;
/** A fresh entry; its payload is unique (up to 255 entries) so a stale entry never looks current. */
function makeEntry(index: number, entryTerm: number, size: number): Entry {
  serial = (serial + 1) % 256;
  const data = new Uint8Array(size).fill(serial);
  return { index: index as LogIndex, term: entryTerm as Term, type: size === 0 ? EntryType.Noop : EntryType.Normal, data };
}

/** How often the interesting situations came up, so a degenerate generator is noticed. */
const coverage = {
  conflictTruncations: 0,
  truncatedBelowStable: 0,
  truncatedInflight: 0,
  staleAppends: 0,
  applyBatches: 0,
  applyHeldBackByDurability: 0,
  refusedOperations: 0,
};

const li = (value: number): LogIndex => value as LogIndex;
const tm = (value: number): Term => value as Term;
const NO_MEMBERS = { voters: [], learners: [] };

// ---------------------------------------------------------------------------------------------
// Operations

const bumpArb = fc.constantFrom(0, 0, 0, 0, 0, 1, 1, 2);
const sizeArb = fc.nat(6);

type Op =
  | { kind: 'leaderAppend'; bumps: number[]; sizes: number[] }
  | {
      kind: 'followerAppend';
      cut: number;
      diverge: boolean;
      back: number;
      prev: number;
      count: number;
      suffix: { bump: number; size: number; reuse: boolean }[];
    }
  | { kind: 'commit'; step: number }
  | { kind: 'take' }
  | { kind: 'persisted' }
  | { kind: 'takeAndPersist' }
  | { kind: 'apply'; maxCount: number }
  | { kind: 'appliedTo'; target: number }
  | { kind: 'slice'; from: number; maxCount: number; maxBytes: number }
  | { kind: 'badTruncateCommitted'; pick: number; lead: number; bump: number }
  | { kind: 'badCommitBeyond'; extra: number }
  | { kind: 'badAppliedTo'; extra: number; below: boolean }
  | { kind: 'badLeaderAppend'; gap: boolean; extra: number }
  | { kind: 'badFollowerIndexes'; prev: number; skip: number }
  | { kind: 'badSliceBeforeFirst'; maxCount: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.array(fc.tuple(bumpArb, sizeArb), { maxLength: 4 }).map((pairs): Op => ({
      kind: 'leaderAppend',
      bumps: pairs.map(([bump]) => bump),
      sizes: pairs.map(([, size]) => size),
    })),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('followerAppend' as const),
      cut: fc.nat(1_000),
      diverge: fc.boolean(),
      back: fc.oneof(fc.nat(3), fc.constant(-1)),
      prev: fc.nat(1_000),
      count: fc.nat(8),
      suffix: fc.array(fc.record({ bump: bumpArb, size: sizeArb, reuse: fc.boolean() }), { maxLength: 6 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('commit' as const), step: fc.nat(4) }) },
  { weight: 4, arbitrary: fc.constant<Op>({ kind: 'take' }) },
  { weight: 4, arbitrary: fc.constant<Op>({ kind: 'persisted' }) },
  { weight: 2, arbitrary: fc.constant<Op>({ kind: 'takeAndPersist' }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('apply' as const), maxCount: fc.integer({ min: 0, max: 5 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('appliedTo' as const), target: fc.nat(1_000) }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('slice' as const), from: fc.nat(1_000), maxCount: fc.nat(8), maxBytes: fc.nat(20) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('badTruncateCommitted' as const), pick: fc.nat(1_000), lead: fc.nat(3), bump: fc.integer({ min: 1, max: 3 }) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('badCommitBeyond' as const), extra: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('badAppliedTo' as const), extra: fc.nat(3), below: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('badLeaderAppend' as const), gap: fc.boolean(), extra: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('badFollowerIndexes' as const), prev: fc.nat(1_000), skip: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('badSliceBeforeFirst' as const), maxCount: fc.nat(5) }) },
);

/** A valid initial durable state: entries with non-decreasing terms, commit ≤ last, applied ≤ commit. */
const initialArb = fc.record({
  entries: fc.array(fc.tuple(bumpArb, sizeArb), { maxLength: 10 }),
  commitPick: fc.nat(1_000),
  appliedPick: fc.nat(1_000),
});

// ---------------------------------------------------------------------------------------------
// The model

class Model {
  /** The log; `entries[i]` has index i + 1. */
  entries: Entry[];
  committed: number;
  applied: number;
  /** Highest index handed to the application. */
  applying: number;
  /** What Storage holds once every write it finished has landed. */
  storage: Entry[];
  /** Batches handed to Storage and not yet acknowledged by persisted(). */
  inflight: (readonly Entry[])[] = [];
  /** Every entry handed out for applying, in order. */
  appliedLog: Entry[] = [];
  /** The log's committed prefix as last observed; committed entries must never change. */
  committedSnapshot: Entry[] = [];
  /** Set by takeUnstableEntries, cleared by any other mutating step: the next persisted() makes all durable. */
  tookEverything = false;

  constructor(entries: Entry[], committed: number, applied: number) {
    this.entries = [...entries];
    this.committed = committed;
    this.applied = applied;
    this.applying = applied;
    this.storage = [...entries];
    this.appliedLog = entries.slice(0, applied);
  }

  last(): number {
    return this.entries.length;
  }

  termAt(index: number): number | undefined {
    if (index === 0) return 0;
    return this.entries[index - 1]?.term;
  }

  lastTerm(): number {
    return this.entries.at(-1)?.term ?? 0;
  }

  maxTerm(): number {
    return this.entries.reduce((max, entry) => Math.max(max, entry.term), 0);
  }

  /** Figure 2, AppendEntries steps 3 and 4, written from the paper. */
  appendFromLeader(prevLogIndex: number, newEntries: readonly Entry[]): number {
    let position = 0;
    while (position < newEntries.length) {
      const incoming = newEntries[position];
      if (incoming === undefined) throw new Error('hole');
      const existing = this.entries[incoming.index - 1];
      if (existing === undefined) break; // past the end: append from here
      if (existing.term !== incoming.term) {
        this.entries = this.entries.slice(0, incoming.index - 1); // delete the conflict and all that follow it
        break;
      }
      position++;
    }
    this.entries.push(...newEntries.slice(position));
    return prevLogIndex + newEntries.length;
  }

  /** What Storage will hold when every handed-out write has landed (overwrite from each batch's first index). */
  handed(): Entry[] {
    let view = [...this.storage];
    for (const batch of this.inflight) view = overwrite(view, batch);
    return view;
  }

  landInflight(): void {
    this.storage = this.handed();
    this.inflight = [];
  }
}

/** Storage's write rule: a batch starting at index i replaces everything from i on. */
function overwrite(stored: readonly Entry[], batch: readonly Entry[]): Entry[] {
  const first = batch[0];
  if (first === undefined) return [...stored];
  expect(first.index, 'a batch must not leave a hole in Storage').toBeLessThanOrEqual(stored.length + 1);
  return [...stored.slice(0, first.index - 1), ...batch];
}

/** Every observable of the log, for "unchanged after a refused operation" checks. */
function snapshot(log: RaftLog): unknown {
  const last = log.lastIndex();
  const entries: (Entry | undefined)[] = [];
  for (let index = 1; index <= last; index++) entries.push(log.entryAt(li(index)));
  return {
    last,
    lastTerm: log.lastTerm(),
    committed: log.committed(),
    applied: log.applied(),
    stable: log.stable(),
    entries,
    hasEntriesToApply: log.hasEntriesToApply(),
    hasUnstableEntries: log.hasUnstableEntries(),
  };
}

function expectInvariantError(action: () => unknown): void {
  let thrown: unknown;
  try {
    action();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'expected an InvariantError').toBeInstanceOf(InvariantError);
  coverage.refusedOperations++;
}

/** The naive slice: from `from`, at most `maxCount` entries and `maxBytes` bytes, the first always. */
function naiveSlice(entries: readonly Entry[], from: number, maxCount: number, maxBytes: number): Entry[] {
  const result: Entry[] = [];
  let bytes = 0;
  for (const entry of entries.slice(from - 1)) {
    if (result.length >= maxCount) break;
    bytes += entry.data.byteLength;
    if (result.length > 0 && bytes > maxBytes) break;
    result.push(entry);
  }
  return result;
}

/** `expect(actual).toBe(expected)`, but only built when it fails: these checks run in tight loops. */
function same<T>(actual: T, expected: T, label: string): void {
  if (actual !== expected) expect(actual, label).toBe(expected);
}

/** Entry lists compared by identity first (the log keeps the objects it is given), deeply on mismatch. */
function sameEntries(actual: readonly (Entry | undefined)[], expected: readonly (Entry | undefined)[], label: string): void {
  if (actual.length !== expected.length || actual.some((entry, position) => entry !== expected[position])) expect(actual, label).toEqual(expected);
}

/** Compares every observable of the log with the model. */
function checkAgainstModel(log: RaftLog, model: Model, previous: { committed: number; applied: number }): void {
  const last = model.last();
  expect(log.firstIndex()).toBe(1);
  expect(log.lastIndex()).toBe(last);
  expect(log.lastTerm()).toBe(model.lastTerm());

  const maxTerm = model.maxTerm();
  for (let index = 0; index <= last + 2; index++) {
    same(log.termAt(li(index)), model.termAt(index), `termAt(${index})`);
    if (index >= 1) sameEntries([log.entryAt(li(index))], [model.entries[index - 1]], `entryAt(${index})`);
    for (let candidateTerm = 0; candidateTerm <= maxTerm + 1; candidateTerm++) {
      same(log.matchTerm(li(index), tm(candidateTerm)), model.termAt(index) === candidateTerm, `matchTerm(${index}, ${candidateTerm})`);
      // Paper §5.4.1: later last term wins; equal last terms, the longer (or equal) log wins.
      const upToDate = candidateTerm > model.lastTerm() || (candidateTerm === model.lastTerm() && index >= last);
      same(log.isUpToDate(li(index), tm(candidateTerm)), upToDate, `isUpToDate(${index}, ${candidateTerm})`);
      // Naive scan for the fast back-off hint.
      let hint = 0;
      for (let probe = Math.min(index, last); probe >= 1; probe--) {
        if ((model.termAt(probe) ?? Number.POSITIVE_INFINITY) <= candidateTerm) {
          hint = probe;
          break;
        }
      }
      same(log.lastIndexWithTermAtMost(li(index), tm(candidateTerm)), hint, `lastIndexWithTermAtMost(${index}, ${candidateTerm})`);
    }
    if (index >= 1) {
      sameEntries(log.slice(li(index), Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY), model.entries.slice(index - 1), `slice(${index})`);
    }
  }

  // Positions.
  const committed = log.committed();
  const applied = log.applied();
  const stable = log.stable();
  expect(committed).toBe(model.committed);
  expect(applied).toBe(model.applied);
  expect(committed, 'committed never decreases').toBeGreaterThanOrEqual(previous.committed);
  expect(applied, 'applied never decreases').toBeGreaterThanOrEqual(previous.applied);
  expect(applied).toBeLessThanOrEqual(committed);
  expect(committed).toBeLessThanOrEqual(last);
  expect(stable).toBeGreaterThanOrEqual(0);
  expect(stable).toBeLessThanOrEqual(last);

  // Committed entries never change.
  for (let index = 1; index <= model.committedSnapshot.length; index++) {
    sameEntries([log.entryAt(li(index))], [model.committedSnapshot[index - 1]], `committed entry ${index} changed`);
  }
  model.committedSnapshot = model.entries.slice(0, committed);

  // Durability: everything the log calls stable is what Storage holds.
  sameEntries(model.storage.slice(0, stable), model.entries.slice(0, stable), `Storage must hold the log's entries up to stable ${stable}`);
  // Nothing is forgotten: when the log says nothing waits for Storage, Storage has (or will have) it all.
  if (!log.hasUnstableEntries()) {
    sameEntries(model.handed().slice(0, last), model.entries, 'no unstable entries, yet Storage was not handed the whole log');
  }

  // Applying: only committed, durable entries, handed out in log order.
  expect(log.hasEntriesToApply()).toBe(Math.min(committed, stable) > model.applying);
  expect(model.applying).toBeLessThanOrEqual(committed);
  sameEntries(model.appliedLog, model.entries.slice(0, model.applying), 'entries handed out for applying');
}

/** Runs one operation against the log and the model. */
function step(log: RaftLog, model: Model, op: Op): void {
  const last = model.last();
  if (op.kind !== 'persisted') model.tookEverything = false;
  switch (op.kind) {
    case 'leaderAppend': {
      if (last >= MAX_LOG_LENGTH) return;
      let entryTerm = model.lastTerm();
      const batch = op.bumps.map((bump, position) => {
        entryTerm += bump;
        return makeEntry(last + position + 1, entryTerm, op.sizes[position] ?? 0);
      });
      log.appendAsLeader(batch);
      model.entries.push(...batch);
      return;
    }
    case 'followerAppend': {
      // The leader's log shares ours up to `cut` (never below the commit index), then diverges or not.
      const cut = model.committed + (op.cut % (last - model.committed + 1));
      const leader = model.entries.slice(0, cut);
      let previousTerm = model.termAt(cut) ?? 0;
      for (const [position, spec] of op.suffix.entries()) {
        const index = cut + position + 1;
        const ours = model.entries[index - 1];
        let entry: Entry;
        if (position === 0 && op.diverge && ours !== undefined) {
          // A leader of another term wrote a different entry right after the shared prefix.
          entry = makeEntry(index, ours.term === previousTerm ? previousTerm + 1 + spec.bump : previousTerm, spec.size);
        } else if (spec.reuse && ours !== undefined && ours.term >= previousTerm) entry = ours;
        else {
          const entryTerm = previousTerm + spec.bump;
          // Same index and term means the same entry (Log Matching): reuse ours when the terms agree.
          entry = ours?.term === entryTerm ? ours : makeEntry(index, entryTerm, spec.size);
        }
        leader.push(entry);
        previousTerm = entry.term;
      }
      // prevLogIndex: held by both logs with the same term (the caller's consistency check passed).
      // Usually just before the divergence point (so the request reaches it), sometimes anywhere.
      let prev = op.back >= 0 ? Math.max(0, cut - op.back) : op.prev % (Math.min(last, leader.length) + 1);
      while (model.termAt(prev) !== (prev === 0 ? 0 : leader[prev - 1]?.term)) prev--;
      const batch = leader.slice(prev, prev + op.count);
      const conflict = batch.find((entry) => model.termAt(entry.index) !== undefined && model.termAt(entry.index) !== entry.term);
      if (conflict !== undefined) {
        coverage.conflictTruncations++;
        if (conflict.index <= log.stable()) coverage.truncatedBelowStable++;
        if (model.inflight.some((inflight) => inflight.some((entry) => entry.index >= conflict.index))) coverage.truncatedInflight++;
      } else if (batch.length > 0 && prev + batch.length < last) coverage.staleAppends++;
      const expected = model.appendFromLeader(prev, batch);
      expect(log.appendFromLeader(li(prev), batch)).toBe(expected);
      return;
    }
    case 'commit': {
      const target = Math.min(last, model.committed + op.step);
      expect(log.commitTo(li(target))).toBe(target > model.committed);
      model.committed = Math.max(model.committed, target);
      return;
    }
    case 'take':
    case 'takeAndPersist': {
      const before = model.handed();
      // Storage was handed the log up to here (the same entry objects, so a rewritten entry counts as new).
      let handedPrefix = 0;
      while (handedPrefix < last && before[handedPrefix] === model.entries[handedPrefix]) handedPrefix++;
      const batch = log.takeUnstableEntries();
      const first = batch[0];
      if (first !== undefined) {
        // "Entries not yet handed to Storage": exactly what Storage lacks, nothing it was already given.
        expect(first.index, 'the batch must start right after what Storage was handed').toBe(handedPrefix + 1);
        sameEntries(batch, model.entries.slice(first.index - 1), 'takeUnstableEntries');
        model.inflight.push(batch);
      } else {
        expect(handedPrefix, 'takeUnstableEntries returned nothing, yet Storage lacks entries').toBe(last);
      }
      expect(log.hasUnstableEntries()).toBe(false);
      sameEntries(model.handed().slice(0, last), model.entries, 'after takeUnstableEntries, Storage was handed the whole log');
      model.tookEverything = true;
      if (op.kind === 'take') return;
      model.landInflight();
      log.persisted();
      expect(log.stable(), 'everything handed out and persisted is stable').toBe(last);
      return;
    }
    case 'persisted': {
      const everything = model.tookEverything;
      model.landInflight();
      log.persisted();
      if (everything) expect(log.stable(), 'everything handed out and persisted is stable').toBe(last);
      model.tookEverything = false;
      return;
    }
    case 'apply': {
      const upTo = Math.min(model.committed, log.stable(), model.applying + op.maxCount);
      if (log.stable() < Math.min(model.committed, model.applying + op.maxCount)) coverage.applyHeldBackByDurability++;
      const expected = upTo > model.applying ? model.entries.slice(model.applying, upTo) : [];
      const batch = log.takeEntriesToApply(op.maxCount);
      sameEntries(batch, expected, 'takeEntriesToApply');
      for (const entry of batch) {
        sameEntries([model.storage[entry.index - 1]], [entry], `applying entry ${entry.index} that is not durable`);
      }
      if (batch.length > 0) coverage.applyBatches++;
      model.appliedLog.push(...batch);
      model.applying += batch.length;
      return;
    }
    case 'appliedTo': {
      const target = model.applied + (op.target % (model.applying - model.applied + 1));
      log.appliedTo(li(target));
      model.applied = target;
      return;
    }
    case 'slice': {
      const from = 1 + (op.from % (last + 2));
      sameEntries(log.slice(li(from), op.maxCount, op.maxBytes), naiveSlice(model.entries, from, op.maxCount, op.maxBytes), `slice(${from}, ${op.maxCount}, ${op.maxBytes})`);
      return;
    }
    case 'badTruncateCommitted': {
      if (model.committed === 0) return;
      // A conflicting entry at committed index `conflict`, possibly preceded by matching entries.
      const conflict = 1 + (op.pick % model.committed);
      const prev = Math.max(0, conflict - 1 - op.lead);
      const conflictTerm = Math.max(model.termAt(conflict) ?? 0, model.termAt(conflict - 1) ?? 0) + op.bump;
      const batch = [...model.entries.slice(prev, conflict - 1), makeEntry(conflict, conflictTerm, 1)];
      const before = snapshot(log);
      expectInvariantError(() => log.appendFromLeader(li(prev), batch));
      expect(snapshot(log)).toEqual(before);
      return;
    }
    case 'badCommitBeyond': {
      const before = snapshot(log);
      expectInvariantError(() => log.commitTo(li(last + 1 + op.extra)));
      expect(snapshot(log)).toEqual(before);
      return;
    }
    case 'badAppliedTo': {
      const before = snapshot(log);
      if (op.below) {
        if (model.applied === 0) return;
        expectInvariantError(() => {
          log.appliedTo(li(model.applied - 1 - (op.extra % model.applied)));
        });
      } else {
        expectInvariantError(() => {
          log.appliedTo(li(model.applying + 1 + op.extra));
        });
      }
      expect(snapshot(log)).toEqual(before);
      return;
    }
    case 'badLeaderAppend': {
      let bad: Entry;
      if (op.gap) bad = makeEntry(last + 2 + op.extra, model.lastTerm(), 1);
      else if (model.lastTerm() > 0) bad = makeEntry(last + 1, Math.max(0, model.lastTerm() - 1 - op.extra), 1);
      else return;
      const before = snapshot(log);
      expectInvariantError(() => {
        log.appendAsLeader([bad]);
      });
      expect(snapshot(log)).toEqual(before);
      return;
    }
    case 'badFollowerIndexes': {
      const prev = op.prev % (last + 1);
      const entryTerm = Math.max(model.lastTerm(), 1) + 1;
      const batch = [makeEntry(prev + 1 + op.skip, entryTerm, 1)];
      const before = snapshot(log);
      expectInvariantError(() => log.appendFromLeader(li(prev), batch));
      expect(snapshot(log)).toEqual(before);
      return;
    }
    case 'badSliceBeforeFirst': {
      expectInvariantError(() => log.slice(li(0), op.maxCount, Number.POSITIVE_INFINITY));
      return;
    }
  }
}

describe('RaftLog against a naive model', () => {
  it('agrees with the model after every step of random operation sequences', () => {
    fc.assert(
      fc.property(initialArb, fc.array(opArb, { minLength: 10, maxLength: 50 }), (initial, ops) => {
        let entryTerm = 0;
        const entries = initial.entries.map(([bump, size], position) => {
          entryTerm += bump;
          return makeEntry(position + 1, entryTerm, size);
        });
        const committed = initial.commitPick % (entries.length + 1);
        const applied = initial.appliedPick % (committed + 1);
        const log = new RaftLog(null, entries, li(committed), li(applied), NO_MEMBERS);
        const model = new Model(entries, committed, applied);
        expect(log.stable(), 'loaded entries are durable').toBe(entries.length);
        checkAgainstModel(log, model, { committed, applied });
        for (const op of ops) {
          const previous = { committed: log.committed() as number, applied: log.applied() as number };
          step(log, model, op);
          checkAgainstModel(log, model, previous);
        }
      }),
      { seed: SEED, numRuns: 600 },
    );
    for (const [situation, count] of Object.entries(coverage)) expect(count, `generator coverage of ${situation}`).toBeGreaterThanOrEqual(25);
  });
});

describe('RaftLog constructor', () => {
  it('refuses a loaded state that breaks an invariant', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(bumpArb, sizeArb), { minLength: 1, maxLength: 8 }),
        fc.constantFrom('commitBeyondLast', 'appliedBeyondCommit', 'gap', 'termDecreases'),
        fc.nat(3),
        (specs, breakage, extra) => {
          let entryTerm = 1;
          const entries = specs.map(([bump, size], position) => {
            entryTerm += bump;
            return makeEntry(position + 1, entryTerm, size);
          });
          const last = entries.length;
          switch (breakage) {
            case 'commitBeyondLast':
              expectInvariantError(() => new RaftLog(null, entries, li(last + 1 + extra), li(0), NO_MEMBERS));
              return;
            case 'appliedBeyondCommit': {
              const committed = extra % (last + 1);
              expectInvariantError(() => new RaftLog(null, entries, li(committed), li(committed + 1), NO_MEMBERS));
              return;
            }
            case 'gap': {
              const broken = [...entries, makeEntry(last + 2 + extra, entryTerm, 1)];
              expectInvariantError(() => new RaftLog(null, broken, li(0), li(0), NO_MEMBERS));
              return;
            }
            case 'termDecreases': {
              const broken = [...entries, makeEntry(last + 1, entryTerm - 1, 1)];
              expectInvariantError(() => new RaftLog(null, broken, li(0), li(0), NO_MEMBERS));
              return;
            }
          }
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
  });
});
