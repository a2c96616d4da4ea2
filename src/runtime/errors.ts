/**
 * Typed errors with which `RaftNode.propose` rejects.
 *
 * @module
 */
import { RaftLeaseError, type NodeId } from '../raft/index.js';

/** This node cannot accept the request; `leaderHint` names the leader to retry on, when known. */
export class NotLeaderError extends RaftLeaseError {
  readonly leaderHint: NodeId | null;

  constructor(leaderHint: NodeId | null, detail = '') {
    super(
      'NotLeader',
      `not the leader${detail === '' ? '' : ` (${detail})`}; ${leaderHint === null ? 'no leader is known yet, retry after an election' : `retry on ${leaderHint}`}`,
    );
    this.name = 'NotLeaderError';
    this.leaderHint = leaderHint;
  }
}

/** The proposal was not committed and never will be; it is safe to retry. */
export class ProposalDroppedError extends RaftLeaseError {
  constructor(reason: string) {
    super('ProposalDropped', `proposal dropped: ${reason}; it was not applied and may be retried`);
    this.name = 'ProposalDroppedError';
  }
}

/**
 * The proposal's outcome is unknown: it may or may not commit later. Retry only if the command is
 * idempotent (or carries a request id the state machine deduplicates).
 */
export class ProposalTimeoutError extends RaftLeaseError {
  constructor(timeoutMs: number) {
    super('Timeout', `no outcome within ${timeoutMs} ms; the proposal may still be applied later`);
    this.name = 'ProposalTimeoutError';
  }
}

/**
 * A node that may have appended the proposal earlier (as leader, before losing leadership or
 * restarting) cannot tell whether it did: the proposal may still be applied. Retry only if the
 * command is idempotent.
 */
export class OutcomeUnknownError extends RaftLeaseError {
  constructor(detail: string) {
    super('OutcomeUnknown', `proposal outcome unknown: ${detail}; it may still be applied`);
    this.name = 'OutcomeUnknownError';
  }
}

/** The node is stopped (or stopping); the proposal's outcome is unknown if it was already sent. */
export class StoppedError extends RaftLeaseError {
  constructor(detail = 'the node is stopped') {
    super('Stopped', detail);
    this.name = 'StoppedError';
  }
}
