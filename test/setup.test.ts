import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { AgentCallError, ExitReason, status, type AgentClient } from '../clients/ts/src/index.js';

type SpawnRequest = NonNullable<Parameters<AgentClient['spawn']>[0]>;
import { openFdCount } from '../src/kernel/fd.js';
import { cgroup2Mount, cgroupV1Mounts } from '../src/process/spawn/cgroups.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { runCliText } from './helpers/cli.js';
import { eventually, procState, sleep, startHarness, type Harness, tempDir, tryRmdir } from './helpers/harness.js';

let h: Harness;
let dir: string;
test.before(async () => {
  h = await startHarness();
  await h.client.list(); // connect now, so fd counts below see only what a call leaves behind
  dir = tempDir('pidfd-agent-setup-');
  chmodSync(dir, 0o777);
});
test.after.always(async () => {
  await h?.close();
});

let n = 0;
/** Runs a shell snippet with the given options; returns what it printed and its exit. */
async function run(script: string, req: SpawnRequest = {}) {
  const out = join(dir, `out-${n++}.txt`);
  const { process: p } = await h.client.spawn({ ...req, argv: ['sh', '-c', script], stdout: { mode: 2, path: out } });
  const { process: done } = await h.client.wait({ handle: p!.handle });
  return { text: readFileSync(out, 'utf8'), exit: done!.exit!, handle: p!.handle };
}

