// Issue 11 item 4: a capturing process never dies because its agent died. Its output pipe keeps a
// reader of its own (the child's end is read-write), so with no agent it gets no SIGPIPE and the
// pipe buffers up to the ring's size; the next agent takes the pipe back and goes on reading.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { OutputMode, OutputStream, State, type AgentClient } from '../clients/ts/src/index.js';
import { AGENT_BIN } from './helpers/agent-process.js';
import { eventually } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
const dirs: string[] = [];
test.after.always(async () => {
  await reaper.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const STDOUT = OutputStream.OUTPUT_STREAM_STDOUT;
const RING = 256 * 1024;
/** Written while no agent runs: more than a default pipe (64 KiB) holds, less than the ring. */
const WHILE_DOWN = 200_000;

async function readAll(client: AgentClient, handle: string, offset = 0): Promise<{ text: string; lost: number; first: number }> {
  let text = '';
  let lost = 0;
  let first = -1;
  for await (const r of client.readOutput({ handle, stream: STDOUT, offset })) {
    if (first < 0) first = r.offset;
    text += Buffer.from(r.data).toString();
    lost += r.lostBytes;
  }
  return { text, lost, first };
}

async function survives(t: ExecutionContext, down: (agent: RestartableAgent, dir: string, stateDir: string) => Promise<void>): Promise<{ before: { text: string; lost: number; first: number } }> {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-capture-'));
  dirs.push(dir);
  const stateDir = join(dir, 'state');
  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const go = join(dir, 'go');
  const wrote = join(dir, 'wrote');
  const go2 = join(dir, 'go2');
  // Waits for the agent to be gone, writes WHILE_DOWN bytes, says so, then waits again.
  const script = `echo before; while [ ! -e ${go} ]; do sleep 0.02; done; head -c ${WHILE_DOWN} /dev/zero | tr '\\0' x; echo; echo during; touch ${wrote}; while [ ! -e ${go2} ]; do sleep 0.02; done; echo after; exec sleep 600`;
  const { process: p } = await first.client.spawn({ argv: ['sh', '-c', script], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE, ringBytes: RING } });
  const handle = p!.handle;
  await eventually('before to be captured', async () => (await readAll(first.client, handle)).text === 'before\n');
  await down(first, dir, stateDir);
  writeFileSync(go, '');
  await eventually('the process to write its output with no agent running', () => existsSync(wrote), 20_000);

  const second = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => second.stop());
  const { process: after } = await second.client.get({ handle });
  t.is(after!.state, State.STATE_RUNNING, 'it is still running: no SIGPIPE');
  const kept = await readAll(second.client, handle);
  t.true(kept.text.endsWith(`${'x'.repeat(WHILE_DOWN)}\nduring\n`), 'everything written while no agent ran is there');
  // It goes on: output after the restart arrives too, through a follower.
  const follower = (async () => {
    let text = '';
    for await (const r of second.client.readOutput({ handle, stream: STDOUT, offset: kept.first + kept.text.length, follow: true })) {
      text += Buffer.from(r.data).toString();
      if (text.includes('after\n')) return text;
    }
    return text;
  })();
  writeFileSync(go2, '');
  t.is(await follower, 'after\n');
  await second.client.signal({ handle, signal: 'SIGKILL' });
  t.is((await second.client.wait({ handle })).process!.exit!.signal, 9);
  return { before: kept };
}

test.serial('a capturing process survives kill -9 of its agent; output written meanwhile is read through the next agent', async (t) => {
  const { before } = await survives(t, (agent) => agent.crash());
  // The ring died with the agent: its bytes read as lost, and offsets resume above any handed out.
  t.is(before.text, `${'x'.repeat(WHILE_DOWN)}\nduring\n`);
  t.true(before.lost >= 'before\n'.length);
  t.true(before.first >= 'before\n'.length);
});

test.serial('a capturing process survives SIGTERM of its agent with no successor; the next agent has the ring too', async (t) => {
  const { before } = await survives(t, (agent) => agent.stop());
  t.is(before.text, `before\n${'x'.repeat(WHILE_DOWN)}\nduring\n`, 'the stopped agent saved its ring');
  t.is(before.lost, 0);
  t.is(before.first, 0);
});

test.serial('a start that fails after restoring (its --tcp port taken) gives the saved ring back for the next agent', async (t) => {
  const { before } = await survives(t, async (agent, dir, stateDir) => {
    await agent.stop();
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as AddressInfo).port;
    try {
      const pid = await reaper.start([process.execPath, AGENT_BIN, '--listen', `unix://${join(dir, 'agent.sock')}`, '--state-dir', stateDir, '--quiet', '--tcp', `127.0.0.1:${port}`]);
      t.is(await reaper.wait(pid, 20_000), 'exit 1', 'the start failed on its listener, after restoring');
    } finally {
      busy.close();
    }
  });
  t.is(before.text, `before\n${'x'.repeat(WHILE_DOWN)}\nduring\n`, 'the ring the stop saved, and what the failed start had read, are there');
  t.is(before.lost, 0);
});
