/**
 * The simulator's agenda: events ordered by (simulated time, sequence number), so ties break the same
 * way on every run.
 *
 * @module
 */

/**
 * A binary min-heap of payloads keyed by (timeNs, sequence), the sequence being the order of
 * scheduling. The heap is kept in three parallel arrays rather than one array of entry objects: every
 * simulated event passes through it, and an entry object per event was a measurable share of the
 * simulator's allocations (and of the objects each young-generation collection copies, since events
 * wait in the queue for many others).
 */
export class EventQueue<T> {
  private readonly times: number[] = [];
  private readonly sequences: number[] = [];
  private readonly payloads: T[] = [];
  private nextSequence = 0;

  /** Events waiting. */
  get size(): number {
    return this.payloads.length;
  }

  /** Schedules `payload` at `timeNs`. */
  push(timeNs: number, payload: T): void {
    const { times, sequences, payloads } = this;
    const sequence = this.nextSequence++;
    let position = payloads.length;
    times.push(timeNs);
    sequences.push(sequence);
    payloads.push(payload);
    while (position > 0) {
      const parent = (position - 1) >> 1;
      const parentTime = times[parent] as number;
      if (parentTime < timeNs || (parentTime === timeNs && (sequences[parent] as number) < sequence)) break;
      times[position] = parentTime;
      sequences[position] = sequences[parent] as number;
      payloads[position] = payloads[parent] as T;
      position = parent;
    }
    times[position] = timeNs;
    sequences[position] = sequence;
    payloads[position] = payload;
  }

  /** Time of the earliest event, or `Infinity` when the queue is empty. */
  peekTimeNs(): number {
    return this.times[0] ?? Number.POSITIVE_INFINITY;
  }

  /** Removes and returns the earliest event's payload (its time is {@link peekTimeNs} before the call). */
  pop(): T | undefined {
    const { times, sequences, payloads } = this;
    const top = payloads[0];
    if (top === undefined) return undefined;
    const lastTime = times.pop() as number;
    const lastSequence = sequences.pop() as number;
    const last = payloads.pop() as T;
    const length = payloads.length;
    if (length === 0) return top;
    let position = 0;
    for (;;) {
      const left = 2 * position + 1;
      if (left >= length) break;
      const right = left + 1;
      let child = left;
      if (right < length) {
        const leftTime = times[left] as number;
        const rightTime = times[right] as number;
        if (rightTime < leftTime || (rightTime === leftTime && (sequences[right] as number) < (sequences[left] as number))) child = right;
      }
      const childTime = times[child] as number;
      if (lastTime < childTime || (lastTime === childTime && lastSequence < (sequences[child] as number))) break;
      times[position] = childTime;
      sequences[position] = sequences[child] as number;
      payloads[position] = payloads[child] as T;
      position = child;
    }
    times[position] = lastTime;
    sequences[position] = lastSequence;
    payloads[position] = last;
    return top;
  }
}
