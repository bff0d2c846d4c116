// A captured stream survives its agent only through its capture file (STATE_DIR/capture/HANDLE.json):
// without it a restarted agent does not take the pipe back, nobody reads it, and the process hangs
// for good once the pipe is full. The store can still commit on a state dir that cannot take a new
// file (no inode left, its WAL has pages to reuse), so a Spawn whose file cannot be written must be
// refused, nothing left running, rather than acknowledged with output no later agent can read.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { AgentCallError, OutputMode, OutputStream, status, type AgentClient } from '../clients/ts/src/index.js';
import { eventually, tempDir } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

const CAPTURE = { mode: OutputMode.OUTPUT_MODE_CAPTURE };
/** Three times a default ring (and the pipe sized to it): a process no one reads never gets through. */
const OUTPUT = 3_000_000;
const RING = 1024 * 1024;

/** Creates empty files until the file system has no inode left. */
function fillInodes(dir: string): number {
  mkdirSync(dir);
  for (let n = 0; ; n++) {
    try {
      closeSync(openSync(join(dir, String(n)), 'w'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
      return n;
    }
  }
}

/** Pids of live processes whose command line contains `token`. */
function running(token: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'latin1').includes(token)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The bytes of captured stdout still held. */
async function outputOf(client: AgentClient, handle: string): Promise<number> {
  let bytes = 0;
  for await (const r of client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) bytes += r.data.length;
  return bytes;
}

test.serial('a captured spawn whose capture file cannot be written is refused, nothing runs; after a crash every acknowledged one is read to its end', async (t) => {
  const dir = tempDir('pidfd-agent-capture-file-');
  const mount = join(dir, 'small');
  mkdirSync(mount);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,nr_inodes=64', 'tmpfs', mount]);
  t.teardown(() => execFileSync('umount', ['-l', mount]));
  const stateDir = join(mount, 'state');
  const go = join(dir, 'go');
  // Waits for the restarted agent, then writes more than its pipe holds.
  const writer = (token: string) => ['sh', '-c', `while [ ! -e ${go} ]; do sleep 0.05; done; head -c ${OUTPUT} /dev/zero; : ${token}`];

  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const acknowledged = [(await first.client.spawn({ argv: writer('before-the-fill'), stdout: CAPTURE })).process!.handle];
  t.log(`${fillInodes(join(mount, 'fillers'))} files fill the state dir's inodes`);

  for (let i = 0; i < 3; i++) {
    const token = `refused-${i}-${process.pid}`;
    try {
      acknowledged.push((await first.client.spawn({ argv: writer(token), stdout: CAPTURE })).process!.handle);
      t.fail(`spawn ${i} was acknowledged without its capture file`);
    } catch (e) {
      if (!(e instanceof AgentCallError)) throw e;
      t.is(e.code, status.UNAVAILABLE, e.message);
      t.is(e.reason, 'STORE_WRITE_FAILED');
      t.regex(e.message, /capture file.*ENOSPC/);
      await eventually(`nothing of refused spawn ${i} runs`, () => running(token).length === 0);
    }
  }
  // What needs no new file in the state dir goes on.
  const { process: plain } = await first.client.spawn({ argv: ['sh', '-c', 'exit 4'] });
  t.is((await first.client.wait({ handle: plain!.handle })).process!.exit?.code, 4);

  await first.crash();
  rmSync(join(mount, 'fillers'), { recursive: true });
  const second = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => second.stop());
  writeFileSync(go, '');
  for (const handle of acknowledged) {
    const { process: p } = await second.client.wait({ handle, timeout: { seconds: 20, nanos: 0 } });
    t.is(p!.exit?.code, 0, `${handle} got through all of its output`);
    t.is(await outputOf(second.client, handle), RING, `${handle}: its ring holds the end of its output`);
  }
  t.false(existsSync(join(stateDir, 'capture', `${acknowledged[0]}.json.tmp`)));
  const { process: again } = await second.client.spawn({ argv: ['sh', '-c', 'echo again'], stdout: CAPTURE });
  await second.client.wait({ handle: again!.handle });
  t.is(await outputOf(second.client, again!.handle), 6);
});

/** Where stdout's ring ends now: the offset after the last byte taken in. */
async function endOf(client: AgentClient, handle: string): Promise<number> {
  let end = 0;
  for await (const r of client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) end = r.offset + r.data.length;
  return end;
}

test.serial("a stream whose mark cannot be moved (the state dir full at 64 MiB of output) waits; it goes on once there is room, and after a crash it is read again, at offsets above the old ones", async (t) => {
  const dir = tempDir('pidfd-agent-capture-mark-');
  const mount = join(dir, 'small');
  mkdirSync(mount);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,nr_inodes=64', 'tmpfs', mount]);
  t.teardown(() => execFileSync('umount', ['-l', mount]));
  const stateDir = join(mount, 'state');
  const at = (name: string) => join(dir, name);
  const waitFor = (name: string) => `while [ ! -e ${at(name)} ]; do sleep 0.05; done`;
  // 60 MB, then (the state dir now full) 20 MB across the 64 MiB mark, then after the restart 3 MB.
  const script = `head -c 60000000 /dev/zero; touch ${at('phase1')}; ${waitFor('filled')}; head -c 20000000 /dev/zero; touch ${at('phase2')}; ${waitFor('go')}; head -c ${OUTPUT} /dev/zero`;

  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const { process: p } = await first.client.spawn({ argv: ['sh', '-c', script], stdout: CAPTURE });
  const handle = p!.handle;
  const meta = join(stateDir, 'capture', `${handle}.json`);
  await eventually('the first 60 MB', () => existsSync(at('phase1')), 20_000);
  t.log(`${fillInodes(join(mount, 'fillers'))} files fill the state dir's inodes`);
  writeFileSync(at('filled'), '');
  await new Promise((r) => setTimeout(r, 3000));
  t.false(existsSync(at('phase2')), 'the output past the mark waits for it to be persisted');
  t.true(existsSync(meta), 'the capture file is kept, its mark as before');
  rmSync(join(mount, 'fillers'), { recursive: true });
  await eventually('the output past the mark once there is room', () => existsSync(at('phase2')), 20_000);
  const before = await eventually('all 80 MB taken in', async () => {
    const end = await endOf(first.client, handle);
    return end >= 80_000_000 && end;
  });

  await first.crash();
  const second = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => second.stop());
  writeFileSync(at('go'), '');
  const { process: done } = await second.client.wait({ handle, timeout: { seconds: 20, nanos: 0 } });
  t.is(done!.exit?.code, 0, 'it got through its output after the restart');
  const after = await endOf(second.client, handle);
  t.true(after - before >= OUTPUT, `offsets go on above the first agent's (${before} -> ${after})`);
});
