// What this kernel and libc offer (the probe), and spawn errors named after the syscall that failed.
import test from 'ava';
import { probeFeatures } from '../src/kernel/probe.js';
import { spawn } from '../src/kernel/spawn.js';
import { NULL, ENV, kernelAtLeast, glibcAtLeast, kernelError } from './helpers/kernel-children.js';

test('probeFeatures matches this kernel and libc', (t) => {
  const expected = {
    pidfdSpawn: glibcAtLeast(2, 39),
    pidfdGetInfo: kernelAtLeast(6, 13),
    pidfdInfoExit: kernelAtLeast(6, 15),
  };
  t.deepEqual(probeFeatures(), expected);
});

test('spawn reports a missing executable or cwd as ENOENT and a non-executable file as EACCES', (t) => {
  const syscall = glibcAtLeast(2, 39) ? 'pidfd_spawn' : 'posix_spawn';
  kernelError(t, () => spawn({ path: '/nonexistent/program', argv: ['x'], envp: ENV, stdio: [NULL, NULL, NULL], newSession: true }), 'ENOENT', syscall);
  kernelError(t, () => spawn({ path: '/bin/true', argv: ['true'], envp: ENV, cwd: '/nonexistent/dir', stdio: [NULL, NULL, NULL], newSession: true }), 'ENOENT', syscall);
  kernelError(t, () => spawn({ path: '/etc/passwd', argv: ['passwd'], envp: ENV, stdio: [NULL, NULL, NULL], newSession: true }), 'EACCES', syscall);
});
