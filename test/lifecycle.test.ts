import test from 'ava';
import { AgentCallError, State, status } from '../clients/ts/src/index.js';
import { eventually, procState, startHarness, type Harness } from './helpers/harness.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

test('a process that exits with a code is reported with that code, rusage and timestamps', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'exit 42'], labels: { job: 'exit-code' } });
  t.is(p!.state, State.STATE_RUNNING);
  t.true(p!.pid > 0);
  t.regex(p!.handle, /^[a-z2-7]{26}$/);
  const { process: done } = await h.client.wait({ handle: p!.handle });
  t.is(done!.state, State.STATE_EXITED);
  t.is(done!.exit!.code, 42);
  t.is(done!.exit!.signal, undefined);
  t.truthy(done!.exit!.rusage);
  t.true(done!.exit!.exitedAt!.getTime() >= done!.startedAt!.getTime());
  t.deepEqual(done!.labels, { job: 'exit-code' });
  t.is(done!.owner, 'unix:uid=0', 'the owner: the caller identity, by the uid the kernel took at connect (SO_PEERCRED)');
});

test('SIGTERM ends a sleeping process and is reported as signal 15, never as 128+15', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  const sent = await h.client.signal({ handle: p!.handle, signal: 'TERM' });
  t.deepEqual({ signal: sent.signal, signalName: sent.signalName }, { signal: 15, signalName: 'SIGTERM' });
  t.is(sent.reclaimTime, undefined, 'nothing to reclaim without reclaim_memory');
  const { process: done } = await h.client.wait({ handle: p!.handle });
  t.is(done!.exit!.signal, 15);
  t.is(done!.exit!.signalName, 'SIGTERM');
  t.is(done!.exit!.code, undefined);
  t.false(done!.exit!.coreDumped);
});

test('a missing binary is NOT_FOUND naming the path and starts nothing', async (t) => {
  const labels = { test: 'missing-binary' };
  const e = await t.throwsAsync(h.client.spawn({ argv: ['/nonexistent/bin/tool', 'x'], labels }), { instanceOf: AgentCallError });
  t.is(e.code, status.NOT_FOUND);
  t.is(e.reason, 'ENOENT');
  t.is(e.info['path'], '/nonexistent/bin/tool');
  t.regex(e.details, /\/nonexistent\/bin\/tool/);
  const e2 = await t.throwsAsync(h.client.spawn({ argv: ['no-such-program-anywhere'], labels }), { instanceOf: AgentCallError });
  t.is(e2.code, status.NOT_FOUND);
  t.is(e2.info['field'], 'argv[0]');
  t.deepEqual((await h.client.list({ labels })).processes, []);
});

test('signal after exit is refused with FAILED_PRECONDITION and hurts no one', async (t) => {
  const { process: victim } = await h.client.spawn({ argv: ['true'] });
  await h.client.wait({ handle: victim!.handle });
  const { process: bystander } = await h.client.spawn({ argv: ['sleep', '30'] });
  for (const signal of ['KILL', 'TERM']) {
    const e = await t.throwsAsync(h.client.signal({ handle: victim!.handle, signal }), { instanceOf: AgentCallError });
    t.is(e.code, status.FAILED_PRECONDITION);
    t.is(e.reason, 'PROCESS_EXITED');
  }
  t.is((await h.client.get({ handle: bystander!.handle })).process!.state, State.STATE_RUNNING);
  await eventually('the bystander to sleep', () => procState(bystander!.pid) === 'S');
  await h.client.signal({ handle: bystander!.handle, signal: 'KILL' });
  t.is((await h.client.wait({ handle: bystander!.handle })).process!.exit!.signal, 9);
});

test('signal to a process that exited but whose exit is not yet collected is refused too', async (t) => {
  // Straight to the domain: from the spawn's completion to the signal below, the reaper gets no
  // turn of the event loop (only microtasks run in between).
  const manager = h.agent.manager;
  const { record } = await manager.spawn({ argv: ['/bin/sh', '-c', 'exit 5'], labels: {}, newSession: true, stdout: { kind: 'discard' }, stderr: { kind: 'discard' }, setup: { noNewPrivs: false, rlimits: [] } });
  const deadline = Date.now() + 5000;
  while (procState(record.identity.pid) !== 'Z' && Date.now() < deadline);
  t.is(procState(record.identity.pid), 'Z');
  const e = t.throws(() => manager.signal(record.handle, 9, { kind: 'process' }));
  t.is((e as { kind?: string }).kind, 'ProcessExited');
  t.is(record.state, 'exited', 'the exit was collected on the way');
  t.is(record.exit?.termination?.exitCode, 5);
});

