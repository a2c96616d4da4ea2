import { describe, expect, it } from 'vitest';
import { SafetyChecker, ViolationError } from '../../sim/index.js';
import { EntryType, type Entry, type LogIndex, type Term } from '../../src/raft/index.js';

function entry(index: number, term: number, bytes: readonly number[]): Entry {
  return { index: index as LogIndex, term: term as Term, type: EntryType.Normal, data: Uint8Array.from(bytes) };
}

/** A durable log holding `terms[index - 1]` at each index. */
function storedLog(terms: readonly number[]): { termAt(index: number): number | undefined } {
  return { termAt: (index) => terms[index - 1] };
}

/** The property a call broke, or null. */
function broken(action: () => void): string | null {
  try {
    action();
    return null;
  } catch (error) {
    if (error instanceof ViolationError) return error.violation.property;
    throw error;
  }
}

describe('SafetyChecker: log matching on durable writes', () => {
  it('accepts the same entry written on several nodes, and other terms at the same index', () => {
    const checker = new SafetyChecker();
    checker.onDurableWrite('n1', null, [entry(1, 1, [1]), entry(2, 1, [2])], storedLog([1, 1]));
    checker.onDurableWrite('n2', null, [entry(1, 1, [1]), entry(2, 1, [2])], storedLog([1, 1]));
    // An uncommitted entry of another term at index 2 (a different leader's): allowed.
    expect(broken(() => { checker.onDurableWrite('n3', null, [entry(1, 1, [1]), entry(2, 2, [9])], storedLog([1, 2])); })).toBeNull();
    // Both terms remain known at index 2.
    expect(broken(() => { checker.onDurableWrite('n4', null, [entry(2, 1, [2])], storedLog([1, 1])); })).toBeNull();
    expect(broken(() => { checker.onDurableWrite('n5', null, [entry(2, 2, [9])], storedLog([1, 2])); })).toBeNull();
  });

  it('reports a different command at the same index and term', () => {
    const checker = new SafetyChecker();
    checker.onDurableWrite('n1', null, [entry(1, 1, [1]), entry(2, 2, [2])], storedLog([1, 2]));
    checker.onDurableWrite('n1', null, [entry(2, 3, [3])], storedLog([1, 3]));
    expect(broken(() => { checker.onDurableWrite('n2', null, [entry(2, 2, [7])], storedLog([1, 2])); })).toBe('LogMatching');
    // Found past the first record of the index, too.
    expect(broken(() => { checker.onDurableWrite('n3', null, [entry(2, 3, [8])], storedLog([1, 3])); })).toBe('LogMatching');
  });

  it('reports the same entry after a different predecessor term', () => {
    const checker = new SafetyChecker();
    checker.onDurableWrite('n1', null, [entry(1, 1, [1]), entry(2, 2, [2])], storedLog([1, 2]));
    expect(broken(() => { checker.onDurableWrite('n2', null, [entry(1, 2, [5]), entry(2, 2, [2])], storedLog([2, 2])); })).toBe('LogMatching');
  });
});
