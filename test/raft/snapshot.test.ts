/**
 * Paper §7 (log compaction) and Figure 13 (InstallSnapshot), as the core implements them: a leader
 * whose follower needs compacted entries streams its snapshot in chunks under flow control, recovers
 * from lost chunks, and continues from the log once the follower has installed it.
 *
 * Tests either step one {@link RawNode} with hand-written messages (to look at a single reaction and
 * its {@link Ready}) or drive a {@link TestCluster} by hand. Nothing runs on its own.
 */
import { describe, expect, it } from 'vitest';
import {
  DecodeError,
  EntryType,
  InvariantError,
  RawNode,
  SeededPrng,
  decodeMessage,
  encodeMessage,
  logIndex,
  nodeId,
  resolveRaftConfig,
  term,
  type Entry,
  type InstallSnapshot,
  type Message,
  type PeerProgress,
  type RaftOptions,
  type Ready,
  type Snapshot,
  type SnapshotResponse,
} from '../../src/raft/index.js';
import { TestCluster, drain, electedCluster, type StoredState } from '../support/cluster.js';

// ---------------------------------------------------------------------------------------------
// Bounds and fixtures

const MAX_DELIVERY_ROUNDS = 10_000;
const THREE = ['n1', 'n2', 'n3'] as const;
const FIVE = ['n1', 'n2', 'n3', 'n4', 'n5'] as const;
const THREE_VOTERS = { voters: THREE.map(nodeId), learners: [] };

/** Small chunks and a small window, so a snapshot of a few entries takes many chunks. */
const CHUNKED: Partial<RaftOptions> = { maxSnapshotChunkBytes: 4, maxInflightSnapshotChunks: 2 };

const encoder = new TextEncoder();

function must<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`missing ${what}`);
  return value;
}

function ofType<T extends Message['type']>(messages: readonly Message[], type: T): Extract<Message, { type: T }>[] {
  return messages.filter((message): message is Extract<Message, { type: T }> => message.type === type);
}

function entry(index: number, entryTerm: number): Entry {
  return { index: logIndex(index), term: term(entryTerm), type: EntryType.Normal, data: encoder.encode(`${index}@${entryTerm}`) };
}

/** A follower `n2` of a three-node cluster whose stored log has entry i+1 of term `logTerms[i]`. */
function makeFollower(logTerms: readonly number[], fields: { term: number; commit: number }): RawNode {
  return new RawNode({
    config: resolveRaftConfig({ id: nodeId('n2'), voters: THREE.map(nodeId) }),
    prng: new SeededPrng(1),
    hardState: { term: term(fields.term), vote: null, commit: logIndex(fields.commit) },
    entries: logTerms.map((entryTerm, position) => entry(position + 1, entryTerm)),
    applied: logIndex(0),
  });
}


/** A one-chunk InstallSnapshot from leader `n1` to `n2`. */
function installSnapshot(fields: { term: number; index: number; indexTerm: number; data?: Uint8Array }): InstallSnapshot {
  const data = fields.data ?? encoder.encode('snapshot');
  return {
    type: 'InstallSnapshot',
    from: nodeId('n1'),
    to: nodeId('n2'),
    term: term(fields.term),
    metadata: { index: logIndex(fields.index), term: term(fields.indexTerm), membership: THREE_VOTERS },
    totalBytes: data.byteLength,
    offset: 0,
    data,
    done: true,
  };
}


const chunksTo = (cluster: TestCluster, to: string): InstallSnapshot[] => ofType(cluster.queue, 'InstallSnapshot').filter((message) => message.to === to);

function progressOf(cluster: TestCluster, leader: string, peer: string): PeerProgress {
  return must(cluster.node(leader).status().progress.get(nodeId(peer)), `progress of ${peer} on ${leader}`);
}

function storedOf(cluster: TestCluster, id: string): StoredState {
  return must(cluster.stored.get(nodeId(id)), `stored state of ${id}`);
}

/** Trace lines of snapshot chunks delivered to `to`. */
const deliveredChunks = (cluster: TestCluster, to: string): string[] => cluster.trace.filter((line) => line.startsWith(`n1->${to} InstallSnapshot`));

/**
 * n1 leads a three-node cluster; n3 was cut off while `texts` were committed; n1 then snapshotted
 * its state and compacted its whole log (up to `compactIndex`, default all of it). The network is
 * healed but nothing is in flight.
 */
function laggingFollowerCluster(texts: readonly string[], options: Partial<RaftOptions> = {}, compactIndex?: number): TestCluster {
  const cluster = electedCluster(options);
  cluster.partition(['n3'], ['n1', 'n2']);
  for (const text of texts) cluster.propose('n1', text);
  cluster.deliverAll();
  expect(cluster.node('n1').status().commitIndex).toBe(1 + texts.length);
  cluster.compact('n1', compactIndex);
  cluster.heal();
  return cluster;
}

/**
 * One heartbeat round trip: n3's answer shows it lags, its append is rejected, the leader finds the
 * entries it needs compacted and switches n3 to Snapshot. Delivers everything but snapshot chunks,
 * which stay queued; returns them.
 */
function startTransfer(cluster: TestCluster, leader = 'n1', follower = 'n3'): InstallSnapshot[] {
  cluster.tick(leader);
  cluster.deliverWhere((message) => message.type !== 'InstallSnapshot');
  expect(progressOf(cluster, leader, follower).state).toBe('Snapshot');
  return chunksTo(cluster, follower);
}

/** The JSON the TestCluster snapshots: the texts the state machine holds. */
const snapshotBytes = (texts: readonly string[]): number => encoder.encode(JSON.stringify(texts)).byteLength;

// ---------------------------------------------------------------------------------------------

