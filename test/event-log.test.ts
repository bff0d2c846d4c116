// The event log: contiguous sequence numbers, the bounded replay ring of encoded events, batched notifications.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { exited, flush, record } from './helpers/records.js';
import test from 'ava';
import { EventLog } from '../src/process/events/event-log.js';
import { eventEncoding } from '../src/service/event-encoding.js';
import { ProcessRecord } from '../src/process/lifecycle/record.js';
import { newHandleId } from '../src/process/lifecycle/handle.js';
import { Event, EventType, State } from '../src/api.js';

/** The Event message the log holds for a sequence, decoded as a client would. */
function decoded(log: EventLog, sequence: number): Event {
  const slot = log.slotOf(sequence);
  const bytes = Buffer.alloc(log.encodedLength(slot));
  t_end(log.writeEncoded(slot, bytes, 0), bytes.length);
  return Event.decode(bytes);
}
function t_end(end: number, length: number): void {
  if (end !== length) throw new Error(`writeEncoded wrote ${end} of ${length} bytes`);
}

test('event sequence numbers start at 1 and have no gaps; each event carries the state it led to', (t) => {
  let clock = 1000;
  const log = new EventLog(8, eventEncoding, () => clock++);
  t.is(log.lastSequence, 0);
  t.is(log.firstSequence, 1);
  const r = record(t);
  const types = ['spawned', 'exited', 'released', 'adopted', 'spawned', 'exited', 'released'] as const;
  t.deepEqual(types.map((type) => log.append(type, r)), [1, 2, 3, 4, 5, 6, 7]);
  const held = [...log.held()];
  t.deepEqual(held.map((e) => e.sequence), [1, 2, 3, 4, 5, 6, 7]);
  t.deepEqual(held.map((e) => e.time), [1000, 1001, 1002, 1003, 1004, 1005, 1006]);
  t.deepEqual(held.map((e) => e.state), ['running', 'exited', 'released', 'running', 'running', 'exited', 'released']);
  t.deepEqual(held.map((e) => e.type), [...types]);
  t.is(log.lastSequence, 7);
});

test('an event keeps the exit as it was when the event was appended', (t) => {
  const log = new EventLog(16, eventEncoding);
  const r = record(t);
  log.append('spawned', r);
  exited(r, 42);
  log.append('exited', r);
  const [spawned, exit] = [...log.held()];
  t.is(spawned!.exit, undefined);
  t.deepEqual(exit!.exit, r.exit, 'the exit decodes to what was recorded');
  t.is(decoded(log, 1).process?.exit, undefined);
  t.is(decoded(log, 2).process?.exit?.exitedAt?.getTime(), 42);
});

test('each event is held as the API Event bytes: sequence, type, time, state and the process as of the event', (t) => {
  const log = new EventLog(16, eventEncoding, () => 1_700_000_000_123);
  const ref = record(t);
  const r = new ProcessRecord(newHandleId(), ref.identity, { argv: ['/bin/echo', 'é', ''], labels: { app: 'web', tier: '1' }, adopted: false, owner: 'unix:uid=0' }, 1_600_000_000_456, null);
  log.append('spawned', r);
  r.markExited({ termination: { signal: 9, coreDumped: false }, reason: 'timeout', exitedAt: 1_700_000_000_000, rusage: { userMicros: 1_500_001, systemMicros: 2, maxRssKib: 3, minorFaults: 4, majorFaults: 5, voluntaryContextSwitches: 6, involuntaryContextSwitches: 7 }, reclaimMs: 1.5 });
  log.append('exited', r);
  r.markReleased();
  log.append('released', r);
  const events = [1, 2, 3].map((s) => decoded(log, s));
  t.deepEqual(events.map((e) => e.sequence), [1, 2, 3]);
  t.deepEqual(events.map((e) => e.type), [EventType.EVENT_TYPE_SPAWNED, EventType.EVENT_TYPE_EXITED, EventType.EVENT_TYPE_RELEASED]);
  t.deepEqual(events.map((e) => e.process?.state), [State.STATE_RUNNING, State.STATE_EXITED, State.STATE_RELEASED]);
  for (const e of events) {
    t.is(e.time?.getTime(), 1_700_000_000_123);
    t.is(e.process?.handle, r.handle);
    t.deepEqual(e.process?.argv, ['/bin/echo', 'é', '']);
    t.deepEqual(e.process?.labels, { app: 'web', tier: '1' });
    t.is(e.process?.startedAt?.getTime(), 1_600_000_000_456);
    t.is(e.process?.owner, 'unix:uid=0');
    t.is(e.process?.pidfsInode, Number(r.identity.pidfsInode));
  }
  const exit = events[2]!.process!.exit!;
  t.is(exit.signal, 9);
  t.is(exit.signalName, 'SIGKILL');
  t.is(exit.rusage?.userCpu?.seconds, 1);
  t.is(exit.rusage?.userCpu?.nanos, 500_001_000);
  t.is(exit.reclaimTime?.nanos, 1_500_000);
  const held = [...log.held()];
  t.deepEqual(held[1]!.exit, r.exit, 'the exit decodes back to the domain exit (a handover sends it)');
  t.deepEqual(held[2]!.view(), r.view, 'the process decodes back (a handover sends released ones)');
});

