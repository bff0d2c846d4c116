// Review s18-B finding 3: a state dir whose file system stalls must not stall the agent. The
// store is on an ext4 image frozen with fsfreeze(8) under a running agent: its writes then sleep
// in the kernel (uninterruptibly) until the thaw. The store's thread sleeps there, the event
// loop does not: past --store-timeout writes fail as on a full disk, reads, signals and deadlines
// go on, and after the thaw the exits held back are recorded, told, and durable.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { AgentCallError, EventType, ExitReason, State, status, type AgentClient, type Event } from '../clients/ts/src/index.js';
import { SERVICE_NAME } from '../src/service/server.js';
import { startAgentProcess, type AgentProcess } from './helpers/agent-process.js';
import { eventually, procState, tempDir } from './helpers/harness.js';

const Health = makeGenericClientConstructor(healthService, 'Health');

/** grpc.health.v1 Check of one service ('' for the server as a whole). */
function health(address: string, which: string): Promise<string> {
  const client = new Health(address, credentials.createInsecure());
  const check = (client as unknown as { check: (req: object, opts: object, cb: (e: Error | null, res?: { status: string | number }) => void) => void }).check;
  return new Promise<string>((resolve, reject) => {
    check.call(client, { service: which }, { deadline: Date.now() + 2000 }, (e, res) => {
      client.close();
      if (e) reject(e);
      else resolve(String(res!.status));
    });
  });
}

/** Every event of a Watch opened now, until the test ends it. */
function watchAll(client: AgentClient, after: number): { events: Event[]; stop: () => void } {
  const abort = new AbortController();
  const events: Event[] = [];
  void (async () => {
    try {
      for await (const e of client.watch({ afterSequence: after }, { signal: abort.signal })) events.push(e);
    } catch {
      // ended by the test
    }
  })();
  return { events, stop: () => abort.abort() };
}

const gone = (pid: number) => procState(pid) === undefined;
const STORE_TIMEOUT_MS = 1000;

