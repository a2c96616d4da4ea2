import { describe, expect, it } from 'vitest';
import { nodeId, term, type VoteResponse } from '../../src/raft/index.js';
import { TestCluster } from '../support/cluster.js';

function preVoteGrant(from: string, to: string, grantedForTerm: number): VoteResponse {
  return { type: 'VoteResponse', from: nodeId(from), to: nodeId(to), term: term(grantedForTerm), preVote: true, granted: true };
}

describe('thesis §9.6 pre-vote', () => {
  it('counts a granted pre-vote only for the term this round asks about (term + 1)', () => {
    const cluster = new TestCluster(['n1', 'n2', 'n3']);
    const n3 = cluster.node('n3');
    n3.campaign();
    expect(n3.status()).toMatchObject({ role: 'PreCandidate', term: 0 });
    // A late grant from an earlier round, for the term n3 is already in, must not count.
    n3.step(preVoteGrant('n1', 'n3', 0));
    expect(n3.status()).toMatchObject({ role: 'PreCandidate', term: 0 });
    // A grant for term 1 completes the majority: n3 starts the real election in term 1.
    n3.step(preVoteGrant('n1', 'n3', 1));
    expect(n3.status()).toMatchObject({ role: 'Candidate', term: 1 });
  });

  it('a follower that heard from its leader within the election timeout ignores pre-votes, even without CheckQuorum', () => {
    const cluster = new TestCluster(['n1', 'n2', 'n3'], { checkQuorum: false });
    cluster.campaign('n1');
    cluster.deliverAll();
    expect(cluster.leaders()).toEqual(['n1']);
    cluster.campaign('n3');
    cluster.deliverAll();
    expect(cluster.node('n3').status().role).not.toBe('Candidate');
    expect(cluster.leaders()).toEqual(['n1']);
    expect(cluster.node('n1').status().term).toBe(1);
  });
});

describe('messages from outside the configuration', () => {
  it('a removed server cannot disrupt a healthy cluster: its vote requests are ignored while the leader is heard from (thesis §4.2.3)', () => {
    const cluster = new TestCluster(['n1', 'n2', 'n3']);
    cluster.campaign('n1');
    cluster.deliverAll();
    const n2 = cluster.node('n2');
    for (const preVote of [true, false]) {
      n2.step({
        type: 'VoteRequest',
        from: nodeId('removed'),
        to: nodeId('n2'),
        term: term(99),
        preVote,
        lastLogIndex: 100 as never,
        lastLogTerm: term(98),
        leadershipTransfer: false,
      });
    }
    cluster.flush('n2');
    expect(n2.status()).toMatchObject({ term: 1, leader: 'n1', vote: 'n1' });
    expect(cluster.queue.filter((message) => message.to === 'removed')).toEqual([]);
  });

  it('appends from a leader this node does not know yet are accepted, so a node that lags behind a membership change can learn it', () => {
    const cluster = new TestCluster(['n1', 'n2', 'n3']);
    const n2 = cluster.node('n2');
    n2.step({
      type: 'AppendRequest',
      from: nodeId('n4'),
      to: nodeId('n2'),
      term: term(2),
      prevLogIndex: 0 as never,
      prevLogTerm: term(0),
      entries: [],
      leaderCommit: 0 as never,
    });
    expect(n2.status()).toMatchObject({ term: 2, leader: 'n4' });
  });
});
