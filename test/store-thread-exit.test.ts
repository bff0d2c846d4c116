// Review s19 finding A7: with --store-timeout the store is on a thread of its own, and a thread
// that ended (an uncaught error in it, process.exit in it) was reported as a state dir deleted or
// replaced, after waiting out --store-timeout and calling it a stall. The thread is ended for real
// here, in the agent process, through a test hook only the thread reads
// (PIDFD_AGENT_TEST_STORE_THREAD_DIES): the loss is told as what it is, at once, and the agent
// still stops, failed, for a fresh one that takes its processes back.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import test from 'ava';
import { AgentCallError, State, status } from '../clients/ts/src/index.js';
import { readBootId } from '../src/process/lifecycle/proc-fs.js';
import { ThreadedStore, type ThreadExit } from '../src/store/threaded-store.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { procState, tempDir } from './helpers/harness.js';

const STORE_TIMEOUT_MS = 5000;

const threadEnds = test.macro({
  async exec(t, how: string, exitCode: number, error: RegExp | undefined) {
    const dir = tempDir('pidfd-agent-thread-exit-');
    const stateDir = join(dir, 'state');
    const trigger = join(dir, 'die');
    const args = ['--state-dir', stateDir, '--store-timeout', `${STORE_TIMEOUT_MS}ms`];
    const agent = await startAgentProcess(args, [], { ...process.env, PIDFD_AGENT_TEST_STORE_THREAD_DIES: trigger });
    t.teardown(() => agent.stop());
    const { process: running } = await agent.client.spawn({ argv: ['sleep', '600'] });
    t.teardown(() => process.kill(running!.pid, 'SIGKILL'));
    const exited = new Promise<number | null>((resolve) => agent.child.once('exit', (code) => resolve(code)));

    // The next commit (this spawn's) is the thread's last request.
    writeFileSync(trigger, how);
    const at = performance.now();
    const refused = await t.throwsAsync(agent.client.spawn({ argv: ['true'] }, { deadline: Date.now() + 2 * STORE_TIMEOUT_MS }), { instanceOf: AgentCallError });
    const ms = performance.now() - at;
    t.like(refused, { code: status.UNAVAILABLE, reason: 'STORE_WRITE_FAILED' });
    t.true(ms < STORE_TIMEOUT_MS / 2, `refused at once, not at --store-timeout (${Math.round(ms)} ms)`);
    t.is(await exited, 1, 'it stops, failed: its DaemonSet starts a fresh agent');

    const log = agent.stderr();
    const lost = log.split('\n').filter((l) => l.includes('"event":"store_lost"'));
    t.is(lost.length, 1, log);
    const line = JSON.parse(lost[0]!) as Record<string, unknown>;
    t.like(line, { reason: 'store_thread_exited', exit_code: exitCode });
    t.regex(String(line.note), /thread ended/);
    t.notRegex(String(line.note), /deleted or replaced/);
    if (error === undefined) t.false('error' in line);
    else t.regex(String(line.error), error);
    t.false(log.includes('"event":"store_stalled"'), 'not taken for a stall');
    t.regex(log, /"event":"stopping".*"why":"store_lost","reason":"store_thread_exited"/);

    // Its processes run on, and a fresh agent on the state dir takes them back.
    t.true(['S', 'R'].includes(procState(running!.pid) ?? ''), 'the process it managed runs on');
    const fresh = await startAgentProcess(args);
    t.teardown(() => fresh.stop());
    t.is((await fresh.client.get({ handle: running!.handle })).process!.state, State.STATE_RUNNING);
  },
  title: (_, how: string) => `a store thread that ends (${how}) is told as such, at once, and the agent stops for a fresh one`,
});

test(threadEnds, 'throw', 1, /the store thread dies/);
test(threadEnds, 'exit 3', 3, undefined);

test('a store thread ended from outside, running none of its own code (as out of memory), is told by its exit', async (t) => {
  const stateDir = join(tempDir('pidfd-agent-thread-exit-'), 'state');
  const ended: ThreadExit[] = [];
  const { store } = await ThreadedStore.open({ stateDir, bootId: readBootId(), recover: false, timeoutMs: 1000, onError: () => undefined, watch: { stalled: () => undefined, recovered: () => undefined, ended: (e) => void ended.push(e) } });
  t.teardown(() => store.close());
  store.commit('before', 0, () => {});
  t.true(store.inPlace());
  await (store as unknown as { worker: Worker }).worker.terminate();
  await store.ended();
  t.deepEqual(ended, [{ code: 1 }]);
  t.deepEqual(store.exit, { code: 1 });
  t.false(store.inPlace(), 'nothing more can be recorded: the agent stops');
  const e = t.throws(() => store.commit('after', 0, () => {}), { name: 'StoreWriteFailed' });
  t.regex(String((e as Error).cause), /thread has ended \(exit code 1\)/);
});
