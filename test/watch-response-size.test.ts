// Events that come fast are coalesced into one WatchResponse, and each SPAWNED event carries its
// argv (up to 1 MiB with env). Coalesced by count alone, a burst of processes with long command
// lines (concurrent Spawns of JVMs with their class paths) made a response past gRPC's 4 MiB: the
// stream ended RESOURCE_EXHAUSTED, and every resume from a cursor before the burst replayed the
// same response and failed again, until the events left the ring.
import test from 'ava';
import { EventType, type Event } from '../clients/ts/src/index.js';
import { startHarness } from './helpers/harness.js';

/** About 900 KB of command line: below the 1 MiB a Spawn may carry, five of them above 4 MiB. */
const argv = ['sh', '-c', 'exit 0', ...Array<string>(9).fill('x'.repeat(100_000))];
const BURST = 6;

async function spawnedSeen(watch: AsyncIterable<Event>, want: number): Promise<string[]> {
  const seen = new Set<string>();
  for await (const e of watch) {
    if (e.type === EventType.EVENT_TYPE_SPAWNED) seen.add(e.process!.handle);
    if (seen.size === want) break;
  }
  return [...seen].sort();
}

test('a burst of spawns with long command lines reaches a live watcher and a replay, each response within the message limit', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const { sequence } = await h.client.list({});
  const live = spawnedSeen(h.client.watch({ afterSequence: sequence }), BURST);
  // Concurrent Spawns (a SpawnBatch request this size would pass 4 MiB itself): committed and
  // announced together by the group commit.
  const spawned = await Promise.all(Array.from({ length: BURST }, () => h.client.spawn({ argv })));
  const handles = spawned.map((r) => r.process!.handle).sort();
  t.is(new Set(handles).size, BURST);
  t.deepEqual(await live, handles, 'the live watcher saw every spawn');
  // A resume from before the burst: the replay coalesces all of it at once.
  t.deepEqual(await spawnedSeen(h.client.watch({ afterSequence: sequence }), BURST), handles, 'the replay has every spawn');
});

test('usage samples of running processes with long command lines reach the watcher, each response within the message limit', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const running = ['sh', '-c', 'exec sleep 600', ...argv.slice(3)];
  const handles = (await Promise.all(Array.from({ length: BURST }, () => h.client.spawn({ argv: running })))).map((r) => r.process!.handle).sort();
  t.teardown(async () => {
    for (const handle of handles) await h.client.signal({ handle, signal: 'KILL' });
  });
  const sampled = new Set<string>();
  for await (const e of h.client.watch({ usageInterval: { seconds: 1, nanos: 0 } })) {
    if (e.type === EventType.EVENT_TYPE_USAGE) sampled.add(e.process!.handle);
    if (sampled.size === BURST) break;
  }
  t.deepEqual([...sampled].sort(), handles, 'one sample of each');
});
