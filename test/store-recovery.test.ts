// Issue 11 item 3: a store the agent cannot read stops it with one line naming the file and the
// way out, and --recover takes that way: the damaged files kept aside, the agent serving again.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { State } from '../clients/ts/src/index.js';
import { STORE_FILE } from '../src/store/sqlite-store.js';
import { AGENT_BIN, startAgentProcess } from './helpers/agent-process.js';
import { tempDir } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const GARBAGE = Buffer.from('this is not the header SQLite wrote: issue 11, a damaged store '.repeat(2));

/** A plain start of the agent that is expected to fail: its exit status and stderr. */
function failedStart(stateDir: string, wrapper: string[] = []): { status: number | null; lines: string[] } {
  const socket = `unix://${join(tempDir('pidfd-agent-recover-sock-'), 'agent.sock')}`;
  const argv = [...wrapper, process.execPath, AGENT_BIN, '--listen', socket, '--state-dir', stateDir];
  const run = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  // Log lines are JSON; what the operator reads on a failed start is the rest.
  const lines = run.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'));
  return { status: run.status, lines };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test.serial('a damaged store stops the agent with one line naming agent.db and --recover; --recover keeps it aside and serves', async (t) => {
  const stateDir = join(tempDir('pidfd-agent-recover-'), 'state');
  // Under a subreaper, which reaps the process the crashed agent leaves behind (PID 1 here does not).
  const reaper = Subreaper.start();
  t.teardown(() => reaper.close());
  const first = await RestartableAgent.start(reaper, tempDir('pidfd-agent-recover-first-'), stateDir);
  const { process: sleeper } = await first.client.spawn({ argv: ['sleep', '300'] });
  const pid = sleeper!.pid;
  // Teardowns run last first: the process is killed while the subreaper is there to reap it.
  t.teardown(() => {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
  // Killed, not stopped: its WAL stays behind, and must be moved aside with agent.db.
  await first.crash();
  const before = readdirSync(stateDir).filter((f) => f.startsWith(STORE_FILE));
  t.true(before.includes(`${STORE_FILE}-wal`), `the crashed agent left its WAL (${before.join(' ')})`);
  // Every file's header: the agent may not have checkpointed yet, and a valid WAL would still
  // supply the pages agent.db lost.
  for (const f of before) {
    const fd = openSync(join(stateDir, f), 'r+');
    try {
      writeSync(fd, GARBAGE, 0, GARBAGE.length, 0);
    } finally {
      closeSync(fd);
    }
  }

  const plain = failedStart(stateDir);
  t.not(plain.status, 0);
  t.is(plain.lines.length, 1, plain.lines.join('\n'));
  t.regex(plain.lines[0]!, new RegExp(`${join(stateDir, STORE_FILE)}: the state store is damaged .*--recover`));
  t.false(plain.lines[0]!.includes('    at '), 'no stack');

  const recovered = await startAgentProcess(['--state-dir', stateDir, '--recover']);
  try {
    const after = readdirSync(stateDir);
    const aside = after.filter((f) => /^agent\.db\.broken-\d{8}T\d{6}\.\d{3}Z$/.test(f));
    t.is(aside.length, 1, after.join(' '));
    for (const f of before) t.true(after.includes(f.replace(STORE_FILE, aside[0]!)), `${f} was moved aside with agent.db (${after.join(' ')})`);
    t.deepEqual(readFileSync(join(stateDir, aside[0]!)).subarray(0, GARBAGE.length), GARBAGE, 'the damaged file is kept as it was');
    const line = recovered.stderr().split('\n').find((l) => l.includes('"store_recovery"'));
    t.truthy(line, recovered.stderr());
    const logged = JSON.parse(line!) as { result: string; readopted: number; moved_aside: string[] };
    t.is(logged.result, 'started_empty');
    t.is(logged.readopted, 0);
    t.deepEqual([...logged.moved_aside].sort(), before.map((f) => join(stateDir, f.replace(STORE_FILE, aside[0]!))).sort());

    // Serving: an empty table, spawns work, and the process the lost table listed still runs.
    t.deepEqual((await recovered.client.list({})).processes, []);
    const { process: fresh } = await recovered.client.spawn({ argv: ['sh', '-c', 'exit 3'] });
    const waited = await recovered.client.wait({ handle: fresh!.handle });
    t.is(waited.process!.exit?.code, 3);
    t.is((await recovered.client.list({})).processes.length, 1);
    t.true(alive(pid), 'the process the damaged store listed was not touched');
  } finally {
    await recovered.stop();
  }

  // --recover on a store that opens moves nothing: the table written after the recovery is back.
  const again = await startAgentProcess(['--state-dir', stateDir, '--recover']);
  try {
    t.regex(again.stderr(), /"store_recovery","result":"healthy"/);
    t.is(readdirSync(stateDir).filter((f) => f.includes('.broken-') && !f.includes('-wal')).length, 1);
    const listed = (await again.client.list({})).processes;
    t.deepEqual(listed.map((p) => p.state), [State.STATE_EXITED]);
  } finally {
    await again.stop();
  }
});

test.serial('a store on a read-only file system stops the agent with one line naming agent.db and EROFS', async (t) => {
  const stateDir = join(tempDir('pidfd-agent-recover-ro-'), 'state');
  const first = await startAgentProcess(['--state-dir', stateDir]);
  await first.stop();
  t.true(existsSync(join(stateDir, STORE_FILE)));
  // A private mount namespace: the read-only bind mount is seen by the agent alone.
  const readOnly = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', stateDir];
  const ro = failedStart(stateDir, readOnly);
  t.not(ro.status, 0);
  t.is(ro.lines.length, 1, ro.lines.join('\n'));
  t.regex(ro.lines[0]!, new RegExp(`${join(stateDir, STORE_FILE)}: cannot open the state store: EROFS`));
  // The store itself is untouched: it opens again where it is writable.
  const back = await startAgentProcess(['--state-dir', stateDir]);
  await back.stop();
  t.pass();
});
