// Starting processes without forking Node: glibc posix_spawn (clone(CLONE_VM|CLONE_VFORK) + exec,
// C only) or, with glibc >= 2.39, pidfd_spawn, which also returns the pidfd. Exec failures come
// back synchronously as the function's result.
import * as libc from './libc.js';
import { Errno, isKernelError, KernelError } from './errors.js';
import { closeFd, dupFd, O_RDWR, pipe, pollOne, POLLIN, reopenFd, sealedMemfd, setPipeSize, type Fd, type Pidfd } from './fd.js';
import { pidfdOpen, P_PID, WEXITED } from './pidfd.js';
import { borrowPidfd, ownPidfd, type PidRef } from './pid-ref.js';
import { Signal } from './signals.js';
import { Spawner, type SpawnerRequest } from './spawner.js';

/** What one of the child's fds 0-2 is connected to. */
export type StdioAction =
  | { readonly kind: 'null' }
  | { readonly kind: 'inherit' }
  /** dup2 of an fd the caller owns (and closes after spawn). */
  | { readonly kind: 'fd'; readonly fd: Fd }
  /** A new pipe; the agent's end is returned. */
  | { readonly kind: 'pipe' }
  /**
   * An output pipe (targets 1 and 2) the agent's end of which it may lose without harm to the
   * child: the child's end is opened read-write, so the pipe always has a reader while the child
   * holds it and a write never fails with EPIPE/SIGPIPE; with nobody else reading, the child's
   * writes wait once `bytes` (the pipe buffer asked for) are full. The agent's read end is
   * returned; end-of-file still comes when every writer (the child's ends too) is closed.
   */
  | { readonly kind: 'output-pipe'; readonly bytes: number }
  /**
   * A pty slave opened by path in the child: fd 0 opens it after the setsid (so it becomes the
   * controlling terminal), 1 and 2 are dup2s of 0. Needs newSession and 0 listed first.
   */
  | { readonly kind: 'tty'; readonly path: string };

export interface SpawnSpec {
  /** Absolute or relative path of the executable: no PATH search happens here. */
  readonly path: string;
  readonly argv: readonly string[];
  readonly envp: readonly string[];
  readonly cwd?: string;
  readonly stdio: readonly [StdioAction, StdioAction, StdioAction];
  /** New session (setsid) or, when false, a new process group: never the agent's group. */
  readonly newSession: boolean;
  /**
   * Setup posix_spawn cannot express, done by the exec helper before it execs the target. The
   * helper runs with an empty environment; `envp` reaches it on HELPER_ENV_FD, for the execve only.
   */
  readonly helper?: { readonly path: string; readonly args: readonly string[] };
  /**
   * An open cgroup.procs (the caller's) the child moves itself into first: by the spawn shim's
   * child where `shimHandles`, else by the helper (on an fd it is told).
   */
  readonly cgroupProcs?: Fd;
  /**
   * More open cgroup.procs the child writes itself into (cgroup v1 hierarchies), by the helper
   * only, right after cgroupProcs.
   */
  readonly v1CgroupProcs?: readonly Fd[];
  /**
   * A process whose mount, UTS, IPC, network and cgroup namespaces the child joins (setns by its
   * pidfd) before anything else, by the helper only: its cwd, FILE outputs and the executable
   * then resolve in that process's mount namespace.
   */
  readonly namespacesOf?: PidRef;
}

/** The exec helper failed at `stage` (cgroup, setrlimit:N, setgroups, setgid, setuid, exec, ...). */
export class SetupError extends KernelError {
  constructor(
    readonly stage: string,
    errno: number,
  ) {
    super(stage, errno);
    this.name = 'SetupError';
  }
}

export interface Spawned {
  /** The child, owned by the caller from now on. */
  readonly ref: PidRef;
  /** The agent's ends of requested pipes, owned by the caller from now on. */
  readonly pipes: readonly [Fd | null, Fd | null, Fd | null];
  /** With the helper's --candidate files: the index of the one it exec'd. */
  readonly candidate?: number;
}

const POSIX_SPAWN_SETPGROUP = 0x02;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;
// glibc's posix_spawnattr_t is 336 bytes and file_actions 80 on LP64; leave room for other libcs.
const ATTR_SIZE = 512;
const FILE_ACTIONS_SIZE = 256;
const SIGSET_SIZE = 128;
const O_RDONLY = 0;
const O_WRONLY = 1;

