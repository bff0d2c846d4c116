// The state store with each durable write timed: every change is one commit (one transaction).
import type { Histogram } from '@opentelemetry/api';
import type { ProcessStore } from '../process/process-store.js';

const WRITES = new Set<PropertyKey>(['commit']);

export function timedStore(store: ProcessStore, duration: Histogram): ProcessStore {
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
  // A proxy rather than a class: whatever the store grows keeps working untimed.
  return new Proxy(store, {
    get(target, key) {
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      const bound = (value as (...args: unknown[]) => unknown).bind(target);
      return WRITES.has(key) ? timed(bound) : bound;
    },
  });
}
