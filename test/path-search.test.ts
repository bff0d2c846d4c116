// argv[0] found as execvp would, in the child's PATH and cwd, before spawning.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tempDir } from './helpers/harness.js';
import test, { type ExecutionContext } from 'ava';
import { AgentError, type ErrorKind } from '../src/process/errors.js';
import { resolveExecutable } from '../src/process/spawn/executable.js';

function scratch(t: ExecutionContext): (rel: string, kind: 'exec' | 'file' | 'dir') => string {
  const root = mkdtempSync(join(tmpdir(), 'pidfd-agent-units-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return (rel, kind) => {
    const path = join(root, rel);
    mkdirSync(join(path, '..'), { recursive: true });
    if (kind === 'dir') mkdirSync(path);
    else {
      writeFileSync(path, '#!/bin/sh\n');
      chmodSync(path, kind === 'exec' ? 0o755 : 0o644);
    }
    return path;
  };
}

function agentError(t: ExecutionContext, fn: () => unknown, kind: ErrorKind, reason: string, path: string): void {
  const e = t.throws(fn, { instanceOf: AgentError });
  t.is(e?.kind, kind);
  t.is(e?.detail.reason, reason);
  t.is(e?.detail.field, 'argv[0]');
  t.is(e?.detail.path, path);
}

test('resolveExecutable takes the first executable in PATH, passing over files without x and directories', (t) => {
  const make = scratch(t);
  const noExec = make('a/tool', 'file');
  const dir = make('b/tool', 'dir');
  const good = make('c/tool', 'exec');
  const later = make('d/tool', 'exec');
  const PATH = [noExec, dir, good, later].map((p) => join(p, '..')).join(':');
  t.is(resolveExecutable('tool', PATH), good);
  t.is(resolveExecutable('tool', `::${join(later, '..')}`), later, 'empty PATH entries are skipped');
});

test('resolveExecutable reports EACCES for the first candidate when none is executable, ENOENT when none exists', (t) => {
  const make = scratch(t);
  const noExec = make('a/tool', 'file');
  const dir = make('b/tool', 'dir');
  const empty = join(make('c/other', 'exec'), '..');
  const path = (...dirs: string[]) => dirs.join(':');
  agentError(t, () => resolveExecutable('tool', path(empty, join(noExec, '..'), join(dir, '..'))), 'PermissionDenied', 'EACCES', noExec);
  agentError(t, () => resolveExecutable('tool', path(empty, join(dir, '..'), join(noExec, '..'))), 'PermissionDenied', 'EACCES', dir);
  agentError(t, () => resolveExecutable('tool', empty), 'NotFound', 'ENOENT', 'tool');
  agentError(t, () => resolveExecutable('tool', ''), 'NotFound', 'ENOENT', 'tool');
});

test('resolveExecutable checks a path with a slash as given, without searching', (t) => {
  const make = scratch(t);
  const good = make('bin/tool', 'exec');
  const noExec = make('bin/data', 'file');
  const dir = make('bin/sub', 'dir');
  t.is(resolveExecutable(good, '/nonexistent'), good);
  agentError(t, () => resolveExecutable(noExec, join(good, '..')), 'PermissionDenied', 'EACCES', noExec);
  agentError(t, () => resolveExecutable(dir, join(good, '..')), 'PermissionDenied', 'EACCES', dir);
  agentError(t, () => resolveExecutable(join(dir, 'missing'), join(good, '..')), 'NotFound', 'ENOENT', join(dir, 'missing'));
  agentError(t, () => resolveExecutable(join(good, 'x'), join(good, '..')), 'NotFound', 'ENOTDIR', join(good, 'x'));
});

test('resolveExecutable takes relative programs from the child cwd and returns an absolute path', (t) => {
  const root = tempDir('pidfd-agent-rel-');
  mkdirSync(join(root, 'bin'));
  writeFileSync(join(root, 'bin', 'tool'), '#!/bin/sh\n');
  chmodSync(join(root, 'bin', 'tool'), 0o755);
  t.is(resolveExecutable('bin/tool', '/nonexistent', root), join(root, 'bin', 'tool'));
  t.is(resolveExecutable('tool', 'bin', root), join(root, 'bin', 'tool'), 'a relative PATH entry too');
  const e = t.throws(() => resolveExecutable('bin/tool', '/nonexistent', '/'));
  t.is((e as { kind?: string }).kind, 'NotFound');
});
