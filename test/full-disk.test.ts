// Issue 11 item 1: the store never lies after a failure. The state dir is on a file system that
// fills up (a small tmpfs) or turns read-only under the agent (ext4 errors=remount-ro); the agent
// is killed with SIGKILL and started again, and what it then answers must be what it told before:
// no released handle back as RUNNING, no reported exit turned status_lost, event numbers that
// never go back. Agents run under the C subreaper, which reaps (and at the end kills) what they
// leave behind.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AgentCallError, State, status, type AgentClient, type Process } from '../clients/ts/src/index.js';
import Database from 'better-sqlite3';
import { newHandleId } from '../src/process/lifecycle/handle.js';
import { SqliteStore, STORE_FILE } from '../src/store/sqlite-store.js';
import { AGENT_BIN } from './helpers/agent-process.js';
import { eventually, tempDir } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

/** Writes zeros until the file system says ENOSPC: from then on no block is free. */
function fill(path: string): number {
  const fd = openSync(path, 'w');
  let written = 0;
  try {
    for (const size of [65536, 4096, 512]) {
      const chunk = Buffer.alloc(size);
      for (;;) {
        try {
          written += writeSync(fd, chunk);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return written;
}

async function outcome<T>(call: Promise<T>): Promise<{ ok: T } | { error: AgentCallError }> {
  try {
    return { ok: await call };
  } catch (e) {
    if (!(e instanceof AgentCallError)) throw e;
    return { error: e };
  }
}

/** Every event sequence an agent hands out from `after` on, in the order it sent them. */
function collectSequences(client: AgentClient, after: number): number[] {
  const seen: number[] = [];
  void (async () => {
    try {
      for await (const e of client.watch({ afterSequence: after })) seen.push(e.sequence);
    } catch {
      // the agent was killed
    }
  })();
  return seen;
}

/** What clients were told, to be checked against every later agent. */
interface Told {
  released: Set<string>;
  /** How each reported exit ended: its code, or its signal. */
  exits: Map<string, { code?: number; signal?: number }>;
  /** The highest event number seen so far (List.sequence and Watch). */
  sequence: number;
}

async function checkAgainst(t: import('ava').ExecutionContext, client: AgentClient, told: Told, which: string): Promise<Process[]> {
  const { processes, sequence } = await client.list({});
  t.true(sequence >= told.sequence, `${which}: List.sequence ${sequence} is not below ${told.sequence}`);
  const byHandle = new Map(processes.map((p) => [p.handle, p]));
  for (const handle of told.released) t.false(byHandle.has(handle), `${which}: released ${handle} is back as ${byHandle.get(handle)?.state}`);
  for (const [handle, ended] of told.exits) {
    const p = byHandle.get(handle);
    t.is(p?.state, State.STATE_EXITED, `${which}: reported exit of ${handle}`);
    t.deepEqual({ code: p?.exit?.code, signal: p?.exit?.signal }, ended, `${which}: ${handle} keeps how it ended`);
    t.falsy(p?.exit?.statusLost, `${which}: ${handle} is not status_lost`);
  }
  return processes;
}

function strictlyAbove(t: import('ava').ExecutionContext, seen: readonly number[], floor: number, which: string): number {
  let last = floor;
  for (const s of seen) {
    if (s <= last) t.fail(`${which}: event ${s} after ${last}`);
    last = Math.max(last, s);
  }
  t.pass();
  return last;
}

test.serial('a full disk: after kill -9 and two restarts no released handle is RUNNING, no reported exit is lost, no number goes back', async (t) => {
  const dir = tempDir('pidfd-agent-full-disk-');
  const mount = join(dir, 'small');
  mkdirSync(mount);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount]);
  t.teardown(() => execFileSync('umount', ['-l', mount]));
  const stateDir = join(mount, 'state');
  const told: Told = { released: new Set(), exits: new Map(), sequence: 0 };
  const labels = { a: 'x'.repeat(1000), b: 'y'.repeat(1000), c: 'z'.repeat(1000) };

  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const firstSeen = collectSequences(first.client, 0);
  const sleepers: Process[] = [];
  for (let i = 0; i < 12; i++) sleepers.push((await first.client.spawn({ argv: ['sleep', '1000'], labels: { i: String(i) } })).process!);
  for (let code = 3; code < 6; code++) {
    const { process: p } = await first.client.spawn({ argv: ['sh', '-c', `exit ${code}`] });
    const { exit } = (await first.client.wait({ handle: p!.handle })).process!;
    told.exits.set(p!.handle, { code: exit?.code, signal: exit?.signal });
  }
  for (const p of sleepers.splice(0, 2)) {
    await first.client.release({ handle: p.handle });
    told.released.add(p.handle);
  }

  t.log(`filler: ${fill(join(mount, 'filler'))} bytes`);
  // Spawn until the store refuses (it has WAL pages to reuse for a while).
  let refused: AgentCallError | undefined;
  for (let i = 0; i < 500 && refused === undefined; i++) {
    const r = await outcome(first.client.spawn({ argv: ['sleep', '1000'], labels }));
    if ('ok' in r) sleepers.push(r.ok.process!);
    else refused = r.error;
  }
  t.is(refused?.code, status.UNAVAILABLE, `spawn refused: ${String(refused)}`);
  t.is(refused?.reason, 'STORE_WRITE_FAILED');
  // While the store refuses: releases either fail (the handle kept) or are durable; exits are
  // either reported (and durable) or not reported yet.
  const kept: Process[] = [];
  for (const p of sleepers.splice(0, 3)) {
    const r = await outcome(first.client.release({ handle: p.handle }));
    if ('ok' in r) told.released.add(p.handle);
    else {
      t.is(r.error.reason, 'STORE_WRITE_FAILED');
      t.is((await first.client.get({ handle: p.handle })).process!.state, State.STATE_RUNNING, 'a refused release changes nothing');
      kept.push(p);
    }
  }
  const unreported: Process[] = [];
  for (const p of sleepers.splice(0, 3)) {
    await first.client.signal({ handle: p.handle, signal: 'KILL' });
    const r = await outcome(first.client.wait({ handle: p.handle, timeout: { seconds: 1, nanos: 0 } }));
    if ('ok' in r) told.exits.set(p.handle, { code: r.ok.process!.exit?.code, signal: r.ok.process!.exit?.signal });
    else {
      t.is(r.error.code, status.DEADLINE_EXCEEDED);
      unreported.push(p);
    }
  }
  t.log(`refused releases ${kept.length}/3, exits not yet reported ${unreported.length}/3`);
  told.sequence = Math.max((await first.client.list({})).sequence, ...firstSeen);
  let floor = strictlyAbove(t, firstSeen, 0, 'first agent');
  await first.crash();

  let agent = first;
  for (const which of ['second agent', 'third agent']) {
    agent = await RestartableAgent.start(reaper, dir, stateDir);
    const processes = await checkAgainst(t, agent.client, told, which);
    for (const p of kept) t.is(processes.find((q) => q.handle === p.handle)?.state, State.STATE_RUNNING, `${which}: a handle whose release was refused still runs`);
    for (const p of unreported) t.is(processes.find((q) => q.handle === p.handle)?.state, State.STATE_EXITED, `${which}: an exit never reported is found`);
    const start = (await agent.client.list({})).sequence;
    const seen = collectSequences(agent.client, start);
    // Still full: a spawn is refused, a kill's exit waits or is reported (then it must stay).
    const refusedAgain = await outcome(agent.client.spawn({ argv: ['sleep', '1000'], labels }));
    t.is('error' in refusedAgain ? refusedAgain.error.reason : 'started', 'STORE_WRITE_FAILED');
    const victim = sleepers.shift()!;
    await agent.client.signal({ handle: victim.handle, signal: 'KILL' });
    const r = await outcome(agent.client.wait({ handle: victim.handle, timeout: { seconds: 1, nanos: 0 } }));
    if ('ok' in r) told.exits.set(victim.handle, { code: r.ok.process!.exit?.code, signal: r.ok.process!.exit?.signal });
    told.sequence = Math.max((await agent.client.list({})).sequence, ...seen, told.sequence);
    floor = strictlyAbove(t, seen, Math.max(floor, start), which);
    await agent.crash();
  }

  // Space again: the store takes what waited, and the agent works as before.
  rmSync(join(mount, 'filler'));
  agent = await RestartableAgent.start(reaper, dir, stateDir);
  await checkAgainst(t, agent.client, told, 'after the disk was freed');
  const start = (await agent.client.list({})).sequence;
  t.true(start >= floor, `numbering resumes at ${start}, not below ${floor}`);
  const { process: fresh } = await agent.client.spawn({ argv: ['sh', '-c', 'exit 7'] });
  t.is((await agent.client.wait({ handle: fresh!.handle })).process!.exit?.code, 7);
  for (const p of unreported) t.true((await agent.client.get({ handle: p.handle })).process!.exit?.statusLost, 'an exit never reported is status_lost');
  for (const p of [...kept, ...sleepers]) await agent.client.signal({ handle: p.handle, signal: 'KILL' }).catch(() => undefined);
  await agent.stop();
});

test.serial('a file system turned read-only under the agent: nothing is told that is not kept; a restart names EROFS; then all is as told', async (t) => {
  const dir = tempDir('pidfd-agent-ro-');
  const image = join(dir, 'fs.img');
  const mount = join(dir, 'ro');
  mkdirSync(mount);
  execFileSync('truncate', ['-s', '8M', image]);
  execFileSync('mkfs.ext4', ['-q', '-F', image]);
  const mountRw = () => execFileSync('mount', ['-o', 'loop,errors=remount-ro', image, mount]);
  mountRw();
  t.teardown(() => spawnSync('umount', ['-l', mount]));
  const device = execFileSync('findmnt', ['-no', 'SOURCE', mount], { encoding: 'utf8' }).trim();
  const stateDir = join(mount, 'state');
  const told: Told = { released: new Set(), exits: new Map(), sequence: 0 };

  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const sleepers: Process[] = [];
  for (let i = 0; i < 6; i++) sleepers.push((await first.client.spawn({ argv: ['sleep', '1000'] })).process!);
  const { process: done } = await first.client.spawn({ argv: ['sh', '-c', 'exit 4'] });
  told.exits.set(done!.handle, { code: (await first.client.wait({ handle: done!.handle })).process!.exit?.code, signal: undefined });
  await first.client.release({ handle: sleepers[0]!.handle });
  told.released.add(sleepers.shift()!.handle);

  // What the kernel had not written back when the file system fails is lost, as in a power cut
  // (commits are not fsynced: README, What survives what); this test is about what the agent says
  // after the failure, so everything before it is written back first.
  execFileSync('sync', ['-f', mount]);
  // What ext4 does on an error with errors=remount-ro: read-only at once, open files or not.
  execFileSync('sh', ['-c', `echo test > /sys/fs/ext4/${device.replace('/dev/', '')}/trigger_fs_error`]);
  const spawned = await outcome(first.client.spawn({ argv: ['sleep', '1000'], requestId: 'ro-intent' }));
  t.is('error' in spawned ? spawned.error.reason : 'started', 'STORE_WRITE_FAILED', 'the intent cannot be recorded: nothing starts');
  const release = await outcome(first.client.release({ handle: sleepers[0]!.handle }));
  t.is('error' in release ? release.error.reason : 'released', 'STORE_WRITE_FAILED');
  await first.client.signal({ handle: sleepers[1]!.handle, signal: 'KILL' });
  const waited = await outcome(first.client.wait({ handle: sleepers[1]!.handle, timeout: { seconds: 1, nanos: 0 } }));
  t.is('error' in waited ? waited.error.code : 'reported', status.DEADLINE_EXCEEDED, 'an exit the store cannot take is not reported');
  t.is((await first.client.get({ handle: sleepers[1]!.handle })).process!.state, State.STATE_RUNNING);
  told.sequence = (await first.client.list({})).sequence;
  await first.crash();

  // A store that cannot be opened: one line, naming the file and the errno; nothing touched.
  const socket = `unix://${join(dir, 'refused.sock')}`;
  const run = spawnSync(process.execPath, [AGENT_BIN, '--listen', socket, '--state-dir', stateDir], { encoding: 'utf8', timeout: 30_000 });
  t.is(run.status, 1);
  const lines = run.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'));
  t.is(lines.length, 1, run.stderr);
  t.regex(lines[0] ?? '', /agent\.db: cannot open the state store: EROFS/);

  execFileSync('umount', [mount]);
  // The loop device lets go of the image after umount returns; an e2fsck meanwhile finds the
  // image in use and repairs nothing, and the next mount is read-only again.
  await eventually('the loop device to let go of the image', () => execFileSync('losetup', ['-j', image], { encoding: 'utf8' }).trim() === '', 30_000);
  const fsck = spawnSync('e2fsck', ['-fy', image], { encoding: 'utf8' });
  t.true(fsck.status === 0 || fsck.status === 1, `e2fsck exited ${fsck.status}: ${fsck.stdout}${fsck.stderr}`);
  mountRw();
  t.regex(execFileSync('findmnt', ['-no', 'OPTIONS', mount], { encoding: 'utf8' }), /^rw,/, 'mounted read-write again');
  const back = await RestartableAgent.start(reaper, dir, stateDir);
  const processes = await checkAgainst(t, back.client, told, 'after the remount');
  const state = (h: string) => processes.find((p) => p.handle === h);
  t.is(state(sleepers[0]!.handle)?.state, State.STATE_RUNNING, 'the refused release left the handle');
  t.true(state(sleepers[1]!.handle)?.exit?.statusLost, 'the unreported exit is status_lost');
  const retried = await back.client.spawn({ argv: ['sleep', '1000'], requestId: 'ro-intent' });
  t.false(retried.replayed, 'a spawn refused before its intent was recorded starts now, once');
  for (const p of [...sleepers, retried.process!]) await back.client.signal({ handle: p.handle, signal: 'KILL' }).catch(() => undefined);
  await back.stop();
});

test.serial("a schema-4 store from before intents' stamps, on a full disk, still opens: its intents are read, and the column comes once there is room", async (t) => {
  const dir = tempDir('pidfd-agent-stamp-');
  const mount = join(dir, 'small');
  mkdirSync(mount);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount]);
  t.teardown(() => execFileSync('umount', ['-l', mount]));
  const stateDir = join(mount, 'state');
  const intent = { owner: 'unix:uid=0', requestId: 'job-1', handle: newHandleId(), argv: ['true'], createdAt: Date.now() };
  const first = new SqliteStore(stateDir, 'boot-a', () => undefined, 100);
  first.commit('an intent', 0, (w) => w.intended(intent));
  first.close();
  // As an agent of this schema before the column wrote it.
  const raw = new Database(join(stateDir, STORE_FILE));
  raw.exec('ALTER TABLE intents DROP COLUMN created_stamp');
  raw.close();
  t.log(`filler: ${fill(join(mount, 'filler'))} bytes`);
  const full = new SqliteStore(stateDir, 'boot-a', () => undefined, 100);
  t.deepEqual(full.intents(), [intent], 'read as the older agent wrote it, measured by the wall clock');
  full.close();
  rmSync(join(mount, 'filler'));
  const roomy = new SqliteStore(stateDir, 'boot-a', () => undefined, 100);
  const stamped = { ...intent, requestId: 'job-2', createdStamp: { boot: 'boot-a', ms: 5 } };
  roomy.commit('another intent', 0, (w) => w.intended(stamped));
  t.deepEqual(roomy.intents(), [intent, stamped]);
  roomy.close();
});