describe('§7 log compaction on one node', () => {
  it('compact discards entries up to the snapshot index, and status().snapshotIndex reports it', () => {
    const cluster = electedCluster();
    for (const text of ['a', 'b', 'c']) cluster.propose('n1', text);
    cluster.deliverAll();
    const node = cluster.node('n1');
    expect(node.status()).toMatchObject({ appliedIndex: 4, snapshotIndex: 0 });
    expect(cluster.compact('n1')).toBe(4);
    expect(node.status()).toMatchObject({ snapshotIndex: 4, lastIndex: 4, commitIndex: 4, appliedIndex: 4 });
    expect(node.raft.log.firstIndex()).toBe(5);
    expect(node.raft.log.entryAt(logIndex(4))).toBeUndefined();
    // The term of the compaction point is still known: appends after it pass the consistency check.
    expect(node.raft.log.termAt(logIndex(4))).toBe(1);
  });

  it('compact discards entries up to min(compactIndex, snapshot index): entries after compactIndex stay as a trailing window', () => {
    const cluster = electedCluster();
    for (const text of ['a', 'b', 'c']) cluster.propose('n1', text);
    cluster.deliverAll();
    expect(cluster.compact('n1', 2)).toBe(2);
    const node = cluster.node('n1');
    // status() reports the snapshot held; the log still holds the entries after the compaction point.
    expect(node.status().snapshotIndex).toBe(4);
    expect(node.raft.log.snapshotIndex()).toBe(2);
    expect(node.raft.log.firstIndex()).toBe(3);
    expect(node.raft.log.entryAt(logIndex(2))).toBeUndefined();
    expect(node.raft.log.entryAt(logIndex(3))).toMatchObject({ index: 3, type: EntryType.Normal });
    // A compactIndex above the snapshot index is clamped to the snapshot index.
    const snapshot = must(node.raft.snapshot(), 'snapshot');
    expect(node.compact(snapshot, logIndex(100))).toBe(4);
    expect(node.raft.log.snapshotIndex()).toBe(4);
    expect(node.status()).toMatchObject({ snapshotIndex: 4, lastIndex: 4 });
  });

  it('never compacts beyond the applied index: a snapshot of unapplied entries is an InvariantError', () => {
    const cluster = electedCluster();
    cluster.partition(['n1'], ['n2', 'n3']);
    cluster.propose('n1', 'uncommitted');
    cluster.deliverAll();
    const node = cluster.node('n1');
    expect(node.status()).toMatchObject({ lastIndex: 2, commitIndex: 1, appliedIndex: 1 });
    expect(() => node.snapshotMetadata(logIndex(2))).toThrow(InvariantError);
    const beyond: Snapshot = { metadata: { index: logIndex(2), term: term(1), membership: THREE_VOTERS }, data: new Uint8Array(1) };
    expect(() => node.compact(beyond, logIndex(2))).toThrow(InvariantError);
    // A snapshot at the applied index with a larger compactIndex stops at the snapshot.
    const atApplied: Snapshot = { metadata: node.snapshotMetadata(logIndex(1)), data: new Uint8Array(1) };
    expect(node.compact(atApplied, logIndex(2))).toBe(1);
    expect(node.status()).toMatchObject({ snapshotIndex: 1, lastIndex: 2 });
  });

  it('snapshotMetadata(index) gives the term of that entry and the membership in effect there', () => {
    const cluster = electedCluster();
    cluster.propose('n1', 'a');
    expect(cluster.changeMembership('n1', 'AddLearner', 'n4')).toMatchObject({ kind: 'Appended', index: 3 });
    cluster.deliverAll();
    const n1 = cluster.node('n1');
    expect(n1.snapshotMetadata(logIndex(2))).toEqual({ index: 2, term: 1, membership: { voters: ['n1', 'n2', 'n3'], learners: [] } });
    expect(n1.snapshotMetadata(logIndex(3))).toEqual({ index: 3, term: 1, membership: { voters: ['n1', 'n2', 'n3'], learners: ['n4'] } });
    // A later leader's no-op carries its own term.
    cluster.node('n1').transferLeadership(nodeId('n2'));
    cluster.flush('n1');
    cluster.deliverAll();
    expect(cluster.leaders()).toEqual(['n2']);
    expect(cluster.node('n2').snapshotMetadata(logIndex(4))).toEqual({ index: 4, term: 2, membership: { voters: ['n1', 'n2', 'n3'], learners: ['n4'] } });
  });
});

