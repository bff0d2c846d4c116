// Session 22 (review of the capture marks in the store): marks the store has that may be below
// offsets already handed out are never gone on from. A handover flags the rows of streams without
// a capture file (an older successor keeps no mark for them); a restarted agent that finds rows it
// can't trust takes the pipes back and drains them, every byte lost, rather than serving offsets
// again or leaving the child blocked on a full pipe. A read-only capture dir doesn't end or block
// the agent. Agents run under the C subreaper (test/fixtures/subreaper.c).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import Database from 'better-sqlite3';
import { OutputMode, OutputStream, State, type AgentClient } from '../clients/ts/src/index.js';
import { requestHandover } from '../src/handover/incoming.js';
import { useFdPassing } from '../src/kernel/fd-passing.js';
import type { HandleId } from '../src/process/lifecycle/handle.js';
import { CaptureFiles } from '../src/process/stdio/capture-files.js';
import { CaptureMarks, MARK_RETRY_MS } from '../src/process/stdio/capture-marks.js';
import { CapturedOutput } from '../src/process/stdio/captured-output.js';
import type { ProcessStdio } from '../src/process/stdio/process-pipes.js';
import { STORE_FILE } from '../src/store/sqlite-store.js';
import { ROOT } from './helpers/agent-process.js';
import { eventually, sleep, tempDir } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

useFdPassing(join(ROOT, 'dist/lib/libpidfd-fdpass.so'));
const reaper = Subreaper.start();
test.after.always(() => reaper.close());

const STDOUT = OutputStream.OUTPUT_STREAM_STDOUT;
const MIB = 1024 * 1024;
/** The first mark (capture-files.ts MARK_STEP_BYTES). */
const FIRST_MARK = 64 * MIB;

interface Read {
  text: string;
  lost: number;
  first: number;
  end: number;
}

async function readAll(client: AgentClient, handle: string, offset = 0): Promise<Read> {
  let text = '';
  let lost = 0;
  let first = -1;
  let end = offset;
  for await (const r of client.readOutput({ handle, stream: STDOUT, offset })) {
    if (first < 0) first = r.offset;
    text += Buffer.from(r.data).toString('latin1');
    lost += r.lostBytes;
    end = r.offset + r.data.length;
  }
  return { text, lost, first, end };
}

/** STATE_DIR/capture on a tmpfs of its own (`options`: nr_inodes=1 takes no file). */
function captureMount(t: ExecutionContext, stateDir: string, options: string): string {
  const capture = join(stateDir, 'capture');
  mkdirSync(capture, { recursive: true, mode: 0o700 });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `${options},mode=0700`, 'tmpfs', capture]);
  t.teardown(() => execFileSync('umount', ['-l', capture]));
  return capture;
}

