/**
 * The in-memory Raft log of one node: entries, commit and apply positions, and which suffix is not yet
 * durable. The runtime's Storage holds the durable copy; this view is what the core reasons about.
 *
 * @module
 */
import { decodeMembership } from './codec.js';
import { invariant } from './errors.js';
import { EntryType, type Entry, type LogIndex, type Membership, type SnapshotMetadata, type Term } from './types.js';

/** The empty batch, shared (frozen) so that a Ready with nothing to write or apply allocates none. */
const NO_ENTRIES: readonly Entry[] = Object.freeze([]);

/** Payload bytes of an entry, the unit of every byte limit in the core. */
export function entryBytes(entry: Entry): number {
  return entry.data.byteLength;
}

/**
 * The log.
 *
 * Invariants (checked where they could break):
 * - `applied ≤ applying ≤ committed ≤ lastIndex()`;
 * - `committed` never decreases and no committed entry is ever truncated;
 * - `entries[i].index === offset + i`, terms never decrease along the log.
 */
export class RaftLog {
  /** Index of the entry before `entries[0]`: the last index covered by a snapshot (0 without one). */
  private offset: LogIndex;
  /** Term of the entry at `offset`. */
  private offsetTerm: Term;
  /** Membership in effect at `offset` (the snapshot's, or the bootstrap membership). */
  private offsetMembership: Membership;
  /** Membership entries held in the log, in index order (few: at most one is uncommitted). */
  private confEntries: { readonly index: LogIndex; readonly membership: Membership }[] = [];
  private entries: Entry[];
  /** Highest index known to be replicated on a quorum. */
  private committedIndex: LogIndex;
  /** Highest index the application has acknowledged applying. */
  private appliedIndex: LogIndex;
  /** Highest index handed out for applying but not yet acknowledged. */
  private applyingIndex: LogIndex;
  /** Entries up to here are durable in Storage. */
  private stableIndex: LogIndex;
  /** Entries up to here are handed to Storage and being written. */
  private persistingIndex: LogIndex;

  /**
   * @param snapshot metadata of the stored snapshot, or null.
   * @param entries durable entries loaded from Storage, contiguous; entries the snapshot covers are
   *   skipped, the rest must start right after it.
   * @param committed the persisted commit index.
   * @param applied the index the state machine already reflects.
   * @param bootstrap the membership before the first membership entry, used without a snapshot.
   */
  constructor(snapshot: SnapshotMetadata | null, entries: readonly Entry[], committed: LogIndex, applied: LogIndex, bootstrap: Membership) {
    this.offset = snapshot?.index ?? (0 as LogIndex);
    this.offsetTerm = snapshot?.term ?? (0 as Term);
    this.offsetMembership = snapshot?.membership ?? bootstrap;
    this.entries = [];
    for (const entry of entries) if (entry.index > this.offset) this.pushChecked(entry);
    const last = this.lastIndex();
    // A snapshot holds only committed state, so the commit index is at least its index.
    const loadedCommit = Math.max(committed, this.offset) as LogIndex;
    const loadedApplied = Math.max(applied, this.offset) as LogIndex;
    invariant(loadedCommit <= last, () => `loaded commit index ${loadedCommit} is beyond the last loaded entry ${last}`);
    invariant(loadedApplied <= loadedCommit, () => `applied index ${loadedApplied} is beyond the commit index ${loadedCommit}`);
    this.committedIndex = loadedCommit;
    this.appliedIndex = loadedApplied;
    this.applyingIndex = loadedApplied;
    this.stableIndex = last;
    this.persistingIndex = last;
  }

  /** The membership in effect: that of the last membership entry in the log, committed or not (thesis §4.1). */
  membership(): Membership {
    return this.confEntries.at(-1)?.membership ?? this.offsetMembership;
  }

  /** The membership in effect at `index` (at or after the snapshot point). */
  membershipAt(index: LogIndex): Membership {
    invariant(index >= this.offset, () => `membership at ${index} is before the snapshot point ${this.offset}`);
    let membership = this.offsetMembership;
    for (const conf of this.confEntries) {
      if (conf.index > index) break;
      membership = conf.membership;
    }
    return membership;
  }

  /** Number of membership entries in the log above the commit index. */
  uncommittedMembershipChanges(): number {
    let count = 0;
    for (let position = this.confEntries.length - 1; position >= 0; position--) {
      const conf = this.confEntries[position];
      if (conf === undefined || conf.index <= this.committedIndex) break;
      count++;
    }
    return count;
  }

  /** Index of the last membership entry in the log; the snapshot point when there is none. */
  lastMembershipIndex(): LogIndex {
    return this.confEntries.at(-1)?.index ?? this.offset;
  }

  /** Index of the last entry covered by the snapshot (0 without one). */
  snapshotIndex(): LogIndex {
    return this.offset;
  }

