/**
 * Configuration of the Raft core, validated up front.
 *
 * @module
 */
import { ConfigError } from './errors.js';
import { LONE_SURROGATE } from './text.js';
import type { NodeId } from './types.js';

/** Options of the Raft core. Every limit has a default; see {@link DEFAULT_RAFT_OPTIONS}. */
export interface RaftOptions {
  /**
   * Ticks without hearing from a leader before a follower campaigns. The actual timeout is drawn
   * uniformly from [electionTimeoutTicks, 2·electionTimeoutTicks) each time (paper §5.2).
   */
  readonly electionTimeoutTicks: number;
  /** Ticks between leader heartbeats. Must be well below the election timeout (paper §5.6). */
  readonly heartbeatIntervalTicks: number;
  /** Run a pre-vote round before a real election, so a node that cannot win never bumps the term. */
  readonly preVote: boolean;
  /**
   * A leader that has not heard from a quorum within an election timeout steps down, and a node that
   * heard from a leader within the election timeout ignores vote requests (thesis §6.2, §9.6).
   */
  readonly checkQuorum: boolean;
  /** Most entries in one AppendEntries message. */
  readonly maxEntriesPerMessage: number;
  /** Most entry payload bytes in one AppendEntries message (one larger entry is still sent alone). */
  readonly maxBytesPerMessage: number;
  /** Most AppendEntries messages in flight to one follower in replicate state. */
  readonly maxInflightMessages: number;
  /** Most entry payload bytes in flight to one follower. */
  readonly maxInflightBytes: number;
  /** Most payload bytes the leader holds appended but not committed; proposals beyond are refused. */
  readonly maxUncommittedBytes: number;
  /** Largest single proposal in bytes. */
  readonly maxProposalBytes: number;
  /** Most committed entries handed out for applying in one Ready batch. */
  readonly maxApplyEntriesPerReady: number;
  /** Most forwarded proposal ids the leader remembers to answer duplicates instead of re-appending. */
  readonly maxRememberedForwardedProposals: number;
  /** Bytes of snapshot data per InstallSnapshot chunk. */
  readonly maxSnapshotChunkBytes: number;
  /** Most snapshot chunks in flight to one follower (flow control of snapshot transfers). */
  readonly maxInflightSnapshotChunks: number;
  /** Largest snapshot a follower accepts from a leader; a larger transfer is ignored. */
  readonly maxSnapshotBytes: number;
  /**
   * Serve linearizable reads from a leader lease instead of a heartbeat round per read (thesis §6.4.1).
   * Off by default. Safe only if no clock runs faster or slower than `maxClockDriftPpm` and no clock
   * jumps; requires `checkQuorum` and must be set on every node. See docs/architecture.md.
   */
  readonly leaseBasedReads: boolean;
  /**
   * The assumed bound ρ on any node's clock drift, in parts per million (e.g. 200). Required (> 0)
   * with `leaseBasedReads`; the lease is shortened by the factor (1 − 2ρ).
   */
  readonly maxClockDriftPpm: number;
  /**
   * Deliberate protocol bugs, for proving that the simulator's checkers catch them. Never set this
   * outside such tests: each one breaks Raft's safety.
   *
   * @internal
   */
  readonly testOnlyBugs: readonly InjectedBug[];
}

/**
 * Protocol bugs that can be switched on to test the checkers (see `test/sim/teeth.test.ts`):
 * - `CommitPreviousTermByCounting`: commit an entry of an earlier term by counting replicas (§5.4.2).
 * - `VoteWithoutUpToDateCheck`: grant votes without the log comparison (§5.4.1).
 * - `ReplyBeforePersistingVote`: send a granted vote before the vote is durable.
 * - `SkipConflictTruncation`: keep conflicting entries instead of truncating them (§5.3).
 * - `ReadWithoutLeadershipCheck`: answer reads from the commit index without a heartbeat round (§6.4).
 * - `ReadLeaseTooLong`: with lease-based reads, trust the lease for three election timeouts (§6.4.1).
 *
 * @internal
 */
export type InjectedBug =
  | 'CommitPreviousTermByCounting'
  | 'VoteWithoutUpToDateCheck'
  | 'ReplyBeforePersistingVote'
  | 'SkipConflictTruncation'
  | 'ReadWithoutLeadershipCheck'
  | 'ReadLeaseTooLong';

