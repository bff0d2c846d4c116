// --after-handover linger (the DaemonSet's): the old agent stays after handing over, serving
// nothing. Should its successor go away (a rollback deleting the new pod, a stop, a crash), nobody
// would manage the processes and the lingering pod would never be replaced; so the old agent
// watches its successor (a pidfd) and, once it is gone and nobody serves the state dir
// (successor_gone), serves every process again itself, in its own process (resumed_serving), and
// hands over again to the next agent that asks.
import test, { type ExecutionContext } from 'ava';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient, State } from '../clients/ts/src/index.js';
import { connectServing } from '../src/handover/incoming.js';
import { useFdPassing, type FdSocket } from '../src/kernel/fd-passing.js';
import { SERVICE_NAME } from '../src/service/server.js';
import { AGENT_BIN, ROOT } from './helpers/agent-process.js';
import { agentDir, eventually, procState, sleep } from './helpers/harness.js';
import { healthCheck } from './helpers/health.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

useFdPassing(join(ROOT, 'dist/lib/libpidfd-fdpass.so'));

const SIGKILL = 9;
const SIGTERM = 15;
const SIGCONT = 18;
const SIGSTOP = 19;
/** Preloaded into an agent, stops it once it holds the store's lock, before it listens. */
const STOP_AT_STORE_LOCK = join(ROOT, 'test/fixtures/stop-at-store-lock.mjs');
/** The same, the second time the agent opens its store (a lingering agent serving again). */
const STOP_AT_SECOND_STORE_LOCK = join(ROOT, 'test/fixtures/stop-at-second-store-lock.mjs');

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

/**
 * An old agent (lingering after a handover) with two processes, on a subreaper of its own; node's
 * own options (a preload) before the agent's script, and more of the agent's flags, if any.
 */
