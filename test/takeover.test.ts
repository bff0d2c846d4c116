// Issue 11, item 6: an agent takes over only when asked. Started on a state dir another agent
// serves, it leaves that agent alone and fails at once, naming it; --takeover if-serving and
// --takeover required say when to take over. Agents run under the C subreaper (test/fixtures).
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { State, StdinMode } from '../clients/ts/src/index.js';
import { HANDOVER_SOCKET } from '../src/handover/outgoing.js';
import { AGENT_BIN } from './helpers/agent-process.js';
import { agentDir } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

const tempDir = () => agentDir('pidfd-agent-takeover-');

/** Starts the built agent on stateDir and waits for it to end: how it ended, what it printed, how long it took. */
async function runToEnd(address: string, stateDir: string, args: readonly string[]): Promise<{ ended: string; stderr: string; ms: number }> {
  const from = reaper.stderr.length;
  const started = performance.now();
  const pid = await reaper.start([process.execPath, AGENT_BIN, '--listen', address, '--state-dir', stateDir, '--quiet', ...args]);
  const ended = await reaper.wait(pid, 60_000);
  return { ended, stderr: reaper.stderr.slice(from), ms: performance.now() - started };
}

test.serial('an agent started without --takeover on a served state dir exits at once naming the serving agent, which keeps serving', async (t) => {
  const { dir, stateDir, address } = tempDir();
  // Logging, to see what it made of the connection that asked nothing.
  const first = await RestartableAgent.start(reaper, dir, stateDir, [], true);
  const { process: cat } = await first.client.spawn({ argv: ['/bin/cat'], stdin: StdinMode.STDIN_MODE_PIPE });
  const fdsBefore = readdirSync(`/proc/${first.pid}/fd`).length;

  // The same socket and state dir, as a `make run` next to the node's agent would use.
  const second = await runToEnd(address, stateDir, []);
  t.is(second.ended, 'exit 1');
  t.true(second.ms < 5000, `ended after ${Math.round(second.ms)} ms`);
  const message = second.stderr.split('\n').find((l) => l.startsWith('pidfd-agent: '));
  t.is(message, `pidfd-agent: the agent with pid ${first.pid} serves --state-dir ${stateDir}; start with --takeover if-serving to take over its processes, or use another --state-dir`);
  t.false(/^\s+at /m.test(second.stderr), 'no stack');

  t.false(/"event":"handover_started"/.test(reaper.stderr), 'the first agent was not asked to hand over');
  const { process: still } = await first.client.get({ handle: cat!.handle });
  t.is(still!.state, State.STATE_RUNNING);
  t.is(still!.pid, cat!.pid);
  t.true(existsSync(`/proc/${cat!.pid}`), 'its process is untouched');
  t.is((await first.client.writeStdin({ handle: cat!.handle, data: Buffer.from('hello\n') })).written, 6, 'a call still works');
  t.is(readdirSync(`/proc/${first.pid}/fd`).length, fdsBefore, 'the refused connection left no descriptor behind');
  t.true(existsSync(join(stateDir, HANDOVER_SOCKET)), 'it still answers on its handover socket');

  // And it still hands over when asked.
  const { agent, oldEnded } = await RestartableAgent.takeOver(reaper, dir, stateDir, first, ['--quiet']);
  t.is(oldEnded, 'exit 0');
  t.is((await agent.client.get({ handle: cat!.handle })).process!.state, State.STATE_RUNNING, 'taken over');
  await agent.client.signal({ handle: cat!.handle, signal: 'SIGKILL' });
  await agent.stop();
});

test.serial('--takeover required fails when no agent serves the state dir, whether it has no handover socket or a stale one', async (t) => {
  const { dir, stateDir, address } = tempDir();
  const none = await runToEnd(address, stateDir, ['--takeover', 'required']);
  t.is(none.ended, 'exit 1');
  t.regex(none.stderr, /^pidfd-agent: --takeover required: no agent answers on \S+handover\.sock \(ENOENT\)$/m);

  const crashed = await RestartableAgent.start(reaper, dir, stateDir);
  await crashed.crash();
  t.true(existsSync(join(stateDir, HANDOVER_SOCKET)), 'a killed agent leaves its socket behind');
  const stale = await runToEnd(address, stateDir, ['--takeover', 'required']);
  t.is(stale.ended, 'exit 1');
  t.regex(stale.stderr, /^pidfd-agent: --takeover required: no agent answers on \S+handover\.sock \(ECONNREFUSED\)$/m);
});

test.serial('with nobody serving, --takeover if-serving and no --takeover both start normally, past a stale handover socket', async (t) => {
  const { dir, stateDir } = tempDir();
  const fresh = await RestartableAgent.start(reaper, dir, stateDir, ['--takeover', 'if-serving']);
  const { process: sleeper } = await fresh.client.spawn({ argv: ['sleep', '60'] });
  await fresh.crash();
  t.true(existsSync(join(stateDir, HANDOVER_SOCKET)), 'the crashed agent left a stale socket');

  let agent: RestartableAgent | undefined;
  for (const args of [['--takeover', 'if-serving'], []]) {
    await agent?.crash();
    agent = await RestartableAgent.start(reaper, dir, stateDir, args);
    const { process: p } = await agent.client.get({ handle: sleeper!.handle });
    t.is(p!.state, State.STATE_RUNNING, `${args.join(' ') || 'no --takeover'}: re-adopted from the store`);
  }
  await agent!.client.signal({ handle: sleeper!.handle, signal: 'SIGKILL' });
  await agent!.stop();
});

test.serial('--takeover without a value is an error that names both values', async (t) => {
  const { stateDir, address } = tempDir();
  for (const args of [['--takeover'], ['--takeover', '--ephemeral']]) {
    const run = await runToEnd(address, stateDir, args);
    t.is(run.ended, 'exit 2');
    t.regex(run.stderr, /^pidfd-agent: --takeover: needs a value: --takeover if-serving \(.*\) or --takeover required \(.*\)$/m);
  }
});
