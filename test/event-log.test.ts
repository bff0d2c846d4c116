// The event log: contiguous sequence numbers, the bounded replay ring, batched notifications.
import { exited, flush, record } from './helpers/records.js';
import test from 'ava';
import { EventLog } from '../src/process/events/event-log.js';

test('event sequence numbers start at 1 and have no gaps; each event carries the state it led to', (t) => {
  let clock = 1000;
  const log = new EventLog(4, () => clock++);
  t.is(log.lastSequence, 0);
  t.is(log.firstSequence, 1);
  const r = record(t);
  const types = ['spawned', 'exited', 'released', 'adopted', 'spawned', 'exited', 'released'] as const;
  const events = types.map((type) => log.append(type, r));
  t.deepEqual(events.map((e) => e.sequence), [1, 2, 3, 4, 5, 6, 7]);
  t.deepEqual(events.map((e) => e.time), [1000, 1001, 1002, 1003, 1004, 1005, 1006]);
  t.deepEqual(events.map((e) => e.state), ['running', 'exited', 'released', 'running', 'running', 'exited', 'released']);
  t.is(log.lastSequence, 7);
});

test('an event keeps the exit as it was when the event was appended', (t) => {
  const log = new EventLog(16);
  const r = record(t);
  const spawned = log.append('spawned', r);
  exited(r, 42);
  const exit = log.append('exited', r);
  t.is(spawned.exit, undefined);
  t.is(exit.exit?.exitedAt, 42);
  t.is(exit.record, r.view, 'the record\'s immutable view, not the record (which a released process leaves behind)');
});

test('the ring keeps the newest capacity events and get refuses everything else', (t) => {
  const capacity = 4;
  const log = new EventLog(capacity);
  const r = record(t);
  for (let i = 0; i < capacity - 1; i++) log.append('spawned', r);
  t.is(log.firstSequence, 1, 'nothing overwritten yet');
  for (let i = capacity - 1; i < 10; i++) log.append('spawned', r);
  t.is(log.lastSequence, 10);
  t.is(log.firstSequence, 10 - capacity + 1);
  for (let s = log.firstSequence; s <= 10; s++) t.is(log.get(s)?.sequence, s);
  for (const s of [-1, 0, 1, log.firstSequence - 1, 11, 1000]) t.is(log.get(s), undefined, `get(${s})`);
});

test('canReplayAfter is true exactly from the sequence before the oldest held event up to the newest', (t) => {
  const log = new EventLog(4);
  t.true(log.canReplayAfter(0), 'an empty log replays everything after 0');
  t.false(log.canReplayAfter(1), 'a sequence from the future');
  t.false(log.canReplayAfter(-1));
  const r = record(t);
  for (let i = 0; i < 10; i++) log.append('spawned', r);
  const first = log.firstSequence;
  t.true(log.canReplayAfter(first - 1));
  t.false(log.canReplayAfter(first - 2), 'event first-1 was overwritten');
  t.true(log.canReplayAfter(log.lastSequence), 'caught up');
  t.false(log.canReplayAfter(log.lastSequence + 1));
  t.false(log.canReplayAfter(0));
});

test('subscribers are notified once per microtask batch, not once per event', async (t) => {
  const log = new EventLog(64);
  const r = record(t);
  const seen: number[][] = [[], []];
  const unsubscribe = [0, 1].map((i) => log.subscribe(() => seen[i]!.push(log.lastSequence)));
  t.is(log.subscriberCount, 2);
  log.append('spawned', r);
  log.append('exited', r);
  log.append('released', r);
  t.deepEqual(seen, [[], []], 'not synchronously');
  await flush();
  t.deepEqual(seen, [[3], [3]]);
  await flush();
  t.deepEqual(seen, [[3], [3]], 'nothing new, no notification');
  log.append('spawned', r);
  unsubscribe[1]!();
  t.is(log.subscriberCount, 1);
  await flush();
  t.deepEqual(seen, [[3, 4], [3]]);
});
