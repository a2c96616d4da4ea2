/**
 * Replicated maintenance records: which occurrence of each schedule is settled, which one is being
 * run under which fencing token, its latest checkpoint, and a short history of outcomes.
 *
 * They live in the lease table's state machine (one log, one snapshot) so that every check against
 * the lease on the schedule's key and every change to the record happen atomically, at one log index,
 * identically on every node. No clock is read: occurrences are named by their scheduled time, which the
 * orchestrators compute, and whether a window is open is decided by the proposing node.
 *
 * @module
 */
import { wellFormedPrefix, type LogIndex } from '../raft/index.js';

/** Largest checkpoint, in bytes of its encoding. */
export const MAX_CHECKPOINT_BYTES = 64 * 1024;
/** Longest error message kept with a failed occurrence, in UTF-16 units (longer ones are cut). */
export const MAX_OUTCOME_ERROR_CHARS = 1_000;
/** Outcomes kept per schedule; the oldest is forgotten first. */
export const MAINTENANCE_HISTORY_PER_SCHEDULE = 32;
/** Most schedules with a record; beginning an occurrence of a new schedule beyond this is refused. */
export const MAX_MAINTENANCE_RECORDS = 10_000;

/** The occurrence being run (or abandoned by a crashed runner and not yet settled). */
export interface MaintenanceRun {
  /** The occurrence's scheduled time, epoch milliseconds. */
  readonly occurrenceMs: number;
  readonly owner: string;
  /** Token of the lease under which the current runner began (or resumed) the occurrence. */
  readonly fencingToken: LogIndex;
  /** How many runners have begun this occurrence (1 for the first, more after resumes). */
  readonly attempts: number;
  /** The latest accepted checkpoint, as the runner encoded it, or null. */
  readonly checkpoint: Uint8Array | null;
  /** Token of the runner that wrote {@link checkpoint}. */
  readonly checkpointToken: LogIndex | null;
}

/** How an occurrence ended. */
export type OccurrenceResult = 'ok' | 'error' | 'missed';

/** A settled occurrence. */
export interface OccurrenceOutcome {
  readonly occurrenceMs: number;
  readonly result: OccurrenceResult;
  /** The last runner, or null for an occurrence nobody began. */
  readonly owner: string | null;
  readonly fencingToken: LogIndex | null;
  readonly attempts: number;
  /** The job's error message (`error` only), at most {@link MAX_OUTCOME_ERROR_CHARS} characters. */
  readonly error: string | null;
}

/** What the cluster knows about one schedule. */
export interface MaintenanceRecord {
  readonly key: string;
  /** Every occurrence at or before this time (epoch ms) is settled: finished, failed, missed or superseded. */
  readonly settledThroughMs: number;
  readonly current: MaintenanceRun | null;
  /** Newest last, at most {@link MAINTENANCE_HISTORY_PER_SCHEDULE}. */
  readonly history: readonly OccurrenceOutcome[];
}

/** A maintenance command (part of the lease table's command set). */
export type MaintenanceCommand =
  /**
   * Start (or resume) an occurrence. Only the holder of the lease on `key` under `fencingToken` may.
   * Settles every earlier occurrence: a newer one began, so their windows closed.
   */
  | { readonly type: 'BeginOccurrence'; readonly key: string; readonly occurrenceMs: number; readonly owner: string; readonly fencingToken: LogIndex }
  /** Replace the current run's checkpoint; fenced by the run's token. */
  | { readonly type: 'Checkpoint'; readonly key: string; readonly occurrenceMs: number; readonly owner: string; readonly fencingToken: LogIndex; readonly data: Uint8Array }
  /** Settle the current run as `ok` or `error`; fenced by the run's token. */
  | {
      readonly type: 'FinishOccurrence';
      readonly key: string;
      readonly occurrenceMs: number;
      readonly owner: string;
      readonly fencingToken: LogIndex;
      readonly result: 'ok' | 'error';
      readonly error: string | null;
    }
  /** Settle an occurrence whose window closed as `missed`; refused while anyone holds the lease on `key`. */
  | { readonly type: 'MissOccurrence'; readonly key: string; readonly occurrenceMs: number };