describe('§7 InstallSnapshot from the leader: chunks and flow control', () => {
  it('a follower that needs compacted entries is switched to Snapshot and gets chunks of at most maxSnapshotChunkBytes, at most maxInflightSnapshotChunks at once', () => {
    const texts = ['a', 'b', 'c', 'd', 'e'];
    const cluster = laggingFollowerCluster(texts, CHUNKED);
    const total = snapshotBytes(texts);
    const first = startTransfer(cluster);
    expect(first.map((chunk) => [chunk.offset, chunk.data.byteLength, chunk.done])).toEqual([
      [0, 4, false],
      [4, 4, false],
    ]);
    expect(first.every((chunk) => chunk.totalBytes === total && chunk.metadata.index === 6 && chunk.metadata.term === 1)).toBe(true);
    expect(progressOf(cluster, 'n1', 'n3')).toMatchObject({ state: 'Snapshot', snapshotAckedBytes: 0 });

    // Deliver one message at a time; the chunks the leader has sent beyond what n3 acknowledged never
    // exceed the window.
    const seen = new Set<Message>();
    const sent: InstallSnapshot[] = [];
    const record = (): void => {
      for (const message of cluster.queue) {
        if (message.type === 'InstallSnapshot' && !seen.has(message)) {
          seen.add(message);
          sent.push(message);
        }
      }
    };
    record();
    let maxUnacked = 0;
    for (let step = 0; step < MAX_DELIVERY_ROUNDS && cluster.queue.length > 0; step++) {
      cluster.deliverOne(must(cluster.queue.shift(), 'message'));
      record();
      const progress = cluster.node('n1').status().progress.get(nodeId('n3'));
      if (progress?.state !== 'Snapshot') continue;
      const acked = progress.snapshotAckedBytes ?? 0;
      const unacked = sent.filter((chunk) => chunk.offset + chunk.data.byteLength > acked).length;
      maxUnacked = Math.max(maxUnacked, unacked);
    }
    expect(maxUnacked).toBe(2);
    expect(sent.every((chunk) => chunk.data.byteLength <= 4)).toBe(true);
    // Every byte was sent exactly once, in order, and only the last chunk is marked done.
    expect(sent.map((chunk) => chunk.offset)).toEqual(Array.from({ length: Math.ceil(total / 4) }, (_, i) => i * 4));
    expect(sent.filter((chunk) => chunk.done)).toHaveLength(1);
    expect(sent.at(-1)?.done).toBe(true);
    expect(cluster.appliedData('n3')).toEqual(texts);
    expect(progressOf(cluster, 'n1', 'n3')).toMatchObject({ state: 'Replicate', match: 6 });
  });

  it('SnapshotResponse acknowledgements open the window: one acknowledged chunk lets one more go', () => {
    const cluster = laggingFollowerCluster(['a', 'b', 'c', 'd', 'e'], CHUNKED);
    const [first, second] = startTransfer(cluster);
    cluster.queue = cluster.queue.filter((message) => message.type !== 'InstallSnapshot');
    cluster.deliverOne(must(first, 'first chunk'));
    cluster.deliverOne(must(second, 'second chunk'));
    const acks = ofType(cluster.queue, 'SnapshotResponse');
    expect(acks.map((ack) => [ack.from, ack.snapshotIndex, ack.receivedBytes, ack.gap])).toEqual([
      ['n3', 6, 4, false],
      ['n3', 6, 8, false],
    ]);
    // Nothing more goes out until the leader hears an acknowledgement.
    expect(chunksTo(cluster, 'n3')).toEqual([]);
    cluster.deliverOne(cluster.take((message) => message.type === 'SnapshotResponse'));
    expect(chunksTo(cluster, 'n3').map((chunk) => chunk.offset)).toEqual([8]);
    expect(progressOf(cluster, 'n1', 'n3').snapshotAckedBytes).toBe(4);
    cluster.deliverOne(cluster.take((message) => message.type === 'SnapshotResponse'));
    expect(chunksTo(cluster, 'n3').map((chunk) => chunk.offset)).toEqual([8, 12]);
    expect(progressOf(cluster, 'n1', 'n3').snapshotAckedBytes).toBe(8);
  });

  it('a lost chunk: the follower answers the next chunk with gap=true and what it holds, and the leader resends from there', () => {
    const texts = ['a', 'b', 'c', 'd', 'e'];
    const cluster = laggingFollowerCluster(texts, CHUNKED);
    const [first, second] = startTransfer(cluster);
    cluster.queue = cluster.queue.filter((message) => message.type !== 'InstallSnapshot');
    // Chunk 0 arrives; chunk 4 is lost.
    cluster.deliverOne(must(first, 'first chunk'));
    expect(second?.offset).toBe(4);
    cluster.deliverOne(cluster.take((message) => message.type === 'SnapshotResponse'));
    // The acknowledgement let chunk 8 go; it arrives after the hole.
    const third = cluster.take((message) => message.type === 'InstallSnapshot');
    expect(third).toMatchObject({ offset: 8 });
    cluster.deliverOne(third);
    const gap = cluster.take((message) => message.type === 'SnapshotResponse');
    expect(gap).toMatchObject({ from: 'n3', to: 'n1', snapshotIndex: 6, receivedBytes: 4, gap: true });
    cluster.deliverOne(gap);
    expect(chunksTo(cluster, 'n3').map((chunk) => chunk.offset)).toEqual([4, 8]);
    cluster.deliverAll();
    expect(cluster.appliedData('n3')).toEqual(texts);
    expect(cluster.node('n3').status()).toMatchObject({ snapshotIndex: 6, commitIndex: 6 });
  });

  it('every chunk in flight lost: two heartbeat answers without progress make the leader resend from the acknowledged offset', () => {
    const texts = ['a', 'b', 'c', 'd', 'e'];
    const heartbeatIntervalTicks = 2;
    const cluster = laggingFollowerCluster(texts, { ...CHUNKED, heartbeatIntervalTicks });
    cluster.tick('n1', heartbeatIntervalTicks);
    cluster.deliverWhere((message) => message.type !== 'InstallSnapshot');
    expect(progressOf(cluster, 'n1', 'n3').state).toBe('Snapshot');
    // Chunk 0 arrives and is acknowledged; chunks 4 and 8 (sent on that acknowledgement) are lost.
    cluster.deliverOne(cluster.take((message) => message.type === 'InstallSnapshot' && message.offset === 0));
    cluster.deliverOne(cluster.take((message) => message.type === 'SnapshotResponse'));
    expect(chunksTo(cluster, 'n3').map((chunk) => chunk.offset)).toEqual([4, 8]);
    expect(progressOf(cluster, 'n1', 'n3').snapshotAckedBytes).toBe(4);
    cluster.dropAll();

    // First heartbeat round trip: the leader notes no progress but sends nothing yet.
    cluster.tick('n1', heartbeatIntervalTicks);
    expect(ofType(cluster.queue, 'Heartbeat').map((message) => message.to).sort()).toEqual(['n2', 'n3']);
    cluster.deliverAll();
    expect(deliveredChunks(cluster, 'n3')).toHaveLength(1);
    // Second round trip without progress: resend from the acknowledged offset.
    cluster.tick('n1', heartbeatIntervalTicks);
    cluster.deliverWhere((message) => message.type !== 'InstallSnapshot');
    expect(chunksTo(cluster, 'n3').map((chunk) => chunk.offset)).toEqual([4, 8]);
    cluster.deliverAll();
    expect(cluster.appliedData('n3')).toEqual(texts);
    expect(progressOf(cluster, 'n1', 'n3').state).toBe('Replicate');
  });

  it('a lost completion answer: the leader resends the last chunk after two heartbeat answers, and the follower, which already installed it, answers with its commit index', () => {
    const texts = ['a', 'b', 'c', 'd', 'e'];
    const cluster = laggingFollowerCluster(texts, CHUNKED);
    startTransfer(cluster);
    cluster.deliverAll((message) => !(message.type === 'AppendResponse' && message.from === 'n3'));
    expect(cluster.node('n3').status()).toMatchObject({ snapshotIndex: 6, commitIndex: 6 });
    expect(progressOf(cluster, 'n1', 'n3')).toMatchObject({ state: 'Snapshot', match: 1 });
    const chunksBefore = deliveredChunks(cluster, 'n3').length;
    cluster.tick('n1');
    cluster.deliverAll();
    expect(deliveredChunks(cluster, 'n3')).toHaveLength(chunksBefore);
    cluster.tick('n1');
    cluster.deliverAll();
    const resent = deliveredChunks(cluster, 'n3').slice(chunksBefore);
    expect(resent).toHaveLength(1);
    expect(resent[0]).toMatch(/ done$/);
    expect(cluster.trace.filter((line) => line === 'n3 restores snapshot 6@1')).toHaveLength(1);
    expect(progressOf(cluster, 'n1', 'n3')).toMatchObject({ state: 'Replicate', match: 6 });
    cluster.propose('n1', 'f');
    cluster.deliverAll();
    expect(cluster.appliedData('n3')).toEqual([...texts, 'f']);
  });
});