  /**
   * Discards entries up to `index`, which a durable snapshot covers (paper §7). Only applied entries
   * can be compacted: the state machine must already reflect them.
   */
  compact(index: LogIndex): void {
    if (index <= this.offset) return;
    invariant(index <= this.appliedIndex, () => `compacting to ${index} beyond the applied index ${this.appliedIndex}`);
    const indexTerm = this.termAt(index);
    invariant(indexTerm !== undefined, () => `compacting to ${index}, which the log does not hold`);
    this.offsetMembership = this.membershipAt(index);
    this.confEntries = this.confEntries.filter((conf) => conf.index > index);
    this.entries = this.entries.slice(index - this.offset);
    this.offset = index;
    this.offsetTerm = indexTerm;
  }

  /**
   * Replaces the whole log with a snapshot from the leader (paper Figure 13 step 7): the log conflicts
   * with or ends before the snapshot, so nothing of it is kept. The state machine is restored from
   * the snapshot before anything after it is applied.
   */
  restore(metadata: SnapshotMetadata): void {
    invariant(metadata.index > this.committedIndex, () => `restoring snapshot ${metadata.index} at or below the commit index ${this.committedIndex}`);
    this.entries = [];
    this.confEntries = [];
    this.offset = metadata.index;
    this.offsetTerm = metadata.term;
    this.offsetMembership = metadata.membership;
    this.committedIndex = metadata.index;
    this.applyingIndex = metadata.index;
    // The snapshot reaches Storage in the same batch as anything appended after it.
    this.stableIndex = metadata.index;
    this.persistingIndex = metadata.index;
  }

  /** Index of the first entry held (1 for an uncompacted log; the snapshot index + 1 after compaction). */
  firstIndex(): LogIndex {
    return (this.offset + 1) as LogIndex;
  }

  /** Index of the last entry, or of the compaction point when empty. */
  lastIndex(): LogIndex {
    return (this.offset + this.entries.length) as LogIndex;
  }

  /** Term of the last entry. */
  lastTerm(): Term {
    return this.entries.at(-1)?.term ?? this.offsetTerm;
  }

  /** The commit index. */
  committed(): LogIndex {
    return this.committedIndex;
  }

  /** The applied index (acknowledged by the application). */
  applied(): LogIndex {
    return this.appliedIndex;
  }

  /** Highest durable index. */
  stable(): LogIndex {
    return this.stableIndex;
  }

  /** Term of the entry at `index`; undefined when the log does not hold it. */
  termAt(index: LogIndex): Term | undefined {
    if (index === this.offset) return this.offsetTerm;
    return this.entries[index - this.offset - 1]?.term;
  }

  /** The entry at `index`, if held. */
  entryAt(index: LogIndex): Entry | undefined {
    return this.entries[index - this.offset - 1];
  }

  /** Whether the log holds an entry at `index` with term `entryTerm` (the consistency check of §5.3). */
  matchTerm(index: LogIndex, entryTerm: Term): boolean {
    return this.termAt(index) === entryTerm;
  }

