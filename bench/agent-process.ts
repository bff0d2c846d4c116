// The agent under test as a child process of the driver, and what the driver reads about it
// from /proc (RSS, descriptors, CPU time).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface AgentProcess {
  readonly pid: number;
  readonly address: string;
  /** SIGTERM and wait for the exit (a --cpu-prof profile is written then). */
  stop(): Promise<void>;
}

export interface AgentOptions {
  readonly repo: string;
  readonly maxProcesses: number;
  /** Extra node flags for the agent, e.g. --cpu-prof. */
  readonly nodeFlags?: readonly string[];
  readonly agentFlags?: readonly string[];
  readonly openFiles?: number;
  /** The agent's environment (default: the driver's). */
  readonly env?: NodeJS.ProcessEnv;
  /** The script node runs instead of REPO/dist/src/main.js (bench/floor-server.mjs). */
  readonly entry?: string;
}

/** Starts dist/src/main.js on a fresh unix socket, with a raised open-file limit. */
export async function startAgent(opts: AgentOptions): Promise<AgentProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-bench-'));
  const socket = join(dir, 'agent.sock');
  const address = `unix://${socket}`;
  const nofile = opts.openFiles ?? 65536;
  // Root may raise the hard limit; elsewhere fall back to the hard limit as it is.
  const script = `ulimit -Hn ${nofile} 2>/dev/null; ulimit -Sn ${nofile} 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"; exec "$@"`;
  // Every Spawn is audited: to a file, as on a node, not down the terminal.
  const audit = opts.agentFlags?.includes('--audit-log') ? [] : ['--audit-log', join(dir, 'audit.log')];
  const args = [...(opts.nodeFlags ?? []), opts.entry ?? join(opts.repo, 'dist/src/main.js'), '--listen', address, '--quiet', '--max-processes', String(opts.maxProcesses), ...audit, ...stateFlags(dir, opts.agentFlags), ...(opts.agentFlags ?? [])];
  const child: ChildProcess = spawn('/bin/sh', ['-c', script, 'sh', process.execPath, ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    cwd: dir,
    detached: true, // its own process group: a ^C reaches the driver, which cleans up first
    env: opts.env ?? process.env,
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let dead = false;
  void exited.then(() => (dead = true));
  const deadline = Date.now() + 15_000;
  // The socket exists a moment before the agent listens on it: wait until a connection is taken.
  while (!existsSync(socket) || !(await accepts(socket))) {
    if (dead) throw new Error('the agent exited during startup');
    if (Date.now() > deadline) throw new Error('the agent did not listen on its socket within 15 s');
    await sleep(20);
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error('no agent pid');
  return {
    pid,
    address,
    stop: async () => {
      if (!dead) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const accepts = (socket: string): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect(socket, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** VmRSS of pid in KiB. */
export function rssKib(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

/** Open descriptors of pid. */
export const fdCount = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** utime + stime of pid in seconds (/proc/PID/stat fields 14 and 15). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[14 - 3]) + Number(rest[15 - 3])) / CLK_TCK;
}

/**
 * CPU ms of a process's threads by name (the leader is "main"; threads of one name summed).
 * `nameOf` may tell threads of one name apart: by tid, or by their order of creation (`nth`).
 */
export function threadCpuMs(pid: number, nameOf: (comm: string, tid: string, nth: number) => string = (comm) => comm): Map<string, number> {
  const out = new Map<string, number>();
  const seen = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`).sort((x, y) => Number(x) - Number(y))) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1');
    } catch {
      continue; // the thread ended
    }
    const comm = tid === String(pid) ? 'main' : stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const nth = (seen.get(comm) ?? 0) + 1;
    seen.set(comm, nth);
    const name = nameOf(comm, tid, nth);
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(name, (out.get(name) ?? 0) + ((Number(rest[14 - 3]) + Number(rest[15 - 3])) * 1000) / CLK_TCK);
  }
  return out;
}

/** A fresh state dir per agent, unless the flags say otherwise (--ephemeral, --state-dir). */
const stateFlags = (dir: string, flags: readonly string[] = []): string[] =>
  flags.includes('--ephemeral') || flags.includes('--state-dir') ? [] : ['--state-dir', join(dir, 'state')];
