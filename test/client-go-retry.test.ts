// D8 (review s18-D) in the Go client: Spawn and SpawnBatch get a request_id (never changing the
// caller's message) and are retried under it, so a reply lost after the command started is
// answered by the same process; other calls retry only where safe. The client's interceptor does
// it, so the generated methods themselves behave so.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { status } from '../clients/ts/src/index.js';
import { ROOT } from './helpers/agent-process.js';
import { tempDir } from './helpers/harness.js';
import { closedInFlightIsResent, lostReplyIsRetried, releasedReplyIsNotRerun, UUID } from './helpers/lost-reply.js';
import { checkHandoverRefusals, checkRefusedCalls, RefusingServer } from './helpers/refusing-server.js';
import { Subreaper } from './helpers/subreaper.js';

const run = promisify(execFile);
const BIN = join(ROOT, 'dist/bin/go-retry');

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

test.before(async () => {
  // As make go-client builds the example: GOPATH mode, offline, against Debian's packages.
  await run('make', ['-s', '--no-print-directory', 'go-client'], { cwd: ROOT });
  const env = { ...process.env, GO111MODULE: 'off', GOFLAGS: '', GOPROXY: 'off', GOPATH: `${ROOT}dist/gopath:/usr/share/gocode`, GOCACHE: `${ROOT}dist/gocache` };
  await run('go', ['build', '-o', BIN, './test/fixtures/go-retry/main.go'], { cwd: ROOT, env });
});

test.serial('Go: a Spawn whose reply is lost as the agent is killed is retried under its request id after the restart: the same process, started once', (t) =>
  lostReplyIsRetried(t, reaper, (proxy, marker) => [BIN, 'lost-reply', proxy, marker]));

test.serial('Go: a release_on_exit Spawn whose reply is lost and whose process was released meanwhile is refused on the retry (REQUEST_RELEASED), not started again', (t) =>
  releasedReplyIsNotRerun(t, reaper, (proxy, marker) => [BIN, 'released', proxy, marker]));

test.serial('Go: Close with a Spawn in flight ends it at once, marked ClientClosed, with the request id that gets its process back on a new client', (t) =>
  closedInFlightIsResent(t, reaper, (proxy, marker) => [BIN, 'closed-in-flight', proxy, marker]));

type Failure = { code: string; reason: string; method: string; request_id: string; request_ids: string[] | null; retryable: boolean; client_closed: boolean; text: string };

test.serial('Go: retries are bounded, keep the request ids, and happen only where IsRetryable allows', async (t) => {
  const server = await RefusingServer.start(join(tempDir('pidfd-agent-refusing-'), 'agent.sock'));
  t.teardown(() => server.close());
  const call = async () => JSON.parse((await run(BIN, ['refused', server.address])).stdout) as Record<string, Failure> & { template_request_id: string; closed_ms: number };
  const out = await call();
  const spawns = server.attempts.filter((a) => a.method === 'Spawn');
  t.is(spawns.length, 4 + 1 + 1 + 1, 'the keyed spawn tried 4 times, the unkeyed one once, the one on a no-retry connection once, the one closed during its backoff once');
  t.regex(out['spawn']!.request_id, UUID);
  t.deepEqual(spawns.slice(0, 4).map((a) => a.requestIds[0]), Array(4).fill(out['spawn']!.request_id));
  t.is(out.template_request_id, '', "the caller's request is left as it was");
  t.like(out['spawn'], { code: 'UNAVAILABLE', reason: '', method: 'Spawn', retryable: true });
  t.like(out['spawn_unkeyed'], { request_id: '', retryable: false });
  t.is(spawns[4]!.requestIds[0], '');
  t.regex(spawns[5]!.requestIds[0]!, UUID, 'no retry, but still a request id');
  checkRefusedCalls(t, server, out['batch']!, UUID);
  // Closed during its backoff: its last failure, which may have run on the agent, with the id to
  // resend under; not the CANCELED of an attempt on the closed connection.
  t.like(out['closed'], { code: 'UNAVAILABLE', reason: '', method: 'Spawn', retryable: true, client_closed: true });
  t.is(out['closed']!.request_id, spawns[6]!.requestIds[0]!);
  t.regex(out['closed']!.request_id, UUID);
  t.regex(out['closed']!.text, /^UNAVAILABLE: .*\(the client was closed during the retry backoff\)$/);
  t.true(out.closed_ms < 500, `it returned at the close, not after its backoff (${out.closed_ms} ms)`);
  t.false(out['spawn']!.client_closed);

  server.attempts.length = 0;
  server.refusal = { code: status.UNAVAILABLE, reason: 'HANDOVER' };
  const refused = await call();
  checkHandoverRefusals(t, server, refused['signal']!, 2);
});
