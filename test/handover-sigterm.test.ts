// A SIGTERM that reaches the old agent while it hands over: the snapshot is out, the successor has
// not confirmed yet. The test sits between the two agents on STATE_DIR/handover.sock (it moves
// the old agent's socket aside and relays every message, descriptors included), so it can hold
// the successor's confirmation and land the signal exactly in that window.
import test, { type ExecutionContext } from 'ava';
import { readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OutputMode, OutputStream, State, type AgentClient } from '../clients/ts/src/index.js';
import { connectFdSocket, FdListener, useFdPassing, type FdSocket, type Message } from '../src/kernel/fd-passing.js';
import { closeFd } from '../src/kernel/fd.js';
import { HANDOVER_SOCKET } from '../src/handover/outgoing.js';
import { AGENT_BIN, ROOT } from './helpers/agent-process.js';
import { agentDir, eventually } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
const dirs: string[] = [];
test.after.always(async () => {
  await reaper.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
useFdPassing(join(ROOT, 'dist/lib/libpidfd-fdpass.so'));

const SIGTERM = 15;
const SIGINT = 2;
const STDOUT = OutputStream.OUTPUT_STREAM_STDOUT;

/** The next message on a socket, waiting on the event loop (the agents are other processes). */
async function next(socket: FdSocket, ms = 20_000): Promise<Message | null> {
  if (!(await socket.readable(ms))) throw new Error('relay: nothing to receive');
  return socket.receive(0);
}

/** Passes one message on; its descriptors were the relay's and are closed once sent. */
function pass(to: FdSocket, message: Message): void {
  try {
    to.send(message.data, message.fds, 1000);
  } finally {
    for (const fd of message.fds) closeFd(fd);
  }
}

const tagOf = (m: Message) => m.data.toString('latin1', 0, 1);

/** Every chunk of stdout from `offset` on, with the offset each one was handed out at. */
async function chunks(client: AgentClient, handle: string): Promise<{ offset: number; text: string }[]> {
  const out: { offset: number; text: string }[] = [];
  for await (const r of client.readOutput({ handle, stream: STDOUT })) if (r.data.length > 0) out.push({ offset: r.offset, text: Buffer.from(r.data).toString() });
  return out;
}

const textOf = (c: { text: string }[]) => c.map((x) => x.text).join('');

/** A process that prints "one", then "two" and "three" each once the test creates that file in dir. */
async function speaker(client: AgentClient, dir: string): Promise<string> {
  const say = (word: string) => `while [ ! -e ${join(dir, word)} ]; do sleep 0.02; done; echo ${word}`;
  const { process: p } = await client.spawn({ argv: ['sh', '-c', `echo one; ${say('two')}; ${say('three')}; exec sleep 600`], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  const handle = p!.handle;
  await eventually('"one" to be captured', async () => textOf(await chunks(client, handle)) === 'one\n', 20_000);
  return handle;
}

/**
 * With the successor serving: no ring file is in the state dir; "two" is captured; the successor
 * dies (kill -9), and the agent started next, taking the pipe back, hands out no offset again.
 */
async function successorCrashes(t: ExecutionContext, agent: RestartableAgent, dir: string, stateDir: string, handle: string): Promise<void> {
  const rings = readdirSync(join(stateDir, 'capture')).filter((f) => f.endsWith('.ring'));
  t.deepEqual(rings, [], 'no ring file is left in the state dir while the successor serves');
  writeFileSync(join(dir, 'two'), '');
  await eventually('"two" on the successor', async () => textOf(await chunks(agent.client, handle)) === 'one\ntwo\n', 20_000);
  const handedOut = await chunks(agent.client, handle);
  const end = Math.max(...handedOut.map((c) => c.offset + Buffer.byteLength(c.text)));

  await agent.crash();
  const next = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => next.stop());
  writeFileSync(join(dir, 'three'), '');
  await eventually('"three" on the agent after it', async () => textOf(await chunks(next.client, handle)).endsWith('three\n'), 20_000);
  const after = await chunks(next.client, handle);
  const found = after.find((c) => c.text.includes('three'))!;
  const at = found.offset + Buffer.byteLength(found.text.slice(0, found.text.indexOf('three')));
  t.true(at >= end, `no offset is handed out twice: "three" at ${at}, the successor had handed out up to ${end} (${JSON.stringify(after)})`);
}

/**
 * The old agent serving `speaker`'s process and a sleeper, a successor started with --takeover
 * required, and the test relaying between them on handover.sock (the old agent's socket moved
 * aside: a bound unix socket is found by its inode) up to the snapshot's last message, which it
 * holds. Quiet agents unless `log` names them (their lines go to the subreaper's stderr).
 */
async function relayedSnapshot(t: ExecutionContext, prefix: string, log: { old?: boolean; successor?: boolean } = {}) {
  const { dir, stateDir, address } = agentDir(prefix);
  dirs.push(dir);
  const old = await RestartableAgent.start(reaper, dir, stateDir, [], log.old);
  const handle = await speaker(old.client, dir);
  const { process: sleeper } = await old.client.spawn({ argv: ['sleep', '600'] });
  const { sequence, processes } = await old.client.list({});
  const pids = new Map(processes.map((p) => [p.handle, p.pid]));
  const aside = join(stateDir, 'old-handover.sock');
  renameSync(join(stateDir, HANDOVER_SOCKET), aside);
  const relay = new FdListener(join(stateDir, HANDOVER_SOCKET));
  const successorPid = await reaper.start([process.execPath, AGENT_BIN, '--listen', address, '--state-dir', stateDir, '--takeover', 'required', ...(log.successor ? [] : ['--quiet'])]);
  let accepted: FdSocket | null = null;
  await eventually('the successor to connect', () => (accepted = relay.accept()) !== null, 20_000);
  relay.close();
  const successor = accepted!;
  const toOld = connectFdSocket(aside);
  pass(toOld, (await next(successor))!); // its request
  let end = (await next(toOld))!;
  for (; tagOf(end) !== 'E'; end = (await next(toOld))!) pass(successor, end);
  return { dir, stateDir, address, aside, old, handle, sleeper: sleeper!.handle, sequence, pids, successorPid, successor, toOld, end };
}

/** As relayedSnapshot, with the snapshot passed on whole and the successor's confirmation held. */
async function relayedHandover(t: ExecutionContext, prefix: string, log: { old?: boolean; successor?: boolean } = {}) {
  const relayed = await relayedSnapshot(t, prefix, log);
  pass(relayed.successor, relayed.end);
  const confirmation = (await next(relayed.successor))!;
  t.is(tagOf(confirmation), 'A', 'the successor has the whole snapshot and confirms');
  return { ...relayed, confirmation };
}

/** Whatever one agent still says, passed on to the other, until it closes; then both ends go. */
async function relayRest(from: FdSocket, to: FdSocket): Promise<void> {
  for (let m = await next(from).catch(() => null); m !== null; m = await next(from).catch(() => null)) {
    try {
      pass(to, m);
    } catch {
      // the other end is gone: it has nothing more to learn
    }
  }
  from.close();
  to.close();
}

/** The log lines (JSON) of one event that the subreaper's agents wrote from `from` on. */
const logged = (from: number, event: string) => reaper.stderr.slice(from).split('\n').filter((l) => l.includes(`"event":"${event}"`));

test.serial('SIGTERM while the snapshot waits for its confirmation: the old agent waits for the outcome, the handover completes, and no ring file outlives it', async (t) => {
  const { dir, stateDir, address, old, handle, successorPid, successor, toOld, confirmation } = await relayedHandover(t, 'pidfd-agent-handover-sigterm-');

  // The window: the snapshot is out, the confirmation is held here.
  await reaper.kill(old.pid, SIGTERM);
  const early = await reaper.wait(old.pid, 1500);
  try {
    pass(toOld, confirmation);
  } catch {
    // gone already: then the successor sees the connection end below
  }
  for (let m = await next(toOld).catch(() => null); m !== null; m = await next(toOld).catch(() => null)) pass(successor, m);
  toOld.close();
  successor.close();
  const ended = early === 'timeout' ? await reaper.wait(old.pid, 20_000) : early;
  old.client.close();
  t.is(early, 'timeout', 'the old agent waits for the outcome of the handover it started instead of stopping under it');
  t.is(ended, 'exit 0');

  await successorCrashes(t, await RestartableAgent.attach(reaper, successorPid, address), dir, stateDir, handle);
});

test.serial('a SIGTERM to the successor, then a takeover that fails on its own (a refusal): still a stop as asked, exit 0 with start_stopped, and the old agent serves on', async (t) => {
  const from = reaper.stderr.length;
  const { old, handle, sleeper, successorPid, successor, toOld } = await relayedSnapshot(t, 'pidfd-agent-takeover-sigterm-refused-', { successor: true });
  await reaper.kill(successorPid, SIGTERM);
  await eventually('the stop to be asked for', () => logged(from, 'stop_requested').length === 1, 20_000);
  // Instead of the snapshot's end, a refusal: the takeover fails for a reason of its own.
  successor.send(Buffer.from('X"refused by the relay"'), [], 1000);
  successor.close();
  toOld.close(); // the old agent sees its successor gone halfway and serves on
  t.is(await reaper.wait(successorPid, 20_000), 'exit 0', 'stopped as asked: it took nothing over');
  t.regex(logged(from, 'start_stopped')[0] ?? '', /"takeover_failed":"the agent refused the handover: \\"refused by the relay\\""/);
  t.is(logged(from, 'taken_over').length, 0);
  await eventually('the old agent to serve again', () => old.client.get({ handle }).then((r) => r.process !== undefined, () => false), 20_000);
  const { processes } = await old.client.list({});
  t.deepEqual(processes.filter((p) => p.state === State.STATE_RUNNING).map((p) => p.handle).sort(), [handle, sleeper].sort(), 'the old agent manages both');
  await old.stop();
});

test.serial('a confirmation later than the old agent waits, with a SIGTERM pending: the old agent says it serves again, and the successor exits instead of serving a stale snapshot', async (t) => {
  const { dir, stateDir, old, sequence, successorPid, successor, toOld } = await relayedHandover(t, 'pidfd-agent-handover-abandoned-');
  await reaper.kill(old.pid, SIGTERM);
  // The successor is stalled past the old agent's 30 s: it gives up, says so, and closes.
  const said = await next(toOld, 40_000);
  t.is(said && tagOf(said), 'B', 'the old agent says it abandoned the handover');
  t.is(await next(toOld).catch(() => null), null, 'and closes');
  toOld.close();
  t.is(await reaper.wait(old.pid, 20_000), 'exit 0', 'then its pending stop runs');
  old.client.close();
  // Late, the successor reads what the old agent said (its confirmation reached nobody).
  pass(successor, said!);
  successor.close();
  t.is(await reaper.wait(successorPid, 20_000), 'exit 1', 'the successor does not take over from a snapshot the old agent served on from');

  // What the old agent recorded after the snapshot is what the next agent starts from.
  const after = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => after.stop());
  t.true((await after.client.list({})).sequence > sequence, 'numbering goes on above what the old agent told');
});

test.serial('a successor discards ring files it finds at takeover: they are no agent\'s current state', async (t) => {
  const { dir, stateDir } = agentDir('pidfd-agent-handover-rings-');
  dirs.push(dir);
  const old = await RestartableAgent.start(reaper, dir, stateDir);
  const handle = await speaker(old.client, dir);
  // What a stop that raced a handover left on an agent of the old code: "one" and its offsets.
  const header = { stream: 'stdout', capacity: 65536, end: 4, dropped: false, published: 4 };
  writeFileSync(join(stateDir, 'capture', `${handle}.stdout.ring`), `${JSON.stringify(header)}\none\n`, { mode: 0o600 });
  const { agent, oldEnded } = await RestartableAgent.takeOver(reaper, dir, stateDir, old, ['--quiet']);
  t.is(oldEnded, 'exit 0');
  await successorCrashes(t, agent, dir, stateDir, handle);
});

test.serial('a second SIGTERM and a SIGINT while the old agent waits for its handover change nothing: it hands over, exits 0, and the successor serves every process', async (t) => {
  const from = reaper.stderr.length;
  const { address, old, handle, sleeper, successorPid, successor, toOld, confirmation } = await relayedHandover(t, 'pidfd-agent-handover-sigterm-twice-', { old: true });
  await reaper.kill(old.pid, SIGTERM);
  await eventually('the old agent to wait for the handover', () => logged(from, 'stop_waits_for_handover').length === 1, 20_000);
  // kubectl delete twice, or a supervisor that repeats its signal.
  await reaper.kill(old.pid, SIGTERM);
  await reaper.kill(old.pid, SIGINT);
  t.is(await reaper.wait(old.pid, 1000), 'timeout', 'the later signals do not end the old agent in the middle of its handover');
  await eventually('both to be logged', () => logged(from, 'already_stopping').length === 2, 20_000);
  // Pending together, the kernel delivers the lower-numbered signal first: SIGINT may come before the second SIGTERM.
  t.deepEqual(logged(from, 'already_stopping').map((l) => /"signal":"(\w+)","first":"SIGTERM"/.exec(l)?.[1]).sort(), ['SIGINT', 'SIGTERM']);

  pass(toOld, confirmation);
  await relayRest(toOld, successor);
  t.is(await reaper.wait(old.pid, 20_000), 'exit 0', 'the old agent handed over and exited');
  old.client.close();
  const agent = await RestartableAgent.attach(reaper, successorPid, address);
  t.teardown(() => agent.stop());
  const { processes } = await agent.client.list({});
  t.deepEqual(processes.filter((p) => p.state === State.STATE_RUNNING).map((p) => p.handle).sort(), [handle, sleeper].sort(), 'the successor serves both processes');
  t.is(textOf(await chunks(agent.client, handle)), 'one\n', 'with the output captured before');
});

test.serial('a SIGTERM to the successor after it confirmed: it completes the takeover, then stops in order, and the next agent on the state dir has every process and its output', async (t) => {
  const from = reaper.stderr.length;
  const { dir, stateDir, old, handle, sleeper, pids, successorPid, successor, toOld, confirmation } = await relayedHandover(t, 'pidfd-agent-takeover-sigterm-', { successor: true });
  // The old agent has not been told of the confirmation: the successor waits for its release.
  await reaper.kill(successorPid, SIGTERM);
  t.is(await reaper.wait(successorPid, 1000), 'timeout', 'the successor lives on to complete what it confirmed');
  pass(toOld, confirmation);
  await relayRest(toOld, successor);
  t.is(await reaper.wait(old.pid, 20_000), 'exit 0', 'the old agent handed over');
  old.client.close();
  t.is(await reaper.wait(successorPid, 20_000), 'exit 0', 'the successor stopped as asked, once it had taken over');
  t.is(logged(from, 'stop_requested').length, 1);
  t.is(logged(from, 'taken_over').length, 1);
  t.regex(logged(from, 'stopping')[0] ?? '', /"signal":"SIGTERM"/);

  // Stopped in order: what its rings held waits in the state dir, as at any stop without successor.
  const rings = readdirSync(join(stateDir, 'capture')).filter((f) => f.endsWith('.ring'));
  t.deepEqual(rings, [`${handle}.stdout.ring`], 'the ring the successor was handed is saved');
  const next = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => next.stop());
  const { processes } = await next.client.list({});
  t.deepEqual(
    processes.filter((p) => p.state === State.STATE_RUNNING).map((p) => [p.handle, p.pid]).sort(),
    [handle, sleeper].map((h) => [h, pids.get(h)]).sort(),
    'the next agent re-adopts both processes',
  );
  t.is(textOf(await chunks(next.client, handle)), 'one\n', 'the output captured before the takeover is all there, at its offsets');
  writeFileSync(join(dir, 'two'), '');
  await eventually('"two" on the next agent', async () => textOf(await chunks(next.client, handle)) === 'one\ntwo\n', 20_000);
  t.pass();
});

test.serial('a SIGTERM to the successor before it has the whole snapshot: it does not confirm and exits 0, and the old agent serves on with everything', async (t) => {
  const from = reaper.stderr.length;
  const { dir, stateDir, aside, old, handle, sleeper, successorPid, successor, toOld, end } = await relayedSnapshot(t, 'pidfd-agent-takeover-sigterm-early-', { successor: true });
  await reaper.kill(successorPid, SIGTERM);
  t.is(await reaper.wait(successorPid, 1000), 'timeout', 'it waits for the rest of the snapshot, which the old agent bounds');
  pass(successor, end);
  t.is(await next(successor).catch(() => null), null, 'it closes the connection without confirming');
  successor.close();
  toOld.close(); // passed on: the old agent sees the successor gone
  t.is(await reaper.wait(successorPid, 20_000), 'exit 0', 'a stop asked for before it took anything over');
  t.is(logged(from, 'start_stopped').length, 1);
  t.is(logged(from, 'taken_over').length, 0);

  await eventually('the old agent to serve again', () => old.client.get({ handle }).then((r) => r.process !== undefined, () => false), 20_000);
  const { processes } = await old.client.list({});
  t.deepEqual(processes.filter((p) => p.state === State.STATE_RUNNING).map((p) => p.handle).sort(), [handle, sleeper].sort(), 'the old agent manages both');
  writeFileSync(join(dir, 'two'), '');
  await eventually('"two" on the old agent', async () => textOf(await chunks(old.client, handle)) === 'one\ntwo\n', 20_000);

  // And it still hands over, everything with it.
  renameSync(aside, join(stateDir, HANDOVER_SOCKET));
  const { agent, oldEnded } = await RestartableAgent.takeOver(reaper, dir, stateDir, old, ['--quiet']);
  t.teardown(() => agent.stop());
  t.is(oldEnded, 'exit 0');
  t.is(textOf(await chunks(agent.client, handle)), 'one\ntwo\n');
  t.is((await agent.client.get({ handle: sleeper })).process!.state, State.STATE_RUNNING);
});
