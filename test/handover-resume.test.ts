// What a lingering agent that serves again (--after-handover linger, resumed_serving) leaves of
// the agent it was, in the same process: no earlier table, event ring or capture ring stays
// reachable; the children of its own the new table does not take back are still reaped; exits it
// reaped while nobody served keep their status; and its metrics are the process's, each once.
import test, { type ExecutionContext } from 'ava';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentClient, OutputMode } from '../clients/ts/src/index.js';
import { AGENT_BIN, ROOT } from './helpers/agent-process.js';
import { agentDir, eventually, procState, sleep } from './helpers/harness.js';
import { placeComesBack, policyFile, refusedWith, spawnAndRelease } from './helpers/released.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const SIGKILL = 9;
const SIGUSR2 = 12;
const SIGTERM = 15;
/** Preloaded into an agent: another process takes the store's lock right before its second opening. */
const HOLD_STORE_AT_SECOND_OPEN = join(ROOT, 'test/fixtures/hold-store-at-second-open.mjs');

interface Node {
  reaper: Subreaper;
  dir: string;
  stateDir: string;
  address: string;
  old: RestartableAgent;
}

/** An agent that lingers after a handover, on a subreaper of its own; node's options before the script. */
async function node(t: ExecutionContext, nodeArgs: (dir: string) => readonly string[], agentArgs: readonly string[] = [], env: Record<string, string> = {}): Promise<Node> {
  const reaper = Subreaper.start();
  const { dir, stateDir, address } = agentDir('pidfd-agent-resume-');
  t.teardown(async () => {
    await reaper.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const args = ['/usr/bin/env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, ...nodeArgs(dir), AGENT_BIN, '--listen', address, '--state-dir', stateDir, '--after-handover', 'linger', ...agentArgs];
  const old = await RestartableAgent.attach(reaper, await reaper.start(args), address);
  t.teardown(() => old.client.close());
  return { reaper, dir, stateDir, address, old };
}

const logged = (n: Node, event: string) => (n.reaper.stderr.match(new RegExp(`"event":"${event}"`, 'g')) ?? []).length;

/** When `event` was logged the `nth` time (1-based), in ms. */
const loggedAt = (n: Node, event: string, nth = 1): number =>
  Date.parse(JSON.parse(n.reaper.stderr.split('\n').filter((l) => l.includes(`"event":"${event}"`))[nth - 1]!).time as string);

/** A successor takes over (the DaemonSet's flags, and `args`); its pid once it serves. */
async function handOver(n: Node, args: readonly string[] = []): Promise<number> {
  const before = logged(n, 'handed_over');
  const pid = await n.reaper.start([process.execPath, AGENT_BIN, '--listen', n.address, '--state-dir', n.stateDir, '--takeover', 'if-serving', '--quiet', ...args]);
  await eventually('the handover', () => logged(n, 'handed_over') > before, 20_000);
  const next = await RestartableAgent.attach(n.reaper, pid, n.address);
  next.client.close();
  return pid;
}

/** The successor is killed; the lingering agent serves again. `then` runs right after its death. */
async function successorKilled(t: ExecutionContext, n: Node, pid: number, then: () => void = () => {}): Promise<void> {
  const before = logged(n, 'resumed_serving');
  await n.reaper.kill(pid, SIGKILL);
  t.is(await n.reaper.wait(pid, 10_000), 'signal 9');
  then();
  await eventually('the lingering agent to serve again', () => logged(n, 'resumed_serving') > before, 20_000);
  const client = new AgentClient(n.address);
  await eventually('it answers', async () => {
    try {
      await client.list({}, { deadline: 1000 });
      return true;
    } catch {
      return undefined;
    }
  });
  client.close();
  t.notRegex(n.reaper.stderr, /"event":"resume_failed"/);
}

/** Objects by constructor name in a heap snapshot of `pid` (written after a full GC). */
async function heapCounts(n: Node, pid: number, names: readonly string[]): Promise<Record<string, number>> {
  const diag = join(n.dir, 'diag');
  const before = new Set(readdirSync(diag));
  await n.reaper.kill(pid, SIGUSR2);
  const file = join(diag, await eventually('a heap snapshot', () => readdirSync(diag).find((f) => !before.has(f) && f.endsWith('.heapsnapshot')), 60_000));
  let snapshot;
  for (;;) {
    try {
      snapshot = JSON.parse(readFileSync(file, 'utf8')); // complete once it parses
      break;
    } catch {
      await sleep(500);
    }
  }
  rmSync(file);
  const fields = snapshot.snapshot.meta.node_fields as string[];
  const types = snapshot.snapshot.meta.node_types[0] as string[];
  const [typeAt, nameAt] = [fields.indexOf('type'), fields.indexOf('name')];
  const counts: Record<string, number> = Object.fromEntries(names.map((name) => [name, 0]));
  const nodes = snapshot.nodes as number[];
  for (let i = 0; i < nodes.length; i += fields.length) {
    if (types[nodes[i + typeAt]!] !== 'object') continue;
    const name = snapshot.strings[nodes[i + nameAt]!] as string;
    if (name in counts) counts[name]!++;
  }
  return counts;
}

test.serial('an agent that served again twice holds one table: no earlier table, event ring or ring stays, and each RPC metric is exported once', async (t) => {
  const n = await node(t, (dir) => {
    mkdirSync(join(dir, 'diag'));
    return ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${join(dir, 'diag')}`];
  }, ['--metrics-listen', '127.0.0.1:0']);
  // Output in a ring, for the handover to copy and the lingering agent to let go of.
  const { process: talker } = await n.old.client.spawn({ argv: ['/bin/sh', '-c', 'head -c 1000000 /dev/zero; exec sleep 600'], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  await n.old.client.spawn({ argv: ['/bin/sleep', '600'] });
  await n.old.client.list({});
  const names = ['ProcessManager', 'EventLog', 'StdioTable', 'OutputRing'];
  const serving = await heapCounts(n, n.old.pid, names);
  t.like(serving, { ProcessManager: 1, EventLog: 1, StdioTable: 1 });
  t.true(serving.OutputRing! >= 1, 'the ring is there while it serves');
  for (let cycle = 1; cycle <= 2; cycle++) {
    const next = await handOver(n);
    t.like(await heapCounts(n, n.old.pid, names), { OutputRing: 0 }, `cycle ${cycle}: lingering, it holds no ring (the successor has its copies)`);
    await successorKilled(t, n, next);
    t.like(await heapCounts(n, n.old.pid, names), { ProcessManager: 1, EventLog: 1, StdioTable: 1 }, `after serving again ${cycle} time(s): only the table it serves`);
  }
  const client = new AgentClient(n.address);
  t.teardown(() => client.close());
  const { process: p } = await client.get({ handle: talker!.handle });
  t.is(p!.pid, talker!.pid, 'the process with its ring is served still');
  const url = JSON.parse(n.reaper.stderr.split('\n').find((l) => l.includes('"event":"telemetry"'))!).metrics_url as string;
  const text = await (await fetch(url)).text();
  t.is((text.match(/^# TYPE rpc_server_call_duration /gm) ?? []).length, 1, 'one family');
  const counts = text.split('\n').filter((l) => l.startsWith('rpc_server_call_duration_count{'));
  const series = counts.map((l) => l.slice(0, l.lastIndexOf(' ')));
  t.true(series.length > 0);
  t.is(new Set(series).size, series.length, 'each series once');
  const list = counts.find((l) => l.includes('AgentService/List') && l.includes('"OK"'));
  t.truthy(list);
  t.true(Number(list!.slice(list!.lastIndexOf(' ') + 1)) >= 3, 'the calls of every agent this process ran, counted on in one series');
});

test.serial('serving again: a released child is still reaped (no zombie, counted until its exit), and a child that exited while nobody served keeps its status', async (t) => {
  const n = await node(t, () => [], ['--max-processes', '3']);
  const { process: released } = await n.old.client.spawn({ argv: ['/bin/sleep', '600'] });
  await n.old.client.release({ handle: released!.handle });
  const { process: victim } = await n.old.client.spawn({ argv: ['/bin/sleep', '600'] });
  const next = await handOver(n);
  // Killed while nobody serves: the lingering agent, its parent, reaps it.
  await successorKilled(t, n, next, () => process.kill(victim!.pid, 'SIGTERM'));
  const client = new AgentClient(n.address);
  t.teardown(() => client.close());
  const { process: exited } = await client.get({ handle: victim!.handle });
  t.falsy(exited!.exit?.statusLost, 'its status is not lost');
  t.is(exited!.exit?.signal, 15, 'the SIGTERM it died of');
  t.regex(n.reaper.stderr, /"event":"restored".*"reaped_while_lingering":1/);
  // max_processes 3: the released child still counts, so two more run, not three.
  const more = [];
  for (let i = 0; i < 2; i++) more.push((await client.spawn({ argv: ['/bin/sleep', '600'] })).process!);
  await t.throwsAsync(client.spawn({ argv: ['/bin/sleep', '600'] }), { message: /MAX_PROCESSES|at most 3 processes/ });
  process.kill(released!.pid, 'SIGKILL');
  await eventually('the released child to be reaped', () => procState(released!.pid) === undefined || undefined, 10_000);
  await eventually('its place to be free', async () => {
    try {
      return (await client.spawn({ argv: ['/bin/sleep', '600'] })).process;
    } catch {
      return undefined;
    }
  }, 10_000);
  for (const p of more) process.kill(p.pid, 'SIGKILL');
});

test.serial("serving again: what its successor released while it ran still counts against the owner's max_processes, until it exits", async (t) => {
  const policy = ['--policy', policyFile()];
  const n = await node(t, () => [], policy);
  const next = await handOver(n, policy);
  // Released at the successor: its children, not the lingering agent's, which has never heard of them.
  const client = new AgentClient(n.address);
  t.teardown(() => client.close());
  const [one] = [await spawnAndRelease(t, client), await spawnAndRelease(t, client)];
  await refusedWith(t, client, 2);
  await successorKilled(t, n, next);
  await refusedWith(t, client, 2);
  t.regex(n.reaper.stderr, /"event":"restored".*"released_running":2/);
  await placeComesBack(t, client, one!);
});

test.serial('a resume that fails before it takes anything (a policy broken meanwhile) lingers on and tries again, and serves once it can', async (t) => {
  const { dir: policyDir } = agentDir('pidfd-agent-resume-policy-');
  t.teardown(() => rmSync(policyDir, { recursive: true, force: true }));
  const policy = join(policyDir, 'policy.yaml');
  const good = 'rules:\n  - name: root\n    identities: ["unix:uid=0"]\n    role: admin\n';
  writeFileSync(policy, good);
  const n = await node(t, () => [], ['--policy', policy]);
  const { process: child } = await n.old.client.spawn({ argv: ['/bin/sleep', '600'], parentDeathSignal: 'KILL' });
  const next = await handOver(n);
  writeFileSync(policy, 'rules: [ this is not a policy\n');
  await n.reaper.kill(next, SIGKILL);
  t.is(await n.reaper.wait(next, 10_000), 'signal 9');
  await eventually('the resume to fail', () => logged(n, 'resume_failed') >= 1, 20_000);
  t.regex(n.reaper.stderr, /"event":"resume_failed".*"retry_in_ms":1000/);
  t.is(await n.reaper.wait(n.old.pid, 1000), 'timeout', 'it did not exit');
  t.is(procState(child!.pid) === undefined || procState(child!.pid) === 'Z', false, 'parent_death_signal unsent: the child runs');
  writeFileSync(policy, good);
  await eventually('it to serve again', () => logged(n, 'resumed_serving') >= 1, 30_000);
  const client = new AgentClient(n.address);
  t.teardown(() => client.close());
  const { process: p } = await client.get({ handle: child!.handle });
  t.is(p!.pid, child!.pid, 'the process is served again, with its pid');
  await n.reaper.kill(n.old.pid, SIGTERM);
  t.is(await n.reaper.wait(n.old.pid, 10_000), 'exit 0'); // and the child gets its parent_death_signal
});

test.serial('a resume that loses the store to an agent starting in that instant defers at once (no lock wait on the event loop), and serves once that one is gone', async (t) => {
  const { dir: tmp } = agentDir('pidfd-agent-resume-hold-');
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const pidFile = join(tmp, 'holder.pid');
  const n = await node(t, () => ['--import', HOLD_STORE_AT_SECOND_OPEN], [], { HOLD_STORE_PID_FILE: pidFile });
  const { process: child } = await n.old.client.spawn({ argv: ['/bin/sleep', '600'] });
  const next = await handOver(n);
  await n.reaper.kill(next, SIGKILL);
  t.is(await n.reaper.wait(next, 10_000), 'signal 9');
  await eventually('the resume to be deferred', () => logged(n, 'resume_deferred') >= 1, 30_000);
  t.true(existsSync(pidFile));
  const ms = loggedAt(n, 'resume_deferred') - loggedAt(n, 'successor_gone');
  // The holder is started and waited for in there too (a node process: some hundreds of ms);
  // SQLite's busy wait alone was 5 s.
  t.true(ms < 3000, `deferred ${ms} ms after successor_gone`);
  t.notRegex(n.reaper.stderr, /"event":"resume_failed"/);
  process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
  await eventually('it to serve again', () => logged(n, 'resumed_serving') >= 1, 30_000);
  const client = new AgentClient(n.address);
  t.teardown(() => client.close());
  t.is((await client.get({ handle: child!.handle })).process!.pid, child!.pid);
  process.kill(child!.pid, 'SIGKILL');
});