  /**
   * Whether a candidate whose last entry is (`lastIndex`, `lastTerm`) is at least as up to date as
   * this log (paper §5.4.1): a later last term wins; with equal terms the longer log wins.
   */
  isUpToDate(lastIndex: LogIndex, lastTerm: Term): boolean {
    const ownLastTerm = this.lastTerm();
    return lastTerm > ownLastTerm || (lastTerm === ownLastTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Entries from `fromIndex` on, at most `maxCount` of them and at most `maxBytes` payload bytes
   * (the first entry is always included so an oversized entry still moves).
   */
  slice(fromIndex: LogIndex, maxCount: number, maxBytes: number): Entry[] {
    const start = fromIndex - this.offset - 1;
    invariant(start >= 0, () => `slice from ${fromIndex} is before the first index ${this.firstIndex()}`);
    const end = Math.min(this.entries.length, start + maxCount);
    const result: Entry[] = [];
    let bytes = 0;
    for (let position = start; position < end; position++) {
      const entry = this.entries[position];
      invariant(entry !== undefined, 'slice read a hole in the log');
      bytes += entryBytes(entry);
      if (result.length > 0 && bytes > maxBytes) break;
      result.push(entry);
    }
    return result;
  }

  /** Appends entries a leader created; they must continue the log directly. */
  appendAsLeader(newEntries: readonly Entry[]): void {
    for (const entry of newEntries) this.pushChecked(entry);
  }

  /**
   * Follower append (paper Figure 2, AppendEntries steps 3 and 4): skips entries already present,
   * truncates from the first conflicting entry, appends the rest. The caller has checked that the log
   * matches at `entries[0].index - 1`. Returns the index of the last entry of the request.
   */
  appendFromLeader(prevLogIndex: LogIndex, newEntries: readonly Entry[]): LogIndex {
    for (let position = 0; position < newEntries.length; position++) {
      const entry = newEntries[position];
      invariant(entry !== undefined, 'hole in appended entries');
      invariant(entry.index === prevLogIndex + position + 1, () => `appended entry has index ${entry.index}, expected ${prevLogIndex + position + 1}`);
      if (this.matchTerm(entry.index, entry.term)) continue;
      if (entry.index <= this.lastIndex()) this.truncateFrom(entry.index);
      for (let rest = position; rest < newEntries.length; rest++) {
        const restEntry = newEntries[rest];
        invariant(restEntry !== undefined, 'hole in appended entries');
        this.pushChecked(restEntry);
      }
      break;
    }
    return (prevLogIndex + newEntries.length) as LogIndex;
  }

  /**
   * A deliberately wrong follower append (the `SkipConflictTruncation` test bug): entries at indexes
   * the log already holds are kept even when their terms differ; only entries past the end are added.
   *
   * @internal
   */
  appendSkippingConflicts(prevLogIndex: LogIndex, newEntries: readonly Entry[]): LogIndex {
    for (const entry of newEntries) {
      if (entry.index <= this.lastIndex()) continue;
      if (entry.term < this.lastTerm()) break;
      this.pushChecked(entry);
    }
    return Math.min(prevLogIndex + newEntries.length, this.lastIndex()) as LogIndex;
  }

  /**
   * The last index at or below `index` whose term is at most `maxTerm`: where a leader with a log
   * ending in `maxTerm` entries can next probe (fast back-off).
   */
  lastIndexWithTermAtMost(index: LogIndex, maxTerm: Term): LogIndex {
    let candidate = Math.min(index, this.lastIndex());
    // Bounded by the log length: one step per entry, stops at the compaction point.
    while (candidate > this.offset) {
      const candidateTerm = this.termAt(candidate as LogIndex);
      if (candidateTerm !== undefined && candidateTerm <= maxTerm) break;
      candidate--;
    }
    return candidate as LogIndex;
  }

  /** Raises the commit index. Never lowers it; never beyond the last entry. */
  commitTo(index: LogIndex): boolean {
    if (index <= this.committedIndex) return false;
    invariant(index <= this.lastIndex(), () => `commit index ${index} beyond last index ${this.lastIndex()}`);
    this.committedIndex = index;
    return true;
  }

  /** Whether committed, durable entries wait to be handed to the application. */
  hasEntriesToApply(): boolean {
    return Math.min(this.committedIndex, this.stableIndex) > this.applyingIndex;
  }

  /**
   * Committed entries not yet handed out, up to `maxCount`; marks them as being applied. Only durable
   * entries are handed out, so a node never applies what a crash could make it forget.
   */
  takeEntriesToApply(maxCount: number): readonly Entry[] {
    const upTo = Math.min(this.committedIndex, this.stableIndex, this.applyingIndex + maxCount);
    if (upTo <= this.applyingIndex) return NO_ENTRIES;
    const result = this.slice((this.applyingIndex + 1) as LogIndex, upTo - this.applyingIndex, Number.POSITIVE_INFINITY);
    this.applyingIndex = upTo as LogIndex;
    return result;
  }

  /** Acknowledges that the application applied everything handed out up to `index`. */
  appliedTo(index: LogIndex): void {
    invariant(index <= this.applyingIndex, () => `applied ${index} was never handed out (applying ${this.applyingIndex})`);
    invariant(index >= this.appliedIndex, () => `applied index went back from ${this.appliedIndex} to ${index}`);
    this.appliedIndex = index;
  }

  /** Whether entries wait to be handed to Storage. */
  hasUnstableEntries(): boolean {
    return this.lastIndex() > this.persistingIndex;
  }

  /** Entries not yet handed to Storage; marks them as being persisted. */
  takeUnstableEntries(): readonly Entry[] {
    if (!this.hasUnstableEntries()) return NO_ENTRIES;
    const result = this.entries.slice(this.persistingIndex - this.offset);
    this.persistingIndex = this.lastIndex();
    return result;
  }

  /** Storage finished writing everything handed to it so far. */
  persisted(): void {
    this.stableIndex = this.persistingIndex;
  }

  private truncateFrom(index: LogIndex): void {
    invariant(index > this.committedIndex, () => `truncating committed entry ${index} (commit ${this.committedIndex})`);
    invariant(index > this.offset, () => `truncating compacted entry ${index}`);
    this.entries.length = index - this.offset - 1;
    // A membership entry removed with the tail takes its configuration with it (thesis §4.1).
    while ((this.confEntries.at(-1)?.index ?? 0) >= index) this.confEntries.pop();
    // A write in flight may still land the old entries; they are overwritten by the next batch, which
    // starts at `index`, and nothing from `index` on counts as durable until then.
    if (this.persistingIndex >= index) this.persistingIndex = (index - 1) as LogIndex;
    if (this.stableIndex >= index) this.stableIndex = (index - 1) as LogIndex;
  }

  private pushChecked(entry: Entry): void {
    const expected = this.lastIndex() + 1;
    invariant(entry.index === expected, () => `entry index ${entry.index} does not continue the log (expected ${expected})`);
    invariant(entry.term >= this.lastTerm(), () => `entry term ${entry.term} is below the last term ${this.lastTerm()}`);
    if (entry.type === EntryType.ConfChange) this.confEntries.push({ index: entry.index, membership: decodeMembership(entry.data) });
    this.entries.push(entry);
  }
}
