/**
 * A linearizability checker for a key-value workload: one register per key, with `read`, `write` and
 * compare-and-set (`cas`), every key starting absent (`null`).
 *
 * Histories use the public JSON-lines format of Jepsen-style tools (Knossos, Porcupine): one
 * {@link HistoryEvent} per line, an `invoke` followed on the same process by `ok` (took effect),
 * `fail` (definitely did not take effect) or `info` (indeterminate: it may take effect at any time
 * after its invoke, or never).
 *
 * The search is Wing and Gong's, with Lowe's memoization (as in Porcupine): walk the invoke and
 * completion events in time order, tentatively linearize any operation whose invoke has been seen,
 * backtrack when an operation's completion is reached before it could be linearized, and never
 * explore the same (set of linearized operations, register value) twice. Keys are independent
 * registers, so each key is checked on its own (linearizability is local). Every search has a step
 * bound; hitting it yields `'unknown'`, never a guessed verdict.
 *
 * Two sound reductions keep long histories tractable: `info` writes and cas whose value nothing
 * could observe afterwards are dropped, and identical `info` operations are used in invoke order
 * rather than in every subset. What stays hard, for this checker as for every checker of its kind,
 * is a history with many indeterminate operations whose values are read again (a small value
 * domain): refuting it may exceed the bound, and the answer is then `'unknown'`. Unique written
 * values, as the simulator's workload writes them, avoid that.
 *
 * Real-time order: operation A precedes B only when A's completion time is strictly less than B's
 * invoke time. Two events at the same nanosecond are treated as concurrent, so a verdict never
 * depends on how simultaneous events happened to be written down.
 *
 * @example
 * ```ts
 * const history = parseJsonLines(text);
 * const result = checkLinearizable(history, { maxSteps: 1_000_000 });
 * if (result.ok === false) console.error(result.reason);
 * ```
 *
 * @module
 */
import { InvariantError, invariant } from '../src/raft/errors.js';

// ---------------------------------------------------------------------------------------------
// Types

/** A register value: a number or a string, or `null` meaning "absent". */
export type Value = string | number | null;

/** The operations on a key's register. */
export type OperationFunction = 'read' | 'write' | 'cas';

/** Kinds of history event: an invoke, or one of the three completions. */
export type EventType = 'invoke' | 'ok' | 'fail' | 'info';

/** How an operation completed. An operation never completed by the end of the history is `info`. */
export type Outcome = 'ok' | 'fail' | 'info';

/** What an event's `value` holds: one register value, or `[expected, new]` for a `cas`. */
export type EventValue = Value | readonly [Value, Value];

/**
 * One line of a history.
 *
 * - `write`: `value` is the value written, on the invoke and on every completion.
 * - `read`: `value` is `null` on the invoke, on `fail` and on `info`; on `ok` it is the value read
 *   (`null` when the key was absent).
 * - `cas`: `value` is `[expected, new]`, on the invoke and on every completion.
 *
 * The type is flat, as the format is; {@link pairOperations} and {@link parseJsonLines} check at run
 * time that `value` fits `f` and `type`.
 */
export interface HistoryEvent {
  /** The client process; it has at most one operation outstanding. A safe integer ≥ 0. */
  readonly process: number;
  /** Invoke, or how the operation completed. */
  readonly type: EventType;
  /** The operation. */
  readonly f: OperationFunction;
  /** The key whose register the operation acts on. */
  readonly key: string;
  /** The operation's argument or result; see above. */
  readonly value: EventValue;
  /**
   * True simulated time of the event, in nanoseconds: a safe integer ≥ 0. The field keeps the
   * format's name `time`; {@link Operation} spells the unit out.
   */
  readonly time: number;
}

/** The fields every paired operation has, whatever its function. */
export interface OperationFields {
  /** Position of the operation's invoke among all invokes of the event list, from 0. */
  readonly index: number;
  /** The process that ran it. */
  readonly process: number;
  /** The key whose register it acts on. */
  readonly key: string;
  /** How it completed. */
  readonly outcome: Outcome;
  /** Time of the invoke, in nanoseconds. */
  readonly invokeTimeNs: number;
  /** Time of the completion, in nanoseconds; `Infinity` for `info` (it may take effect at any later time). */
  readonly completeTimeNs: number;
  /** Index of the invoke in the event list. */
  readonly invokeEventIndex: number;
  /** Index of the completion in the event list; `null` when the history ended before it completed. */
  readonly completionEventIndex: number | null;
}

/**
 * An invoke paired with its completion. For a `read`, `value` is the value read when `outcome` is
 * `ok` and `null` otherwise; for a `write` the value written; for a `cas` `[expected, new]`.
 */
export type Operation =
  | (OperationFields & { readonly f: 'read'; readonly value: Value })
  | (OperationFields & { readonly f: 'write'; readonly value: Value })
  | (OperationFields & { readonly f: 'cas'; readonly value: readonly [Value, Value] });

