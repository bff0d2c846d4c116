// The kernel layer's fds: a spawn-heavy workload leaves the count where it was; new fds are close-on-exec.
import { readdirSync, readlinkSync } from 'node:fs';
import test from 'ava';
import { KernelError } from '../src/kernel/errors.js';
import { closeFd, eventfd, O_CLOEXEC, O_NONBLOCK, pipe } from '../src/kernel/fd.js';
import { probeFeatures } from '../src/kernel/probe.js';
import { spawn } from '../src/kernel/spawn.js';
import { PIPE, ENV, Child, feed, fdFlags } from './helpers/kernel-children.js';

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
  const before = await settledFds();
  for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 8 }, cycle));
  for (let i = 0; i < 10; i++) {
    t.throws(() => spawn({ path: '/nonexistent/program', argv: ['x'], envp: ENV, stdio: [PIPE, PIPE, PIPE], newSession: true }), { instanceOf: KernelError, message: /ENOENT/ });
  }
  probeFeatures();
  const after = await settledFds();
  // An fd the baseline caught on its way out (ava's or the loader's) may be gone by now; only new ones are leaks.
  const leaked = [...after].filter(([fd, target]) => before.get(fd) !== target).map(([fd, target]) => `${fd} -> ${target}`);
  t.deepEqual(leaked, []);
  t.true(after.size <= before.size, `${after.size} fds after, ${before.size} before`);
});

type FdTable = Map<number, string>;

/** fd -> what it refers to; the directory fd readdir used is closed again by the time readlink runs. */
function openFds(): FdTable {
  const fds: FdTable = new Map();
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      fds.set(Number(name), readlinkSync(`/proc/self/fd/${name}`));
    } catch {
      // closed between the listing and the readlink
    }
  }
  return fds;
}

/**
 * The table once closes in flight have landed: a stream's fd is closed by libuv a loop turn or more
 * after the stream is destroyed, so a listing taken right after a cycle may still hold one.
 */
async function settledFds(): Promise<FdTable> {
  let last = openFds();
  for (let i = 0; i < 100; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const now = openFds();
    if (now.size === last.size && [...now].every(([fd, target]) => last.get(fd) === target)) return now;
    last = now;
  }
  return last;
}

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