/** Spawn attributes: empty signal mask, every signal to SIG_DFL, own session or process group. */
function makeAttr(newSession: boolean): Buffer {
  const attr = Buffer.alloc(ATTR_SIZE);
  checkResult('posix_spawnattr_init', libc.attr_init(attr));
  const empty = Buffer.alloc(SIGSET_SIZE);
  libc.sigemptyset(empty);
  const all = Buffer.alloc(SIGSET_SIZE);
  libc.sigfillset(all);
  // sigfillset leaves out glibc's internal signals 32 and 33, and posix_spawn then leaves them
  // ignored in the child: set their bits by hand so they are reset too (spike-koffi FINDINGS).
  all[3] = (all[3] ?? 0) | 0x80;
  all[4] = (all[4] ?? 0) | 0x01;
  checkResult('posix_spawnattr_setsigmask', libc.attr_setsigmask(attr, empty));
  checkResult('posix_spawnattr_setsigdefault', libc.attr_setsigdefault(attr, all));
  const scope = newSession ? POSIX_SPAWN_SETSID : POSIX_SPAWN_SETPGROUP;
  if (!newSession) checkResult('posix_spawnattr_setpgroup', libc.attr_setpgroup(attr, 0));
  checkResult('posix_spawnattr_setflags', libc.attr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | scope));
  return attr;
}

// Built once and never destroyed: they live as long as the agent.
const attrSession = makeAttr(true);
const attrGroup = makeAttr(false);

function checkResult(call: string, rc: number): void {
  if (rc !== 0) throw new KernelError(call, rc);
}

/** True when the running glibc has pidfd_spawn (2.39+). */
export const hasPidfdSpawn = libc.pidfd_spawn !== null && libc.pidfd_getpid !== null;

/**
 * Starts spec.path. Errors are KernelError with the exec errno (ENOENT, EACCES, ENOEXEC, E2BIG,
 * ETXTBSY...) or EMFILE/EAGAIN/ENOMEM when resources ran out; nothing is left open on error.
 * Blocks the calling thread for the vfork-style spawn: see spawnAsync.
 */
export function spawn(spec: SpawnSpec): Spawned {
  const attempt = new SpawnAttempt(spec);
  try {
    return attempt.finish(attempt.start(attempt.callSync()));
  } finally {
    attempt.dispose();
  }
}

/**
 * spawn() with the vfork-style posix_spawn call on libuv's threadpool, so the event loop serves
 * other requests meanwhile (the call blocks its thread until the child has exec'd). Still C only
 * in the child; the pidfd is opened back on the main thread, race-free as the child is unreaped.
 */
export async function spawnAsync(spec: SpawnSpec): Promise<Spawned> {
  const attempt = new SpawnAttempt(spec);
  try {
    const child = attempt.start(await attempt.callAsync());
    await attempt.execReported();
    return attempt.finish(child);
  } finally {
    attempt.dispose();
  }
}

type SpawnCall = [out: Int32Array, path: string, fa: Buffer, attr: Buffer, argv: (string | null)[], envp: (string | null)[]];

let shim: ReturnType<typeof libc.loadSpawnShim> | null = null;
/** The shim's threads, which spawnAsync hands shim spawns to (started once per process). */
let spawner: Spawner | null = null;

/**
 * Spawns that need no helper and no terminal go through the agent's shim from now on: clone with
 * CLONE_FILES and close_range(CLOSE_RANGE_UNSHARE) in the child, so a spawn does not copy and close
 * the agent's whole descriptor table (one pidfd per managed process), and the pidfd comes from
 * CLONE_PIDFD; spawnAsync hands them to the shim's spawner threads. Pipes and files need
 * pidfd_getfd in the child (probed here). Others keep using posix_spawn.
 */
export function useSpawnShim(path: string): void {
  // Its child needs close_range(CLOSE_RANGE_UNSHARE); where a seccomp filter refuses close_range,
  // every spawn goes through posix_spawn with closefrom instead.
  // Once per process: a lingering agent that serves again starts a second time in it.
  if (!cloexecByRange || shim !== null) return;
  shim = libc.loadSpawnShim(path);
  spawner ??= Spawner.start(path, (pidfd, pid) => discardChild(ownPidfd(pidfd as Pidfd, pid)));
  shimFetchesFds = probeFetch();
}

const SHIM_STEPS = ['clone', 'close_range(UNSHARE)', 'rt_sigprocmask', 'stdio', 'setsid', 'chdir', 'execve', 'cgroup'];
const SHIM_CGROUP_STEP = 7;
const SHIM_EXEC_STEP = 6;

