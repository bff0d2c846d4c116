// Kill and reclaim: SIGKILL, then process_mrelease on the pidfd; the reply and the exit carry the
// time from the kill to the memory freed.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { AgentCallError, EventType, SignalTarget, status, type Event } from '../clients/ts/src/index.js';
import { ROOT } from './helpers/agent-process.js';
import { eventually, startHarness, tempDir, type Harness } from './helpers/harness.js';

const GIB = 1 << 30;
let h: Harness;
let hog: string;
test.before(async () => {
  hog = join(tempDir('pidfd-agent-reclaim-'), 'hog');
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', hog, join(ROOT, 'test/fixtures/hog.c')]);
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

/** RssAnon of a pid in bytes from /proc (the test's own view); 0 once the process has no memory left to show. */
function rssAnon(pid: number): number {
  try {
    const m = /^RssAnon:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
const asMs = (d: { seconds: number; nanos: number }) => d.seconds * 1000 + d.nanos / 1e6;

test.serial('Signal with reclaim_memory frees a 1 GiB process at once; the reply and the exit event say how long it took', async (t) => {
  const { process: p } = await h.client.spawn({ argv: [hog, '1024'] });
  await eventually('1 GiB to be touched', () => rssAnon(p!.pid) >= GIB, 60_000);
  const events: Event[] = [];
  const abort = new AbortController();
  const watching = (async () => {
    try {
      for await (const e of h.client.watch({ handles: [p!.handle] }, { signal: abort.signal })) {
        events.push(e);
        if (e.type === EventType.EVENT_TYPE_EXITED) break;
      }
    } catch {
      // cancelled
    }
  })();
  await eventually('the watch to be open', async () => (await h.client.get({ handle: p!.handle })).process !== undefined);
  const res = await h.client.signal({ handle: p!.handle, reclaimMemory: true });
  // Read at once: the reply came after process_mrelease (or the exit) gave the memory back.
  const left = rssAnon(p!.pid);
  t.log(`reclaim took ${asMs(res.reclaimTime!).toFixed(1)} ms; RssAnon left ${left} bytes`);
  t.is(res.signalName, 'SIGKILL');
  t.truthy(res.reclaimTime);
  t.true(left < GIB / 64, `the process holds ${left} bytes after the reply`);
  const { process: exited } = await h.client.wait({ handle: p!.handle });
  t.is(exited!.exit!.signal, 9);
  t.deepEqual(exited!.exit!.reclaimTime, res.reclaimTime, 'the exit carries the same time');
  await eventually('the exit event', () => events.some((e) => e.type === EventType.EVENT_TYPE_EXITED));
  abort.abort();
  await watching;
  t.deepEqual(events.find((e) => e.type === EventType.EVENT_TYPE_EXITED)!.process!.exit!.reclaimTime, res.reclaimTime, 'so does the exit event');
});

test.serial('Stop with reclaim_memory and SIGKILL reports the reclaim time', async (t) => {
  const { process: p } = await h.client.spawn({ argv: [hog, '64'] });
  await eventually('64 MiB to be touched', () => rssAnon(p!.pid) >= 64 << 20);
  const res = await h.client.stop({ handle: p!.handle, signal: 'KILL', reclaimMemory: true });
  t.is(res.process!.exit!.signal, 9);
  t.truthy(res.reclaimTime);
  t.deepEqual(res.process!.exit!.reclaimTime, res.reclaimTime);
});

test.serial('reclaim_memory is refused with another signal, for a tree or a thread, and with Stop tree or process_group', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  for (const req of [
    { signal: 'TERM' },
    { target: SignalTarget.SIGNAL_TARGET_TREE },
    { target: SignalTarget.SIGNAL_TARGET_THREAD, tid: p!.pid },
  ]) {
    const e = await t.throwsAsync(h.client.signal({ handle: p!.handle, reclaimMemory: true, ...req }), { instanceOf: AgentCallError });
    t.is(e.code, status.INVALID_ARGUMENT, JSON.stringify(req));
  }
  for (const scope of [{ tree: true }, { processGroup: true }]) {
    const e = await t.throwsAsync(h.client.stop({ handle: p!.handle, reclaimMemory: true, ...scope }), { instanceOf: AgentCallError });
    t.is(e.code, status.INVALID_ARGUMENT, JSON.stringify(scope));
  }
  const { process: still } = await h.client.get({ handle: p!.handle });
  t.falsy(still!.exit, 'nothing was sent');
  await h.client.stop({ handle: p!.handle });
});

test.serial('reclaim_memory of an exited process: FAILED_PRECONDITION, nothing sent', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['true'] });
  await h.client.wait({ handle: p!.handle });
  const e = await t.throwsAsync(h.client.signal({ handle: p!.handle, reclaimMemory: true }), { instanceOf: AgentCallError });
  t.is(e.code, status.FAILED_PRECONDITION);
  t.is(e.reason, 'PROCESS_EXITED');
});

test('a wait whose cancel came before it began (a Stop cancelled during its reclaim) ends at once as CANCELLED, not at the exit', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  t.teardown(() => h.client.stop({ handle: p!.handle, signal: 'KILL' }).then(() => undefined));
  // stopReclaiming awaits the reclaim without the signal, then waits with it: an abort in between
  // fired no listener, and the Stop (and its max_waits slot) lasted until the exit.
  const waited = h.agent.manager.wait(p!.handle, undefined, AbortSignal.abort());
  const outcome = await Promise.race([waited.then(() => 'exit', (e: unknown) => e), new Promise((r) => setTimeout(r, 1000, 'still waiting 1 s later'))]);
  t.like(outcome, { kind: 'DeadlineExceeded', detail: { reason: 'CANCELLED', handle: p!.handle } });
});
