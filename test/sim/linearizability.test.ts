/**
 * The linearizability checker: hand-written histories with known verdicts, the history format's
 * validation, and properties against two naive models — a sequential register run (always
 * linearizable) and a brute-force search over every real-time-respecting order.
 *
 * Time convention: operation A precedes B only when A completes strictly before B is invoked;
 * events at the same nanosecond are concurrent.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SeededPrng, randomIntBelow } from '../../src/raft/prng.js';
import {
  checkLinearizable,
  describeOperation,
  HistoryError,
  pairOperations,
  parseJsonLines,
  toJsonLines,
  type EventValue,
  type HistoryEvent,
  type LinearizabilityResult,
  type LinearizabilityViolation,
  type Operation,
  type OperationFunction,
  type Outcome,
  type Value,
} from '../../sim/linearizability.js';

const SEED = 0x5eed_0100;
/** Random histories compared with the brute-force search, per generator. */
const BRUTE_FORCE_RUNS = 2_000;

// ---------------------------------------------------------------------------------------------
// Building histories

interface OpSpec {
  readonly process: number;
  readonly f: OperationFunction;
  readonly key: string;
  /** write: the value written; read: the value returned (ok only); cas: [expected, new]. */
  readonly value: EventValue;
  readonly invokeTimeNs: number;
  /** `null`: no completion event (still in flight when the history ends). */
  readonly completeTimeNs: number | null;
  readonly outcome: Outcome;
}

type Interval = readonly [invokeTimeNs: number, completeTimeNs: number | null];

const write = (process: number, value: Value, [invokeTimeNs, completeTimeNs]: Interval, outcome: Outcome = 'ok', key = 'x'): OpSpec => ({
  process,
  f: 'write',
  key,
  value,
  invokeTimeNs,
  completeTimeNs,
  outcome,
});
const read = (process: number, value: Value, [invokeTimeNs, completeTimeNs]: Interval, outcome: Outcome = 'ok', key = 'x'): OpSpec => ({
  process,
  f: 'read',
  key,
  value,
  invokeTimeNs,
  completeTimeNs,
  outcome,
});
const cas = (
  process: number,
  value: readonly [Value, Value],
  [invokeTimeNs, completeTimeNs]: Interval,
  outcome: Outcome = 'ok',
  key = 'x',
): OpSpec => ({ process, f: 'cas', key, value, invokeTimeNs, completeTimeNs, outcome });

/** The events of `specs`, in time order (an invoke before a completion at the same time). */
function history(...specs: readonly OpSpec[]): HistoryEvent[] {
  const timed: { event: HistoryEvent; timeNs: number; isCompletion: number; order: number }[] = [];
  specs.forEach((spec, order) => {
    const invokeValue = spec.f === 'read' ? null : spec.value;
    timed.push({ event: { process: spec.process, type: 'invoke', f: spec.f, key: spec.key, value: invokeValue, time: spec.invokeTimeNs }, timeNs: spec.invokeTimeNs, isCompletion: 0, order });
    if (spec.completeTimeNs === null) return;
    const completionValue = spec.f === 'read' && spec.outcome !== 'ok' ? null : spec.value;
    timed.push({
      event: { process: spec.process, type: spec.outcome, f: spec.f, key: spec.key, value: completionValue, time: spec.completeTimeNs },
      timeNs: spec.completeTimeNs,
      isCompletion: 1,
      order,
    });
  });
  timed.sort((a, b) => a.timeNs - b.timeNs || a.isCompletion - b.isCompletion || a.order - b.order);
  return timed.map((entry) => entry.event);
}

function check(...specs: readonly OpSpec[]): LinearizabilityResult {
  return checkLinearizable(history(...specs));
}

function expectViolation(result: LinearizabilityResult): LinearizabilityViolation {
  if (result.ok !== false) expect.fail(`expected a violation, got ${JSON.stringify(result)}`);
  return result;
}

/** Shorthand for comparing diagnostics: `process:f` of each operation. */
const names = (operations: readonly Operation[]): string[] => operations.map((operation) => `${operation.process}:${operation.f}`);

// ---------------------------------------------------------------------------------------------
// Naive models

const isRequired = (operation: Operation): boolean => operation.outcome === 'ok';
/** What the definition says can matter: fail never happened; an info read returned nothing. */
const mayMatter = (operation: Operation): boolean => operation.outcome !== 'fail' && !(operation.f === 'read' && operation.outcome !== 'ok');

/**
 * Brute force, straight from the definition: some choice of which info operations took effect,
 * and some order of the chosen operations that respects real time, replays on a map of registers.
 * An info cas that is chosen but whose precondition does not hold simply has no effect.
 */
function bruteForceLinearizable(events: readonly HistoryEvent[]): boolean {
  const operations = pairOperations(events).filter(mayMatter);
  const optional = operations.filter((operation) => !isRequired(operation));
  for (let mask = 0; mask < 2 ** optional.length; mask++) {
    const chosen = operations.filter((operation) => isRequired(operation) || (mask & (1 << optional.indexOf(operation))) !== 0);
    if (someOrderReplays(chosen)) return true;
  }
  return false;
}