describe('Figure 13: the follower installs the snapshot', () => {
  it('a follower whose log conflicts with the snapshot discards its whole log and restores the state machine from the snapshot', () => {
    const cluster = new TestCluster(THREE, { preVote: false, checkQuorum: false, ...CHUNKED });
    cluster.campaign('n1');
    cluster.deliverAll();
    // n1, cut off, appends entries of term 1 that never commit.
    cluster.partition(['n1'], ['n2', 'n3']);
    for (const text of ['x1', 'x2', 'x3', 'x4']) cluster.propose('n1', text);
    cluster.deliverAll();
    // n2 leads term 2, commits other entries at the same indexes, and compacts them.
    cluster.campaign('n2');
    cluster.deliverAll();
    for (const text of ['a', 'b', 'c']) cluster.propose('n2', text);
    cluster.deliverAll();
    expect(cluster.node('n2').status()).toMatchObject({ role: 'Leader', term: 2, commitIndex: 5 });
    expect(cluster.compact('n2')).toBe(5);
    expect(cluster.node('n1').raft.log.termAt(logIndex(5))).toBe(1);

    cluster.heal();
    const readys: Ready[] = [];
    const n1 = cluster.node('n1');
    const collect = n1.ready.bind(n1);
    n1.ready = (): Ready => {
      const ready = collect();
      readys.push(ready);
      return ready;
    };
    cluster.tick('n2');
    cluster.deliverAll();

    const withSnapshot = readys.filter((ready) => ready.snapshot !== null);
    expect(withSnapshot).toHaveLength(1);
    expect(withSnapshot[0]?.snapshot?.metadata).toEqual({ index: 5, term: 2, membership: THREE_VOTERS });
    expect(cluster.appliedData('n1')).toEqual(cluster.appliedData('n2'));
    expect(cluster.appliedData('n1')).toEqual(['a', 'b', 'c']);
    // The old log is gone: the log starts right after the snapshot.
    expect(n1.status()).toMatchObject({ role: 'Follower', term: 2, snapshotIndex: 5, commitIndex: 5 });
    expect(n1.raft.log.firstIndex()).toBe(6);
    expect(storedOf(cluster, 'n1').snapshot?.metadata.index).toBe(5);
    expect(storedOf(cluster, 'n1').entries.every((stored) => stored.index > 5)).toBe(true);
  });

  it('after installing, replication continues from the log: no second snapshot (no snapshot loop)', () => {
    const texts = ['a', 'b', 'c', 'd', 'e'];
    const cluster = laggingFollowerCluster(texts, CHUNKED);
    startTransfer(cluster);
    cluster.deliverAll();
    const transfers = (): number => cluster.trace.filter((line) => /^n1->n3 InstallSnapshot .* done$/.test(line)).length;
    expect(transfers()).toBe(1);
    expect(progressOf(cluster, 'n1', 'n3').state).toBe('Replicate');
    for (const text of ['f', 'g']) cluster.propose('n1', text);
    cluster.deliverAll();
    for (let round = 0; round < 5; round++) {
      cluster.tick('n1');
      cluster.deliverAll();
    }
    expect(transfers()).toBe(1);
    expect(cluster.trace.some((line) => line.startsWith('n1->n3 AppendRequest') && line.includes(':f'))).toBe(true);
    expect(cluster.appliedData('n3')).toEqual([...texts, 'f', 'g']);
    expect(progressOf(cluster, 'n1', 'n3')).toMatchObject({ state: 'Replicate', match: 8 });
  });

  it('a follower whose log holds the snapshot’s last entry with the same term keeps its log and only commits up to it (step 6)', () => {
    const node = makeFollower([1, 1, 1, 1], { term: 1, commit: 1 });
    drain(node);
    node.step(installSnapshot({ term: 1, index: 3, indexTerm: 1 }));
    const readys = drain(node);
    expect(readys.every((ready) => ready.snapshot === null)).toBe(true);
    expect(node.status()).toMatchObject({ commitIndex: 3, lastIndex: 4, snapshotIndex: 0 });
    expect(node.raft.log.entryAt(logIndex(4))).toMatchObject({ index: 4, term: 1 });
    expect(readys.flatMap((ready) => ready.committedEntries).map((applied) => applied.index)).toEqual([2, 3]);
    expect(ofType(readys.flatMap((ready) => ready.messagesAfterPersist), 'AppendResponse')).toMatchObject([{ to: 'n1', success: true, index: 3 }]);
  });

  it('a follower whose log holds the snapshot index with another term discards it all (step 7)', () => {
    const node = makeFollower([1, 1, 1, 1], { term: 1, commit: 1 });
    drain(node);
    node.step(installSnapshot({ term: 2, index: 3, indexTerm: 2 }));
    const readys = drain(node);
    expect(readys.map((ready) => ready.snapshot?.metadata.index ?? null).filter((index) => index !== null)).toEqual([3]);
    expect(node.status()).toMatchObject({ commitIndex: 3, lastIndex: 3, snapshotIndex: 3, appliedIndex: 3 });
    expect(node.raft.log.entryAt(logIndex(4))).toBeUndefined();
  });

  it('a stale InstallSnapshot (index at or below the follower’s commit) gets a successful AppendResponse with the commit index', () => {
    const node = makeFollower([1, 1, 1, 1], { term: 1, commit: 4 });
    drain(node);
    node.step(installSnapshot({ term: 1, index: 3, indexTerm: 1 }));
    const readys = drain(node);
    expect(readys.every((ready) => ready.snapshot === null)).toBe(true);
    expect(ofType(readys.flatMap((ready) => [...ready.messages, ...ready.messagesAfterPersist]), 'AppendResponse')).toMatchObject([
      { to: 'n1', success: true, index: 4 },
    ]);
    expect(node.status()).toMatchObject({ commitIndex: 4, lastIndex: 4, snapshotIndex: 0 });
  });

  it('the completion answer is sent only after the snapshot is persisted: it is in messagesAfterPersist of the Ready that carries the snapshot', () => {
    const node = makeFollower([1], { term: 1, commit: 1 });
    drain(node);
    const data = encoder.encode('0123456789');
    // Two chunks: the first is acknowledged at once (nothing durable promised), the last completes.
    node.step({ ...installSnapshot({ term: 1, index: 5, indexTerm: 1, data }), data: data.subarray(0, 6), done: false });
    const [firstReady] = drain(node);
    expect(firstReady?.snapshot ?? null).toBeNull();
    expect(ofType(firstReady?.messages ?? [], 'SnapshotResponse')).toMatchObject([{ snapshotIndex: 5, receivedBytes: 6, gap: false }]);
    node.step({ ...installSnapshot({ term: 1, index: 5, indexTerm: 1, data }), offset: 6, data: data.subarray(6) });
    expect(node.hasReady()).toBe(true);
    const ready = node.ready();
    expect(ready.snapshot?.metadata.index).toBe(5);
    expect(Array.from(ready.snapshot?.data ?? [])).toEqual(Array.from(data));
    expect(ready.mustPersist).toBe(true);
    expect(ofType(ready.messages, 'AppendResponse')).toEqual([]);
    expect(ofType(ready.messagesAfterPersist, 'AppendResponse')).toMatchObject([{ to: 'n1', success: true, index: 5 }]);
    node.advance();
    expect(node.status()).toMatchObject({ appliedIndex: 5, commitIndex: 5, snapshotIndex: 5 });
  });
});

