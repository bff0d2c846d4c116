// A stand-in "node" for namespace tests where PID 1's namespaces are off-limits: a process made
// with unshare in its own mount and UTS namespaces, with its own hostname, and a tmpfs at `dir`
// holding an executable `only-here` that exists in its mount namespace alone.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readlinkSync } from 'node:fs';
import { tempDir } from './harness.js';

export interface StandIn {
  readonly pid: number;
  readonly hostname: string;
  /** A directory that is an empty one here and a tmpfs with `only-here` in the stand-in's mounts. */
  readonly dir: string;
  /** The stand-in's namespace link (`mnt:[4026...]`). */
  ns(kind: 'mnt' | 'uts' | 'ipc' | 'net' | 'cgroup'): string;
  close(): Promise<void>;
}

const SCRIPT = `hostname "$1" && mount -t tmpfs stand-in "$2" && printf '#!/bin/sh\\necho only-on-the-node\\n' > "$2/only-here" && chmod 755 "$2/only-here" && echo ready && exec sleep 600`;

/** Starts the stand-in and resolves once its namespaces are set up. */
export async function startStandIn(hostname: string): Promise<StandIn> {
  const dir = tempDir('pidfd-agent-node-');
  const child: ChildProcess = spawn('unshare', ['--mount', '--uts', '--fork', '--kill-child', 'sh', '-c', SCRIPT, 'sh', hostname, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`stand-in exited (${code}): ${out}`)));
  });
  const pid = child.pid!;
  return {
    pid,
    hostname,
    dir,
    ns: (kind) => readlinkSync(`/proc/${pid}/ns/${kind}`),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await once(child, 'exit');
    },
  };
}
