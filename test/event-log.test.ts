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

/** The sequences held, walked as a Watch walks them. */
const heldSequences = (log: EventLog, after = 0): number[] => {
  const out: number[] = [];
  for (let slot = log.after(after); slot >= 0; slot = log.nextSlot(slot)) out.push(log.sequenceAt(slot));
  return out;
};

test("a full ring gives up the oldest events of the owner holding the most: another owner's cursor stays valid, an admin's expires", (t) => {
  const log = new EventLog(16, eventEncoding);
  const a = record(t, undefined, 'unix:uid=1001');
  const b = record(t, undefined, 'unix:uid=1002');
  for (let i = 0; i < 3; i++) log.append('spawned', b);
  for (let i = 0; i < 40; i++) log.append('spawned', a);
  const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
  t.deepEqual(heldSequences(log), [1, 2, 3, ...range(31, 43)], "b's three events stay; a's flood turned over only its own");
  t.deepEqual([...log.held()].map((e) => e.sequence), heldSequences(log));
  for (const s of [1, 2, 3, 31, 43]) t.is(decoded(log, s).sequence, s);
  t.is(log.slotOf(30), -1);
  t.true(log.canReplayAfter(0, 'unix:uid=1002'), 'none of b\'s events went');
  t.false(log.canReplayAfter(29, 'unix:uid=1001'), 'a\'s event 30 went');
  t.true(log.canReplayAfter(30, 'unix:uid=1001'));
  t.false(log.canReplayAfter(0), 'a watcher of everyone lost events 4..30');
  t.is(log.replayableFrom(), 30);
  t.true(log.canReplayAfter(0, 'unix:uid=1003'), 'an owner that never had an event lost nothing');
  t.deepEqual(heldSequences(log, 3), range(31, 43), 'from b\'s cursor the next held event is a\'s 31');

  // Now b is the busy one: once it holds more than a, its own oldest go.
  for (let i = 0; i < 30; i++) log.append('spawned', b);
  const owners = [...log.held()].map((e) => (e.handle === a.handle ? 'a' : 'b'));
  t.is(owners.length, 16);
  t.is(owners.filter((o) => o === 'a').length, 8, 'the ring ends shared evenly');
  t.false(log.canReplayAfter(0, 'unix:uid=1002'));
});

test('events given up from the middle leave holes that close up when they fill the room: order, bytes and shares stay right', (t) => {
  const capacity = 16;
  const log = new EventLog(capacity, eventEncoding);
  const owners = ['a', 'b', 'c', 'd'].map((o) => `unix:uid=${o}`);
  const records = owners.map((o) => record(t, undefined, o));
  const ownerOfSeq = new Map<number, number>();
  const evictedUpTo = [0, 0, 0, 0];
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (let i = 0; i < 3000; i++) {
    // Owner 0 floods, the others come and go.
    const who = random() < 0.7 ? 0 : 1 + Math.floor(random() * 3);
    const before = heldSequences(log);
    const counts = [0, 0, 0, 0];
    for (const s of before) counts[ownerOfSeq.get(s)!]! += 1;
    const sequence = log.append('spawned', records[who]!);
    ownerOfSeq.set(sequence, who);
    const after = heldSequences(log);
    t.is(after.length, Math.min(capacity, before.length + 1));
    const gone = before.filter((s) => !after.includes(s));
    if (before.length === capacity) {
      t.is(gone.length, 1);
      const o = ownerOfSeq.get(gone[0]!)!;
      if (counts[o] !== Math.max(...counts)) return t.fail(`step ${i}: gave up an event of an owner holding ${counts[o]}, not the most (${counts})`);
      if (gone[0] !== before.find((s) => ownerOfSeq.get(s) === o)) return t.fail(`step ${i}: not the owner's oldest`);
      evictedUpTo[o] = gone[0]!;
    }
    for (let k = 1; k < after.length; k++) if (after[k - 1]! >= after[k]!) return t.fail(`step ${i}: out of order`);
  }
  owners.forEach((o, k) => t.is(log.replayableFrom(o), evictedUpTo[k]!, `${o}'s mark`));
  t.is(log.replayableFrom(), Math.max(...evictedUpTo));
  for (const s of heldSequences(log)) t.is(decoded(log, s).sequence, s);
  t.is(log.firstSequence, heldSequences(log)[0]!);
});

test('a log seeded with a history that has holes, and its marks, decides cursors as the one it continues', (t) => {
  const log = new EventLog(8, eventEncoding);
  const a = record(t, undefined, 'unix:uid=1001');
  const b = record(t, undefined, 'unix:uid=1002');
  log.append('spawned', b);
  for (let i = 0; i < 20; i++) log.append('spawned', a);
  const next = new EventLog(8, eventEncoding);
  next.seed(log.lastSequence, [...log.held()].map((e) => ({ ...e, record: e.view() })), log.evictionMarks());
  t.deepEqual(heldSequences(next), heldSequences(log));
  for (const owner of [undefined, 'unix:uid=1001', 'unix:uid=1002', 'unix:uid=1003']) t.is(next.replayableFrom(owner), log.replayableFrom(owner), String(owner));
  for (const s of heldSequences(log)) t.deepEqual(decoded(next, s), decoded(log, s));
  next.append('spawned', a);
  t.deepEqual(heldSequences(next), [1, ...heldSequences(log).slice(2), 22], "a's oldest goes next, b's stays");
});
