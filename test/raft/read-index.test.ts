/**
 * Thesis §6.4: linearizable reads without writing to the log. The leader (1) has committed an entry
 * of its own term, (2) records its commit index as the read index, (3) confirms it is still the leader
 * with a heartbeat round that started after the read arrived, (4) waits to apply the read index.
 */
import { describe, expect, it } from 'vitest';
import type { ReadState } from '../../src/raft/index.js';
import { TestCluster, electedCluster } from '../support/cluster.js';

/** Read states `id` reported since the last call (TestCluster records them as it flushes). */
function readStatesOf(cluster: TestCluster, id: string): ReadState[] {
  cluster.flush(id);
  const states = cluster.readStates.get(id as never) ?? [];
  cluster.readStates.delete(id as never);
  return states;
}


describe('thesis §6.4 ReadIndex', () => {
  it('the leader answers with its commit index only after a quorum answered a heartbeat sent after the read', () => {
    const cluster = electedCluster();
    cluster.propose('n1', 'x');
    cluster.deliverAll();
    const commit = cluster.node('n1').status().commitIndex;
    expect(cluster.node('n1').readIndex(7)).toEqual({ kind: 'Pending' });
    // The read goes out as a heartbeat round; no answer yet.
    expect(readStatesOf(cluster, 'n1')).toEqual([]);
    const contexts = cluster.queue.flatMap((message) => (message.type === 'Heartbeat' ? [message.context] : []));
    expect(contexts).toHaveLength(2);
    expect(contexts.every((context) => context > 0)).toBe(true);
    // Deliver the heartbeat to n2 only and its answer back: n1 + n2 is a quorum of three.
    cluster.queue = cluster.queue.filter((message) => message.to === 'n2');
    cluster.deliverAll();
    expect(readStatesOf(cluster, 'n1')).toEqual([{ requestId: 7, index: commit, refusal: null, leaderHint: 'n1' }]);
  });

  it('a round whose heartbeats were lost is confirmed by the next periodic heartbeat, which carries a newer read context', () => {
    const cluster = electedCluster();
    cluster.propose('n1', 'x');
    cluster.deliverAll();
    const commit = cluster.node('n1').status().commitIndex;
    cluster.node('n1').readIndex(4);
    cluster.flush('n1');
    const roundContext = Math.max(...cluster.queue.flatMap((message) => (message.type === 'Heartbeat' ? [message.context] : [])));
    // The round's own heartbeats are lost.
    cluster.dropAll();
    expect(readStatesOf(cluster, 'n1')).toEqual([]);
    // Tick until the leader's next periodic heartbeat: it carries a context newer than the round's.
    const later: number[] = [];
    for (let tick = 0; tick < 20 && later.length === 0; tick++) {
      cluster.tick('n1');
      cluster.flush('n1');
      later.push(...cluster.queue.flatMap((message) => (message.type === 'Heartbeat' ? [message.context] : [])));
    }
    expect(later.length).toBeGreaterThan(0);
    expect(later.every((context) => context > roundContext)).toBe(true);
    cluster.deliverAll();
    expect(readStatesOf(cluster, 'n1')).toEqual([{ requestId: 4, index: commit, refusal: null, leaderHint: 'n1' }]);
    // With no read waiting, periodic heartbeats go back to carrying no context.
    const idle: number[] = [];
    for (let tick = 0; tick < 20 && idle.length === 0; tick++) {
      cluster.tick('n1');
      cluster.flush('n1');
      idle.push(...cluster.queue.flatMap((message) => (message.type === 'Heartbeat' ? [message.context] : [])));
    }
    expect(idle.length).toBeGreaterThan(0);
    expect(idle.every((context) => context === 0)).toBe(true);
  });

  it('a new leader defers reads until it has committed an entry of its own term', () => {
    const cluster = new TestCluster(['n1', 'n2', 'n3']);
    cluster.campaign('n1');
    // Deliver the votes but hold back the no-op's replication.
    cluster.deliverAll((message) => message.type === 'VoteRequest' || message.type === 'VoteResponse');
    expect(cluster.leaders()).toEqual(['n1']);
    const n1 = cluster.node('n1');
    expect(n1.status().commitIndex).toBe(0);
    n1.readIndex(1);
    expect(readStatesOf(cluster, 'n1')).toEqual([]);
    expect(cluster.queue.some((message) => message.type === 'Heartbeat' && message.context > 0)).toBe(false);
    // Once the no-op commits, the read is confirmed with a heartbeat round and answered.
    cluster.deliverAll();
    cluster.tick('n1');
    cluster.deliverAll();
    expect(n1.status().commitIndex).toBeGreaterThanOrEqual(1);
    expect(readStatesOf(cluster, 'n1')).toEqual([{ requestId: 1, index: n1.status().commitIndex, refusal: null, leaderHint: 'n1' }]);
  });

  it('a follower forwards the read to the leader and gets the leader’s read index', () => {
    const cluster = electedCluster();
    cluster.propose('n1', 'x');
    cluster.deliverAll();
    const commit = cluster.node('n1').status().commitIndex;
    expect(cluster.node('n2').readIndex(9)).toEqual({ kind: 'Pending' });
    cluster.flush('n2');
    expect(cluster.queue.some((message) => message.type === 'ReadIndexRequest' && message.to === 'n1')).toBe(true);
    cluster.deliverAll();
    expect(readStatesOf(cluster, 'n2')).toEqual([{ requestId: 9, index: commit, refusal: null, leaderHint: 'n1' }]);
  });

  it('a leader cut off from the quorum never confirms a read, and refuses it when it steps down', () => {
    const cluster = electedCluster();
    cluster.partition(['n1'], ['n2', 'n3']);
    cluster.node('n1').readIndex(3);
    cluster.deliverAll();
    expect(readStatesOf(cluster, 'n1')).toEqual([]);
    // CheckQuorum makes it step down after an election timeout; the read is refused, not answered.
    const states: ReadState[] = [];
    for (let tick = 0; tick < 30; tick++) {
      cluster.tick('n1');
      states.push(...readStatesOf(cluster, 'n1'));
      cluster.dropAll();
    }
    expect(cluster.node('n1').status().role).not.toBe('Leader');
    expect(states).toEqual([{ requestId: 3, index: 0, refusal: 'NotLeader', leaderHint: null }]);
  });

  it('without a known leader a read is refused at once', () => {
    const cluster = new TestCluster(['n1', 'n2', 'n3']);
    expect(cluster.node('n2').readIndex(1)).toEqual({ kind: 'Refused', refusal: 'ProposalDropped', leaderHint: null });
  });

  it('a single-voter cluster answers reads without a heartbeat round', () => {
    const cluster = new TestCluster(['solo']);
    cluster.campaign('solo');
    cluster.flush('solo');
    expect(cluster.leaders()).toEqual(['solo']);
    cluster.node('solo').readIndex(5);
    const states = readStatesOf(cluster, 'solo');
    expect(states).toEqual([{ requestId: 5, index: cluster.node('solo').status().commitIndex, refusal: null, leaderHint: 'solo' }]);
  });
});
