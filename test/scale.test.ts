import test from 'ava';
import { EventType, type Event } from '../clients/ts/src/index.js';
import { openFdCount } from '../src/kernel/fd.js';
import { collect, pool, range } from './helpers/events.js';
import { eventually, procState, sleep, startHarness, type Harness } from './helpers/harness.js';

// Heavy scenarios run one at a time so they don't compete for the two cores.
let h: Harness;
test.before(async () => {
  h = await startHarness({ retentionMax: 5000 });
});
test.after.always(async () => {
  await h?.close();
});

test.serial('1,000 sleeping processes killed at once are each reported exactly once', async (t) => {
  const labels = { batch: 'kill-1000' };
  const spawned = await pool(range(1000), 16, async () => (await h.client.spawn({ argv: ['sleep', '1000'], labels })).process!);
  t.is(new Set(spawned.map((p) => p.handle)).size, 1000);
  t.is(h.agent.manager.stats().running >= 1000, true);
  const { sequence } = await h.client.list({ labels });
  const exitedOf = (events: Event[]) => events.filter((e) => e.type === EventType.EVENT_TYPE_EXITED);
  const watching = collect(h.client, { labels, afterSequence: sequence }, (ev) => exitedOf(ev).length >= 1000, 60_000);
  await Promise.all(spawned.map((p) => h.client.signal({ handle: p.handle, signal: 'KILL' })));
  const exits = exitedOf(await watching);
  const byHandle = new Map<string, number>();
  for (const e of exits) byHandle.set(e.process!.handle, (byHandle.get(e.process!.handle) ?? 0) + 1);
  t.is(byHandle.size, 1000);
  t.true([...byHandle.values()].every((n) => n === 1), 'no exit reported twice');
  t.true(exits.every((e) => e.process!.exit!.signal === 9));
  // Nothing more arrives for them afterwards.
  await sleep(300);
  const { sequence: after } = await h.client.list({ labels });
  const later = await collect(h.client, { labels, afterSequence: sequence }, (ev) => ev.length >= after - sequence || ev.length >= 1000);
  t.is(exitedOf(later).length, 1000);
  const waits = await pool(spawned, 32, (p) => h.client.wait({ handle: p.handle }));
  t.true(waits.every((w) => w.process!.exit!.signal === 9));
  t.true(spawned.every((p) => procState(p.pid) === undefined), 'all reaped: no zombies');
});

test.serial("the agent's open-fd count returns to its baseline after 2,000 spawn/exit cycles", async (t) => {
  // Warm up: the first calls open the client connection and lazily allocated descriptors.
  await pool(range(50), 16, async () => h.client.wait({ handle: (await h.client.spawn({ argv: ['true'] })).process!.handle }));
  await sleep(100);
  const baseline = openFdCount();
  let peak = baseline;
  await pool(range(2000), 16, async (i) => {
    const argv = i % 2 === 0 ? ['true'] : ['sh', '-c', 'exit 1'];
    const { process: p } = await h.client.spawn({ argv, stdout: i % 3 === 0 ? { mode: 2, path: '/dev/null' } : undefined });
    peak = Math.max(peak, openFdCount());
    await h.client.wait({ handle: p!.handle });
  });
  await eventually('fds back to baseline', () => openFdCount() <= baseline, 5000).catch(() => undefined);
  t.log(`baseline ${baseline} fds, peak ${peak}, after ${openFdCount()}`);
  t.true(peak > baseline, 'pidfds were really opened during the run');
  t.is(openFdCount(), baseline);
});
