import { it } from 'vitest';
import { LeaseStateMachine, encodeLeaseCommand, MAX_OUTCOME_ERROR_CHARS } from '../../src/lease/index.js';
it('probe', () => {
const sm = new LeaseStateMachine();
const li = (n: number) => n as never;
console.log(sm.apply(encodeLeaseCommand({ type: 'Acquire', key: 'k', owner: 'a', ttlMs: 5, requestId: 'r' }), li(1)));
console.log(sm.apply(encodeLeaseCommand({ type: 'BeginOccurrence', key: 'k', occurrenceMs: 1000, owner: 'a', fencingToken: li(1) }), li(2)));
console.log(sm.apply(encodeLeaseCommand({ type: 'Checkpoint', key: 'k', occurrenceMs: 1000, owner: 'a', fencingToken: li(1), data: new Uint8Array(0) }), li(3)));
console.log(sm.maintenanceRecord('k'));
const err = 'x'.repeat(MAX_OUTCOME_ERROR_CHARS - 1) + '😀tail';
const r = sm.apply(encodeLeaseCommand({ type: 'FinishOccurrence', key: 'k', occurrenceMs: 1000, owner: 'a', fencingToken: li(1), result: 'error', error: err }), li(4));
const e = (r as any).outcome.error as string;
console.log(e.length, e.charCodeAt(e.length - 1).toString(16));
const snap = Buffer.from(sm.snapshot());
const sm2 = new LeaseStateMachine();
sm2.restore(snap);
const e2 = sm2.maintenanceRecord('k')!.history[0]!.error!;
console.log(e2.length, e2.charCodeAt(e2.length - 1).toString(16), Buffer.from(sm2.snapshot()).equals(snap));
});
