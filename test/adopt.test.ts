import { spawn } from 'node:child_process';
import { once } from 'node:events';
import test from 'ava';
import { AgentCallError, EventType, State, status } from '../clients/ts/src/index.js';
import { openFdCount } from '../src/kernel/fd.js';
import { collect } from './helpers/events.js';
import { startHarness, type Harness } from './helpers/harness.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

test.serial('Adopt takes a process the agent did not start and reports its exit code', async (t) => {
  // Started by Node (libuv reaps it): the agent is not its parent and learns the exit from the pidfd.
  const child = spawn('sh', ['-c', 'read line; exit 7'], { stdio: ['pipe', 'ignore', 'ignore'] });
  const nodeSawExit = once(child, 'exit');
  const { process: p } = await h.client.adopt({ pid: child.pid!, labels: { origin: 'outside' } });
  t.true(p!.adopted);
  t.is(p!.state, State.STATE_RUNNING);
  t.deepEqual(p!.argv, ['sh', '-c', 'read line; exit 7']);
  const watching = collect(h.client, { handles: [p!.handle], afterSequence: 0 }, (ev) => ev.some((e) => e.type === EventType.EVENT_TYPE_EXITED));
  child.stdin!.end('go\n');
  const { process: done } = await h.client.wait({ handle: p!.handle });
  t.is(done!.exit!.code, 7);
  t.is(done!.exit!.rusage, undefined, 'no rusage for a process we did not reap');
  const [code] = await nodeSawExit;
  t.is(code, 7, "Node's own bookkeeping of its child is undisturbed");
  t.deepEqual((await watching).map((e) => e.type), [EventType.EVENT_TYPE_ADOPTED, EventType.EVENT_TYPE_EXITED]);
});

test.serial('an adopted process is signalled through its pidfd', async (t) => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  const { process: p } = await h.client.adopt({ pid: child.pid! });
  await h.client.signal({ handle: p!.handle, signal: 'SIGUSR1' });
  const { process: done } = await h.client.wait({ handle: p!.handle });
  t.is(done!.exit!.signal, 10);
  t.is(done!.exit!.signalName, 'SIGUSR1');
});

test.serial('Adopt refuses what it cannot or must not take, leaving no fd behind', async (t) => {
  const before = openFdCount();
  const noSuch = await t.throwsAsync(h.client.adopt({ pid: 4_000_000 }), { instanceOf: AgentCallError });
  t.is(noSuch.code, status.NOT_FOUND);
  t.is(noSuch.reason, 'ESRCH');
  const bad = await t.throwsAsync(h.client.adopt({ pid: -1 }), { instanceOf: AgentCallError });
  t.is(bad.code, status.INVALID_ARGUMENT);
  t.is(bad.info['field'], 'pid');
  const self = await t.throwsAsync(h.client.adopt({ pid: process.pid }), { instanceOf: AgentCallError });
  t.is(self.code, status.INVALID_ARGUMENT);
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  const twice = await t.throwsAsync(h.client.adopt({ pid: p!.pid }), { instanceOf: AgentCallError });
  t.is(twice.code, status.ALREADY_EXISTS);
  t.is(twice.info['handle'], p!.handle);
  await h.client.signal({ handle: p!.handle, signal: 'KILL' });
  await h.client.wait({ handle: p!.handle });
  t.is(openFdCount(), before);
});

test.serial('an adopted command line is kept only as long as a Spawn may carry, so a Watch over its event still fits a response', async (t) => {
  // 14 arguments of 64,000 × "ÿ" (two bytes each): 1.8 MB of command line, which read as latin1
  // and sent as UTF-8 is 3.6 MB; after four spawns of 100 KB the Watch response was over 4 MiB.
  const { sequence } = await h.client.list({});
  const spawned = [];
  for (let i = 0; i < 4; i++) spawned.push((await h.client.spawn({ argv: ['sh', '-c', 'sleep 30', 'x'.repeat(100_000)] })).process!.handle);
  const child = spawn('sh', ['-c', 'sleep 30; :', 'sh', ...Array.from({ length: 14 }, () => 'ÿ'.repeat(64_000))], { stdio: 'ignore' });
  const { process: p } = await h.client.adopt({ pid: child.pid! });
  const bytes = p!.argv.reduce((n, a) => n + Buffer.byteLength(a), 0);
  t.true(bytes <= 1024 * 1024, `${bytes} bytes of argv kept`);
  t.deepEqual(p!.argv.slice(0, 3), ['sh', '-c', 'sleep 30; :']);
  t.is(p!.argv.at(-1), '…', 'a cut command line says so');
  t.true(p!.argv.slice(4, -1).every((a) => a.endsWith('…') && Buffer.byteLength(a) <= 128 * 1024));
  const events = await collect(h.client, { afterSequence: sequence }, (ev) => ev.some((e) => e.type === EventType.EVENT_TYPE_ADOPTED));
  t.is(events.filter((e) => e.type === EventType.EVENT_TYPE_SPAWNED).length, 4);
  for (const handle of [...spawned, p!.handle]) {
    await h.client.signal({ handle, signal: 'KILL' });
    await h.client.wait({ handle });
  }
});

test.serial('an adopted command line of many empty arguments is kept to 4,096 of them, as a Spawn may carry', async (t) => {
  // Empty arguments weigh nothing by their bytes, but two bytes each in a message.
  const child = spawn('sh', ['-c', 'sleep 30; :', 'sh', ...Array.from({ length: 100_000 }, () => '')], { stdio: 'ignore' });
  const { process: p } = await h.client.adopt({ pid: child.pid! });
  t.is(p!.argv.length, 4096);
  t.is(p!.argv.at(-1), '…');
  await h.client.signal({ handle: p!.handle, signal: 'KILL' });
  await h.client.wait({ handle: p!.handle });
});

test.serial('Release of an adopted process closes its pidfd and leaves the process running', async (t) => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  const before = openFdCount();
  const { process: p } = await h.client.adopt({ pid: child.pid! });
  t.is(openFdCount(), before + 1);
  await h.client.release({ handle: p!.handle });
  t.is(openFdCount(), before);
  t.is(child.exitCode, null);
  child.kill('SIGKILL');
  await once(child, 'exit');
});
