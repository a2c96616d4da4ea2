/**
 * Raft's safety properties, checked from outside the nodes after every simulation step.
 *
 * The checker sees what an omniscient observer sees — every node's core, every durable write, every
 * applied command — and keeps its own history, so it can detect a property broken by any node at any
 * time, including across crashes and restarts.
 *
 * @module
 */
import type { Entry, HardState, LogIndex, Message, RawNode, Snapshot, Term } from '../src/raft/index.js';

/** Which property broke. */
export type PropertyName =
  | 'ElectionSafety'
  | 'LeaderAppendOnly'
  | 'LogMatching'
  | 'LeaderCompleteness'
  | 'LeaderCommitsOwnTerm'
  | 'StateMachineSafety'
  | 'CommittedEntriesNeverChange'
  | 'DurableStateMonotonic'
  | 'DurableBeforeSend'
  | 'OneVotePerTerm'
  | 'MembershipChangeSafety'
  | 'LeaseExclusion'
  | 'Fencing'
  | 'MaintenanceOnce'
  | 'MaintenanceExclusion'
  | 'MaintenanceResume'
  | 'MaintenanceLiveness'
  | 'Liveness'
  | 'Linearizability'
  | 'NodeFailure';

/** A broken property: what, where, when. */
export interface Violation {
  readonly property: PropertyName;
  readonly message: string;
  /** Nodes involved. */
  readonly nodes: readonly string[];
  /** Simulation step (event number) and true time at which it was detected. */
  readonly step: number;
  readonly timeNs: number;
}

/** Raised inside the simulator to stop a run at the first violation. */
export class ViolationError extends Error {
  constructor(readonly violation: Violation) {
    super(`${violation.property} violated at step ${violation.step} (t=${violation.timeNs} ns) on ${violation.nodes.join(', ')}: ${violation.message}`);
    this.name = 'ViolationError';
  }
}

interface CommitRecord {
  readonly term: Term;
  /** The lowest term in which any node was seen with this index committed. */
  commitTerm: number;
  readonly data: Uint8Array;
}

/** An entry first seen at its (index, term), and the entry seen at the same index in another term. */
interface EntrySeen {
  readonly term: number;
  readonly data: Uint8Array;
  readonly previousTerm: number;
  readonly otherTerm: EntrySeen | undefined;
}

interface LeaderRecord {
  readonly node: string;
  lastIndex: number;
  lastTerm: number;
  /** The leader's commit index when last observed. */
  commitIndex: number;
}

/**
 * Checks Raft's safety properties (paper Figure 3 and §5.4) plus the durability rules, incrementally:
 * each observation costs time proportional to what changed, not to the log length.
 */
export class SafetyChecker {
  private step = 0;
  private timeNs = 0;
  /** term → leader seen in that term. */
  private readonly leaders = new Map<number, LeaderRecord>();
  /**
   * index → the entries first seen there (one per term, usually just one) and the terms of their
   * predecessors. Keyed by number, not by an "index:term" string: this runs for every entry every
   * node writes.
   */
  private readonly entriesByIndex = new Map<number, EntrySeen>();
  /** index → what was committed there. */
  private readonly committed = new Map<number, CommitRecord>();
  /** node → highest commit index already recorded. */
  private readonly commitSeen = new Map<string, number>();
  /** index → the command applied there (by any node). */
  private readonly applied = new Map<number, Uint8Array>();
  /** node incarnation key → the last index it applied. */
  private readonly lastApplied = new Map<string, number>();
  /** node → the last durable hard state. */
  private readonly durable = new Map<string, HardState>();
  /** node → term → vote cast (durably). */
  private readonly votes = new Map<string, Map<number, string>>();
  /** snapshot index → fingerprint of the first snapshot seen there (term and state bytes). */
  private readonly snapshots = new Map<number, { readonly term: number; readonly data: Uint8Array; readonly node: string }>();

  /** Sets the position reported with any violation. */
  at(step: number, timeNs: number): void {
    this.step = step;
    this.timeNs = timeNs;
  }

  /**
   * A batch became durable on `node`'s disk. `storedLog.termAt` reads the durable log after the
   * write (the term of the stored entry at an index, if held).
   */
  onDurableWrite(node: string, hardState: HardState | null, entries: readonly Entry[], storedLog: { termAt(index: number): number | undefined }): void {
    if (hardState !== null) {
      const previous = this.durable.get(node);
      if (previous !== undefined) {
        if (hardState.term < previous.term) this.fail('DurableStateMonotonic', [node], `durable term went back from ${previous.term} to ${hardState.term}`);
        if (hardState.commit < previous.commit) this.fail('DurableStateMonotonic', [node], `durable commit index went back from ${previous.commit} to ${hardState.commit}`);
        if (hardState.term === previous.term && previous.vote !== null && hardState.vote !== previous.vote) {
          this.fail('OneVotePerTerm', [node], `voted for ${previous.vote} and then ${String(hardState.vote)} in term ${hardState.term}`);
        }
      }
      if (hardState.vote !== null) {
        const byTerm = this.votes.get(node) ?? new Map<number, string>();
        const earlier = byTerm.get(hardState.term);
        if (earlier !== undefined && earlier !== hardState.vote) {
          this.fail('OneVotePerTerm', [node], `voted for ${earlier} and then ${hardState.vote} in term ${hardState.term}`);
        }
        byTerm.set(hardState.term, hardState.vote);
        this.votes.set(node, byTerm);
      }
      this.durable.set(node, hardState);
    }
    for (const entry of entries) {
      const previousTerm = entry.index === 1 ? 0 : (storedLog.termAt(entry.index - 1) ?? -1);
      this.checkEntry(node, entry, previousTerm);
    }
  }