async function lingeringNode(t: ExecutionContext, nodeArgs: readonly string[] = [], agentArgs: (dir: string) => readonly string[] = () => []): Promise<Node> {
  const reaper = Subreaper.start();
  const { dir, stateDir, address } = agentDir('pidfd-agent-linger-');
  t.teardown(async () => {
    await reaper.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const old = await RestartableAgent.attach(reaper, await reaper.start([process.execPath, ...nodeArgs, AGENT_BIN, '--listen', address, '--state-dir', stateDir, '--after-handover', 'linger', ...agentArgs(dir)]), address);
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

/** How many times `event` is logged by the agents that log. */
const logged = (node: Node, event: string) => (node.reaper.stderr.match(new RegExp(`"event":"${event}"`, 'g')) ?? []).length;

/** Pidfds the process holds. */
const pidfds = (pid: number) => readdirSync(`/proc/${pid}/fd`).filter((fd) => {
  try {
    return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[pidfd]';
  } catch {
    return false; // closed meanwhile
  }
}).length;

/**
 * The successor ends (`signal`); the lingering agent, the same process, serves again once
 * `resumed_serving` has been logged `times` in all.
 */
async function successorGoes(t: ExecutionContext, node: Node, next: { pid: number }, signal: number, ended: string, times = 1): Promise<void> {
  await node.reaper.kill(next.pid, signal);
  t.is(await node.reaper.wait(next.pid, 10_000), ended);
  const goneAt = performance.now();
  await eventually('the lingering agent to serve again', () => logged(node, 'resumed_serving') >= times, 20_000);
  const ms = performance.now() - goneAt;
  t.true(ms < 8000, `within a few seconds of its successor (${Math.round(ms)} ms)`);
  t.is(await node.reaper.wait(node.old.pid, 0), 'timeout', 'in the same process: it never exited');
  t.is(logged(node, 'successor_gone'), times);
  t.notRegex(node.reaper.stderr, /"event":"resume_failed"/);
}

test.serial('a lingering agent whose successor stops in order serves every process again, in its own process', async (t) => {
  const node = await lingeringNode(t);
  const next = await successor(node, ['--quiet']);
  await servesAll(t, next.client, node);
  next.client.close();
  await successorGoes(t, node, next, SIGTERM, 'exit 0');
  t.regex(node.reaper.stderr, new RegExp(`"event":"lingering","children":2,"successor":${next.pid}\\b`), 'it watched the agent it handed over to');
  await servesAll(t, node.old.client, node);
  for (const handle of node.processes.keys()) await node.old.client.signal({ handle, signal: 'SIGKILL' });
});

test.serial('a lingering agent whose successor is killed serves again in its own process: List, Get, Wait; its children keep their parent, parent_death_signal unsent', async (t) => {
  const node = await lingeringNode(t);
  // Its parent is the old agent: were that to exit, the kernel would kill it.
  const { process: dependent } = await node.old.client.spawn({ argv: ['/bin/sleep', '600'], parentDeathSignal: 'KILL' });
  node.processes.set(dependent!.handle, dependent!.pid);
  const pidfdsBefore = pidfds(node.old.pid);
  const next = await successor(node, ['--quiet']);
  await servesAll(t, next.client, node);
  next.client.close();

  await successorGoes(t, node, next, SIGKILL, 'signal 9');
  t.regex(node.reaper.stderr, /"event":"successor_gone"[^\n]*in its own process/, 'successor_gone says it takes the processes back in-process');
  t.true(procState(dependent!.pid) !== undefined && procState(dependent!.pid) !== 'Z', 'the process started with parent_death_signal still runs');
  // The same socket, answered by the same pid.
  await servesAll(t, node.old.client, node);
  const got = await node.old.client.get({ handle: dependent!.handle });
  t.is(got.process!.pid, dependent!.pid);
  t.is(got.process!.state, State.STATE_RUNNING);
  t.is(pidfds(node.old.pid), pidfdsBefore, 'one pidfd per process, as before the handover: none of the lingering ones left');
  // Its own child again: reaped here, with its status.
  const waited = node.old.client.wait({ handle: dependent!.handle });
  await node.old.client.signal({ handle: dependent!.handle, signal: 'SIGTERM' });
  const { process: done } = await waited;
  t.is(done!.exit?.signal, SIGTERM, 'Wait tells the exit, with its signal');
  t.false(done!.exit?.statusLost ?? false);
  for (const handle of node.processes.keys()) if (handle !== dependent!.handle) await node.old.client.signal({ handle, signal: 'SIGKILL' });
});

test.serial('an agent started after the lingering one served again takes over from it, and the lingering one follows, never taking the processes back from a newer one', async (t) => {
  // With the DaemonSet's probe socket and ready file, which tell whether this pod serves.
  const node = await lingeringNode(t, [], (dir) => ['--health-listen', `unix://${join(dir, 'probe.sock')}`, '--ready-file', join(dir, 'ready')]);
  const probe = `unix://${join(node.dir, 'probe.sock')}`;
  const ready = () => readFileSync(join(node.dir, 'ready'), 'utf8').trim();
  const next = await successor(node, ['--quiet']);
  next.client.close();
  t.is(await healthCheck(probe, SERVICE_NAME), 'NOT_SERVING', 'lingering: alive, serving no API');
  t.false(existsSync(join(node.dir, 'ready')));
  // Its container restarting, and waiting out the kubelet's backoff meanwhile.
  await successorGoes(t, node, next, SIGKILL, 'signal 9');
  await servesAll(t, node.old.client, node);
  t.is(await healthCheck(probe, SERVICE_NAME), 'SERVING', 'the same probe socket tells it serves again');
  t.is(await healthCheck(probe, ''), 'SERVING');
  t.is(ready(), String(node.old.pid), 'and the pod is ready again');

  // Back from backoff, with the DaemonSet's flags: it finds the old agent serving and takes over.
  const back = await successor(node, ['--quiet']);
  t.teardown(() => back.client.close());
  t.is(logged(node, 'handed_over'), 2, 'the resumed agent handed over again');
  t.is(logged(node, 'lingering'), 2, 'and lingers again');
  await servesAll(t, back.client, node);
  t.is(await healthCheck(probe, SERVICE_NAME), 'NOT_SERVING');
  t.is(await healthCheck(probe, ''), 'SERVING', 'alive to its liveness probe');
  t.false(existsSync(join(node.dir, 'ready')), 'unready');
  await sleep(7000); // longer than a lingering agent gives a state dir nobody serves
  t.is(await node.reaper.wait(node.old.pid, 0), 'timeout', 'the old agent lingers on: no exit 1');
  t.is(logged(node, 'resumed_serving'), 1, 'and takes nothing back while the newer agent serves');
  t.is(logged(node, 'successor_gone'), 1);
  await servesAll(t, back.client, node);
  // And once that one goes too, it serves again, as often as it takes.
  await successorGoes(t, node, back, SIGKILL, 'signal 9', 2);
  await servesAll(t, node.old.client, node);
  t.is(await healthCheck(probe, SERVICE_NAME), 'SERVING');
  t.is(ready(), String(node.old.pid));
  for (const handle of node.processes.keys()) await node.old.client.signal({ handle, signal: 'SIGKILL' });
});

test.serial('a SIGTERM while the lingering agent takes the processes back: that start completes, the agent stops in order (exit 0), and the next agent serves every process', async (t) => {
  const node = await lingeringNode(t, ['--import', STOP_AT_SECOND_STORE_LOCK]);
  const next = await successor(node, ['--quiet']);
  next.client.close();
  await node.reaper.kill(next.pid, SIGKILL);
  t.is(await node.reaper.wait(next.pid, 10_000), 'signal 9');
  await eventually('the lingering agent to hold the store again, not serving yet', () => procState(node.old.pid) === 'T' && storeLockers(node.stateDir).includes(node.old.pid), 20_000);
  t.false(listening(join(node.stateDir, 'handover.sock')), 'nobody listens on handover.sock');
  // Pending until it runs again: the store is open, so the start goes on and the stop follows.
  await node.reaper.kill(node.old.pid, SIGTERM);
  await node.reaper.kill(node.old.pid, SIGCONT);
  t.is(await node.reaper.wait(node.old.pid, 20_000), 'exit 0');
  t.regex(node.reaper.stderr, /"event":"restored","readopted":2\b/, 'it had taken every process back');
  t.regex(node.reaper.stderr, /"event":"stopping"[^\n]*"signal":"SIGTERM"/, 'and stopped in order');
  t.notRegex(node.reaper.stderr, /"event":"(resume_failed|start_stopped)"/);

  const restarted = await node.reaper.start([process.execPath, AGENT_BIN, '--listen', node.address, '--state-dir', node.stateDir, '--takeover', 'if-serving', '--quiet']);
  const client = await served(node, restarted);
  t.teardown(() => client.close());
  await servesAll(t, client, node);
  for (const handle of node.processes.keys()) await client.signal({ handle, signal: 'SIGKILL' });
});

test.serial('a successor that asks while another connection to handover.sock sends nothing is not refused (review L3)', async (t) => {
  const node = await lingeringNode(t);
  // As lingering agents and starts without --takeover look who serves: connections that never
  // send a request, several open at every moment while the successor starts, each for less than
  // the serving agent waits for a request.
  const probes = new Set<FdSocket>();
  let probing = true;
  const prober = (async () => {
    while (probing) {
      const s = connectServing(node.stateDir);
      if (typeof s !== 'string') {
        probes.add(s);
        setTimeout(() => probes.delete(s) && s.close(), 800);
      }
      await sleep(50);
    }
  })();
  t.teardown(async () => {
    probing = false;
    await prober;
    for (const s of probes) s.close();
    probes.clear();
  });
  const next = await successor(node, ['--quiet']);
  t.teardown(() => next.client.close());
  probing = false;
  await prober;
  // The empty connections still open close within 800 ms; each is then refused (it sent no request).
  await eventually('the empty connections to be refused', () => /"event":"handover_refused"/.test(node.reaper.stderr), 5000);
  t.notRegex(node.reaper.stderr, /a handover is already in progress/, 'the successor was not refused');
  await servesAll(t, next.client, node);
  for (const handle of node.processes.keys()) await next.client.signal({ handle, signal: 'SIGKILL' });
});

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

test.serial('a successor that hands over in turn: the lingering agent watches the next one, and serves again only once nobody serves', async (t) => {
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

  await successorGoes(t, node, third, SIGKILL, 'signal 9');
  await servesAll(t, node.old.client, node);
  for (const handle of node.processes.keys()) await node.old.client.signal({ handle, signal: 'SIGKILL' });
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
