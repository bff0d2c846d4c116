// A file system of the test's own that can be frozen: what a stalled disk looks like to the agent.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { tempDir } from './harness.js';

/**
 * A 64 MiB ext4 image mounted in a temp dir, for the test's life; freeze() freezes it. Teardown
 * thaws it first (until then neither an agent stuck on it nor umount can finish), then runs
 * `before` (stopping what uses it), then unmounts.
 */
export function ext4Mount(t: ExecutionContext, before: () => Promise<void> | void): { mount: string; freeze: () => void; thaw: () => void } {
  const dir = tempDir('pidfd-agent-frozen-');
  const image = join(dir, 'state.img');
  const mount = join(dir, 'mnt');
  mkdirSync(mount);
  execFileSync('truncate', ['-s', '64M', image]);
  execFileSync('mkfs.ext4', ['-q', image]);
  execFileSync('mount', ['-o', 'loop', image, mount]);
  const thaw = () => execFileSync('fsfreeze', ['-u', mount]);
  t.teardown(async () => {
    try {
      execFileSync('fsfreeze', ['-u', mount], { stdio: 'ignore' });
    } catch {
      // not frozen
    }
    await before();
    execFileSync('umount', [mount]);
    rmSync(dir, { recursive: true, force: true });
  });
  return { mount, freeze: () => execFileSync('fsfreeze', ['-f', mount]), thaw };
}
