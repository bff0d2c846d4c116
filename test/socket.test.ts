// The unix socket on disk: who may connect is the file system's decision (socket 0660, directory
// 0750, both of the socket group), and starting never chmods, follows or removes anything but
// the agent's own directory and a stale socket.
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { startAgent } from '../src/agent.js';
import { DEFAULTS, type Config } from '../src/config/config.js';
import { startHarness, tempDir } from './helpers/harness.js';

// The strictest umask: what the socket and its directory get must not depend on it.
let umask: number;
test.before(() => {
  umask = process.umask(0o077);
});
test.after.always(() => {
  process.umask(umask);
});

const socketOf = (address: string) => address.slice('unix://'.length);
const modeOf = (path: string) => lstatSync(path).mode & 0o7777;

/** A gid as NSS resolves the name here (getent, not our own binding). */
const gidOf = (group: string) => Number(execFileSync('getent', ['group', group], { encoding: 'utf8' }).split(':')[2]);

/** Connects to path as another uid/gid (no supplementary groups): `connected` or the errno. */
const connectAs = (uid: number, gid: number, path: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const script = "require('net').connect(process.argv[1]).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(0); })";
    execFile(process.execPath, ['-e', script, path], { uid, gid, cwd: '/', timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout.trim())));
  });

const start = (path: string, overrides: Partial<Config> = {}) =>
  startAgent({ ...DEFAULTS, listen: [`unix://${path}`], stateDir: undefined, agentEnv: {}, ...overrides }, () => {});

test('the socket is 0660 and its directory 0750, of the agent\'s group unless told, whatever the umask', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const path = socketOf(h.address);
  t.true(lstatSync(path).isSocket());
  t.is(modeOf(path), 0o660);
  t.is(modeOf(h.dir), 0o750);
  t.is(statSync(path).gid, process.getegid!());
  t.is(statSync(h.dir).gid, process.getegid!());
  t.is(statSync(h.dir).uid, process.geteuid!());
  t.is((await h.client.list()).processes.length, 0, 'and it serves');
});

test('--socket-group by name (through NSS): its members can connect, other users cannot even reach the socket', async (t) => {
  const gid = gidOf('nogroup');
  const h = await startHarness({ socketGroup: 'nogroup' });
  t.teardown(() => h.close());
  const path = socketOf(h.address);
  t.is(statSync(path).gid, gid);
  t.is(statSync(h.dir).gid, gid);
  t.is(await connectAs(1234, 1234, path), 'EACCES');
  t.is(await connectAs(1234, gid, path), 'connected');
});

test('--socket-group by gid, one no group name has (up to the largest, past INT_MAX)', async (t) => {
  const h = await startHarness({ socketGroup: '4321' });
  t.teardown(() => h.close());
  const path = socketOf(h.address);
  t.is(statSync(path).gid, 4321);
  const large = await startHarness({ socketGroup: String(2 ** 32 - 2) });
  t.teardown(() => large.close());
  t.is(statSync(socketOf(large.address)).gid, 2 ** 32 - 2);
  t.is(await connectAs(1234, 1234, path), 'EACCES');
  t.is(await connectAs(1234, 4321, path), 'connected');
});

test('an unknown --socket-group name stops the start', async (t) => {
  const dir = tempDir('pidfd-agent-sock-');
  await t.throwsAsync(start(join(dir, 'run', 'agent.sock'), { socketGroup: 'no-such-group-pidfd' }), { message: '--socket-group: no group named "no-such-group-pidfd"' });
});

test('a symlink at the socket path is refused, neither followed nor removed', async (t) => {
  const dir = tempDir('pidfd-agent-sock-');
  const target = join(dir, 'precious');
  writeFileSync(target, 'keep me');
  chmodSync(target, 0o600);
  mkdirSync(join(dir, 'run'));
  const path = join(dir, 'run', 'agent.sock');
  symlinkSync(target, path);
  await t.throwsAsync(start(path), { message: `${path}: is a symlink, not a socket; refusing to remove it (remove it yourself if it is not needed)` });
  t.is(readlinkSync(path), target);
  t.is(modeOf(target), 0o600);
  t.is(readFileSync(target, 'utf8'), 'keep me');
});

test('a regular file at the socket path is refused and left as it was', async (t) => {
  const dir = tempDir('pidfd-agent-sock-');
  mkdirSync(join(dir, 'run'));
  const path = join(dir, 'run', 'agent.sock');
  writeFileSync(path, 'not a socket');
  chmodSync(path, 0o640);
  await t.throwsAsync(start(path), { message: /is a regular file, not a socket; refusing to remove it/ });
  t.is(readFileSync(path, 'utf8'), 'not a socket');
  t.is(modeOf(path), 0o640);
});

/** A directory the socket may not live in: refused, and the directory keeps its mode. */
async function refusedDirectory(t: ExecutionContext, make: (dir: string, target: string) => string, mode: number, message: RegExp): Promise<void> {
  const dir = tempDir('pidfd-agent-sock-');
  const target = join(dir, 'target');
  mkdirSync(target);
  chmodSync(target, mode);
  await t.throwsAsync(start(join(make(dir, target), 'agent.sock')), { message });
  t.is(modeOf(target), mode);
}

test('a socket directory that is a symlink is refused and its target left alone', (t) =>
  refusedDirectory(t, (dir, target) => (symlinkSync(target, join(dir, 'link')), join(dir, 'link')), 0o755, /link: not a directory \(a symlink is not followed\)/));

test('a shared directory (sticky, world-writable like /tmp) is refused and left alone', async (t) => {
  await refusedDirectory(t, (_dir, target) => target, 0o1777, /target: a shared directory \(mode 01777\)/);
  await t.throwsAsync(start('/agent-test.sock'), { message: /a top-level directory/ });
  await t.throwsAsync(start('/run/agent-test.sock'), { message: /\/run: a top-level directory/ });
});

test('a stale socket is replaced; one another agent serves is refused', async (t) => {
  const dir = tempDir('pidfd-agent-sock-');
  mkdirSync(join(dir, 'run'));
  const path = join(dir, 'run', 'agent.sock');
  // Bound by a process that exits without removing it: nobody listens there any more.
  execFileSync('/usr/bin/python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path]);
  t.true(lstatSync(path).isSocket());
  t.is(modeOf(path), 0o700, 'as bind made it under this umask');
  const agent = await start(path);
  t.teardown(() => agent.stop());
  t.is(modeOf(path), 0o660, 'the agent\'s own socket now');
  await t.throwsAsync(start(path), { message: `${path}: another process is serving on this socket` });
  t.true(lstatSync(path).isSocket(), 'and the serving one keeps its socket');
});

test('a socket path longer than a unix address holds stops the start, naming the path', async (t) => {
  const path = join(tempDir('pidfd-agent-sock-'), 'x'.repeat(100), 'agent.sock');
  await t.throwsAsync(start(path), { message: `${path}: bind: ENAMETOOLONG` });
});
