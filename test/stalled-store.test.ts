// Review s18-B finding 3: a state dir whose file system stalls must not stall the agent. The
// store is on an ext4 image frozen with fsfreeze(8) under a running agent: its writes then sleep
// in the kernel (uninterruptibly) until the thaw. The store's thread sleeps there, the event
// loop does not: past --store-timeout writes fail as on a full disk, reads, signals and deadlines
// go on, and after the thaw the exits held back are recorded, told, and durable.
import test from 'ava';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { AgentCallError, EventType, ExitReason, OutputMode, OutputStream, State, status, type AgentClient, type Event } from '../clients/ts/src/index.js';
import { newHandleId } from '../src/process/lifecycle/handle.js';
import { readBootId } from '../src/process/lifecycle/proc-fs.js';
import type { StartedProcess } from '../src/process/process-store.js';
import { SERVICE_NAME } from '../src/service/server.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import { ThreadedStore, type StallWatch } from '../src/store/threaded-store.js';
import { ROOT, startAgentProcess, type AgentProcess } from './helpers/agent-process.js';
import { eventually, procState, sleep, tempDir } from './helpers/harness.js';
import { ext4Mount } from './helpers/frozen-mount.js';

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

test.serial('a frozen state dir: health NOT_SERVING, reads, signals and deadlines go on, writes fail fast; after the thaw every exit is recorded', async (t) => {
  const pids: number[] = [];
  let agent: AgentProcess | undefined;
  const { mount, freeze, thaw } = ext4Mount(t, async () => {
    await agent?.stop();
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  const stateDir = join(mount, 'state');
  const probe = `unix://${join(tempDir('pidfd-agent-stall-probe-'), 'health.sock')}`;
  const args = ['--state-dir', stateDir, '--store-timeout', `${STORE_TIMEOUT_MS}ms`, '--health-listen', probe];
  agent = await startAgentProcess(args);
  const client = agent.client;
  const spawn = async (argv: string[], timeoutS?: number) => {
    const { process: p } = await client.spawn({ argv, ...(timeoutS === undefined ? {} : { timeout: { seconds: timeoutS, nanos: 0 } }) });
    pids.push(p!.pid);
    return p!;
  };
  const released = await spawn(['true']);
  await client.wait({ handle: released.handle });
  const deadline = await spawn(['sleep', '100'], 3);
  const signalled = await spawn(['sleep', '100']);
  const { sequence } = await client.list({});
  const watch = watchAll(client, sequence);
  t.teardown(() => watch.stop());
  // Last, so that it exits (2 s in) only once the state dir is frozen.
  const exiting = await spawn(['sh', '-c', 'sleep 2; exit 7']);

  freeze();
  const frozenAt = performance.now();
  // The first write after the freeze (the exit of `exiting`, 2 s in) waits for the bound.
  await eventually('the API NOT_SERVING', async () => (await health(agent!.address, SERVICE_NAME)) === 'NOT_SERVING', 10_000);
  const notServingMs = performance.now() - frozenAt;
  t.true(notServingMs < 2000 + STORE_TIMEOUT_MS + 2000, `NOT_SERVING ${Math.round(notServingMs)} ms after the freeze`);
  t.is(await health(agent.address, ''), 'SERVING', 'the server as a whole answers: a liveness probe does not restart it');
  t.is(await health(probe, SERVICE_NAME), 'NOT_SERVING', 'the probe socket says the same of the API');
  t.is(await health(probe, ''), 'SERVING');
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

  thaw();
  await eventually('the API SERVING again', async () => (await health(agent!.address, SERVICE_NAME)) === 'SERVING', 10_000);
  t.is(await health(probe, SERVICE_NAME), 'SERVING', 'on the probe socket too');
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

test.serial('a spawn with captured output as the first write into a frozen state dir is refused; the agent answers meanwhile', async (t) => {
  let agent: AgentProcess | undefined;
  const { mount, freeze, thaw } = ext4Mount(t, async () => {
    await agent?.stop();
  });
  agent = await startAgentProcess(['--state-dir', join(mount, 'state'), '--store-timeout', `${STORE_TIMEOUT_MS}ms`]);
  const client = agent.client;
  const captured = { stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } };
  const before = (await client.spawn({ argv: ['sleep', '100'], ...captured })).process!;
  t.teardown(() => void client.signal({ handle: before.handle, signal: 'KILL' }).catch(() => undefined));

  freeze();
  // Its capture files would be the first write: they are written only once the start is recorded.
  const spawning = client.spawn({ argv: ['echo', 'frozen'], ...captured }, { deadline: 3 * STORE_TIMEOUT_MS + 2000 });
  const refused = await t.throwsAsync(spawning, { instanceOf: AgentCallError });
  t.like(refused, { code: status.UNAVAILABLE, reason: 'STORE_WRITE_FAILED' });
  t.is((await client.get({ handle: before.handle }, { deadline: 2000 })).process!.state, State.STATE_RUNNING, 'the agent answers');
  const again = await t.throwsAsync(client.spawn({ argv: ['echo', 'again'], ...captured }, { deadline: 2000 }), { instanceOf: AgentCallError });
  t.is(again?.reason, 'STORE_WRITE_FAILED');
  // A release of a process with captured output removes its files: refused first, by the store.
  const release = await t.throwsAsync(client.release({ handle: before.handle }, { deadline: 2000 }), { instanceOf: AgentCallError });
  t.is(release?.reason, 'STORE_WRITE_FAILED');

  thaw();
  await eventually('the API SERVING again', async () => (await health(agent!.address, SERVICE_NAME)) === 'SERVING', 10_000);
  const { process: p } = await client.spawn({ argv: ['echo', 'thawed'], ...captured });
  await client.wait({ handle: p!.handle });
  let text = '';
  for await (const r of client.readOutput({ handle: p!.handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) text += Buffer.from(r.data).toString();
  t.is(text, 'thawed\n');
});

test.serial('a commit past its bound that lands after the thaw is written back: what was refused is not on disk', async (t) => {
  let store: ThreadedStore | undefined;
  const { mount, freeze, thaw } = ext4Mount(t, async () => {
    store?.close();
    await store?.ended();
  });
  const stateDir = join(mount, 'state');
  const errors: string[] = [];
  let stalls = 0;
  let recovered!: (info: Parameters<StallWatch['recovered']>[0]) => void;
  const back = new Promise<Parameters<StallWatch['recovered']>[0]>((resolve) => (recovered = resolve));
  const timeoutMs = 300;
  const options = { stateDir, bootId: readBootId(), recover: false, timeoutMs, onError: (what: string, e: unknown) => void errors.push(`${what}: ${String(e)}`) };
  store = (await ThreadedStore.open({ ...options, watch: { stalled: () => void stalls++, recovered } })).store;
  const record = (i: number): StartedProcess => ({ handle: newHandleId(), identity: { pid: 100 + i, pidfsInode: 2n ** 63n + BigInt(i) }, spec: { argv: ['sleep', String(i)], labels: { i: String(i) }, adopted: false }, startedAt: 1_700_000_000_000 + i });
  const intent = (requestId: string) => ({ owner: 'unix:uid=7', requestId, handle: newHandleId(), argv: ['x'], createdAt: 5 });
  const [running, exited, refused] = [record(0), record(1), record(2)];
  const exit = { termination: { exitCode: 3 }, reason: 'exited' as const, exitedAt: 50 };
  store.commit('before', 0, (w) => {
    w.started(running);
    w.started(exited);
    w.exited(exited.handle, exit);
    w.intended(intent('kept'));
  });

  freeze();
  const startedAt = performance.now();
  const stalled = t.throws(() => store!.commit('the stalled one', 10_000, (w) => {
    w.started(refused);
    w.released(exited.handle);
    w.settled('unix:uid=7', 'kept');
    w.intended(intent('refused'));
  }), { name: 'StoreWriteFailed' });
  const waited = performance.now() - startedAt;
  t.true(waited >= timeoutMs - 10 && waited < timeoutMs + 1000, `failed after ${Math.round(waited)} ms`);
  t.regex(stalled!.message, /did not finish within 300 ms/);
  t.true(store.stalled());
  t.is(stalls, 1);
  const fastAt = performance.now();
  t.throws(() => store!.commit('while stalled', 0, (w) => w.exited(running.handle, exit)), { name: 'StoreWriteFailed' });
  t.true(performance.now() - fastAt < 50, 'refused at once, not after another wait');
  t.true(store.inPlace(), 'a stalled thread is not a lost store');

  thaw();
  const info = await back;
  t.like(info, { what: 'the stalled one', landed: true, undone: true });
  t.false(store.stalled());
  store.commit('after', 0, (w) => w.exited(running.handle, exit));
  store.close();
  await store.ended();
  store = undefined;

  const reopened = new SqliteStore(stateDir, options.bootId, () => undefined);
  t.teardown(() => reopened.close());
  const loaded = new Map(reopened.load().map((s) => [s.handle, s]));
  t.false(loaded.has(refused.handle), 'the refused start is not recorded');
  t.like(loaded.get(exited.handle), { state: 'exited', exit }, 'the refused release is not done');
  t.like(loaded.get(running.handle), { state: 'exited', pidfsInode: 2n ** 63n });
  t.deepEqual(reopened.intents().map((i) => i.requestId), ['kept'], 'the refused settlement is not done, the refused intent not recorded');
  t.true(reopened.sequences.after >= 10_000, 'numbers only grow: the landed reservation stays');
  t.true(errors.some((e) => e.startsWith('record the stalled one')), errors.join('\n'));
});

test.serial('a wake-up that is not an answer (a late notify of the previous request) is not taken for a stall', async (t) => {
  const stateDir = join(tempDir('pidfd-agent-store-thread-'), 'state');
  let stalls = 0;
  const { store } = await ThreadedStore.open({ stateDir, bootId: readBootId(), recover: false, timeoutMs: 5000, onError: () => undefined, watch: { stalled: () => void stalls++, recovered: () => undefined } });
  t.teardown(() => store.ended());
  t.teardown(() => store.close());
  // What the store's thread does when it is descheduled between its answer and its notify, and
  // the next request is already waiting: a notify on the state word while it still reads BUSY.
  // Here another thread notifies it over and over.
  const words = (store as unknown as { words: Int32Array }).words;
  const notifier = new Worker('const { workerData: w } = require("node:worker_threads"); for (;;) Atomics.notify(w, 0);', { eval: true, workerData: words });
  t.teardown(() => notifier.terminate());
  let n = 0;
  for (const until = performance.now() + 2000; performance.now() < until && stalls === 0; n++) {
    store.commit('a block of event sequences', n * 5000, () => {});
  }
  t.is(stalls, 0, `taken for a stall after ${n} commits`);
  t.false(store.stalled());
});

test.serial('a store thread that wakes late serves every request queued meanwhile: an agent stopped then still ends', async (t) => {
  const stateDir = join(tempDir('pidfd-agent-store-thread-'), 'state');
  const tasks = () => new Set(readdirSync('/proc/self/task'));
  const before = tasks();
  const { store } = await ThreadedStore.open({ stateDir, bootId: readBootId(), recover: false, timeoutMs: 100, onError: () => undefined, watch: { stalled: () => undefined, recovered: () => undefined } });
  const started = [...tasks()].filter((tid) => !before.has(tid));
  t.is(started.length, 1, 'the store thread is the one thread the open started');
  store.commit('warm-up', 0, () => {});
  // Descheduled past its bound (starved, or a pod's CPU throttled): stopped by ptrace, not its process.
  const stopper = spawn('/usr/bin/python3', [join(ROOT, 'test/fixtures/stop-thread.py'), started[0]!], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => stopper.kill());
  const lines = createInterface({ input: stopper.stdout })[Symbol.asyncIterator]();
  t.is((await lines.next()).value, 'stopped');
  const late: StartedProcess = { handle: newHandleId(), identity: { pid: 4242, pidfsInode: 7n }, spec: { argv: ['late'], labels: {}, adopted: false }, startedAt: 1_700_000_000_000 };
  t.throws(() => store.commit('the late one', 1, (w) => w.started(late)), { name: 'StoreWriteFailed' });
  store.close(); // the agent stops while the thread has not even seen the commit
  stopper.stdin.write('\n');
  t.is((await lines.next()).value, 'resumed');
  const ended = await Promise.race([store.ended().then(() => 'ended'), sleep(5000).then(() => 'still running after 5 s')]);
  t.is(ended, 'ended', 'the close queued behind the late commit was served');
  const reopened = new SqliteStore(stateDir, readBootId(), () => undefined);
  t.teardown(() => reopened.close());
  t.deepEqual(reopened.load().map((r) => r.handle), [], 'the late commit landed and was written back before the close');
});
