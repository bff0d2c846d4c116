import test from 'ava';
import { AgentCallError, status } from '../clients/ts/src/index.js';
import { startHarness, type Harness } from './helpers/harness.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

test('an error that echoes a huge request value is still answered at once, and the connection keeps serving', async (t) => {
  for (const value of ['x'.repeat(100_000), 'é'.repeat(60_000), `x${'😀'.repeat(30_000)}`]) {
    const started = Date.now();
    const e = await t.throwsAsync(h.client.stop({ handle: 'a'.repeat(26), signal: value }, { deadline: 5000 }), { instanceOf: AgentCallError });
    t.is(e!.code, status.INVALID_ARGUMENT, e!.message.slice(0, 200));
    t.is(e!.info['field'], 'signal');
    t.true(e!.details.length < 1200, `details of ${e!.details.length} characters`);
    t.regex(e!.details, /… \(\d+ more characters\)$/);
    t.true(Date.now() - started < 5000);
    t.deepEqual((await h.client.list({}, { deadline: 5000 })).processes, [], 'the same connection still serves');
  }
});
