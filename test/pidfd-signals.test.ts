// pidfd_send_signal's scopes (the process or its group) and its refusals, on a shell and its child.
import test, { type ExecutionContext } from 'ava';
import { closeFd, type Pidfd } from '../src/kernel/fd.js';
import { PIDFD_INFO_EXIT, PIDFD_INFO_PID, pidfdGetInfo, pidfdOpen, pidfdPoll, pidfdSendSignal } from '../src/kernel/pidfd.js';
import { SIGKILL, SIGTERM, NULL, PIPE, untilExited, Child, start, Output, procStat, kernelError, untilSleepingIn } from './helpers/kernel-children.js';

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
  // Between fork and exec the grandchild is a copy of the shell with its TERM trap: a TERM then is
  // caught and lost. Only a grandchild asleep in /bin/sleep shows which signal reached whom.
  await untilSleepingIn(gpid, 'sleep');
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
