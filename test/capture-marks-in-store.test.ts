// Session 22: a captured stream's marks are kept in the state store, in the commit of its start
// and then one store write per 64 MiB, so that a capture file that cannot be written
// (STATE_DIR/capture out of inodes while the store still commits) no longer leaves a process
// that no later agent reads, and a store write that fails holds the stream at its mark instead of
// reading on with no mark kept. Agents run under the C subreaper (test/fixtures/subreaper.c).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import Database from 'better-sqlite3';
import { OutputMode, OutputStream, State, type AgentClient } from '../clients/ts/src/index.js';
import { STORE_FILE } from '../src/store/sqlite-store.js';
import { eventually, sleep, tempDir } from './helpers/harness.js';
import { ext4Mount } from './helpers/frozen-mount.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

const STDOUT = OutputStream.OUTPUT_STREAM_STDOUT;
const MIB = 1024 * 1024;
/** The first mark (capture-files.ts MARK_STEP_BYTES): a stream's offsets after a crash resume there. */
const FIRST_MARK = 64 * MIB;
const RING = 256 * 1024;
const WHILE_DOWN = 200_000;

interface Read {
  text: string;
  lost: number;
  /** Offset of the first byte read, and one past the last. */
  first: number;
  end: number;
}

async function readAll(client: AgentClient, handle: string, offset = 0, deadline?: number): Promise<Read> {
  let text = '';
  let lost = 0;
  let first = -1;
  let end = offset;
  for await (const r of client.readOutput({ handle, stream: STDOUT, offset }, deadline === undefined ? undefined : { deadline })) {
    if (first < 0) first = r.offset;
    text += Buffer.from(r.data).toString('latin1');
    lost += r.lostBytes;
    end = r.offset + r.data.length;
  }
  return { text, lost, first, end };
}

/** STATE_DIR/capture as a tmpfs with no inode left: no capture file can be created there. */
function captureDirWithoutInodes(t: ExecutionContext, stateDir: string): string {
  const capture = join(stateDir, 'capture');
  mkdirSync(capture, { recursive: true, mode: 0o700 });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,nr_inodes=1,mode=0700', 'tmpfs', capture]);
  t.teardown(() => execFileSync('umount', ['-l', capture]));
  t.throws(() => writeFileSync(join(capture, 'probe'), ''), { code: 'ENOSPC' }, 'the capture dir takes no file');
  return capture;
}

/** Starts argv's follower from `offset` and resolves with what it read once `until` is in it. */
function follow(client: AgentClient, handle: string, offset: number, until: string): Promise<string> {
  return (async () => {
    let text = '';
    for await (const r of client.readOutput({ handle, stream: STDOUT, offset, follow: true })) {
      text += Buffer.from(r.data).toString();
      if (text.includes(until)) return text;
    }
    return text;
  })();
}

test.serial('a capture dir that takes no file: the Spawn succeeds, and after kill -9 the next agent reads the pipe again, offsets above all handed out', async (t) => {
  const dir = tempDir('pidfd-agent-marks-');
  const stateDir = join(dir, 'state');
  const capture = captureDirWithoutInodes(t, stateDir);
  const go = join(dir, 'go');
  const wrote = join(dir, 'wrote');
  const go2 = join(dir, 'go2');
  const script = `echo before; while [ ! -e ${go} ]; do sleep 0.02; done; head -c ${WHILE_DOWN} /dev/zero | tr '\\0' x; echo; echo during; touch ${wrote}; while [ ! -e ${go2} ]; do sleep 0.02; done; echo after; exec sleep 600`;

  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const { process: p } = await first.client.spawn({ argv: ['sh', '-c', script], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE, ringBytes: RING } });
  const handle = p!.handle;
  await eventually('before to be captured', async () => (await readAll(first.client, handle)).text === 'before\n');
  t.deepEqual(readdirSync(capture), [], 'no capture file could be written');
  await first.crash();
  writeFileSync(go, '');
  await eventually('the process to write its output with no agent running', () => existsSync(wrote), 20_000);

  const second = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => second.stop());
  t.is((await second.client.get({ handle })).process!.state, State.STATE_RUNNING);
  const kept = await readAll(second.client, handle);
  t.is(kept.text, `${'x'.repeat(WHILE_DOWN)}\nduring\n`, 'what the pipe kept while no agent ran is read');
  t.is(kept.first, FIRST_MARK, 'the stream resumes at the mark the store kept: no offset is handed out again');
  t.is(kept.lost, FIRST_MARK, 'everything below it reads as lost');
  const after = follow(second.client, handle, kept.end, 'after\n');
  writeFileSync(go2, '');
  t.is(await after, 'after\n', 'and it goes on');
  await second.client.signal({ handle, signal: 'SIGKILL' });
  await second.client.wait({ handle });
});

