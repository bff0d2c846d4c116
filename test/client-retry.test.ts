// D8 (review s18-D): a Spawn whose reply is lost may already have started its process, so only a
// retry under the same request_id is safe. The TypeScript client gives every spawn one, and
// retries under it on a dropped connection or a handover. A proxy between client and agent holds
// the reply back while the command starts, then cuts the connection: the worst moment.
import { join } from 'node:path';
import test from 'ava';
import { InterceptingCall, type Interceptor } from '@grpc/grpc-js';
import { AgentCallError, AgentClient, isRetryable, status, type RetryPolicy } from '../clients/ts/src/index.js';
import { runCliText } from './helpers/cli.js';
import { eventually, sleep, startHarness, tempDir } from './helpers/harness.js';
import { marking, startRig, starts, recorded, UUID } from './helpers/lost-reply.js';
import { RefusingServer } from './helpers/refusing-server.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

/** A client that reaches the rig's agent through its proxy, connected before the proxy holds anything. */
async function setup(t: import('ava').ExecutionContext) {
  const rig = await startRig(t, reaper);
  const client = new AgentClient(rig.proxy.address);
  t.teardown(() => client.close());
  await client.list({});
  return { ...rig, client };
}

test.serial('a Spawn whose reply is lost as the agent is killed is retried under its request id after the restart: the same process, started once', async (t) => {
  const { dir, stateDir, agent, proxy, client } = await setup(t);
  const marker = join(dir, 'starts');
  proxy.hold();
  const spawning = client.spawn({ argv: marking(marker), labels: { case: 'killed' } });
  const pid = (await eventually('the command to start', () => (starts(marker).length === 1 ? starts(marker) : undefined)))[0]!;
  await recorded(agent, { case: 'killed' });
  await agent.crash();
  const second = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => second.stop());
  proxy.drop();

  const res = await spawning;
  t.regex(res.requestId, UUID, 'the client made up a request id');
  t.true(res.replayed, 'the retry was answered with the process the first attempt started');
  t.is(res.process!.pid, pid);
  const { processes } = await second.client.list({ labels: { case: 'killed' } });
  t.deepEqual(processes.map((p) => p.handle), [res.process!.handle]);
  await sleep(200); // a second start would have written its pid by now
  t.deepEqual(starts(marker), [pid], 'started once');
  await second.client.signal({ handle: res.process!.handle, signal: 'KILL' });
});

test.serial('without a request id (autoRequestId: false) the same lost reply is not retried, and resending it starts a second process', async (t) => {
  const { dir, agent, proxy, client } = await setup(t);
  t.teardown(() => agent.stop());
  const marker = join(dir, 'starts');
  proxy.hold();
  const spawning = client.spawn({ argv: marking(marker) }, { autoRequestId: false });
  await eventually('the command to start', () => starts(marker).length === 1);
  proxy.drop();
  const e = await t.throwsAsync(spawning, { instanceOf: AgentCallError });
  t.is(e!.code, status.UNAVAILABLE, e!.message);
  t.is(e!.requestId, '');
  t.false(isRetryable(e), 'a transport failure of a spawn without request id is not safe to retry');
  const again = await client.spawn({ argv: marking(marker) }, { autoRequestId: false });
  await eventually('the second start', () => starts(marker).length === 2);
  t.is(starts(marker)[1], again.process!.pid, 'the resend started the command a second time');
  for (const pid of starts(marker)) process.kill(pid, 'SIGKILL');
});

