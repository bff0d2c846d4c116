// --after-handover linger (the DaemonSet's): the old agent stays after handing over, serving
// nothing. Should its successor go away (a rollback deleting the new pod, a stop, a crash), nobody
// would manage the processes and the lingering pod would never be replaced; so the old agent
// watches its successor (a pidfd) and, once it is gone and nobody serves the state dir, exits 1
// (successor_gone) to be restarted, and the agent started next takes every process back.
import test, { type ExecutionContext } from 'ava';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient, State } from '../clients/ts/src/index.js';
import { AGENT_BIN, ROOT } from './helpers/agent-process.js';
import { agentDir, eventually, procState, sleep } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const SIGKILL = 9;
const SIGTERM = 15;
const SIGCONT = 18;
const SIGSTOP = 19;
/** Preloaded into an agent, stops it once it holds the store's lock, before it listens. */
const STOP_AT_STORE_LOCK = join(ROOT, 'test/fixtures/stop-at-store-lock.mjs');

/** The pids holding a lock on STATE_DIR/agent.db, as /proc/locks lists them. */
function storeLockers(stateDir: string): number[] {
  const ino = statSync(join(stateDir, 'agent.db')).ino;
  return readFileSync('/proc/locks', 'latin1')
    .split('\n')
    .map((line) => line.split(/\s+/))
    .filter((f) => f[5]?.endsWith(`:${ino}`))
    .map((f) => Number(f[4]));
}

/** A socket is bound at path (the successor killed left its file behind, but no socket). */
const listening = (path: string): boolean => readFileSync('/proc/net/unix', 'latin1').split('\n').some((line) => line.endsWith(` ${path}`));

interface Node {
  reaper: Subreaper;
  dir: string;
  stateDir: string;
  address: string;
  old: RestartableAgent;
  /** Handle → pid of the processes the old agent started. */
  processes: Map<string, number>;
}