/** Whether the spawn shim starts a child with this stdio (then it can also place it in a cgroup). */
export const shimHandles = (stdio: readonly StdioAction[]): boolean =>
  shim !== null && stdio.every((a) => a.kind === 'null' || a.kind === 'inherit' || (shimFetchesFds && a.kind !== 'tty'));

/**
 * Whether the shim's child may take pipes and files from the agent with pidfd_getfd (5.6+): it
 * needs ptrace access to the agent (refused under Yama ptrace_scope 1 without CAP_SYS_PTRACE, or
 * by a seccomp profile). Probed once: a child that fetches a pipe end and then fails its execve.
 */
let shimFetchesFds = false;

function probeFetch(): boolean {
  const [r, w] = pipe();
  try {
    const step = new Int32Array(1);
    const rc = shim!('', [null], [null], null, r, -1, -1, 1, -1, new Int32Array(1), step) as number;
    if (rc >= 0) throw new Error('the spawn shim started an empty path');
    return step[0] === SHIM_EXEC_STEP;
  } finally {
    closeFd(r);
    closeFd(w);
  }
}

/** One spawn: its own file actions (safe to use from another thread), pipes and helper report pipe. */
class SpawnAttempt {
  private readonly pipes: [Fd | null, Fd | null, Fd | null] = [null, null, null];
  /** posix_spawn's file actions; none for a shim spawn. */
  private fa: Buffer | null = null;
  private readonly childEnds: Fd[] = [];
  private readonly out = new Int32Array(1);
  private report: Fd | null = null;
  /** The --candidate the helper exec'd, once its report ended. */
  private candidate: number | undefined;
  private readonly call: SpawnCall | null = null;
  private readonly shimCall: SpawnerRequest | null = null;
  private readonly shimStep = new Int32Array(1);
  /** The pidfs inode, where the spawner thread already read it. */
  private inode: bigint | undefined;
  /** The started child until finish() hands it to the caller. */
  private child: PidRef | null = null;
  private succeeded = false;

