// The kernel layer against the real kernel: no agent, no mocks. The ava worker itself is the
// parent, so every child is spawned through kernel/spawn.ts and reaped here (libuv never reaps a
// child it did not start), and every fd a test opens is closed by the test.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import net from 'node:net';
import { constants, release } from 'node:os';
import test, { type ExecutionContext } from 'ava';
import { Epoll, EPOLLIN, EPOLLONESHOT, type ReadyEvent } from '../src/kernel/epoll.js';
import { Errno, KernelError } from '../src/kernel/errors.js';
import { closeFd, eventfd, O_CLOEXEC, O_NONBLOCK, openFdCount, pipe, type Fd, type Pidfd } from '../src/kernel/fd.js';
import { libc } from '../src/kernel/libc.js';
import {
  decodeWaitStatus,
  PIDFD_INFO_CREDS,
  PIDFD_INFO_EXIT,
  PIDFD_INFO_PID,
  PIDFD_THREAD,
  pidfdGetInfo,
  pidfdOpen,
  pidfdPoll,
  pidfdSendSignal,
  pidfsInode,
  waitidPidfd,
  type Reaped,
} from '../src/kernel/pidfd.js';
import { borrowPidfd, type PidRef } from '../src/kernel/pid-ref.js';
import { probeFeatures } from '../src/kernel/probe.js';
import { spawn, type StdioAction } from '../src/kernel/spawn.js';

const { SIGKILL, SIGTERM, SIGPIPE } = constants.signals;
const NULL: StdioAction = { kind: 'null' };
const PIPE: StdioAction = { kind: 'pipe' };
const ENV = ['PATH=/usr/bin:/bin', 'LC_ALL=C'];
type Stdio = readonly [StdioAction, StdioAction, StdioAction];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves once the process behind pidfd has exited (reaped or not); a safety net, not a timing check. */
async function untilExited(pidfd: Pidfd): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!pidfdPoll(pidfd).exited) {
    if (Date.now() > deadline) throw new Error('the process did not exit within 10 s');
    await sleep(2);
  }
}