/** An old agent (lingering after a handover) with two processes, on a subreaper of its own. */
async function lingeringNode(t: ExecutionContext): Promise<Node> {
  const reaper = Subreaper.start();
  const { dir, stateDir, address } = agentDir('pidfd-agent-linger-');
  t.teardown(async () => {
    await reaper.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const old = await RestartableAgent.start(reaper, dir, stateDir, ['--after-handover', 'linger'], true);
  t.teardown(() => old.client.close());
  const processes = new Map<string, number>();
  for (let i = 0; i < 2; i++) {
    const { process: p } = await old.client.spawn({ argv: ['/bin/sleep', '600'] });
    processes.set(p!.handle, p!.pid);
  }
  return { reaper, dir, stateDir, address, old, processes };
}

/** As the DaemonSet starts its new pod: an agent that takes over if one serves; its pid once it serves. */
async function successor(node: Node, args: readonly string[] = []): Promise<{ pid: number; client: AgentClient }> {
  const before = handovers(node);
  const pid = await node.reaper.start([process.execPath, AGENT_BIN, '--listen', node.address, '--state-dir', node.stateDir, '--takeover', 'if-serving', ...args]);
  // Until then the agent before it answers on the socket.
  await eventually('the agent before to hand over', () => handovers(node) > before, 20_000);
  return { pid, client: await served(node, pid) };
}

/** How many handovers the agents that log (the old one, not the quiet ones) have made. */
const handovers = (node: Node) => (node.reaper.stderr.match(/"event":"handed_over"/g) ?? []).length;

/** A client once `pid` serves. */
async function served(node: Node, pid: number): Promise<AgentClient> {
  const agent = await RestartableAgent.attach(node.reaper, pid, node.address);
  return agent.client;
}

/** Every process the old agent started is running and served by `client`, with its pid. */
async function servesAll(t: ExecutionContext, client: AgentClient, node: Node): Promise<void> {
  const { processes } = await client.list({});
  const running = new Map(processes.filter((p) => p.state === State.STATE_RUNNING).map((p) => [p.handle, p.pid]));
  t.deepEqual(running, node.processes, 'every process, with its pid, running and managed');
}

async function successorGoes(t: ExecutionContext, signal: number, ended: string): Promise<void> {
  const node = await lingeringNode(t);
  const next = await successor(node, ['--quiet']);
  await servesAll(t, next.client, node);
  next.client.close();

  await node.reaper.kill(next.pid, signal);
  t.is(await node.reaper.wait(next.pid, 10_000), ended);
  const goneAt = performance.now();
  t.is(await node.reaper.wait(node.old.pid, 20_000), 'exit 1', 'the lingering agent exits 1, to be restarted');
  const ms = performance.now() - goneAt;
  t.true(ms < 8000, `within a few seconds of its successor (${Math.round(ms)} ms)`);
  t.regex(node.reaper.stderr, /"event":"successor_gone"/);
  t.regex(node.reaper.stderr, new RegExp(`"event":"lingering","children":2,"successor":${next.pid}\\b`), 'it watched the agent it handed over to');

  // As its restarted container does: nobody serves, so it starts afresh and re-adopts everything.
  const restarted = await node.reaper.start([process.execPath, AGENT_BIN, '--listen', node.address, '--state-dir', node.stateDir, '--takeover', 'if-serving', '--quiet']);
  const client = await served(node, restarted);
  t.teardown(() => client.close());
  await servesAll(t, client, node);
  for (const handle of node.processes.keys()) await client.signal({ handle, signal: 'SIGKILL' });
}

test.serial('a lingering agent whose successor stops in order exits 1 (successor_gone), and the agent started next serves every process', (t) => successorGoes(t, SIGTERM, 'exit 0'));

test.serial('a lingering agent whose successor is killed exits 1 (successor_gone), and the agent started next serves every process', (t) => successorGoes(t, SIGKILL, 'signal 9'));

test.serial('a lingering agent stays while its successor serves, and still ends 0 on SIGTERM', async (t) => {
  const node = await lingeringNode(t);
  const next = await successor(node, ['--quiet']);
  t.teardown(() => next.client.close());
  await sleep(7000); // longer than the lingering agent would give an absent successor
  t.is(await node.reaper.wait(node.old.pid, 0), 'timeout', 'the old agent lingers');
  t.notRegex(node.reaper.stderr, /successor_(exited|gone)/);
  await node.reaper.kill(node.old.pid, SIGTERM);
  t.is(await node.reaper.wait(node.old.pid, 10_000), 'exit 0');
  await servesAll(t, next.client, node);
  for (const handle of node.processes.keys()) await next.client.signal({ handle, signal: 'SIGKILL' });
  await node.reaper.kill(next.pid, SIGTERM);
});

test.serial('a successor that hands over in turn: the lingering agent watches the next one, and goes only once nobody serves', async (t) => {
  const node = await lingeringNode(t);
  const second = await successor(node); // logs, so that its own handover is seen
  second.client.close();
  const third = await successor(node, ['--quiet']);
  t.teardown(() => third.client.close());
  t.is(await node.reaper.wait(second.pid, 10_000), 'exit 0', 'the second agent exits after handing over (--after-handover exit)');
  await eventually('the lingering agent to watch the third', () => new RegExp(`"event":"successor_watched","pid":${third.pid}\\b`).test(node.reaper.stderr), 10_000);
  await sleep(6000);
  t.is(await node.reaper.wait(node.old.pid, 0), 'timeout', 'the old agent lingers while the third serves');
  t.notRegex(node.reaper.stderr, /successor_gone/);
  await servesAll(t, third.client, node);

  await node.reaper.kill(third.pid, SIGKILL);
  t.is(await node.reaper.wait(third.pid, 10_000), 'signal 9');
  t.is(await node.reaper.wait(node.old.pid, 20_000), 'exit 1');
  t.regex(node.reaper.stderr, /"event":"successor_gone"/);
  const restarted = await node.reaper.start([process.execPath, AGENT_BIN, '--listen', node.address, '--state-dir', node.stateDir, '--quiet']);
  const client = await served(node, restarted);
  t.teardown(() => client.close());
  await servesAll(t, client, node);
  for (const handle of node.processes.keys()) await client.signal({ handle, signal: 'SIGKILL' });
});

test.serial('a lingering agent whose successor is gone stays while a new agent holds the store without answering yet, and follows it once it serves', async (t) => {
  const node = await lingeringNode(t);
  const next = await successor(node, ['--quiet']);
  next.client.close();
  // Held still, so that what it finds once the successor is gone is decided here, not by timing.
  await node.reaper.kill(node.old.pid, SIGSTOP);
  await node.reaper.kill(next.pid, SIGKILL);
  t.is(await node.reaper.wait(next.pid, 10_000), 'signal 9');

  // As the kubelet restarts the successor's container: an agent that opens the store (and takes
  // its lock) long before it listens; caught in between.
  const restarted = await node.reaper.start([process.execPath, '--import', STOP_AT_STORE_LOCK, AGENT_BIN, '--listen', node.address, '--state-dir', node.stateDir, '--takeover', 'if-serving', '--quiet']);
  await eventually('the restarted agent to stop holding the store', () => procState(restarted) === 'T' && storeLockers(node.stateDir).includes(restarted), 20_000);
  t.false(listening(join(node.stateDir, 'handover.sock')), 'nobody listens on handover.sock');
  await node.reaper.kill(node.old.pid, SIGCONT);
  await sleep(7000); // longer than it gives a state dir nobody serves
  t.is(await node.reaper.wait(node.old.pid, 0), 'timeout', 'the old agent lingers while an agent holds the store');
  t.notRegex(node.reaper.stderr, /successor_gone/);
  t.regex(node.reaper.stderr, new RegExp(`"event":"successor_starting","pid":${restarted}\\b`), 'it saw who holds the store');

  await node.reaper.kill(restarted, SIGCONT);
  const client = await served(node, restarted);
  t.teardown(() => client.close());
  await eventually('the lingering agent to watch it', () => new RegExp(`"event":"successor_watched","pid":${restarted}\\b`).test(node.reaper.stderr), 10_000);
  await servesAll(t, client, node);
  t.is(await node.reaper.wait(node.old.pid, 0), 'timeout', 'the old agent lingers on');
  for (const handle of node.processes.keys()) await client.signal({ handle, signal: 'SIGKILL' });
});
