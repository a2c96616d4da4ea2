import { it } from 'vitest';
import { checkLinearizable, type HistoryEvent } from '../../sim/linearizability.js';
it('x', () => {
  const h: HistoryEvent[] = [
    { process: 0, type: 'invoke', f: 'write', key: 'x', value: 1, time: 0 },
    { process: 0, type: 'ok', f: 'write', key: 'x', value: 1, time: 10 },
    { process: 1, type: 'invoke', f: 'write', key: 'x', value: 2, time: 20 },
    { process: 1, type: 'ok', f: 'write', key: 'x', value: 2, time: 30 },
    { process: 2, type: 'invoke', f: 'read', key: 'x', value: null, time: 40 },
    { process: 2, type: 'ok', f: 'read', key: 'x', value: 1, time: 50 },
  ];
  console.log(JSON.stringify(checkLinearizable(h), null, 1));
  console.log(checkLinearizable(h.slice(0, 4)));
});