test('a late Wait returns the retained exit', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'exit 3'] });
  await h.client.wait({ handle: p!.handle });
  await new Promise((r) => setTimeout(r, 200));
  const late = await h.client.wait({ handle: p!.handle });
  t.is(late.process!.exit!.code, 3);
  t.is((await h.client.get({ handle: p!.handle })).process!.exit!.code, 3);
});

test('Wait with a timeout on a running process is DEADLINE_EXCEEDED and the process keeps running', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  const e = await t.throwsAsync(h.client.wait({ handle: p!.handle, timeout: { seconds: 0, nanos: 50_000_000 } }), { instanceOf: AgentCallError });
  t.is(e.code, status.DEADLINE_EXCEEDED);
  t.is((await h.client.get({ handle: p!.handle })).process!.state, State.STATE_RUNNING);
  await h.client.signal({ handle: p!.handle, signal: 'KILL' });
  await h.client.wait({ handle: p!.handle });
});

test('a repeated request_id returns the first handle and starts nothing new', async (t) => {
  const first = await h.client.spawn({ argv: ['sleep', '30'], requestId: 'req-1' });
  const again = await h.client.spawn({ argv: ['sleep', '30'], requestId: 'req-1' });
  t.false(first.replayed);
  t.true(again.replayed);
  t.is(again.process!.handle, first.process!.handle);
  const e = await t.throwsAsync(h.client.spawn({ argv: ['sleep', '31'], requestId: 'req-1' }), { instanceOf: AgentCallError });
  t.is(e.code, status.INVALID_ARGUMENT);
  t.is(e.info['field'], 'request_id');
  await h.client.signal({ handle: first.process!.handle, signal: 'KILL' });
  await h.client.wait({ handle: first.process!.handle });
});

test('Release forgets the handle; a released child that exits later is reaped, not left a zombie', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '1'] });
  await h.client.release({ handle: p!.handle });
  const e = await t.throwsAsync(h.client.get({ handle: p!.handle }), { instanceOf: AgentCallError });
  t.is(e.code, status.NOT_FOUND);
  await eventually('it to sleep', () => procState(p!.pid) === 'S');
  const deadline = Date.now() + 5000;
  while (procState(p!.pid) !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.is(procState(p!.pid), undefined, 'the child was reaped after it exited');
  const e2 = await t.throwsAsync(h.client.release({ handle: p!.handle }), { instanceOf: AgentCallError });
  t.is(e2.code, status.NOT_FOUND);
});

test('a signal to the process group reaches every member', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'sleep 30 & sleep 30 & wait'] });
  const { process: q } = await h.client.spawn({ argv: ['sleep', '30'] });
  await new Promise((r) => setTimeout(r, 200));
  await h.client.signal({ handle: p!.handle, signal: 'TERM', target: 2 });
  const { process: done } = await h.client.wait({ handle: p!.handle });
  t.is(done!.exit!.signal, 15);
  t.is((await h.client.get({ handle: q!.handle })).process!.state, State.STATE_RUNNING, 'another group is untouched');
  await h.client.signal({ handle: q!.handle, signal: 'KILL' });
  await h.client.wait({ handle: q!.handle });
});

test('a Wait the client cancels ends on the agent too; later Waits still get the exit', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  const abort = new AbortController();
  const waiting = h.client.wait({ handle: p!.handle }, { signal: abort.signal });
  setTimeout(() => abort.abort(), 50);
  const e = await t.throwsAsync(waiting, { instanceOf: AgentCallError });
  t.is(e.code, status.CANCELLED);
  await h.client.signal({ handle: p!.handle, signal: 'KILL' });
  t.is((await h.client.wait({ handle: p!.handle })).process!.exit!.signal, 9);
});
