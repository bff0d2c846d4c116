import test from 'ava';
import { AgentCallError, EventType, status, type Event } from '../clients/ts/src/index.js';
import { collect, pool, range } from './helpers/events.js';
import { eventually, startHarness, type Harness } from './helpers/harness.js';
import { stalledWatch } from './helpers/stalled-watch.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

const runBatch = async (label: string, n: number) =>
  pool(range(n), 8, async (i) => {
    const { process: p } = await h.client.spawn({ argv: ['sh', '-c', `exit ${i % 7}`], labels: { batch: label } });
    return (await h.client.wait({ handle: p!.handle })).process!;
  });

const summary = (events: Event[]) => events.map((e) => `${e.sequence}:${e.type}:${e.process!.handle}`);

test('two watchers see the same events in the same order, each spawn before its exit', async (t) => {
  const labels = { batch: 'two-watchers' };
  const { sequence } = await h.client.list();
  const done = (events: Event[]) => events.filter((e) => e.type === EventType.EVENT_TYPE_EXITED).length === 20;
  const a = collect(h.client, { labels, afterSequence: sequence }, done);
  const b = collect(h.client, { labels, afterSequence: sequence }, done);
  const exits = await runBatch('two-watchers', 20);
  const [ea, eb] = await Promise.all([a, b]);
  t.deepEqual(summary(ea), summary(eb));
  t.is(ea.length, 40);
  for (let i = 1; i < ea.length; i++) t.true(ea[i]!.sequence > ea[i - 1]!.sequence);
  for (const p of exits) {
    const mine = ea.filter((e) => e.process!.handle === p.handle).map((e) => e.type);
    t.deepEqual(mine, [EventType.EVENT_TYPE_SPAWNED, EventType.EVENT_TYPE_EXITED]);
    t.is(ea.find((e) => e.process!.handle === p.handle && e.type === EventType.EVENT_TYPE_EXITED)!.process!.exit!.code, p.exit!.code);
  }
});

test('a watcher that reconnects with its last sequence misses nothing', async (t) => {
  const labels = { batch: 'reconnect' };
  const { sequence: start } = await h.client.list();
  const work = runBatch('reconnect', 30);
  const seen: Event[] = [];
  let cursor = start;
  // Disconnect after every few events while the work goes on, then resume from the cursor.
  while (seen.filter((e) => e.type === EventType.EVENT_TYPE_EXITED).length < 30) {
    const got = await collect(h.client, { labels, afterSequence: cursor }, (ev) => ev.length >= 7 || seen.length + ev.length >= 60, 20_000);
    seen.push(...got);
    cursor = got[got.length - 1]!.sequence;
  }
  await work;
  t.is(seen.length, 60);
  t.is(new Set(seen.map((e) => e.sequence)).size, 60, 'no event twice');
  const all = await collect(h.client, { labels, afterSequence: start }, (ev) => ev.length >= 60);
  t.deepEqual(summary(seen), summary(all), 'the same events as one uninterrupted replay');
});

test('without labels, sequences are contiguous: every event is delivered', async (t) => {
  const { sequence: start } = await h.client.list();
  const work = runBatch('contiguous', 10);
  await work;
  const { sequence: end } = await h.client.list();
  const events = await collect(h.client, { afterSequence: start }, (ev) => ev.length >= end - start);
  t.deepEqual(events.map((e) => e.sequence), range(end - start).map((i) => start + 1 + i));
});

test('a watch filtered by handle sees only that process', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '0.2'], labels: { batch: 'by-handle' } });
  const events = await collect(h.client, { handles: [p!.handle], afterSequence: 0 }, (ev) => ev.some((e) => e.type === EventType.EVENT_TYPE_EXITED));
  t.true(events.every((e) => e.process!.handle === p!.handle));
  t.deepEqual(events.map((e) => e.type), [EventType.EVENT_TYPE_SPAWNED, EventType.EVENT_TYPE_EXITED]);
});

