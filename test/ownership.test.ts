// Issue 15, one owner for every pidfd: the PidRef contract against the real kernel, a process
// the agent cannot take on after its spawn, and the rule that no raw pidfd leaves kernel/.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import test from 'ava';
import { Epoll, EPOLLIN, EPOLLONESHOT } from '../src/kernel/epoll.js';
import { isKernelError } from '../src/kernel/errors.js';
import { closeFd, openFdCount, pipe } from '../src/kernel/fd.js';
import { pidfdOpen } from '../src/kernel/pidfd.js';
import { PidRef, PidRefClosedError } from '../src/kernel/pid-ref.js';
import { probeFeatures } from '../src/kernel/probe.js';
import { spawn } from '../src/kernel/spawn.js';
import { Cgroups, cgroup2Mount } from '../src/process/spawn/cgroups.js';
import { AgentError } from '../src/process/errors.js';
import { EventLog } from '../src/process/events/event-log.js';
import { eventEncoding } from '../src/service/event-encoding.js';
import { ProcessManager } from '../src/process/manager.js';
import type { SpawnOptions } from '../src/process/options.js';
import { EpollReaper } from '../src/reaper/reaper.js';
import { ROOT } from './helpers/agent-process.js';
import { procState, tryRmdir } from './helpers/harness.js';

const NULL = { kind: 'null' } as const;
const sleeper = () => spawn({ path: '/bin/sleep', argv: ['sleep', '30'], envp: [], stdio: [NULL, NULL, NULL], newSession: true }).ref;

/** Children of this process (every thread's), from /proc. */
function ourChildren(): Set<number> {
  const pids = new Set<number>();
  for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
    for (const pid of readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'latin1').trim().split(/\s+/)) if (pid !== '') pids.add(Number(pid));
  }
  return pids;
}

test.serial('take() moves the descriptor: the old reference can neither use nor close it, the new one closes it once', (t) => {
  const before = openFdCount();
  const first = sleeper();
  const pid = first.pid;
  const second = first.take();
  t.false(first.isOpen);
  t.throws(() => first.signal(0), { instanceOf: PidRefClosedError });
  t.throws(() => first.take(), { instanceOf: PidRefClosedError });
  first.close(); // a no-op: the descriptor is second's
  t.is(openFdCount(), before + 1);
  t.is(second.pid, pid);
  const running = t.throws(() => second.reap(20));
  t.true(isKernelError(running) && running.code === 'ETIMEDOUT', 'reap waits on the pidfd, then gives up');
  t.false(second.poll().exited);
  second.signal(9);
  t.deepEqual(second.reap(5000).termination, { signal: 9, coreDumped: false });
  second.close();
  second.close();
  t.is(openFdCount(), before);
  t.throws(() => second.poll(), { instanceOf: PidRefClosedError });
});

test.serial('a watched reference cannot be closed or moved; deregistered (or with its epoll gone) it can', (t) => {
  const before = openFdCount();
  const epoll = new Epoll(4);
  const ref = sleeper();
  ref.watch(epoll, EPOLLIN | EPOLLONESHOT, 1);
  t.true(ref.isWatched);
  t.throws(() => ref.close(), { message: /watched/ });
  t.throws(() => ref.take(), { message: /watched/ });
  t.true(ref.isOpen, 'the failed close left it open and usable');
  const e = t.throws(() => ref.watch(epoll, EPOLLIN, 2));
  t.true(isKernelError(e, 17), 'EEXIST');
  ref.unwatch();
  ref.unwatch();
  ref.watch(epoll, EPOLLIN | EPOLLONESHOT, 3);
  epoll.close(); // closing the epoll instance drops its registrations
  t.false(ref.isWatched);
  ref.signal(9);
  ref.reap(5000);
  ref.close();
  t.is(openFdCount(), before);
});

test.serial('a descriptor received as a pidfd is taken over; one that is none is closed and refused', (t) => {
  const before = openFdCount();
  const self = PidRef.received(pidfdOpen(process.pid));
  t.is(self.pid, process.pid, 'from the pidfd\'s fdinfo');
  {
    using again = PidRef.open(process.pid);
    t.is(self.inode, again.inode);
  }
  self.close();
  const ref = sleeper();
  const dup = ref.dup();
  t.is(dup.inode, ref.inode);
  dup.close();
  ref.signal(9);
  ref.reap(5000);
  ref.close();
  const [r, w] = pipe();
  closeFd(w);
  const e = t.throws(() => PidRef.received(r));
  t.true(isKernelError(e, 9), String(e));
  t.is(openFdCount(), before, 'the pipe end handed to received() was closed by it');
});

