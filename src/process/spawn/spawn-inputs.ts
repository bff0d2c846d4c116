// Free functions of the manager's operations: checking and opening what a Spawn names, turning
// a failed helper stage into a domain error.
import { openSync, statSync, constants as fsc } from 'node:fs';
import { errnoName, KernelError } from '../../kernel/errors.js';
import type { Fd } from '../../kernel/fd.js';
import type { SetupError, StdioAction } from '../../kernel/spawn.js';
import { AgentError, fromKernel, invalidArgument } from '../errors.js';
import type { OutputTarget } from '../options.js';

export function checkCwd(cwd: string): void {
  try {
    if (!statSync(cwd).isDirectory()) throw invalidArgument('cwd', `${cwd}: ENOTDIR`, 'ENOTDIR');
  } catch (e) {
    if (e instanceof AgentError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? 'ENOENT';
    throw new AgentError(code === 'EACCES' ? 'PermissionDenied' : 'NotFound', `cwd: ${cwd}: ${code}`, { reason: code, field: 'cwd', path: cwd });
  }
}

/** Opens a FILE target in the agent (so errors name the path); the fd is closed after spawn. */
export function openOutput(target: OutputTarget, field: string, opened: Fd[]): StdioAction {
  if (target.kind === 'discard') return { kind: 'null' };
  if (target.kind === 'inherit') return { kind: 'inherit' };
  if (target.kind === 'capture') return { kind: 'pipe' };
  const flags = fsc.O_WRONLY | fsc.O_CREAT | (target.append ? fsc.O_APPEND : fsc.O_TRUNC);
  try {
    const fd = openSync(target.path, flags, 0o644) as Fd; // libuv opens with O_CLOEXEC
    opened.push(fd);
    return { kind: 'fd', fd };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'EIO';
    const kind = code === 'EACCES' || code === 'EPERM' ? 'PermissionDenied' : code === 'ENOENT' ? 'NotFound' : 'InvalidArgument';
    throw new AgentError(kind, `${field}.path: ${target.path}: ${code}`, { reason: code, field: `${field}.path`, path: target.path });
  }
}

/** Which request field a failed helper stage is about. */
const stageFields: Readonly<Record<string, string>> = {
  cgroup: 'cgroup', setgroups: 'groups', setgid: 'group', setuid: 'user', umask: 'umask',
  pdeathsig: 'parent_death_signal', no_new_privs: 'no_new_privs', stdout: 'stdout.path', stderr: 'stderr.path', env: 'env', chdir: 'cwd',
};

/** The paths the helper opens as the target, by stage: named in a failure of that stage. */
export interface SetupPaths {
  readonly stdout?: string;
  readonly stderr?: string;
  readonly chdir?: string;
}

export function setupFailure(e: SetupError, path: string, paths: SetupPaths = {}): unknown {
  const code = errnoName(e.errno);
  if (e.stage === 'exec') return fromKernel(new KernelError('execve', e.errno), { what: `${path}`, field: 'argv[0]', path });
  const field = e.stage.startsWith('setrlimit') ? 'rlimits' : (stageFields[e.stage] ?? e.stage);
  const kind = code === 'EPERM' || code === 'EACCES' ? 'PermissionDenied' : code === 'ENOENT' ? 'NotFound' : code === 'EAGAIN' || code === 'ENOMEM' ? 'ResourceExhausted' : 'InvalidArgument';
  const file = e.stage === 'stdout' || e.stage === 'stderr' || e.stage === 'chdir' ? paths[e.stage] : undefined;
  const message = file === undefined ? `${e.stage}: ${code}` : `${field}: ${file}: ${code} (as the target user)`;
  return new AgentError(kind, message, { reason: code, field, syscall: e.stage, path: file }, { cause: e });
}
