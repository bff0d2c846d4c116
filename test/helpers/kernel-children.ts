// Children for the kernel-layer tests: no agent, no mocks. The ava worker itself is the parent, so
// every child is spawned through kernel/spawn.ts and reaped here (libuv never reaps a child it did
// not start), and every fd a test opens is closed by the test.
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { constants, release } from 'node:os';
import type { ExecutionContext } from 'ava';
import { Errno, KernelError } from '../../src/kernel/errors.js';
import { closeFd, type Fd, type Pidfd } from '../../src/kernel/fd.js';
import { pidfdPoll, pidfdSendSignal, waitidPidfd, type Reaped } from '../../src/kernel/pidfd.js';
import { borrowPidfd, type PidRef } from '../../src/kernel/pid-ref.js';
import { spawn, type StdioAction } from '../../src/kernel/spawn.js';

export const { SIGKILL, SIGTERM, SIGPIPE } = constants.signals;
export const NULL: StdioAction = { kind: 'null' };
export const PIPE: StdioAction = { kind: 'pipe' };
export const ENV = ['PATH=/usr/bin:/bin', 'LC_ALL=C'];
export type Stdio = readonly [StdioAction, StdioAction, StdioAction];

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once the process behind pidfd has exited (reaped or not); a safety net, not a timing check. */
export async function untilExited(pidfd: Pidfd): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!pidfdPoll(pidfd).exited) {
    if (Date.now() > deadline) throw new Error('the process did not exit within 10 s');
    await sleep(2);
  }
}

/**
 * Waits until `pid` runs `comm` and sleeps in it: a shell's fds and state are settled only once it
 * has exec'd (dash points fd 1 at fd 2 while it runs `echo >&2`, and a fresh fork runs, state R).
 */
export async function untilSleepingIn(pid: number, comm: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(readFileSync(`/proc/${pid}/comm`, 'latin1') === `${comm}\n` && procStat(pid).state === 'S')) {
    if (Date.now() > deadline) throw new Error(`pid ${pid} did not sleep in ${comm} within 10 s`);
    await sleep(2);
  }
}

/** A child of this process that is always reaped and whose pidfd is closed exactly once. */
export class Child {
  readonly pid: number;
  readonly ref: PidRef;
  /** The raw number, for the wrappers kernel/ uses inside PidRef. */
  readonly pidfd: Pidfd;
  private readonly pipes: (Fd | null)[];
  private reaped: Reaped | undefined;
  private disposed = false;

  constructor(argv: readonly string[], stdio: Stdio, newSession = true) {
    const s = spawn({ path: argv[0]!, argv, envp: ENV, stdio, newSession });
    this.ref = s.ref;
    this.pid = s.ref.pid;
    this.pidfd = borrowPidfd(s.ref);
    this.pipes = [...s.pipes];
  }

  /** Takes ownership of the agent's end of the pipe on the child's fd i. */
  take(i: 0 | 1 | 2): Fd {
    const fd = this.pipes[i];
    if (fd === null || fd === undefined) throw new Error(`no pipe on fd ${i}`);
    this.pipes[i] = null;
    return fd;
  }

  output(i: 1 | 2): Output {
    return new Output(this.take(i));
  }

  /** Waits for the exit and reaps through the pidfd. */
  async reap(): Promise<Reaped> {
    await untilExited(this.pidfd);
    const r = waitidPidfd(this.pidfd);
    if (r === null) throw new Error('the pidfd was readable but waitid had nothing to report');
    this.reaped = r;
    return r;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    for (const fd of this.pipes) if (fd !== null) closeFd(fd);
    if (this.reaped === undefined) {
      try {
        pidfdSendSignal(this.pidfd, SIGKILL);
        await this.reap();
      } catch {
        // Reaped by the test already (ECHILD): nothing is left to collect.
      }
    }
    this.ref.close();
  }
}

export function start(t: ExecutionContext, argv: readonly string[], stdio: Stdio, newSession = true): Child {
  const child = new Child(argv, stdio, newSession);
  t.teardown(() => child.dispose());
  return child;
}

/** Everything read from the agent's end of a pipe, through a libuv pipe handle (never fs streams). */
export class Output {
  private readonly chunks: Buffer[] = [];
  private readonly waiters = new Set<() => void>();
  private ended = false;
  readonly done: Promise<Buffer>;

  constructor(fd: Fd) {
    const socket = new net.Socket({ fd, readable: true, writable: false });
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.notify();
    });
    this.done = new Promise((resolve, reject) => {
      socket.on('error', reject);
      socket.on('close', () => {
        this.ended = true;
        this.notify();
        resolve(Buffer.concat(this.chunks));
      });
    });
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  /** Resolves with the first match of re in the output so far, waiting for more as needed. */
  until(re: RegExp): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const m = re.exec(this.text);
        if (m === null && !this.ended) return;
        this.waiters.delete(check);
        if (m !== null) resolve(m);
        else reject(new Error(`output ended without ${re}: ${JSON.stringify(this.text)}`));
      };
      this.waiters.add(check);
      check();
    });
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** Writes data to the agent's end of a pipe, then closes it: the child's EOF. */
export async function feed(fd: Fd, data: Buffer | string): Promise<void> {
  const socket = new net.Socket({ fd, readable: false, writable: true });
  socket.end(data);
  await once(socket, 'close');
}

/** Fields 3-6 of /proc/PID/stat; comm may hold spaces and parentheses, so split after the last ')'. */
export function procStat(pid: number): { state: string; ppid: number; pgrp: number; session: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const [state, ppid, pgrp, session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: state!, ppid: Number(ppid), pgrp: Number(pgrp), session: Number(session) };
}

export function procStatus(text: string, field: string): string {
  const m = new RegExp(`^${field}:\\s*(\\S+)$`, 'm').exec(text);
  if (m === null) throw new Error(`no ${field} in status`);
  return m[1]!;
}

export const fdFlags = (fd: number): number => parseInt(procStatus(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'), 'flags'), 8);

export const kernelAtLeast = (major: number, minor: number): boolean => {
  const [a = 0, b = 0] = release().split('.').map((s) => parseInt(s, 10));
  return a > major || (a === major && b >= minor);
};

export function glibcAtLeast(major: number, minor: number): boolean {
  const header = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header;
  const version = header.glibcVersionRuntime;
  if (version === undefined || !/^\d+\.\d+$/.test(version)) throw new Error(`no glibc version in Node's report: ${version}`);
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

export function kernelError(t: ExecutionContext, fn: () => unknown, code: string, syscall: string): void {
  const e = t.throws(fn, { instanceOf: KernelError });
  if (e === undefined) return;
  t.is(e.code, code);
  t.is(e.errno, Errno[code as keyof typeof Errno]);
  t.is(e.syscall, syscall);
}
