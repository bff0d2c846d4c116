// The epoll loop of DESIGN.md: one epoll fd holding every pidfd (EPOLLONESHOT), itself watched by
// a libuv poll handle on the main loop, so no thread blocks and no JavaScript runs elsewhere.
// libuv never learns about our children, so nobody else reaps them.
import { Epoll, EPOLLIN, EPOLLONESHOT, type ReadyEvent } from '../kernel/epoll.js';
import { Errno, isKernelError } from '../kernel/errors.js';
import { watchReadable, type PollHandle } from '../kernel/libc.js';
import { PIDFD_INFO_EXIT } from '../kernel/pidfd.js';
import type { PidRef } from '../kernel/pid-ref.js';
import type { Rusage, Termination } from '../kernel/termination.js';
import type { Parentage, ReapedExit, Reaper } from '../process/reaping.js';

export type ExitSink = (exits: readonly ReapedExit[]) => void;

export class EpollReaper implements Reaper {
  private readonly epoll = new Epoll(256);
  /** By epoll token; a token is never a descriptor number, so none leaves kernel/. */
  private readonly entries = new Map<number, Entry>();
  private readonly tokens = new Map<PidRef, number>();
  private nextToken = 0;
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

  watch(ref: PidRef, parentage: Parentage): void {
    const token = this.freeToken();
    ref.watch(this.epoll, eventsFor(parentage), token);
    this.entries.set(token, { ref, parentage });
    this.tokens.set(ref, token);
    if (this.entries.size === 1) this.handle.ref();
  }

  unwatch(ref: PidRef): void {
    const token = this.tokens.get(ref);
    if (token === undefined) return;
    this.forget(ref, token);
    ref.unwatch();
  }

  collect(ref: PidRef): boolean {
    const token = this.tokens.get(ref);
    if (token === undefined || this.paused) return false;
    const exit = this.tryCollect(token, this.entries.get(token)!);
    if (exit === null) return false;
    this.sink([exit]);
    return true;
  }

  /** Every registration goes with the epoll instance; the references stay their owners'. */
  close(): void {
    this.handle.close();
    this.epoll.close();
    this.entries.clear();
    this.tokens.clear();
  }

  private drain(): void {
    const exits: ReapedExit[] = [];
    try {
      for (;;) {
        const n = this.epoll.wait(this.ready, 0);
        for (let i = 0; i < n; i++) {
          const token = this.ready[i]!.data;
          const entry = this.entries.get(token);
          if (entry === undefined) continue;
          const exit = this.tryCollect(token, entry);
          if (exit !== null) exits.push(exit);
        }
        if (n < this.epoll.maxEvents) break;
      }
    } finally {
      // Exits already reaped must be recorded even if a later one failed: a reap is final.
      if (exits.length > 0) this.sink(exits);
    }
  }

  /**
   * Deregister → reap, the first two steps of the exit order (the owner closes last). Not ready
   * after all: registered again, armed.
   */
  private tryCollect(token: number, { ref, parentage }: Entry): ReapedExit | null {
    this.forget(ref, token);
    ref.unwatch();
    let exit: ReapedExit | null;
    try {
      exit = parentage === 'child' ? reapChild(ref) : readForeignExit(ref);
    } catch (e) {
      this.watch(ref, parentage);
      throw e;
    }
    if (exit === null) this.watch(ref, parentage);
    return exit;
  }

  private forget(ref: PidRef, token: number): void {
    this.entries.delete(token);
    this.tokens.delete(ref);
    if (this.entries.size === 0) this.handle.unref();
  }

  private freeToken(): number {
    do this.nextToken = (this.nextToken + 1) >>> 0;
    while (this.entries.has(this.nextToken));
    return this.nextToken;
  }
}

interface Entry {
  readonly ref: PidRef;
  readonly parentage: Parentage;
}

// A child is ready at exit (POLLIN). A foreign process only has exit data once its own parent
// reaped it, which is signalled by POLLHUP (6.9+): epoll always reports HUP, so ask for nothing.
const eventsFor = (parentage: Parentage): number =>
  parentage === 'child' ? EPOLLIN | EPOLLONESHOT : EPOLLONESHOT;

function reapChild(ref: PidRef): ReapedExit | null {
  try {
    const reaped = ref.tryReap();
    return reaped && { ref, ...reaped };
  } catch (e) {
    // ECHILD: someone else reaped our child (it should not happen); the kernel still has the exit.
    if (isKernelError(e, Errno.ECHILD)) return readForeignExit(ref);
    throw e;
  }
}

function readForeignExit(ref: PidRef): ReapedExit | null {
  if (!ref.poll().reaped) return null;
  // Reaped is final: without an exit status (kernels before 6.15) it is still an exit, reported as
  // lost, rather than a hang-up that would wake the loop forever.
  return { ref, termination: ref.info(PIDFD_INFO_EXIT).termination };
}
