// Issue 5: the handle table survives the agent. Agents run as subprocesses under a C subreaper
// (test/fixtures/subreaper.c), which reaps what a dead agent leaves behind, as a node's init does.
import test from 'ava';
import Database from 'better-sqlite3';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentCallError, ExitReason, State, status, type AgentClient, type Process } from '../clients/ts/src/index.js';
import { STORE_FILE } from '../src/store/sqlite-store.js';
import { HANDOVER_SOCKET } from '../src/handover/outgoing.js';
import { runInPidNamespace } from './fixtures/pid-namespace.js';
import { AGENT_BIN } from './helpers/agent-process.js';
import { eventually, procState, startHarness } from './helpers/harness.js';
import { pool } from './helpers/events.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
const dirs: string[] = [];
test.after.always(async () => {
  await reaper.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-restart-'));
  dirs.push(dir);
  return dir;
}

async function refusal(t: { fail: (m: string) => void }, call: Promise<unknown>): Promise<AgentCallError | undefined> {
  try {
    await call;
    t.fail('expected the call to be refused');
    return undefined;
  } catch (e) {
    if (!(e instanceof AgentCallError)) throw e;
    return e;
  }
}

const get = async (client: AgentClient, handle: string): Promise<Process> => (await client.get({ handle })).process!;

test.serial('after a SIGKILL the restarted agent answers every handle: re-adopted, lost, or exited as before', async (t) => {
  const dir = tempDir();
  const stateDir = join(dir, 'state');
  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const done = await first.client.spawn({ argv: ['sh', '-c', 'exit 7'], labels: { set: 'done' } });
  await first.client.wait({ handle: done.process!.handle });
  const keyed = await first.client.spawn({ argv: ['sleep', '30'], requestId: 'restart-key' });
  // 100 that outlive the restart (sleep 30), then 100 that will exit while no agent runs (sleep 4).
  // Last, and with a second to spare: under load, 200 spawns took over 2 s.
  const kinds = [...Array<string>(100).fill('long'), ...Array<string>(100).fill('short')];
  const spawned = await pool(kinds, 16, async (kind) => {
    const { process: p } = await first.client.spawn({ argv: ['sleep', kind === 'short' ? '4' : '30'], labels: { set: kind } });
    return p!;
  });
  // Its deadline runs out while no agent runs, or just after: the new agent enforces it.
  const timed = await first.client.spawn({ argv: ['sleep', '30'], timeout: { seconds: 2, nanos: 0 } });
  const before = await first.client.list({});
  t.is(before.processes.filter((p) => p.state === State.STATE_RUNNING).length, 202, 'all running before the crash');
  const started = Date.now();
  await first.crash();
  const shorts = spawned.filter((p) => p.labels['set'] === 'short');
  const longs = spawned.filter((p) => p.labels['set'] === 'long');
  // The subreaper reaps each one as it exits: then no agent can ever learn its status.
  for (const p of shorts) t.is(await reaper.wait(p.pid, 10_000), 'exit 0');

  const second = await RestartableAgent.start(reaper, dir, stateDir);
  t.log(`down for ${Date.now() - started} ms`);
  const after = await second.client.list({});
  t.is(after.processes.length, before.processes.length, 'every handle is still known');
  t.true(after.sequence > before.sequence, `numbering continues (${before.sequence} → ${after.sequence})`);
  for (const p of shorts) {
    const now = await get(second.client, p.handle);
    t.is(now.state, State.STATE_EXITED);
    t.true(now.exit?.statusLost, 'status lost');
    t.is(now.exit?.code, undefined);
    t.is(now.exit?.signal, undefined);
    const e = await refusal(t, second.client.signal({ handle: p.handle, signal: 'KILL' }));
    t.is(e?.code, status.FAILED_PRECONDITION);
  }
  for (const p of longs) {
    const now = await get(second.client, p.handle);
    t.is(now.state, State.STATE_RUNNING);
    t.is(now.pid, p.pid);
    t.is(now.pidfsInode, p.pidfsInode);
    t.deepEqual(now.argv, ['sleep', '30']);
  }
  const exited = await get(second.client, done.process!.handle);
  t.is(exited.exit?.code, 7, 'an exit recorded before the crash is kept');
  t.false(exited.exit?.statusLost);
  const replay = await second.client.spawn({ argv: ['sleep', '30'], requestId: 'restart-key' });
  t.true(replay.replayed, 'request_id still replays');
  t.is(replay.process!.handle, keyed.process!.handle);
  const stale = await refusal(t, (async () => {
    for await (const _ of second.client.watch({ afterSequence: before.sequence })) break;
  })());
  t.is(stale?.code, status.OUT_OF_RANGE, 'a cursor from before the restart is refused, not silently gapped');

  // The re-adopted processes are no longer the agent's children: their real exits come from
  // PIDFD_INFO_EXIT once the subreaper has reaped them.
  const ends = await pool([...longs, keyed.process!], 16, async (p) => {
    const waited = second.client.wait({ handle: p.handle });
    await second.client.signal({ handle: p.handle, signal: 'TERM' });
    return (await waited).process!.exit;
  });
  t.true(ends.every((e) => e?.signal === 15 && !e.statusLost), 'every re-adopted process reports SIGTERM');
  const deadline = (await second.client.wait({ handle: timed.process!.handle })).process!.exit;
  t.like(deadline, { signal: 15, reason: ExitReason.EXIT_REASON_TIMEOUT }, 'the deadline survived the restart');
  await second.stop();
});

test.serial('kill -9 during spawns never corrupts the store, and every acknowledged spawn is in it', async (t) => {
  const dir = tempDir();
  const stateDir = join(dir, 'state');
  const acked = new Set<string>();
  const ROUNDS = 8;
  for (let round = 0; round < ROUNDS; round++) {
    const agent = await RestartableAgent.start(reaper, dir, stateDir);
    let stop = false;
    const clients = Array.from({ length: 8 }, async () => {
      while (!stop) {
        try {
          const { process: p } = await agent.client.spawn({ argv: ['true'], labels: { round: String(round) } });
          acked.add(p!.handle);
        } catch {
          return; // the agent is gone
        }
      }
    });
    await new Promise((r) => setTimeout(r, 150 + Math.random() * 250));
    await agent.crash();
    stop = true;
    await Promise.all(clients);
    const db = new Database(join(stateDir, STORE_FILE));
    try {
      t.is(db.pragma('integrity_check', { simple: true }), 'ok', `round ${round}`);
      const stored = new Set(db.prepare('SELECT handle FROM processes').pluck().all() as string[]);
      const missing = [...acked].filter((h) => !stored.has(h));
      t.deepEqual(missing, [], `round ${round}: acknowledged spawns missing from the store`);
    } finally {
      db.close();
    }
  }
  t.log(`${acked.size} spawns acknowledged over ${ROUNDS} crashes`);
  const last = await RestartableAgent.start(reaper, dir, stateDir);
  const { processes } = await last.client.list({});
  const known = new Set(processes.map((p) => p.handle));
  t.true([...acked].every((h) => known.has(h)), 'and the restarted agent serves them all');
  t.true(processes.every((p) => p.state === State.STATE_EXITED), 'none is left running');
  await last.stop();
});

test.serial('a second agent on the same state dir is refused when the first does not hand over', async (t) => {
  const dir = tempDir();
  const stateDir = join(dir, 'state');
  const first = await RestartableAgent.start(reaper, dir, stateDir);
  // Without its handover socket the first agent cannot be asked (handover.test.ts covers asking).
  rmSync(join(stateDir, HANDOVER_SOCKET));
  const socket = `unix://${join(tempDir(), 'agent.sock')}`;
  const second = await reaper.start([process.execPath, AGENT_BIN, '--listen', socket, '--state-dir', stateDir]);
  t.is(await reaper.wait(second, 60_000), 'exit 1');
  t.regex(reaper.stderr, /the state store is in use by another agent/);
  t.is((await first.client.list({})).processes.length, 0, 'the first one still serves');
  await first.stop();
});

/** Our own live (not zombie) children running `comm`, from /proc. For test assertions only. */
function liveChildren(comm: string): number {
  let n = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (name === comm && Number(rest[1]) === process.pid && rest[0] !== 'Z') n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

test.serial('a Spawn that cannot be made durable (disk full) is UNAVAILABLE and leaves nothing running', async (t) => {
  const mount = join(tempDir(), 'small');
  mkdirSync(mount);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=128k', 'tmpfs', mount]);
  t.teardown(() => execFileSync('umount', ['-l', mount]));
  const h = await startHarness({ stateDir: join(mount, 'state') });
  t.teardown(() => h.close());
  const started: Process[] = [];
  let refused: unknown;
  for (let i = 0; i < 1000 && refused === undefined; i++) {
    try {
      // Without a request id: the child has started before the record fails, and is killed.
      const labels = { a: 'x'.repeat(1000), b: 'y'.repeat(1000), c: 'z'.repeat(1000) };
      started.push((await h.client.spawn({ argv: ['sleep', '30'], labels }, { autoRequestId: false })).process!);
    } catch (e) {
      refused = e;
    }
  }
  if (!(refused instanceof AgentCallError)) return t.fail(`expected a refusal, got ${String(refused)} after ${started.length} spawns`);
  t.is(refused.code, status.UNAVAILABLE);
  t.is(refused.reason, 'STORE_WRITE_FAILED');
  const e = await refusal(t, h.client.get({ handle: refused.info['handle'] ?? '' }));
  t.is(e?.code, status.NOT_FOUND, 'the handle was never handed out');
  await eventually('the unrecorded process to be killed and reaped', () => liveChildren('sleep') === started.length);
  for (const p of started) await h.client.signal({ handle: p.handle, signal: 'KILL' });
  t.log(`${started.length} spawns recorded before the disk was full`);
});

test('a PID recycled while the agent was down is never re-adopted', async (t) => {
  const run = await runInPidNamespace('restart-reuse', [], 90_000);
  t.log(run.stdout.trimEnd());
  t.is(run.code, 0, run.stderr);
  const m = /^victims: (\d+), recycled: (\d+), re-adopted: (\d+), innocents hit: (\d+), survivor re-adopted: (yes|no)$/m.exec(run.stdout);
  t.truthy(m, run.stdout);
  const [victims, recycled, readopted, hit] = (m ?? []).slice(1, 5).map(Number);
  t.true(victims! > 0 && recycled === victims, 'every victim PID was recycled to an innocent process');
  t.is(readopted, 0);
  t.is(hit, 0);
  t.is(m?.[5], 'yes', 'the control process that did survive is re-adopted');
});

test.serial('after a restart --retention-max drops the oldest exits first, not a process found gone', async (t) => {
  const dir = tempDir();
  const stateDir = join(dir, 'state');
  const args = ['--retention-max', '2'];
  const first = await RestartableAgent.start(reaper, dir, stateDir, args);
  const exited = async (code: number) => {
    const { process: p } = await first.client.spawn({ argv: ['sh', '-c', `exit ${code}`] });
    await first.client.wait({ handle: p!.handle });
    return p!.handle;
  };
  const [a, b] = [await exited(3), await exited(4)];
  const { process: c } = await first.client.spawn({ argv: ['sleep', '600'] });
  await first.crash();
  // It dies while no agent runs (killed by the test, which knows it has not been reaped: the
  // subreaper reaps it next), and the next agent finds it gone.
  process.kill(c!.pid, 'SIGKILL');
  await eventually('the subreaper to reap it', () => procState(c!.pid) === undefined);
  const second = await RestartableAgent.start(reaper, dir, stateDir, args);
  t.teardown(() => second.stop());
  // Three exits against a cap of two: the oldest goes, not the news of the one found gone.
  await eventually('retention applied', async () => (await second.client.list({})).processes.length === 2);
  t.is((await refusal(t, second.client.get({ handle: a })))?.code, status.NOT_FOUND);
  t.is((await second.client.get({ handle: b })).process?.exit?.code, 4);
  t.true((await second.client.get({ handle: c!.handle })).process?.exit?.statusLost);
});
