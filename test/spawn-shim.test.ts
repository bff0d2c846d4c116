import { openSync, readFileSync, readlinkSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { isKernelError } from '../src/kernel/errors.js';
import { openFdCount } from '../src/kernel/fd.js';
import type { PidRef } from '../src/kernel/pid-ref.js';
import { spawn, useSpawnShim, type SpawnSpec } from '../src/kernel/spawn.js';
import { ROOT } from './helpers/agent-process.js';
import { tempDir } from './helpers/harness.js';

// This file's process spawns through the agent's shim (clone + CLONE_FILES + close_range UNSHARE).
useSpawnShim(join(ROOT, 'dist/lib/libpidfd-spawn.so'));

const NULL = { kind: 'null' } as const;

function reap(child: PidRef) {
  using ref = child;
  return ref.reap(10_000).termination;
}

test.serial('through the shim the child gets exactly fds 0-2, default signals, its own session and cwd, with 2,000 fds held', (t) => {
  const held = Array.from({ length: 2000 }, () => openSync('/dev/null', 'r'));
  t.teardown(() => held.forEach((fd) => closeSync(fd)));
  const dir = tempDir('pidfd-agent-shim-');
  const out = join(dir, 'out.txt');
  const spec: SpawnSpec = {
    path: '/bin/sh',
    argv: ['sh', '-c', `{ ls /proc/self/fd; grep -E '^Sig(Blk|Ign)' /proc/self/status; pwd; cat /proc/self/stat; } > ${out}`],
    envp: ['PATH=/bin:/usr/bin'],
    cwd: dir,
    stdio: [NULL, NULL, NULL],
    newSession: true,
  };
  const child = spawn(spec);
  t.deepEqual(child.pipes, [null, null, null]);
  t.deepEqual(reap(child.ref), { exitCode: 0 });
  const lines = readFileSync(out, 'utf8').trim().split('\n');
  t.deepEqual(lines.slice(0, 4), ['0', '1', '2', '3'], "ls's own directory fd besides 0-2");
  t.deepEqual(lines.slice(4, 6), ['SigBlk:\t0000000000000000', 'SigIgn:\t0000000000000000']);
  t.is(lines[6], dir);
  const stat = lines[7]!.slice(lines[7]!.lastIndexOf(')') + 2).split(' ');
  t.is(stat[2], String(child.ref.pid), 'process group = its pid');
  t.is(stat[3], String(child.ref.pid), 'session = its pid');
});

test.serial('a failed exec or chdir through the shim is the errno of that step, and leaves nothing open', (t) => {
  const before = openFdCount();
  const base = { argv: ['x'], envp: [], stdio: [NULL, NULL, NULL] as const, newSession: true };
  const missing = t.throws(() => spawn({ ...base, path: '/nonexistent/prog' }));
  t.true(isKernelError(missing) && missing.syscall === 'execve' && missing.code === 'ENOENT', String(missing));
  const cwd = t.throws(() => spawn({ ...base, path: '/bin/true', cwd: '/nonexistent-dir' }));
  t.true(isKernelError(cwd) && cwd.syscall === 'chdir' && cwd.code === 'ENOENT', String(cwd));
  t.is(openFdCount(), before);
});

test.serial('inherit through the shim gives the child the agent\'s own fd', (t) => {
  const child = spawn({ path: '/bin/sleep', argv: ['sleep', '5'], envp: [], stdio: [NULL, { kind: 'inherit' }, NULL], newSession: false });
  const deadline = Date.now() + 5000;
  while (readlinkSync(`/proc/${child.ref.pid}/exe`) !== '/usr/bin/sleep' && Date.now() < deadline);
  t.is(readlinkSync(`/proc/${child.ref.pid}/fd/1`), readlinkSync('/proc/self/fd/1'));
  t.is(readlinkSync(`/proc/${child.ref.pid}/fd/0`), '/dev/null');
  child.ref.signal(9);
  t.deepEqual(reap(child.ref), { signal: 9, coreDumped: false });
});
