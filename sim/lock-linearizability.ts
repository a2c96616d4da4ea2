/**
 * Linearizability of a lock history against a lock model with leases (the lock workload's third
 * checker). The model, per key: the last grant (owner and fencing token) and the largest token
 * granted so far. A lease may expire at any moment (the leader's lessor proposes it on its own), so
 * expiry is a spontaneous transition and releases add no constraint; what the history must allow is:
 *
 * - an `acquire` that returned `[owner, token]` either re-acquired the lease its owner still held
 *   (same token) or is a new grant whose token exceeds every earlier grant's;
 * - an `acquire` that failed naming holder `h` happened while `h`'s grant was the latest;
 * - a `renew` that succeeded for `[owner, token]` happened while that grant was the latest;
 * - an `acquire` with an unknown outcome (`info`) either never took effect or granted its owner an
 *   unknown, larger token at some point after it was invoked.
 *
 * The search is Wing–Gong's with memoization of (operations linearized, model state), bounded by a
 * step budget; past the budget the verdict is `unknown`, never a guess.
 *
 * @module
 */
import type { LockHistoryEvent } from './lock.js';

/** The verdict for a lock history. */
export type LockLinearizability = { readonly ok: true } | { readonly ok: 'unknown'; readonly key: string } | { readonly ok: false; readonly key: string; readonly reason: string };

interface LockOperation {
  readonly kind: 'grant' | 'held' | 'renewed' | 'maybe-grant';
  readonly owner: string;
  /** The token granted or named; null for a maybe-grant (unknown) and for `held`. */
  readonly token: number | null;
  readonly invokeNs: number;
  /** Infinity for operations whose outcome is unknown. */
  readonly completeNs: number;
}

interface ModelState {
  readonly owner: string | null;
  /** Token of the latest grant; null when unknown (a maybe-grant). */
  readonly token: number | null;
  readonly maxToken: number;
}

/** Checks every key of a lock history. */
export function checkLockLinearizable(history: readonly LockHistoryEvent[], options: { readonly maxSteps?: number } = {}): LockLinearizability {
  const maxSteps = options.maxSteps ?? 1_000_000;
  const byKey = new Map<string, LockOperation[]>();
  const open = new Map<number, LockHistoryEvent>();
  const add = (key: string, operation: LockOperation): void => {
    byKey.set(key, [...(byKey.get(key) ?? []), operation]);
  };
  for (const event of history) {
    if (event.type === 'invoke') {
      open.set(event.process, event);
      continue;
    }
    const invoke = open.get(event.process);
    open.delete(event.process);
    if (invoke === undefined || invoke.f !== event.f || invoke.key !== event.key) continue;
    const owner = invoke.f === 'acquire' ? (typeof invoke.value === 'string' ? invoke.value : null) : Array.isArray(invoke.value) ? (invoke.value[0] as string) : null;
    if (owner === null) continue;
    if (event.f === 'acquire') {
      if (event.type === 'ok' && Array.isArray(event.value)) add(event.key, { kind: 'grant', owner, token: event.value[1] as number, invokeNs: invoke.time, completeNs: event.time });
      else if (event.type === 'fail' && typeof event.value === 'string') add(event.key, { kind: 'held', owner: event.value, token: null, invokeNs: invoke.time, completeNs: event.time });
      else if (event.type === 'info') add(event.key, { kind: 'maybe-grant', owner, token: null, invokeNs: invoke.time, completeNs: Number.POSITIVE_INFINITY });
    } else if (event.f === 'renew' && event.type === 'ok' && Array.isArray(event.value)) {
      add(event.key, { kind: 'renewed', owner, token: event.value[1] as number, invokeNs: invoke.time, completeNs: event.time });
    }
  }
  // Acquires still open at the end have an unknown outcome.
  for (const invoke of open.values()) {
    if (invoke.f === 'acquire' && typeof invoke.value === 'string') add(invoke.key, { kind: 'maybe-grant', owner: invoke.value, token: null, invokeNs: invoke.time, completeNs: Number.POSITIVE_INFINITY });
  }
  for (const [key, operations] of byKey) {
    const verdict = checkKey(key, operations, maxSteps);
    if (verdict.ok !== true) return verdict;
  }
  return { ok: true };
}

function apply(state: ModelState, operation: LockOperation): ModelState | null {
  switch (operation.kind) {
    case 'grant': {
      const token = operation.token ?? 0;
      if (state.owner === operation.owner && (state.token === token || state.token === null) && token <= state.maxToken) {
        return { owner: operation.owner, token, maxToken: state.maxToken };
      }
      return token > state.maxToken ? { owner: operation.owner, token, maxToken: token } : null;
    }
    case 'held':
      return state.owner === operation.owner ? state : null;
    case 'renewed':
      return state.owner === operation.owner && (state.token === operation.token || state.token === null) ? { ...state, token: operation.token } : null;
    case 'maybe-grant':
      // Its token is unknown but larger than every earlier one; later new grants must exceed it too,
      // which the model cannot know, so it stays permissive there.
      return { owner: operation.owner, token: null, maxToken: state.maxToken };
  }
}

function checkKey(key: string, operations: readonly LockOperation[], maxSteps: number): LockLinearizability {
  const sorted = [...operations].sort((a, b) => a.invokeNs - b.invokeNs);
  const required = sorted.filter((operation) => operation.kind !== 'maybe-grant').length;
  const seen = new Set<string>();
  let steps = 0;
  const done = new Uint8Array(sorted.length);
  // Depth-first search over linearizations; recursion depth is bounded by the number of operations.
  const search = (state: ModelState, requiredDone: number): boolean | 'unknown' => {
    if (requiredDone === required) return true;
    if (++steps > maxSteps) return 'unknown';
    const memo = `${Array.from(done).join('')}|${String(state.owner)}|${String(state.token)}|${state.maxToken}`;
    if (seen.has(memo)) return false;
    seen.add(memo);
    // An operation may go next only if no pending required operation completed before it was invoked.
    let earliestCompletion = Number.POSITIVE_INFINITY;
    for (let index = 0; index < sorted.length; index++) {
      const operation = sorted[index];
      if (operation !== undefined && done[index] === 0 && operation.kind !== 'maybe-grant') earliestCompletion = Math.min(earliestCompletion, operation.completeNs);
    }
    for (let index = 0; index < sorted.length; index++) {
      const operation = sorted[index];
      if (operation === undefined || done[index] === 1 || operation.invokeNs > earliestCompletion) continue;
      const next = apply(state, operation);
      if (next === null) continue;
      done[index] = 1;
      const result = search(next, requiredDone + (operation.kind === 'maybe-grant' ? 0 : 1));
      done[index] = 0;
      if (result !== false) return result;
    }
    return false;
  };
  const verdict = search({ owner: null, token: null, maxToken: 0 }, 0);
  if (verdict === 'unknown') return { ok: 'unknown', key };
  if (!verdict) return { ok: false, key, reason: 'no order of the operations fits a lock with leases that expire at any moment' };
  return { ok: true };
}
