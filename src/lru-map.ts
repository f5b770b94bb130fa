/**
 * A Map that holds at most `limit` entries. Setting one past the limit drops the least recently set
 * or used (`use`) entries first and hands each dropped value to `onDrop`. One mechanism for the
 * guardian's bounded memories: DNS answers and canonical hosts per cloister, origin pools, the
 * broker's leaf certificates.
 */
export class LruMap<K, V> {
  /** Insertion order is recency: the first key is the least recently set or used. */
  private readonly entries = new Map<K, V>();

  constructor(
    private readonly limit: number,
    private readonly onDrop?: (value: V, key: K) => void,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The value, without counting as a use. */
  peek(key: K): V | undefined {
    return this.entries.get(key);
  }

  /** The value, which is now the most recently used. */
  use(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** Sets `key` as the most recent entry, then drops the oldest ones past the limit. */
  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    for (const [oldKey, oldValue] of this.entries) {
      if (this.entries.size <= this.limit) break;
      this.entries.delete(oldKey);
      this.onDrop?.(oldValue, oldKey);
    }
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  values(): IterableIterator<V> {
    return this.entries.values();
  }

  clear(): void {
    this.entries.clear();
  }
}
