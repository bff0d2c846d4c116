// Stop and Signal with the tree scope: the whole cgroup a process was spawned into, with members
// that escaped its session (setsid, double fork) and one that forks all the time.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { AgentCallError, SignalTarget, State, status } from '../clients/ts/src/index.js';
import { cgroup2Mount } from '../src/process/spawn/cgroups.js';
import { runCliText } from './helpers/cli.js';
import { eventually, procState, startHarness, tempDir, tryRmdir, type Harness } from './helpers/harness.js';

const mount = cgroup2Mount();
const parent = mount === undefined ? undefined : join(mount, `pidfd-agent-tree-${process.pid}`);
let h: Harness;
test.before(async () => {
  h = await startHarness({ cgroupParent: parent });
});
test.after.always(async () => {
  await h?.close();
  if (parent !== undefined) tryRmdir(parent);
});

const ms = (n: number) => ({ seconds: Math.floor(n / 1000), nanos: (n % 1000) * 1e6 });
const alive = (pid: number) => procState(pid) !== undefined && procState(pid) !== 'Z';
const readPid = (file: string) => (existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) || false : false);
/** The cgroup of a pid as /proc shows it (the test's own view, to check what the agent did). */
const cgroupOf = (pid: number) => readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'))!.slice(3);
/** Each member of a handle's own cgroup as "pid comm state", for a failure's message. */
const treeMembers = (handle: string): string => {
  const dir = h.agent.manager.get(handle).ownedCgroup!;
  const pids = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
  return pids.map((pid) => `${pid} ${existsSync(`/proc/${pid}/comm`) ? readFileSync(`/proc/${pid}/comm`, 'utf8').trim() : '?'} ${procState(Number(pid)) ?? '-'}`).join(', ');
};
const populatedNow = (dir: string) => existsSync(join(dir, 'cgroup.events')) && /^populated 1$/m.test(readFileSync(join(dir, 'cgroup.events'), 'utf8'));

/**
 * A leader ignoring SIGTERM (and so, inherited, everything it starts) with a double-forked daemon
 * in a session of its own and a loop that forks without pause.
 */
async function spawnTree() {
  const dir = tempDir('pidfd-agent-tree-');
  const script = [
    'trap "" TERM',
    `( setsid sh -c 'echo $$ > ${dir}/daemon.pid; exec sleep 300' & )`,
    `sh -c 'echo $$ > ${dir}/forker.pid; while :; do /bin/true; done' &`,
    'wait',
  ].join('\n');
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', script], cgroup: { create: true } });
  const daemon = await eventually('the daemon', () => readPid(join(dir, 'daemon.pid')));
  const forker = await eventually('the fork loop', () => readPid(join(dir, 'forker.pid')));
  await eventually('the daemon to exec sleep', () => readFileSync(`/proc/${daemon}/comm`, 'utf8').trim() === 'sleep');
  const cgroup = join(mount!, cgroupOf(p!.pid));
  return { p: p!, daemon, forker, cgroup };
}

test.serial('stop --tree leaves nothing alive: a double-forked setsid daemon and a fork loop, after SIGKILL through cgroup.kill', async (t) => {
  const { p, daemon, forker, cgroup } = await spawnTree();
  t.is(cgroupOf(daemon), cgroupOf(p.pid), 'the daemon left the session, not the cgroup');
  t.not(readFileSync(`/proc/${daemon}/stat`, 'utf8').split(' ')[5], readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(' ')[5], 'the daemon has a session of its own');
  const res = await h.client.stop({ handle: p.handle, grace: ms(300), tree: true });
  // Checked at once: the reply came only after cgroup.events said populated 0.
  t.false(populatedNow(cgroup), 'the cgroup is empty when Stop returns');
  t.false(alive(daemon), 'the daemon is gone');
  t.false(alive(forker), 'the fork loop is gone');
  t.true(res.escalated, 'SIGTERM was ignored, so the tree got SIGKILL');
  t.is(res.process!.state, State.STATE_EXITED);
  t.is(res.process!.exit!.signal, 9);
  t.truthy(res.treeGoneAt);
  t.true(res.treeGoneAt!.getTime() >= res.process!.startedAt!.getTime());
});

