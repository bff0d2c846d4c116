// Events are encoded once, when they happen, and every watcher is sent the same bytes; the ring
// keeps them encoded, so a watcher replaying a ring full of released processes still gets each
// event whole, exactly once.
import test from 'ava';
import { Client, credentials, Metadata } from '@grpc/grpc-js';
import { EventType, State, type Event } from '../clients/ts/src/index.js';
import { WatchRequest, WatchResponse } from '../src/api.js';
import { collect, pool, range } from './helpers/events.js';
import { startHarness, type Harness } from './helpers/harness.js';

const RING = 256;
let h: Harness;
test.before(async () => {
  h = await startHarness({ eventRing: RING });
});
test.after.always(async () => {
  await h?.close();
});

/** spawn, wait, release: three events each. */
const churn = (label: string, n: number) =>
  pool(range(n), 8, async (i) => {
    const { process: p } = await h.client.spawn({ argv: ['sh', '-c', `exit ${i % 5}`], labels: { batch: label } });
    await h.client.wait({ handle: p!.handle });
    await h.client.release({ handle: p!.handle });
    return { handle: p!.handle, code: i % 5 };
  });

/** The bytes of a Watch's responses as they came over the wire, until `events` events came. */
async function rawWatch(request: WatchRequest, events: number): Promise<Buffer> {
  const client = new Client(h.address, credentials.createInsecure());
  try {
    const stream = client.makeServerStreamRequest('/pidfd.agent.v1.AgentService/Watch', (r: WatchRequest) => Buffer.from(WatchRequest.encode(r).finish()), (b: Buffer) => b, request, new Metadata());
    const chunks: Buffer[] = [];
    let seen = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      seen += WatchResponse.decode(chunk).events.length;
      if (seen >= events) break;
    }
    stream.cancel();
    return Buffer.concat(chunks);
  } finally {
    client.close();
  }
}

test('two watchers are sent byte-identical events, and the bytes decode to the full events', async (t) => {
  const { sequence } = await h.client.list();
  const request = WatchRequest.fromPartial({ labels: { batch: 'bytes' }, afterSequence: sequence });
  const a = rawWatch(request, 30);
  const b = rawWatch(request, 30);
  const done = await churn('bytes', 10);
  const [ba, bb] = await Promise.all([a, b]);
  // Responses may group events differently; a response is only its events' bytes, so the streams' concatenations compare.
  t.true(ba.equals(bb), 'the same bytes');
  const events = WatchResponse.decode(ba).events;
  t.is(events.length, 30);
  for (const { handle, code } of done) {
    const mine = events.filter((e) => e.process!.handle === handle);
    t.deepEqual(mine.map((e) => e.type), [EventType.EVENT_TYPE_SPAWNED, EventType.EVENT_TYPE_EXITED, EventType.EVENT_TYPE_RELEASED]);
    t.deepEqual(mine.map((e) => e.process!.state), [State.STATE_RUNNING, State.STATE_EXITED, State.STATE_RELEASED]);
    t.deepEqual(mine.map((e) => e.process!.exit?.code), [undefined, code, code]);
    for (const e of mine) {
      t.deepEqual(e.process!.argv, ['sh', '-c', `exit ${code}`]);
      t.deepEqual(e.process!.labels, { batch: 'bytes' });
      t.true(e.time!.getTime() > 0 && e.process!.startedAt!.getTime() > 0 && e.process!.pid > 0);
    }
  }
});

test('a watcher resuming after_sequence across a ring full of released processes gets every event exactly once', async (t) => {
  const { sequence: start } = await h.client.list();
  const first = await churn('resume', 60); // 180 events: most of the ring, every process released
  const upTo = await collect(h.client, { labels: { batch: 'resume' }, afterSequence: start }, (ev) => ev.length >= 90);
  const cursor = upTo[upTo.length - 1]!.sequence;
  const second = await churn('resume', 40); // 120 more: the ring wraps past `start`, not past `cursor`
  const rest = await collect(h.client, { labels: { batch: 'resume' }, afterSequence: cursor }, (ev) => ev.length >= 300 - 90);
  const all: Event[] = [...upTo, ...rest];
  t.is(all.length, 300);
  t.is(new Set(all.map((e) => e.sequence)).size, 300, 'no event twice');
  for (let i = 1; i < all.length; i++) t.true(all[i]!.sequence > all[i - 1]!.sequence);
  for (const { handle, code } of [...first, ...second]) {
    const mine = all.filter((e) => e.process!.handle === handle);
    t.deepEqual(mine.map((e) => e.type), [EventType.EVENT_TYPE_SPAWNED, EventType.EVENT_TYPE_EXITED, EventType.EVENT_TYPE_RELEASED], handle);
    t.deepEqual(mine.map((e) => e.process!.exit?.code), [undefined, code, code]);
  }
  await t.throwsAsync(collect(h.client, { labels: { batch: 'resume' }, afterSequence: start }, (ev) => ev.length >= 1), { message: /CURSOR_EXPIRED|outside the retained events/ }, 'the start fell out of the ring');
});