test.serial('a SpawnBatch whose reply is lost is retried with every item under its request id, the caller’s own kept', async (t) => {
  const { dir, agent, proxy, client } = await setup(t);
  t.teardown(() => agent.stop());
  const markers = [0, 1, 2].map((i) => join(dir, `starts-${i}`));
  proxy.hold();
  const batch = client.spawnBatch({ requests: markers.map((m, i) => ({ argv: marking(m), requestId: i === 0 ? 'mine-0' : '' })) });
  await eventually('every command to start', () => markers.every((m) => starts(m).length === 1));
  proxy.drop();
  const res = await batch;
  t.is(res.requestIds[0], 'mine-0');
  t.regex(res.requestIds[1]!, UUID);
  t.regex(res.requestIds[2]!, UUID);
  t.not(res.requestIds[1], res.requestIds[2]);
  res.results.forEach((r, i) => {
    t.true(r.spawned?.replayed, `item ${i} replayed`);
    t.deepEqual(starts(markers[i]!), [r.spawned!.process!.pid], `item ${i} started once`);
  });
  for (const r of res.results) await client.signal({ handle: r.spawned!.process!.handle, signal: 'KILL' });
});

test.serial('close() with a spawn in flight ends it at once, marked clientClosed, with the request id that gets its process back on a new client', async (t) => {
  const { dir, agent, proxy, client } = await setup(t);
  t.teardown(() => agent.stop());
  const marker = join(dir, 'starts');
  const labels = { case: 'closed-in-flight' };
  proxy.hold();
  const listing = client.list({});
  const spawning = client.spawn({ argv: marking(marker), labels });
  const pid = (await eventually('the command to start', () => (starts(marker).length === 1 ? starts(marker) : undefined)))[0]!;
  await recorded(agent, labels);
  client.close();
  // The replies are held for good: only the close can end the calls.
  const ended = (call: Promise<unknown>) => Promise.race([call.then(() => 'a reply', (e: unknown) => e), sleep(1000).then(() => 'no end 1 s after the close')]);
  const [spawned, listed] = await Promise.all([ended(spawning), ended(listing)]);
  if (!(spawned instanceof AgentCallError) || !(listed instanceof AgentCallError)) return t.fail(`the calls ended with ${String(spawned)}, ${String(listed)}`);
  // What the caller needs of a spawn that may have started: that it may have, and its id.
  t.like(spawned, { code: status.UNAVAILABLE, reason: '', method: 'Spawn', clientClosed: true });
  t.regex(spawned.requestId!, UUID);
  t.true(isRetryable(spawned));
  t.is(spawned.message, 'UNAVAILABLE: no reply, the outcome is unknown (the client was closed with the call in flight)');
  t.like(listed, { code: status.UNAVAILABLE, method: 'List', clientClosed: true });

  const again = new AgentClient(proxy.address);
  t.teardown(() => again.close());
  const res = await again.spawn({ argv: marking(marker), labels, requestId: spawned.requestId! });
  t.true(res.replayed, 'the resend on a new client was answered with the process the first call started');
  t.is(res.process!.pid, pid);
  await sleep(200); // a second start would have written its pid by now
  t.deepEqual(starts(marker), [pid], 'started once');
  await again.signal({ handle: res.process!.handle, signal: 'KILL' });
});

const FAST: RetryPolicy = { attempts: 4, initialBackoffMs: 20, maxBackoffMs: 40, windowMs: 10_000 };