function someOrderReplays(operations: readonly Operation[]): boolean {
  const used = operations.map(() => false);
  const registers = new Map<string, Value>();
  const extend = (placed: number): boolean => {
    if (placed === operations.length) return true;
    for (const [i, operation] of operations.entries()) {
      if (used[i] === true) continue;
      const mustWait = operations.some((other, j) => j !== i && used[j] !== true && other.completeTimeNs < operation.invokeTimeNs);
      if (mustWait) continue;
      const before = registers.get(operation.key) ?? null;
      let after = before;
      if (operation.f === 'read') {
        if (operation.value !== before) continue;
      } else if (operation.f === 'write') {
        after = operation.value;
      } else if (operation.value[0] === before) {
        after = operation.value[1];
      } else if (operation.outcome === 'ok') {
        continue;
      }
      used[i] = true;
      registers.set(operation.key, after);
      if (extend(placed + 1)) return true;
      registers.set(operation.key, before);
      used[i] = false;
    }
    return false;
  };
  return extend(0);
}

/** Replays a violation's prefix: it must be a legal register run that respects real time. */
function expectPrefixReplays(violation: LinearizabilityViolation): void {
  let register: Value = null;
  violation.linearizedPrefix.forEach((operation, position) => {
    expect(operation.key).toBe(violation.key);
    for (const later of violation.linearizedPrefix.slice(position + 1)) expect(later.completeTimeNs).toBeGreaterThanOrEqual(operation.invokeTimeNs);
    if (operation.f === 'read') expect(operation.value).toBe(register);
    else if (operation.f === 'write') register = operation.value;
    else {
      expect(operation.value[0]).toBe(register);
      register = operation.value[1];
    }
  });
  expect(violation.valueAfterPrefix).toBe(register);
  expect(violation.linearizedPrefix).not.toContain(violation.blockingOperation);
  expect(violation.candidateOperations).toContain(violation.blockingOperation);
}

// ---------------------------------------------------------------------------------------------
// Random histories

const valueArb = fc.constantFrom<Value>(null, 1, 2, '1');
/** Fewer values, so operations collide (and info operations are interchangeable) more often. */
const smallValueArb = fc.constantFrom<Value>(null, 1, 2);

interface SmallOp {
  readonly f: OperationFunction;
  readonly key: string;
  readonly first: Value;
  readonly second: Value;
  readonly outcome: Outcome | 'unfinished';
  readonly invokeTimeNs: number;
  readonly durationNs: number;
}

function smallHistory(ops: readonly SmallOp[]): HistoryEvent[] {
  return history(
    ...ops.map((op, process): OpSpec => ({
      process,
      f: op.f,
      key: op.key,
      value: op.f === 'cas' ? [op.first, op.second] : op.first,
      invokeTimeNs: op.invokeTimeNs,
      completeTimeNs: op.outcome === 'unfinished' ? null : op.invokeTimeNs + op.durationNs,
      outcome: op.outcome === 'unfinished' ? 'info' : op.outcome,
    })),
  );
}

/** ≤ 6 operations on ≤ 2 keys, one process each, with random (often wrong) read results. */
const smallHistoryArb = fc
  .array(
    fc.record({
      f: fc.constantFrom<OperationFunction>('read', 'write', 'cas'),
      key: fc.constantFrom('x', 'x', 'x', 'x', 'y'),
      first: smallValueArb,
      second: smallValueArb,
      outcome: fc.constantFrom<Outcome | 'unfinished'>('ok', 'ok', 'ok', 'fail', 'info', 'info', 'unfinished'),
      invokeTimeNs: fc.nat(10),
      durationNs: fc.nat(6),
    }),
    { maxLength: 6 },
  )
  .map(smallHistory);

/**
 * ≤ 6 operations on one key, mostly indeterminate writes and cas between ok reads: the shapes where
 * interchangeable info operations and unobservable ones (which the checker prunes) arise.
 */
const infoHeavyHistoryArb = fc
  .array(
    fc.oneof(
      fc.record({
        f: fc.constantFrom<OperationFunction>('write', 'cas'),
        key: fc.constant('x'),
        first: smallValueArb,
        second: smallValueArb,
        outcome: fc.constantFrom<Outcome | 'unfinished'>('info', 'info', 'unfinished', 'ok'),
        invokeTimeNs: fc.nat(6),
        durationNs: fc.nat(4),
      }),
      fc.record({
        f: fc.constant<OperationFunction>('read'),
        key: fc.constant('x'),
        first: smallValueArb,
        second: fc.constant(null),
        outcome: fc.constant<Outcome | 'unfinished'>('ok'),
        invokeTimeNs: fc.nat(12),
        durationNs: fc.nat(3),
      }),
    ),
    { maxLength: 6 },
  )
  .map(smallHistory);

/** What happens to one operation of a sequential run. */
type Fate = 'ok' | 'info-applied' | 'info-lost' | 'fail' | 'unfinished';

