// The persisted handle table as the domain sees it: what the manager writes on each transition,
// and what a restarted agent reads back. The SQLite implementation is sqlite-store.ts.
import type { SequenceOrigin } from '../process/events/event-log.js';
import type { Stamp } from '../process/lifecycle/clock.js';
import type { HandleId } from '../process/lifecycle/handle.js';
import type { DeadlineAt, ExitInfo, ProcessIdentity, ProcessSpec } from '../process/lifecycle/record.js';
import type { Tombstone } from '../process/lifecycle/tombstones.js';


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
  /** Its captured streams' marks, as the store keeps them (none from an agent before they were kept there). */
  readonly captures?: readonly CaptureMark[];
}

/**
 * What a later agent needs to go on reading one captured stream after this one is gone
 * (process/stdio/capture-marks.ts): kept in the store with the start, in the same commit, and
 * rewritten as the stream passes its mark.
 */
export interface CaptureMark {
  readonly stream: 'stdout' | 'stderr';
  /** The pipe's inode: a descriptor taken from the child must be this pipe. */
  readonly ino: number;
  readonly capacity: number;
  /** Above every offset handed out for this stream so far. */
  readonly mark: number;
  readonly outputEvents: boolean;
  readonly stdinPiped: boolean;
  /**
   * STATE_DIR/capture/HANDLE.json (what an older agent reads) is expected to be there: false
   * once it could not be written. A file missing while this says true was removed by someone
   * else (an older agent that could not rewrite it, which then read on past this mark).
   */
  readonly filed: boolean;
  /**
   * Set when the mark may be below offsets already handed out, so a restarted agent must not go
   * on from it: 'handed-over' is written by an agent handing over a stream that has no file (an
   * older successor keeps no mark for it); a successor that keeps marks in the store clears it.
   * 'unknown' is a stream whose offsets were found uncertain: it is only drained (every byte
   * lost) for as long as the handle lives, and is never cleared. Stored in `filed` as 2 and 3.
   */
  readonly uncertain?: 'handed-over' | 'unknown';
}

/**
 * A process released while it still ran, whose exit no agent has seen yet: it stays its owner's
 * against max_processes until then, also for the agents after this one, which open it again by
 * its identity (pid and pidfs inode in the boot) and let the row go once it is not that process.
 */
export interface ReleasedProcess {
  readonly handle: HandleId;
  readonly owner?: string;
  readonly pid: number;
  readonly pidfsInode: bigint;
  readonly ownedCgroup?: string;
  readonly releasedAt: number;
}

/** One as read back at startup, with the boot its identity belongs to. */
export interface SavedReleased extends ReleasedProcess {
  readonly bootId: string;
}

/**
 * A Spawn with a request_id, recorded before its exec: until the process is recorded (or the
 * spawn is known to have started nothing) a restarted agent cannot tell whether it ran.
 */
export interface SpawnIntent {
  readonly owner: string | undefined;
  readonly requestId: string;
  /** The handle the process would have had. */
  readonly handle: HandleId;
  readonly argv: readonly string[];
  readonly createdAt: number;
  /** createdAt on the clock that does not step (lifecycle/clock.ts): what its age is measured by. */
  readonly createdStamp?: Stamp;
}

/** What the store keeps of a process it records as started (a ProcessRecord is one). */
export interface StartedProcess {
  readonly handle: HandleId;
  readonly identity: ProcessIdentity;
  readonly spec: Pick<ProcessSpec, 'argv' | 'labels' | 'adopted' | 'requestId' | 'owner'>;
  readonly startedAt: number;
  readonly ownedCgroup?: string | undefined;
  readonly deadline?: DeadlineAt | undefined;
}

