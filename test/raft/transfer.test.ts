/**
 * Thesis §3.10 leadership transfer: the leader stops taking proposals, brings the target up to date,
 * sends it TimeoutNow; the target campaigns at once, and voters grant it even within their leader lease.
 */
import { describe, expect, it } from 'vitest';
import { nodeId, term, type Message } from '../../src/raft/index.js';
import type { TestCluster} from '../support/cluster.js';
import { electedCluster } from '../support/cluster.js';


const sent = (cluster: TestCluster, type: Message['type']): Message[] => cluster.queue.filter((message) => message.type === type);

describe('thesis §3.10 leadership transfer', () => {
  it('an up-to-date target gets TimeoutNow at once and wins the next term, though the voters still hear the old leader', () => {
    const cluster = electedCluster();
    expect(cluster.node('n1').transferLeadership(nodeId('n2'))).toEqual({ kind: 'Started' });
    cluster.flush('n1');
    expect(sent(cluster, 'TimeoutNow').map((message) => message.to)).toEqual(['n2']);
    cluster.deliverAll();
    expect(cluster.leaders()).toEqual(['n2']);
    expect(cluster.node('n2').status().term).toBe(2);
    // The vote requests were marked as a transfer, which is why n3 granted within its lease.
    expect(cluster.trace.some((line) => line.startsWith('n2->n3 VoteRequest term=2 transfer'))).toBe(true);
  });

  it('a lagging target is caught up first; TimeoutNow follows its acknowledgement of the last entry', () => {
    const cluster = electedCluster();
    cluster.partition(['n3'], ['n1', 'n2']);
    cluster.propose('n1', 'a');
    cluster.propose('n1', 'b');
    cluster.deliverAll();
    cluster.heal();
    const lastIndex = cluster.node('n1').status().lastIndex;
    expect(cluster.node('n3').status().lastIndex).toBeLessThan(lastIndex);
    cluster.node('n1').transferLeadership(nodeId('n3'));
    cluster.flush('n1');
    expect(sent(cluster, 'TimeoutNow')).toEqual([]);
    cluster.deliverAll();
    expect(cluster.leaders()).toEqual(['n3']);
    expect(cluster.node('n3').status().lastIndex).toBeGreaterThan(lastIndex);
    expect(cluster.appliedData('n3')).toEqual(['a', 'b']);
  });

  it('refuses proposals while the transfer runs, naming the target', () => {
    const cluster = electedCluster();
    cluster.partition(['n2'], ['n1', 'n3']);
    cluster.node('n1').transferLeadership(nodeId('n2'));
    expect(cluster.node('n1').propose(new Uint8Array([1]))).toEqual({ kind: 'Refused', refusal: 'ProposalDropped', leaderHint: 'n2' });
  });

  it('is abandoned after an election timeout when the target does not take over; the leader goes on', () => {
    const cluster = electedCluster();
    cluster.partition(['n2'], ['n1', 'n3']);
    cluster.node('n1').transferLeadership(nodeId('n2'));
    for (let tick = 0; tick < 10; tick++) {
      cluster.tick('n1');
      cluster.deliverAll();
    }
    expect(cluster.leaders()).toEqual(['n1']);
    expect(cluster.node('n1').raft.leadershipTransferTarget()).toBeNull();
    expect(cluster.node('n1').propose(new Uint8Array([1])).kind).toBe('Appended');
  });

  it('only a leader transfers, only to a voter; the leader itself is a no-op', () => {
    const cluster = electedCluster();
    expect(cluster.node('n2').transferLeadership(nodeId('n3'))).toEqual({ kind: 'Refused', reason: 'NotLeader' });
    expect(cluster.node('n1').transferLeadership(nodeId('n9'))).toEqual({ kind: 'Refused', reason: 'UnknownTarget' });
    expect(cluster.node('n1').transferLeadership(nodeId('n1'))).toEqual({ kind: 'AlreadyLeader' });
  });

  it('a TimeoutNow from a node that is not the current leader is ignored', () => {
    const cluster = electedCluster();
    cluster.node('n3').step({ type: 'TimeoutNow', from: nodeId('n2'), to: nodeId('n3'), term: term(1) });
    cluster.flush('n3');
    expect(cluster.node('n3').status()).toMatchObject({ role: 'Follower', term: 1, leader: 'n1' });
  });
});

