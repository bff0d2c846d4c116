// pidfd system calls. Kernel versions that added what is used here (PIDFD_REFERENCE.md §1):
//   5.1 pidfd_send_signal · 5.3 pidfd_open, poll · 5.4 waitid(P_PIDFD) · 6.9 PIDFD_THREAD,
//   PIDFD_SIGNAL_* scopes, POLLHUP after reap, pidfs inodes · 6.13 PIDFD_GET_INFO ·
//   6.15 PIDFD_INFO_EXIT (exit status of any process, readable after its reap).
import { fstatSync } from 'node:fs';
import * as libc from './libc.js';
import { check, pollOne, POLLHUP, POLLIN, retryEintr, type Fd, type Pidfd } from './fd.js';
import { Errno, KernelError } from './errors.js';
import type { Rusage, Termination } from './termination.js';

export const PIDFD_THREAD = 0o200; // O_EXCL
export const PIDFD_NONBLOCK = 0o4000;

export type SignalScope = 'default' | 'thread' | 'thread-group' | 'process-group';
const scopeFlags: Record<SignalScope, number> = {
  default: 0,
  thread: 1, // PIDFD_SIGNAL_THREAD
  'thread-group': 2, // PIDFD_SIGNAL_THREAD_GROUP
  'process-group': 4, // PIDFD_SIGNAL_PROCESS_GROUP
};

/**
 * Opens a pidfd (always close-on-exec). ESRCH: no such process, or reaped. ENOENT (6.15+): a tid
 * that is not a thread-group leader without PIDFD_THREAD. EMFILE/ENFILE: out of descriptors.
 */
export function pidfdOpen(pid: number, flags = 0): Pidfd {
  return check('pidfd_open', libc.pidfd_open(pid, flags)) as Pidfd;
}

/**
 * Sends sig through pidfd. Succeeds on a zombie (nobody is hurt: the process is gone); ESRCH only
 * once reaped. EPERM: no permission. EINVAL: bad signal or scope.
 */
export function pidfdSendSignal(pidfd: Pidfd, sig: number, scope: SignalScope = 'default'): void {
  check('pidfd_send_signal', libc.pidfd_send_signal(pidfd, sig, null, scopeFlags[scope]));
}

export interface Readiness {
  /** The process has exited (it may still await its reap). */
  readonly exited: boolean;
  /** The process has been reaped, by us or by its parent. */
  readonly reaped: boolean;
}

/** Non-blocking readiness of a pidfd: POLLIN at exit, POLLIN|POLLHUP once reaped (6.9+). */
/**
 * pidfd_getfd(2): a duplicate (close-on-exec) of the process's descriptor `target`. EBADF: it has
 * no such fd; ESRCH: it exited; EPERM: no ptrace access to it.
 */
export function pidfdGetfd(pidfd: Pidfd, target: number): Fd {
  return check('pidfd_getfd', Number(libc.sysPidfdGetfd(libc.NR.pidfd_getfd, pidfd, target, 0))) as Fd;
}

export function pidfdPoll(pidfd: Pidfd): Readiness {
  const revents = pollOne(pidfd, POLLIN, 0);
  return { exited: (revents & POLLIN) !== 0, reaped: (revents & POLLHUP) !== 0 };
}

export const P_PID = 1;
export const P_PIDFD = 3;
export const WNOHANG = 1;
export const WEXITED = 4;
const CLD_EXITED = 1;
const CLD_KILLED = 2;
const CLD_DUMPED = 3;

const siginfo = Buffer.alloc(128);
const rusageBuf = Buffer.alloc(144);

export interface Reaped {
  readonly termination: Termination;
  readonly rusage: Rusage;
}

/**
 * Reaps our child through its pidfd: raw waitid(P_PIDFD, WEXITED|WNOHANG) with the rusage
 * argument. Null while the child runs (or its leader exited but other threads still run).
 * ECHILD: not our child, or already reaped.
 */