/** Every {@link InjectedBug}. @internal */
export const INJECTED_BUGS: readonly InjectedBug[] = [
  'CommitPreviousTermByCounting',
  'VoteWithoutUpToDateCheck',
  'ReplyBeforePersistingVote',
  'SkipConflictTruncation',
  'ReadWithoutLeadershipCheck',
  'ReadLeaseTooLong',
];

/** Full configuration of one Raft node. */
export interface RaftConfig extends RaftOptions {
  /** This node. */
  readonly id: NodeId;
  /**
   * The initial voting members (the bootstrap configuration), the same list on every founding node.
   * Once the log or a snapshot holds a membership entry, that is authoritative instead. Empty for a
   * node that joins a running cluster: it learns the membership from the leader after being added.
   */
  readonly voters: readonly NodeId[];
}

/** Defaults chosen for a 100 ms tick: 1 s to 2 s election timeout, 100 ms heartbeats. */
export const DEFAULT_RAFT_OPTIONS: RaftOptions = Object.freeze({
  electionTimeoutTicks: 10,
  heartbeatIntervalTicks: 1,
  preVote: true,
  checkQuorum: true,
  maxEntriesPerMessage: 512,
  maxBytesPerMessage: 1024 * 1024,
  maxInflightMessages: 256,
  maxInflightBytes: 16 * 1024 * 1024,
  maxUncommittedBytes: 64 * 1024 * 1024,
  maxProposalBytes: 1024 * 1024,
  maxApplyEntriesPerReady: 4096,
  maxRememberedForwardedProposals: 4096,
  maxSnapshotChunkBytes: 512 * 1024,
  maxInflightSnapshotChunks: 4,
  maxSnapshotBytes: 1024 * 1024 * 1024,
  leaseBasedReads: false,
  maxClockDriftPpm: 0,
  testOnlyBugs: [],
});

/** Most voters a configuration may name; a bound, not a recommendation (use 3 or 5). */
export const MAX_VOTERS = 64;
/** Longest node id in UTF-16 code units. */
export const MAX_NODE_ID_LENGTH = 128;

/**
 * Fills defaults and validates every field. Throws a {@link ConfigError} naming the first bad field.
 *
 * @example
 * ```ts
 * const config = resolveRaftConfig({ id: nodeId('n1'), voters: ['n1', 'n2', 'n3'].map(nodeId) });
 * ```
 */
