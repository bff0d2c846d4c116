// The one owner of a pidfd, after systemd's PidRef: made here in kernel/ at the moment the kernel
// hands a pidfd over (spawn, pidfd_open, a handover's recvmsg), moved by take(), closed once by
// close(). Every operation on the process goes through it, so no pidfd number leaves kernel/.
//
// Its epoll registration belongs to it as well: close() of a watched reference throws rather than
// unwatching behind the watcher's back (the watcher would keep a token for a closed, soon reused
// number). So the order on exit is deregister → reap (the reaper) → close (the owner).
import { fstatSync, readFileSync } from 'node:fs';
import type { Epoll } from './epoll.js';
import { closeFd, dupFd, type Fd, type Pidfd } from './fd.js';
import { Errno, KernelError } from './errors.js';
import {
  PIDFD_THREAD,
  pidfdGetInfo,
  pidfdGetfd,
  pidfdOpen,
  pidfdPoll,
  pidfdSendSignal,
  reapBlocking,
  waitidPidfd,
  type PidfdInfo,
  type Readiness,
  type Reaped,
  type SignalScope,
} from './pidfd.js';

/** A reference used after close() or take(): a bug in the holder, never a kernel condition. */
export class PidRefClosedError extends Error {
  constructor(what: string) {
    super(`${what} on a PidRef that was closed or moved`);
    this.name = 'PidRefClosedError';
  }
}

const S_IFMT = 0o170000;
const MOVED = -1 as Pidfd;

let fdOf: (ref: PidRef) => Pidfd;
let make: (fd: Pidfd, pid: number, inode?: bigint) => PidRef;

export class PidRef {
  #fd: Pidfd;
  #pid: number | undefined;
  #inode: bigint | undefined;
  #watcher: Epoll | null = null;

  private constructor(fd: Pidfd, pid: number | undefined, inode?: bigint) {
    this.#fd = fd;
    this.#pid = pid;
    this.#inode = inode;
  }

  static {
    fdOf = (ref) => ref.#live('use');
    make = (fd, pid, inode) => new PidRef(fd, pid, inode);
  }

  /**
   * pidfd_open(2). ESRCH: no such process, or reaped. ENOENT (6.15+; EINVAL before): a tid that
   * is not a thread-group leader. EMFILE/ENFILE: out of descriptors.
   */
  static open(pid: number): PidRef {
    return new PidRef(pidfdOpen(pid), pid);
  }

  /** A PIDFD_THREAD reference (6.9+) that addresses the one thread tid; errors as for open. */
  static openThread(tid: number): PidRef {
    return new PidRef(pidfdOpen(tid, PIDFD_THREAD), tid);
  }

