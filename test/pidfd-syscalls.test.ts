// The pidfd syscalls against the real kernel: get_info, waitid, poll, open, threads and the pidfs inode.
import { readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import test from 'ava';
import { closeFd } from '../src/kernel/fd.js';
import { decodeWaitStatus, PIDFD_INFO_CREDS, PIDFD_INFO_EXIT, PIDFD_INFO_PID, PIDFD_THREAD, pidfdGetInfo, pidfdOpen, pidfdPoll, pidfdSendSignal, pidfsInode, waitidPidfd } from '../src/kernel/pidfd.js';
import { SIGKILL, SIGTERM, NULL, PIPE, untilExited, start, feed, kernelAtLeast, kernelError } from './helpers/kernel-children.js';

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
