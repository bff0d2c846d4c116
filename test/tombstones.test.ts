// The tombstones of released request ids on their own: what a release adds, what expires, what
// the cap pushes out (and whose), with in-memory records. The agent's behaviour is in
// released-request.test.ts.
import test from 'ava';
import type { Instant } from '../src/process/lifecycle/clock.js';
import { adoptFingerprint, NO_TOMBSTONES, sameAdoption, spawnFingerprint, Tombstones } from '../src/process/lifecycle/tombstones.js';
import { record } from './helpers/records.js';

/** A moment on a clock of its own boot, so ages are exactly what the test says. */
const at = (ms: number): Instant => ({ wall: ms, stamp: { boot: 'test-boot', ms } });

const keys = (ts: Tombstones) => [...ts.values()].map((x) => `${x.owner ?? ''}/${x.requestId}`);

test('a release without request_id costs nothing; one with keeps owner, key, handle and argv fingerprint', (t) => {
  const ts = new Tombstones({ ttlMs: 1000, maxExited: 10 });
  t.is(ts.plan([record(t)], at(0)), NO_TOMBSTONES);
  const r = record(t, 'k', 'unix:uid=7');
  const plan = ts.plan([r], at(5));
  t.deepEqual(plan.add, [{ owner: 'unix:uid=7', requestId: 'k', handle: r.handle, fingerprint: spawnFingerprint(['x']), releasedAt: 5, releasedStamp: { boot: 'test-boot', ms: 5 } }]);
  t.deepEqual(plan.drop, []);
  t.is(ts.size, 0, 'nothing changes before apply');
  ts.apply(plan);
  t.is(ts.find('unix:uid=7\nk')?.handle, r.handle);
  t.is(ts.find('\nk'), undefined, "another owner's key is another key");
  t.is(ts.planRelease([record(t)]), NO_TOMBSTONES, 'a release without request_id plans nothing, even with tombstones kept');
  t.not(spawnFingerprint(['a', 'b']), spawnFingerprint(['a b']));
  t.true(sameAdoption({ ...plan.add[0]!, fingerprint: adoptFingerprint(42, 7n) }, 42, undefined));
  t.false(sameAdoption({ ...plan.add[0]!, fingerprint: adoptFingerprint(42, 7n) }, 42, 8n));
  t.false(sameAdoption(plan.add[0]!, 42, undefined), 'a spawn is no adoption');
});

test('a tombstone expires ttl after its release, oldest first, with the next release or on its own', (t) => {
  const ts = new Tombstones({ ttlMs: 1000, maxExited: 10 });
  ts.apply(ts.plan([record(t, 'a')], at(0)));
  ts.apply(ts.plan([record(t, 'b')], at(500)));
  t.is(ts.plan([], at(999)), NO_TOMBSTONES);
  const later = ts.plan([record(t, 'c')], at(1000));
  t.deepEqual(later.drop.map((x) => x.requestId), ['a']);
  ts.apply(later);
  t.deepEqual(keys(ts), ['/b', '/c']);
  ts.apply(ts.plan([], at(2000)));
  t.deepEqual(keys(ts), []);
});

test('past the cap the oldest of the owner keeping the most go, never a quieter owner’s; a batch over the cap keeps its newest', (t) => {
  const ts = new Tombstones({ ttlMs: 3_600_000, maxExited: 4 });
  ts.apply(ts.plan([record(t, 'b1', 'B')], at(0)));
  for (let i = 0; i < 3; i++) ts.apply(ts.plan([record(t, `a${i}`, 'A')], at(1 + i)));
  t.deepEqual(keys(ts), ['B/b1', 'A/a0', 'A/a1', 'A/a2']);
  const noisy = ts.plan([record(t, 'a3', 'A'), record(t, 'a4', 'A')], at(10));
  t.deepEqual(noisy.drop.map((x) => x.requestId), ['a0', 'a1']);
  ts.apply(noisy);
  t.deepEqual(keys(ts), ['B/b1', 'A/a2', 'A/a3', 'A/a4'], "B's older key stays");
  const burst = ts.plan(Array.from({ length: 6 }, (_, i) => record(t, `c${i}`, 'C')), at(20));
  ts.apply(burst);
  t.is(ts.size, 4);
  t.deepEqual(keys(ts), ['B/b1', 'A/a4', 'C/c4', 'C/c5'], 'the fullest first, a new owner’s oldest among them');
});

test('a key released again replaces its tombstone: one per key, moved to the newest', (t) => {
  const ts = new Tombstones({ ttlMs: 1000, maxExited: 2 });
  ts.apply(ts.plan([record(t, 'a')], at(0)));
  ts.apply(ts.plan([record(t, 'b')], at(1)));
  const again = record(t, 'a');
  const plan = ts.plan([again], at(2));
  t.deepEqual(plan.drop.map((x) => x.requestId), ['a'], 'only the replaced one: the cap is not reached');
  ts.apply(plan);
  t.deepEqual(keys(ts), ['/b', '/a']);
  t.is(ts.find('\na')?.handle, again.handle);
});