test('the ring keeps the newest capacity events and slotOf refuses everything else', (t) => {
  const capacity = 4;
  const log = new EventLog(capacity, eventEncoding);
  const r = record(t);
  for (let i = 0; i < capacity - 1; i++) log.append('spawned', r);
  t.is(log.firstSequence, 1, 'nothing overwritten yet');
  for (let i = capacity - 1; i < 10; i++) log.append('spawned', r);
  t.is(log.lastSequence, 10);
  t.is(log.firstSequence, 10 - capacity + 1);
  for (let s = log.firstSequence; s <= 10; s++) t.is(decoded(log, s).sequence, s);
  for (const s of [-1, 0, 1, log.firstSequence - 1, 11, 1000]) t.is(log.slotOf(s), -1, `slotOf(${s})`);
});

test('a ring full of released processes keeps none of their records, views or exits alive', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const log = new EventLog(64, eventEncoding);
  const pin = record(t);
  // In a function of its own: a suspended async function keeps its last loop variable.
  const refs = ((): WeakRef<object>[] => {
    const refs: WeakRef<object>[] = [];
    for (let i = 0; i < 20; i++) {
      const r = new ProcessRecord(newHandleId(), pin.identity, { argv: ['/bin/true', String(i)], labels: {}, adopted: false }, 0, null);
      log.append('spawned', r);
      r.markExited({ termination: { exitCode: i }, reason: 'exited', exitedAt: i });
      log.append('exited', r);
      r.markReleased();
      log.append('released', r);
      refs.push(new WeakRef(r), new WeakRef(r.view), new WeakRef(r.exit!), new WeakRef(r.spec.argv));
    }
    return refs;
  })();
  await flush();
  gc();
  t.deepEqual(refs.flatMap((w, i) => (w.deref() === undefined ? [] : [i])), []);
  t.deepEqual([...log.held()].map((e) => e.exit?.termination), Array.from({ length: 20 }, (_, i) => [undefined, { exitCode: i }, { exitCode: i }]).flat());
});

test('a log seeded with another log\'s history holds the same bytes (a handover continues the history)', (t) => {
  let clock = 5;
  const log = new EventLog(8, eventEncoding, () => clock++);
  const r = record(t);
  for (let i = 0; i < 3; i++) log.append('spawned', r);
  exited(r, 7);
  log.append('exited', r);
  r.markReleased();
  log.append('released', r);
  const next = new EventLog(4, eventEncoding);
  next.seed(log.lastSequence, [...log.held()].map((e) => ({ ...e, record: e.view() })));
  t.is(next.lastSequence, 5);
  t.is(next.firstSequence, 2, 'the newest capacity events');
  for (let s = 2; s <= 5; s++) t.deepEqual(decoded(next, s), decoded(log, s));
});

test('canReplayAfter is true exactly from the sequence before the oldest held event up to the newest', (t) => {
  const log = new EventLog(4, eventEncoding);
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
  const log = new EventLog(64, eventEncoding);
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