  /**
   * A descriptor received from another process (a handover) that claims to be a pidfd: taken
   * over in any case, and closed again with EBADF when it is something else.
   */
  static received(fd: Fd): PidRef {
    try {
      // pidfs files have no S_IFMT bits (6.9+); pipes, sockets and files all have some.
      const st = fstatSync(fd, { bigint: true });
      if ((st.mode & BigInt(S_IFMT)) !== 0n) throw new KernelError('fstat: not a pidfd', Errno.EBADF);
      return new PidRef(fd as Pidfd, undefined, st.ino);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
  }

  /** The pid as this agent's PID namespace sees it; -1 once reaped for a received reference. */
  get pid(): number {
    this.#pid ??= fdinfoPid(this.#live('pid'));
    return this.#pid;
  }

  /** The pidfs inode: one number per process while the node is up (6.9+). */
  get inode(): bigint {
    this.#inode ??= fstatSync(this.#live('inode'), { bigint: true }).ino;
    return this.#inode;
  }

  /** Still holds its descriptor (neither closed nor moved). */
  get isOpen(): boolean {
    return this.#fd !== MOVED;
  }

  /** Registered in an epoll instance that is still open. */
  get isWatched(): boolean {
    return this.#watcher !== null && !this.#watcher.closed;
  }

  /** Moves the descriptor to a new owner; this one can neither use nor close it afterwards. */
  take(): PidRef {
    if (this.isWatched) throw new Error('take() of a watched PidRef: unwatch it first');
    const moved = new PidRef(this.#live('take'), this.#pid, this.#inode);
    this.#fd = MOVED;
    this.#watcher = null;
    return moved;
  }

  /** A second reference with its own descriptor and its own owner. EMFILE: out of descriptors. */
  dup(): PidRef {
    return new PidRef(dupFd(this.#live('dup')), this.#pid, this.#inode);
  }

  /** pidfd_getfd(2): a duplicate of the process's fd `target`, the caller's to close. */
  getFd(target: number): Fd {
    return pidfdGetfd(this.#live('getFd'), target);
  }

  /** pidfd_send_signal(2). Succeeds on a zombie; ESRCH once reaped; EPERM; EINVAL (signal, scope). */
  signal(sig: number, scope: SignalScope = 'default'): void {
    pidfdSendSignal(this.#live('signal'), sig, scope);
  }

  /** Readiness without waiting: exited at exit, reaped once anyone reaped it (6.9+). */
  poll(): Readiness {
    return pidfdPoll(this.#live('poll'));
  }

  /** waitid(P_PIDFD, WEXITED|WNOHANG) with rusage: null while it runs. ECHILD: not our child, or reaped. */
  tryReap(): Reaped | null {
    return waitidPidfd(this.#live('tryReap'));
  }

  /** Waits (blocking, poll on the pidfd) up to timeoutMs for our child's exit and reaps it. ETIMEDOUT, ECHILD. */
  reap(timeoutMs: number): Reaped {
    return reapBlocking(this.#live('reap'), timeoutMs);
  }

  /** PIDFD_GET_INFO (6.13+). ESRCH: reaped and PIDFD_INFO_EXIT not asked for. ENOTTY: older kernel. */
  info(request: bigint): PidfdInfo {
    return pidfdGetInfo(this.#live('info'), request);
  }

  /** Registers in epoll with a token of the watcher's choosing. EEXIST when already watched. */
  watch(epoll: Epoll, events: number, token: number): void {
    if (this.isWatched) throw new KernelError('epoll_ctl(ADD)', Errno.EEXIST);
    epoll.add(this.#live('watch'), events, token);
    this.#watcher = epoll;
  }

  /** Re-arms a one-shot registration. */
  rearm(events: number, token: number): void {
    if (!this.isWatched) throw new Error('rearm() of a PidRef that is not watched');
    this.#watcher!.modify(this.#live('rearm'), events, token);
  }

  /** Deregisters (idempotent; nothing to do once the epoll instance itself is closed). */
  unwatch(): void {
    const epoll = this.#watcher;
    this.#watcher = null;
    if (epoll !== null && !epoll.closed) epoll.remove(this.#live('unwatch'));
  }

  /** Closes the descriptor exactly once; idempotent. Throws while watched: deregister first. */
  close(): void {
    if (this.#fd === MOVED) return;
    if (this.isWatched) throw new Error('close() of a watched PidRef: unwatch it first');
    const fd = this.#fd;
    this.#fd = MOVED;
    this.#watcher = null;
    closeFd(fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #live(what: string): Pidfd {
    if (this.#fd === MOVED) throw new PidRefClosedError(what);
    return this.#fd;
  }
}

/**
 * kernel/ only: a pidfd the kernel just returned to this process (spawn), now owned by the
 * reference. Nothing outside kernel/ may call this (test/ownership.test.ts checks).
 */
export const ownPidfd = (fd: Pidfd, pid: number, inode?: bigint): PidRef => make(fd, pid, inode);

/**
 * kernel/ only: the descriptor number for a call that needs it (sendmsg of a handover), borrowed
 * for the duration of that call. Nothing outside kernel/ may call this.
 */
export const borrowPidfd = (ref: PidRef): Pidfd => fdOf(ref);

function fdinfoPid(fd: Pidfd): number {
  const m = /^Pid:\s*(-?\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'));
  if (!m) throw new KernelError('fdinfo: not a pidfd', Errno.EBADF);
  return Number(m[1]);
}
