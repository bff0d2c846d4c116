import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { AgentCallError, status, type AgentClient } from '../clients/ts/src/index.js';
import { openFdCount } from '../src/kernel/fd.js';
import { cgroup2Mount } from '../src/process/spawn/cgroups.js';
import { builtFile } from '../src/built-files.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { eventually, startHarness, tempDir, tryRmdir, type Harness } from './helpers/harness.js';

type SpawnRequest = NonNullable<Parameters<AgentClient['spawn']>[0]>;

const mount = cgroup2Mount();
const parent = mount === undefined ? undefined : join(mount, `pidfd-agent-hardening-${process.pid}`);
let h: Harness;
let dir: string;
test.before(async () => {
  h = await startHarness({ cgroupParent: parent });
  await h.client.list();
  dir = tempDir('pidfd-agent-hardening-');
  chmodSync(dir, 0o777);
});
test.after.always(async () => {
  await h?.close();
  if (parent !== undefined) tryRmdir(parent);
});

async function refused(t: ExecutionContext, req: SpawnRequest, code: status, field: string): Promise<AgentCallError> {
  const labels = { refused: field.replace(/[^a-z0-9]/gi, '_') };
  const before = openFdCount();
  const e = await t.throwsAsync(h.client.spawn({ argv: ['true'], labels, ...req }), { instanceOf: AgentCallError });
  t.is(e!.code, code, e!.message);
  t.is(e!.info['field'], field, e!.message);
  t.deepEqual((await h.client.list({ labels })).processes, [], 'no process left behind');
  t.is(openFdCount(), before, 'no fd left behind');
  return e!;
}

async function exitOf(req: SpawnRequest) {
  const { process: p } = await h.client.spawn(req);
  return (await h.client.wait({ handle: p!.handle })).process!.exit!;
}

test.serial("the request's LD_PRELOAD never runs in the helper as root, and still reaches the target", async (t) => {
  const lib = join(dir, 'marker.so');
  const source = join(dir, 'marker.c');
  writeFileSync(
    source,
    `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
  const char *path = getenv("MARKER");
  char exe[256] = {0};
  if (!path || readlink("/proc/self/exe", exe, sizeof exe - 1) < 0) return;
  FILE *f = fopen(path, "a");
  if (!f) return;
  fprintf(f, "%d %d %s\\n", (int)getuid(), (int)geteuid(), exe);
  fclose(f);
}
`,
  );
  execFileSync('gcc', ['-shared', '-fPIC', '-o', lib, source]);
  chmodSync(lib, 0o755);
  const marker = join(dir, 'marker.txt');
  writeFileSync(marker, '');
  chmodSync(marker, 0o666);
  const env = { PATH: '/usr/bin:/bin', LD_PRELOAD: lib, LD_AUDIT: lib, MARKER: marker };
  const exit = await exitOf({ argv: ['sh', '-c', 'test "$LD_PRELOAD" = "$1" && test -n "$MARKER"', 'sh', lib], env, user: 'nobody', noNewPrivs: true });
  t.is(exit.code, 0, 'the target got the environment');
  const lines = readFileSync(marker, 'utf8').trim().split('\n');
  t.true(lines.length > 0 && lines[0] !== '', 'the library did run in the target');
  for (const line of lines) t.regex(line, /^65534 65534 /, `ran with other credentials: ${line}`);
  t.false(lines.some((l) => l.endsWith('/pidfd-exec')), 'never inside the helper');
});

test.serial('ids that mean "unchanged" to setresuid (4294967295 and beyond) are refused for user, group and groups', async (t) => {
  for (const bad of ['4294967295', '4294967296', '18446744073709551615', '99999999999999999999999']) {
    const e = await refused(t, { user: bad }, status.INVALID_ARGUMENT, 'user');
    t.is(e.reason, 'ID_OUT_OF_RANGE');
  }
  await refused(t, { user: 'nobody', group: '4294967295' }, status.INVALID_ARGUMENT, 'group');
  await refused(t, { user: 'nobody', groups: ['0', '4294967295'] }, status.INVALID_ARGUMENT, 'groups[1]');
  t.is((await exitOf({ argv: ['sh', '-c', 'test "$(id -u)" = 4294967294'], user: '4294967294' })).code, 0, 'the largest real id still works');
});

test.serial('the exec helper itself refuses -1 as uid, gid or group', (t) => {
  const helper = builtFile('dist/bin/pidfd-exec');
  const envFile = join(dir, 'empty-env');
  writeFileSync(envFile, '');
  for (const [args, stage] of [[['--uid', '4294967295'], 'setuid'], [['--gid', '4294967295'], 'setgid'], [['--groups', '1,4294967295'], 'setgroups'], [['--uid', '-1'], 'setuid']] as const) {
    const envFd = openSync(envFile, 'r');
    const run = spawnSync(helper, [...args, '--', '/usr/bin/id', 'id', '-u'], { stdio: ['ignore', 'pipe', 'ignore', 'pipe', envFd] });
    closeSync(envFd);
    t.is(run.status, 127, `${args.join(' ')}: ${run.stdout}`);
    t.is(run.output[3]?.toString(), `${stage} 22\n`);
  }
});