/** Proof that a key's operations cannot be linearized, with the evidence a reader needs. */
export interface LinearizabilityViolation {
  readonly ok: false;
  /** The key whose register has no linearization. */
  readonly key: string;
  /** One paragraph, in words: which operation could not be placed, and after what. */
  readonly reason: string;
  /**
   * The longest sequence of the key's operations the search could linearize (in linearization order)
   * before getting stuck.
   */
  readonly linearizedPrefix: readonly Operation[];
  /** The register's value after {@link LinearizabilityViolation.linearizedPrefix}. */
  readonly valueAfterPrefix: Value;
  /**
   * The operation that had to take effect next (its completion came before any other pending
   * operation could be placed) and could not: after the prefix, neither it nor any candidate
   * leads to a linearization.
   */
  readonly blockingOperation: Operation;
  /**
   * The operations that could have come next after the prefix: not in the prefix, invoked before
   * the blocking operation completed (the blocking operation included). Each was tried. (`info`
   * writes and cas whose value nothing could observe are left out: they can never help.)
   */
  readonly candidateOperations: readonly Operation[];
}

/** The search ran out of steps before reaching a verdict for `key`. Not a verdict either way. */
export interface LinearizabilityUnknown {
  readonly ok: 'unknown';
  /** The first key whose search hit the bound. */
  readonly key: string;
  /** Always `'step bound reached'`. */
  readonly reason: 'step bound reached';
  /** The bound that was reached, per key. */
  readonly maxSteps: number;
}

/** The verdict of {@link checkLinearizable}. */
export type LinearizabilityResult = { readonly ok: true } | LinearizabilityViolation | LinearizabilityUnknown;

/** Options of {@link checkLinearizable}. */
export interface CheckOptions {
  /**
   * Most search steps per key (one step visits one invoke or completion event); beyond it the
   * verdict is `'unknown'`. The memoization cache holds at most this many entries per key, each
   * about 100 bytes plus an eighth of a byte per operation concurrent at that point and per `info`
   * operation of the key. Defaults to {@link DEFAULT_MAX_STEPS}.
   */
  readonly maxSteps?: number;
}

/** Step bound per key when {@link CheckOptions.maxSteps} is not given. */
export const DEFAULT_MAX_STEPS = 1_000_000;

/** Most events accepted in one history, by {@link pairOperations} and {@link parseJsonLines}. */
export const MAX_HISTORY_EVENTS = 10_000_000;

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * A history that is not well formed: a field of the wrong type, a completion without an invoke,
 * two invokes in flight on one process, and so on. Match on `code`. An expected failure about the
 * input, never a bug in the checker.
 *
 * @example
 * ```ts
 * try { parseJsonLines(text); }
 * catch (error) {
 *   if (error instanceof HistoryError) console.error(`line ${error.line}: ${error.message}`);
 * }
 * ```
 */
export class HistoryError extends Error {
  /** Stable machine-readable kind of the failure. */
  readonly code = 'MalformedHistory' as const;
  /** 1-based line of the JSON-lines text holding the bad event, or `null` when not parsing text. */
  readonly line: number | null;
  /** 0-based index of the offending event in the event list, or `null` when there is none. */
  readonly eventIndex: number | null;

  constructor(message: string, where: { readonly line?: number; readonly eventIndex?: number } = {}) {
    const location = where.line !== undefined ? `line ${where.line}: ` : where.eventIndex !== undefined ? `event ${where.eventIndex}: ` : '';
    super(`malformed history: ${location}${message}`);
    this.name = 'HistoryError';
    this.line = where.line ?? null;
    this.eventIndex = where.eventIndex ?? null;
  }
}

// ---------------------------------------------------------------------------------------------
// Validation

const EVENT_TYPES: readonly EventType[] = ['invoke', 'ok', 'fail', 'info'];
const FUNCTIONS: readonly OperationFunction[] = ['read', 'write', 'cas'];

function isValue(value: unknown): value is Value {
  return value === null || typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}

function isCasPair(value: unknown): value is readonly [Value, Value] {
  return Array.isArray(value) && value.length === 2 && isValue(value[0]) && isValue(value[1]);
}

