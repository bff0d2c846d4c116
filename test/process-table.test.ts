// The process table: retention of exited records by TTL and by count, the running count, lookups.
import { exited, record } from './helpers/records.js';
import test from 'ava';
import { instantNow } from '../src/process/lifecycle/clock.js';
import { ProcessTable } from '../src/process/lifecycle/table.js';

/** A wall-clock moment: these records carry no stamp, so their ages are the wall clock's. */
const at = (wall: number) => instantNow(wall);

test('retention by TTL: an exited record expires ttl ms after its exit, oldest first, and is not removed by expired()', (t) => {
  const table = new ProcessTable({ ttlMs: 1000, maxExited: 100 });
  const [a, b, c] = [record(t), record(t), record(t)];
  for (const r of [a, b, c]) table.add(r);
  exited(a, 0);
  table.noteExited(a);
  exited(b, 500);
  table.noteExited(b);
  t.deepEqual(table.expired(at(999)), []);
  t.deepEqual(table.expired(at(1000)), [a]);
  t.deepEqual(table.expired(at(1500)), [a, b]);
  t.deepEqual(table.expired(at(1_000_000)), [a, b], 'a running record never expires');
  t.is(table.size, 3);
  table.remove(a);
  t.deepEqual(table.expired(at(1500)), [b]);
});

test('retention by count: beyond maxExited the oldest exits expire first, whatever their age', (t) => {
  const table = new ProcessTable({ ttlMs: 3_600_000, maxExited: 2 });
  const records = Array.from({ length: 5 }, () => record(t));
  records.forEach((r, i) => {
    table.add(r);
    exited(r, i);
    table.noteExited(r);
  });
  t.deepEqual(table.expired(at(10)), records.slice(0, 3));
  for (const r of records.slice(0, 3)) table.remove(r);
  t.deepEqual(table.expired(at(10)), []);

  const none = new ProcessTable({ ttlMs: 3_600_000, maxExited: 0 });
  const r = record(t);
  none.add(r);
  t.deepEqual(none.expired(at(0)), []);
  exited(r, 0);
  none.noteExited(r);
  t.deepEqual(none.expired(at(0)), [r], 'maxExited 0 keeps no exited record');
});

test("retention by count is fair: past maxExited the oldest of whoever keeps the most go, not another owner's unread exit", (t) => {
  const table = new ProcessTable({ ttlMs: 1000, maxExited: 4 });
  let clock = 0;
  const exitAs = (owner: string) => {
    const r = record(t, undefined, owner);
    table.add(r);
    exited(r, clock++);
    table.noteExited(r);
    return r;
  };
  const b = exitAs('tenant-b');
  const churn = Array.from({ length: 10 }, () => exitAs('tenant-a'));
  t.deepEqual(table.expired(at(clock)), churn.slice(0, 7), "tenant-a's seven oldest, none of tenant-b's");
  for (const r of churn.slice(0, 7)) table.remove(r);
  // Two more of b's: b and a keep three each (a tie goes to whoever's exits came first), then a.
  const [b2, b3] = [exitAs('tenant-b'), exitAs('tenant-b')];
  t.deepEqual(table.expired(at(clock)), [b, churn[7]]);
  for (const r of [b, churn[7]!]) table.remove(r);
  // The TTL takes everyone's old exits, oldest first, and they count toward the cap.
  t.deepEqual(table.expired(at(1010)), [churn[8], churn[9]]);
  t.deepEqual(table.expired(at(2000)), [churn[8], churn[9], b2, b3]);
});

test('runningCount follows add, noteExited and remove; a second remove changes nothing', (t) => {
  const table = new ProcessTable({ ttlMs: 1000, maxExited: 10 });
  const [a, b, c] = [record(t), record(t), record(t)];
  for (const r of [a, b, c]) table.add(r);
  t.deepEqual([table.runningCount, table.size], [3, 3]);
  exited(a, 0);
  table.noteExited(a);
  t.deepEqual([table.runningCount, table.size], [2, 3]);
  table.remove(a);
  t.deepEqual([table.runningCount, table.size], [2, 2], 'removing an exited record leaves the running count');
  table.remove(b);
  t.deepEqual([table.runningCount, table.size], [1, 1], 'removing a running record (a release) lowers it');
  table.remove(b);
  table.remove(a);
  t.deepEqual([table.runningCount, table.size], [1, 1]);
  t.deepEqual([...table.values()], [c]);
});

test('a record is found by handle and by request id until it is removed', (t) => {
  const table = new ProcessTable({ ttlMs: 1000, maxExited: 10 });
  const withId = record(t, 'req-1');
  const without = record(t);
  table.add(withId);
  table.add(without);
  t.is(table.get(withId.handle), withId);
  t.is(table.get(without.handle), without);
  t.is(table.byRequest(undefined, 'req-1'), withId);
  t.is(table.byRequest(undefined, 'req-2'), undefined);
  t.is(table.byRequest('unix:uid=1001', 'req-1'), undefined, "another owner's key is another key");
  t.is(table.get('no-such-handle'), undefined);
  table.remove(withId);
  t.is(table.get(withId.handle), undefined);
  t.is(table.byRequest(undefined, 'req-1'), undefined);
  t.is(table.get(without.handle), without);
});