/** A child of this process that is always reaped and whose pidfd is closed exactly once. */
class Child {
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

function start(t: ExecutionContext, argv: readonly string[], stdio: Stdio, newSession = true): Child {
  const child = new Child(argv, stdio, newSession);
  t.teardown(() => child.dispose());
  return child;
}

/** Everything read from the agent's end of a pipe, through a libuv pipe handle (never fs streams). */
class Output {
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
async function feed(fd: Fd, data: Buffer | string): Promise<void> {
  const socket = new net.Socket({ fd, readable: false, writable: true });
  socket.end(data);
  await once(socket, 'close');
}

/** Fields 3-6 of /proc/PID/stat; comm may hold spaces and parentheses, so split after the last ')'. */
function procStat(pid: number): { state: string; ppid: number; pgrp: number; session: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const [state, ppid, pgrp, session] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: state!, ppid: Number(ppid), pgrp: Number(pgrp), session: Number(session) };
}

function procStatus(text: string, field: string): string {
  const m = new RegExp(`^${field}:\\s*(\\S+)$`, 'm').exec(text);
  if (m === null) throw new Error(`no ${field} in status`);
  return m[1]!;
}

const fdFlags = (fd: number): number => parseInt(procStatus(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'), 'flags'), 8);

const kernelAtLeast = (major: number, minor: number): boolean => {
  const [a = 0, b = 0] = release().split('.').map((s) => parseInt(s, 10));
  return a > major || (a === major && b >= minor);
};

function glibcAtLeast(major: number, minor: number): boolean {
  const header = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header;
  const version = header.glibcVersionRuntime;
  if (version === undefined || !/^\d+\.\d+$/.test(version)) throw new Error(`no glibc version in Node's report: ${version}`);
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

function kernelError(t: ExecutionContext, fn: () => unknown, code: string, syscall: string): void {
  const e = t.throws(fn, { instanceOf: KernelError });
  if (e === undefined) return;
  t.is(e.code, code);
  t.is(e.errno, Errno[code as keyof typeof Errno]);
  t.is(e.syscall, syscall);
}

// Serial tests run before the concurrent ones, so nothing else opens fds while this one counts.
test.serial('a spawn-heavy workload with pipes, failures and the probe leaves the fd count where it was', async (t) => {
  const cycle = async () => {
    const child = new Child(['/bin/sh', '-c', 'cat; echo bye >&2'], [PIPE, PIPE, PIPE]);
    try {
      const out = child.output(1);
      const err = child.output(2);
      await feed(child.take(0), 'hello\n');
      const r = await child.reap();
      t.is((await out.done).toString(), 'hello\n');
      t.is((await err.done).toString(), 'bye\n');
      t.deepEqual(r.termination, { exitCode: 0 });
    } finally {
      await child.dispose();
    }
  };
  // The first round may make Node or koffi open something lazily for good; count after it.
  await cycle();
  const baseline = openFdCount();
  for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 8 }, cycle));
  for (let i = 0; i < 10; i++) {
    t.throws(() => spawn({ path: '/nonexistent/program', argv: ['x'], envp: ENV, stdio: [PIPE, PIPE, PIPE], newSession: true }), { instanceOf: KernelError, message: /ENOENT/ });
  }
  probeFeatures();
  t.is(openFdCount(), baseline);
});

test('a child\'s stdout and stderr pipes carry its output intact and apart', async (t) => {
  const child = start(t, ['/bin/sh', '-c', 'printf "%s|" "$@"; echo to-stderr >&2', 'sh', 'one', 'two words', ''], [NULL, PIPE, PIPE]);
  const out = child.output(1);
  const err = child.output(2);
  t.deepEqual((await child.reap()).termination, { exitCode: 0 });
  t.is((await out.done).toString(), 'one|two words||');
  t.is((await err.done).toString(), 'to-stderr\n');
});

test('a stdin pipe fed by the agent streams through the child and its close is the child\'s EOF', async (t) => {
  // Four times the 64 KiB pipe buffer: both sides must stream, neither can buffer it all.
  const payload = randomBytes(256 * 1024);
  const child = start(t, ['/bin/cat'], [PIPE, PIPE, NULL]);
  const out = child.output(1);
  await feed(child.take(0), payload);
  t.true((await out.done).equals(payload));
  t.deepEqual((await child.reap()).termination, { exitCode: 0 });
});

test.serial('the child gets exactly fds 0-2 although this process holds an inheritable fd', async (t) => {
  // Node opens everything close-on-exec; dup(2) does not: spawn marks it close-on-exec too.
  // Serial: no other test of this file may open descriptors while the children's are counted.
  const dup = libc.func('int dup(int oldfd)');
  const stray = dup(0) as number;
  t.true(stray > 2);
  t.teardown(() => closeFd(stray as Fd));
  t.is(fdFlags(stray) & O_CLOEXEC, 0, 'the stray fd would survive exec');

  const ls = start(t, ['/bin/ls', '/proc/self/fd'], [NULL, PIPE, NULL]);
  const listing = ls.output(1);
  t.deepEqual((await ls.reap()).termination, { exitCode: 0 });
  const fds = (await listing.done).toString().trim().split('\n');
  t.deepEqual(fds.slice(0, 3), ['0', '1', '2']);
  t.is(fds.length, 4, `only ls's own directory fd besides 0-2: ${fds.join(' ')}`);

  const cat = start(t, ['/bin/cat'], [PIPE, NULL, NULL]);
  // The agent is released as soon as the child's exec has replaced its memory; the kernel closes
  // the close-on-exec copies a moment later, still inside that exec.
  const deadline = Date.now() + 5000;
  while (readdirSync(`/proc/${cat.pid}/fd`).length > 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  const left = readdirSync(`/proc/${cat.pid}/fd`).sort();
  const what = left.map((fd) => `${fd}→${(() => { try { return readlinkSync(`/proc/${cat.pid}/fd/${fd}`); } catch { return '?'; } })()}`);
  t.deepEqual(left, ['0', '1', '2'], what.join(' '));
  await feed(cat.take(0), '');
  t.deepEqual((await cat.reap()).termination, { exitCode: 0 });
});

test('null, inherit and fd actions give the child /dev/null, the agent\'s own fd and the caller\'s fd', async (t) => {
  const [r, w] = pipe();
  const out = new Output(r);
  const child = start(t, ['/bin/sh', '-c', 'echo via-fd >&2; exec /bin/sleep 30'], [NULL, { kind: 'inherit' }, { kind: 'fd', fd: w }]);
  closeFd(w); // the caller owns it and closes it after spawn; the child holds its own copy
  await out.until(/via-fd\n/);
  t.is(readlinkSync(`/proc/${child.pid}/fd/0`), '/dev/null');
  const mine = fstatSync(1);
  const childs = statSync(`/proc/${child.pid}/fd/1`);
  t.deepEqual([childs.dev, childs.ino], [mine.dev, mine.ino]);
  t.is(readlinkSync(`/proc/${child.pid}/fd/2`), readlinkSync(`/proc/self/fd/${r}`));
  pidfdSendSignal(child.pidfd, SIGKILL);
  t.deepEqual((await child.reap()).termination, { signal: SIGKILL, coreDumped: false });
  t.is((await out.done).toString(), 'via-fd\n');
});

test('the child starts with no blocked and no ignored signals although Node ignores SIGPIPE', async (t) => {
  const own = readFileSync('/proc/self/status', 'utf8');
  t.not(BigInt(`0x${procStatus(own, 'SigIgn')}`) & (1n << BigInt(SIGPIPE - 1)), 0n, 'Node ignores SIGPIPE');
  const child = start(t, ['/bin/cat', '/proc/self/status'], [NULL, PIPE, NULL]);
  const out = child.output(1);
  t.deepEqual((await child.reap()).termination, { exitCode: 0 });
  const status = (await out.done).toString();
  t.is(procStatus(status, 'SigBlk'), '0000000000000000');
  t.is(procStatus(status, 'SigIgn'), '0000000000000000');
});

test('a new session and a new process group: in neither case the agent\'s group', async (t) => {
  const self = procStat(process.pid);
  const leader = start(t, ['/bin/sleep', '30'], [NULL, NULL, NULL], true);
  const member = start(t, ['/bin/sleep', '30'], [NULL, NULL, NULL], false);
  const s = procStat(leader.pid);
  t.deepEqual([s.ppid, s.pgrp, s.session], [process.pid, leader.pid, leader.pid]);
  const g = procStat(member.pid);
  t.deepEqual([g.ppid, g.pgrp, g.session], [process.pid, member.pid, self.session]);
  t.not(s.pgrp, self.pgrp);
  t.not(g.pgrp, self.pgrp);
  for (const c of [leader, member]) {
    pidfdSendSignal(c.pidfd, SIGKILL);
    t.deepEqual((await c.reap()).termination, { signal: SIGKILL, coreDumped: false });
  }
});

test('pidfdGetInfo names a live child and its parent; after the reap only PIDFD_INFO_EXIT answers, with the exit code', async (t) => {
  const child = start(t, ['/bin/sh', '-c', 'read line; exit 7'], [PIPE, NULL, NULL]);
  const live = pidfdGetInfo(child.pidfd, PIDFD_INFO_PID | PIDFD_INFO_CREDS | PIDFD_INFO_EXIT);
  t.is(live.mask & (PIDFD_INFO_PID | PIDFD_INFO_CREDS), PIDFD_INFO_PID | PIDFD_INFO_CREDS);
  t.deepEqual([live.pid, live.tgid, live.ppid], [child.pid, child.pid, process.pid]);
  t.deepEqual([live.ruid, live.euid], [process.getuid!(), process.geteuid!()]);
  t.is(live.termination, undefined);

  await feed(child.take(0), '');
  await untilExited(child.pidfd);
  // A zombie still has its pid but no exit data yet: pidfs records it at release_task(), the reap.
  const zombie = pidfdGetInfo(child.pidfd, PIDFD_INFO_PID | PIDFD_INFO_EXIT);
  t.is(zombie.pid, child.pid);
  t.is(zombie.termination, undefined);

  const reaped = await child.reap();
  t.deepEqual(reaped.termination, { exitCode: 7 });
  const after = pidfdGetInfo(child.pidfd, PIDFD_INFO_EXIT);
  t.is(after.mask & PIDFD_INFO_EXIT, PIDFD_INFO_EXIT);
  t.is(after.pid, 0);
  t.deepEqual(after.termination, reaped.termination);
  kernelError(t, () => pidfdGetInfo(child.pidfd, PIDFD_INFO_PID), 'ESRCH', 'ioctl(PIDFD_GET_INFO)');
});

test('a child killed by a signal: waitid and PIDFD_INFO_EXIT agree on the signal', async (t) => {
  for (const signal of [SIGTERM, SIGKILL]) {
    const child = start(t, ['/bin/sleep', '30'], [NULL, NULL, NULL]);
    pidfdSendSignal(child.pidfd, signal);
    const reaped = await child.reap();
    t.deepEqual(reaped.termination, { signal, coreDumped: false });
    t.deepEqual(pidfdGetInfo(child.pidfd, PIDFD_INFO_EXIT).termination, reaped.termination);
  }
});

test('waitidPidfd is null while the child runs, gives the termination with rusage after its exit and ECHILD a second time', async (t) => {
  const child = start(t, ['/bin/sh', '-c', 'read line; exit 3'], [PIPE, NULL, NULL]);
  t.is(waitidPidfd(child.pidfd), null);
  t.is(waitidPidfd(child.pidfd), null);
  t.false(pidfdPoll(child.pidfd).exited, 'null did not reap anything');
  await feed(child.take(0), 'go\n');
  const { termination, rusage } = await child.reap();
  t.deepEqual(termination, { exitCode: 3 });
  for (const [name, value] of Object.entries(rusage)) t.true(Number.isSafeInteger(value) && value >= 0, `${name} = ${value}`);
  // Exec maps a new image: the child cannot have run without page faults or resident memory.
  t.true(rusage.minorFaults > 0);
  t.true(rusage.maxRssKib > 0);
  kernelError(t, () => waitidPidfd(child.pidfd), 'ECHILD', 'waitid');
});

test('decodeWaitStatus reads exit codes, signals and the core-dump bit of a wait(2) status', (t) => {
  // wait(2): exit code in bits 8-15 when bits 0-6 are 0; otherwise bits 0-6 are the signal and bit 7 the core dump.
  t.deepEqual(decodeWaitStatus(7 << 8), { exitCode: 7 });
  t.deepEqual(decodeWaitStatus(0x0700), { exitCode: 7 });
  t.deepEqual(decodeWaitStatus(0), { exitCode: 0 });
  t.deepEqual(decodeWaitStatus(255 << 8), { exitCode: 255 });
  t.deepEqual(decodeWaitStatus(0x9), { signal: SIGKILL, coreDumped: false });
  t.deepEqual(decodeWaitStatus(0x8b), { signal: constants.signals.SIGSEGV, coreDumped: true });
});

test('Epoll carries full 32-bit tokens through the packed epoll_event', (t) => {
  const ep = new Epoll(8);
  const a = eventfd(1); // a counter above zero: readable from the start
  const b = eventfd(1);
  t.teardown(() => {
    ep.close();
    closeFd(a);
    closeFd(b);
  });
  ep.add(a, EPOLLIN, 0xdeadbeef);
  ep.add(b, EPOLLIN, 0x80000001);
  const ready: ReadyEvent[] = [];
  t.is(ep.wait(ready), 2);
  t.deepEqual(ready.map((e) => e.data).sort((a, b) => a - b), [0x80000001, 0xdeadbeef]);
  for (const e of ready) t.is(e.events & EPOLLIN, EPOLLIN);
});

test('EPOLLONESHOT reports a ready fd once and again only after modify', (t) => {
  const ep = new Epoll(8);
  const level = new Epoll(8);
  const fd = eventfd(1);
  t.teardown(() => {
    ep.close();
    level.close();
    closeFd(fd);
  });
  ep.add(fd, EPOLLIN | EPOLLONESHOT, 1);
  level.add(fd, EPOLLIN, 9);
  const ready: ReadyEvent[] = [];
  t.is(ep.wait(ready), 1);
  t.is(ready[0]?.data, 1);
  t.is(ep.wait(ready), 0, 'disarmed after one report');
  t.is(level.wait(ready), 1, 'yet the fd is still readable');
  ep.modify(fd, EPOLLIN | EPOLLONESHOT, 2);
  t.is(ep.wait(ready), 1);
  t.is(ready[0]?.data, 2, 'rearmed with the new token');
  t.is(ep.wait(ready), 0);
  ep.remove(fd);
  kernelError(t, () => ep.modify(fd, EPOLLIN, 3), 'ENOENT', 'epoll_ctl(MOD)');
});

test('a pidfd in epoll turns readable when its child exits, as the reaper relies on', async (t) => {
  const ep = new Epoll(4);
  t.teardown(() => ep.close());
  const child = start(t, ['/bin/sh', '-c', 'read line; exit 0'], [PIPE, NULL, NULL]);
  ep.add(child.pidfd, EPOLLIN | EPOLLONESHOT, 0xfffffffe);
  const ready: ReadyEvent[] = [];
  t.is(ep.wait(ready), 0);
  await feed(child.take(0), '');
  await untilExited(child.pidfd);
  t.is(ep.wait(ready), 1);
  t.deepEqual(ready[0], { events: EPOLLIN, data: 0xfffffffe });
  ep.remove(child.pidfd); // deregister, then reap, then close: the agent's order
  t.deepEqual((await child.reap()).termination, { exitCode: 0 });
});

// The shell traps TERM so that it survives to reap the grandchild: PID 1 here reaps no orphans.
const FAMILY = 'trap "echo trapped" TERM; /bin/sleep 30 & echo "$!"; wait; wait; echo done';

async function family(t: ExecutionContext): Promise<{ parent: Child; out: Output; grandchild: Pidfd; gpid: number }> {
  const parent = start(t, ['/bin/sh', '-c', FAMILY], [NULL, PIPE, NULL]);
  const out = parent.output(1);
  const gpid = Number((await out.until(/^(\d+)\n/))[1]);
  const grandchild = pidfdOpen(gpid);
  t.teardown(() => closeFd(grandchild));
  t.is(pidfdGetInfo(grandchild, PIDFD_INFO_PID).ppid, parent.pid, 'not our child, the shell\'s');
  t.is(procStat(gpid).pgrp, parent.pid);
  return { parent, out, grandchild, gpid };
}

test('pidfdSendSignal with process-group scope reaches a grandchild in the group', async (t) => {
  const { parent, out, grandchild, gpid } = await family(t);
  pidfdSendSignal(parent.pidfd, SIGTERM, 'process-group');
  t.deepEqual((await parent.reap()).termination, { exitCode: 0 });
  t.is((await out.done).toString(), `${gpid}\ntrapped\ndone\n`);
  // The shell has reaped the grandchild before it exited, so its exit is recorded.
  t.deepEqual(pidfdGetInfo(grandchild, PIDFD_INFO_EXIT).termination, { signal: SIGTERM, coreDumped: false });
});

test('pidfdSendSignal with the default scope reaches the process only, not its group', async (t) => {
  const { parent, out, grandchild, gpid } = await family(t);
  pidfdSendSignal(parent.pidfd, SIGTERM);
  await out.until(/trapped\n/);
  t.false(pidfdPoll(grandchild).exited, 'the grandchild still sleeps');
  t.is(procStat(gpid).state, 'S');
  pidfdSendSignal(grandchild, SIGKILL); // a pidfd signals a process that is not our child too
  t.deepEqual((await parent.reap()).termination, { exitCode: 0 });
  t.is((await out.done).toString(), `${gpid}\ntrapped\ndone\n`);
  t.deepEqual(pidfdGetInfo(grandchild, PIDFD_INFO_EXIT).termination, { signal: SIGKILL, coreDumped: false });
});

test('pidfdSendSignal refuses a bad signal with EINVAL; signal 0 reaches a zombie but not a reaped process', async (t) => {
  const self = pidfdOpen(process.pid);
  t.teardown(() => closeFd(self));
  for (const bad of [65, -1]) kernelError(t, () => pidfdSendSignal(self, bad), 'EINVAL', 'pidfd_send_signal');
  pidfdSendSignal(self, 0);

  const child = start(t, ['/bin/sh', '-c', 'exit 0'], [NULL, NULL, NULL]);
  await untilExited(child.pidfd);
  t.notThrows(() => pidfdSendSignal(child.pidfd, 0), 'a zombie accepts signals and nobody is hurt');
  await child.reap();
  kernelError(t, () => pidfdSendSignal(child.pidfd, 0), 'ESRCH', 'pidfd_send_signal');
});

test('pidfdOpen of a pid that cannot exist throws ESRCH', (t) => {
  // PIDs are allocated below pid_max, so pid_max itself never names a process.
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  kernelError(t, () => pidfdOpen(pidMax), 'ESRCH', 'pidfd_open');
  kernelError(t, () => pidfdOpen(0), 'EINVAL', 'pidfd_open');
});

test('a thread that is not the group leader needs PIDFD_THREAD', (t) => {
  // Node's libuv and V8 worker threads live as long as the process.
  const tid = readdirSync('/proc/self/task').map(Number).find((n) => n !== process.pid);
  if (tid === undefined) throw new Error('this process has no second thread');
  // 6.15 turned EINVAL into ENOENT for this case.
  kernelError(t, () => pidfdOpen(tid), kernelAtLeast(6, 15) ? 'ENOENT' : 'EINVAL', 'pidfd_open');
  const fd = pidfdOpen(tid, PIDFD_THREAD);
  t.teardown(() => closeFd(fd));
  const info = pidfdGetInfo(fd, PIDFD_INFO_PID);
  t.deepEqual([info.pid, info.tgid], [tid, process.pid]);
});

test('pidfdPoll goes from running to exited to reaped', async (t) => {
  const child = start(t, ['/bin/sh', '-c', 'read line; exit 0'], [PIPE, NULL, NULL]);
  t.deepEqual(pidfdPoll(child.pidfd), { exited: false, reaped: false });
  await feed(child.take(0), '');
  await untilExited(child.pidfd);
  t.deepEqual(pidfdPoll(child.pidfd), { exited: true, reaped: false });
  await child.reap();
  t.deepEqual(pidfdPoll(child.pidfd), { exited: true, reaped: true });
});

test('pidfsInode is one number per process: equal for two pidfds of one process, different between processes', async (t) => {
  const a = start(t, ['/bin/sleep', '30'], [NULL, NULL, NULL]);
  const b = start(t, ['/bin/sleep', '30'], [NULL, NULL, NULL]);
  const again = pidfdOpen(a.pid);
  const self1 = pidfdOpen(process.pid);
  const self2 = pidfdOpen(process.pid);
  t.teardown(() => [again, self1, self2].forEach((fd) => closeFd(fd)));
  t.not(again, a.pidfd);
  t.is(pidfsInode(again), pidfsInode(a.pidfd));
  t.not(pidfsInode(a.pidfd), pidfsInode(b.pidfd));
  t.is(pidfsInode(self1), pidfsInode(self2));
  t.not(pidfsInode(self1), pidfsInode(a.pidfd));
  for (const c of [a, b]) {
    pidfdSendSignal(c.pidfd, SIGKILL);
    await c.reap();
  }
  t.is(pidfsInode(again), pidfsInode(a.pidfd), 'the inode outlives the reap');
});

test('eventfd and pipe return close-on-exec fds', (t) => {
  const ev = eventfd();
  const [r, w] = pipe();
  t.teardown(() => [ev, r, w].forEach((fd) => closeFd(fd)));
  t.is(fdFlags(ev) & O_CLOEXEC, O_CLOEXEC);
  t.is(fdFlags(ev) & O_NONBLOCK, O_NONBLOCK);
  t.is(fdFlags(r) & O_CLOEXEC, O_CLOEXEC);
  t.is(fdFlags(w) & O_CLOEXEC, O_CLOEXEC);
  t.is(readlinkSync(`/proc/self/fd/${ev}`), 'anon_inode:[eventfd]');
});

test('probeFeatures matches this kernel and libc', (t) => {
  const expected = {
    pidfdSpawn: glibcAtLeast(2, 39),
    pidfdGetInfo: kernelAtLeast(6, 13),
    pidfdInfoExit: kernelAtLeast(6, 15),
  };
  t.deepEqual(probeFeatures(), expected);
});

test('spawn reports a missing executable or cwd as ENOENT and a non-executable file as EACCES', (t) => {
  const syscall = glibcAtLeast(2, 39) ? 'pidfd_spawn' : 'posix_spawn';
  kernelError(t, () => spawn({ path: '/nonexistent/program', argv: ['x'], envp: ENV, stdio: [NULL, NULL, NULL], newSession: true }), 'ENOENT', syscall);
  kernelError(t, () => spawn({ path: '/bin/true', argv: ['true'], envp: ENV, cwd: '/nonexistent/dir', stdio: [NULL, NULL, NULL], newSession: true }), 'ENOENT', syscall);
  kernelError(t, () => spawn({ path: '/etc/passwd', argv: ['passwd'], envp: ENV, stdio: [NULL, NULL, NULL], newSession: true }), 'EACCES', syscall);
});
