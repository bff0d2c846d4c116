import type { HandleId } from './handle.js';
import type { ProcessRecord } from './record.js';

export interface RetentionPolicy {
  /** How long an exited record stays readable after its exit, in ms. */
  readonly ttlMs: number;
  /** At most this many exited records are kept; the oldest go first. */
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
  /** Exited records in exit order (Map keeps insertion order), for TTL and count eviction. */
  private readonly exited = new Map<HandleId, ProcessRecord>();
  private running = 0;

  constructor(private readonly retention: RetentionPolicy) {}

  get size(): number {
    return this.byHandle.size;
  }

  get runningCount(): number {
    return this.running;
  }

  /** Running records `owner` owns. */
  runningOwnedBy(owner: string): number {
    return this.runningBy.get(owner) ?? 0;
  }

  add(record: ProcessRecord): void {
    this.byHandle.set(record.handle, record);
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
  }

  remove(record: ProcessRecord): void {
    if (!this.byHandle.delete(record.handle)) return;
    if (record.spec.requestId) this.byRequestId.delete(requestKey(record.spec.owner, record.spec.requestId));
    if (!this.exited.delete(record.handle)) this.countRunning(record, -1);
  }

  private countRunning(record: ProcessRecord, delta: 1 | -1): void {
    this.running += delta;
    const owner = record.spec.owner ?? '';
    const n = (this.runningBy.get(owner) ?? 0) + delta;
    if (n > 0) this.runningBy.set(owner, n);
    else this.runningBy.delete(owner);
  }

  /** Exited records past their TTL or over the cap, oldest first (not yet removed). */
  expired(now: number): ProcessRecord[] {
    const out: ProcessRecord[] = [];
    let over = this.exited.size - this.retention.maxExited;
    for (const record of this.exited.values()) {
      const old = now - (record.exit?.exitedAt ?? now) >= this.retention.ttlMs;
      if (!old && over <= 0) break;
      out.push(record);
      over--;
    }
    return out;
  }

  values(): IterableIterator<ProcessRecord> {
    return this.byHandle.values();
  }
}
