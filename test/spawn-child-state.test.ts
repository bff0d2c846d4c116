// What a spawned child starts with: exactly fds 0-2 and the actions asked for, no blocked or ignored
// signals, its own session and process group.
import { execFileSync } from 'node:child_process';
import { fstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { closeFd, O_CLOEXEC, pipe, type Fd } from '../src/kernel/fd.js';
import { libc } from '../src/kernel/libc.js';
import { pidfdSendSignal } from '../src/kernel/pidfd.js';
import { ROOT } from './helpers/agent-process.js';
import { SIGKILL, SIGPIPE, NULL, PIPE, start, Output, feed, procStat, procStatus, fdFlags, untilSleepingIn } from './helpers/kernel-children.js';

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

  // The child lists its own table, after its exec and after its dynamic loader is done. Looking at
  // /proc/PID/fd from outside instead races with the loader, which opens /etc/ld.so.cache and then
  // libc.so.6 as fd 3 (the lowest free): a listing taken between the two showed a `cat` "holding
  // fd 3" once (issue 11), which was the loader's own.
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-fds-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const listFds = join(dir, 'list-fds');
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', listFds, join(ROOT, 'test/fixtures/list-fds.c')]);
  const child = start(t, [listFds], [PIPE, PIPE, NULL]);
  const own = child.output(1);
  await feed(child.take(0), '');
  t.deepEqual((await child.reap()).termination, { exitCode: 0 });
  t.is((await own.done).toString(), '0 1 2\n');
});

test('null, inherit and fd actions give the child /dev/null, the agent\'s own fd and the caller\'s fd', async (t) => {
  const [r, w] = pipe();
  const out = new Output(r);
  const child = start(t, ['/bin/sh', '-c', 'echo via-fd >&2; exec /bin/sleep 30'], [NULL, { kind: 'inherit' }, { kind: 'fd', fd: w }]);
  closeFd(w); // the caller owns it and closes it after spawn; the child holds its own copy
  await out.until(/via-fd\n/);
  await untilSleepingIn(child.pid, 'sleep');
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