describe('§7 a follower that restarts during a snapshot transfer', () => {
  it('loses the chunks it had; its gap answer rewinds the leader to byte 0 (even below what it acknowledged) and the transfer completes', () => {
    const cluster = electedCluster({ maxSnapshotChunkBytes: 4, maxInflightSnapshotChunks: 2 });
    cluster.partition(['n3'], ['n1', 'n2']);
    for (const text of ['a', 'b', 'c', 'd', 'e']) cluster.propose('n1', text);
    cluster.deliverAll();
    cluster.compact('n1');
    cluster.heal();
    cluster.tick('n1');
    // Deliver in order until n1 has received n3's first chunk acknowledgement.
    let acknowledged = 0;
    for (let step = 0; step < 1_000 && acknowledged === 0; step++) {
      const [next, ...rest] = cluster.queue;
      if (next === undefined) break;
      cluster.queue = rest;
      cluster.deliverOne(next);
      if (next.type === 'SnapshotResponse' && next.to === 'n1' && next.receivedBytes > 0) acknowledged = next.receivedBytes;
    }
    expect(acknowledged).toBeGreaterThan(0);
    expect(cluster.node('n1').status().progress.get(nodeId('n3'))?.snapshotAckedBytes).toBe(acknowledged);
    cluster.dropAll();
    cluster.start('n3');
    let delivered = 0;
    for (let round = 0; round < 30 && cluster.node('n3').status().commitIndex < 6; round++) {
      cluster.tick('n1');
      delivered += cluster.deliverAll();
    }
    expect(cluster.node('n3').status().commitIndex).toBe(6);
    expect(cluster.appliedData('n3')).toEqual(cluster.appliedData('n1'));
    // A handful of rounds, not a flood: a window of chunks per round at most.
    expect(delivered).toBeLessThan(200);
  });
});

describe('§7 compaction while a snapshot is being sent', () => {
  it('compaction is clamped so the log keeps the entry after the snapshot being sent; the follower then continues from the log', () => {
    // n1 compacts only to 2, so the transfer starts with the snapshot at 4.
    const cluster = laggingFollowerCluster(['a', 'b', 'c'], CHUNKED, 2);
    expect(cluster.node('n1').raft.log.snapshotIndex()).toBe(2);
    const chunks = startTransfer(cluster);
    expect(chunks.every((chunk) => chunk.metadata.index === 4)).toBe(true);
    // Meanwhile more entries commit (n1 and n2), and n1 snapshots at 6.
    for (const text of ['d', 'e']) cluster.propose('n1', text);
    cluster.deliverWhere((message) => message.from !== 'n3' && message.to !== 'n3');
    expect(cluster.node('n1').status()).toMatchObject({ commitIndex: 6, appliedIndex: 6 });
    expect(cluster.compact('n1')).toBe(4);
    expect(cluster.node('n1').raft.log.snapshotIndex()).toBe(4);
    expect(cluster.node('n1').status().snapshotIndex).toBe(6);
    expect(cluster.node('n1').raft.log.entryAt(logIndex(5))).toBeDefined();

    cluster.deliverAll();
    const sentIndexes = new Set(cluster.trace.filter((line) => line.startsWith('n1->n3 InstallSnapshot')).map((line) => /snapshot=(\d+)@/.exec(line)?.[1]));
    expect([...sentIndexes]).toEqual(['4']);
    expect(cluster.appliedData('n3')).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(cluster.node('n3').status()).toMatchObject({ snapshotIndex: 4, commitIndex: 6 });
    expect(progressOf(cluster, 'n1', 'n3')).toMatchObject({ state: 'Replicate', match: 6 });
    // With no transfer under way, the next compaction goes all the way.
    expect(cluster.compact('n1')).toBe(6);
    expect(cluster.node('n1').raft.log.snapshotIndex()).toBe(6);
  });
});

