// A tenant's bare argv[0] and PATH are the tenant's: the search they make must stay the size of the
// file system, not of the request (review rrel, session 22: PATH = /bin repeated 24,000 times with a
// 120 KiB name took the agent from 80 MiB to 6.5 GB, every candidate kept and passed to the helper).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { AgentCallError, status } from '../clients/ts/src/index.js';
import { agentDir } from './helpers/harness.js';
import { policyFile } from './helpers/released.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

const mib = (pid: number, key: string) => Number(/\d+/.exec(readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(key))!)![0]) / 1024;

test.serial('a bare argv[0] longer than a file name is INVALID_ARGUMENT; a PATH of one directory repeated is searched once, as the target user, in bounded memory', async (t) => {
  const { dir, stateDir } = agentDir('pidfd-agent-path-bounds-');
  const agent = await RestartableAgent.start(reaper, dir, stateDir, ['--policy', policyFile()], true);
  t.teardown(() => agent.stop().catch(() => undefined));
  const before = mib(agent.pid, 'VmRSS');
  const PATH = Array(24 * 1024).fill('/bin').join(':');
  const long = await t.throwsAsync(agent.client.spawn({ argv: ['x'.repeat(120 * 1024)], env: { PATH }, user: 'nobody' }, { retry: false }), { instanceOf: AgentCallError });
  t.is(long!.code, status.INVALID_ARGUMENT);
  t.regex(long!.message, /argv\[0\].*at most 255 bytes/);
  const missing = await t.throwsAsync(agent.client.spawn({ argv: ['x'.repeat(255)], env: { PATH }, user: 'nobody' }, { retry: false }), { instanceOf: AgentCallError });
  t.is(missing!.code, status.NOT_FOUND);
  t.regex(missing!.message, /not found in PATH \/bin, as the target user/, 'one directory, once');
  const { process: p } = await agent.client.spawn({ argv: ['true'], env: { PATH }, user: 'nobody' }, { retry: false });
  const exited = await agent.client.wait({ handle: p!.handle });
  t.is(exited.process?.exit?.code, 0);
  const peak = mib(agent.pid, 'VmHWM');
  t.log(`agent RSS ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB`);
  t.true(peak < before + 256, `peak ${peak.toFixed(0)} MiB, from ${before.toFixed(0)}`);
});
