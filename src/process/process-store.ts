// The persisted handle table as the domain sees it: what the manager writes on each transition,
// and what a restarted agent reads back. The SQLite implementation is sqlite-store.ts.
import type { SequenceOrigin } from '../process/events/event-log.js';
import type { HandleId } from '../process/lifecycle/handle.js';
import type { DeadlineAt, ExitInfo, ProcessRecord } from '../process/lifecycle/record.js';


/** One persisted record, as read back at startup. Released records are not kept. */
export interface SavedProcess {
  readonly handle: HandleId;
  readonly pid: number;
  readonly pidfsInode: bigint;
  /** The boot the identity belongs to: after a reboot no saved process can still exist. */
  readonly bootId: string;
  readonly argv: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  readonly adopted: boolean;
  readonly requestId?: string;
  readonly owner?: string;
  readonly startedAt: number;
  readonly state: 'running' | 'exited';
  readonly exit?: ExitInfo;
  readonly ownedCgroup?: string;
  readonly deadline?: DeadlineAt;
}

/**
 * What the manager calls. recordStarted is durable when it returns and throws when it cannot be
 * (the caller must then undo the start); the later transitions never throw: a failed write is
 * reported to the store's error sink, and at worst a restarted agent finds the process gone and
 * reports its status lost.
 */
export interface ProcessStore {
  /** The sequence numbering, continued across restarts. */
  readonly sequences: SequenceOrigin;
  recordStarted(record: ProcessRecord): void;
  recordExited(record: ProcessRecord): void;
  recordReleased(record: ProcessRecord): void;
  /** Runs fn with every write it makes in one transaction (committed even if fn throws). */
  batch<T>(fn: () => T): T;
  /** Every saved record, exited ones in exit order after the running ones. */
  load(): SavedProcess[];
  close(): void;
}

/** --ephemeral: nothing is kept; a restarted agent starts empty (its processes still run on). */
export class MemoryStore implements ProcessStore {
  readonly sequences: SequenceOrigin = { after: 0, reserve: () => {} };
  recordStarted(): void {}
  recordExited(): void {}
  recordReleased(): void {}
  batch<T>(fn: () => T): T {
    return fn();
  }
  load(): SavedProcess[] {
    return [];
  }
  close(): void {}
}
