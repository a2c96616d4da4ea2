/**
 * A map that forgets its oldest insertions beyond a fixed size.
 *
 * @module
 */

/**
 * Insertion-ordered map with at most `capacity` entries; inserting beyond that evicts the oldest.
 * Eviction is O(1): a ring of keys, rather than `Map.keys().next()`, which slows down as deletions
 * pile up at the front of a `Map`.
 */
export class BoundedMap<K, V> {
  private readonly values = new Map<K, V>();
  /** Keys in insertion order, oldest at `next` once full; grows up to `capacity` (not preallocated). */
  private readonly ring: K[] = [];
  private next = 0;
  /** Whether any entry was ever evicted (so a missing key may have been forgotten). */
  hasEvicted = false;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  }

  get size(): number {
    return this.values.size;
  }

  get(key: K): V | undefined {
    return this.values.get(key);
  }

  /** Inserts or replaces; a new key may evict the oldest key still in the ring. */
  set(key: K, value: V): void {
    if (!this.values.has(key)) {
      if (this.ring.length < this.capacity) {
        this.ring.push(key);
      } else {
        this.values.delete(this.ring[this.next] as K);
        this.hasEvicted = true;
        this.ring[this.next] = key;
        this.next = (this.next + 1) % this.capacity;
      }
    }
    this.values.set(key, value);
  }
}
