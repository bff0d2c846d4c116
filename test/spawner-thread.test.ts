import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { isKernelError } from '../src/kernel/errors.js';
import { closeFd, openFdCount, pipe } from '../src/kernel/fd.js';
import type { PidRef } from '../src/kernel/pid-ref.js';
import { shimHandles, spawnAsync, useSpawnShim, type SpawnSpec } from '../src/kernel/spawn.js';
import { ROOT } from './helpers/agent-process.js';
import { feed, Output } from './helpers/kernel-children.js';

// This file's process hands its spawns to the shim's spawner threads (spawnAsync with the shim).
useSpawnShim(join(ROOT, 'dist/lib/libpidfd-spawn.so'));

const NULL = { kind: 'null' } as const;
const base: SpawnSpec = { path: '/bin/true', argv: ['true'], envp: [], stdio: [NULL, NULL, NULL], newSession: true };

function reap(child: PidRef) {
  using ref = child;
  return ref.reap(10_000).termination;
}

test.serial('the spawner threads run in this process under their own name', (t) => {
  const names = readdirSync('/proc/self/task').map((tid) => readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim());
  t.is(names.filter((n) => n === 'pidfd-spawner').length, 4);
});

test.serial('a failed exec or chdir is that step\'s errno, and the threads go on spawning after it', async (t) => {
  const missing = await t.throwsAsync(spawnAsync({ ...base, path: '/nonexistent/prog' }));
  t.true(isKernelError(missing) && missing.syscall === 'execve' && missing.code === 'ENOENT', String(missing));
  const cwd = await t.throwsAsync(spawnAsync({ ...base, cwd: '/nonexistent-dir' }));
  t.true(isKernelError(cwd) && cwd.syscall === 'chdir' && cwd.code === 'ENOENT', String(cwd));
  const child = await spawnAsync({ ...base, path: '/bin/sh', argv: ['sh', '-c', 'exit 7'], envp: ['A=é'] });
  t.deepEqual(reap(child.ref), { exitCode: 7 });
});

test.serial('200 concurrent spawns each get their own pidfd, pid and the pidfs inode of that pidfd', async (t) => {
  const children = await Promise.all(Array.from({ length: 200 }, (_, i) => spawnAsync({ ...base, path: '/bin/sh', argv: ['sh', '-c', `exit ${i % 100}`] })));
  t.is(new Set(children.map((c) => c.ref.pid)).size, 200);
  t.is(new Set(children.map((c) => c.ref.inode)).size, 200);
  const codes = children.map((c) => {
    const inode = c.ref.inode;
    const dup = c.ref.dup();
    try {
      // A duplicate's inode is read from the kernel: it must be the one the thread reported.
      t.is(dup.inode, inode);
    } finally {
      dup.close();
    }
    return reap(c.ref);
  });
  t.deepEqual(codes, Array.from({ length: 200 }, (_, i) => ({ exitCode: i % 100 })));
});

test.serial('1,000 spawns, some failing, leave the agent\'s descriptor count where it was', async (t) => {
  const before = openFdCount();
  for (let round = 0; round < 10; round++) {
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => spawnAsync(i % 10 === 0 ? { ...base, path: '/nonexistent/prog' } : base)));
    for (const r of results) if (r.status === 'fulfilled') t.deepEqual(reap(r.value.ref), { exitCode: 0 });
    t.is(results.filter((r) => r.status === 'rejected').length, 10);
  }
  t.is(openFdCount(), before);
});

test.serial('a request too large for one message still spawns (through the threadpool)', async (t) => {
  const big = 'x'.repeat(100_000);
  const child = await spawnAsync({ ...base, path: '/bin/sh', argv: ['sh', '-c', 'exit $(( ${#A} + ${#B} == 200000 ))'], envp: [`A=${big}`, `B=${big}`] });
  t.deepEqual(reap(child.ref), { exitCode: 1 });
});

test.serial('pipes, an output pipe and a caller\'s fd reach the child through the spawner, which then holds exactly 0-2', async (t) => {
  const stdio = [{ kind: 'pipe' }, { kind: 'output-pipe', bytes: 65536 }, { kind: 'pipe' }] as const;
  t.true(shimHandles(stdio), 'the shim takes pipes here (pidfd_getfd allowed)');
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-spawner-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const listFds = join(dir, 'list-fds');
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', listFds, join(ROOT, 'test/fixtures/list-fds.c')]);
  const before = openFdCount();
  for (let round = 0; round < 5; round++) {
    await Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const child = await spawnAsync({ ...base, path: '/bin/sh', argv: ['sh', '-c', `read line; echo "$line-${i}"; echo err >&2; exec ${listFds}`], stdio });
      const [stdin, stdout, stderr] = child.pipes;
      const out = new Output(stdout!);
      const err = new Output(stderr!);
      await feed(stdin!, 'hello\n');
      t.deepEqual(reap(child.ref), { exitCode: 0 });
      t.is((await out.done).toString(), `hello-${i}\n0 1 2\n`);
      t.is((await err.done).toString(), 'err\n');
    }));
  }
  const [r, w] = pipe();
  const out = new Output(r);
  const child = await spawnAsync({ ...base, path: '/bin/sh', argv: ['sh', '-c', 'echo via-fd'], stdio: [NULL, { kind: 'fd', fd: w }, NULL] });
  closeFd(w);
  t.deepEqual(reap(child.ref), { exitCode: 0 });
  t.is((await out.done).toString(), 'via-fd\n');
  t.is(openFdCount(), before);
});
