/**
 * Property tests of the majority arithmetic against naive, brute-force models.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { committedIndex, quorumSize, voteOutcome, type VoteOutcome } from '../../src/raft/quorum.js';
import type { LogIndex, NodeId } from '../../src/raft/types.js';

const SEED = 0x5eed_0001;
const NUM_RUNS = 2_000;

/** 1..9 distinct voter ids. */
const votersArb = fc.uniqueArray(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 9 }).map((ids) => ids.map((id) => `n${id}` as NodeId));

/** A match index: mostly small (so ties are frequent), sometimes huge. */
const matchArb = fc.oneof({ weight: 4, arbitrary: fc.nat(12) }, { weight: 1, arbitrary: fc.maxSafeNat() });

/** Naive: the largest N such that strictly more than half of the voters have match ≥ N. */
function naiveCommittedIndex(voters: readonly NodeId[], matchOf: (voter: NodeId) => number): number {
  const matches = voters.map(matchOf);
  const candidates = [0, ...matches];
  let best = 0;
  for (const candidate of candidates) {
    const holders = matches.filter((match) => match >= candidate).length;
    if (2 * holders > voters.length && candidate > best) best = candidate;
  }
  return best;
}

/** Naive tally: Won at a majority of grants; Lost once a majority is out of reach; else Pending. */
function naiveVoteOutcome(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteOutcome {
  let granted = 0;
  let unanswered = 0;
  for (const voter of voters) {
    const vote = votes.get(voter);
    if (vote === true) granted++;
    else if (vote === undefined) unanswered++;
  }
  if (2 * granted > voters.length) return 'Won';
  if (2 * (granted + unanswered) <= voters.length) return 'Lost';
  return 'Pending';
}

describe('quorumSize', () => {
  it('is the smallest strict majority', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000 }), (count) => {
        const size = quorumSize(count);
        expect(2 * size).toBeGreaterThan(count);
        expect(2 * (size - 1)).toBeLessThanOrEqual(count);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});

describe('committedIndex', () => {
  it('equals the largest index held by a strict majority (brute force)', () => {
    fc.assert(
      fc.property(
        votersArb.chain((voters) => fc.tuple(fc.constant(voters), fc.array(matchArb, { minLength: voters.length, maxLength: voters.length }))),
        ([voters, matchList]) => {
          const matchMap = new Map(voters.map((voter, position) => [voter, matchList[position] ?? 0]));
          const matchOf = (voter: NodeId): number => {
            const match = matchMap.get(voter);
            if (match === undefined) throw new Error(`asked for the match of non-voter ${voter}`);
            return match;
          };
          const actual = committedIndex(voters, (voter) => matchOf(voter) as LogIndex);
          expect(actual).toBe(naiveCommittedIndex(voters, matchOf));
        },
      ),
      { seed: SEED, numRuns: NUM_RUNS },
    );
  });

  it('does not depend on the order of the voters', () => {
    fc.assert(
      fc.property(
        votersArb.chain((voters) =>
          fc.tuple(fc.constant(voters), fc.array(matchArb, { minLength: voters.length, maxLength: voters.length }), fc.shuffledSubarray(voters, { minLength: voters.length })),
        ),
        ([voters, matchList, shuffled]) => {
          const matchMap = new Map(voters.map((voter, position) => [voter, (matchList[position] ?? 0) as LogIndex]));
          const matchOf = (voter: NodeId): LogIndex => matchMap.get(voter) ?? (0 as LogIndex);
          expect(committedIndex(shuffled, matchOf)).toBe(committedIndex(voters, matchOf));
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('never decreases when one voter’s match index rises', () => {
    fc.assert(
      fc.property(
        votersArb.chain((voters) =>
          fc.tuple(
            fc.constant(voters),
            fc.array(fc.nat(12), { minLength: voters.length, maxLength: voters.length }),
            fc.nat(voters.length - 1),
            fc.integer({ min: 1, max: 5 }),
          ),
        ),
        ([voters, matchList, which, raise]) => {
          const before = new Map(voters.map((voter, position) => [voter, (matchList[position] ?? 0) as LogIndex]));
          const after = new Map(before);
          const raised = voters[which];
          if (raised === undefined) throw new Error('voter index out of range');
          after.set(raised, ((before.get(raised) ?? 0) + raise) as LogIndex);
          const committedBefore = committedIndex(voters, (voter) => before.get(voter) ?? (0 as LogIndex));
          const committedAfter = committedIndex(voters, (voter) => after.get(voter) ?? (0 as LogIndex));
          expect(committedAfter).toBeGreaterThanOrEqual(committedBefore);
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });
});

/** An answer of one voter: granted, rejected or not (yet) answered. */
const answerArb = fc.constantFrom<boolean | undefined>(true, false, undefined);

describe('voteOutcome', () => {
  it('matches a naive tally for random subsets of answers (non-voters ignored)', () => {
    fc.assert(
      fc.property(
        votersArb.chain((voters) =>
          fc.tuple(
            fc.constant(voters),
            fc.array(answerArb, { minLength: voters.length, maxLength: voters.length }),
            // Votes from nodes that are not voters (ids n21..n30 never collide with voters).
            fc.array(fc.tuple(fc.integer({ min: 21, max: 30 }), fc.boolean()), { maxLength: 5 }),
          ),
        ),
        ([voters, answers, strangers]) => {
          const votes = new Map<NodeId, boolean>();
          for (const [id, granted] of strangers) votes.set(`n${id}` as NodeId, granted);
          voters.forEach((voter, position) => {
            const answer = answers[position];
            if (answer !== undefined) votes.set(voter, answer);
          });
          expect(voteOutcome(voters, votes)).toBe(naiveVoteOutcome(voters, votes));
        },
      ),
      { seed: SEED, numRuns: NUM_RUNS },
    );
  });

  it('once decided, stays decided as more answers arrive', () => {
    fc.assert(
      fc.property(
        votersArb.chain((voters) =>
          fc.tuple(fc.constant(voters), fc.array(fc.boolean(), { minLength: voters.length, maxLength: voters.length }), fc.shuffledSubarray(voters, { minLength: voters.length })),
        ),
        ([voters, answers, order]) => {
          const answerOf = new Map(voters.map((voter, position) => [voter, answers[position] ?? false]));
          const votes = new Map<NodeId, boolean>();
          let decided: VoteOutcome = voteOutcome(voters, votes);
          expect(decided).toBe('Pending');
          for (const voter of order) {
            votes.set(voter, answerOf.get(voter) ?? false);
            const outcome = voteOutcome(voters, votes);
            if (decided !== 'Pending') expect(outcome).toBe(decided);
            decided = outcome;
          }
          // With every answer in, the election is decided.
          expect(decided).not.toBe('Pending');
        },
      ),
      { seed: SEED, numRuns: 500 },
    );
  });
});