/** The `filed` column of the handle's stdout row: 0/1 file absent/there, 2 flagged at a handover, 3 drained. */
function filedColumn(stateDir: string, handle: string): number | undefined {
  const db = new Database(join(stateDir, STORE_FILE), { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT filed FROM captures WHERE handle = ? AND stream = ?').pluck().get(handle, 'stdout') as number | undefined;
  } finally {
    db.close();
  }
}

const script = (dir: string, bytes: number) =>
  `echo start; while [ ! -e ${join(dir, 'go')} ]; do sleep 0.02; done; echo after; head -c ${bytes} /dev/zero; touch ${join(dir, 'wrote')}; exec sleep 600`;

test.serial('a handover of a stream without a capture file, to a successor that keeps no mark in the store (an older agent): the next agent serves nothing at an offset that successor may have served, and drains the pipe', async (t) => {
  const dir = tempDir('pidfd-agent-uncertain-older-');
  const stateDir = join(dir, 'state');
  captureMount(t, stateDir, 'size=1m,nr_inodes=1');
  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const { process: p } = await first.client.spawn({ argv: ['sh', '-c', script(dir, 8 * MIB)], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  const handle = p!.handle;
  await eventually('start to be captured', async () => (await readAll(first.client, handle)).text === 'start\n');

  // What an older successor does to the state dir: takes the snapshot (the pipe, the ring's end),
  // then leaves the store's rows as they are; with no file it kept no mark and may have read on
  // past the store's. Here it takes over and goes away.
  const snapshot = await requestHandover(stateDir, true);
  snapshot!.close();
  t.not(await reaper.wait(first.pid, 30_000), 'timeout', 'the first agent handed over');
  first.client.close();
  t.is(filedColumn(stateDir, handle), 2, 'the handover flagged the rows: a restarted agent must not trust their mark');

  await drainedAfterRestart(t, dir, stateDir, handle, 'nothing is served: every offset past the stored mark may have been served with other bytes by that successor');
});

/** A restarted agent takes the pipe back and drains it, serving nothing, for good. */
async function drainedAfterRestart(t: ExecutionContext, dir: string, stateDir: string, handle: string, why: string): Promise<void> {
  let next: RestartableAgent | undefined = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => next?.stop());
  writeFileSync(join(dir, 'go'), '');
  await eventually('the child to write everything (its pipe drained)', () => existsSync(join(dir, 'wrote')), 20_000);
  t.is((await next.client.get({ handle })).process!.state, State.STATE_RUNNING);
  t.is((await readAll(next.client, handle)).text, '', why);
  await next.crash();
  t.is(filedColumn(stateDir, handle), 3, 'the rows say the stream is only drained, for the next agent too');
  next = await RestartableAgent.start(reaper, dir, stateDir);
  await next.client.signal({ handle, signal: 'SIGKILL' });
  await next.client.wait({ handle });
  const read = await eventually('end-of-file', async () => {
    const r = await readAll(next!.client, handle);
    return r.lost > 0 ? r : undefined;
  });
  t.is(read!.text, '', 'nor by the next agent');
  // Each agent that drains counts on from the stored mark: what it drained is lost, never served.
  t.true(read!.lost >= FIRST_MARK, `the bytes below the stored mark read as lost (${read!.lost})`);
}

test.serial('a handover between agents that keep marks in the store: the successor clears the flag, and after its kill -9 the next agent resumes at the mark', async (t) => {
  const dir = tempDir('pidfd-agent-uncertain-new-');
  const stateDir = join(dir, 'state');
  captureMount(t, stateDir, 'size=1m,nr_inodes=1');
  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const { process: p } = await first.client.spawn({ argv: ['sh', '-c', script(dir, 1000)], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  const handle = p!.handle;
  await eventually('start to be captured', async () => (await readAll(first.client, handle)).text === 'start\n');
  const { agent: second } = await RestartableAgent.takeOver(reaper, dir, stateDir, first);
  t.is((await readAll(second.client, handle)).text, 'start\n', 'the successor serves the ring');
  await second.crash();
  t.is(filedColumn(stateDir, handle), 0, 'the successor cleared the flag the handover set');

  const third = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => third.stop());
  writeFileSync(join(dir, 'go'), '');
  await eventually('the child to write everything', () => existsSync(join(dir, 'wrote')), 20_000);
  const read = await eventually('after to be read', async () => {
    const r = await readAll(third.client, handle);
    return r.text.startsWith('after\n') ? r : undefined;
  });
  t.is(read!.first, FIRST_MARK, 'resumed at the stored mark');
  await third.client.signal({ handle, signal: 'SIGKILL' });
  await third.client.wait({ handle });
});

test.serial('the store says there is a file and it is empty (a crash before it was written): the restarted agent drains the pipe, serving nothing, and the child does not block', async (t) => {
  const dir = tempDir('pidfd-agent-uncertain-empty-');
  const stateDir = join(dir, 'state');
  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const { process: p } = await first.client.spawn({ argv: ['sh', '-c', script(dir, 8 * MIB)], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  const handle = p!.handle;
  await eventually('start to be captured', async () => (await readAll(first.client, handle)).text === 'start\n');
  t.deepEqual(readdirSync(join(stateDir, 'capture')), [`${handle}.json`], 'the file is replaced whole: no temporary one is left');
  writeFileSync(join(stateDir, 'capture', `${handle}.json`), '');
  await first.crash();

  await drainedAfterRestart(t, dir, stateDir, handle, 'nothing is served: the marks may be below what an older agent served');
});

test.serial('a capture dir remounted read-only: the agent goes on past the mark (the file can be neither replaced nor removed), a restart starts, and resumes above the store\'s mark', async (t) => {
  const dir = tempDir('pidfd-agent-uncertain-ro-');
  const stateDir = join(dir, 'state');
  const capture = captureMount(t, stateDir, 'size=4m');
  const go = join(dir, 'go');
  const go2 = join(dir, 'go2');
  const total = 6 + FIRST_MARK + 4;
  const body = `echo start; while [ ! -e ${go} ]; do sleep 0.02; done; head -c ${FIRST_MARK} /dev/zero; echo end; while [ ! -e ${go2} ]; do sleep 0.02; done; echo after; exec sleep 600`;
  const agent = await RestartableAgent.start(reaper, dir, stateDir);
  const { process: p } = await agent.client.spawn({ argv: ['sh', '-c', body], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  const handle = p!.handle;
  await eventually('the file', () => readdirSync(capture).includes(`${handle}.json`));
  execFileSync('mount', ['-o', 'remount,ro', capture]);
  t.teardown(() => execFileSync('mount', ['-o', 'remount,rw', capture]));
  writeFileSync(go, '');
  await eventually('the stream to pass its mark', async () => (await readAll(agent.client, handle, total - 4).catch(() => undefined))?.end === total, 60_000);
  t.is(await reaper.wait(agent.pid, 0), 'timeout', 'the agent still runs');
  t.is((await readAll(agent.client, handle, total - 4)).text, 'end\n');
  await agent.crash();

  const next = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => next.stop());
  writeFileSync(go2, '');
  const read = await eventually('after to be read', async () => {
    const r = await readAll(next.client, handle);
    return r.text === 'after\n' ? r : undefined;
  });
  t.true(read!.first >= total, `resumed at ${read!.first}, above every offset handed out (${total}), from the store's mark (the file's is stale)`);
  await next.client.signal({ handle, signal: 'SIGKILL' });
  await next.client.wait({ handle });
});

test.serial('a held stream released while the store refuses: the retry stops with it (no write with nothing to write)', async (t) => {
  const writes: number[] = [];
  const marks = new CaptureMarks(new CaptureFiles(tempDir('pidfd-agent-uncertain-files-')), (rows) => {
    writes.push(rows.length);
    return false;
  });
  // A stream already past its mark (as from a handover): its next mark is written at once, refused, and held.
  const out = new CapturedOutput(null, 'stdout', 1024, null, () => {});
  out.ring.continueAt(2000, []);
  const io = { stdout: out, stderr: null } as unknown as ProcessStdio;
  marks.resumed('h1' as HandleId, io, { meta: { outputEvents: false, stdinPiped: false, streams: { stdout: { ino: 1, capacity: 1024, mark: 1000 } } }, filed: false, certain: true });
  t.deepEqual(writes, [1], 'the mark was tried once');
  await sleep(MARK_RETRY_MS * 1.5);
  t.deepEqual(writes, [1, 1], 'and retried while held');
  marks.forget('h1' as HandleId);
  const before = writes.length;
  await sleep(MARK_RETRY_MS * 2.5);
  t.is(writes.length, before, `no write once nothing is held: ${JSON.stringify(writes.slice(before))}`);
});