describe('restart from a stored snapshot', () => {
  it('a compacted follower restarts from its snapshot and entries, restores its state machine, and keeps committing', () => {
    const cluster = electedCluster();
    for (const text of ['a', 'b']) cluster.propose('n1', text);
    cluster.deliverAll();
    expect(cluster.compact('n2')).toBe(3);
    expect(storedOf(cluster, 'n2')).toMatchObject({ snapshot: { metadata: { index: 3, term: 1 } }, entries: [] });
    cluster.propose('n1', 'c');
    cluster.deliverAll();
    expect(storedOf(cluster, 'n2').entries.map((stored) => stored.index)).toEqual([4]);

    const restarted = cluster.start('n2');
    // Commit 4 reached n2 after entry 4 was written, and a commit-only change is not written (etcd's
    // MustSync): n2 restarts committed to its snapshot and learns the rest from the leader.
    expect(restarted.status()).toMatchObject({ snapshotIndex: 3, appliedIndex: 3, lastIndex: 4, commitIndex: 3 });
    cluster.flush('n2');
    expect(cluster.appliedData('n2')).toEqual(['a', 'b']);
    for (let round = 0; round < 30 && cluster.appliedData('n2').length < 3; round++) {
      cluster.tick('n1');
      cluster.deliverAll();
    }
    expect(cluster.appliedData('n2')).toEqual(['a', 'b', 'c']);
    cluster.propose('n1', 'd');
    cluster.deliverAll();
    expect(cluster.appliedData('n2')).toEqual(['a', 'b', 'c', 'd']);
    expect(restarted.status()).toMatchObject({ snapshotIndex: 3, commitIndex: 5, appliedIndex: 5 });
  });

  it('a whole cluster restarted from snapshots elects a leader and keeps committing', () => {
    const cluster = electedCluster();
    for (const text of ['a', 'b', 'c']) cluster.propose('n1', text);
    cluster.deliverAll();
    for (const id of THREE) expect(cluster.compact(id)).toBe(4);
    cluster.propose('n1', 'd');
    cluster.deliverAll();
    for (const id of THREE) {
      cluster.start(id);
      cluster.flush(id);
      // 'd' (index 5) is stored; its commit was learned later and not written, so it is applied once
      // a new leader commits.
      expect(cluster.appliedData(id)).toEqual(['a', 'b', 'c']);
      expect(cluster.node(id).status()).toMatchObject({ role: 'Follower', snapshotIndex: 4, lastIndex: 5, commitIndex: 4 });
    }
    cluster.campaign('n3');
    cluster.deliverAll();
    expect(cluster.leaders()).toEqual(['n3']);
    cluster.propose('n3', 'e');
    cluster.deliverAll();
    for (const id of THREE) expect(cluster.appliedData(id)).toEqual(['a', 'b', 'c', 'd', 'e']);
  });
});

describe('a node that installed a snapshot', () => {
  it('a new node joining as a learner through a snapshot takes its membership from the snapshot metadata, and keeps it across a restart', () => {
    const cluster = electedCluster(CHUNKED);
    cluster.changeMembership('n1', 'AddLearner', 'n4');
    for (const text of ['a', 'b']) cluster.propose('n1', text);
    cluster.deliverAll();
    expect(cluster.compact('n1')).toBe(4);
    const joined = cluster.addNode('n4');
    expect(joined.status().membership).toEqual({ voters: [], learners: [] });
    cluster.tick('n1');
    cluster.deliverAll();
    expect(cluster.trace).toContain('n4 restores snapshot 4@1');
    const withLearner = { voters: THREE.map(nodeId), learners: [nodeId('n4')] };
    expect(joined.status()).toMatchObject({ membership: withLearner, snapshotIndex: 4, commitIndex: 4, leader: 'n1' });
    expect(cluster.appliedData('n4')).toEqual(['a', 'b']);
    expect(cluster.start('n4').status()).toMatchObject({ membership: withLearner, snapshotIndex: 4, appliedIndex: 4 });
    expect(cluster.appliedData('n4')).toEqual(['a', 'b']);
    cluster.propose('n1', 'c');
    cluster.deliverAll();
    expect(cluster.appliedData('n4')).toEqual(['a', 'b', 'c']);
  });


  it('can itself send that snapshot to a lagging follower once it leads', () => {
    const cluster = new TestCluster(FIVE, { preVote: false, checkQuorum: false, maxSnapshotChunkBytes: 8 });
    cluster.campaign('n1');
    cluster.deliverAll();
    cluster.partition(['n1', 'n2', 'n3'], ['n4', 'n5']);
    for (const text of ['a', 'b', 'c']) cluster.propose('n1', text);
    cluster.deliverAll();
    expect(cluster.compact('n1')).toBe(4);
    // n4 comes back and gets n1's snapshot; n5 stays away.
    cluster.partition(['n1', 'n2', 'n3', 'n4'], ['n5']);
    cluster.tick('n1');
    cluster.deliverAll();
    expect(cluster.trace).toContain('n4 restores snapshot 4@1');
    cluster.propose('n1', 'd');
    cluster.deliverAll();
    expect(cluster.appliedData('n4')).toEqual(['a', 'b', 'c', 'd']);
    expect(cluster.node('n4').status()).toMatchObject({ snapshotIndex: 4, lastIndex: 5 });

    // n1 goes away; n4 is elected and finds n5 needs entries it never held.
    cluster.partition(['n1'], ['n2', 'n3', 'n4', 'n5']);
    cluster.campaign('n4');
    cluster.deliverAll();
    expect(cluster.leaders()).toContain('n4');
    expect(cluster.node('n4').status().term).toBe(2);
    expect(cluster.trace.some((line) => line.startsWith('n4->n5 InstallSnapshot term=2 snapshot=4@1'))).toBe(true);
    expect(cluster.trace).toContain('n5 restores snapshot 4@1');
    expect(cluster.appliedData('n5')).toEqual(['a', 'b', 'c', 'd']);
    cluster.propose('n4', 'e');
    cluster.deliverAll();
    expect(cluster.appliedData('n5')).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(cluster.node('n5').status()).toMatchObject({ snapshotIndex: 4, commitIndex: 7 });
  });
});