/** What a maintenance command did. */
export type MaintenanceResult =
  /** The caller runs the occurrence; `resumed` when an earlier runner began it (see `run.checkpoint`). */
  | { readonly type: 'Begun'; readonly key: string; readonly run: MaintenanceRun; readonly resumed: boolean }
  /** The occurrence is already settled; `outcome` when it is still in the history. */
  | { readonly type: 'Settled'; readonly key: string; readonly occurrenceMs: number; readonly outcome: OccurrenceOutcome | null }
  | { readonly type: 'Checkpointed'; readonly key: string; readonly occurrenceMs: number }
  /** Recorded; `duplicate` when this finish had already been applied (a retried proposal). */
  | { readonly type: 'Finished'; readonly key: string; readonly outcome: OccurrenceOutcome; readonly duplicate: boolean }
  | { readonly type: 'Missed'; readonly key: string; readonly outcome: OccurrenceOutcome }
  /**
   * Refused by the fence: `NotHolder` (the caller does not hold the lease under that token),
   * `StaleToken` (another runner took the occurrence over, or holds the lease now), `NotBegun` (no
   * such occurrence is being run), `LeaseHeld` (a runner may still be working on it).
   */
  | { readonly type: 'Fenced'; readonly key: string; readonly reason: 'NotHolder' | 'StaleToken' | 'NotBegun' | 'LeaseHeld' }
  | { readonly type: 'Rejected'; readonly reason: string };

/** The lease facts the fence needs. */
interface LeaseView {
  readonly owner: string;
  readonly fencingToken: LogIndex;
}

const RESULT_CODES: readonly OccurrenceResult[] = ['ok', 'error', 'missed'];

/** The records of every schedule. Deterministic: its state depends only on the commands applied, in order. */
export class MaintenanceRecords {
  private readonly records = new Map<string, MaintenanceRecord>();

  constructor(private readonly leaseOf: (key: string) => LeaseView | undefined) {}

  get(key: string): MaintenanceRecord | undefined {
    return this.records.get(key);
  }

