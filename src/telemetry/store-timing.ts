// The state store with each durable write timed: every change is one commit (one transaction).
import type { ProcessStore } from '../process/process-store.js';

const WRITES = new Set<PropertyKey>(['commit']);

export function timedStore(store: ProcessStore, duration: { record(seconds: number): void }): ProcessStore {
  let depth = 0;
  const timed =
    (write: (...args: unknown[]) => unknown) =>
    (...args: unknown[]): unknown => {
      if (depth > 0) return write(...args);
      const started = performance.now();
      depth++;
      try {
        return write(...args);
      } finally {
        depth--;
        duration.record((performance.now() - started) / 1000);
      }
    };
  // A proxy rather than a class: whatever the store grows keeps working untimed. Each method is
  // bound once (the store is used several times per call), not on every access.
  const methods = new Map<PropertyKey, { readonly of: unknown; readonly bound: unknown }>();
  return new Proxy(store, {
    get(target, key) {
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      const known = methods.get(key);
      if (known !== undefined && known.of === value) return known.bound;
      const bound = (value as (...args: unknown[]) => unknown).bind(target);
      const made = WRITES.has(key) ? timed(bound) : bound;
      methods.set(key, { of: value, bound: made });
      return made;
    },
  });
}