export function resolveRaftConfig(
  input: { readonly id: NodeId; readonly voters: readonly NodeId[] } & Partial<RaftOptions>,
): RaftConfig {
  const config: RaftConfig = { ...DEFAULT_RAFT_OPTIONS, ...stripUndefined(input) };
  validateNodeId('id', config.id);
  const votersValue: unknown = config.voters;
  if (!Array.isArray(votersValue)) {
    throw new ConfigError('voters', 'must be an array of node ids (empty for a node that joins a running cluster)');
  }
  if (config.voters.length > MAX_VOTERS) {
    throw new ConfigError('voters', `at most ${MAX_VOTERS} voters, got ${config.voters.length}`);
  }
  const seen = new Set<string>();
  for (const voter of config.voters as readonly unknown[]) {
    validateNodeId('voters', voter);
    if (typeof voter !== 'string') continue;
    if (seen.has(voter)) throw new ConfigError('voters', `'${voter}' is listed twice`);
    seen.add(voter);
  }
  positiveInteger('electionTimeoutTicks', config.electionTimeoutTicks, 1_000_000);
  positiveInteger('heartbeatIntervalTicks', config.heartbeatIntervalTicks, 1_000_000);
  if (config.heartbeatIntervalTicks >= config.electionTimeoutTicks) {
    throw new ConfigError(
      'heartbeatIntervalTicks',
      `must be less than electionTimeoutTicks (${config.electionTimeoutTicks}), got ${config.heartbeatIntervalTicks}`,
    );
  }
  boolean('preVote', config.preVote);
  boolean('checkQuorum', config.checkQuorum);
  positiveInteger('maxEntriesPerMessage', config.maxEntriesPerMessage, 1_000_000);
  positiveInteger('maxBytesPerMessage', config.maxBytesPerMessage, 1 << 30);
  positiveInteger('maxInflightMessages', config.maxInflightMessages, 1_000_000);
  positiveInteger('maxInflightBytes', config.maxInflightBytes, 2 ** 40);
  positiveInteger('maxUncommittedBytes', config.maxUncommittedBytes, 2 ** 40);
  positiveInteger('maxProposalBytes', config.maxProposalBytes, 1 << 30);
  positiveInteger('maxApplyEntriesPerReady', config.maxApplyEntriesPerReady, 1_000_000);
  positiveInteger('maxRememberedForwardedProposals', config.maxRememberedForwardedProposals, 1_000_000);
  positiveInteger('maxSnapshotChunkBytes', config.maxSnapshotChunkBytes, 64 * 1024 * 1024);
  positiveInteger('maxInflightSnapshotChunks', config.maxInflightSnapshotChunks, 1024);
  positiveInteger('maxSnapshotBytes', config.maxSnapshotBytes, 2 ** 40);
  boolean('leaseBasedReads', config.leaseBasedReads);
  if (typeof config.maxClockDriftPpm !== 'number' || !Number.isSafeInteger(config.maxClockDriftPpm) || config.maxClockDriftPpm < 0 || config.maxClockDriftPpm > 100_000) {
    throw new ConfigError('maxClockDriftPpm', `must be an integer in [0, 100000], got ${String(config.maxClockDriftPpm)}`);
  }
  if (config.leaseBasedReads) {
    if (!config.checkQuorum) throw new ConfigError('leaseBasedReads', 'needs checkQuorum: the lease rests on followers refusing votes while they hear from the leader');
    if (config.maxClockDriftPpm === 0) throw new ConfigError('maxClockDriftPpm', 'leaseBasedReads needs a clock drift bound: set maxClockDriftPpm (e.g. 200)');
    if (leaseDurationTicks(config) < 1) {
      throw new ConfigError('electionTimeoutTicks', `too short for leaseBasedReads with a ${config.maxClockDriftPpm} ppm drift bound; raise it`);
    }
  }
  const bugs: unknown = config.testOnlyBugs;
  if (!Array.isArray(bugs) || !bugs.every((bug) => INJECTED_BUGS.includes(bug as InjectedBug))) {
    throw new ConfigError('testOnlyBugs', `must list only ${INJECTED_BUGS.join(', ')}`);
  }
  return Object.freeze({ ...config, voters: Object.freeze(config.voters.slice()) });
}

/**
 * How many of its own ticks a leader may serve reads from its lease after sending a heartbeat that a
 * quorum acknowledged. A follower that received that heartbeat refuses votes for at least
 * `electionTimeoutTicks − 1` of its ticks; with clock rates within (1 ± ρ), that lasts longer than
 * `(electionTimeoutTicks − 1)·(1 − 2ρ) − 1` leader ticks (the −1 covers the leader's tick granularity).
 */
export function leaseDurationTicks(config: Pick<RaftOptions, 'electionTimeoutTicks' | 'maxClockDriftPpm'>): number {
  return Math.floor(((config.electionTimeoutTicks - 1) * (1_000_000 - 2 * config.maxClockDriftPpm)) / 1_000_000) - 1;
}

function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function validateNodeId(field: string, value: unknown): void {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ConfigError(field, `node ids must be non-empty strings, got ${typeof value === 'string' ? 'an empty string' : typeof value}`);
  }
  if (value.length > MAX_NODE_ID_LENGTH) {
    throw new ConfigError(field, `node id longer than ${MAX_NODE_ID_LENGTH} characters`);
  }
  // Ids travel as UTF-8; a lone surrogate would arrive as a different id.
  if (LONE_SURROGATE.test(value)) throw new ConfigError(field, `node id '${value}' is not well-formed Unicode`);
}

/**
 * Checks an integer option in `[1, max]` and returns it; throws a {@link ConfigError} naming `field`
 * otherwise. Shared by every layer's option checks.
 */
export function positiveInteger(field: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new ConfigError(field, `must be an integer in [1, ${max}], got ${String(value)}`);
  }
  return value;
}

function boolean(field: string, value: unknown): void {
  if (typeof value !== 'boolean') throw new ConfigError(field, `must be true or false, got ${String(value)}`);
}