function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  try {
    const text = JSON.stringify(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * Throws {@link HistoryError} for the event at list index `eventIndex`, read from 1-based text line
 * `line` (0 when the event did not come from text).
 */
function failAt(line: number, eventIndex: number, message: string): never {
  throw new HistoryError(message, line > 0 ? { line, eventIndex } : { eventIndex });
}

function ownField(record: Record<string, unknown>, name: string, line: number, eventIndex: number): unknown {
  if (!Object.prototype.hasOwnProperty.call(record, name)) failAt(line, eventIndex, `missing field '${name}'`);
  return record[name];
}

/**
 * Checks one event field by field and returns a normalized copy holding only the known fields.
 * Throws {@link HistoryError} at the event's location (see {@link failAt}). Runs once per event of
 * every simulation's history, so a valid event allocates nothing but its copy, built as a plain
 * object literal (V8 builds a spread many times slower).
 */
function validateEvent(raw: unknown, line: number, eventIndex: number): HistoryEvent {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return failAt(line, eventIndex, `an event must be an object, got ${show(raw)}`);
  const record = raw as Record<string, unknown>;
  const process = ownField(record, 'process', line, eventIndex);
  if (typeof process !== 'number' || !Number.isSafeInteger(process) || process < 0) {
    return failAt(line, eventIndex, `field 'process' must be a safe integer >= 0, got ${show(process)}`);
  }
  const type = ownField(record, 'type', line, eventIndex);
  if (type !== 'invoke' && type !== 'ok' && type !== 'fail' && type !== 'info') {
    return failAt(line, eventIndex, `field 'type' must be one of ${EVENT_TYPES.join(', ')}, got ${show(type)}`);
  }
  const f = ownField(record, 'f', line, eventIndex);
  if (f !== 'read' && f !== 'write' && f !== 'cas') {
    return failAt(line, eventIndex, `field 'f' must be one of ${FUNCTIONS.join(', ')}, got ${show(f)}`);
  }
  const key = ownField(record, 'key', line, eventIndex);
  if (typeof key !== 'string') return failAt(line, eventIndex, `field 'key' must be a string, got ${show(key)}`);
  const time = ownField(record, 'time', line, eventIndex);
  if (typeof time !== 'number' || !Number.isSafeInteger(time) || time < 0) {
    return failAt(line, eventIndex, `field 'time' must be a safe integer >= 0 (nanoseconds), got ${show(time)}`);
  }
  const value = ownField(record, 'value', line, eventIndex);
  switch (f) {
    case 'cas':
      if (!isCasPair(value)) return failAt(line, eventIndex, `a cas carries [expected, new] (each a string, a finite number or null), got ${show(value)}`);
      return { process, type, f, key, time, value: [value[0], value[1]] };
    case 'write':
      if (!isValue(value)) return failAt(line, eventIndex, `a write carries the value written (a string, a finite number or null), got ${show(value)}`);
      return { process, type, f, key, time, value };
    case 'read':
      if (type === 'ok') {
        if (!isValue(value)) return failAt(line, eventIndex, `an ok read carries the value read (a string, a finite number or null), got ${show(value)}`);
      } else if (value !== null) {
        return failAt(line, eventIndex, `a read ${type} carries no value (null), got ${show(value)}`);
      }
      return { process, type, f, key, time, value };
  }
}

// ---------------------------------------------------------------------------------------------
// Pairing

interface PendingInvoke {
  readonly event: HistoryEvent;
  readonly eventIndex: number;
  readonly operationIndex: number;
}

function isPair(value: EventValue): value is readonly [Value, Value] {
  return Array.isArray(value);
}

function sameValue(left: EventValue, right: EventValue): boolean {
  if (isPair(left) || isPair(right)) return isPair(left) && isPair(right) && left[0] === right[0] && left[1] === right[1];
  return left === right;
}

function makeOperation(fields: OperationFields, f: OperationFunction, value: EventValue): Operation {
  // Object literals, not spreads: this runs for every operation of every simulation.
  const { index, process, key, outcome, invokeTimeNs, completeTimeNs, invokeEventIndex, completionEventIndex } = fields;
  if (f === 'cas') {
    invariant(isPair(value), 'a validated cas carries a pair');
    return { index, process, key, outcome, invokeTimeNs, completeTimeNs, invokeEventIndex, completionEventIndex, f, value };
  }
  invariant(!isPair(value), 'a validated read or write carries a single value');
  return { index, process, key, outcome, invokeTimeNs, completeTimeNs, invokeEventIndex, completionEventIndex, f, value };
}

/**
 * Validates a history and pairs each invoke with the next completion of the same process.
 *
 * Rules, each refused with a {@link HistoryError} (code `'MalformedHistory'`) naming the event:
 * every field well typed; a completion must follow an invoke of its process, with the same `f` and
 * `key`, a time no earlier than the invoke's, and (for `write` and `cas`) the same value; a process
 * must not invoke while its previous operation is in flight. An `info` completion ends the process's
 * operation (Jepsen then gives the process a fresh id; reusing the id is accepted too, since the
 * indeterminate operation is modelled as completing at +infinity either way).
 *
 * An invoke still in flight at the end of the history is indeterminate: it is returned as `info`,
 * with `completionEventIndex` null.
 *
 * @returns the operations, in invoke order.
 *
 * @example
 * ```ts
 * const operations = pairOperations([
 *   { process: 0, type: 'invoke', f: 'write', key: 'x', value: 1, time: 0 },
 *   { process: 0, type: 'ok', f: 'write', key: 'x', value: 1, time: 5 },
 * ]);
 * // [{ index: 0, f: 'write', value: 1, outcome: 'ok', invokeTimeNs: 0, completeTimeNs: 5, ... }]
 * ```
 */
export function pairOperations(events: readonly HistoryEvent[]): Operation[] {
  if (!Array.isArray(events)) throw new HistoryError(`a history must be an array of events, got ${show(events)}`);
  if (events.length > MAX_HISTORY_EVENTS) {
    throw new HistoryError(`${events.length} events exceeds the limit of ${MAX_HISTORY_EVENTS}`);
  }
  const slots: (Operation | undefined)[] = [];
  const inFlight = new Map<number, PendingInvoke>();
  for (let eventIndex = 0; eventIndex < events.length; eventIndex++) {
    const event = validateEvent(events[eventIndex], 0, eventIndex);
    const pending = inFlight.get(event.process);
    if (event.type === 'invoke') {
      if (pending !== undefined) {
        failAt(
          0,
          eventIndex,
          `process ${event.process} invokes a ${event.f} while its ${pending.event.f} invoked at event ${pending.eventIndex} ` +
            'is still in flight (a process has at most one outstanding operation)',
        );
      }
      inFlight.set(event.process, { event, eventIndex, operationIndex: slots.length });
      slots.push(undefined);
      continue;
    }
    if (pending === undefined) {
      return failAt(0, eventIndex, `'${event.type}' completion of a ${event.f} on process ${event.process}, which has no operation in flight`);
    }
    const invoke = pending.event;
    if (invoke.f !== event.f) failAt(0, eventIndex, `'${event.type}' completion of a ${event.f}, but process ${event.process} invoked a ${invoke.f} at event ${pending.eventIndex}`);
    if (invoke.key !== event.key) {
      failAt(0, eventIndex, `'${event.type}' completion on key ${show(event.key)}, but process ${event.process} invoked on key ${show(invoke.key)} at event ${pending.eventIndex}`);
    }
    if (event.time < invoke.time) failAt(0, eventIndex, `completion at ${event.time} ns precedes its invoke at ${invoke.time} ns (event ${pending.eventIndex})`);
    if (event.f !== 'read' && !sameValue(invoke.value, event.value)) {
      failAt(0, eventIndex, `${event.f} completion carries ${show(event.value)}, but its invoke at event ${pending.eventIndex} carries ${show(invoke.value)}`);
    }
    const outcome: Outcome = event.type;
    const fields: OperationFields = {
      index: pending.operationIndex,
      process: event.process,
      key: event.key,
      outcome,
      invokeTimeNs: invoke.time,
      completeTimeNs: outcome === 'info' ? Infinity : event.time,
      invokeEventIndex: pending.eventIndex,
      completionEventIndex: eventIndex,
    };
    const value = event.f === 'read' ? (outcome === 'ok' ? event.value : null) : invoke.value;
    slots[pending.operationIndex] = makeOperation(fields, event.f, value);
    inFlight.delete(event.process);
  }
  for (const pending of inFlight.values()) {
    const invoke = pending.event;
    const fields: OperationFields = {
      index: pending.operationIndex,
      process: invoke.process,
      key: invoke.key,
      outcome: 'info',
      invokeTimeNs: invoke.time,
      completeTimeNs: Infinity,
      invokeEventIndex: pending.eventIndex,
      completionEventIndex: null,
    };
    slots[pending.operationIndex] = makeOperation(fields, invoke.f, invoke.value);
  }
  return slots.map((operation, index) => {
    invariant(operation !== undefined, () => `operation ${index} was never filled in`);
    return operation;
  });
}

// ---------------------------------------------------------------------------------------------
// Description

function describeTime(timeNs: number): string {
  return Number.isFinite(timeNs) ? `${timeNs} ns` : '∞';
}

/**
 * One line naming an operation for people, e.g.
 * `read -> 1 by process 2 during [40 ns, 50 ns] (ok)` or `cas 1 -> 2 by process 0 during [5 ns, ∞) (info)`.
 *
 * @example
 * ```ts
 * for (const operation of result.linearizedPrefix) console.log(describeOperation(operation));
 * ```
 */
export function describeOperation(operation: Operation): string {
  let what: string;
  switch (operation.f) {
    case 'read':
      what = operation.outcome === 'ok' ? `read -> ${show(operation.value)}` : 'read';
      break;
    case 'write':
      what = `write ${show(operation.value)}`;
      break;
    case 'cas':
      what = `cas ${show(operation.value[0])} -> ${show(operation.value[1])}`;
      break;
  }
  const interval = `[${describeTime(operation.invokeTimeNs)}, ${describeTime(operation.completeTimeNs)}${Number.isFinite(operation.completeTimeNs) ? ']' : ')'}`;
  return `${what} by process ${operation.process} during ${interval} (${operation.outcome})`;
}

// ---------------------------------------------------------------------------------------------
// Search

const KIND_READ = 0;
const KIND_WRITE = 1;
const KIND_CAS = 2;

/** List position of the sentinel before the first event (the tail sentinel follows the last). */
const HEAD = 0;

type KeyVerdict =
  | { readonly ok: true }
  | { readonly ok: 'unknown' }
  | {
      readonly ok: false;
      readonly prefix: readonly number[];
      readonly stateAfterPrefix: number;
      readonly blocking: number;
      readonly candidates: readonly number[];
    };

/** Reads an element whose index the search maintains; an index out of range is a bug. */
function at(array: ArrayLike<number>, index: number): number {
  const value = array[index];
  // No closure for the message: this runs on every step of the search.
  if (value === undefined) throw new InvariantError(`index ${index} outside an array of ${array.length}`);
  return value;
}

/** 32-bit word `index` of a bitset over `bitCount` bits with every bit set (the last word may be partial). */
function fullWord(index: number, bitCount: number): number {
  const bitsInWord = Math.min(32, bitCount - 32 * index);
  return bitsInWord === 32 ? 0xffff_ffff : 2 ** bitsInWord - 1;
}

/** Two UTF-16 code units per 32-bit word: an exact, compact rendering of bitset words in a key. */
function appendWords(text: string, words: Uint32Array, from: number, to: number): string {
  let result = text;
  for (let index = from; index <= to; index++) {
    const word = at(words, index);
    result += String.fromCharCode(word & 0xffff, word >>> 16);
  }
  return result;
}

/**
 * The set of linearized operations of one key, and its memoization key.
 *
 * Required (`ok`) operations are numbered in invoke order, so the set of linearized ones is a run
 * of full words (everything invoked long ago) followed by a short window (the operations still
 * concurrent). The key spells out only the count of full words and the window, which keeps it short
 * however long the history is; optional (`info`) operations, usually few, get their own bitset.
 * The key is exact: it is a function of the set, and the set can be read back from it.
 */
class LinearizedSet {
  private readonly requiredWords: Uint32Array;
  private readonly optionalWords: Uint32Array;
  /** Invariant: requiredWords[0, fullWords) are full, and requiredWords[fullWords] (if any) is not. */
  private fullWords = 0;
  /** Invariant: every required word above this index is zero (-1 when all are). */
  private highestNonZeroWord = -1;

  constructor(
    /** Per operation: its number among the required, or among the optional, operations. */
    private readonly bitOf: Int32Array,
    private readonly required: Uint8Array,
    private readonly requiredCount: number,
    optionalCount: number,
  ) {
    this.requiredWords = new Uint32Array(Math.ceil(requiredCount / 32));
    this.optionalWords = new Uint32Array(Math.ceil(optionalCount / 32));
  }

  has(op: number): boolean {
    const bit = at(this.bitOf, op);
    const words = this.required[op] === 1 ? this.requiredWords : this.optionalWords;
    return (at(words, bit >>> 5) & (1 << (bit & 31))) !== 0;
  }

  add(op: number): void {
    const bit = at(this.bitOf, op);
    const word = bit >>> 5;
    if (this.required[op] !== 1) {
      this.optionalWords[word] = at(this.optionalWords, word) | (1 << (bit & 31));
      return;
    }
    this.requiredWords[word] = at(this.requiredWords, word) | (1 << (bit & 31));
    if (word > this.highestNonZeroWord) this.highestNonZeroWord = word;
    const wordCount = this.requiredWords.length;
    while (this.fullWords < wordCount && at(this.requiredWords, this.fullWords) === fullWord(this.fullWords, this.requiredCount)) this.fullWords++;
  }

  delete(op: number): void {
    const bit = at(this.bitOf, op);
    const word = bit >>> 5;
    if (this.required[op] !== 1) {
      this.optionalWords[word] = at(this.optionalWords, word) & ~(1 << (bit & 31));
      return;
    }
    this.requiredWords[word] = at(this.requiredWords, word) & ~(1 << (bit & 31));
    if (word < this.fullWords) this.fullWords = word;
    while (this.highestNonZeroWord >= 0 && at(this.requiredWords, this.highestNonZeroWord) === 0) this.highestNonZeroWord--;
  }

  /** The memoization key of (this set, register state `state`). */
  key(state: number): string {
    // Lengths first, so the variable-length parts cannot run into each other.
    const windowWords = this.highestNonZeroWord - this.fullWords + 1;
    const text = appendWords(`${state}:${this.fullWords}:${Math.max(0, windowWords)}:`, this.requiredWords, this.fullWords, this.highestNonZeroWord);
    return appendWords(text, this.optionalWords, 0, this.optionalWords.length - 1);
  }
}

/**
 * Checks one key's register. `operations` hold only what can take effect: `ok` reads, writes and
 * cas (required: they must be linearized) and `info` writes and cas (optional: linearized once at
 * any point after their invoke, or never).
 */
function searchKey(operations: readonly Operation[], maxSteps: number): KeyVerdict {
  const count = operations.length;
  // Intern values so the model state is a small integer; null (absent) is 0, the initial state.
  const valueIds = new Map<Value, number>([[null, 0]]);
  const intern = (value: Value): number => {
    let id = valueIds.get(value);
    if (id === undefined) {
      id = valueIds.size;
      valueIds.set(value, id);
    }
    return id;
  };
  const kind = new Int32Array(count);
  const argument = new Int32Array(count);
  const nextValue = new Int32Array(count);
  const required = new Uint8Array(count);
  let requiredRemaining = 0;
  for (let op = 0; op < count; op++) {
    const operation = operations[op];
    invariant(operation !== undefined, 'operation in range');
    invariant(operation.outcome !== 'fail', 'failed operations never reach the search');
    invariant(operation.f !== 'read' || operation.outcome === 'ok', 'only ok reads reach the search');
    if (operation.outcome === 'ok') {
      required[op] = 1;
      requiredRemaining++;
    }
    switch (operation.f) {
      case 'read':
        kind[op] = KIND_READ;
        argument[op] = intern(operation.value);
        break;
      case 'write':
        kind[op] = KIND_WRITE;
        argument[op] = -1; // a blind write expects nothing
        nextValue[op] = intern(operation.value);
        break;
      case 'cas':
        kind[op] = KIND_CAS;
        argument[op] = intern(operation.value[0]);
        nextValue[op] = intern(operation.value[1]);
        break;
    }
  }

  const bitOf = new Int32Array(count);
  let optionalCount = 0;
  for (let op = 0; op < count; op++) bitOf[op] = required[op] === 1 ? op - optionalCount : optionalCount++;
  const linearized = new LinearizedSet(bitOf, required, count - optionalCount, optionalCount);

  // Identical optional operations (same function, same values) are interchangeable once invoked, so
  // the search only uses them in invoke order: an optional operation may be linearized only after
  // its previous twin. Any linearization can be rearranged that way, because a twin invoked earlier
  // is available wherever a later one is. This turns 2^k subsets of k twins into k + 1 counts.
  const previousTwin = new Int32Array(count).fill(-1);
  const lastTwinOfClass = new Map<string, number>();
  const optionalInInvokeOrder: number[] = [];
  for (let op = 0; op < count; op++) if (required[op] === 0) optionalInInvokeOrder.push(op);
  optionalInInvokeOrder.sort((a, b) => (operations[a]?.invokeTimeNs ?? 0) - (operations[b]?.invokeTimeNs ?? 0) || a - b);
  for (const op of optionalInInvokeOrder) {
    const twinClass = `${at(kind, op)}:${at(argument, op)}:${at(nextValue, op)}`;
    previousTwin[op] = lastTwinOfClass.get(twinClass) ?? -1;
    lastTwinOfClass.set(twinClass, op);
  }

  // Events in time order: a call for every operation, a return for every required one (an optional
  // operation's return is at +infinity: it never forces anything). Calls sort before returns at
  // the same time, so simultaneous events count as concurrent.
  const entries: { readonly timeNs: number; readonly isReturn: boolean; readonly op: number }[] = [];
  for (let op = 0; op < count; op++) {
    const operation = operations[op];
    invariant(operation !== undefined, 'operation in range');
    entries.push({ timeNs: operation.invokeTimeNs, isReturn: false, op });
    if (required[op] === 1) entries.push({ timeNs: operation.completeTimeNs, isReturn: true, op });
  }
  entries.sort((a, b) => a.timeNs - b.timeNs || Number(a.isReturn) - Number(b.isReturn) || a.op - b.op);

  // A doubly linked list of the entries (positions 1..n, with HEAD and TAIL sentinels) from which
  // linearized operations are lifted and, on backtracking, restored in LIFO order (dancing links).
  const tail = entries.length + 1;
  const next = new Int32Array(entries.length + 2);
  const previous = new Int32Array(entries.length + 2);
  const entryOp = new Int32Array(entries.length + 2).fill(-1);
  const entryIsReturn = new Uint8Array(entries.length + 2);
  const callEntry = new Int32Array(count).fill(-1);
  const returnEntry = new Int32Array(count).fill(-1);
  for (let position = 0; position <= tail; position++) {
    next[position] = position + 1;
    previous[position] = position - 1;
  }
  next[tail] = -1;
  for (let position = 1; position < tail; position++) {
    const entry = entries[position - 1];
    invariant(entry !== undefined, 'entry in range');
    entryOp[position] = entry.op;
    entryIsReturn[position] = entry.isReturn ? 1 : 0;
    if (entry.isReturn) returnEntry[entry.op] = position;
    else callEntry[entry.op] = position;
  }
  const unlink = (position: number): void => {
    next[at(previous, position)] = at(next, position);
    previous[at(next, position)] = at(previous, position);
  };
  const relink = (position: number): void => {
    next[at(previous, position)] = position;
    previous[at(next, position)] = position;
  };
  const lift = (op: number): void => {
    unlink(at(callEntry, op));
    const ret = at(returnEntry, op);
    if (ret >= 0) unlink(ret);
  };
  const unlift = (op: number): void => {
    const ret = at(returnEntry, op);
    if (ret >= 0) relink(ret);
    relink(at(callEntry, op));
  };

  // Lowe's memoization: (linearized set, register value) pairs already explored. Every entry is a
  // dead end or an ancestor of the current state, so meeting one again cannot lead anywhere new.
  // At most one entry per step, so maxSteps bounds it.
  const explored = new Set<string>();

  const stackOp = new Int32Array(count);
  const stackState = new Int32Array(count);
  let depth = 0;
  let state = 0;
  let best: { prefix: number[]; state: number; blocking: number; candidates: number[] } | null = null;
  let position = at(next, HEAD);

  for (let step = 0; ; step++) {
    if (requiredRemaining === 0) return { ok: true };
    if (step >= maxSteps) return { ok: 'unknown' };
    // Every entry before `position` is a call; a required operation's return is still listed, so
    // the walk meets a return before it can run off the end.
    invariant(position !== tail && position > HEAD, 'the walk stays inside the list while required operations remain');
    const op = at(entryOp, position);
    if (entryIsReturn[position] === 0) {
      let after = -1;
      const current = state;
      const twin = at(previousTwin, op);
      const twinPending = twin >= 0 && !linearized.has(twin);
      if (!twinPending) {
        switch (at(kind, op)) {
          case KIND_READ:
            if (at(argument, op) === current) after = current;
            break;
          case KIND_WRITE:
            after = at(nextValue, op);
            break;
          case KIND_CAS:
            // An info cas whose precondition fails has no effect: the same as never linearizing it.
            if (at(argument, op) === current) after = at(nextValue, op);
            break;
        }
      }
      if (after >= 0) {
        linearized.add(op);
        const key = linearized.key(after);
        if (!explored.has(key)) {
          explored.add(key);
          stackOp[depth] = op;
          stackState[depth] = state;
          depth++;
          state = after;
          lift(op);
          if (required[op] === 1) requiredRemaining--;
          position = at(next, HEAD);
          continue;
        }
        linearized.delete(op);
      }
      position = at(next, position);
      continue;
    }
    // The completion of `op` is reached and `op` is not linearized: this prefix is a dead end.
    if (best === null || depth > best.prefix.length) {
      const candidates: number[] = [];
      for (let scan = at(next, HEAD); scan !== position; scan = at(next, scan)) {
        if (entryIsReturn[scan] === 0) candidates.push(at(entryOp, scan));
      }
      invariant(candidates.includes(op), 'an operation whose completion is listed is not linearized, so its invoke is listed before it');
      best = { prefix: Array.from(stackOp.subarray(0, depth)), state, blocking: op, candidates };
    }
    if (depth === 0) {
      return { ok: false, prefix: best.prefix, stateAfterPrefix: best.state, blocking: best.blocking, candidates: best.candidates };
    }
    depth--;
    const popped = at(stackOp, depth);
    state = at(stackState, depth);
    linearized.delete(popped);
    unlift(popped);
    if (required[popped] === 1) requiredRemaining++;
    position = at(next, at(callEntry, popped));
  }
}

/**
 * Drops the optional (info) writes and cas whose new value nothing could observe after them: no `ok`
 * read returning it and no cas expecting it, among the operations not over before the optional one
 * was invoked. Linearizing such an operation can never help: right after it, only a blind write may
 * come next (anything else needs to see its value), so the same order without it is just as valid.
 * Dropping one can leave another unobserved, so this runs to a fixpoint.
 *
 * With unique written values (the usual workload) this removes almost every timed-out write that
 * never took effect, which is what makes long histories with many `info` operations tractable.
 */
function dropUnobservedOptional(operations: readonly Operation[]): readonly Operation[] {
  let kept = operations;
  // Each round but the last drops at least one operation, so the count bounds the rounds.
  for (let round = 0; round <= operations.length; round++) {
    const lastObservationNs = new Map<Value, number>();
    const observe = (value: Value, completeTimeNs: number): void => {
      lastObservationNs.set(value, Math.max(lastObservationNs.get(value) ?? -Infinity, completeTimeNs));
    };
    for (const operation of kept) {
      if (operation.f === 'read') observe(operation.value, operation.completeTimeNs);
      else if (operation.f === 'cas') observe(operation.value[0], operation.completeTimeNs);
    }
    const next = kept.filter((operation) => {
      if (operation.outcome === 'ok' || operation.f === 'read') return true;
      const written = operation.f === 'write' ? operation.value : operation.value[1];
      return (lastObservationNs.get(written) ?? -Infinity) >= operation.invokeTimeNs;
    });
    if (next.length === kept.length) return kept;
    kept = next;
  }
  throw new InvariantError('pruning did not reach a fixpoint within one round per operation');
}

// ---------------------------------------------------------------------------------------------
// Checker

/** Most prefix operations spelled out in a violation's `reason`; the full prefix is in the result. */
const REASON_PREFIX_OPERATIONS_SHOWN = 5;

function explainViolation(prefix: readonly Operation[], valueAfterPrefix: Value, blocking: Operation, candidateCount: number): string {
  const shown = prefix.slice(-REASON_PREFIX_OPERATIONS_SHOWN).map(describeOperation).join('; ');
  const context =
    prefix.length === 0
      ? 'No operation can be linearized before it; the register starts at null.'
      : `The longest linearizable prefix found has ${prefix.length} operation${prefix.length === 1 ? '' : 's'} ` +
        `(${prefix.length > REASON_PREFIX_OPERATIONS_SHOWN ? `..., last ${REASON_PREFIX_OPERATIONS_SHOWN}: ` : ''}${shown}) ` +
        `and leaves the register at ${show(valueAfterPrefix)}.`;
  let detail = '';
  if (blocking.f === 'read' && blocking.value !== valueAfterPrefix) {
    detail = ` It returned ${show(blocking.value)}, but the register holds ${show(valueAfterPrefix)} there.`;
  } else if (blocking.f === 'cas' && blocking.value[0] !== valueAfterPrefix) {
    detail = ` It succeeded, so it saw ${show(blocking.value[0])}, but the register holds ${show(valueAfterPrefix)} there.`;
  }
  const others = candidateCount - 1;
  const stuck =
    others === 0
      ? 'It had to take effect before it completed, and no other pending operation could have come first.'
      : `It had to take effect before it completed, yet neither it nor any of the ${others} other operation${others === 1 ? '' : 's'} ` +
        'pending by then can come next in an order consistent with real time and the register.';
  return `${describeOperation(blocking)} cannot be linearized. ${context}${detail} ${stuck}`;
}

/**
 * Checks that a key-value history is linearizable: that every key's operations can be ordered
 * into a sequential run of a register (initially `null`) consistent with what each operation
 * returned and with real time.
 *
 * `fail` operations are dropped (they did not happen). `info` writes and cas may take effect once, at
 * any point after their invoke, or never; `info` reads constrain nothing and are dropped. An `ok` cas
 * saw its expected value and wrote its new one.
 *
 * Keys are checked one at a time, in order of first invoke. A definite violation on any key wins
 * over a step bound reached on another; the first violating key is reported.
 *
 * @throws {HistoryError} when the history is malformed (see {@link pairOperations}).
 * @throws {RangeError} when `maxSteps` is not a positive safe integer.
 *
 * @example
 * ```ts
 * const result = checkLinearizable(history, { maxSteps: 100_000 });
 * if (result.ok === false) throw new Error(result.reason);
 * if (result.ok === 'unknown') console.warn(`no verdict for key ${result.key}: raise maxSteps`);
 * ```
 */
export function checkLinearizable(events: readonly HistoryEvent[], options: CheckOptions = {}): LinearizabilityResult {
  const maxSteps = options.maxSteps ?? DEFAULT_MAX_STEPS;
  if (!Number.isSafeInteger(maxSteps) || maxSteps < 1) throw new RangeError(`maxSteps must be a positive safe integer, got ${maxSteps}`);
  const operations = pairOperations(events);
  const byKey = new Map<string, Operation[]>();
  for (const operation of operations) {
    if (operation.outcome === 'fail') continue;
    if (operation.f === 'read' && operation.outcome !== 'ok') continue;
    let list = byKey.get(operation.key);
    if (list === undefined) {
      list = [];
      byKey.set(operation.key, list);
    }
    list.push(operation);
  }
  let unknown: LinearizabilityUnknown | null = null;
  for (const [key, allKeyOperations] of byKey) {
    // Invoke order (the history's order, normally) numbers the operations compactly for the memo.
    const inInvokeOrder = allKeyOperations.slice().sort((a, b) => a.invokeTimeNs - b.invokeTimeNs || a.index - b.index);
    const keyOperations = dropUnobservedOptional(inInvokeOrder);
    const verdict = searchKey(keyOperations, maxSteps);
    if (verdict.ok === true) continue;
    if (verdict.ok === 'unknown') {
      unknown ??= { ok: 'unknown', key, reason: 'step bound reached', maxSteps };
      continue;
    }
    const pick = (op: number): Operation => {
      const operation = keyOperations[op];
      invariant(operation !== undefined, 'search reports operations of its key');
      return operation;
    };
    const linearizedPrefix = verdict.prefix.map(pick);
    const blockingOperation = pick(verdict.blocking);
    // Recover the register value from the prefix (the search keeps only interned ids).
    let valueAfterPrefix: Value = null;
    for (const operation of linearizedPrefix) {
      if (operation.f === 'write') valueAfterPrefix = operation.value;
      else if (operation.f === 'cas') valueAfterPrefix = operation.value[1];
    }
    return {
      ok: false,
      key,
      reason: explainViolation(linearizedPrefix, valueAfterPrefix, blockingOperation, verdict.candidates.length),
      linearizedPrefix,
      valueAfterPrefix,
      blockingOperation,
      candidateOperations: verdict.candidates.map(pick),
    };
  }
  return unknown ?? { ok: true };
}

// ---------------------------------------------------------------------------------------------
// JSON lines

/**
 * Serializes events as JSON lines: one object per line, fields in the order
 * `process, type, f, key, value, time`, each line ending in `\n`. Validates every event first, so
 * what is written can be read back by {@link parseJsonLines}.
 *
 * @throws {HistoryError} naming the first malformed event.
 *
 * @example
 * ```ts
 * writeFileSync('history.jsonl', toJsonLines(history));
 * ```
 */
export function toJsonLines(events: readonly HistoryEvent[]): string {
  if (events.length > MAX_HISTORY_EVENTS) throw new HistoryError(`${events.length} events exceeds the limit of ${MAX_HISTORY_EVENTS}`);
  let text = '';
  for (let eventIndex = 0; eventIndex < events.length; eventIndex++) {
    const event = validateEvent(events[eventIndex], 0, eventIndex);
    text += `${JSON.stringify({ process: event.process, type: event.type, f: event.f, key: event.key, value: event.value, time: event.time })}\n`;
  }
  return text;
}

/**
 * Parses JSON lines into events, validating every field of every line. Blank lines are skipped;
 * `\r\n` line ends are accepted; fields other than the six of the format (Jepsen adds `index`,
 * `error`, ...) are ignored and dropped. Pairing rules are checked later, by
 * {@link pairOperations}.
 *
 * @throws {HistoryError} with `line` set (1-based) at the first bad line.
 *
 * @example
 * ```ts
 * const history = parseJsonLines(readFileSync('history.jsonl', 'utf8'));
 * ```
 */
export function parseJsonLines(text: string): HistoryEvent[] {
  if (typeof text !== 'string') throw new HistoryError(`JSON lines must be a string, got ${show(text)}`);
  const lines = text.split('\n');
  const events: HistoryEvent[] = [];
  for (let lineIndex = 0; lineIndex < lines.length; lineIndex++) {
    const line = (lines[lineIndex] ?? '').replace(/\r$/, '');
    if (line.trim() === '') continue;
    const where = { line: lineIndex + 1, eventIndex: events.length };
    if (events.length >= MAX_HISTORY_EVENTS) throw new HistoryError(`more than ${MAX_HISTORY_EVENTS} events`, where);
    let raw: unknown;
    try {
      raw = JSON.parse(line);
    } catch (error) {
      throw new HistoryError(`not valid JSON (${error instanceof Error ? error.message : String(error)})`, where);
    }
    events.push(validateEvent(raw, where.line, where.eventIndex));
  }
  return events;
}