test.serial('a request_id Spawn with a capture dir that takes no file starts once: retries before and after kill -9 replay it, and its output is read on', async (t) => {
  const dir = tempDir('pidfd-agent-marks-id-');
  const stateDir = join(dir, 'state');
  captureDirWithoutInodes(t, stateDir);
  const starts = join(dir, 'starts');
  const go = join(dir, 'go');
  const script = `echo started >> ${starts}; echo first; while [ ! -e ${go} ]; do sleep 0.02; done; echo second; exec sleep 600`;
  const request = { argv: ['sh', '-c', script], requestId: 'job-1', stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE, ringBytes: RING } };

  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const spawned = await first.client.spawn(request);
  const handle = spawned.process!.handle;
  const retried = await first.client.spawn(request);
  t.is(retried.process!.handle, handle, 'a retry replays the one start');
  t.true(retried.replayed);
  await eventually('first to be captured', async () => (await readAll(first.client, handle)).text === 'first\n');
  await first.crash();

  const second = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => second.stop());
  const again = await second.client.spawn(request);
  t.is(again.process!.handle, handle, 'after the restart too');
  t.true(again.replayed);
  const { processes } = await second.client.list({});
  t.deepEqual(processes.map((q) => [q.handle, q.state]), [[handle, State.STATE_RUNNING]], 'one record, running: nothing refused left behind');
  t.is(readFileSync(starts, 'utf8'), 'started\n', 'the command ran once');
  const on = follow(second.client, handle, FIRST_MARK, 'second\n');
  writeFileSync(go, '');
  t.is(await on, 'second\n', 'its output is read by the restarted agent, from the mark on');
  await second.client.signal({ handle, signal: 'SIGKILL' });
  await second.client.wait({ handle });
});

const STORE_TIMEOUT_MS = 1000;

test.serial('a mark the store cannot take holds the stream at it (the agent answers, the child waits); once the store takes it the stream goes on, and the store has a mark above it', async (t) => {
  const dir = tempDir('pidfd-agent-marks-hold-');
  let agent: RestartableAgent | undefined;
  const { mount, freeze, thaw } = ext4Mount(t, async () => {
    if (agent !== undefined) await agent.crash().catch(() => undefined);
  });
  const stateDir = join(mount, 'state');
  const go = join(dir, 'go');
  const wrote = join(dir, 'wrote');
  // 62 MiB before the freeze (below where the first mark is moved), 4 MiB after it: across the mark.
  const BEFORE = 62 * MIB;
  const AFTER = 4 * MIB;
  const script = `head -c ${BEFORE} /dev/zero; touch ${join(dir, 'ready')}; while [ ! -e ${go} ]; do sleep 0.02; done; head -c ${AFTER} /dev/zero | tr '\\0' y; echo end; touch ${wrote}; exec sleep 600`;
  agent = await RestartableAgent.start(reaper, dir, stateDir, ['--store-timeout', `${STORE_TIMEOUT_MS}ms`]);
  const client = agent.client;
  const { process: p } = await client.spawn({ argv: ['sh', '-c', script], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  const handle = p!.handle;
  await eventually('the first 62 MiB to be read', async () => existsSync(join(dir, 'ready')) && (await readAll(client, handle, BEFORE - 1)).end === BEFORE, 30_000);

  freeze();
  writeFileSync(go, '');
  // The mark's write runs past --store-timeout, later ones are refused at once: the stream holds.
  await sleep(3 * STORE_TIMEOUT_MS);
  const held = await readAll(client, handle, BEFORE, 2000);
  t.true(held.end <= FIRST_MARK, `the stream stopped at its mark (${held.end} <= ${FIRST_MARK})`);
  t.true(held.end > BEFORE, 'what lay below the mark was taken in');
  t.false(existsSync(wrote), 'the child waits on its full pipe');
  t.is((await client.get({ handle }, { deadline: 2000 })).process!.state, State.STATE_RUNNING, 'the agent answers meanwhile');
  // The ring (1 MiB) may no longer hold all of it: what it holds is the child's bytes, in place.
  t.true(/^y+$/.test(held.text) && held.first + held.text.length === held.end, 'the bytes taken in are the ones written after the freeze');

  thaw();
  await eventually('the stream to go on once the store takes the mark', () => existsSync(wrote), 20_000);
  const total = BEFORE + AFTER + 'end\n'.length;
  await eventually('everything to be read', async () => (await readAll(client, handle, total - 4)).end === total, 20_000);
  const tail = await readAll(client, handle, total - 4);
  t.is(tail.text, 'end\n', 'every offset in place: nothing was lost or read twice');
  await agent.crash();
  agent = undefined;
  const db = new Database(join(stateDir, STORE_FILE), { readonly: true, fileMustExist: true });
  try {
    const mark = db.prepare('SELECT mark FROM captures WHERE handle = ? AND stream = ?').pluck().get(handle, 'stdout') as number;
    t.true(mark >= total, `the store's mark ${mark} is above every offset handed out (${total})`);
  } finally {
    db.close();
  }
});
