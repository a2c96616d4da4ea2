/**
 * Majority arithmetic, kept apart from the protocol so it can be checked against a naive model.
 *
 * @module
 */
import type { LogIndex, NodeId } from './types.js';

/** Smallest number of voters that forms a majority. */
export function quorumSize(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The highest index that a majority of `voters` hold: the commit candidate (paper §5.3). A voter with
 * no known match counts as 0.
 */
export function committedIndex(voters: readonly NodeId[], matchIndexOf: (voter: NodeId) => LogIndex): LogIndex {
  const matches = voters.map(matchIndexOf).sort((a, b) => b - a);
  // The quorum-th largest match index is held by at least a quorum of voters.
  return matches[quorumSize(voters.length) - 1] ?? (0 as LogIndex);
}

/** Outcome of an election so far. */
export type VoteOutcome = 'Won' | 'Lost' | 'Pending';

/**
 * Tallies the votes received. `votes` maps a voter to whether it granted; voters absent from it have
 * not answered. Votes from non-voters are ignored.
 */
export function voteOutcome(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteOutcome {
  let granted = 0;
  let rejected = 0;
  for (const voter of voters) {
    const vote = votes.get(voter);
    if (vote === true) granted++;
    else if (vote === false) rejected++;
  }
  const quorum = quorumSize(voters.length);
  if (granted >= quorum) return 'Won';
  if (rejected > voters.length - quorum) return 'Lost';
  return 'Pending';
}
