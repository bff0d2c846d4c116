// The wall clock steps (NTP correcting a node that booted with a wrong clock, a VM resumed): the
// agent measures ages and deadlines on CLOCK_MONOTONIC instead, within one boot and across its
// restarts. faketime steps only the agent's wall clock, by two hours, while it runs.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { State } from '../clients/ts/src/index.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { sleep, tempDir } from './helpers/harness.js';

const seconds = (n: number) => ({ seconds: n, nanos: 0 });

test('a wall clock two hours ahead expires no exit, forgets no request id, and fires no deadline, also after a restart', async (t) => {
  const dir = tempDir('pidfd-agent-clock-');
  const step = join(dir, 'faketime');
  writeFileSync(step, '+0\n');
  const env = {
    ...process.env,
    LD_PRELOAD: '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1',
    FAKETIME_TIMESTAMP_FILE: step,
    FAKETIME_NO_CACHE: '1',
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  };
  const args = ['--state-dir', join(dir, 'state'), '--retention-ttl', '1h'];
  const first = await startAgentProcess(args, [], env);
  t.teardown(() => first.stop());
  const { process: a } = await first.client.spawn({ argv: ['sh', '-c', 'exit 3'], requestId: 'job-a' });
  t.is((await first.client.wait({ handle: a!.handle })).process?.exit?.code, 3);
  const { process: d } = await first.client.spawn({ argv: ['sleep', '600'], timeout: seconds(3600) });
  t.teardown(() => first.client.signal({ handle: d!.handle, signal: 'SIGKILL' }).catch(() => {}));

  writeFileSync(step, '+2h\n');
  await sleep(2500); // the retention sweep runs every second
  t.is((await first.client.get({ handle: a!.handle })).process?.exit?.code, 3, 'the exit is kept: it is seconds old');
  const again = await first.client.spawn({ argv: ['sh', '-c', 'exit 3'], requestId: 'job-a' });
  t.true(again.replayed, 'the request id still replays its process');
  t.is(again.process?.handle, a!.handle);

  await first.stop();
  const second = await startAgentProcess(args, [], env);
  t.teardown(() => second.stop());
  t.teardown(() => second.client.signal({ handle: d!.handle, signal: 'SIGKILL' }).catch(() => {}));
  await sleep(2500);
  t.is((await second.client.get({ handle: d!.handle })).process?.state, State.STATE_RUNNING, 'its hour is not over: no deadline fired');
  t.is((await second.client.get({ handle: a!.handle })).process?.exit?.code, 3);
  // The wall clock still dates what is reported: two hours ahead, as the node now says.
  const fresh = await second.client.spawn({ argv: ['true'] });
  t.true(fresh.process!.startedAt!.getTime() > Date.now() + 3_600_000);
});
