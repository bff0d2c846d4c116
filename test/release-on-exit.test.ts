// SpawnRequest.release_on_exit (issue 17): the handle is released once a Wait or Stop reply has
// carried the exit, so a Spawn+Wait cycle needs no Release. Real agent, real gRPC on a unix socket.
import test from 'ava';
import { join } from 'node:path';
import { AgentCallError, EventType, State, StdinMode, status, type AgentClient, type Event } from '../clients/ts/src/index.js';
import { eventually, refusal, startHarness, tempDir, type Harness } from './helpers/harness.js';
import { collect } from './helpers/events.js';
import { runCliText } from './helpers/cli.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

/** Resolves once Get answers NOT_FOUND / UNKNOWN_HANDLE for the handle. */
const gone = (client: AgentClient, handle: string) =>
  eventually(`${handle} released`, async () => {
    try {
      await client.get({ handle });
      return false;
    } catch (e) {
      return e instanceof AgentCallError && e.code === status.NOT_FOUND && e.reason === 'UNKNOWN_HANDLE';
    }
  });

test.serial('Waits started before the exit all get it; Watch sees EXITED then RELEASED; the handle is gone afterwards', async (t) => {
  const { sequence } = await h.client.list({});
  // It exits only once told to, after the Waits below were sent on the same connection ahead of
  // the write that lets it go (grpc-js serves a connection's streams in the order they arrive).
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'read x; exit 3'], stdin: StdinMode.STDIN_MODE_PIPE, releaseOnExit: true, labels: { test: 'release-on-exit' } });
  const handle = p!.handle;
  t.is(p!.state, State.STATE_RUNNING);
  const waits = [h.client.wait({ handle }), h.client.wait({ handle }), h.client.wait({ handle })];
  await h.client.writeStdin({ handle, data: Buffer.from('go\n') });
  for (const { process: w } of await Promise.all(waits)) {
    t.is(w!.handle, handle);
    t.is(w!.state, State.STATE_EXITED, 'the reply shows the exit, not the release that follows it');
    t.is(w!.exit?.code, 3);
  }
  await gone(h.client, handle);
  const late = await refusal(h.client.wait({ handle }));
  t.is(late.code, status.NOT_FOUND);
  t.is(late.reason, 'UNKNOWN_HANDLE');
  t.is((await refusal(h.client.release({ handle }))).reason, 'UNKNOWN_HANDLE', 'nothing left to Release');
  t.false((await h.client.list({})).processes.some((x) => x.handle === handle));

  const events = await collect(h.client, { afterSequence: sequence, handles: [handle] }, (es) => es.some((e) => e.type === EventType.EVENT_TYPE_RELEASED));
  t.deepEqual(
    events.map((e: Event) => e.type),
    [EventType.EVENT_TYPE_SPAWNED, EventType.EVENT_TYPE_EXITED, EventType.EVENT_TYPE_RELEASED],
  );
  t.is(events[1]!.process!.exit?.code, 3, 'EXITED carries the full exit');
  t.is(events[2]!.process!.state, State.STATE_RELEASED);
});

test.serial('an exit nobody collected stays EXITED until a Wait returns it; Stop delivers it too; without the flag nothing changes', async (t) => {
  const { process: quiet } = await h.client.spawn({ argv: ['true'], releaseOnExit: true });
  const exited = await eventually('the exit recorded', async () => {
    const { process: g } = await h.client.get({ handle: quiet!.handle });
    return g!.state === State.STATE_EXITED && g;
  });
  t.is(exited.exit?.code, 0);
  t.is((await h.client.get({ handle: quiet!.handle })).process!.state, State.STATE_EXITED, 'kept: no reply has carried the exit yet');
  const { process: w } = await h.client.wait({ handle: quiet!.handle });
  t.is(w!.state, State.STATE_EXITED);
  t.is(w!.exit?.code, 0);
  await gone(h.client, quiet!.handle);

  const { process: sleeper } = await h.client.spawn({ argv: ['sleep', '30'], releaseOnExit: true });
  const stopped = await h.client.stop({ handle: sleeper!.handle, signal: 'KILL' });
  t.is(stopped.process!.exit?.signal, 9);
  await gone(h.client, sleeper!.handle);

  const { process: plain } = await h.client.spawn({ argv: ['true'] });
  await h.client.wait({ handle: plain!.handle });
  t.is((await h.client.get({ handle: plain!.handle })).process!.state, State.STATE_EXITED, 'an ordinary handle stays until Release');
  await h.client.release({ handle: plain!.handle });
});

test.serial('pidfdctl spawn --release-on-exit: wait prints the exit, then the handle is gone', async (t) => {
  const spawned = await runCliText(h.address, ['spawn', '--release-on-exit', '--', 'sh', '-c', 'exit 4']);
  t.is(spawned.code, 0, spawned.stderr);
  const handle = spawned.stdout.trim();
  const waited = await runCliText(h.address, ['wait', handle]);
  t.is(waited.code, 4, waited.stderr);
  await gone(h.client, handle);
  const got = await runCliText(h.address, ['get', handle]);
  t.not(got.code, 0);
  t.regex(got.stderr, /UNKNOWN_HANDLE/);
});

test.serial('a handle released on exit stays released across a restart of the agent', async (t) => {
  const stateDir = join(tempDir('pidfd-agent-roe-'), 'state');
  const first = await startHarness({ stateDir });
  const { process: released } = await first.client.spawn({ argv: ['true'], releaseOnExit: true });
  const { process: kept } = await first.client.spawn({ argv: ['true'] });
  await first.client.wait({ handle: released!.handle });
  await first.client.wait({ handle: kept!.handle });
  await gone(first.client, released!.handle);
  await first.close();

  const second = await startHarness({ stateDir });
  try {
    const e = await refusal(second.client.get({ handle: released!.handle }));
    t.is(e.code, status.NOT_FOUND);
    t.is(e.reason, 'UNKNOWN_HANDLE');
    const { process: k } = await second.client.get({ handle: kept!.handle });
    t.is(k!.state, State.STATE_EXITED, 'the store still has the ordinary exited handle (the restart did read it)');
  } finally {
    await second.close();
  }
});
