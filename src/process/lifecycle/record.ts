import type { PidRef } from '../../kernel/pid-ref.js';
import type { Rusage, Termination } from '../../kernel/termination.js';
import type { HandleId } from './handle.js';

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
  /**
   * It ended while no agent watched it (found gone, or its PID taken by another process, after a
   * restart): nobody can know how. exitedAt is then when the agent found out.
   */
  readonly statusLost?: boolean;
}

/** An armed deadline, absolute so a restarted agent can re-arm what is left of it. */
export interface DeadlineAt {
  /** ms since the epoch. */
  readonly at: number;
  readonly killSignal: number;
  readonly graceMs: number;
}

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
}

/**
 * One managed process: its PidRef with identity, spec and state. The record owns the reference
 * from creation until the exit is recorded or the handle is released; others only borrow it.
 */
export class ProcessRecord {
  state: State = 'running';
  exit: ExitInfo | undefined;
  /** The deadline timer, until the exit. */
  deadline: NodeJS.Timeout | undefined;
  /** What the deadline timer was armed for. */
  deadlineAt: DeadlineAt | undefined;
  /**
   * Re-adopted by a restarted agent and no longer our child (its parent, the old agent, died):
   * watched like an adopted process, though the spec still says it was spawned.
   */
  orphaned = false;
  /** Set when the deadline fired: the exit is then recorded with reason 'timeout'. */
  timedOut = false;
  /** A cgroup created for this process alone, removed after its exit. */
  ownedCgroup: string | undefined;
  #ref: PidRef | null;

  constructor(
    readonly handle: HandleId,
    readonly identity: ProcessIdentity,
    readonly spec: ProcessSpec,
    readonly startedAt: number,
    /** Taken over; null only for a record restored from the store whose process already exited. */
    ref: PidRef | null,
  ) {
    this.#ref = ref;
  }

  /** The process while the record still holds it (borrowed: never closed by the borrower). */
  get ref(): PidRef | null {
    return this.#ref;
  }

  /** Records the exit and closes the pidfd: an exited process is never addressed again. */
  markExited(exit: ExitInfo): void {
    this.state = 'exited';
    this.exit = exit;
    this.closePidfd();
  }

  markReleased(): void {
    this.state = 'released';
  }

  /** Idempotent; the reaper must have let go of the reference (PidRef.close throws otherwise). */
  closePidfd(): void {
    this.#ref?.close();
    this.#ref = null;
  }
}
