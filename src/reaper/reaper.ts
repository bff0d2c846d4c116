// The epoll loop of DESIGN.md: one epoll fd holding every pidfd (EPOLLONESHOT), itself watched by
// a libuv poll handle on the main loop, so no thread blocks and no JavaScript runs elsewhere.
// libuv never learns about our children, so nobody else reaps them.
import { Epoll, EPOLLIN, EPOLLONESHOT, type ReadyEvent } from '../kernel/epoll.js';
import { Errno, isKernelError } from '../kernel/errors.js';
import type { Pidfd } from '../kernel/fd.js';
import { watchReadable, type PollHandle } from '../kernel/libc.js';
import { PIDFD_INFO_EXIT, pidfdGetInfo, pidfdPoll, waitidPidfd } from '../kernel/pidfd.js';
import type { Rusage, Termination } from '../kernel/termination.js';

/** How an exit is collected: waitid for our children, PIDFD_INFO_EXIT after someone else's reap. */
export type Parentage = 'child' | 'foreign';

export interface ReapedExit {
  readonly pidfd: Pidfd;
  /** Undefined when the process is gone but the kernel kept no status (PIDFD_INFO_EXIT < 6.15). */
  readonly termination: Termination | undefined;
  readonly rusage?: Rusage;
}

export interface Reaper {
  /** Starts watching; the caller keeps owning the pidfd and must not close it while watched. */
  watch(pidfd: Pidfd, parentage: Parentage): void;
  /** Stops watching (before the owner closes the pidfd). */
  unwatch(pidfd: Pidfd): void;
  /** Collects the exit now if there is one to collect; it is delivered like any other. */
  collect(pidfd: Pidfd): boolean;
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

export type ExitSink = (exits: readonly ReapedExit[]) => void;

export class EpollReaper implements Reaper {
  private readonly epoll = new Epoll(256);
  private readonly entries = new Map<number, Parentage>();
  private readonly ready: ReadyEvent[] = [];
  private readonly handle: PollHandle;
  private paused = false;

  constructor(
    private readonly sink: ExitSink,
    private readonly onError: (e: unknown) => void,
  ) {
    this.handle = watchReadable(this.epoll.fd, () => this.flush());
    this.handle.unref();
  }

  pause(): void {
    this.paused = true;
    this.handle.stop();
  }

  flush(): void {
    try {
      this.drain();
    } catch (e) {
      this.onError(e);
    }
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.handle.start({ readable: true, writable: false, disconnect: false }, () => this.flush());
  }

  get watched(): number {
    return this.entries.size;
  }

  watch(pidfd: Pidfd, parentage: Parentage): void {
    this.epoll.add(pidfd, eventsFor(parentage), pidfd);
    this.entries.set(pidfd, parentage);
    if (this.entries.size === 1) this.handle.ref();
  }

  unwatch(pidfd: Pidfd): void {
    if (!this.entries.delete(pidfd)) return;
    this.epoll.remove(pidfd);
    if (this.entries.size === 0) this.handle.unref();
  }

  collect(pidfd: Pidfd): boolean {
    const parentage = this.entries.get(pidfd);
    if (parentage === undefined || this.paused) return false;
    const exit = this.tryCollect(pidfd, parentage);
    if (exit === null) return false;
    this.sink([exit]);
    return true;
  }

  close(): void {
    this.handle.close();
    this.epoll.close();
    this.entries.clear();
  }

  private drain(): void {
    const exits: ReapedExit[] = [];
    try {
      for (;;) {
        const n = this.epoll.wait(this.ready, 0);
        for (let i = 0; i < n; i++) {
          const pidfd = this.ready[i]!.data as Pidfd;
          const parentage = this.entries.get(pidfd);
          if (parentage === undefined) continue;
          const exit = this.tryCollect(pidfd, parentage);
          if (exit !== null) exits.push(exit);
          else this.epoll.modify(pidfd, eventsFor(parentage), pidfd); // not yet: re-arm the one-shot
        }
        if (n < this.epoll.maxEvents) break;
      }
    } finally {
      // Exits already reaped must be recorded even if a later one failed: a reap is final.
      if (exits.length > 0) this.sink(exits);
    }
  }

  /** On success the entry is removed; the pidfd stays open for its owner to close. */
  private tryCollect(pidfd: Pidfd, parentage: Parentage): ReapedExit | null {
    const exit = parentage === 'child' ? reapChild(pidfd) : readForeignExit(pidfd);
    if (exit === null) return null;
    this.unwatch(pidfd);
    return exit;
  }
}

// A child is ready at exit (POLLIN). A foreign process only has exit data once its own parent
// reaped it, which is signalled by POLLHUP (6.9+): epoll always reports HUP, so ask for nothing.
const eventsFor = (parentage: Parentage): number =>
  parentage === 'child' ? EPOLLIN | EPOLLONESHOT : EPOLLONESHOT;

function reapChild(pidfd: Pidfd): ReapedExit | null {
  try {
    const reaped = waitidPidfd(pidfd);
    return reaped && { pidfd, ...reaped };
  } catch (e) {
    // ECHILD: someone else reaped our child (it should not happen); the kernel still has the exit.
    if (isKernelError(e, Errno.ECHILD)) return readForeignExit(pidfd);
    throw e;
  }
}

function readForeignExit(pidfd: Pidfd): ReapedExit | null {
  if (!pidfdPoll(pidfd).reaped) return null;
  // Reaped is final: without an exit status (kernels before 6.15) it is still an exit, reported as
  // lost, rather than a hang-up that would wake the loop forever.
  return { pidfd, termination: pidfdGetInfo(pidfd, PIDFD_INFO_EXIT).termination };
}
