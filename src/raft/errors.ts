/**
 * Errors shared by every layer.
 *
 * Two kinds of failure exist, and they never mix:
 * - an *expected* outcome (not leader, bad config, malformed input) is a {@link RaftLeaseError} with a
 *   stable `code` and a message that says what to do;
 * - a *broken invariant* is an {@link InvariantError}: a bug. It is thrown, never caught and swallowed.
 *
 * @module
 */

/** Codes of every expected error that raftlease raises. */
export type ErrorCode =
  | 'InvalidConfig'
  | 'MalformedMessage'
  | 'NotLeader'
  | 'ProposalDropped'
  | 'ProposalTooLarge'
  | 'Timeout'
  | 'Stopped'
  | 'TooManyPendingProposals'
  | 'OutcomeUnknown'
  | 'StorageFailed'
  | 'MembershipChangeInProgress'
  | 'LearnerNotCaughtUp'
  | 'InvalidMembershipChange'
  | 'SnapshotFailed'
  | 'LeaseLost'
  | 'InvalidArgument';

/**
 * Base class of every expected error. Match on `code`, not on the class or the message.
 *
 * @example
 * ```ts
 * try { await node.propose(data); }
 * catch (error) {
 *   if (error instanceof RaftLeaseError && error.code === 'NotLeader') retryOn(error.leaderHint);
 * }
 * ```
 */
export class RaftLeaseError extends Error {
  /** Stable machine-readable kind of the failure. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RaftLeaseError';
    this.code = code;
  }
}

/** A configuration value is missing or out of range. `field` names it. */
export class ConfigError extends RaftLeaseError {
  /** The offending configuration field, e.g. `electionTimeoutTicks`. */
  readonly field: string;

  constructor(field: string, message: string) {
    super('InvalidConfig', `invalid config field '${field}': ${message}`);
    this.name = 'ConfigError';
    this.field = field;
  }
}

/** Bytes that should hold a Raft message do not. The connection or input that produced it is suspect. */
export class DecodeError extends RaftLeaseError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MalformedMessage', `malformed message: ${message}`, options);
    this.name = 'DecodeError';
  }
}

/**
 * A broken invariant: a bug in raftlease or memory corruption, never a user mistake. It stays on in
 * production (a replica that limps on with a broken invariant can lose acknowledged data).
 */
export class InvariantError extends Error {
  readonly code = 'Invariant' as const;

  constructor(message: string) {
    super(`invariant violated: ${message}`);
    this.name = 'InvariantError';
  }
}

/**
 * Throws an {@link InvariantError} unless `condition` holds. Keep each assertion to one fact, so the
 * failing one is obvious.
 */
export function invariant(condition: boolean, message: string | (() => string)): asserts condition {
  if (!condition) throw new InvariantError(typeof message === 'string' ? message : message());
}

/** Marks a switch as exhaustive: the compiler rejects a call with a value that is not `never`. */
export function assertNever(value: never, what: string): never {
  throw new InvariantError(`unexpected ${what}: ${String(value)}`);
}
