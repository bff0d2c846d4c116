// D8 (review s18-D) in the Python clients, sync and asyncio: spawn gives every request a
// request_id (never changing the caller's message) and retries under it, so a reply lost after
// the command started is answered by the same process; other calls retry only where safe.
import { join } from 'node:path';
import test from 'ava';
import { status } from '../clients/ts/src/index.js';
import { ROOT } from './helpers/agent-process.js';
import { startHarness, tempDir } from './helpers/harness.js';
import { closedInFlightIsResent, LineChild, lostReplyIsRetried, releasedReplyIsNotRerun, UUID } from './helpers/lost-reply.js';
import { checkHandoverRefusals, checkRefusedCalls, RefusingServer } from './helpers/refusing-server.js';
import { Subreaper } from './helpers/subreaper.js';

const PYTHON = '/usr/bin/python3'; // Debian's, where python3-grpcio is installed
const FIXTURE = join(ROOT, 'test/fixtures/python-retry.py');
const CLIENT = join(ROOT, 'clients/python');

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

for (const mode of ['sync', 'aio'] as const) {
  test.serial(`Python (${mode}): a spawn whose reply is lost as the agent is killed is retried under its request id after the restart: the same process, started once`, (t) =>
    lostReplyIsRetried(t, reaper, (proxy, marker) => [PYTHON, '-B', FIXTURE, 'lost-reply', proxy, CLIENT, mode, marker]));

  test.serial(`Python (${mode}): a release_on_exit spawn whose reply is lost and whose process was released meanwhile is refused on the retry (REQUEST_RELEASED), not started again`, (t) =>
    releasedReplyIsNotRerun(t, reaper, (proxy, marker) => [PYTHON, '-B', FIXTURE, 'released', proxy, CLIENT, mode, marker]));

  test.serial(`Python (${mode}): close() with a spawn in flight ends it at once, marked client_closed, with the request id that gets its process back on a new client`, (t) =>
    closedInFlightIsResent(t, reaper, (proxy, marker) => [PYTHON, '-B', FIXTURE, 'closed-in-flight', proxy, CLIENT, mode, marker]));

  test.serial(`Python (${mode}): retries are bounded, keep the request ids, and happen only where is_retryable allows`, async (t) => {
    const server = await RefusingServer.start(join(tempDir('pidfd-agent-refusing-'), 'agent.sock'));
    t.teardown(() => server.close());
    const run = async () => {
      const client = LineChild.start(t, [PYTHON, '-B', FIXTURE, 'refused', server.address, CLIENT, mode]);
      return JSON.parse(await client.line()) as Record<string, { code: string; reason: string; method: string; request_id: string | null; request_ids: string[] | null; retryable: boolean; client_closed: boolean; text: string } | null> & { template_request_id: string; closed_ms: number };
    };
    const out = await run();
    const spawns = server.attempts.filter((a) => a.method === 'Spawn');
    t.is(spawns.length, 4 + 1 + 1, 'the keyed spawn tried 4 times, the unkeyed one once, the one closed during its backoff once');
    t.like(out['closed'], { code: 'UNAVAILABLE', reason: '', method: 'Spawn', retryable: true, client_closed: true }, 'closed during a backoff: the last failure, no attempt on the closed channel');
    t.is(out['closed']!.request_id, spawns[5]!.requestIds[0]!, 'with the id to resend under');
    t.regex(out['closed']!.text, /^UNAVAILABLE: .*\(the client was closed during the retry backoff\)$/);
    t.true(out.closed_ms < 500, `it returned at the close, not after its backoff (${out.closed_ms} ms)`);
    t.false(out['spawn']!.client_closed);
    t.regex(out['spawn']!.request_id!, UUID);
    t.deepEqual(spawns.slice(0, 4).map((a) => a.requestIds[0]), Array(4).fill(out['spawn']!.request_id));
    t.is(out.template_request_id, '', "the caller's request is left as it was");
    t.like(out['spawn'], { code: 'UNAVAILABLE', reason: '', method: 'Spawn', retryable: true });
    t.like(out['spawn_unkeyed'], { request_id: '', retryable: false });
    t.is(spawns[4]!.requestIds[0], '');
    checkRefusedCalls(t, server, out['batch']!, UUID);
    // The last attempt fails as refused, or (on a loaded machine) is still in flight at the deadline.
    t.true(['UNAVAILABLE', 'DEADLINE_EXCEEDED'].includes(out['deadline']!.code), out['deadline']!.code);

    server.attempts.length = 0;
    server.refusal = { code: status.UNAVAILABLE, reason: 'HANDOVER' };
    const refused = await run();
    checkHandoverRefusals(t, server, refused['signal']!);
  });
}

test.serial('Python (aio): close() ends an open watch at once, with an AgentError marked client_closed, and a wait in a task that once caught a cancel with the marked UNAVAILABLE, neither with CancelledError', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const client = LineChild.start(t, [PYTHON, '-B', FIXTURE, 'closed-aio', h.address, CLIENT, 'aio']);
  const out = JSON.parse(await client.line()) as Record<string, { code: string; method: string; client_closed: boolean; text: string } | null>;
  // Before: the watch went on past the close (grpc.aio's close cancels only calls it finds in a
  // task of their own; this fixture's timeout then ended it), and the wait raised CancelledError,
  // its task counting a cancel it had caught long before (Task.cancelling() stays up).
  t.like(out['watch'], { code: 'CANCELLED', method: 'Watch', client_closed: true });
  t.like(out['wait'], { code: 'UNAVAILABLE', method: 'Wait', client_closed: true });
});