test.serial('a root-only file is neither appended to nor truncated for user nobody', async (t) => {
  const secret = join(dir, 'root-only.txt');
  writeFileSync(secret, 'secret\n');
  chmodSync(secret, 0o600);
  const past = new Date('2001-02-03T04:05:06Z');
  utimesSync(secret, past, past);
  for (const append of [true, false]) {
    for (const [stream, req] of [['stdout', { stdout: { mode: 2, path: secret, append } }], ['stderr', { stderr: { mode: 2, path: secret, append } }]] as const) {
      const e = await refused(t, { argv: ['sh', '-c', 'echo pwned; echo pwned >&2'], user: 'nobody', ...req }, status.PERMISSION_DENIED, `${stream}.path`);
      t.is(e.reason, 'EACCES');
      t.is(e.info['path'], secret);
    }
  }
  t.is(readFileSync(secret, 'utf8'), 'secret\n');
  t.is(statSync(secret).mtimeMs, past.getTime());
});

test.serial("an output file is created as the target user, and not at all where that user cannot write", async (t) => {
  const created = join(dir, 'made-by-nobody.txt');
  t.is((await exitOf({ argv: ['sh', '-c', 'echo hello; echo oops >&2'], user: 'nobody', umask: 0o022, stdout: { mode: 2, path: created }, stderr: { mode: 2, path: created, append: true } })).code, 0);
  const st = statSync(created);
  t.is(st.uid, 65534);
  t.is(st.gid, 65534);
  t.is(st.mode & 0o777, 0o644);
  t.regex(readFileSync(created, 'utf8'), /hello/);
  const rootDir = join(dir, 'root-dir');
  mkdirSync(rootDir, { mode: 0o755 });
  const inRootDir = join(rootDir, 'new.txt');
  const e = await refused(t, { user: 'nobody', stdout: { mode: 2, path: inRootDir } }, status.PERMISSION_DENIED, 'stdout.path');
  t.is(e.reason, 'EACCES');
  t.false(existsSync(inRootDir));
  const missing = await refused(t, { user: 'nobody', stdout: { mode: 2, path: join(dir, 'no-such-dir', 'x') } }, status.NOT_FOUND, 'stdout.path');
  t.is(missing.reason, 'ENOENT');
  // Without a user the agent's own identity is the target's: it opens the file itself, as before.
  const asAgent = join(rootDir, 'agent.txt');
  t.is((await exitOf({ argv: ['echo', 'hi'], stdout: { mode: 2, path: asAgent } })).code, 0);
  t.is(statSync(asAgent).uid, process.getuid!());
});

test.serial('the working directory is entered as the target user', async (t) => {
  const rootOnly = join(dir, 'root-only-dir');
  mkdirSync(rootOnly, { mode: 0o700 });
  const e = await refused(t, { user: 'nobody', cwd: rootOnly }, status.PERMISSION_DENIED, 'cwd');
  t.is(e.reason, 'EACCES');
  t.is(e.info['path'], rootOnly);
  t.is((await exitOf({ argv: ['sh', '-c', 'test "$(pwd)" = "$1"', 'sh', rootOnly], cwd: rootOnly })).code, 0, 'the agent itself may');
  t.is((await exitOf({ argv: ['sh', '-c', 'test "$(pwd)" = "$1"', 'sh', dir], cwd: dir, user: 'nobody' })).code, 0);
});

test.serial('a cgroup path that crosses a mount under the parent is refused, a plain one works', async (t) => {
  if (parent === undefined || mount === undefined) return t.fail('no cgroup2 mount on this machine');
  const inside = join(parent, 'inside');
  const elsewhere = join(mount, `pidfd-agent-elsewhere-${process.pid}`);
  mkdirSync(inside, { recursive: true });
  mkdirSync(elsewhere, { recursive: true });
  execFileSync('mount', ['--bind', elsewhere, inside]);
  t.teardown(() => {
    spawnSync('umount', [inside]);
    tryRmdir(inside);
    tryRmdir(elsewhere);
  });
  const e = await refused(t, { cgroup: { path: 'inside' } }, status.INVALID_ARGUMENT, 'cgroup.path');
  t.is(e.reason, 'EXDEV');
  spawnSync('umount', [inside]);
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'cat /proc/self/cgroup; read x'], cgroup: { path: 'inside' }, stdin: 2 });
  t.is(readFileSync(`/proc/${p!.pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::')), `0::/${inside.slice(mount.length + 1)}`);
  // Without the helper (stdio /dev/null), the spawn shim's child joins the same open cgroup.procs.
  const { process: q } = await h.client.spawn({ argv: ['sleep', '30'], cgroup: { path: 'inside' } });
  t.is(readFileSync(`/proc/${q!.pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::')), `0::/${inside.slice(mount.length + 1)}`);
  for (const handle of [p!.handle, q!.handle]) {
    await h.client.signal({ handle, signal: 'KILL' });
    await h.client.wait({ handle });
  }
  await eventually('the cgroup to empty', () => (tryRmdir(inside), !existsSync(inside)));
});

test('an agent refuses to start with a cgroup parent that is not on cgroup2', async (t) => {
  const fake = tempDir('pidfd-agent-fake-cgroup-');
  const shm = join('/dev/shm', `pidfd-agent-fake-${process.pid}`);
  mkdirSync(shm, { recursive: true });
  t.teardown(() => tryRmdir(shm));
  for (const path of [fake, join(shm, 'not-yet-created')]) {
    const e = await t.throwsAsync(startAgentProcess(['--ephemeral', '--cgroup-parent', path]));
    t.regex(e!.message, /is not on a cgroup v2 filesystem \(f_type 0x[0-9a-f]+, cgroup2 is 0x63677270\)/);
  }
});