  constructor(private readonly spec: SpawnSpec) {
    if (spec.helper === undefined && shimHandles(spec.stdio)) {
      if (spec.namespacesOf !== undefined || (spec.v1CgroupProcs ?? []).length > 0) throw new TypeError('namespacesOf and v1CgroupProcs need the helper');
      let fds: number[];
      try {
        fds = spec.stdio.map((a, fd) => this.stdioSource(a as Exclude<StdioAction, { kind: 'tty' }>, fd));
      } catch (e) {
        this.dispose();
        throw e;
      }
      this.shimCall = { path: spec.path, argv: spec.argv, envp: spec.envp, cwd: spec.cwd, stdio: [fds[0]!, fds[1]!, fds[2]!], newSession: spec.newSession, cgroupProcs: spec.cgroupProcs ?? -1 };
      return;
    }
    const fa = Buffer.alloc(FILE_ACTIONS_SIZE);
    checkResult('posix_spawn_file_actions_init', libc.fa_init(fa));
    this.fa = fa;
    try {
      spec.stdio.forEach((action, target) => this.addStdio(action, target));
      if (spec.cwd !== undefined) checkResult('posix_spawn_file_actions_addchdir_np', libc.fa_addchdir_np(this.fa!, spec.cwd));
      // Last action: after the dup2s onto 0-2 (and the helper's setup fds), whose sources it closes too.
      const closeFrom = (from: number) => {
        if (cloexecByRange) return;
        if (libc.fa_addclosefrom_np === null) throw new KernelError('close_range', ENOSYS);
        checkResult('posix_spawn_file_actions_addclosefrom_np', libc.fa_addclosefrom_np(this.fa!, from));
      };
      const attr = spec.newSession ? attrSession : attrGroup;
      const envp = [...spec.envp, null];
      if (spec.helper === undefined) {
        this.call = [this.out, spec.path, fa, attr, [...spec.argv, null], envp];
        if (spec.cgroupProcs !== undefined) {
          throw new TypeError('cgroupProcs needs the spawn shim or the helper');
        }
        if (spec.namespacesOf !== undefined || (spec.v1CgroupProcs ?? []).length > 0) throw new TypeError('namespacesOf and v1CgroupProcs need the helper');
        closeFrom(3);
        return;
      }
      const [report, reportChild] = pipe();
      this.report = report;
      this.childEnds.push(reportChild);
      const env = sealedMemfd('pidfd-exec-env', Buffer.from(spec.envp.map((e) => `${e}\0`).join('')));
      this.childEnds.push(env);
      // Every source must lie above the targets, or one dup2 could overwrite the source of the
      // next: a source that does not is dup'd above them first (closed again after the spawn).
      const v1 = spec.v1CgroupProcs ?? [];
      // Targets are packed from HELPER_FIRST_SETUP_FD up, so closing from the next one closes all else.
      const highest = HELPER_FIRST_SETUP_FD - 1 + (spec.namespacesOf === undefined ? 0 : 1) + (spec.cgroupProcs === undefined ? 0 : 1) + v1.length;
      let next = HELPER_FIRST_SETUP_FD;
      const above = (fd: Fd): Fd => {
        if (fd > highest) return fd;
        const copy = dupFd(fd, highest + 1);
        this.childEnds.push(copy);
        return copy;
      };
      const moves: [Fd, number][] = [[above(env), HELPER_ENV_FD], [above(reportChild), REPORT_FD]];
      const setupArgs: string[] = [];
      if (spec.namespacesOf !== undefined) {
        const pidfd = dupFd(borrowPidfd(spec.namespacesOf), highest + 1);
        this.childEnds.push(pidfd);
        moves.push([pidfd, next]);
        setupArgs.push('--setns', String(next++));
      }
      if (spec.cgroupProcs !== undefined) {
        moves.push([above(spec.cgroupProcs), next]);
        setupArgs.push('--cgroup-fd', String(next++));
      }
      for (const fd of v1) {
        moves.push([above(fd), next]);
        setupArgs.push('--cgroup-fd', String(next++));
      }
      for (const [fd, target] of moves) checkResult('posix_spawn_file_actions_adddup2', libc.fa_adddup2(this.fa!, fd, target));
      closeFrom(next);
      const helperArgv = ['pidfd-exec', ...setupArgs, ...spec.helper.args, '--', spec.path, ...spec.argv, null];
      this.call = [this.out, spec.helper.path, this.fa!, attr, helperArgv, [null]];
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  /** The function's result: 0 or an error number (posix_spawn does not use errno). */
  callSync(): number {
    if (this.shimCall !== null) return shim!(...this.shimArgs()) as number;
    markInheritedCloseOnExec();
    return (hasPidfdSpawn ? libc.pidfd_spawn! : libc.posix_spawn)(...this.call!) as number;
  }

  async callAsync(): Promise<number> {
    const done = (resolve: (rc: number) => void, reject: (e: unknown) => void) => (err: unknown, rc: number) => (err ? reject(err) : resolve(rc));
    if (this.shimCall !== null) {
      const answer = spawner?.spawn(this.shimCall);
      if (answer) {
        const { result, step, pid, inode } = await answer;
        this.out[0] = pid;
        this.shimStep[0] = step;
        this.inode = inode;
        return result;
      }
      return new Promise((resolve, reject) => shim!.async(...this.shimArgs(), done(resolve, reject)));
    }
    markInheritedCloseOnExec();
    const fn = hasPidfdSpawn ? libc.pidfd_spawn! : libc.posix_spawn;
    return new Promise((resolve, reject) => fn.async(...this.call!, done(resolve, reject)));
  }

  /** pidfd_agent_spawn's arguments, for a shim spawn the spawner threads cannot take. */
  private shimArgs(): unknown[] {
    const c = this.shimCall!;
    return [c.path, [...c.argv, null], [...c.envp, null], c.cwd ?? null, ...c.stdio, c.newSession ? 1 : 0, c.cgroupProcs, this.out, this.shimStep];
  }

  /** The started child (the launch owns it until finish); on a failed start nothing is left. */
  start(rc: number): PidRef {
    this.child = this.open(rc);
    return this.child;
  }

  private open(rc: number): PidRef {
    if (this.shimCall !== null) {
      // The shim returns the pidfd, or -errno of the failed step (its child is reaped then).
      if (rc < 0 && this.shimStep[0] === SHIM_CGROUP_STEP) throw new SetupError('cgroup', -rc);
      if (rc < 0) throw new KernelError(SHIM_STEPS[this.shimStep[0]!] ?? 'pidfd_agent_spawn', -rc);
      return ownPidfd(rc as Pidfd, this.out[0]!, this.inode || undefined);
    }
    checkResult(hasPidfdSpawn ? 'pidfd_spawn' : 'posix_spawn', rc);
    if (hasPidfdSpawn) {
      const pidfd = this.out[0] as Pidfd;
      return ownPidfd(pidfd, libc.pidfd_getpid!(pidfd));
    }
    const pid = this.out[0]!;
    try {
      // Race-free: only we can reap our own child, so until then the PID cannot be recycled.
      return ownPidfd(pidfdOpen(pid), pid);
    } catch (e) {
      killUnreapedChild(pid);
      throw e;
    }
  }

  /** Resolves once the helper (if any) has exec'd, without blocking the event loop meanwhile. */
  async execReported(): Promise<void> {
    this.closeChildEnds(); // our copy of the report pipe's write end: end-of-file needs it closed
    const report = this.report;
    if (report === null) return;
    const reading = new ExecReport(report);
    while (!reading.done) {
      const waitMs = reading.remainingMs();
      const ready = await new Promise<boolean>((resolve) => {
        const poll = libc.watchReadable(report, () => settle(true));
        const timer = setTimeout(() => settle(false), waitMs);
        const settle = (readable: boolean) => {
          poll.close();
          clearTimeout(timer);
          resolve(readable);
        };
      });
      reading.read(ready);
    }
    this.candidate = reading.outcome();
    this.report = null;
    closeFd(report);
  }

  /** Waits (blocking) for the helper's exec if not done yet; from here the caller owns child and pipes. */
  finish(child: PidRef): Spawned {
    this.closeChildEnds();
    if (this.report !== null) {
      const reading = new ExecReport(this.report);
      // Any revents counts: end-of-file (the exec) is POLLHUP alone.
      while (!reading.done) reading.read(pollOne(this.report, POLLIN, reading.remainingMs()) !== 0);
      this.candidate = reading.outcome();
    }
    this.succeeded = true;
    this.child = null;
    return { ref: child.take(), pipes: [...this.pipes], ...(this.candidate !== undefined && { candidate: this.candidate }) };
  }

  dispose(): void {
    if (this.child !== null) discardChild(this.child);
    this.child = null;
    if (this.fa !== null) libc.fa_destroy(this.fa);
    this.fa = null;
    this.closeChildEnds();
    if (this.report !== null) closeFd(this.report);
    this.report = null;
    if (!this.succeeded) for (const fd of this.pipes) if (fd !== null) closeFd(fd);
  }

  private closeChildEnds(): void {
    for (const fd of this.childEnds.splice(0)) closeFd(fd);
  }

  private addStdio(action: StdioAction, target: number): void {
    if (action.kind === 'tty') {
      if (target === 0) checkResult('posix_spawn_file_actions_addopen', libc.fa_addopen(this.fa!, 0, action.path, O_RDWR, 0));
      else checkResult('posix_spawn_file_actions_adddup2', libc.fa_adddup2(this.fa!, 0, target));
      return;
    }
    const source = this.stdioSource(action, target);
    if (source < 0) checkResult('posix_spawn_file_actions_addopen', libc.fa_addopen(this.fa!, target, '/dev/null', target === 0 ? O_RDONLY : O_WRONLY, 0));
    // For inherit, dup2(fd, fd): libuv marks the agent's 0-2 close-on-exec and this clears the flag (glibc >= 2.29).
    else checkResult('posix_spawn_file_actions_adddup2', libc.fa_adddup2(this.fa!, source, target));
  }

  /**
   * The agent's fd the child gets as `target` (its own number to inherit it; -1: /dev/null),
   * opening the pipe it asks for.
   */
  private stdioSource(action: Exclude<StdioAction, { kind: 'tty' }>, target: number): number {
    switch (action.kind) {
      case 'null':
        return -1;
      case 'inherit':
        return target;
      case 'fd':
        return action.fd;
      case 'pipe': {
        const [r, w] = pipe();
        const [parent, child] = target === 0 ? [w, r] : [r, w];
        this.childEnds.push(child);
        this.pipes[target] = parent;
        return child;
      }
      case 'output-pipe': {
        const [r, w] = pipe();
        this.pipes[target] = r;
        try {
          setPipeSize(r, action.bytes);
          this.childEnds.push(reopenFd(w, O_RDWR));
        } finally {
          closeFd(w);
        }
        return this.childEnds[this.childEnds.length - 1]!;
      }
    }
  }

}

/**
 * The child must get exactly fds 0-2 (and the helper its report pipe, dup2'd to 3). Rather than
 * closing every other descriptor in the vfork child (closefrom: one close per agent fd, 10,000
 * with 10,000 processes held, all while the agent waits for the exec), every fd from 3 up is made
 * close-on-exec here: a bitmap update in the agent (close_range CLOSE_RANGE_CLOEXEC, Linux 5.11),
 * and the kernel closes the child's copies during its exec, after the agent has been released.
 * Nearly all of them are close-on-exec already; this covers fds Node inherited from its parent
 * and any library that opened one without O_CLOEXEC.
 */
function markInheritedCloseOnExec(): void {
  if (cloexecByRange) libc.close_range(3, 0xffffffff, CLOSE_RANGE_CLOEXEC);
}

const CLOSE_RANGE_CLOEXEC = 4;
const ENOSYS = 38;
/**
 * Whether close_range works here (Linux 5.11+, and no seccomp filter refusing it, as older
 * container runtimes' default profiles did): if not, nothing would mark an inherited fd
 * close-on-exec, so each posix_spawn child closes every fd above its own with closefrom.
 */
const cloexecByRange = libc.close_range(3, 0xffffffff, CLOSE_RANGE_CLOEXEC) === 0;
/** The helper's descriptors (src/native/pidfd-exec.c). */
const REPORT_FD = 3;
const HELPER_ENV_FD = 4;
const HELPER_FIRST_SETUP_FD = 5;
const EXEC_REPORT_TIMEOUT_MS = 10_000;

/**
 * The helper's report, read as its pipe becomes readable, up to end-of-file, which means it exec'd
 * (the pipe is close-on-exec): "try INDEX" lines (a PATH search's files, each before its execve)
 * then end-of-file mean that file runs; a "stage errno" line means setup failed. A failure, or no
 * end in time, leaves the helper to SpawnAttempt.dispose, which kills (it may be stuck, or about to
 * exit) and reaps it. Setup is a handful of system calls, so the wait is short; it is bounded all
 * the same, over the whole report.
 */
class ExecReport {
  private text = '';
  private readonly deadline = Date.now() + EXEC_REPORT_TIMEOUT_MS;
  done = false;

  constructor(private readonly report: Fd) {}

  remainingMs(): number {
    return Math.max(0, this.deadline - Date.now());
  }

  /** One read once the pipe is readable (`ready`), else the wait ran out. */
  read(ready: boolean): void {
    const buf = Buffer.alloc(128);
    const n = ready ? Number(libc.read(this.report, buf, buf.length)) : -1;
    if (n > 0) this.text += buf.toString('latin1', 0, n);
    if (n > 0 && this.text.endsWith('\n') && !/(^|\n)try \d+\n$/.test(this.text)) this.done = true; // a failure: the helper exits
    if (n === 0) this.done = true;
    if (n < 0) throw new SetupError('exec-timeout', Errno.ETIMEDOUT);
  }

  /** The candidate exec'd, if any; a failure is thrown. */
  outcome(): number | undefined {
    const last = this.text.trimEnd().split('\n').at(-1) ?? '';
    const tried = /^try (\d+)$/.exec(last);
    if (last === '' || tried !== null) return tried === null ? undefined : Number(tried[1]);
    const [stage = 'exec', errno = String(Errno.EIO)] = last.split(' ');
    throw new SetupError(stage, Number(errno));
  }
}

/** How long a SIGKILLed child may take to die before it is given up (left a zombie). */
const KILL_REAP_TIMEOUT_MS = 5000;

/**
 * Ends a child of ours that nobody will manage: SIGKILL through its pidfd (it is unreaped, so
 * the pidfd still names it), reap, close. The reference is closed in every case.
 */
export function discardChild(child: PidRef): void {
  try {
    child.signal(Signal.SIGKILL);
    child.reap(KILL_REAP_TIMEOUT_MS);
  } catch (e) {
    // ESRCH/ECHILD: already reaped; ETIMEDOUT: stuck in the kernel, it stays a zombie.
    if (!isKernelError(e)) throw e;
  } finally {
    child.close();
  }
}

/**
 * The one place a bare PID is used: our own child that we could not get a pidfd for (EMFILE).
 * It is unreaped, so the number cannot belong to anyone else until this waitid returns.
 */
function killUnreapedChild(pid: number): void {
  libc.kill(pid, Signal.SIGKILL);
  const si = Buffer.alloc(128);
  while (Number(libc.sysWaitid(libc.NR.waitid, P_PID, pid, si, WEXITED, null)) < 0 && libc.errno() === Errno.EINTR);
}
