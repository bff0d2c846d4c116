import { readdirSync, readFileSync } from 'node:fs';
import test from 'ava';
import { AgentCallError, status } from '../clients/ts/src/index.js';
import { openFdCount } from '../src/kernel/fd.js';
import { startHarness, type Harness } from './helpers/harness.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
  await h.client.list();
});
test.after.always(async () => {
  await h?.close();
});

/** Kernel threads other than kthreadd itself, by their status ("Kthread: 1", Linux 6.x). */
function kernelThreads(): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || name === '2') continue;
    try {
      if (/^Kthread:\s*1$/m.test(readFileSync(`/proc/${name}/status`, 'utf8'))) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
    if (pids.length === 3) break;
  }
  return pids;
}

test('PID 1 and kernel threads are never adoptable, and refusing them leaves no fd behind', async (t) => {
  const threads = kernelThreads();
  t.true(threads.length > 0, 'this machine shows kernel threads');
  const before = openFdCount();
  for (const pid of [1, 2, ...threads]) {
    const e = await t.throwsAsync(h.client.adopt({ pid, labels: { refused: 'yes' } }), { instanceOf: AgentCallError });
    t.is(e!.code, status.PERMISSION_DENIED, `${pid}: ${e!.message}`);
    t.is(e!.reason, 'NOT_ADOPTABLE');
    t.is(e!.info['field'], 'pid');
  }
  t.deepEqual((await h.client.list({ labels: { refused: 'yes' } })).processes, []);
  t.is(openFdCount(), before);
});