interface RunStep {
  readonly key: string;
  readonly f: OperationFunction;
  readonly first: Value;
  readonly second: Value;
  /** How long before its linearization point the operation was invoked. */
  readonly leadNs: number;
  /** How long after its linearization point it completed. */
  readonly lagNs: number;
  readonly fate: Fate;
}

const LINEARIZATION_SPACING_NS = 10;
const MAX_LEAD_NS = 40;

/**
 * Runs `steps` one after another on real registers (step i takes effect at time
 * 100 + 10·i ns), then records each with an invoke and completion around that point. Operations the
 * run did not apply are recorded as `fail` or `info`; a cas whose precondition failed is `fail`
 * (or `info`). Processes are reused once free, including after an `info`.
 */
function sequentialRunHistory(steps: readonly RunStep[]): HistoryEvent[] {
  const registers = new Map<string, Value>();
  const processFreeAtNs: number[] = [];
  const specs: OpSpec[] = [];
  const order = steps.map((step, i) => ({ step, i, invokeTimeNs: MAX_LEAD_NS + LINEARIZATION_SPACING_NS * i - step.leadNs }));
  const effects = steps.map((step) => {
    const current = registers.get(step.key) ?? null;
    let outcome: Outcome | 'unfinished';
    let value: EventValue;
    if (step.f === 'read') {
      outcome = step.fate === 'ok' ? 'ok' : step.fate === 'fail' ? 'fail' : step.fate === 'unfinished' ? 'unfinished' : 'info';
      value = outcome === 'ok' ? current : null;
    } else {
      const applicable = step.f === 'write' || step.first === current;
      const applied = applicable && (step.fate === 'ok' || step.fate === 'info-applied' || step.fate === 'unfinished');
      if (applied) registers.set(step.key, step.f === 'write' ? step.first : step.second);
      if (step.fate === 'unfinished') outcome = 'unfinished';
      else if (step.fate === 'ok') outcome = applicable ? 'ok' : 'fail';
      else if (step.fate === 'fail') outcome = 'fail';
      else outcome = 'info';
      value = step.f === 'write' ? step.first : [step.first, step.second];
    }
    return { outcome, value };
  });
  order.sort((a, b) => a.invokeTimeNs - b.invokeTimeNs || a.i - b.i);
  for (const { step, i, invokeTimeNs } of order) {
    const effect = effects[i];
    if (effect === undefined) throw new Error('effect of every step');
    let process = processFreeAtNs.findIndex((freeAtNs) => freeAtNs < invokeTimeNs);
    if (process < 0) process = processFreeAtNs.push(0) - 1;
    const completeTimeNs = MAX_LEAD_NS + LINEARIZATION_SPACING_NS * i + step.lagNs;
    processFreeAtNs[process] = effect.outcome === 'unfinished' ? Infinity : completeTimeNs;
    specs.push({
      process,
      f: step.f,
      key: step.key,
      value: effect.value,
      invokeTimeNs,
      completeTimeNs: effect.outcome === 'unfinished' ? null : completeTimeNs,
      outcome: effect.outcome === 'unfinished' ? 'info' : effect.outcome,
    });
  }
  return history(...specs);
}

const runStepArb = fc.record({
  key: fc.constantFrom('x', 'x', 'y', 'z'),
  f: fc.constantFrom<OperationFunction>('read', 'read', 'write', 'cas'),
  first: valueArb,
  second: valueArb,
  leadNs: fc.nat(MAX_LEAD_NS),
  lagNs: fc.nat(MAX_LEAD_NS),
  fate: fc.constantFrom<Fate>('ok', 'ok', 'ok', 'ok', 'info-applied', 'info-lost', 'fail', 'unfinished'),
});

/**
 * The same shape of run from the project PRNG, for histories too long for fast-check to shrink.
 * `uniqueWrites`: every write and cas writes a fresh value and a cas expects a random earlier one,
 * as the simulator's workload does; otherwise values come from a domain of five.
 */
