import type { PidRef } from '../../kernel/pid-ref.js';
import type { Rusage, Termination } from '../../kernel/termination.js';
import type { Parentage } from '../reaping.js';
import { elapsedSince, instantNow, type Instant, type Stamp } from './clock.js';
import type { HandleId } from './handle.js';
import type { Deadline } from '../options.js';
import type { EventSubject } from '../events/event-log.js';

export type { Rusage, Termination };

export type State = 'running' | 'exited' | 'released';

/** Why the process ended: on its own (or by a client's signal), or by its deadline. */
export type ExitReason = 'exited' | 'timeout';

export interface ExitInfo {
  /** How it ended; undefined exactly when `statusLost`. */
  readonly termination: Termination | undefined;
  readonly reason: ExitReason;
  /** Only for our own children: waitid reports it, PIDFD_INFO_EXIT does not. */
  readonly rusage?: Rusage;
  readonly exitedAt: number;
  /** exitedAt on the clock that does not step (clock.ts), for its retention. */
  readonly exitedStamp?: Stamp;
  /**
   * It ended while no agent watched it (found gone, or its PID taken by another process, after a
   * restart): nobody can know how. exitedAt is then when the agent found out.
   */
  readonly statusLost?: boolean;
  /** Killed with reclaim_memory: ms from the SIGKILL to its memory freed. */
  readonly reclaimMs?: number;
}

/**
 * A deadline as armed: the request's (options.ts `Deadline`) made absolute, so a restarted agent
 * can re-arm what is left of it. This is also the shape the store saves.
 */
export type DeadlineAt = Omit<Deadline, 'timeoutMs'> & {
  /** ms since the epoch. */
  readonly at: number;
  /** `at` on the clock that does not step: what it is armed by (absent in an older agent's). */
  readonly atStamp?: Stamp;
};

export const deadlineAt = (d: Deadline, now: Instant = instantNow()): DeadlineAt => ({ at: now.wall + d.timeoutMs, atStamp: { boot: now.stamp.boot, ms: now.stamp.ms + d.timeoutMs }, killSignal: d.killSignal, graceMs: d.graceMs });

/** Whose a record is, as a key ('' for the processes of no caller: restored from an older store, say). */
export const ownerOf = (record: { readonly spec: { readonly owner?: string } }): string => record.spec.owner ?? '';

export interface ProcessIdentity {
  readonly pid: number;
  /** pidfs inode: unique per process while the node is up. */
  readonly pidfsInode: bigint;
}

export interface ProcessSpec {
  readonly argv: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  readonly adopted: boolean;
  readonly requestId?: string;
  /** Who spawned or adopted it: the caller's peer as the transport identified it. */
  readonly owner?: string;
  /** Released once a Wait or Stop has delivered its exit. Not in the store: see README. */
  readonly releaseOnExit?: boolean;
}

/**
 * What an event (or anything kept after the release) needs of a process: immutable, one per record
 * and shared by all its events, without the pidfd, timers and closures of the record itself, so
 * the event ring holds a released process by this alone.
 */
export interface ProcessView {
  readonly handle: HandleId;
  readonly identity: ProcessIdentity;
  readonly spec: ProcessSpec;
  readonly startedAt: number;
}

/**
 * One managed process: its PidRef with identity, spec and lifecycle, RUNNING → EXITED → RELEASED
 * (or RUNNING → RELEASED, the exit still to come). The record owns the reference until the exit is
 * recorded; others only borrow it. Releasing a foreign process closes it then (`closePidfd`);
 * releasing our own child does not: it stays watched, hidden, until it is reaped.
 *
 * Who reaps is `parentage`: 'child' (ours: waitid reaps it) or 'foreign' (adopted, or a child of an
 * earlier agent that died: its exit is read with PIDFD_INFO_EXIT and someone else reaps it).
 */
export class ProcessRecord {
  #state: State = 'running';
  #exit: ExitInfo | undefined;
  #parentage: Parentage;
  #deadline: DeadlineAt | undefined;
  #timer: NodeJS.Timeout | undefined;
  #onDeadline: (() => void) | undefined;
  /** The deadline fired: the exit is then recorded with reason 'timeout'. */
  #timedOut = false;
  #ownedCgroup: string | undefined;
  #reclaimMs: number | undefined;
  #ref: PidRef | null;
  readonly view: ProcessView;
  /** The event log's: this process as its events keep it. */
  eventSubject: EventSubject | undefined = undefined;
  /** Its place in the order the table took records in (the table's to set): List pages resume after one. */
  position = 0;

