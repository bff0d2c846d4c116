import { elapsedSince, type Instant } from './clock.js';
import type { HandleId } from './handle.js';
import { ownerOf, type ProcessRecord } from './record.js';

export interface RetentionPolicy {
  /** How long an exited record stays readable after its exit, in ms. */
  readonly ttlMs: number;
  /** At most this many exited records are kept; past it, the oldest of the owner keeping the most go first. */
  readonly maxExited: number;
}

/** One caller's request_id, never another's. */
export const requestKey = (owner: string | undefined, requestId: string): string => `${owner ?? ''}\n${requestId}`;

/**
 * Handle → record, with idempotency keys and retention of exited records. Knows nothing about
 * the kernel: the manager decides what enters and leaves.
 */
export class ProcessTable {
  private readonly byHandle = new Map<HandleId, ProcessRecord>();
  /** By owner and request_id: one caller's key never replays another's process. */
  private readonly byRequestId = new Map<string, ProcessRecord>();
  /** Running records per owner, for the policy's max_processes. */
  private readonly runningBy = new Map<string, number>();
  /**
   * Released records whose process still runs (children the agent still reaps), per owner: they
   * still count against max_processes (and the agent's --max-processes), or Release after each
   * Spawn would start any number.
   */
  private readonly releasedRunning = new Set<ProcessRecord>();
  private readonly releasedRunningBy = new Map<string, number>();
  /** Exited records in exit order (Map keeps insertion order), for TTL and count eviction. */
  private readonly exited = new Map<HandleId, ProcessRecord>();
  /** The same, per owner: whose records the cap takes. */
  private readonly exitedBy = new Map<string, Map<HandleId, ProcessRecord>>();
  private running = 0;
  /**
   * The next record's position: rising in the order byHandle iterates (a Map keeps insertion
   * order), so a List page resumes after the last position it showed, whatever left in between.
   */
  private nextPosition = 1;
  /**
   * The records in position order, for valuesAfter: a List page starts where the last ended by a
   * binary search over `positions`, where walking byHandle from its start made a listing of n
   * processes read n²/(2·page) records. A removed record's slot is emptied at once (nothing keeps
   * a released record alive) and the empty slots are dropped when they are half.
   */
  private positions: number[] = [];
  private slots: (ProcessRecord | undefined)[] = [];
  private emptySlots = 0;

  constructor(private readonly retention: RetentionPolicy) {}

  /** Above every record's position so far: a listing taken now ends below it. */
  get positionsEnd(): number {
    return this.nextPosition;
  }

  get size(): number {
    return this.byHandle.size;
  }

  get runningCount(): number {
    return this.running;
  }

  /** Running processes `owner` owns: records, and released ones not yet exited. */
  runningOwnedBy(owner: string): number {
    return (this.runningBy.get(owner) ?? 0) + (this.releasedRunningBy.get(owner) ?? 0);
  }

  /** Of those, the released ones. */
  releasedRunningOwnedBy(owner: string): number {
    return this.releasedRunningBy.get(owner) ?? 0;
  }

  /** A record removed while its process runs on (a released child of ours): its owner's until its exit. */
  releasedWhileRunning(record: ProcessRecord): void {
    if (this.releasedRunning.has(record)) return;
    this.releasedRunning.add(record);
    addTo(this.releasedRunningBy, ownerOf(record), 1);
  }

  /** The exit of a process, released or not: a released one no longer counts. */
  releasedExited(record: ProcessRecord): void {
    if (this.releasedRunning.delete(record)) addTo(this.releasedRunningBy, ownerOf(record), -1);
  }

  add(record: ProcessRecord): void {
    record.position = this.nextPosition++;
    this.byHandle.set(record.handle, record);
    this.positions.push(record.position);
    this.slots.push(record);
    if (record.spec.requestId) this.byRequestId.set(requestKey(record.spec.owner, record.spec.requestId), record);
    this.countRunning(record, 1);
  }

  get(handle: string): ProcessRecord | undefined {
    return this.byHandle.get(handle as HandleId);
  }

  byRequest(owner: string | undefined, requestId: string): ProcessRecord | undefined {
    return this.byRequestId.get(requestKey(owner, requestId));
  }

  /** Called once the record has turned EXITED. */
  noteExited(record: ProcessRecord): void {
    this.countRunning(record, -1);
    this.exited.set(record.handle, record);
    const owner = ownerOf(record);
    let mine = this.exitedBy.get(owner);
    if (mine === undefined) this.exitedBy.set(owner, (mine = new Map()));
    mine.set(record.handle, record);
  }

