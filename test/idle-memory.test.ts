// What a quiet agent gives back: when the idle reducer runs (signals given, no clock read), which
// of the executable's mappings it may unmap, and that a process keeps working after it ran.
import { readFileSync, readlinkSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { cleanFileMappings, IdleMemory, IDLE_POLICY, reduceProcessMemory, type IdleSignals } from '../src/kernel/idle-memory.js';

const MiB = 1 << 20;

/** Signals the test sets by hand. */
function fake(): IdleSignals & { activityN: number; busyF: number; heap: number; clock: number } {
  const s = {
    activityN: 0,
    busyF: 0,
    heap: 20 * MiB,
    clock: 0,
    activity: () => s.activityN,
    busy: () => s.busyF,
    heapBytes: () => s.heap,
    now: () => s.clock,
  };
  return s;
}

/** Ticks once a second until the reducer runs or `seconds` pass; the seconds it took. */
function ticksUntilReduced(r: IdleMemory, s: ReturnType<typeof fake>, seconds: number): number | undefined {
  for (let i = 1; i <= seconds; i++) {
    s.clock += 1000;
    if (r.tick()) return i;
  }
  return undefined;
}

test('a burst that grew the heap is given back once the agent is quiet, and only once', (t) => {
  const s = fake();
  let reduced = 0;
  const r = new IdleMemory(s, () => reduced++ >= 0);
  // Start-up grew the heap from nothing: the first quiet spell gives it back.
  t.is(ticksUntilReduced(r, s, 60), IDLE_POLICY.quietMs / 1000);
  t.is(reduced, 1);
  // A burst: events and a young generation grown to 32 MiB.
  for (let i = 0; i < 10; i++) {
    s.activityN += 100;
    s.heap += 4 * MiB;
    s.clock += 1000;
    t.false(r.tick(), 'never while events happen');
  }
  t.is(ticksUntilReduced(r, s, 60), IDLE_POLICY.quietMs / 1000, 'counted from the last tick that saw an event');
  t.is(reduced, 2);
  // Nothing new: a quiet agent never collects again.
  s.heap -= 30 * MiB;
  t.is(ticksUntilReduced(r, s, 600), undefined);
  t.is(r.reductions, 2);
});

test('a spell that will end in a reduction is settled once, at its first quiet tick', (t) => {
  const s = fake();
  const seen: string[] = [];
  const r = new IdleMemory(s, () => seen.push('reduce') > 0, IDLE_POLICY, () => seen.push(`settle@${s.clock}`));
  t.is(ticksUntilReduced(r, s, 60), IDLE_POLICY.quietMs / 1000);
  t.deepEqual(seen, ['settle@1000', 'reduce']);
  s.activityN += 5; // a few events, no growth: nothing to settle
  t.is(ticksUntilReduced(r, s, 60), undefined);
  t.deepEqual(seen, ['settle@1000', 'reduce']);
});

test('the tick after a reduction releases what the collection freed late, unless events came since', (t) => {
  const s = fake();
  const seen: string[] = [];
  const r = new IdleMemory(s, () => seen.push('reduce') > 0, IDLE_POLICY, () => undefined, () => seen.push('release'));
  t.is(ticksUntilReduced(r, s, 60), IDLE_POLICY.quietMs / 1000);
  t.deepEqual(seen, ['reduce'], 'not in the reduction’s own tick');
  s.busyF = 0.1; // the reduction's own collection
  s.clock += 1000;
  t.false(r.tick());
  t.deepEqual(seen, ['reduce', 'release']);
  s.clock += 1000;
  r.tick();
  t.deepEqual(seen, ['reduce', 'release'], 'once per reduction');
  s.busyF = 0;
  // A burst right after the next reduction: its release is dropped, the burst's own reduction releases.
  s.activityN += 100;
  s.heap += 16 * MiB;
  t.is(ticksUntilReduced(r, s, 60), IDLE_POLICY.quietMs / 1000 + 1);
  s.activityN += 1;
  s.clock += 1000;
  t.false(r.tick());
  t.deepEqual(seen, ['reduce', 'release', 'reduce']);
});

test('a busy event loop is not quiet, even without events (a stream of Gets)', (t) => {
  const s = fake();
  const r = new IdleMemory(s, () => true);
  s.busyF = 0.5;
  t.is(ticksUntilReduced(r, s, 60), undefined);
  s.busyF = 0.001; // a health probe now and then
  t.is(ticksUntilReduced(r, s, 60), IDLE_POLICY.quietMs / 1000);
});

test('records churned without growing the heap are still collected after; a few events alone are not', (t) => {
  const s = fake();
  const r = new IdleMemory(s, () => true);
  t.truthy(ticksUntilReduced(r, s, 60));
  s.activityN += 10; // a handful of spawns: the heap did not grow
  t.is(ticksUntilReduced(r, s, 60), undefined);
  s.activityN += IDLE_POLICY.events;
  t.is(ticksUntilReduced(r, s, 60), IDLE_POLICY.quietMs / 1000 + 1);
  t.is(r.reductions, 2);
});

test('a reduction that could not give everything back is tried again after another quiet spell, a bounded number of times', (t) => {
  const s = fake();
  let calls = 0;
  const r = new IdleMemory(s, () => ++calls > 10);
  for (let i = 0; i <= IDLE_POLICY.retries; i++) t.is(ticksUntilReduced(r, s, 60), IDLE_POLICY.quietMs / 1000, `attempt ${i + 1}`);
  t.is(ticksUntilReduced(r, s, 600), undefined, 'then it waits for the next burst');
  t.is(calls, IDLE_POLICY.retries + 1);
  s.activityN += 100; // the next burst
  s.heap += 16 * MiB;
  t.is(ticksUntilReduced(r, s, 60), IDLE_POLICY.quietMs / 1000 + 1);
  t.is(calls, IDLE_POLICY.retries + 2);
});

const SMAPS = `00400000-00b6f000 r--p 00000000 08:01 123 /usr/bin/node
Rss:                5948 kB
Anonymous:             0 kB
00b72000-025fe000 r-xp 00772000 08:01 123 /usr/bin/node
Rss:               16620 kB
Anonymous:             0 kB
0563a000-0563e000 r--p 05239000 08:01 123 /usr/bin/node
Rss:                  16 kB
Anonymous:            16 kB
0563e000-0565d000 rw-p 0523d000 08:01 123 /usr/bin/node
Rss:                 120 kB
Anonymous:           120 kB
0565d000-05689000 rw-p 00000000 00:00 0
Rss:                  96 kB
Anonymous:            96 kB
7f0000000000-7f0000100000 r-xs 00000000 08:01 123 /usr/bin/node
Rss:                  12 kB
Anonymous:             0 kB
7f31e4600000-7f31e4700000 r-xp 00000000 08:01 456 /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30
Rss:                1000 kB
Anonymous:             0 kB
`;

test('only the executable’s private, never-written mappings without a copied page may be unmapped', (t) => {
  t.deepEqual(cleanFileMappings(SMAPS, '/usr/bin/node'), [
    { start: 0x400000n, length: 0xb6f000 - 0x400000 },
    { start: 0xb72000n, length: 0x25fe000 - 0xb72000 },
  ]);
});

test('a process keeps running its code after its executable’s pages were unmapped', (t) => {
  const exe = readlinkSync('/proc/self/exe');
  const found = cleanFileMappings(readFileSync('/proc/self/smaps', 'utf8'), exe);
  t.true(found.length >= 2, `${found.length} clean mappings of ${exe}`);
  t.is(reduceProcessMemory().mappings, found.length);
  // Code that start-up never ran: compiled, run and a child started after the pages went.
  const f = new Function('n', 'return Array.from({ length: n }, (_, i) => (i * 7919).toString(36)).join(",")') as (n: number) => string;
  t.is(f(3), '0,63z,c7y');
  t.is(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(6 * 7))'], { encoding: 'utf8' }), '42');
  t.true(cleanFileMappings(readFileSync('/proc/self/smaps', 'utf8'), exe).length >= 2, 'the mappings themselves stay');
});