test.serial('retries are bounded by attempts, time and the deadline, keep the request id, and only where isRetryable allows', async (t) => {
  const server = await RefusingServer.start(join(tempDir('pidfd-agent-refusing-'), 'agent.sock'));
  t.teardown(() => server.close());
  const client = new AgentClient(server.address, undefined, undefined, { retry: FAST });
  t.teardown(() => client.close());

  const e = await t.throwsAsync(client.spawn({ argv: ['true'] }), { instanceOf: AgentCallError });
  t.is(server.count('Spawn'), 4, 'the policy’s attempts');
  const ids = new Set(server.attempts.map((a) => a.requestIds[0]));
  t.deepEqual([...ids], [e!.requestId], 'every attempt under the one request id the error names');

  // The window: no retry starts 300 ms after the first failure; backoffs are 50 ms at most.
  await t.throwsAsync(client.spawn({ argv: ['true'] }, { retry: { attempts: 1000, initialBackoffMs: 50, maxBackoffMs: 50, windowMs: 300 } }));
  const windowed = server.count('Spawn') - 4;
  t.true(windowed >= 2 && windowed <= 1 + 300 / 25, `${windowed} attempts in a 300 ms window`);
  // The deadline bounds them all together.
  const before = server.count('Spawn');
  await t.throwsAsync(client.spawn({ argv: ['true'] }, { deadline: 200, retry: { attempts: 1000, initialBackoffMs: 50, maxBackoffMs: 50, windowMs: 60_000 } }));
  t.true(server.count('Spawn') - before <= 1 + 200 / 25);

  // Without a request id, a transport failure is final; a handover refusal is not.
  await t.throwsAsync(client.spawn({ argv: ['true'] }, { autoRequestId: false }));
  t.is(server.attempts.at(-1)!.requestIds[0], '');
  const unkeyed = server.count('Spawn');
  await t.throwsAsync(client.spawn({ argv: ['true'] }, { autoRequestId: false }));
  t.is(server.count('Spawn'), unkeyed + 1);

  // Other calls are retried only when asked, and only if safe.
  await t.throwsAsync(client.get({ handle: 'h' }));
  t.is(server.count('Get'), 1, 'a read is not retried unless the call asks');
  await t.throwsAsync(client.get({ handle: 'h' }, { retry: FAST }));
  t.is(server.count('Get'), 1 + 4, 'a read is safe to retry');
  await t.throwsAsync(client.wait({ handle: 'h' }, { retry: FAST }));
  t.is(server.count('Wait'), 1, 'a Wait whose reply was lost may have released a release_on_exit handle: never retried');
  await t.throwsAsync(client.signal({ handle: 'h' }, { retry: FAST }));
  t.is(server.count('Signal'), 1, 'a signal whose reply was lost may have been sent: never retried');
  await t.throwsAsync(client.stop({ handle: 'h' }, { retry: FAST }));
  t.is(server.count('Stop'), 1);

  server.refusal = { code: status.UNAVAILABLE, reason: 'HANDOVER' };
  await t.throwsAsync(client.signal({ handle: 'h' }, { retry: FAST }));
  t.is(server.count('Signal'), 1 + 4, 'a signal the agent refused for a handover was not sent: safe');
  await t.throwsAsync(client.wait({ handle: 'h' }, { retry: FAST }));
  t.is(server.count('Wait'), 1 + 4, 'a Wait the agent refused for a handover returned nothing: safe');
  await t.throwsAsync(client.stop({ handle: 'h' }, { retry: FAST }));
  t.is(server.count('Stop'), 1 + 1, 'a Stop in flight at a handover may have signalled: never retried');
  const unkeyedRefused = server.count('Spawn');
  await t.throwsAsync(client.spawn({ argv: ['true'] }, { autoRequestId: false }));
  t.is(server.count('Spawn'), unkeyedRefused + 4, 'a spawn refused for a handover started nothing');

  for (const [code, reason] of [[status.UNAVAILABLE, 'STORE_WRITE_FAILED'], [status.ABORTED, 'OUTCOME_UNKNOWN'], [status.DEADLINE_EXCEEDED, '']] as const) {
    server.refusal = { code, reason };
    const n = server.count('Spawn');
    const err = await t.throwsAsync(client.spawn({ argv: ['true'] }), { instanceOf: AgentCallError });
    t.false(isRetryable(err), `${status[code]} ${reason}`);
    t.is(server.count('Spawn'), n + 1, `${status[code]} ${reason} is not retried`);
  }

  const off = new AgentClient(server.address, undefined, undefined, { retry: false });
  t.teardown(() => off.close());
  server.refusal = { code: status.UNAVAILABLE, reason: '' };
  const n = server.count('Spawn');
  await t.throwsAsync(off.spawn({ argv: ['true'] }));
  t.is(server.count('Spawn'), n + 1, 'retry: false on the client');
});

