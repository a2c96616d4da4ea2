/**
 * The simulator's agenda: events ordered by (simulated time, sequence number), so ties break the same
 * way on every run.
 *
 * @module
 */

/** One scheduled event. */
export interface ScheduledEvent<T> {
  /** True simulated time in nanoseconds. */
  readonly timeNs: number;
  /** Order of scheduling; breaks ties between events at the same time. */
  readonly sequence: number;
  readonly payload: T;
}

/** A binary min-heap of events keyed by (timeNs, sequence). */
export class EventQueue<T> {
  private readonly heap: ScheduledEvent<T>[] = [];
  private nextSequence = 0;

  /** Events waiting. */
  get size(): number {
    return this.heap.length;
  }

  /** Schedules `payload` at `timeNs`. */
  push(timeNs: number, payload: T): void {
    const event = { timeNs, sequence: this.nextSequence++, payload };
    const heap = this.heap;
    heap.push(event);
    let position = heap.length - 1;
    while (position > 0) {
      const parent = (position - 1) >> 1;
      const parentEvent = heap[parent];
      if (parentEvent === undefined || !before(event, parentEvent)) break;
      heap[position] = parentEvent;
      position = parent;
    }
    heap[position] = event;
  }

  /** The earliest event, without removing it. */
  peek(): ScheduledEvent<T> | undefined {
    return this.heap[0];
  }

  /** Removes and returns the earliest event. */
  pop(): ScheduledEvent<T> | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    let position = 0;
    const length = heap.length;
    for (;;) {
      const left = 2 * position + 1;
      if (left >= length) break;
      const right = left + 1;
      const leftEvent = heap[left];
      const rightEvent = heap[right];
      let child = left;
      let childEvent = leftEvent;
      if (rightEvent !== undefined && leftEvent !== undefined && before(rightEvent, leftEvent)) {
        child = right;
        childEvent = rightEvent;
      }
      if (childEvent === undefined || !before(childEvent, last)) break;
      heap[position] = childEvent;
      position = child;
    }
    heap[position] = last;
    return top;
  }
}

function before<T>(a: ScheduledEvent<T>, b: ScheduledEvent<T>): boolean {
  return a.timeNs < b.timeNs || (a.timeNs === b.timeNs && a.sequence < b.sequence);
}
