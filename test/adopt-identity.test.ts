import { spawn } from 'node:child_process';
import { once } from 'node:events';
import test from 'ava';
import { AgentCallError, status } from '../clients/ts/src/index.js';
import type { Observed } from './fixtures/adopt-identity.js';
import { runInPidNamespace } from './fixtures/pid-namespace.js';
import { startHarness } from './helpers/harness.js';

const FAST_ROUNDS = 40;
const refused = { ok: false, code: 'NOT_FOUND', reason: 'IDENTITY_MISMATCH' };

// The scenarios need real PID reuse, hence a PID namespace with a tiny pid_max; one run serves all.
let observed: Promise<Observed> | undefined;
function scenarios(): Promise<Observed> {
  observed ??= runInPidNamespace('adopt-identity', [String(FAST_ROUNDS)], 60_000).then((run) => {
    if (run.code !== 0) throw new Error(`fixture exited ${run.code}: ${run.stderr}`);
    return JSON.parse(run.stdout.trimEnd().split('\n').at(-1) ?? '') as Observed;
  });
  return observed;
}

test('Adopt with the correct start time, pidfs inode, or both takes the process', async (t) => {
  const { identity, startTime, inode, both } = (await scenarios()).correct;
  const expected = { ok: true, pid: identity.pid, inode: identity.inode };
  t.deepEqual(startTime, expected);
  t.deepEqual(inode, expected);
  t.deepEqual(both, expected);
});

test('an identity taken before the PID was reused is NOT_FOUND, opens nothing and spares the new process', async (t) => {
  const s = (await scenarios()).stale;
  t.not(s.innocentStartTime, s.identity.startTime, 'the reuse came clock ticks later');
  t.deepEqual(s.startTime, refused);
  t.deepEqual(s.inode, refused);
  t.deepEqual(s.both, refused);
  t.deepEqual(s.fdsAfter, s.fdsBefore, 'the agent closed every pidfd it opened to check');
  t.is(s.managed, 0);
  t.true(s.innocentAlive);
  // Control: the number really went to another process, which a bare-PID Adopt takes.
  t.true(s.bare.ok);
  t.is(s.bare.pid, s.identity.pid);
  t.not(s.bare.inode, s.identity.inode);
});

test('the pidfs inode refuses a PID recycled even within one clock tick; the start time only across ticks', async (t) => {
  const { rounds, fdsBefore, fdsAfter } = (await scenarios()).fast;
  t.is(rounds.length, FAST_ROUNDS);
  for (const round of rounds) {
    t.deepEqual(round.inode, refused);
    if (!round.sameTick) t.deepEqual(round.startTime, refused);
  }
  t.deepEqual(fdsAfter, fdsBefore);
  // Start time has 1/CLK_TCK resolution: a same-tick reuse carries the victim's start time, so
  // expected_start_time alone cannot tell the two apart.
  const sameTick = rounds.filter((r) => r.sameTick);
  t.log(`${sameTick.length}/${rounds.length} reuses in the victim's clock tick; start time alone adopted the new process in ${sameTick.filter((r) => r.startTime.ok).length}`);
});

test('a repeated request_id replays only for the same pid and identity', async (t) => {
  const h = await startHarness();
  const a = spawn('sleep', ['30'], { stdio: 'ignore' });
  const b = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const { process: first } = await h.client.adopt({ pid: a.pid!, requestId: 'adopt-1' });
    const again = await h.client.adopt({ pid: a.pid!, requestId: 'adopt-1', expectedPidfsInode: first!.pidfsInode });
    t.is(again.process!.handle, first!.handle);
    for (const req of [{ pid: b.pid! }, { pid: a.pid!, expectedPidfsInode: first!.pidfsInode + 1 }]) {
      const e = await t.throwsAsync(h.client.adopt({ ...req, requestId: 'adopt-1' }), { instanceOf: AgentCallError });
      t.is(e.code, status.INVALID_ARGUMENT);
      t.is(e.info['field'], 'request_id');
    }
    t.is((await h.client.list()).processes.length, 1, 'nothing else was adopted');
  } finally {
    const exits = [once(a, 'exit'), once(b, 'exit')];
    a.kill('SIGKILL');
    b.kill('SIGKILL');
    await Promise.all(exits);
    await h.close();
  }
});