describe('codec: InstallSnapshot chunks', () => {
  const chunk = (fields: { offset: number; data: Uint8Array; totalBytes: number; done: boolean }): InstallSnapshot => ({
    type: 'InstallSnapshot',
    from: nodeId('n1'),
    to: nodeId('n2'),
    term: term(3),
    metadata: { index: logIndex(10), term: term(2), membership: { voters: [nodeId('n1'), nodeId('n2')], learners: [nodeId('n3')] } },
    ...fields,
  });

  it('a well-formed chunk round-trips', () => {
    const message = chunk({ offset: 4, data: new Uint8Array([1, 2, 3]), totalBytes: 7, done: true });
    const decoded = decodeMessage(encodeMessage(message));
    expect({ ...decoded, data: undefined }).toEqual({ ...message, data: undefined });
    expect(decoded.type === 'InstallSnapshot' ? Array.from(decoded.data) : null).toEqual([1, 2, 3]);
  });

  it('a chunk whose offset plus data overruns totalBytes is refused with DecodeError', () => {
    const bytes = encodeMessage(chunk({ offset: 5, data: new Uint8Array([1, 2, 3]), totalBytes: 7, done: true }));
    expect(() => decodeMessage(bytes)).toThrow(DecodeError);
  });

  it('a chunk whose done flag does not match its position is refused with DecodeError', () => {
    const lastNotDone = encodeMessage(chunk({ offset: 4, data: new Uint8Array([1, 2, 3]), totalBytes: 7, done: false }));
    const middleDone = encodeMessage(chunk({ offset: 0, data: new Uint8Array([1, 2, 3]), totalBytes: 7, done: true }));
    expect(() => decodeMessage(lastNotDone)).toThrow(DecodeError);
    expect(() => decodeMessage(middleDone)).toThrow(DecodeError);
  });
});

describe('§7 gap answers do not multiply traffic', () => {
  it('a lost first chunk of a wide window causes one resend of the window, not one per later chunk', () => {
    const cluster = electedCluster({ maxSnapshotChunkBytes: 2, maxInflightSnapshotChunks: 8 });
    cluster.partition(['n3'], ['n1', 'n2']);
    for (const text of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) cluster.propose('n1', text);
    cluster.deliverAll();
    cluster.compact('n1');
    cluster.heal();
    cluster.tick('n1');
    // Deliver until the first window of chunks is queued, then lose its first chunk.
    for (let step = 0; step < 100 && !cluster.queue.some((message) => message.type === 'InstallSnapshot'); step++) {
      const [next, ...rest] = cluster.queue;
      if (next === undefined) break;
      cluster.queue = rest;
      cluster.deliverOne(next);
    }
    const firstChunk = cluster.queue.findIndex((message) => message.type === 'InstallSnapshot');
    expect(firstChunk).toBeGreaterThanOrEqual(0);
    cluster.queue.splice(firstChunk, 1);
    const chunksSent = cluster.deliverAll((message) => message.type !== 'Heartbeat');
    expect(cluster.node('n3').status().commitIndex).toBeGreaterThanOrEqual(9);
    expect(cluster.appliedData('n3')).toEqual(cluster.appliedData('n1'));
    // 48 messages with one rewind per gap offset; resending a window per gap answer took 144.
    expect(chunksSent, `messages delivered: ${chunksSent}`).toBeLessThan(80);
  });
});