test.serial('the blocking spawn through the exec helper hands over a child that exec\'d, or reaps one whose setup failed', (t) => {
  const before = openFdCount();
  const children = ourChildren();
  const helper = (args: string[]) => ({ path: '/bin/sh', argv: ['sh', '-c', 'exit 3'], envp: [], stdio: [NULL, NULL, NULL] as const, newSession: true, helper: { path: join(ROOT, 'dist/bin/pidfd-exec'), args } });
  const ok = spawn(helper(['--umask', '077'])).ref;
  t.deepEqual(ok.reap(5000).termination, { exitCode: 3 });
  ok.close();
  const e = t.throws(() => spawn(helper(['--gid', 'x'])));
  t.true(isKernelError(e) && e.syscall === 'setgid', String(e));
  t.deepEqual([...ourChildren()].filter((pid) => !children.has(pid)), [], 'the failed helper was reaped');
  t.is(openFdCount(), before);
});

test.serial('a spawned child the agent cannot take on is killed and reaped, its pipes and cgroup go, and the error is the real one', async (t) => {
  const mount = cgroup2Mount();
  if (mount === undefined) return t.fail('no cgroup2 mount on this machine');
  const parent = join(mount, `pidfd-agent-ownership-${process.pid}`);
  t.teardown(() => tryRmdir(parent));
  // A reaper whose epoll instance is gone (as after stop()): it refuses every watch.
  const reaper = new EpollReaper(() => {}, () => {});
  reaper.close();
  const manager = new ProcessManager(new EventLog(16, eventEncoding), { maxProcesses: 4, ttlMs: 60_000, maxExited: 4 }, probeFeatures(), {
    helperPath: join(ROOT, 'dist/bin/pidfd-exec'),
    cgroups: new Cgroups(parent),
    agentEnv: {},
  });
  manager.attachReaper(reaper);
  const fds = openFdCount();
  const children = ourChildren();
  const options: SpawnOptions = {
    argv: ['/bin/sleep', '30'],
    labels: {},
    newSession: true,
    setup: { noNewPrivs: false, rlimits: [] },
    cgroup: { kind: 'create' },
    stdin: 'pipe',
    stdout: { kind: 'capture' },
    stderr: { kind: 'capture' },
  };
  const e = await t.throwsAsync(manager.spawn(options));
  t.false(e instanceof AgentError && e.detail.field === 'argv[0]', `not blamed on the executable: ${String(e)}`);
  t.true(isKernelError(e, 9) && e.syscall === 'epoll_ctl(ADD)', String(e));
  t.deepEqual([...ourChildren()].filter((pid) => !children.has(pid) && procState(pid) !== undefined), [], 'no child left running or a zombie');
  t.is(openFdCount(), fds, 'pidfd, pipes and the helper report pipe all closed');
  t.deepEqual(readdirSync(parent, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name), [], 'the cgroup created for it is removed');
  t.is(manager.stats().processes, 0);
});

test('no raw pidfd leaves kernel/: outside it nobody names Pidfd or borrows the number', (t) => {
  const src = join(ROOT, 'src');
  const offenders: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (path.endsWith('.ts') && !relative(src, path).startsWith('kernel/')) {
        const text = readFileSync(path, 'utf8');
        // The type, and the raw wrappers PidRef is made of: called, or imported from kernel/.
        const names = 'borrowPidfd|ownPidfd|pidfdOpen|pidfdSendSignal|waitidPidfd|pidfdPoll|pidfdGetInfo|pidfsInode|reapBlocking';
        const raw = new RegExp(`\\bPidfd\\b|\\b(${names})\\s*\\(|import[^;]*\\b(${names})\\b[^;]*from '[./]*kernel/`, 'g');
        for (const m of text.matchAll(raw)) offenders.push(`${relative(ROOT, path)}: ${m[0]}`);
      }
    }
  };
  walk(src);
  t.deepEqual(offenders, []);
  t.true(existsSync(join(src, 'kernel/pid-ref.ts')));
});
