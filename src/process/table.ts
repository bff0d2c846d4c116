import type { HandleId } from './handle.js';
import type { ProcessRecord } from './record.js';

export interface RetentionPolicy {
  /** How long an exited record stays readable after its exit, in ms. */
  readonly ttlMs: number;
  /** At most this many exited records are kept; the oldest go first. */
  readonly maxExited: number;
}

/**
 * Handle → record, with idempotency keys and retention of exited records. Knows nothing about
 * the kernel: the manager decides what enters and leaves.
 */
export class ProcessTable {
  private readonly byHandle = new Map<HandleId, ProcessRecord>();
  private readonly byRequestId = new Map<string, ProcessRecord>();
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

  add(record: ProcessRecord): void {
    this.byHandle.set(record.handle, record);
    if (record.spec.requestId) this.byRequestId.set(record.spec.requestId, record);
    this.running++;
  }

  get(handle: string): ProcessRecord | undefined {
    return this.byHandle.get(handle as HandleId);
  }

  byRequest(requestId: string): ProcessRecord | undefined {
    return this.byRequestId.get(requestId);
  }

  /** Called once the record has turned EXITED. */
  noteExited(record: ProcessRecord): void {
    this.running--;
    this.exited.set(record.handle, record);
  }

  remove(record: ProcessRecord): void {
    if (!this.byHandle.delete(record.handle)) return;
    if (record.spec.requestId) this.byRequestId.delete(record.spec.requestId);
    if (!this.exited.delete(record.handle)) this.running--;
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