const field = (text: string, name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim().split(/\s+/);

test('user, group, groups and no_new_privs show in the child /proc/self/status', async (t) => {
  const { text } = await run('cat /proc/self/status', { user: 'nobody', group: 'daemon', groups: ['adm', '7'], noNewPrivs: true });
  t.deepEqual(field(text, 'Uid'), ['65534', '65534', '65534', '65534']);
  t.deepEqual(field(text, 'Gid'), ['1', '1', '1', '1']);
  t.deepEqual(field(text, 'Groups'), ['4', '7']);
  t.deepEqual(field(text, 'NoNewPrivs'), ['1']);
  const defaults = await run('cat /proc/self/status', { user: 'daemon' });
  t.deepEqual(field(defaults.text, 'Gid'), ['1', '1', '1', '1'], "the user's primary group by default");
  t.deepEqual(field(defaults.text, 'Groups'), ['1'], "the user's groups by default");
  t.deepEqual(field(defaults.text, 'NoNewPrivs'), ['0']);
  const numeric = await run('cat /proc/self/status', { user: '4321' });
  t.deepEqual(field(numeric.text, 'Uid')?.[0], '4321');
  t.deepEqual(field(numeric.text, 'Gid')?.[0], '4321', 'a uid without passwd entry gets gid = uid');
});

test('umask and rlimits are applied before exec', async (t) => {
  const { text } = await run('umask; cat /proc/self/limits', {
    umask: 0o027,
    rlimits: [
      { resource: 'NOFILE', soft: 100, hard: 200 },
      { resource: 'RLIMIT_CORE', soft: 0 },
      { resource: 'cpu', unlimited: true },
    ],
  });
  t.regex(text, /^0027$/m);
  t.regex(text, /^Max open files\s+100\s+200\s+files/m);
  t.regex(text, /^Max core file size\s+0\s+0\s+bytes/m);
  t.regex(text, /^Max cpu time\s+unlimited\s+unlimited\s+seconds/m);
});

test('the environment is minimal by default, explicit when given, or the agent\'s with overrides', async (t) => {
  const minimal = (await run('env')).text.split('\n').filter((l) => l !== '' && !l.startsWith('PWD=')); // sh adds PWD
  t.deepEqual(minimal, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);
  t.is((await run('echo "$A|$HOME"', { env: { A: '1' } })).text, '1|\n');
  t.is((await run('echo "$A|$HOME"', { envMode: 2, env: { A: '2' } })).text, `2|${process.env['HOME']}\n`);
});

async function refused(t: ExecutionContext, req: SpawnRequest, code: status, expectedField: string) {
  const labels = { refused: expectedField };
  const before = openFdCount();
  const e = await t.throwsAsync(h.client.spawn({ argv: ['true'], labels, ...req }), { instanceOf: AgentCallError });
  t.is(e!.code, code, e!.message);
  t.is(e!.info['field'], expectedField, e!.message);
  t.deepEqual((await h.client.list({ labels })).processes, [], 'no process left behind');
  t.is(openFdCount(), before, 'no fd left behind');
  return e!;
}

test.serial('invalid identity and limits are INVALID_ARGUMENT naming the field, leaving nothing behind', async (t) => {
  await refused(t, { user: 'no-such-user-x' }, status.INVALID_ARGUMENT, 'user');
  await refused(t, { group: 'no-such-group-x' }, status.INVALID_ARGUMENT, 'group');
  await refused(t, { groups: ['adm', 'no-such-group-x'] }, status.INVALID_ARGUMENT, 'groups[1]');
  await refused(t, { user: 'bad name!' }, status.INVALID_ARGUMENT, 'user');
  await refused(t, { rlimits: [{ resource: 'NOFILE', soft: -1 }] }, status.INVALID_ARGUMENT, 'rlimits[0]');
  await refused(t, { rlimits: [{ resource: 'NOFILE', soft: 10, hard: 5 }] }, status.INVALID_ARGUMENT, 'rlimits[0]');
  await refused(t, { rlimits: [{ resource: 'BOGUS', soft: 1 }] }, status.INVALID_ARGUMENT, 'rlimits[0].resource');
  await refused(t, { umask: 0o1000 }, status.INVALID_ARGUMENT, 'umask');
  await refused(t, { parentDeathSignal: 'NOPE' }, status.INVALID_ARGUMENT, 'parent_death_signal');
  await refused(t, { cgroup: { path: '../../escape' } }, status.INVALID_ARGUMENT, 'cgroup.path');
  await refused(t, { cgroup: { path: '/sys/fs/cgroup' } }, status.INVALID_ARGUMENT, 'cgroup.path');
  await refused(t, { cgroup: { path: 'a', create: true } }, status.INVALID_ARGUMENT, 'cgroup');
  await refused(t, { cgroup: { create: true, memoryMax: 'lots' } }, status.INVALID_ARGUMENT, 'cgroup.memory_max');
  await refused(t, { cgroup: { path: 'no-such-cgroup' } }, status.NOT_FOUND, 'cgroup.path');
  await refused(t, { killSignal: 'KILL' }, status.INVALID_ARGUMENT, 'timeout');
});

test.serial('a failure inside the exec helper comes back synchronously with its errno and stage', async (t) => {
  // Above the kernel's fs.nr_open: setrlimit refuses it even for root.
  const e = await refused(t, { rlimits: [{ resource: 'NOFILE', soft: 2 ** 31, hard: 2 ** 31 }] }, status.PERMISSION_DENIED, 'rlimits');
  t.is(e.reason, 'EPERM');
  t.regex(e.details, /^setrlimit:7: EPERM$/);
  // Executable for root (any x bit), not for nobody: the helper's execve fails as that user.
  const script = join(dir, 'root-only.sh');
  writeFileSync(script, '#!/bin/sh\nexit 0\n');
  chmodSync(script, 0o700);
  const exec = await refused(t, { argv: [script], user: 'nobody' }, status.PERMISSION_DENIED, 'argv[0]');
  t.is(exec.reason, 'EACCES');
  t.is(exec.info['path'], script);
});

const mount = cgroup2Mount();

test.serial('cgroup v2 placement: an existing cgroup, or one created per process and removed after exit', async (t) => {
  if (mount === undefined) return t.fail('no cgroup2 mount on this machine');
  const parent = join(mount, 'pidfd-agent');
  mkdirSync(join(parent, 'existing-test'), { recursive: true });
  t.teardown(() => rmdirSync(join(parent, 'existing-test')));
  const existing = await run('cat /proc/self/cgroup', { cgroup: { path: 'existing-test' } });
  const rel = `/${join(parent, 'existing-test').slice(mount.length + 1)}`;
  t.true(existing.text.split('\n').includes(`0::${rel}`), existing.text);
  const created = await run('cat /proc/self/cgroup', { cgroup: { create: true } });
  const line = created.text.split('\n').find((l) => l.startsWith('0::'))!;
  t.is(line, `0::/${join(parent, created.handle).slice(mount.length + 1)}`);
  await eventually('the created cgroup to be removed', () => !existsSync(join(parent, created.handle)));
  t.pass();
});

test.serial('a requested controller that is missing is FAILED_PRECONDITION naming it', async (t) => {
  if (mount === undefined) return t.fail('no cgroup2 mount on this machine');
  const available = readFileSync(join(mount, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
  const missing = (['memory', 'cpu', 'pids'] as const).find((c) => !available.includes(c));
  if (missing === undefined) {
    // A pure cgroup v2 node: the limits are really applied.
    const res = await run('cat /sys/fs/cgroup/$(cut -d: -f3 /proc/self/cgroup)/memory.max', { cgroup: { create: true, memoryMax: '100000000' } });
    t.is(res.text.trim(), '100000000');
    return;
  }
  const limits = { memory: { memoryMax: '100000000' }, cpu: { cpuMax: '50000 100000' }, pids: { pidsMax: '10' } }[missing];
  const e = await refused(t, { cgroup: { create: true, ...limits } }, status.FAILED_PRECONDITION, `cgroup.${missing}_max`);
  t.regex(e.details, new RegExp(`${missing} controller is not available`));
});

test('a timeout ends the process with kill_signal, then SIGKILL after the grace, and records reason TIMEOUT', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'], timeout: { seconds: 0, nanos: 200e6 } });
  const { process: done } = await h.client.wait({ handle: p!.handle });
  t.is(done!.exit!.signal, 15);
  t.is(done!.exit!.reason, ExitReason.EXIT_REASON_TIMEOUT);
  const { process: stubborn } = await h.client.spawn({ argv: ['sh', '-c', 'trap "" TERM INT; sleep 30 & wait; wait'], timeout: { seconds: 0, nanos: 200e6 }, killSignal: 'INT', grace: { seconds: 0, nanos: 200e6 } });
  const { process: killed } = await h.client.wait({ handle: stubborn!.handle });
  t.is(killed!.exit!.signal, 9);
  t.is(killed!.exit!.reason, ExitReason.EXIT_REASON_TIMEOUT);
  const { process: quick } = await h.client.spawn({ argv: ['true'], timeout: { seconds: 10, nanos: 0 } });
  t.is((await h.client.wait({ handle: quick!.handle })).process!.exit!.reason, ExitReason.EXIT_REASON_EXITED);
});

test.serial('processes outlive an agent killed with SIGKILL, unless they asked for a parent-death signal', async (t) => {
  const agent = await startAgentProcess(['--quiet']);
  t.teardown(() => agent.stop());
  const { process: survivor } = await agent.client.spawn({ argv: ['sleep', '30'] });
  // Test cleanup only: the agent that managed it is gone by then.
  t.teardown(() => procState(survivor!.pid) !== undefined && process.kill(survivor!.pid, 'SIGKILL'));
  const { process: dependent } = await agent.client.spawn({ argv: ['sleep', '30'], parentDeathSignal: 'KILL' });
  await eventually('both to be asleep', () => procState(dependent!.pid) === 'S' && procState(survivor!.pid) === 'S');
  agent.child.kill('SIGKILL');
  await eventually('the dependent process to die with the agent', () => procState(dependent!.pid) === undefined || procState(dependent!.pid) === 'Z');
  await sleep(100);
  t.is(procState(survivor!.pid), 'S', 'the other one keeps running');
});

test('pidfdctl spawn takes the options as flags named after the fields', async (t) => {
  const out = join(dir, 'cli.txt');
  const ctl = (...args: string[]) => runCliText(h.address, args);
  const spawned = await ctl('spawn', '--user', 'nobody', '--groups', 'adm', '--umask', '077', '--rlimit', 'NOFILE=64:128', '--no-new-privs', '--stdout', `file:${out}`, '--timeout', '30s', '--', 'sh', '-c', 'id -u; id -G; umask; ulimit -n; grep NoNewPrivs /proc/self/status');
  t.is(spawned.code, 0, spawned.stderr);
  t.is((await ctl('wait', spawned.stdout.trim())).code, 0);
  t.deepEqual(readFileSync(out, 'utf8').split('\n'), ['65534', '65534 4', '0077', '64', 'NoNewPrivs:\t1', '']);
  const negative = await ctl('spawn', '--rlimit', 'NOFILE=-1', '--', 'true');
  t.is(negative.code, 1);
  t.regex(negative.stderr, /^pidfdctl: INVALID_ARGUMENT: rlimits\[0\]: limits must not be negative/);
  const unknown = await ctl('spawn', '--user', 'no-such-user-x', '--', 'true');
  t.regex(unknown.stderr, /INVALID_ARGUMENT: user: unknown user/);
});

test.serial('--default-cgroup places every process that asks for none outside the agent cgroup, with or without the helper', async (t) => {
  if (mount === undefined) return t.fail('no cgroup2 mount on this machine');
  const parent = join(mount, `pidfd-agent-default-${process.pid}`);
  const agent = await startAgentProcess(['--ephemeral', '--cgroup-parent', parent, '--default-cgroup', 'managed/nodes']);
  t.teardown(async () => {
    await agent.stop();
    // On hybrid hosts the agent made the same path in every v1 hierarchy too.
    for (const root of [parent, ...cgroupV1Mounts().map((m) => join(m, parent.slice(mount.length + 1)))]) {
      for (const d of ['managed/nodes', 'managed', '']) await eventually(`${d} removed`, () => (existsSync(join(root, d)) ? (tryRmdir(join(root, d)), false) : true));
    }
  });
  const cgroupOf = (pid: number) => readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
  const want = `0::/${join(parent, 'managed/nodes').slice(mount.length + 1)}`;
  // The spawn shim's child joins it itself (stdio /dev/null; on hybrid hosts the helper, which also
  // joins the v1 hierarchies); its own child is born there too.
  const { process: viaShim } = await agent.client.spawn({ argv: ['sh', '-c', 'sleep 30 & wait'] });
  t.is(cgroupOf(viaShim!.pid), want);
  // Captured output goes through posix_spawn and the exec helper's --cgroup.
  const { process: viaHelper } = await agent.client.spawn({ argv: ['sh', '-c', 'cat /proc/self/cgroup'], stdout: { mode: 4 } });
  await agent.client.wait({ handle: viaHelper!.handle });
  let text = '';
  for await (const r of agent.client.readOutput({ handle: viaHelper!.handle, stream: 1 })) text += Buffer.from(r.data).toString();
  t.true(text.split('\n').includes(want), text);
  // A cgroup of its own still wins.
  const { process: own } = await agent.client.spawn({ argv: ['sleep', '30'], cgroup: { create: true } });
  t.is(cgroupOf(own!.pid), `0::/${join(parent, own!.handle).slice(mount.length + 1)}`);
  await agent.client.signal({ handle: own!.handle, signal: 'SIGKILL' });
  await agent.client.signal({ handle: viaShim!.handle, signal: 'SIGKILL', target: 2 });
  await agent.client.wait({ handle: viaShim!.handle });
  await agent.client.wait({ handle: own!.handle });
  // Someone removed the default cgroup: the node's problem, said as such, not the request's.
  await eventually('the default cgroup to empty', () => (tryRmdir(join(parent, 'managed/nodes')), !existsSync(join(parent, 'managed/nodes'))));
  const e = await agent.client.spawn({ argv: ['true'] }).catch((err: unknown) => err);
  t.true(e instanceof AgentCallError && e.code === status.FAILED_PRECONDITION && e.reason === 'DEFAULT_CGROUP', String(e));
});