  /** Every record, in key order. */
  list(): MaintenanceRecord[] {
    return [...this.records.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  apply(command: MaintenanceCommand): MaintenanceResult {
    switch (command.type) {
      case 'BeginOccurrence':
        return this.begin(command);
      case 'Checkpoint':
        return this.checkpoint(command);
      case 'FinishOccurrence':
        return this.finish(command);
      case 'MissOccurrence':
        return this.miss(command);
    }
  }

  private begin(command: Extract<MaintenanceCommand, { type: 'BeginOccurrence' }>): MaintenanceResult {
    const { key, occurrenceMs, owner, fencingToken } = command;
    const lease = this.leaseOf(key);
    if (lease?.owner !== owner || lease.fencingToken !== fencingToken) return { type: 'Fenced', key, reason: 'NotHolder' };
    const record = this.records.get(key);
    if (record === undefined && this.records.size >= MAX_MAINTENANCE_RECORDS) {
      return { type: 'Rejected', reason: `${MAX_MAINTENANCE_RECORDS} schedules have maintenance records; no room for '${key}'` };
    }
    const settledThroughMs = record?.settledThroughMs ?? -1;
    if (occurrenceMs <= settledThroughMs) return settled(record, key, occurrenceMs);
    const current = record?.current ?? null;
    let history = record?.history ?? [];
    let run: MaintenanceRun;
    if (current?.occurrenceMs === occurrenceMs) {
      // The same runner retrying its Begin changes nothing; a new holder takes the run over.
      if (current.fencingToken === fencingToken) return { type: 'Begun', key, run: current, resumed: current.attempts > 1 };
      run = { ...current, owner, fencingToken, attempts: current.attempts + 1 };
    } else {
      // An older run that never finished is abandoned: its window closed before this one opened.
      if (current !== null) history = appendOutcome(history, abandoned(current));
      run = { occurrenceMs, owner, fencingToken, attempts: 1, checkpoint: null, checkpointToken: null };
    }
    this.records.set(key, { key, settledThroughMs: Math.max(settledThroughMs, occurrenceMs - 1), current: run, history });
    return { type: 'Begun', key, run, resumed: run.attempts > 1 };
  }

  private checkpoint(command: Extract<MaintenanceCommand, { type: 'Checkpoint' }>): MaintenanceResult {
    const record = this.records.get(command.key);
    const refusal = this.fence(record, command);
    if (refusal !== null || record?.current == null) return refusal ?? { type: 'Fenced', key: command.key, reason: 'NotBegun' };
    const run: MaintenanceRun = { ...record.current, checkpoint: command.data, checkpointToken: command.fencingToken };
    this.records.set(command.key, { ...record, current: run });
    return { type: 'Checkpointed', key: command.key, occurrenceMs: command.occurrenceMs };
  }

  private finish(command: Extract<MaintenanceCommand, { type: 'FinishOccurrence' }>): MaintenanceResult {
    const { key, occurrenceMs } = command;
    const record = this.records.get(key);
    if (record !== undefined && occurrenceMs <= record.settledThroughMs && record.current?.occurrenceMs !== occurrenceMs) {
      const outcome = record.history.find((item) => item.occurrenceMs === occurrenceMs);
      // The same finish applied twice (a retried proposal) answers as the first time.
      if (outcome !== undefined && outcome.fencingToken === command.fencingToken && outcome.owner === command.owner && outcome.result === command.result) {
        return { type: 'Finished', key, outcome, duplicate: true };
      }
      return settled(record, key, occurrenceMs);
    }
    const refusal = this.fence(record, command);
    if (refusal !== null || record?.current == null) return refusal ?? { type: 'Fenced', key, reason: 'NotBegun' };
    const outcome: OccurrenceOutcome = {
      occurrenceMs,
      result: command.result,
      owner: command.owner,
      fencingToken: command.fencingToken,
      attempts: record.current.attempts,
      // Cut at a whole character: half a surrogate pair would not survive a snapshot round trip.
      error: command.result === 'error' ? wellFormedPrefix(command.error ?? '', MAX_OUTCOME_ERROR_CHARS) : null,
    };
    this.records.set(key, { key, settledThroughMs: occurrenceMs, current: null, history: appendOutcome(record.history, outcome) });
    return { type: 'Finished', key, outcome, duplicate: false };
  }

  private miss(command: Extract<MaintenanceCommand, { type: 'MissOccurrence' }>): MaintenanceResult {
    const { key, occurrenceMs } = command;
    const record = this.records.get(key);
    if (record !== undefined && occurrenceMs <= record.settledThroughMs) return settled(record, key, occurrenceMs);
    // Whoever holds the lease may be running this occurrence (a run may outlast its window).
    if (this.leaseOf(key) !== undefined) return { type: 'Fenced', key, reason: 'LeaseHeld' };
    if (record === undefined && this.records.size >= MAX_MAINTENANCE_RECORDS) {
      return { type: 'Rejected', reason: `${MAX_MAINTENANCE_RECORDS} schedules have maintenance records; no room for '${key}'` };
    }
    const current = record?.current ?? null;
    let history = record?.history ?? [];
    let outcome: OccurrenceOutcome;
    if (current?.occurrenceMs === occurrenceMs) {
      outcome = abandoned(current);
    } else {
      if (current !== null) history = appendOutcome(history, abandoned(current));
      outcome = { occurrenceMs, result: 'missed', owner: null, fencingToken: null, attempts: 0, error: null };
    }
    this.records.set(key, { key, settledThroughMs: occurrenceMs, current: null, history: appendOutcome(history, outcome) });
    return { type: 'Missed', key, outcome };
  }

  /**
   * The fence of checkpoints and finishes: the caller must be the current run's runner, under the
   * run's token, and nobody else may hold the lease now (a new holder is about to take the run over).
   * A runner whose lease ran out with nobody taking over is still accepted: its work is not stale.
   */
  private fence(record: MaintenanceRecord | undefined, command: { readonly key: string; readonly occurrenceMs: number; readonly owner: string; readonly fencingToken: LogIndex }): MaintenanceResult | null {
    const current = record?.current;
    if (current?.occurrenceMs !== command.occurrenceMs) return { type: 'Fenced', key: command.key, reason: 'NotBegun' };
    if (current.fencingToken !== command.fencingToken || current.owner !== command.owner) return { type: 'Fenced', key: command.key, reason: 'StaleToken' };
    const lease = this.leaseOf(command.key);
    if (lease !== undefined && lease.fencingToken !== command.fencingToken) return { type: 'Fenced', key: command.key, reason: 'StaleToken' };
    return null;
  }

  /** The records as plain arrays, in key order (part of the lease table's snapshot). */
  snapshotRows(): unknown[] {
    return this.list().map((record) => [
      record.key,
      record.settledThroughMs,
      record.current === null ? null : [record.current.occurrenceMs, record.current.owner, record.current.fencingToken, record.current.attempts, record.current.checkpoint, record.current.checkpointToken],
      record.history.map((item) => [item.occurrenceMs, RESULT_CODES.indexOf(item.result), item.owner, item.fencingToken, item.attempts, item.error]),
    ]);
  }

  /** Replaces every record with `rows` from {@link snapshotRows}. Throws a `TypeError` on malformed rows and changes nothing. */
  restoreRows(rows: unknown): void {
    if (!Array.isArray(rows)) throw new TypeError('malformed maintenance records in snapshot');
    const restored = new Map<string, MaintenanceRecord>();
    for (const row of rows as unknown[]) {
      if (!Array.isArray(row) || row.length !== 4) throw new TypeError('malformed maintenance record in snapshot');
      const [key, settledThroughMs, current, history] = row as unknown[];
      if (typeof key !== 'string' || key.length === 0 || !isInteger(settledThroughMs, -1) || !Array.isArray(history) || history.length > MAINTENANCE_HISTORY_PER_SCHEDULE) {
        throw new TypeError('malformed maintenance record in snapshot');
      }
      restored.set(key, { key, settledThroughMs, current: current === null ? null : restoreRun(current), history: (history as unknown[]).map(restoreOutcome) });
    }
    if (restored.size > MAX_MAINTENANCE_RECORDS) throw new TypeError('too many maintenance records in snapshot');
    this.records.clear();
    for (const [key, record] of restored) this.records.set(key, record);
  }
}

function settled(record: MaintenanceRecord | undefined, key: string, occurrenceMs: number): MaintenanceResult {
  return { type: 'Settled', key, occurrenceMs, outcome: record?.history.find((item) => item.occurrenceMs === occurrenceMs) ?? null };
}

function abandoned(run: MaintenanceRun): OccurrenceOutcome {
  return { occurrenceMs: run.occurrenceMs, result: 'missed', owner: run.owner, fencingToken: run.fencingToken, attempts: run.attempts, error: null };
}

function appendOutcome(history: readonly OccurrenceOutcome[], outcome: OccurrenceOutcome): readonly OccurrenceOutcome[] {
  const next = [...history, outcome];
  return next.length > MAINTENANCE_HISTORY_PER_SCHEDULE ? next.slice(next.length - MAINTENANCE_HISTORY_PER_SCHEDULE) : next;
}

function isInteger(value: unknown, minimum: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= minimum;
}

function restoreRun(value: unknown): MaintenanceRun {
  if (!Array.isArray(value) || value.length !== 6) throw new TypeError('malformed maintenance run in snapshot');
  const [occurrenceMs, owner, fencingToken, attempts, checkpoint, checkpointToken] = value as unknown[];
  if (
    !isInteger(occurrenceMs, 0) ||
    typeof owner !== 'string' ||
    !isInteger(fencingToken, 1) ||
    !isInteger(attempts, 1) ||
    !(checkpoint === null || (checkpoint instanceof Uint8Array && checkpoint.byteLength <= MAX_CHECKPOINT_BYTES)) ||
    !(checkpointToken === null || isInteger(checkpointToken, 1))
  ) {
    throw new TypeError('malformed maintenance run in snapshot');
  }
  return { occurrenceMs, owner, fencingToken: fencingToken as LogIndex, attempts, checkpoint: checkpoint === null ? null : Uint8Array.from(checkpoint), checkpointToken: checkpointToken as LogIndex | null };
}

function restoreOutcome(value: unknown): OccurrenceOutcome {
  if (!Array.isArray(value) || value.length !== 6) throw new TypeError('malformed maintenance outcome in snapshot');
  const [occurrenceMs, resultCode, owner, fencingToken, attempts, error] = value as unknown[];
  const result = typeof resultCode === 'number' ? RESULT_CODES[resultCode] : undefined;
  if (
    !isInteger(occurrenceMs, 0) ||
    result === undefined ||
    !(owner === null || typeof owner === 'string') ||
    !(fencingToken === null || isInteger(fencingToken, 1)) ||
    !isInteger(attempts, 0) ||
    !(error === null || (typeof error === 'string' && error.length <= MAX_OUTCOME_ERROR_CHARS))
  ) {
    throw new TypeError('malformed maintenance outcome in snapshot');
  }
  return { occurrenceMs, result, owner, fencingToken: fencingToken as LogIndex | null, attempts, error };
}