test.serial('a store without the tombstones table, opened on a full disk, serves; the first tombstone written once there is room creates it', async (t) => {
  const dir = tempDir('pidfd-agent-tombstones-');
  const mount = join(dir, 'small');
  mkdirSync(mount);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount]);
  t.teardown(() => execFileSync('umount', ['-l', mount]));
  const stateDir = join(mount, 'state');
  new SqliteStore(stateDir, 'boot-a', () => undefined, 100).close();
  // As an agent of this schema before tombstones left it.
  const raw = new Database(join(stateDir, STORE_FILE));
  raw.exec('DROP TABLE tombstones');
  raw.close();
  t.log(`filler: ${fill(join(mount, 'filler'))} bytes`);
  const store = new SqliteStore(stateDir, 'boot-a', () => undefined, 100);
  t.deepEqual(store.tombstones(), [], 'no table: none');
  const tombstone = (requestId: string) => ({ owner: undefined, requestId, handle: newHandleId(), fingerprint: 'spawn:x', releasedAt: 1 });
  t.throws(() => store.commit('a tombstone', 0, (w) => w.tombstoned(tombstone('full'))), undefined, 'the disk is full: refused, as any write');
  rmSync(join(mount, 'filler'));
  const kept = tombstone('roomy');
  store.commit('a tombstone', 0, (w) => w.tombstoned(kept));
  t.deepEqual(store.tombstones(), [kept]);
  store.close();
  const reopened = new SqliteStore(stateDir, 'boot-a', () => undefined, 100);
  t.deepEqual(reopened.tombstones(), [kept]);
  reopened.close();
});
