// The kernel layer's fds: a spawn-heavy workload leaves the count where it was; new fds are close-on-exec.
import { readlinkSync } from 'node:fs';
import test from 'ava';
import { KernelError } from '../src/kernel/errors.js';
import { closeFd, eventfd, O_CLOEXEC, O_NONBLOCK, openFdCount, pipe } from '../src/kernel/fd.js';
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
  const baseline = await settledFdCount();
  for (let round = 0; round < 5; round++) await Promise.all(Array.from({ length: 8 }, cycle));
  for (let i = 0; i < 10; i++) {
    t.throws(() => spawn({ path: '/nonexistent/program', argv: ['x'], envp: ENV, stdio: [PIPE, PIPE, PIPE], newSession: true }), { instanceOf: KernelError, message: /ENOENT/ });
  }
  probeFeatures();
  t.is(await settledFdCount(), baseline);
});

/**
 * The count once closes in flight have landed: a stream's fd is closed by libuv a loop turn or more
 * after the stream is destroyed, so a count taken right after a cycle may still hold one.
 */
async function settledFdCount(): Promise<number> {
  let last = openFdCount();
  for (let i = 0; i < 100; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const now = openFdCount();
    if (now === last) return now;
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