/** The writes of one transaction: all of them are durable, or none. */
export interface StoreWrites {
  intended(intent: SpawnIntent): void;
  /** The intent's outcome is known (recorded with the process, or nothing started). */
  settled(owner: string | undefined, requestId: string): void;
  started(record: StartedProcess): void;
  exited(handle: HandleId, exit: ExitInfo): void;
  released(handle: HandleId): void;
  /** A released record's request_id stays taken (written with its release). */
  tombstoned(tombstone: Tombstone): void;
  /** ... until its tombstone expires or the cap pushes it out. */
  untombstoned(owner: string | undefined, requestId: string): void;
  /** A captured stream's mark, written or replaced (it goes with the record's release). */
  captured(handle: HandleId, mark: CaptureMark): void;
  /** A process released while it runs on (written with its release): it still counts. */
  releasedRunning(process: ReleasedProcess): void;
  /** ... until it is found gone (its exit seen, or no longer the process named). */
  releasedEnded(handle: HandleId): void;
}

/** A transaction that could not be committed: nothing of it was written. */
export class StoreWriteFailed extends Error {
  constructor(what: string, options?: ErrorOptions) {
    const cause = options?.cause;
    super(`the state store could not record ${what}: ${cause instanceof Error ? cause.message : String(cause)}`, options);
    this.name = 'StoreWriteFailed';
  }
}

/**
 * What the manager calls. Every change goes through `commit`, before the manager changes its
 * table or tells anyone: a commit that fails leaves both the store and (by the caller's contract)
 * the table as they were, so what a restarted agent reads is what clients were told.
 */
export interface ProcessStore {
  /** The sequence numbering, continued across restarts. */
  readonly sequences: SequenceOrigin;
  /**
   * Runs `writes` in one transaction that also makes every event sequence up to
   * `sequencesUpTo` usable (reserved durably, so a restarted agent numbers above it). Throws
   * StoreWriteFailed (after reporting it to the store's error sink) when it cannot be committed.
   */
  commit(what: string, sequencesUpTo: number, writes: (w: StoreWrites) => void): void;
  /** Every saved record, exited ones in exit order after the running ones. */
  load(): SavedProcess[];
  /** Spawns recorded as intended whose outcome no agent recorded. */
  intents(): SpawnIntent[];
  /** The request_ids of released records still taken, oldest release first. */
  tombstones(): Tombstone[];
  /** The processes released while they ran whose exit no agent has seen. */
  runningReleased(): SavedReleased[];
  /**
   * Gives back the memory of caches it rebuilds on demand (an agent at rest): SQLite's page
   * cache, which a burst fills to its 2 MiB limit and nothing else empties.
   */
  releaseMemory(): void;
  /**
   * A commit would fail at once: the store is still in a write that ran past its bound (its file
   * system stalls; threaded-store.ts). Nothing should be started that would have to be undone.
   */
  stalled(): boolean;
  /**
   * Whether the store is still the file at its path. Once it is not (its state dir deleted or
   * replaced under the agent), every commit fails: nothing is acknowledged as durable into a file
   * no later agent will read.
   */
  inPlace(): boolean;
  close(): void;
}

const NO_WRITES: StoreWrites = { intended() {}, settled() {}, started() {}, exited() {}, released() {}, tombstoned() {}, untombstoned() {}, captured() {}, releasedRunning() {}, releasedEnded() {} };

/** --ephemeral: nothing is kept; a restarted agent starts empty (its processes still run on). */
export class MemoryStore implements ProcessStore {
  readonly sequences: SequenceOrigin = { after: 0, reserve: () => true };
  commit(_what: string, _sequencesUpTo: number, writes: (w: StoreWrites) => void): void {
    writes(NO_WRITES);
  }
  inPlace(): boolean {
    return true;
  }
  load(): SavedProcess[] {
    return [];
  }
  intents(): SpawnIntent[] {
    return [];
  }
  tombstones(): Tombstone[] {
    return [];
  }
  runningReleased(): SavedReleased[] {
    return [];
  }
  releaseMemory(): void {}
  stalled(): boolean {
    return false;
  }
  close(): void {}
}
