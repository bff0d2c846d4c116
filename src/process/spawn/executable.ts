import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, resolve } from 'node:path';
import { AgentError, errnoError } from '../errors.js';

/**
 * Finds argv[0] the way execvp does, but in the child's PATH and before spawning, so a missing or
 * non-executable program is reported with the path that was tried. Relative paths are taken from
 * the child's working directory, and the result is absolute, so what was checked is what runs.
 */
export function resolveExecutable(program: string, path: string, cwd = process.cwd()): string {
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
  throw new AgentError('NotFound', `argv[0]: ${program}: ENOENT (not found in PATH ${path})`, { reason: 'ENOENT', field: 'argv[0]', path: program });
}

function checkExecutable(path: string): void {
  const problem = executableProblem(path);
  if (problem === undefined) return;
  throw notExecutable(path, problem);
}

const notExecutable = (path: string, code: string): AgentError =>
  errnoError(code, { what: `argv[0]: ${path}`, field: 'argv[0]', path, otherwise: 'NotFound' })!;

function executableProblem(path: string): string | undefined {
  try {
    if (statSync(path).isDirectory()) return 'EACCES';
    accessSync(path, constants.X_OK);
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'ENOENT';
  }
}