describe('§7 a resent chunk beyond a gap is answered again', () => {
  /** Chunk `[offset, offset + 4)` of `data` (a 4-byte-chunk transfer of the snapshot at 5@1) from n1 to n2. */
  const chunkOf = (data: Uint8Array, offset: number): InstallSnapshot => {
    const end = Math.min(data.byteLength, offset + 4);
    return { ...installSnapshot({ term: 1, index: 5, indexTerm: 1, data }), offset, data: data.subarray(offset, end), done: end === data.byteLength };
  };

  /** Steps `node` with `message` and returns its SnapshotResponses as [receivedBytes, gap]. */
  const answersTo = (node: RawNode, message: InstallSnapshot): [number, boolean][] => {
    node.step(message);
    const sent = drain(node).flatMap((ready) => [...ready.messages, ...ready.messagesAfterPersist]);
    return ofType(sent, 'SnapshotResponse').map((response) => [response.receivedBytes, response.gap]);
  };

  it('one gap answer per position while the window moves forward, and another when a chunk offset is seen again (a resend after a stall)', () => {
    const node = makeFollower([1], { term: 1, commit: 1 });
    drain(node);
    const data = encoder.encode('0123456789abcdefghijklmn');
    expect(answersTo(node, chunkOf(data, 0))).toEqual([[4, false]]);
    // Chunk 4 is lost: the first chunk beyond the hole reports it, the rest of that window is silent.
    expect(answersTo(node, chunkOf(data, 8))).toEqual([[4, true]]);
    expect(answersTo(node, chunkOf(data, 12))).toEqual([]);
    expect(answersTo(node, chunkOf(data, 16))).toEqual([]);
    // That gap answer was lost; the leader's stall check resends the same window. Offset 8 was seen
    // before: the follower reports the gap again (before the fix it stayed silent for good).
    expect(answersTo(node, chunkOf(data, 8))).toEqual([[4, true]]);
    expect(answersTo(node, chunkOf(data, 12))).toEqual([]);
    expect(answersTo(node, chunkOf(data, 16))).toEqual([]);
    // The missing chunk arrives; a new hole at a new position gets its own single answer.
    expect(answersTo(node, chunkOf(data, 4))).toEqual([[8, false]]);
    expect(answersTo(node, chunkOf(data, 16))).toEqual([[8, true]]);
    expect(answersTo(node, chunkOf(data, 20))).toEqual([]);
    expect(node.status().snapshotIndex).toBe(0);
    // The rest in order: the transfer completes with the bytes the leader sent.
    for (const offset of [8, 12, 16]) expect(answersTo(node, chunkOf(data, offset))).toEqual([[offset + 4, false]]);
    node.step(chunkOf(data, 20));
    const readys = drain(node);
    const installed = must(readys.find((ready) => ready.snapshot !== null)?.snapshot, 'installed snapshot');
    expect(installed.metadata.index).toBe(5);
    expect(Array.from(installed.data)).toEqual(Array.from(data));
    expect(ofType(readys.flatMap((ready) => ready.messagesAfterPersist), 'AppendResponse')).toMatchObject([{ to: 'n1', success: true, index: 5 }]);
    expect(node.status()).toMatchObject({ snapshotIndex: 5, commitIndex: 5, appliedIndex: 5 });
  });

  it('a follower that restarts after acknowledging 512 bytes, takes a delayed first chunk and whose one gap answer is lost still gets the snapshot', () => {
    // Twelve texts of 90 bytes: a snapshot of about 1.1 KB, in 64-byte chunks, four in flight.
    const texts = Array.from({ length: 12 }, (_, i) => String.fromCharCode(0x61 + i).repeat(90));
    const cluster = laggingFollowerCluster(texts, { maxSnapshotChunkBytes: 64, maxInflightSnapshotChunks: 4 });
    const snapshotIndex = 1 + texts.length;
    expect(cluster.node('n1').status().snapshotIndex).toBe(snapshotIndex);
    expect(snapshotBytes(texts)).toBeGreaterThan(768);
    const firstWindow = startTransfer(cluster);
    expect(firstWindow.map((chunk) => chunk.offset)).toEqual([0, 64, 128, 192]);
    // The network keeps a copy of the first chunk, to deliver it late.
    const delayedFirstChunk = must(firstWindow[0], 'first chunk');

    // Chunks and acknowledgements in send order until n1 has n3's acknowledgement of 512 bytes.
    for (let step = 0; step < 1_000 && (progressOf(cluster, 'n1', 'n3').snapshotAckedBytes ?? 0) < 512; step++) {
      cluster.deliverOne(must(cluster.queue.shift(), 'queued message'));
    }
    expect(progressOf(cluster, 'n1', 'n3')).toMatchObject({ state: 'Snapshot', snapshotAckedBytes: 512 });
    // The rest in flight is lost, and n3 restarts: the 512 bytes it held are gone.
    cluster.dropAll();
    expect(storedOf(cluster, 'n3').snapshot).toBeNull();
    cluster.start('n3');
    // Entry 1 is stored; its commit arrived later and was not written (a commit-only change).
    expect(cluster.node('n3').status()).toMatchObject({ snapshotIndex: 0, lastIndex: 1, commitIndex: 0 });

    // The delayed first chunk arrives: n3 holds 64 bytes again. Its acknowledgement is below what n1
    // believes n3 holds, so n1 keeps 512.
    cluster.deliverOne(delayedFirstChunk);
    const lowAck = cluster.take((message) => message.type === 'SnapshotResponse');
    expect(lowAck).toMatchObject({ from: 'n3', snapshotIndex, receivedBytes: 64, gap: false });
    cluster.deliverOne(lowAck);
    expect(cluster.queue).toEqual([]);
    expect(progressOf(cluster, 'n1', 'n3')).toMatchObject({ state: 'Snapshot', snapshotAckedBytes: 512 });

    /** Two heartbeat round trips without progress; returns the chunks n1's stall check then sends. */
    const stallResend = (): InstallSnapshot[] => {
      for (let round = 0; round < 2; round++) {
        cluster.tick('n1');
        cluster.deliverWhere((message) => message.type !== 'InstallSnapshot');
      }
      return chunksTo(cluster, 'n3');
    };
    /** Delivers the chunks queued for n3 (not what they cause) and takes n3's answers from the queue. */
    const deliverChunks = (): SnapshotResponse[] => {
      for (const chunk of chunksTo(cluster, 'n3')) cluster.deliverOne(cluster.take((message) => message === chunk));
      const answers = ofType(cluster.queue, 'SnapshotResponse');
      cluster.queue = cluster.queue.filter((message) => message.type !== 'SnapshotResponse');
      return answers;
    };

    // The stall check resends the window from byte 512, beyond n3's 64. n3 reports the gap once; that
    // answer is lost.
    expect(stallResend().map((chunk) => chunk.offset)).toEqual([512, 576, 640, 704]);
    expect(deliverChunks()).toMatchObject([{ from: 'n3', to: 'n1', snapshotIndex, receivedBytes: 64, gap: true }]);
    expect(progressOf(cluster, 'n1', 'n3')).toMatchObject({ state: 'Snapshot', snapshotAckedBytes: 512 });

    // n1 resends the same window; n3 has seen those offsets and answers the gap again (before the fix
    // it stayed silent, and every later stall resent the same window to no avail).
    expect(stallResend().map((chunk) => chunk.offset)).toEqual([512, 576, 640, 704]);
    const again = deliverChunks();
    expect(again).toMatchObject([{ from: 'n3', to: 'n1', snapshotIndex, receivedBytes: 64, gap: true }]);
    cluster.deliverOne(must(again[0], 'second gap answer'));
    // n1 rewinds to what n3 holds now, and the transfer runs to the end.
    expect(progressOf(cluster, 'n1', 'n3').snapshotAckedBytes).toBe(64);
    expect(chunksTo(cluster, 'n3').map((chunk) => chunk.offset)).toEqual([64, 128, 192, 256]);
    cluster.deliverAll((message) => message.type !== 'Heartbeat');
    expect(cluster.trace).toContain(`n3 restores snapshot ${snapshotIndex}@1`);
    expect(cluster.node('n3').status()).toMatchObject({ snapshotIndex, commitIndex: snapshotIndex });
    expect(cluster.appliedData('n3')).toEqual(texts);
    expect(progressOf(cluster, 'n1', 'n3')).toMatchObject({ state: 'Replicate', match: snapshotIndex });
    // Replication continues from the log.
    cluster.propose('n1', 'later');
    cluster.deliverAll();
    expect(cluster.node('n3').status().commitIndex).toBe(snapshotIndex + 1);
    expect(cluster.appliedData('n3')).toEqual([...texts, 'later']);
  });
});