  constructor(
    readonly handle: HandleId,
    readonly identity: ProcessIdentity,
    readonly spec: ProcessSpec,
    readonly startedAt: number,
    /** Taken over; null only for a record restored from the store whose process already exited. */
    ref: PidRef | null,
  ) {
    this.#ref = ref;
    this.#parentage = ProcessRecord.parentageOf(spec);
    this.view = Object.freeze({ handle, identity, spec, startedAt });
  }

  /** Who reaps a process taken on now: we reap what we spawned; an adopted one is someone else's. */
  static parentageOf(spec: ProcessSpec): Parentage {
    return spec.adopted ? 'foreign' : 'child';
  }

  get state(): State {
    return this.#state;
  }

  /** Set exactly when the exit was recorded. */
  get exit(): ExitInfo | undefined {
    return this.#exit;
  }

  get parentage(): Parentage {
    return this.#parentage;
  }

  /** What the deadline was armed for (kept while paused, for the store and a successor). */
  get deadline(): DeadlineAt | undefined {
    return this.#deadline;
  }

  /** A cgroup created for this process alone, removed after its exit. */
  get ownedCgroup(): string | undefined {
    return this.#ownedCgroup;
  }

  /** The process while the record still holds it (borrowed: never closed by the borrower). */
  get ref(): PidRef | null {
    return this.#ref;
  }

  /** Gives the record the cgroup created for it (at start, or restored from the store). */
  ownCgroup(dir: string | undefined): void {
    this.#ownedCgroup = dir;
  }

  /** A kill with reclaim_memory freed the memory this long after the SIGKILL: the exit carries it. */
  noteReclaim(ms: number): void {
    this.#reclaimMs = ms;
  }

  /**
   * Re-adopted by a restarted agent and no longer our child (its parent, the old agent, died):
   * watched like an adopted process, though the spec still says it was spawned.
   */
  orphaned(): void {
    this.#parentage = 'foreign';
  }

  /** Arms (or re-arms) the deadline; `fire` runs once it passes while the process still runs. */
  armDeadline(d: DeadlineAt, fire: () => void): void {
    this.pauseDeadline();
    this.#deadline = d;
    this.#onDeadline = fire;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#state !== 'running') return;
      this.#timedOut = true;
      fire();
    }, Math.max(0, -elapsedSince(d.at, d.atStamp, instantNow())));
    this.#timer.unref();
  }

  /** Stops the timer but keeps the deadline (a handover: the successor re-arms it). Idempotent. */
  pauseDeadline(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Re-arms what is left of a paused deadline, if the process still runs. */
  resumeDeadline(): void {
    if (this.#state === 'running' && this.#deadline && this.#onDeadline) this.armDeadline(this.#deadline, this.#onDeadline);
  }

  /**
   * Records the exit and closes the pidfd: an exited process is never addressed again. The reason
   * is the record's own (its deadline fired or not) unless a saved exit brings one.
   */
  markExited(exit: Omit<ExitInfo, 'reason'> & { readonly reason?: ExitReason }): void {
    this.pauseDeadline();
    this.#state = 'exited';
    this.#exit = this.exitFor(exit);
    this.closePidfd();
  }

  /** The exit markExited would record, without recording it (it is written to the store first). */
  exitFor(exit: Omit<ExitInfo, 'reason'> & { readonly reason?: ExitReason }): ExitInfo {
    const reclaimMs = exit.reclaimMs ?? this.#reclaimMs;
    return { ...exit, reason: exit.reason ?? (this.#timedOut ? 'timeout' : 'exited'), ...(reclaimMs === undefined ? {} : { reclaimMs }) };
  }

  markReleased(): void {
    this.#state = 'released';
  }

  /** Idempotent; the reaper must have let go of the reference (PidRef.close throws otherwise). */
  closePidfd(): void {
    this.#ref?.close();
    this.#ref = null;
  }
}