test.serial('stop --tree of a tree that honours SIGTERM ends it within the grace', async (t) => {
  const dir = tempDir('pidfd-agent-tree-');
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', `( setsid sh -c 'echo $$ > ${dir}/d.pid; exec sleep 300' & ); exec sleep 300`], cgroup: { create: true } });
  const daemon = await eventually('the daemon', () => readPid(join(dir, 'd.pid')));
  await eventually('the daemon to exec sleep', () => readFileSync(`/proc/${daemon}/comm`, 'utf8').trim() === 'sleep');
  const before = treeMembers(p!.handle);
  const started = Date.now();
  const res = await h.client.stop({ handle: p!.handle, grace: ms(30_000), tree: true });
  t.false(res.escalated, `the tree before the stop: ${before}; the stop took ${Date.now() - started} ms`);
  t.is(res.process!.exit!.signal, 15);
  t.false(alive(daemon), 'the daemon got SIGTERM through its own pidfd');
  t.truthy(res.treeGoneAt);
});

test.serial('a tree outlives its leader: Signal SIGNAL_TARGET_TREE still reaches it, and stop --tree waits for it', async (t) => {
  const dir = tempDir('pidfd-agent-tree-');
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', `( setsid sh -c 'echo $$ > ${dir}/d.pid; exec sleep 300' & )`], cgroup: { create: true } });
  const daemon = await eventually('the daemon', () => readPid(join(dir, 'd.pid')));
  await h.client.wait({ handle: p!.handle });
  t.true(alive(daemon), 'the leader exited, the daemon runs on');
  const e = await t.throwsAsync(h.client.signal({ handle: p!.handle, signal: 'TERM' }), { instanceOf: AgentCallError });
  t.is(e.reason, 'PROCESS_EXITED', 'the process itself is not signalled after its exit');
  await h.client.signal({ handle: p!.handle, signal: 'STOP', target: SignalTarget.SIGNAL_TARGET_TREE });
  await eventually('the daemon to stop', () => procState(daemon) === 'T');
  const res = await h.client.stop({ handle: p!.handle, signal: 'KILL', tree: true });
  t.false(alive(daemon));
  t.is(res.process!.exit!.code, 0, 'the exit is the leader\'s own');
  t.truthy(res.treeGoneAt);
});

test.serial('the CLI: pidfdctl stop HANDLE --tree', async (t) => {
  const { p, daemon, forker } = await spawnTree();
  const r = await runCliText(h.address, ['stop', p.handle, '--tree', '--grace', '200ms']);
  t.is(r.code, 128 + 9, r.stderr);
  t.regex(r.stdout, /^killed by SIGKILL \(signal 9\) \(after SIGKILL: the grace period ran out\); the whole tree was gone at \d{4}-\d\d-\d\dT/);
  t.false(alive(daemon));
  t.false(alive(forker));
});

test.serial('a process without its own cgroup: FAILED_PRECONDITION that says so; tree excludes process_group', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  const e = await t.throwsAsync(h.client.stop({ handle: p!.handle, tree: true }), { instanceOf: AgentCallError });
  t.is(e.code, status.FAILED_PRECONDITION);
  t.is(e.reason, 'NO_OWN_CGROUP');
  t.regex(e.details, /no cgroup of its own/);
  const s = await t.throwsAsync(h.client.signal({ handle: p!.handle, target: SignalTarget.SIGNAL_TARGET_TREE }), { instanceOf: AgentCallError });
  t.is(s.reason, 'NO_OWN_CGROUP');
  const both = await t.throwsAsync(h.client.stop({ handle: p!.handle, tree: true, processGroup: true }), { instanceOf: AgentCallError });
  t.is(both.code, status.INVALID_ARGUMENT);
  // Running, sleeping or paging itself in (D, under load): neither dead nor stopped.
  t.true(['R', 'S', 'D'].includes(procState(p!.pid) ?? ''), 'nothing was sent');
  t.falsy((await h.client.get({ handle: p!.handle })).process!.exit);
  await h.client.stop({ handle: p!.handle });
});