test('a frozen state dir: health NOT_SERVING, reads, signals and deadlines go on, writes fail fast; after the thaw every exit is recorded', async (t) => {
  const dir = tempDir('pidfd-agent-frozen-');
  const image = join(dir, 'state.img');
  const mount = join(dir, 'mnt');
  mkdirSync(mount);
  execFileSync('truncate', ['-s', '64M', image]);
  execFileSync('mkfs.ext4', ['-q', image]);
  execFileSync('mount', ['-o', 'loop', image, mount]);
  const stateDir = join(mount, 'state');
  const pids: number[] = [];
  let agent: AgentProcess | undefined;
  t.teardown(async () => {
    // Thawed first: until then neither the agent (on the old code) nor umount can finish.
    try {
      execFileSync('fsfreeze', ['-u', mount], { stdio: 'ignore' });
    } catch {
      // not frozen
    }
    await agent?.stop();
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    execFileSync('umount', [mount]);
    rmSync(dir, { recursive: true, force: true });
  });
  const args = ['--state-dir', stateDir, '--store-timeout', `${STORE_TIMEOUT_MS}ms`];
  agent = await startAgentProcess(args);
  const client = agent.client;
  const spawn = async (argv: string[], timeoutS?: number) => {
    const { process: p } = await client.spawn({ argv, ...(timeoutS === undefined ? {} : { timeout: { seconds: timeoutS, nanos: 0 } }) });
    pids.push(p!.pid);
    return p!;
  };
  const released = await spawn(['true']);
  await client.wait({ handle: released.handle });
  const deadline = await spawn(['sleep', '100'], 2);
  const exiting = await spawn(['sh', '-c', 'sleep 1; exit 7']);
  const signalled = await spawn(['sleep', '100']);
  const { sequence } = await client.list({});
  const watch = watchAll(client, sequence);
  t.teardown(() => watch.stop());

  execFileSync('fsfreeze', ['-f', mount]);
  const frozenAt = performance.now();
  // The first write after the freeze (the exit of `exiting`, a second in) waits for the bound.
  await eventually('the API NOT_SERVING', async () => (await health(agent!.address, SERVICE_NAME)) === 'NOT_SERVING', 10_000);
  const notServingMs = performance.now() - frozenAt;
  t.true(notServingMs < 1000 + STORE_TIMEOUT_MS + 2000, `NOT_SERVING ${Math.round(notServingMs)} ms after the freeze`);
  t.is(await health(agent.address, ''), 'SERVING', 'the server as a whole answers: a liveness probe does not restart it');
  t.regex(agent.stderr(), /"event":"store_stalled"/);

  // Reads answer; the exit that stalled is held back, unreported.
  const listed = await client.list({}, { deadline: 2000 });
  t.is(listed.processes.find((p) => p.handle === exiting.handle)?.state, State.STATE_RUNNING, 'its exit is not reported before the store has it');
  t.is((await client.get({ handle: signalled.handle }, { deadline: 2000 })).process!.state, State.STATE_RUNNING);
  t.true(gone(exiting.pid), 'it did exit (reaped)');
  // A signal is sent, a deadline fires: neither needs the store.
  await client.signal({ handle: signalled.handle, signal: 'KILL' }, { deadline: 2000 });
  await eventually('the signalled process gone', () => gone(signalled.pid), 5000);
  await eventually('the deadline fired', () => gone(deadline.pid), 5000);
  // Writes fail at once, as on a full disk.
  const spawnedAt = performance.now();
  const refused = await t.throwsAsync(client.spawn({ argv: ['true'] }, { deadline: 5000 }), { instanceOf: AgentCallError });
  t.like(refused, { code: status.UNAVAILABLE, reason: 'STORE_WRITE_FAILED' });
  t.true(performance.now() - spawnedAt < STORE_TIMEOUT_MS, 'refused without waiting for the bound again');
  const release = await t.throwsAsync(client.release({ handle: released.handle }, { deadline: 5000 }), { instanceOf: AgentCallError });
  t.like(release, { code: status.UNAVAILABLE, reason: 'STORE_WRITE_FAILED' });
  t.is((await client.get({ handle: released.handle })).process!.state, State.STATE_EXITED, 'a refused release changes nothing');
  t.false(watch.events.some((e) => e.type === EventType.EVENT_TYPE_EXITED), 'no exit told while the store is stalled');

  execFileSync('fsfreeze', ['-u', mount]);
  await eventually('the API SERVING again', async () => (await health(agent!.address, SERVICE_NAME)) === 'SERVING', 10_000);
  const exitOf = async (handle: string) => (await client.wait({ handle }, { deadline: 5000 })).process!.exit!;
  t.like(await exitOf(exiting.handle), { code: 7, reason: ExitReason.EXIT_REASON_EXITED });
  t.like(await exitOf(signalled.handle), { signal: 9 });
  t.like(await exitOf(deadline.handle), { signal: 15, reason: ExitReason.EXIT_REASON_TIMEOUT });
  await eventually('the EXITED events sent on the open Watch', () => watch.events.filter((e) => e.type === EventType.EVENT_TYPE_EXITED).length === 3, 5000);
  t.regex(agent.stderr(), /"event":"store_recovered"/);
  const again = await spawn(['sh', '-c', 'exit 3']);
  t.is((await exitOf(again.handle)).code, 3, 'the store takes writes again');
  await client.release({ handle: released.handle });

  // Durable: the next agent on the state dir reads the exits that happened while it was frozen.
  await agent.stop();
  agent = await startAgentProcess(args);
  const after = new Map((await agent.client.list({})).processes.map((p) => [p.handle, p]));
  t.is(after.get(exiting.handle)?.exit?.code, 7);
  t.is(after.get(signalled.handle)?.exit?.signal, 9);
  t.is(after.get(deadline.handle)?.exit?.reason, ExitReason.EXIT_REASON_TIMEOUT);
  t.false(after.has(released.handle), 'the release made after the thaw is durable');
  t.false([...after.values()].some((p) => p.exit?.statusLost), 'no exit lost');
});