  /**
   * Figure 2: persistent state is updated on stable storage before responding to RPCs. Checked on
   * every message as it leaves: the term it carries is durable (pre-votes excepted: they carry a term
   * the sender does not hold), a granted vote is durable, and an acknowledged entry is on disk.
   */
  onSend(node: string, message: Message, durable: HardState, durableLastIndex: number): void {
    if (message.type === 'ProposeRequest' || message.type === 'ProposeResponse') return;
    if ((message.type === 'VoteRequest' || message.type === 'VoteResponse') && message.preVote) return;
    if (message.term > durable.term) {
      this.fail('DurableBeforeSend', [node], `sent ${message.type} with term ${message.term} while its durable term is ${durable.term}`);
    }
    // A durable later term is as good as the vote: the node can never vote in the earlier term again.
    const voteIsDurable = durable.term > message.term || (durable.term === message.term && durable.vote === message.to);
    if (message.type === 'VoteResponse' && message.granted && !voteIsDurable) {
      this.fail('DurableBeforeSend', [node], `granted its vote to ${message.to} in term ${message.term} before the vote was durable (durable: term ${durable.term}, vote ${String(durable.vote)})`);
    }
    if (message.type === 'AppendResponse' && message.success && message.index > durableLastIndex) {
      this.fail('DurableBeforeSend', [node], `acknowledged index ${message.index} with the durable log ending at ${durableLastIndex}`);
    }
  }

  /**
   * A snapshot was taken or installed on `node`. Snapshots at the same index must be identical (the
   * state machine is deterministic and serializes deterministically), and the snapshot's term must be
   * that of the entry committed at its index.
   */
  onSnapshot(node: string, snapshot: Snapshot): void {
    const { index, term: snapshotTerm } = snapshot.metadata;
    const committed = this.committed.get(index);
    if (committed !== undefined && committed.term !== snapshotTerm) {
      this.fail('StateMachineSafety', [node], `snapshot at ${index} claims term ${snapshotTerm}, but term ${committed.term} was committed there`);
    }
    const earlier = this.snapshots.get(index);
    if (earlier === undefined) {
      this.snapshots.set(index, { term: snapshotTerm, data: snapshot.data, node });
      return;
    }
    if (earlier.term !== snapshotTerm || !sameBytes(earlier.data, snapshot.data)) {
      this.fail('StateMachineSafety', [earlier.node, node], `snapshots at index ${index} differ between ${earlier.node} and ${node}`);
    }
  }

  /**
   * Log matching (§5.3): two logs holding an entry with the same index and term hold the same command
   * there and agree on everything before it. Checking that each (index, term) always carries the same
   * command and the same predecessor term proves the whole prefix equal, by induction.
   */
  private checkEntry(node: string, entry: Entry, previousTerm: number): void {
    const first = this.entriesByIndex.get(entry.index);
    let known = first;
    while (known !== undefined && known.term !== entry.term) known = known.otherTerm;
    if (known === undefined) {
      // Bounded: one record per term in which this index was written.
      this.entriesByIndex.set(entry.index, { term: entry.term, data: entry.data, previousTerm, otherTerm: first });
      return;
    }
    if (!sameBytes(known.data, entry.data)) this.fail('LogMatching', [node], `entry ${entry.index}:${entry.term} holds a different command than on another node`);
    if (known.previousTerm !== previousTerm) {
      this.fail('LogMatching', [node], `entry ${entry.index}:${entry.term} follows term ${previousTerm} here but term ${known.previousTerm} elsewhere`);
    }
  }

  /**
   * A node's state machine was restored from the snapshot at `index`: the next command it applies
   * follows that index.
   */
  onRestore(node: string, incarnation: number, index: LogIndex): void {
    const key = `${node}#${incarnation}`;
    const last = this.lastApplied.get(key) ?? 0;
    if (index < last) this.fail('StateMachineSafety', [node], `restored a snapshot at ${index} after applying up to ${last}`);
    this.lastApplied.set(key, index);
  }