describe('forwarded proposals and former leaders', () => {
  it('a former leader answers a duplicate of a request it appended with where it landed, not NotLeader', () => {
    const cluster = electedCluster();
    cluster.node('n2').propose(new TextEncoder().encode('once'), 77);
    cluster.flush('n2');
    const request = cluster.queue.find((message) => message.type === 'ProposeRequest');
    if (request === undefined) throw new Error('no forwarded request');
    cluster.deliverAll();
    // n1 hands leadership to n3, then the network delivers a duplicate of the old request to n1.
    cluster.node('n1').transferLeadership(nodeId('n3'));
    cluster.flush('n1');
    cluster.deliverAll();
    expect(cluster.leaders()).toEqual(['n3']);
    cluster.deliverOne(request);
    const answers = cluster.queue.filter((message) => message.type === 'ProposeResponse');
    expect(answers).toMatchObject([{ to: 'n2', requestId: 77, refusal: null }]);
    expect(cluster.appliedData('n3').filter((text) => text === 'once')).toHaveLength(1);
  });

  it('a restarted former leader cannot tell whether it appended a request of a term it may have led: OutcomeUnknown', () => {
    const cluster = electedCluster();
    cluster.start('n1');
    cluster.deliverOne({ type: 'ProposeRequest', from: nodeId('n2'), to: nodeId('n1'), term: term(0), requestId: 5, leaderTerm: term(1), data: new Uint8Array([1]) });
    expect(cluster.queue.filter((message) => message.type === 'ProposeResponse')).toMatchObject([{ to: 'n2', requestId: 5, refusal: 'OutcomeUnknown' }]);
  });
});

describe('a refused forwarded proposal is never appended later', () => {
  it('a duplicate gets the same refusal in the same term, and NotLeader from a leader of a later term', () => {
    const cluster = electedCluster();
    cluster.partition(['n3'], ['n1', 'n2']);
    cluster.node('n1').transferLeadership(nodeId('n3'));
    const request: Message = { type: 'ProposeRequest', from: nodeId('n2'), to: nodeId('n1'), term: term(0), requestId: 42, leaderTerm: term(1), data: new Uint8Array([7]) };
    cluster.deliverOne(request);
    expect(cluster.queue.filter((message) => message.type === 'ProposeResponse')).toMatchObject([{ requestId: 42, refusal: 'ProposalDropped' }]);
    cluster.dropAll();
    // The transfer lapses; the duplicate in the same term gets the same refusal.
    for (let tick = 0; tick < 10; tick++) cluster.tick('n1');
    cluster.dropAll();
    cluster.deliverOne(request);
    expect(cluster.queue.filter((message) => message.type === 'ProposeResponse')).toMatchObject([{ requestId: 42, refusal: 'ProposalDropped' }]);
    cluster.dropAll();
    // n1 leads again in a later term: a duplicate meant for term 1 is still not appended.
    cluster.heal();
    cluster.campaign('n2');
    cluster.deliverAll();
    cluster.campaign('n1');
    cluster.deliverAll();
    expect(cluster.leaders()).toEqual(['n1']);
    const lastIndex = cluster.node('n1').status().lastIndex;
    cluster.deliverOne(request);
    expect(cluster.queue.filter((message) => message.type === 'ProposeResponse')).toMatchObject([{ requestId: 42, refusal: 'ProposalDropped' }]);
    expect(cluster.node('n1').status().lastIndex).toBe(lastIndex);
  });
});