export function waitidPidfd(pidfd: Pidfd): Reaped | null {
  siginfo.fill(0, 0, 32);
  retryEintr('waitid', () => Number(libc.sysWaitid(libc.NR.waitid, P_PIDFD, pidfd, siginfo, WEXITED | WNOHANG, rusageBuf)));
  if (siginfo.readInt32LE(16) === 0) return null; // si_pid: WNOHANG and nothing to report
  const code = siginfo.readInt32LE(8);
  const status = siginfo.readInt32LE(24);
  if (code !== CLD_EXITED && code !== CLD_KILLED && code !== CLD_DUMPED) {
    throw new KernelError('waitid: unexpected si_code', code);
  }
  const termination: Termination =
    code === CLD_EXITED ? { exitCode: status } : { signal: status, coreDumped: code === CLD_DUMPED };
  return { termination, rusage: decodeRusage(rusageBuf) };
}

/**
 * Waits up to timeoutMs for our child to exit (poll on its pidfd: no spinning, no threadpool
 * thread) and reaps it. ETIMEDOUT when it still runs; ECHILD as for waitidPidfd.
 */
export function reapBlocking(pidfd: Pidfd, timeoutMs: number): Reaped {
  if ((pollOne(pidfd, POLLIN, timeoutMs) & POLLIN) === 0) throw new KernelError('poll', Errno.ETIMEDOUT);
  const reaped = waitidPidfd(pidfd);
  // Readable yet nothing to reap: the leader exited while other threads still run.
  if (reaped === null) throw new KernelError('waitid', Errno.ETIMEDOUT);
  return reaped;
}

function decodeRusage(b: Buffer): Rusage {
  const long = (off: number) => Number(b.readBigInt64LE(off));
  return {
    userMicros: long(0) * 1e6 + long(8),
    systemMicros: long(16) * 1e6 + long(24),
    maxRssKib: long(32),
    minorFaults: long(64),
    majorFaults: long(72),
    voluntaryContextSwitches: long(128),
    involuntaryContextSwitches: long(136),
  };
}

// _IOWR(0xFF, 11, struct pidfd_info) for the 64-byte first version (6.13+), which already holds
// exit_code; the kernel accepts any size >= 64 and fills what both know.
const PIDFD_GET_INFO = 0xc040ff0b;
export const PIDFD_INFO_PID = 1n;
export const PIDFD_INFO_CREDS = 2n;
export const PIDFD_INFO_CGROUPID = 4n;
export const PIDFD_INFO_EXIT = 8n;
const infoBuf = Buffer.alloc(64);

export interface PidfdInfo {
  readonly mask: bigint;
  /** Pids as seen in the agent's PID namespace; 0 once reaped. */
  readonly pid: number;
  readonly tgid: number;
  readonly ppid: number;
  readonly ruid: number;
  readonly euid: number;
  /** Present (PIDFD_INFO_EXIT in mask) only after the process has been reaped by anyone. */
  readonly termination?: Termination;
}

/**
 * PIDFD_GET_INFO. ESRCH: reaped and PIDFD_INFO_EXIT not requested. ENOTTY: not a pidfd, or a
 * kernel older than 6.13.
 */
export function pidfdGetInfo(pidfd: Pidfd, request: bigint): PidfdInfo {
  infoBuf.fill(0);
  infoBuf.writeBigUInt64LE(request, 0);
  retryEintr('ioctl(PIDFD_GET_INFO)', () => libc.ioctlPtr(pidfd, PIDFD_GET_INFO, infoBuf));
  const mask = infoBuf.readBigUInt64LE(0);
  return {
    mask,
    pid: infoBuf.readUInt32LE(16),
    tgid: infoBuf.readUInt32LE(20),
    ppid: infoBuf.readUInt32LE(24),
    ruid: infoBuf.readUInt32LE(28),
    euid: infoBuf.readUInt32LE(36),
    termination: (mask & PIDFD_INFO_EXIT) !== 0n ? decodeWaitStatus(infoBuf.readInt32LE(60)) : undefined,
  };
}

/** Decodes a wait(2) status word. */
export function decodeWaitStatus(status: number): Termination {
  const sig = status & 0x7f;
  return sig === 0 ? { exitCode: (status >> 8) & 0xff } : { signal: sig, coreDumped: (status & 0x80) !== 0 };
}

/** The pidfs inode: a 64-bit number unique per process while the node is up (6.9+). */
export function pidfsInode(pidfd: Pidfd): bigint {
  return fstatSync(pidfd, { bigint: true }).ino;
}

export type { Fd, Pidfd };
