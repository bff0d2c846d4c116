// Free functions of the manager's operations: checking and opening what a Spawn names, turning
// a failed helper stage into a domain error.
import { openSync, statSync, constants as fsc } from 'node:fs';
import { delimiter, dirname } from 'node:path';
import { errnoName, KernelError } from '../../kernel/errors.js';
import type { Fd } from '../../kernel/fd.js';
import { PIDFD_INFO_PID } from '../../kernel/pidfd.js';
import { PidRef } from '../../kernel/pid-ref.js';
import type { SetupError, StdioAction } from '../../kernel/spawn.js';
import { errnoError, fromKernel, invalidArgument, notFound } from '../errors.js';
import type { OutputTarget } from '../options.js';
import type { ProcessRecord } from '../lifecycle/record.js';
import { notInPath } from './executable.js';

export function checkCwd(cwd: string): void {
  let directory: boolean;
  try {
    directory = statSync(cwd).isDirectory();
  } catch (e) {
    throw fromKernel(e, { what: `cwd: ${cwd}`, field: 'cwd', path: cwd, otherwise: 'NotFound' });
  }
  if (!directory) throw invalidArgument('cwd', `${cwd}: ENOTDIR`, 'ENOTDIR');
}

/** Opens a FILE target in the agent (so errors name the path); the fd is closed after spawn. */
/** The kernel's default pipe buffer. */
const MIN_PIPE_BYTES = 64 * 1024;

export function openOutput(target: OutputTarget, field: string, opened: Fd[]): StdioAction {
  if (target.kind === 'discard') return { kind: 'null' };
  if (target.kind === 'inherit') return { kind: 'inherit' };
  // The pipe buffer holds what the child writes while no agent reads (between agents): the ring's size.
  if (target.kind === 'capture') return { kind: 'output-pipe', bytes: target.ringBytes ?? MIN_PIPE_BYTES };
  const flags = fsc.O_WRONLY | fsc.O_CREAT | (target.append ? fsc.O_APPEND : fsc.O_TRUNC);
  try {
    const fd = openSync(target.path, flags, 0o644) as Fd; // libuv opens with O_CLOEXEC
    opened.push(fd);
    return { kind: 'fd', fd };
  } catch (e) {
    throw fromKernel(e, { what: `${field}.path: ${target.path}`, field: `${field}.path`, path: target.path, otherwise: 'InvalidArgument' });
  }
}

/** Which request field a failed helper stage is about. */
const stageFields: Readonly<Record<string, string>> = {
  cgroup: 'cgroup', setgroups: 'groups', setgid: 'group', setuid: 'user', umask: 'umask',
  pdeathsig: 'parent_death_signal', no_new_privs: 'no_new_privs', stdout: 'stdout.path', stderr: 'stderr.path', env: 'env', chdir: 'cwd', setns: 'join_namespaces_of',
};

/** The paths the helper opens as the target, by stage: named in a failure of that stage. */
export interface SetupPaths {
  readonly stdout?: string;
  readonly stderr?: string;
  readonly chdir?: string;
  /** The helper execs argv[0] after dropping to the target's credentials: its checks are the target's. */
  readonly execAsTarget?: boolean;
  /** The files the helper searched for argv[0] (`path`, without a slash), as the target. */
  readonly candidates?: readonly string[];
}

const AS_TARGET = 'as the target user';

export function setupFailure(e: SetupError, path: string, paths: SetupPaths = {}): unknown {
  // A search names the file that failed ("exec:INDEX"), or none when no file was there.
  const searched = /^exec:(\d+)$/.exec(e.stage);
  const tried = searched === null ? path : (paths.candidates?.[Number(searched[1])] ?? path);
  if (e.stage === 'exec' && paths.candidates !== undefined && errnoName(e.errno) === 'ENOENT') return notInPath(path, paths.candidates.map((c) => dirname(c)).join(delimiter), AS_TARGET);
  if (e.stage === 'exec' || searched !== null) return fromKernel(new KernelError('execve', e.errno), { what: `argv[0]: ${tried}`, field: 'argv[0]', path: tried, ...(paths.execAsTarget && { note: AS_TARGET }) });
  const code = errnoName(e.errno);
  if (e.stage === 'setns_owner') return errnoError(code, { what: "join_namespaces_of: the process's namespaces belong to another user namespace (one its owner made)", field: 'join_namespaces_of', syscall: 'setns', otherwise: 'InvalidArgument' }, e);
  const field = e.stage.startsWith('setrlimit') ? 'rlimits' : (stageFields[e.stage] ?? e.stage);
  const file = e.stage === 'stdout' || e.stage === 'stderr' || e.stage === 'chdir' ? paths[e.stage] : undefined;
  const context = file === undefined
    ? { what: e.stage, field, syscall: e.stage, otherwise: 'InvalidArgument' as const }
    : { what: `${field}: ${file}`, field, path: file, syscall: e.stage, otherwise: 'InvalidArgument' as const, note: AS_TARGET };
  return errnoError(code, context, e);
}
