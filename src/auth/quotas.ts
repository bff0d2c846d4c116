// Per-identity counters behind the policy's quotas: spawns in flight, Watch and ReadOutput streams,
// Wait and Stop calls waiting, spawn rate.
import type { Rate } from './policy.js';

const MAX_BUCKETS = 65_536;

export class Quotas {
  private readonly spawning = new Map<string, number>();
  private readonly watching = new Map<string, number>();
  private readonly reading = new Map<string, number>();
  private readonly waiting = new Map<string, number>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * A spawn slot while `room` (running processes left under max_processes) exceeds the spawns
   * already in flight; undefined when full. The release frees it once the spawn is answered.
   */
  takeSpawn(identity: string, room: number | undefined): (() => void) | undefined {
    return take(this.spawning, identity, room);
  }

  takeWatch(identity: string, max: number | undefined): (() => void) | undefined {
    return take(this.watching, identity, max);
  }

  takeReader(identity: string, max: number | undefined): (() => void) | undefined {
    return take(this.reading, identity, max);
  }

  /** A Wait or Stop call waiting for an exit; released once it is answered. */
  takeWaiter(identity: string, max: number | undefined): (() => void) | undefined {
    return take(this.waiting, identity, max);
  }

  /** A token bucket per identity, full at `count`, refilled at count per perMs. */
  takeRate(identity: string, rate: Rate | undefined): boolean {
    if (rate === undefined) return true;
    const now = this.now();
    if (this.buckets.size >= MAX_BUCKETS && !this.buckets.has(identity)) this.buckets.clear();
    const b = this.buckets.get(identity) ?? { tokens: rate.count, at: now };
    b.tokens = Math.min(rate.count, b.tokens + ((now - b.at) * rate.count) / rate.perMs);
    b.at = now;
    this.buckets.set(identity, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

function take(counts: Map<string, number>, key: string, max: number | undefined): (() => void) | undefined {
  const n = counts.get(key) ?? 0;
  if (max !== undefined && n >= max) return undefined;
  counts.set(key, n + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const left = (counts.get(key) ?? 1) - 1;
    if (left <= 0) counts.delete(key);
    else counts.set(key, left);
  };
}
