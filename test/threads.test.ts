import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { AgentCallError, EventType, SignalTarget, State, status } from '../clients/ts/src/index.js';
import { ROOT } from './helpers/agent-process.js';
import { collect } from './helpers/events.js';
import { eventually, procState, sleep, startHarness, type Harness, tempDir } from './helpers/harness.js';

let h: Harness;
let threads: string;
let dir: string;
test.before(async () => {
  dir = tempDir('pidfd-agent-threads-');
  threads = join(dir, 'threads');
  execFileSync('gcc', ['-O2', '-pthread', '-o', threads, join(ROOT, 'test/fixtures/threads.c')]);
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);

async function reporter(name: string, extraThreads: number) {
  const out = join(dir, `${name}.out`);
  const { process: p } = await h.client.spawn({ argv: [threads, 'report', String(extraThreads)], stdout: { mode: 2, path: out } });
  const tids = await eventually('every thread to report', () => {
    const t = lines(out).filter((l) => l.startsWith('tid ')).map((l) => Number(l.slice(4)));
    return t.length === extraThreads + 1 && t;
  });
  return { p: p!, out, tids };
}

test('ListThreads returns the tids of the process, leader first', async (t) => {
  const { p, tids } = await reporter('list', 3);
  const listed = (await h.client.listThreads({ handle: p.handle })).tids;
  t.is(listed[0], p.pid);
  t.deepEqual([...listed].sort(), [...tids].sort());
  await h.client.signal({ handle: p.handle, signal: 'KILL' });
  await h.client.wait({ handle: p.handle });
  const e = await t.throwsAsync(h.client.listThreads({ handle: p.handle }), { instanceOf: AgentCallError });
  t.is(e.code, status.FAILED_PRECONDITION);
});

test('a signal to one thread is received by that thread', async (t) => {
  const { p, out, tids } = await reporter('one', 3);
  for (const tid of tids.filter((x) => x !== p.pid)) {
    await h.client.signal({ handle: p.handle, signal: 'USR1', target: SignalTarget.SIGNAL_TARGET_THREAD, tid });
    await eventually(`thread ${tid} to report the signal`, () => lines(out).includes(`got ${tid}`));
  }
  t.deepEqual(lines(out).filter((l) => l.startsWith('got ')).sort(), tids.filter((x) => x !== p.pid).map((x) => `got ${x}`).sort());
  await h.client.signal({ handle: p.handle, signal: 'KILL' });
  await h.client.wait({ handle: p.handle });
});

test('a tid that is not a thread of the process is refused and nobody is signalled', async (t) => {
  const a = await reporter('a', 1);
  const b = await reporter('b', 1);
  const foreign = b.tids.find((x) => x !== b.p.pid)!;
  const e = await t.throwsAsync(h.client.signal({ handle: a.p.handle, signal: 'USR1', target: SignalTarget.SIGNAL_TARGET_THREAD, tid: foreign }), { instanceOf: AgentCallError });
  t.is(e.code, status.NOT_FOUND);
  t.is(e.reason, 'NOT_A_THREAD');
  const gone = await t.throwsAsync(h.client.signal({ handle: a.p.handle, signal: 'USR1', target: SignalTarget.SIGNAL_TARGET_THREAD, tid: 4_000_000 }), { instanceOf: AgentCallError });
  t.is(gone.code, status.NOT_FOUND);
  const bad = await t.throwsAsync(h.client.signal({ handle: a.p.handle, signal: 'USR1', target: SignalTarget.SIGNAL_TARGET_THREAD }), { instanceOf: AgentCallError });
  t.is(bad.code, status.INVALID_ARGUMENT);
  t.is(bad.info['field'], 'tid');
  await sleep(100);
  t.false(lines(b.out).some((l) => l.startsWith('got ')), 'the other process received nothing');
  t.false(lines(a.out).some((l) => l.startsWith('got ')));
  for (const x of [a, b]) {
    await h.client.signal({ handle: x.p.handle, signal: 'KILL' });
    await h.client.wait({ handle: x.p.handle });
  }
});

test('when the leader exits first, the handle stays RUNNING until the last thread ends, then one exit', async (t) => {
  const { sequence } = await h.client.list();
  const { process: p } = await h.client.spawn({ argv: [threads, 'leader-exit', '600', '7'] });
  await eventually('the leader to be a zombie', () => procState(p!.pid) === 'Z');
  await sleep(100);
  t.is((await h.client.get({ handle: p!.handle })).process!.state, State.STATE_RUNNING);
  t.is((await h.client.listThreads({ handle: p!.handle })).tids.length, 2, 'the leader and the live thread');
  const { process: done } = await h.client.wait({ handle: p!.handle });
  t.is(done!.exit!.code, 7);
  const events = await collect(h.client, { handles: [p!.handle], afterSequence: sequence }, (ev) => ev.length >= 2);
  t.deepEqual(events.map((e) => e.type), [EventType.EVENT_TYPE_SPAWNED, EventType.EVENT_TYPE_EXITED]);
  await sleep(100);
  const log = h.agent.watchers.log;
  let exits = 0;
  for (const e of log.held()) if (e.sequence > sequence && e.handle === p!.handle && e.type === 'exited') exits++;
  t.is(exits, 1, 'exactly one exit event');
});
