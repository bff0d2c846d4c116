import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { AgentCallError, SignalTarget, State, status } from '../clients/ts/src/index.js';
import { eventually, procState, startHarness, type Harness, tempDir } from './helpers/harness.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

const ms = (n: number) => ({ seconds: Math.floor(n / 1000), nanos: (n % 1000) * 1e6 });

test('Stop ends a process that honours SIGTERM without escalating', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  const res = await h.client.stop({ handle: p!.handle, grace: ms(5000) });
  t.false(res.escalated);
  t.is(res.process!.exit!.signal, 15);
});

test('Stop escalates to SIGKILL after the grace period when SIGTERM is ignored', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'trap "" TERM; sleep 30 & wait; sleep 30'] });
  await eventually('the trap to be set', () => procState(p!.pid) === 'S');
  await new Promise((r) => setTimeout(r, 100));
  const started = Date.now();
  const res = await h.client.stop({ handle: p!.handle, grace: ms(300) });
  t.true(res.escalated);
  t.is(res.process!.exit!.signal, 9);
  t.is(res.process!.exit!.signalName, 'SIGKILL');
  t.true(Date.now() - started >= 300, 'the grace period was given');
});

test('Stop with process_group reaches every member of the group, with SIGKILL when SIGTERM is ignored', async (t) => {
  const out = join(tempDir('pidfd-agent-stop-'), 'member.pid');
  // SIG_IGN survives exec, so the background member ignores SIGTERM too.
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', `trap "" TERM; sleep 30 & echo $! > ${out}; wait`] });
  const member = await eventually('the member to start', () => {
    const text = existsSync(out) ? readFileSync(out, 'utf8').trim() : '';
    return text !== '' && Number(text);
  });
  await eventually('the member to sleep', () => procState(member) === 'S');
  const res = await h.client.stop({ handle: p!.handle, grace: ms(200), processGroup: true });
  t.true(res.escalated);
  t.is(res.process!.exit!.signal, 9);
  // Observed through /proc by the test only: the member (reparented, then reaped by init) is gone.
  await eventually('the group member to be gone', () => procState(member) === undefined || procState(member) === 'Z');
  t.pass();
});

test('Stop of an exited process returns its exit; of an unknown handle NOT_FOUND', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'exit 2'] });
  await h.client.wait({ handle: p!.handle });
  const res = await h.client.stop({ handle: p!.handle });
  t.false(res.escalated);
  t.is(res.process!.exit!.code, 2);
  t.is(res.process!.state, State.STATE_EXITED);
  const e = await t.throwsAsync(h.client.stop({ handle: 'nosuchhandle' }), { instanceOf: AgentCallError });
  t.is(e.code, status.NOT_FOUND);
});

test('a group signal to a process that moved to another group is refused NOT_GROUP_LEADER, and nothing is sent', async (t) => {
  // Only without a session of its own can a process leave its group: here into the agent's (this
  // process's), where a signal to "the group it is in" would reach the agent.
  const pgid = (pid: number | 'self') => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]);
  const { process: p } = await h.client.spawn({ argv: ['perl', '-e', 'setpgrp(0, getpgrp(getppid())) or die; sleep 30'], newSession: false });
  t.teardown(() => h.client.signal({ handle: p!.handle, signal: 'SIGKILL' }).catch(() => {}));
  await eventually('the process in the agent\'s group', () => pgid(p!.pid) === pgid('self'));
  const refused = await t.throwsAsync<AgentCallError>(h.client.signal({ handle: p!.handle, signal: 'SIGTERM', target: SignalTarget.SIGNAL_TARGET_PROCESS_GROUP }));
  t.like(refused, { code: status.FAILED_PRECONDITION, reason: 'NOT_GROUP_LEADER' });
  const stop = await t.throwsAsync<AgentCallError>(h.client.stop({ handle: p!.handle, grace: ms(100), processGroup: true }));
  t.like(stop, { code: status.FAILED_PRECONDITION, reason: 'NOT_GROUP_LEADER' });
  t.is((await h.client.get({ handle: p!.handle })).process?.state, State.STATE_RUNNING, 'nothing reached it');
});
