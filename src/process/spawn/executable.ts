import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, resolve } from 'node:path';
import { KernelError } from '../../kernel/errors.js';
import { closeFd, type Fd } from '../../kernel/fd.js';
import { O_PATH, openInRoot } from '../../kernel/files.js';
import { AgentError, errnoError } from '../errors.js';

/**
 * Finds argv[0] the way execvp does, but in the child's PATH and before spawning, so a missing or
 * non-executable program is reported with the path that was tried. Relative paths are taken from
 * the child's working directory, and the result is absolute, so what was checked is what runs.
 * With `root` (a descriptor of another mount namespace's root directory), every path is looked up
 * there, as the child that joins that namespace before its execve will.
 */
export function resolveExecutable(program: string, path: string, cwd = process.cwd(), root?: Fd): string {
  const executableProblem = (file: string) => problemOf(file, root);
  const checkExecutable = (file: string) => {
    const problem = executableProblem(file);
    if (problem !== undefined) throw notExecutable(file, problem);
  };
  if (program.includes('/')) {
    const absolute = resolve(cwd, program);
    checkExecutable(absolute);
    return absolute;
  }
  let denied: string | undefined;
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = resolve(cwd, dir, program);
    const problem = executableProblem(candidate);
    if (problem === undefined) return candidate;
    if (problem === 'EACCES') denied ??= candidate;
  }
  if (denied !== undefined) throw notExecutable(denied, 'EACCES');
  throw notInPath(program, path);
}

/** argv[0] without a slash is in none of the PATH directories searched (`as`: whose search it was). */
export const notInPath = (program: string, path: string, as?: string): AgentError =>
  new AgentError('NotFound', `argv[0]: ${program}: ENOENT (not found in PATH ${path}${as === undefined ? '' : `, ${as}`})`, { reason: 'ENOENT', field: 'argv[0]', path: program });

/**
 * The files execvp would try for argv[0] without a slash, in order: each directory of `path` (a
 * relative one taken from `cwd`), made absolute and `..` folded, as the policy checks paths.
 */
/** Each file once, in PATH's order: a PATH of one directory repeated thousands of times is one try. */
export const pathCandidates = (program: string, path: string, cwd: string): string[] => [
  ...new Set(path.split(delimiter).filter((dir) => dir !== '').map((dir) => resolve(cwd, dir, program))),
];

const notExecutable = (path: string, code: string): AgentError =>
  errnoError(code, { what: `argv[0]: ${path}`, field: 'argv[0]', path, otherwise: 'NotFound' })!;

function problemOf(path: string, root: Fd | undefined): string | undefined {
  if (root === undefined) return fileProblem(path);
  let fd: Fd;
  try {
    fd = openInRoot(root, path, O_PATH);
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  try {
    // The magic link leads to the file opened in the other namespace, whatever this one has there.
    return fileProblem(`/proc/self/fd/${fd}`);
  } finally {
    closeFd(fd);
  }
}

function fileProblem(path: string): string | undefined {
  try {
    if (statSync(path).isDirectory()) return 'EACCES';
    accessSync(path, constants.X_OK);
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'ENOENT';
  }
}