  remove(record: ProcessRecord): void {
    if (!this.byHandle.delete(record.handle)) return;
    const slot = this.slotAfter(record.position - 1);
    if (this.slots[slot] === record) {
      this.slots[slot] = undefined;
      // Each removal pays for two slots of the copy.
      if (++this.emptySlots * 2 > this.slots.length) this.compact();
    }
    if (record.spec.requestId) this.byRequestId.delete(requestKey(record.spec.owner, record.spec.requestId));
    if (this.exited.delete(record.handle)) {
      const mine = this.exitedBy.get(ownerOf(record));
      mine?.delete(record.handle);
      if (mine?.size === 0) this.exitedBy.delete(ownerOf(record));
    } else this.countRunning(record, -1);
  }

  private countRunning(record: ProcessRecord, delta: 1 | -1): void {
    this.running += delta;
    addTo(this.runningBy, ownerOf(record), delta);
  }

  /**
   * Exited records past their TTL, then, over the cap, the oldest of whichever owner keeps the most
   * (not yet removed): one tenant's stream of short processes cannot push out another's exits
   * before they are read.
   */
  expired(now: Instant): ProcessRecord[] {
    const out: ProcessRecord[] = [];
    const taken = new Map<string, number>();
    for (const record of this.exited.values()) {
      const exit = record.exit;
      if (exit === undefined || elapsedSince(exit.exitedAt, exit.exitedStamp, now) < this.retention.ttlMs) break;
      out.push(record);
      taken.set(ownerOf(record), (taken.get(ownerOf(record)) ?? 0) + 1);
    }
    let over = this.exited.size - out.length - this.retention.maxExited;
    if (over <= 0) return out;
    // Each owner's records past those the TTL took (a prefix of them: both are in exit order).
    const owners = [...this.exitedBy].map(([owner, records]) => {
      const next = records.values();
      for (let skip = taken.get(owner) ?? 0; skip > 0; skip--) next.next();
      return { next, count: records.size - (taken.get(owner) ?? 0) };
    });
    takeFromFullest(owners, over, out);
    return out;
  }

  values(): IterableIterator<ProcessRecord> {
    return this.byHandle.values();
  }

  /** The records of positions above `position`, in position order; the first found in O(log n). */
  *valuesAfter(position: number): Generator<ProcessRecord> {
    // A compaction while the caller iterates makes new arrays: these stay whole.
    const slots = this.slots;
    for (let i = this.slotAfter(position); i < slots.length; i++) {
      const record = slots[i];
      if (record !== undefined) yield record;
    }
  }

  /** The first slot of a position above `position`. */
  private slotAfter(position: number): number {
    const positions = this.positions;
    let lo = 0;
    let hi = positions.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (positions[mid]! <= position) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private compact(): void {
    const positions: number[] = [];
    const slots: ProcessRecord[] = [];
    for (const record of this.slots) {
      if (record === undefined) continue;
      positions.push(record.position);
      slots.push(record);
    }
    this.positions = positions;
    this.slots = slots;
    this.emptySlots = 0;
  }
}

function addTo(counts: Map<string, number>, owner: string, delta: 1 | -1): void {
  const n = (counts.get(owner) ?? 0) + delta;
  if (n > 0) counts.set(owner, n);
  else counts.delete(owner);
}

export interface Group<T> {
  readonly next: Iterator<T>;
  count: number;
}

/**
 * `n` items (records, tombstones), each the next of the group holding the most (ties: the earlier group), by a heap: a
 * restore under a lower --retention-max may take thousands from thousands of owners in one call.
 */
export function takeFromFullest<T>(groups: Group<T>[], n: number, out: T[]): void {
  const order = new Map(groups.map((g, i) => [g, i]));
  const before = (a: Group<T>, b: Group<T>) => a.count > b.count || (a.count === b.count && order.get(a)! < order.get(b)!);
  const down = (i: number) => {
    for (;;) {
      const [l, r] = [2 * i + 1, 2 * i + 2];
      let top = i;
      if (l < groups.length && before(groups[l]!, groups[top]!)) top = l;
      if (r < groups.length && before(groups[r]!, groups[top]!)) top = r;
      if (top === i) return;
      [groups[i], groups[top]] = [groups[top]!, groups[i]!];
      i = top;
    }
  };
  for (let i = (groups.length >> 1) - 1; i >= 0; i--) down(i);
  for (; n > 0; n--) {
    const fullest = groups[0]!;
    out.push(fullest.next.next().value as T);
    fullest.count--;
    down(0);
  }
}
