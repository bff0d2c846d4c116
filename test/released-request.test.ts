// Review finding A2: a request_id stays taken after its record is released (by Release, by
// release_on_exit, by retention): a retry that comes later starts nothing and is told so
// (ALREADY_EXISTS / REQUEST_RELEASED, with the handle it had), across a restart and a handover,
// until --retention-ttl after the release; at most --retention-max such keys are kept. Real agents
// under the C subreaper, real gRPC on unix sockets; starts are counted by the commands themselves.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AgentCallError, AgentClient, isRetryable, status } from '../clients/ts/src/index.js';
import { eventually, refusal, sleep, startHarness, tempDir } from './helpers/harness.js';
import { startRig, starts, UUID } from './helpers/lost-reply.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

/** A command that appends its pid to `marker` and exits. */
const once = (marker: string): string[] => ['sh', '-c', `echo $$ >> ${marker}`];

function isReleasedRefusal(t: ExecutionContext, e: AgentCallError, handle: string, requestId: string): void {
  t.is(e.code, status.ALREADY_EXISTS, e.message);
  t.is(e.reason, 'REQUEST_RELEASED');
  t.is(e.info['handle'], handle);
  t.is(e.info['field'], 'request_id');
  t.true(e.details.includes(`request_id "${requestId}"`) && e.details.includes(`handle ${handle}`), e.details);
  t.false(isRetryable(e), 'final: a retry cannot start it either');
}

async function setup(t: ExecutionContext, args: readonly string[] = []) {
  const dir = tempDir('pidfd-agent-released-request-');
  const stateDir = join(dir, 'state');
  const agent = await RestartableAgent.start(reaper, dir, stateDir, args);
  const marker = join(dir, 'starts');
  return { dir, stateDir, agent, marker };
}

/** Spawns `argv` under `requestId`, waits for its exit and releases it: its handle. */
async function startAndRelease(client: AgentClient, argv: string[], requestId: string): Promise<string> {
  const { process: p, replayed } = await client.spawn({ argv, requestId });
  if (replayed) throw new Error(`${requestId} was replayed`);
  await client.wait({ handle: p!.handle });
  await client.release({ handle: p!.handle });
  return p!.handle;
}

/** The tombstones the stopped agent's store holds, by request_id. */
function storedTombstones(stateDir: string): string[] {
  const db = new Database(join(stateDir, 'agent.db'), { readonly: true });
  try {
    return (db.prepare('SELECT request_id FROM tombstones ORDER BY released_at').pluck().all() as string[]);
  } finally {
    db.close();
  }
}

test.serial('a retry after Release starts nothing: ALREADY_EXISTS / REQUEST_RELEASED with the handle, as a SpawnBatch item too', async (t) => {
  const { agent, marker } = await setup(t);
  t.teardown(() => agent.stop());
  const handle = await startAndRelease(agent.client, once(marker), 'released-1');
  isReleasedRefusal(t, await refusal(agent.client.spawn({ argv: once(marker), requestId: 'released-1' })), handle, 'released-1');

  const { results } = await agent.client.spawnBatch({ requests: [{ argv: once(marker), requestId: 'released-1' }, { argv: ['true'], requestId: 'fresh-1' }] });
  t.is(results[0]!.error?.code, status.ALREADY_EXISTS);
  t.is(results[0]!.error?.reason, 'REQUEST_RELEASED');
  t.is(results[0]!.error?.metadata['handle'], handle);
  t.truthy(results[1]!.spawned?.process, 'the other item starts as usual');
  await sleep(200); // a second start would have written its pid by now
  t.is(starts(marker).length, 1, 'started once');
});

test.serial('a different argv under a released key is INVALID_ARGUMENT, as for any reused key', async (t) => {
  const { agent, marker } = await setup(t);
  t.teardown(() => agent.stop());
  await startAndRelease(agent.client, once(marker), 'released-2');
  const e = await refusal(agent.client.spawn({ argv: [...once(marker), 'other'], requestId: 'released-2' }));
  t.is(e.code, status.INVALID_ARGUMENT, e.message);
  t.is(e.info['field'], 'request_id');
  t.is(starts(marker).length, 1);
});