test('a cursor that fell out of the replay ring is OUT_OF_RANGE; a future cursor too', async (t) => {
  const small = await startHarness({ eventRing: 16, watchBacklog: 15 });
  t.teardown(() => small.close());
  for (let i = 0; i < 12; i++) await small.client.wait({ handle: (await small.client.spawn({ argv: ['true'] })).process!.handle });
  const consume = async (after: number) => {
    for await (const _ of small.client.watch({ afterSequence: after })) break;
  };
  const e = await t.throwsAsync(consume(1), { instanceOf: AgentCallError });
  t.is(e.code, status.OUT_OF_RANGE);
  t.is(e.reason, 'CURSOR_EXPIRED');
  const { sequence } = await small.client.list();
  const future = await t.throwsAsync(consume(sequence + 5), { instanceOf: AgentCallError });
  t.is(future.code, status.OUT_OF_RANGE);
  const ok = await collect(small.client, { afterSequence: sequence - 10 }, (ev) => ev.length === 10);
  t.is(ok[0]!.sequence, sequence - 9);
});

test('a watcher that stops reading is dropped with RESOURCE_EXHAUSTED; memory stays bounded and others keep receiving', async (t) => {
  const backlog = 500;
  const small = await startHarness({ eventRing: 8192, watchBacklog: backlog });
  t.teardown(() => small.close());
  const { sequence: start } = await small.client.list();
  const stalled = stalledWatch(small.address.slice('unix://'.length), { afterSequence: start });
  t.teardown(() => stalled.close());
  const cycles = 3000;
  const reader = collect(small.client, { afterSequence: start }, (ev) => ev.length >= cycles * 2, 120_000);
  let maxBuffered = 0;
  await pool(range(cycles), 16, async () => {
    const { process: p } = await small.client.spawn({ argv: ['true'] });
    await small.client.wait({ handle: p!.handle });
    for (const w of small.agent.watchers.stats()) maxBuffered = Math.max(maxBuffered, w.buffered);
  });
  const received = await reader;
  t.is(received.length, cycles * 2, 'the reading watcher got every event');
  t.deepEqual(received.map((e) => e.sequence), range(cycles * 2).map((i) => start + 1 + i));
  await eventually('the stalled watcher to be dropped', () => small.agent.watchers.stats().length === 0);
  t.true(maxBuffered <= 64, `server-side buffer per watcher stayed small (max ${maxBuffered} responses)`);
  stalled.resume();
  t.is(await stalled.status, status.RESOURCE_EXHAUSTED, 'once it reads again, it learns it was dropped');
});

test("a blocked watcher is dropped for what it would be sent, not for other owners' events", async (t) => {
  const backlog = 300;
  const small = await startHarness({ eventRing: 16384, watchBacklog: backlog });
  t.teardown(() => small.close());
  const { sequence: start } = await small.client.list();
  const stalled = stalledWatch(small.address.slice('unix://'.length), { afterSequence: start, labels: { team: 'b' } });
  t.teardown(() => stalled.close());
  const cycles = (n: number, labels: Record<string, string>) =>
    pool(range(n), 16, async () => {
      const { process: p } = await small.client.spawn({ argv: ['true'], labels });
      await small.client.wait({ handle: p!.handle });
    });
  // Its own events until its transport takes no more: blocked, within its backlog.
  for (let i = 0; i < 40 && (small.agent.watchers.stats()[0]?.buffered ?? 0) < 17; i++) await cycles(100, { team: 'b' });
  t.true(small.agent.watchers.stats()[0]!.buffered >= 17, 'blocked');
  // Another team's 2,000 events: far more than its backlog behind in all, none it would be sent.
  await cycles(1000, { team: 'a' });
  t.true(small.agent.watchers.stats()[0]!.behind > backlog);
  t.is(small.agent.watchers.stats().length, 1, 'still open');
  // Its own events past the backlog drop it.
  await cycles(backlog, { team: 'b' });
  await eventually('the stalled watcher to be dropped', () => small.agent.watchers.stats().length === 0);
  stalled.resume();
  t.is(await stalled.status, status.RESOURCE_EXHAUSTED);
});