  /** A node's state machine applied `command` at `index` (incarnations restart at index 1). */
  onApply(node: string, incarnation: number, index: LogIndex, command: Uint8Array): void {
    const key = `${node}#${incarnation}`;
    const last = this.lastApplied.get(key) ?? 0;
    if (index <= last) this.fail('StateMachineSafety', [node], `applied index ${index} after ${last}: applied twice or out of order`);
    this.lastApplied.set(key, index);
    const earlier = this.applied.get(index);
    if (earlier === undefined) this.applied.set(index, command);
    else if (!sameBytes(earlier, command)) this.fail('StateMachineSafety', [node], `applied a different command at index ${index} than another node`);
  }

  /** Observes a running node's core after a step. */
  observe(node: string, core: RawNode): void {
    const raft = core.raft;
    const log = raft.log;
    const currentTerm = raft.term();
    // Committed entries never change, and remember in which term each was first known committed.
    const committedIndex = log.committed();
    const seen = this.commitSeen.get(node) ?? 0;
    if (committedIndex > seen) {
      for (let index = seen + 1; index <= committedIndex; index++) {
        const entry = log.entryAt(index as LogIndex);
        if (entry === undefined) continue;
        const record = this.committed.get(index);
        if (record === undefined) {
          this.committed.set(index, { term: entry.term, commitTerm: currentTerm, data: entry.data });
        } else {
          if (record.term !== entry.term || !sameBytes(record.data, entry.data)) {
            this.fail('CommittedEntriesNeverChange', [node], `index ${index} committed with term ${record.term} elsewhere, term ${entry.term} here`);
          }
          record.commitTerm = Math.min(record.commitTerm, currentTerm);
        }
      }
      this.commitSeen.set(node, committedIndex);
    } else if (committedIndex < seen) {
      // A restarted node recovers its commit index from disk; it may be lower than what it knew.
      this.commitSeen.set(node, committedIndex);
    }

    if (raft.role() !== 'Leader') return;
    const lastIndex = log.lastIndex();
    const lastTerm = log.lastTerm();
    const record = this.leaders.get(currentTerm);
    if (record === undefined) {
      this.leaders.set(currentTerm, { node, lastIndex, lastTerm, commitIndex: committedIndex });
      this.checkLeaderCompleteness(node, core, currentTerm);
      return;
    }
    if (record.node !== node) this.fail('ElectionSafety', [record.node, node], `two leaders in term ${currentTerm}`);
    // A leader never overwrites or deletes entries in its log (Figure 3, Leader Append-Only); entries
    // it compacted into a snapshot are committed and cannot have changed.
    const recordTerm = record.lastIndex >= log.snapshotIndex() ? log.termAt(record.lastIndex as LogIndex) : record.lastTerm;
    if (lastIndex < record.lastIndex || recordTerm !== record.lastTerm) {
      this.fail('LeaderAppendOnly', [node], `leader of term ${currentTerm} lost entry ${record.lastIndex}@${record.lastTerm}`);
    }
    record.lastIndex = lastIndex;
    record.lastTerm = lastTerm;
    // §5.4.2: a leader commits by counting replicas only an entry of its own term; earlier entries
    // commit indirectly with it. Whatever the leader's commit index moved to must be of this term.
    if (committedIndex > record.commitIndex && log.termAt(committedIndex) !== currentTerm) {
      this.fail('LeaderCommitsOwnTerm', [node], `leader of term ${currentTerm} advanced its commit index to ${committedIndex}, an entry of term ${String(log.termAt(committedIndex))}`);
    }
    record.commitIndex = committedIndex;
    // Thesis §4.1: at most one membership change in flight, so every majority of the old voters
    // overlaps every majority of the new ones.
    const uncommittedChanges = log.uncommittedMembershipChanges();
    if (uncommittedChanges > 1) this.fail('MembershipChangeSafety', [node], `leader of term ${currentTerm} holds ${uncommittedChanges} uncommitted membership changes`);
  }

  /** Leader completeness (§5.4): a leader holds every entry committed in an earlier term. */
  private checkLeaderCompleteness(node: string, core: RawNode, leaderTerm: number): void {
    const log = core.raft.log;
    for (const [index, record] of this.committed) {
      if (record.commitTerm >= leaderTerm) continue;
      // A compacted entry is inside the leader's snapshot, which holds only committed entries.
      if (index <= log.snapshotIndex()) continue;
      if (log.termAt(index as LogIndex) !== record.term) {
        this.fail('LeaderCompleteness', [node], `leader of term ${leaderTerm} lacks entry ${index}@${record.term}, committed in term ${record.commitTerm}`);
      }
    }
  }

  /** Number of committed indexes seen. */
  committedCount(): number {
    return this.committed.size;
  }

  /** Raises a violation at the current step. */
  fail(property: PropertyName, nodes: readonly string[], message: string): never {
    throw new ViolationError({ property, message, nodes, step: this.step, timeNs: this.timeNs });
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let position = 0; position < a.byteLength; position++) if (a[position] !== b[position]) return false;
  return true;
}