test.serial('release_on_exit and a lost reply: the client’s automatic retry is refused as released, the command ran once', async (t) => {
  const { dir, agent, proxy } = await startRig(t, reaper);
  t.teardown(() => agent.stop());
  const client = new AgentClient(proxy.address);
  t.teardown(() => client.close());
  await client.list({});
  const marker = join(dir, 'starts');
  const labels = { case: 'released-on-exit' };
  proxy.hold();
  const spawning = client.spawn({ argv: once(marker), releaseOnExit: true, labels });
  await eventually('the command to start', () => starts(marker).length === 1);
  // Someone else collects the exit (a Wait by its handle): that delivery releases it.
  const handle = await eventually('the start to be recorded', async () => (await agent.client.list({ labels })).processes[0]?.handle);
  await agent.client.wait({ handle });
  await eventually('the release', async () => (await agent.client.list({ labels })).processes.length === 0);
  proxy.drop();

  const e = await refusal(spawning);
  t.regex(e.requestId ?? '', UUID, 'the retry went under the id the client made up');
  isReleasedRefusal(t, e, handle, e.requestId!);
  await sleep(200);
  t.is(starts(marker).length, 1, 'started once');
  t.is((await agent.client.list({ labels })).processes.length, 0);
});

test.serial('a released key stays taken across a crash, a restart with the store on its thread, and a handover', async (t) => {
  const { dir, stateDir, agent, marker } = await setup(t);
  const handle = await startAndRelease(agent.client, once(marker), 'released-3');
  // Released on exit through the delivery of its Wait, then the agent killed.
  const { process: p } = await agent.client.spawn({ argv: once(marker), requestId: 'released-4', releaseOnExit: true });
  await agent.client.wait({ handle: p!.handle });
  await eventually('the release on exit', async () => (await agent.client.list({})).processes.length === 0);
  await agent.crash();

  const second = await RestartableAgent.start(reaper, dir, stateDir, ['--store-timeout', '5s']);
  isReleasedRefusal(t, await refusal(second.client.spawn({ argv: once(marker), requestId: 'released-3' })), handle, 'released-3');
  isReleasedRefusal(t, await refusal(second.client.spawn({ argv: once(marker), requestId: 'released-4' })), p!.handle, 'released-4');
  // A release by this agent, on its store's thread, then a handover to a third.
  const third = await startAndRelease(second.client, once(marker), 'released-5');
  const { agent: successor } = await RestartableAgent.takeOver(reaper, dir, stateDir, second);
  t.teardown(() => successor.stop());
  isReleasedRefusal(t, await refusal(successor.client.spawn({ argv: once(marker), requestId: 'released-3' })), handle, 'released-3');
  isReleasedRefusal(t, await refusal(successor.client.spawn({ argv: once(marker), requestId: 'released-5' })), third, 'released-5');
  await sleep(200);
  t.is(starts(marker).length, 3, 'each command started once');
});

test.serial('a released key is free again --retention-ttl after its release, also when that falls while no agent runs', async (t) => {
  const { dir, stateDir, agent, marker } = await setup(t, ['--retention-ttl', '2s']);
  await startAndRelease(agent.client, once(marker), 'expiring-1');
  t.is((await refusal(agent.client.spawn({ argv: once(marker), requestId: 'expiring-1' }))).reason, 'REQUEST_RELEASED');
  const again = await eventually('the key to be free', async () => {
    try {
      return await agent.client.spawn({ argv: once(marker), requestId: 'expiring-1' });
    } catch (e) {
      if (e instanceof AgentCallError && e.reason === 'REQUEST_RELEASED') return undefined;
      throw e;
    }
  });
  t.false(again.replayed, 'started anew');
  await eventually('the second start', () => starts(marker).length === 2);
  await agent.client.wait({ handle: again.process!.handle });
  await agent.client.release({ handle: again.process!.handle });
  await agent.stop();
  t.deepEqual(storedTombstones(stateDir), ['expiring-1'], 'the second release is kept');

  await sleep(2500);
  const next = await RestartableAgent.start(reaper, dir, stateDir, ['--retention-ttl', '2s']);
  t.teardown(() => next.stop());
  const third = await next.client.spawn({ argv: once(marker), requestId: 'expiring-1' });
  t.false(third.replayed, 'expired while no agent ran: started anew');
  await eventually('the third start', () => starts(marker).length === 3);
});

