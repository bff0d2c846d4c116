// A released process that still runs holds a place of its owner's max_processes until it exits
// (tenancy.test.ts), and no longer only in the memory of the agent it was released by: the store
// keeps it, so an agent restarted after a kill -9 and a successor after a handover count it too,
// and give the place back once it has exited. (The lingering agent that serves again:
// handover-resume.test.ts.) Agents run under the C subreaper, which reaps what a dead agent leaves.
import test from 'ava';
import { PidRef } from '../src/kernel/pid-ref.js';
import { agentDir } from './helpers/harness.js';
import { killedAtTeardown, placeComesBack, policyFile, refusedWith, spawnAndRelease } from './helpers/released.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

test.serial('released processes still running count against max_processes after a kill -9 and a restart, until they exit', async (t) => {
  const { dir, stateDir } = agentDir('pidfd-agent-released-restart-');
  const args = ['--policy', policyFile()];
  const first = await RestartableAgent.start(reaper, dir, stateDir, args);
  const [one] = [await spawnAndRelease(t, first.client), await spawnAndRelease(t, first.client)];
  await refusedWith(t, first.client, 2);
  await first.crash();
  const second = await RestartableAgent.start(reaper, dir, stateDir, args, true);
  t.teardown(() => second.stop());
  await refusedWith(t, second.client, 2);
  t.regex(reaper.stderr, /"event":"restored".*"released_running":2/);
  await placeComesBack(t, second.client, one!);
});

test.serial('released processes still running count against max_processes at the successor after a handover, until they exit', async (t) => {
  const { dir, stateDir } = agentDir('pidfd-agent-released-handover-');
  const args = ['--policy', policyFile()];
  const old = await RestartableAgent.start(reaper, dir, stateDir, args);
  const [one] = [await spawnAndRelease(t, old.client), await spawnAndRelease(t, old.client)];
  await refusedWith(t, old.client, 2);
  const { agent: next, oldEnded } = await RestartableAgent.takeOver(reaper, dir, stateDir, old, args);
  t.teardown(() => next.stop());
  t.is(oldEnded, 'exit 0');
  await refusedWith(t, next.client, 2);
  await placeComesBack(t, next.client, one!);
});

test.serial('a process spawned before a restart and released after it counts as one released by the agent that spawned it', async (t) => {
  const { dir, stateDir } = agentDir('pidfd-agent-released-orphan-');
  const args = ['--policy', policyFile()];
  const first = await RestartableAgent.start(reaper, dir, stateDir, args);
  const { process: p } = await first.client.spawn({ argv: ['/bin/sleep', '600'], user: 'nobody' }, { retry: false });
  const ref = PidRef.open(p!.pid);
  killedAtTeardown(t, ref);
  t.is(ref.inode, BigInt(p!.pidfsInode));
  await first.crash();
  // No longer the agent's child (the subreaper's now), and released by an agent that did not spawn it.
  const second = await RestartableAgent.start(reaper, dir, stateDir, args);
  t.teardown(() => second.stop());
  await second.client.release({ handle: p!.handle });
  await spawnAndRelease(t, second.client);
  await refusedWith(t, second.client, 2);
  await placeComesBack(t, second.client, ref);
});