test.serial('an abort or close() during a backoff ends the call at once, with its last failure', async (t) => {
  const server = await RefusingServer.start(join(tempDir('pidfd-agent-refusing-'), 'agent.sock'));
  t.teardown(() => server.close());
  const client = new AgentClient(server.address, undefined, undefined, { retry: { attempts: 10, initialBackoffMs: 60_000, maxBackoffMs: 60_000, windowMs: 600_000 } });
  t.teardown(() => client.close());
  const abort = new AbortController();
  const aborted = client.spawn({ argv: ['true'] }, { signal: abort.signal });
  const closed = Array.from({ length: 20 }, () => client.spawn({ argv: ['true'] }));
  await eventually('the first attempts', () => server.count('Spawn') === 21);
  await sleep(300); // their failures reach the client, which then waits out a 30-60 s backoff
  abort.abort();
  const e = await t.throwsAsync(aborted, { instanceOf: AgentCallError });
  t.is(e!.code, status.UNAVAILABLE, 'the last failure');
  t.false(e!.clientClosed, 'the caller ended it, not a close');
  client.close();
  for (const c of closed) {
    // What the caller needs of a spawn that may have started: its id, to resend on a new client.
    const failure = (await t.throwsAsync(c, { instanceOf: AgentCallError }))!;
    t.like(failure, { code: status.UNAVAILABLE, reason: '', method: 'Spawn', clientClosed: true });
    t.regex(failure.requestId!, UUID);
    t.true(isRetryable(failure));
    t.regex(failure.message, /^UNAVAILABLE: .*\(the client was closed during the retry backoff\)$/);
  }
  t.is(server.count('Spawn'), 21, 'no attempt after the abort or the close');
});

test.serial('pidfdctl names the request id of a spawn it could not confirm, to rerun it safely', async (t) => {
  const server = await RefusingServer.start(join(tempDir('pidfd-agent-refusing-'), 'agent.sock'));
  t.teardown(() => server.close());
  const made = await runCliText(server.address, ['spawn', '--', 'true']);
  t.is(made.code, 1);
  const id = server.attempts[0]!.requestIds[0]!;
  t.regex(id, UUID);
  t.is(made.stderr, `pidfdctl: UNAVAILABLE: refused; it may have started: rerun with --request-id ${id}\n`);
  t.true(server.attempts.every((a) => a.requestIds[0] === id), `${server.attempts.length} attempts under the one id`);
  const given = await runCliText(server.address, ['spawn', '--request-id', 'job-7', '--', 'true']);
  t.regex(given.stderr, /rerun with --request-id job-7\n$/);
  server.refusal = { code: status.ABORTED, reason: 'OUTCOME_UNKNOWN' };
  const unknown = await runCliText(server.address, ['spawn', '--request-id', 'job-7', '--', 'true']);
  t.is(unknown.stderr, 'pidfdctl: ABORTED: refused (OUTCOME_UNKNOWN)\n', 'nothing to rerun');
});

test.serial("close() when the agent's refusal is already in: the caller gets that refusal, not 'outcome unknown'", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  // grpc-js hands a received status to the call's callback through a few async hops; a close()
  // in between (say, after another call's reply from the same read) cancels nothing. The
  // interceptor closes the client at that moment: the status is in, the callback not yet run.
  let client: AgentClient | undefined;
  const closeOnStatus: Interceptor = (options, next) =>
    new InterceptingCall(next(options), {
      start: (metadata, _listener, go) =>
        go(metadata, {
          onReceiveStatus: (s, pass) => {
            client!.close();
            pass(s);
          },
        }),
    });
  client = new AgentClient(h.address, undefined, { interceptors: [closeOnStatus] }, { retry: false });
  const e = await t.throwsAsync(client.spawn({ argv: ['true'], cwd: 'relative' }), { instanceOf: AgentCallError });
  t.like(e, { code: status.INVALID_ARGUMENT, reason: 'INVALID_ARGUMENT', clientClosed: false, info: { field: 'cwd' } });
  t.false(isRetryable(e!));
});