test.serial('at most --retention-max released keys are kept, in what the agent refuses and in its store; the oldest go first', async (t) => {
  const { stateDir, agent, marker } = await setup(t, ['--retention-max', '5']);
  const keys = Array.from({ length: 30 }, (_, i) => `capped-${i}`);
  // The first five released by retention (the cap on exited records), the rest by Release.
  const exited: string[] = [];
  for (const key of keys.slice(0, 10)) {
    const { process: p } = await agent.client.spawn({ argv: once(marker), requestId: key });
    await agent.client.wait({ handle: p!.handle });
    exited.push(p!.handle);
  }
  await eventually('retention to release the oldest exited records', async () => (await agent.client.list({})).processes.length === 5);
  for (const handle of exited.slice(5)) await agent.client.release({ handle });
  for (const key of keys.slice(10)) await startAndRelease(agent.client, once(marker), key);
  for (const key of keys.slice(-5)) t.is((await refusal(agent.client.spawn({ argv: once(marker), requestId: key }))).reason, 'REQUEST_RELEASED', key);
  const freed = await agent.client.spawn({ argv: once(marker), requestId: keys[0]! });
  t.false(freed.replayed, 'the oldest key was pushed out: free again');
  await agent.client.wait({ handle: freed.process!.handle });
  await agent.client.release({ handle: freed.process!.handle });
  await agent.stop();
  const stored = storedTombstones(stateDir);
  t.is(stored.length, 5, stored.join(' '));
  t.deepEqual(stored, [...keys.slice(-4), keys[0]!], 'the newest releases');
});

test.serial('Adopt under a released key adopts nothing again; another pid under it is INVALID_ARGUMENT', async (t) => {
  const { agent } = await setup(t);
  t.teardown(() => agent.stop());
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.teardown(() => child.kill('SIGKILL'));
  const { process: p } = await agent.client.adopt({ pid: child.pid!, requestId: 'adopted-1' });
  await agent.client.release({ handle: p!.handle });
  const e = await refusal(agent.client.adopt({ pid: child.pid!, requestId: 'adopted-1' }));
  t.is(e.code, status.ALREADY_EXISTS, e.message);
  t.is(e.reason, 'REQUEST_RELEASED');
  t.is(e.info['handle'], p!.handle);
  t.is((await refusal(agent.client.adopt({ pid: process.pid, requestId: 'adopted-1' }))).code, status.INVALID_ARGUMENT);
  t.is((await agent.client.list({})).processes.length, 0, 'not adopted again');
});

test('retention below what a client retry needs is said at start: released request ids would be forgotten too soon', async (t) => {
  const warned = async (overrides: { retentionTtlMs?: number; retentionMax?: number }) => {
    const h = await startHarness(overrides);
    try {
      return h.logs.filter((l) => l.event === 'retention_warning').map((l) => String(l.fields['note']));
    } finally {
      await h.close();
    }
  };
  t.deepEqual(await warned({}), [], 'the defaults (1 h, 10,000) keep keys long enough');
  for (const small of [{ retentionMax: 0 }, { retentionMax: 5 }, { retentionTtlMs: 2_000 }]) {
    const notes = await warned(small);
    t.is(notes.length, 1, JSON.stringify(small));
    t.regex(notes[0] ?? '', /retry after a lost reply can start its command again/);
  }
});