function seededRunSteps(seed: number, count: number, keys: number, uniqueWrites: boolean): RunStep[] {
  const prng = new SeededPrng(seed);
  const pick = <T>(choices: readonly T[]): T => {
    const choice = choices[randomIntBelow(prng, choices.length)];
    if (choice === undefined) throw new Error('choice in range');
    return choice;
  };
  const smallDomain: Value[] = [null, 1, 2, 3, 4];
  let written = 0;
  return Array.from({ length: count }, (): RunStep => {
    const f = pick<OperationFunction>(['read', 'read', 'write', 'cas']);
    let first = pick(smallDomain);
    let second = pick(smallDomain);
    if (uniqueWrites && f === 'write') first = ++written;
    if (uniqueWrites && f === 'cas') {
      first = randomIntBelow(prng, written + 1) || null;
      second = ++written;
    }
    return {
      key: `k${randomIntBelow(prng, keys)}`,
      f,
      first,
      second,
      leadNs: randomIntBelow(prng, MAX_LEAD_NS + 1),
      lagNs: randomIntBelow(prng, MAX_LEAD_NS + 1),
      fate: pick<Fate>(['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'info-applied', 'info-lost', 'fail']),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Hand-written histories

describe('a register with one client at a time', () => {
  it('accepts an empty history', () => {
    expect(checkLinearizable([])).toEqual({ ok: true });
  });

  it('reads null from a key never written', () => {
    expect(check(read(0, null, [0, 10]))).toEqual({ ok: true });
  });

  it('reads back what a completed write wrote', () => {
    expect(check(write(0, 1, [0, 10]), read(1, 1, [20, 30]))).toEqual({ ok: true });
  });

  it('rejects a stale read after a completed write', () => {
    const violation = expectViolation(check(write(0, 1, [0, 10]), read(1, null, [20, 30])));
    expect(violation.key).toBe('x');
    expect(names(violation.linearizedPrefix)).toEqual(['0:write']);
    expect(violation.valueAfterPrefix).toBe(1);
    expect(names([violation.blockingOperation])).toEqual(['1:read']);
    expect(violation.reason).toContain('read -> null by process 1 during [20 ns, 30 ns] (ok) cannot be linearized');
    expect(violation.reason).toContain('It returned null, but the register holds 1 there');
    expectPrefixReplays(violation);
  });

  it('rejects a lost write: a later read sees the value it overwrote', () => {
    const violation = expectViolation(check(write(0, 1, [0, 10]), write(1, 2, [20, 30]), read(2, 1, [40, 50])));
    expect(names(violation.linearizedPrefix)).toEqual(['0:write', '1:write']);
    expect(violation.valueAfterPrefix).toBe(2);
    expect(names([violation.blockingOperation])).toEqual(['2:read']);
  });

  it('rejects a read of a value never written', () => {
    const violation = expectViolation(check(write(0, 1, [0, 10]), read(1, 7, [5, 30])));
    expect(violation.blockingOperation.value).toBe(7);
    expect(names(violation.candidateOperations).sort()).toEqual(['1:read']);
  });

  it('tells numbers from strings: 1 is not "1"', () => {
    expectViolation(check(write(0, 1, [0, 10]), read(1, '1', [20, 30])));
    expect(check(write(0, '1', [0, 10]), read(1, '1', [20, 30]))).toEqual({ ok: true });
  });

  it('lets a write of null make the key absent again', () => {
    expect(check(write(0, 1, [0, 10]), write(0, null, [20, 30]), read(1, null, [40, 50]))).toEqual({ ok: true });
  });
});

describe('concurrent operations', () => {
  it('lets a read concurrent with a write see the old or the new value', () => {
    expect(check(write(0, 1, [0, 100]), read(1, null, [10, 20]))).toEqual({ ok: true });
    expect(check(write(0, 1, [0, 100]), read(1, 1, [10, 20]))).toEqual({ ok: true });
  });

  it('rejects a read that goes back to the old value once a later read saw the new one', () => {
    expectViolation(check(write(0, 1, [0, 100]), read(1, 1, [10, 20]), read(2, null, [30, 40])));
  });

  it('accepts two concurrent writes that all readers see in the same order', () => {
    expect(
      check(write(0, 1, [0, 100]), write(1, 2, [0, 100]), read(2, 1, [10, 20]), read(2, 2, [30, 40]), read(3, 1, [10, 20]), read(3, 2, [30, 40])),
    ).toEqual({ ok: true });
  });

  it('rejects two concurrent writes that two readers see in opposite orders', () => {
    const violation = expectViolation(
      check(write(0, 1, [0, 100]), write(1, 2, [0, 100]), read(2, 1, [10, 20]), read(2, 2, [30, 40]), read(3, 2, [10, 20]), read(3, 1, [30, 40])),
    );
    expectPrefixReplays(violation);
  });

  it('treats events at the same nanosecond as concurrent', () => {
    // The write completes at 10 ns and the read is invoked at 10 ns: either order is possible.
    expect(check(write(0, 1, [0, 10]), read(1, null, [10, 20]))).toEqual({ ok: true });
    expectViolation(check(write(0, 1, [0, 10]), read(1, null, [11, 20])));
  });
});

describe('compare-and-set', () => {
  it('accepts a cas that saw the expected value, and reads of its new value', () => {
    expect(check(write(0, 1, [0, 10]), cas(1, [1, 2], [20, 30]), read(2, 2, [40, 50]))).toEqual({ ok: true });
  });

  it('rejects an ok cas whose expected value was not there', () => {
    const violation = expectViolation(check(write(0, 1, [0, 10]), cas(1, [2, 3], [20, 30])));
    expect(names([violation.blockingOperation])).toEqual(['1:cas']);
    expect(violation.reason).toContain('It succeeded, so it saw 2, but the register holds 1 there');
  });

  it('rejects two successful cas from the same expected value (a lock acquired twice)', () => {
    expectViolation(check(cas(0, [null, 'a'], [0, 10]), cas(1, [null, 'b'], [5, 15])));
    expectViolation(check(cas(0, [null, 'a'], [0, 10]), cas(1, [null, 'b'], [20, 30])));
  });

  it('lets a write concurrent with a cas go before or after it, and checks the reader agrees', () => {
    const setup = [write(0, 1, [0, 10]), cas(1, [1, 2], [20, 40]), write(2, 3, [25, 35])] as const;
    expect(check(...setup, read(3, 3, [50, 60]))).toEqual({ ok: true });
    // The cas can only follow the write of 1 directly, so 3 is written after it.
    expectViolation(check(...setup, read(3, 2, [50, 60])));
  });

  it('drops a failed cas: it did not happen, even if its expected value was there', () => {
    expect(check(write(0, 1, [0, 10]), cas(1, [5, 6], [20, 30], 'fail'), read(2, 1, [40, 50]))).toEqual({ ok: true });
    expect(check(write(0, 1, [0, 10]), cas(1, [1, 2], [20, 30], 'fail'), read(2, 1, [40, 50]))).toEqual({ ok: true });
    expectViolation(check(write(0, 1, [0, 10]), cas(1, [1, 2], [20, 30], 'fail'), read(2, 2, [40, 50])));
  });

  it('does not confuse info cas that expect the same value but write different ones', () => {
    // Only the later one can explain the read of 2; the earlier one must stay out (1 is written and
    // read later, so the earlier one cannot simply be discarded as unobservable).
    const maybeOne = cas(0, [null, 1], [0, null], 'info');
    const maybeTwo = cas(1, [null, 2], [5, null], 'info');
    expect(check(maybeOne, maybeTwo, read(2, 2, [20, 30]), write(2, 1, [40, 50]), read(2, 1, [60, 70]))).toEqual({ ok: true });
  });

  it('lets an info cas take effect (when its expected value is there) or not', () => {
    expect(check(write(0, 1, [0, 10]), cas(1, [1, 2], [20, 30], 'info'), read(2, 2, [40, 50]))).toEqual({ ok: true });
    expect(check(write(0, 1, [0, 10]), cas(1, [1, 2], [20, 30], 'info'), read(2, 1, [40, 50]))).toEqual({ ok: true });
    expectViolation(check(write(0, 1, [0, 10]), cas(1, [5, 6], [20, 30], 'info'), read(2, 6, [40, 50])));
  });
});

describe('indeterminate (info) and failed operations', () => {
  const before = write(0, 1, [0, 10]);
  const maybe = write(1, 2, [20, 30], 'info');

  it('lets an info write take effect', () => {
    expect(check(before, maybe, read(2, 2, [40, 50]))).toEqual({ ok: true });
  });

  it('lets an info write never take effect', () => {
    expect(check(before, maybe, read(2, 1, [40, 50]))).toEqual({ ok: true });
  });

  it('lets an info write take effect long after its info completion', () => {
    expect(check(before, maybe, read(2, 1, [40, 50]), read(2, 1, [60, 70]), read(2, 2, [1_000, 1_010]))).toEqual({ ok: true });
  });

  it('lets an info write take effect only once', () => {
    const violation = expectViolation(check(before, maybe, read(2, 2, [40, 50]), read(2, 1, [60, 70])));
    expect(names([violation.blockingOperation])).toEqual(['2:read']);
    expect(violation.blockingOperation.value).toBe(1);
  });

  it('does not let an info write take effect before its invoke', () => {
    expectViolation(check(before, read(2, 2, [12, 18]), maybe));
  });

  it('treats an invoke still in flight at the end of the history as info', () => {
    expect(check(before, write(1, 2, [20, null]), read(2, 2, [40, 50]))).toEqual({ ok: true });
    expect(check(before, write(1, 2, [20, null]), read(2, 1, [40, 50]))).toEqual({ ok: true });
  });

  it('drops a failed write', () => {
    expect(check(before, write(1, 2, [20, 30], 'fail'), read(2, 1, [40, 50]))).toEqual({ ok: true });
    expectViolation(check(before, write(1, 2, [20, 30], 'fail'), read(2, 2, [40, 50])));
  });

  it('ignores reads that did not return', () => {
    expect(check(before, read(1, null, [20, 30], 'info'), read(2, null, [40, 50], 'fail'))).toEqual({ ok: true });
  });
});

describe('keys and the step bound', () => {
  it('checks each key as its own register and reports the violating one', () => {
    const violation = expectViolation(check(write(0, 1, [0, 10]), read(1, 1, [20, 30]), write(2, 1, [0, 10], 'ok', 'y'), read(3, 2, [20, 30], 'ok', 'y')));
    expect(violation.key).toBe('y');
  });

  it('returns unknown, never a verdict, when the bound is reached', () => {
    const linearizable = check(write(0, 1, [0, 10]), read(1, 1, [20, 30]));
    expect(linearizable).toEqual({ ok: true });
    expect(checkLinearizable(history(write(0, 1, [0, 10]), read(1, 1, [20, 30])), { maxSteps: 1 })).toEqual({
      ok: 'unknown',
      key: 'x',
      reason: 'step bound reached',
      maxSteps: 1,
    });
    expect(checkLinearizable(history(write(0, 1, [0, 10]), read(1, null, [20, 30])), { maxSteps: 1 })).toMatchObject({ ok: 'unknown', key: 'x' });
  });

  it('prefers a definite violation on one key over an unknown on another', () => {
    // Key x needs 3 steps; key y fails in 2.
    const events = history(write(0, 1, [0, 10]), write(0, 2, [20, 30]), write(0, 3, [40, 50]), read(1, 7, [0, 10], 'ok', 'y'));
    expect(checkLinearizable(events, { maxSteps: 2 })).toMatchObject({ ok: false, key: 'y' });
    expect(checkLinearizable(events, { maxSteps: 3 })).toMatchObject({ ok: false, key: 'y' });
    expect(checkLinearizable(history(write(0, 1, [0, 10]), write(0, 2, [20, 30]), write(0, 3, [40, 50])), { maxSteps: 3 })).toEqual({ ok: true });
  });

  it('refuses a step bound that is not a positive integer', () => {
    for (const maxSteps of [0, -1, 1.5, Infinity, NaN]) expect(() => checkLinearizable([], { maxSteps })).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------------------------
// Pairing

function expectHistoryError(action: () => unknown, fragment: string): HistoryError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(HistoryError);
    if (!(error instanceof HistoryError)) throw error;
    expect(error.code).toBe('MalformedHistory');
    expect(error.message).toContain(fragment);
    return error;
  }
  return expect.fail(`expected a HistoryError mentioning '${fragment}'`);
}

describe('pairOperations', () => {
  it('pairs each invoke with its completion, in invoke order', () => {
    const operations = pairOperations(history(write(0, 1, [0, 10]), read(1, 1, [5, 30]), cas(2, [1, 2], [6, 40], 'info'), write(3, 4, [7, 50], 'fail')));
    expect(operations).toEqual([
      { index: 0, process: 0, key: 'x', outcome: 'ok', invokeTimeNs: 0, completeTimeNs: 10, invokeEventIndex: 0, completionEventIndex: 4, f: 'write', value: 1 },
      { index: 1, process: 1, key: 'x', outcome: 'ok', invokeTimeNs: 5, completeTimeNs: 30, invokeEventIndex: 1, completionEventIndex: 5, f: 'read', value: 1 },
      { index: 2, process: 2, key: 'x', outcome: 'info', invokeTimeNs: 6, completeTimeNs: Infinity, invokeEventIndex: 2, completionEventIndex: 6, f: 'cas', value: [1, 2] },
      { index: 3, process: 3, key: 'x', outcome: 'fail', invokeTimeNs: 7, completeTimeNs: 50, invokeEventIndex: 3, completionEventIndex: 7, f: 'write', value: 4 },
    ]);
  });

  it('returns an operation still in flight at the end as info, with no completion', () => {
    const [operation] = pairOperations(history(write(0, 1, [3, null])));
    expect(operation).toMatchObject({ outcome: 'info', invokeTimeNs: 3, completeTimeNs: Infinity, completionEventIndex: null, f: 'write', value: 1 });
  });

  it('lets a process invoke again after an info completion', () => {
    const operations = pairOperations(history(write(0, 1, [0, 10], 'info'), read(0, 1, [20, 30])));
    expect(operations.map((operation) => operation.outcome)).toEqual(['info', 'ok']);
  });

  it('describes operations for people', () => {
    const [first, second] = pairOperations(history(read(2, 1, [4, 50]), cas(0, [null, 'a'], [5, null])));
    if (first === undefined || second === undefined) return expect.fail('two operations');
    expect(describeOperation(first)).toBe('read -> 1 by process 2 during [4 ns, 50 ns] (ok)');
    expect(describeOperation(second)).toBe('cas null -> "a" by process 0 during [5 ns, ∞) (info)');
  });

  const invoke = (process: number, f: OperationFunction, value: EventValue, time: number, key = 'x'): HistoryEvent => ({ process, type: 'invoke', f, key, value, time });
  const done = (process: number, type: Outcome, f: OperationFunction, value: EventValue, time: number, key = 'x'): HistoryEvent => ({ process, type, f, key, value, time });

  it('refuses a completion without an invoke', () => {
    const error = expectHistoryError(() => pairOperations([invoke(0, 'write', 1, 0), done(0, 'ok', 'write', 1, 5), done(0, 'ok', 'write', 1, 6)]), 'no operation in flight');
    expect(error.eventIndex).toBe(2);
    expect(error.message).toContain('event 2');
  });

  it('refuses two invokes in flight on one process', () => {
    const error = expectHistoryError(() => pairOperations([invoke(4, 'write', 1, 0), invoke(4, 'read', null, 1)]), 'still in flight');
    expect(error.eventIndex).toBe(1);
  });

  it('refuses a completion that does not match its invoke', () => {
    expectHistoryError(() => pairOperations([invoke(0, 'write', 1, 0), done(0, 'ok', 'read', 1, 5)]), 'invoked a write');
    expectHistoryError(() => pairOperations([invoke(0, 'write', 1, 0), done(0, 'ok', 'write', 1, 5, 'y')]), 'invoked on key "x"');
    expectHistoryError(() => pairOperations([invoke(0, 'write', 1, 5), done(0, 'ok', 'write', 1, 4)]), 'precedes its invoke');
    expectHistoryError(() => pairOperations([invoke(0, 'write', 1, 0), done(0, 'ok', 'write', 2, 5)]), 'carries 2, but its invoke');
    expectHistoryError(() => pairOperations([invoke(0, 'cas', [1, 2], 0), done(0, 'fail', 'cas', [1, 3], 5)]), 'carries [1,3]');
  });

  it('refuses events whose fields are wrong', () => {
    expectHistoryError(() => pairOperations([invoke(0, 'read', 1, 0)]), 'a read invoke carries no value');
    expectHistoryError(() => pairOperations([invoke(0, 'read', null, 0), done(0, 'info', 'read', 1, 5)]), 'a read info carries no value');
    expectHistoryError(() => pairOperations([invoke(0, 'cas', 1, 0)]), 'a cas carries [expected, new]');
    expectHistoryError(() => pairOperations([invoke(0, 'write', NaN, 0)]), 'a write carries the value written');
    expectHistoryError(() => pairOperations([invoke(0, 'write', 1, 1.5)]), "field 'time'");
    expectHistoryError(() => pairOperations([invoke(-1, 'write', 1, 0)]), "field 'process'");
  });
});

// ---------------------------------------------------------------------------------------------
// JSON lines

const eventArb: fc.Arbitrary<HistoryEvent> = fc
  .record({
    process: fc.nat(),
    type: fc.constantFrom<HistoryEvent['type']>('invoke', 'ok', 'fail', 'info'),
    f: fc.constantFrom<OperationFunction>('read', 'write', 'cas'),
    key: fc.string({ unit: 'binary' }),
    first: fc.oneof(fc.constant(null), fc.string({ unit: 'binary' }), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer()),
    second: fc.oneof(fc.constant(null), fc.string(), fc.integer()),
    time: fc.maxSafeNat(),
  })
  .map(({ first, second, ...event }) => {
    const normalized = Object.is(first, -0) ? 0 : first; // JSON has no -0
    const value: EventValue = event.f === 'cas' ? [normalized, second] : event.f === 'read' && event.type !== 'ok' ? null : normalized;
    return { process: event.process, type: event.type, f: event.f, key: event.key, value, time: event.time };
  });

describe('JSON lines', () => {
  it('round-trips any well-formed events', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 20 }), (events) => {
        const text = toJsonLines(events);
        expect(text.split('\n')).toHaveLength(events.length + 1);
        expect(parseJsonLines(text)).toEqual(events);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('writes one object per line in the format field order', () => {
    expect(toJsonLines(history(cas(3, [null, 'a'], [5, 9])))).toBe(
      '{"process":3,"type":"invoke","f":"cas","key":"x","value":[null,"a"],"time":5}\n{"process":3,"type":"ok","f":"cas","key":"x","value":[null,"a"],"time":9}\n',
    );
  });

  it('skips blank lines, accepts CRLF and ignores fields outside the format', () => {
    const text = '\r\n{"index":0,"process":1,"type":"invoke","f":"read","key":"k","value":null,"time":7}\r\n\n  \n';
    expect(parseJsonLines(text)).toEqual([{ process: 1, type: 'invoke', f: 'read', key: 'k', value: null, time: 7 }]);
  });

  it('names the line of the first bad event', () => {
    const good = '{"process":0,"type":"invoke","f":"write","key":"x","value":1,"time":0}';
    const bad: readonly (readonly [string, string])[] = [
      ['{"process":0,', 'not valid JSON'],
      ['[1,2]', 'an event must be an object'],
      ['null', 'an event must be an object'],
      ['{"process":0,"type":"invoke","f":"write","key":"x","value":1}', "missing field 'time'"],
      ['{"process":0,"type":"invoke","f":"write","key":"x","time":0}', "missing field 'value'"],
      ['{"process":"0","type":"invoke","f":"write","key":"x","value":1,"time":0}', "field 'process'"],
      ['{"process":0,"type":"done","f":"write","key":"x","value":1,"time":0}', "field 'type'"],
      ['{"process":0,"type":"invoke","f":"delete","key":"x","value":1,"time":0}', "field 'f'"],
      ['{"process":0,"type":"invoke","f":"write","key":7,"value":1,"time":0}', "field 'key'"],
      ['{"process":0,"type":"invoke","f":"write","key":"x","value":1,"time":-3}', "field 'time'"],
      ['{"process":0,"type":"invoke","f":"write","key":"x","value":1,"time":2.5}', "field 'time'"],
      ['{"process":0,"type":"invoke","f":"write","key":"x","value":{"a":1},"time":0}', 'a write carries the value written'],
      ['{"process":0,"type":"invoke","f":"cas","key":"x","value":[1],"time":0}', 'a cas carries [expected, new]'],
      ['{"process":0,"type":"invoke","f":"read","key":"x","value":3,"time":0}', 'a read invoke carries no value'],
    ];
    for (const [line, fragment] of bad) {
      const error = expectHistoryError(() => parseJsonLines(`${good}\n\n${line}\n${good}\n`), fragment);
      expect(error.line).toBe(3);
      expect(error.message).toContain('line 3: ');
    }
  });

  it('refuses to write an event that would not read back', () => {
    const error = expectHistoryError(() => toJsonLines([{ process: 0, type: 'invoke', f: 'write', key: 'x', value: Infinity, time: 0 }]), 'event 0');
    expect(error.eventIndex).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

describe('properties', () => {
  it('accepts every history recorded around a sequential run of registers', () => {
    fc.assert(
      fc.property(fc.array(runStepArb, { maxLength: 40 }), (steps) => {
        expect(checkLinearizable(sequentialRunHistory(steps))).toEqual({ ok: true });
      }),
      { seed: SEED, numRuns: 600 },
    );
  });

  const agreesWithBruteForce = (arbitrary: fc.Arbitrary<HistoryEvent[]>, numRuns: number): void => {
    const verdicts = { linearizable: 0, violated: 0 };
    fc.assert(
      fc.property(arbitrary, (events) => {
        const result = checkLinearizable(events);
        expect(result.ok).not.toBe('unknown');
        expect(result.ok).toBe(bruteForceLinearizable(events));
        if (result.ok === false) expectPrefixReplays(result);
        verdicts[result.ok ? 'linearizable' : 'violated']++;
      }),
      { seed: SEED, numRuns },
    );
    // The generator must produce plenty of both verdicts, or the comparison proves little.
    expect(verdicts.linearizable).toBeGreaterThan(numRuns / 6);
    expect(verdicts.violated).toBeGreaterThan(numRuns / 6);
  };

  it('agrees with a brute-force search over all real-time orders on small histories', () => {
    agreesWithBruteForce(smallHistoryArb, BRUTE_FORCE_RUNS);
  });

  it('agrees with the brute-force search on small histories full of indeterminate operations', () => {
    agreesWithBruteForce(infoHeavyHistoryArb, BRUTE_FORCE_RUNS);
  });

  it('returns unknown or the right verdict under any step bound', () => {
    fc.assert(
      fc.property(smallHistoryArb, fc.integer({ min: 1, max: 40 }), (events, maxSteps) => {
        const result = checkLinearizable(events, { maxSteps });
        if (result.ok !== 'unknown') expect(result.ok).toBe(bruteForceLinearizable(events));
      }),
      { seed: SEED, numRuns: 1_000 },
    );
  });
});

describe('long histories', () => {
  const corruptLastRead = (events: readonly HistoryEvent[], value: Value): { corrupted: HistoryEvent[]; eventIndex: number } => {
    let eventIndex = events.length - 1;
    while (eventIndex >= 0 && !(events[eventIndex]?.f === 'read' && events[eventIndex]?.type === 'ok')) eventIndex--;
    return { corrupted: events.map((event, index) => (index === eventIndex ? { ...event, value } : event)), eventIndex };
  };

  it('finds a 3,000-operation run over a small value domain linearizable', () => {
    expect(checkLinearizable(sequentialRunHistory(seededRunSteps(SEED, 3_000, 4, false)))).toEqual({ ok: true });
  });

  it('finds a corrupted read in a 2,000-operation run with unique values, as the simulator writes them', () => {
    const events = sequentialRunHistory(seededRunSteps(SEED, 2_000, 4, true));
    expect(checkLinearizable(events)).toEqual({ ok: true });
    const { corrupted, eventIndex } = corruptLastRead(events, 'never written');
    const violation = expectViolation(checkLinearizable(corrupted));
    expect(violation.blockingOperation).toMatchObject({ f: 'read', value: 'never written', completionEventIndex: eventIndex });
    expectPrefixReplays(violation);
  });

  it('never calls a corrupted history linearizable when the bound cuts the search short', () => {
    // Over a small domain, many info writes whose values are read again make refutation expensive:
    // the answer may be unknown, but never ok.
    const { corrupted } = corruptLastRead(sequentialRunHistory(seededRunSteps(SEED, 1_000, 2, false)), 'never written');
    expect(checkLinearizable(corrupted, { maxSteps: 20_000 }).ok).not.toBe(true);
  });

  it('counts interchangeable info writes instead of enumerating subsets of them', () => {
    // Ten info writes of 1 and ten of 2, then a client reading 1, 2, 1, 2, ... one read after another.
    // Every change of value uses up one of the writes: 20 reads fit, 21 need an eleventh write of 1.
    const supply = [...Array.from({ length: 10 }, (_, i) => write(i, 1, [i, i + 1], 'info')), ...Array.from({ length: 10 }, (_, i) => write(10 + i, 2, [i, i + 1], 'info'))];
    const reads = (count: number): OpSpec[] => Array.from({ length: count }, (_, i) => read(99, i % 2 === 0 ? 1 : 2, [100 + 20 * i, 110 + 20 * i]));
    expect(checkLinearizable(history(...supply, ...reads(20)), { maxSteps: 1_000_000 })).toEqual({ ok: true });
    const violation = expectViolation(checkLinearizable(history(...supply, ...reads(21)), { maxSteps: 1_000_000 }));
    expect(violation.blockingOperation.invokeTimeNs).toBe(100 + 20 * 20);
  });
});
