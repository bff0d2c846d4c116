// What an agent at rest lets go of besides V8's heap (issue 17, after a full bench round): SQLite's
// page cache, the malloc pages the collection's background threads freed late, and the shared
// replies of retained exited records; and that everything still reads back the same after.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { mallocInUse, releaseFreedMemory } from '../src/kernel/idle-memory.js';
import { newHandleId } from '../src/process/lifecycle/handle.js';
import { ProcessRecord } from '../src/process/lifecycle/record.js';
import { forgetExitedReplies, toProcess } from '../src/service/convert.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { eventually } from './helpers/harness.js';

const dirs: string[] = [];
test.after.always(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function exitedRecord(i: number): ProcessRecord {
  const r = new ProcessRecord(newHandleId(), { pid: 100 + i, pidfsInode: BigInt(1000 + i) }, { argv: ['/bin/sleep', String(i)], labels: {}, adopted: false }, 1_700_000_000_000 + i, null);
  r.markExited({ termination: { exitCode: 0 }, exitedAt: 1_700_000_001_000 + i, rusage: { userMicros: 1, systemMicros: 2, maxRssKib: 3, minorFaults: 4, majorFaults: 5, voluntaryContextSwitches: 6, involuntaryContextSwitches: 7 } });
  return r;
}

test('the release step empties the store’s page cache (malloc in use falls), and the store still reads and writes', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-rest-'));
  dirs.push(dir);
  const store = new SqliteStore(join(dir, 'state'), 'boot-a', () => undefined, 100);
  const N = 20_000;
  for (let i = 0; i < N; i += 500) {
    store.commit('test', 0, (w) => {
      for (let j = i; j < i + 500; j++) w.started(exitedRecord(j));
    });
  }
  t.is(store.load().length, N); // every page read: the cache is as full as a burst leaves it
  const released = releaseFreedMemory(() => store.releaseMemory());
  const freedMib = released.malloc_mib_before - released.malloc_mib_after;
  t.log(`malloc in use ${released.malloc_mib_before} → ${released.malloc_mib_after} MiB`);
  t.true(freedMib >= 0.5, `malloc in use ${released.malloc_mib_before} → ${released.malloc_mib_after} MiB`);
  t.true(released.rss_mib_after > 0);
  // Rebuilt on demand: the next commit and load work as before.
  store.commit('test', 0, (w) => w.started(exitedRecord(N)));
  t.is(store.load().length, N + 1);
  store.close();
  t.true(mallocInUse() > 0);
});

test('a retained exited record’s shared reply is made again after the rest, the same as before', (t) => {
  const r = exitedRecord(1);
  const first = toProcess(r.view, r.state, r.exit);
  t.is(toProcess(r.view, r.state, r.exit), first, 'shared while cached');
  forgetExitedReplies();
  const again = toProcess(r.view, r.state, r.exit);
  t.not(again, first, 'the cache let go of it');
  t.deepEqual(again, first);
});

test('a real agent at rest releases memory after its reduction, and its retained exits read back the same', async (t) => {
  const agent = await startAgentProcess(['--log-format', 'json']);
  try {
    const handles: string[] = [];
    const exits: unknown[] = [];
    for (let i = 0; i < 20; i++) {
      const { process: p } = await agent.client.spawn({ argv: ['/bin/sh', '-c', `exit ${i}`] });
      const done = await agent.client.wait({ handle: p!.handle });
      handles.push(p!.handle);
      exits.push(done.process!.exit);
    }
    // Start-up grew the heap: the first quiet spell reduces, and the tick after it releases.
    const released = await eventually(
      'a memory_released log line',
      () => agent.stderr().split('\n').map((l) => (l.includes('"memory_released"') ? (JSON.parse(l) as Record<string, unknown>) : undefined)).find((x) => x !== undefined),
      120_000,
    );
    t.true(agent.stderr().indexOf('"memory_reduced"') < agent.stderr().indexOf('"memory_released"'), 'after the reduction');
    for (const key of ['malloc_mib_before', 'malloc_mib_after', 'rss_mib_before', 'rss_mib_after']) t.is(typeof released[key], 'number', key);
    for (let i = 0; i < handles.length; i++) {
      const { process: p } = await agent.client.get({ handle: handles[i]! });
      t.deepEqual(p!.exit, exits[i], `exit of ${i} after the rest`);
      t.is(p!.exit!.code, i);
    }
  } finally {
    await agent.stop();
  }
});
