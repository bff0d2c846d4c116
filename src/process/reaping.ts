// What the domain needs of a reaper (reaper/ implements it): process/ declares the port, so the
// imports read kernel → process → reaper and nothing below names what is built on top of it.
import type { PidRef } from '../kernel/pid-ref.js';
import type { Rusage, Termination } from '../kernel/termination.js';

/** How an exit is collected: waitid for our children, PIDFD_INFO_EXIT after someone else's reap. */
export type Parentage = 'child' | 'foreign';

export interface ReapedExit {
  /** No longer watched; still its owner's to close. */
  readonly ref: PidRef;
  /** Undefined when the process is gone but the kernel kept no status (PIDFD_INFO_EXIT < 6.15). */
  readonly termination: Termination | undefined;
  readonly rusage?: Rusage;
}

export interface Reaper {
  /** Starts watching; the caller keeps owning ref, which cannot be closed while watched. */
  watch(ref: PidRef, parentage: Parentage): void;
  /** Stops watching (before the owner closes ref). */
  unwatch(ref: PidRef): void;
  /** Collects the exit now if there is one to collect; it is delivered like any other. */
  collect(ref: PidRef): boolean;
  readonly watched: number;
  /**
   * Stops collecting (for a handover): after `flush`, exits that happen are left to whoever
   * watches next, and `collect` finds none. `resume` picks up what happened meanwhile.
   */
  pause(): void;
  /** Collects every exit that is ready now, even while paused. */
  flush(): void;
  resume(): void;
  close(): void;
}

