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
  // An insertion sort (descending) into a reused array: this runs on every acknowledgement, and a
  // cluster has a handful of voters, so allocating and sorting a fresh array each time cost more.
  const matches = matchScratch;
  const count = voters.length;
  for (let position = 0; position < count; position++) {
    const match = matchIndexOf(voters[position] as NodeId);
    let slot = position;
    for (; slot > 0 && (matches[slot - 1] as number) < match; slot--) matches[slot] = matches[slot - 1] as number;
    matches[slot] = match;
  }
  // The quorum-th largest match index is held by at least a quorum of voters.
  return count === 0 ? (0 as LogIndex) : ((matches[quorumSize(count) - 1] ?? 0) as LogIndex);
}

/** Scratch space of {@link committedIndex} (it grows to the largest voter count seen). */
const matchScratch: number[] = [];

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
