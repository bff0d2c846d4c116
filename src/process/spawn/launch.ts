// Starting the process of one Spawn: environment and executable resolved as the child will see
// them, FILE targets opened (in the agent when it is the target's identity, else by the helper
// after the drop), a cgroup prepared, the exec helper when setup needs it; then the spawn on
// libuv's threadpool. Every failure leaves nothing behind and is a domain error.
import { resolve } from 'node:path';
import { isKernelError } from '../../kernel/errors.js';
import { closeFd, dupFd, type Fd } from '../../kernel/fd.js';
import { openPty, type Pty } from '../../kernel/pty.js';
import type { PidRef } from '../../kernel/pid-ref.js';
import { SetupError, shimHandles, spawnAsync, type StdioAction } from '../../kernel/spawn.js';
import type { Cgroups } from './cgroups.js';
import { AgentError, fromKernel } from '../errors.js';
import { notInPath, pathCandidates, resolveExecutable } from './executable.js';
import type { HandleId } from '../lifecycle/handle.js';
import { DEFAULT_PATH, type OutputTarget, type SpawnOptions } from '../options.js';
import { changesIdentity, helperArgs, needsHelper, type HelperOutput } from './setup.js';
import { checkCwd, openOutput, setupFailure, type SetupPaths } from './spawn-inputs.js';
import { JOINED_CWD, type NamespaceTarget } from './namespaces.js';
import { NO_TELEMETRY, type ProcessTelemetry } from '../telemetry-port.js';

/** What spawning needs from the node, decided by the composition root. */
export interface SpawnEnvironment {
  /** The exec helper binary (built with the agent). */
  readonly helperPath: string;
  readonly cgroups: Cgroups;
  /** The agent's own environment, for ENV_MODE_INHERIT. */
  readonly agentEnv: Readonly<Record<string, string>>;
  /** --spawn-in-namespaces-of: the namespaces every child joins unless its request names a handle's. */
  readonly namespaces?: NamespaceTarget;
}

export interface Launched {
  /** The caller's to take() from here on. */
  readonly ref: PidRef;
  /**
   * The agent's ends of stdin, stdout, stderr where they are pipes; owned by the caller. With a
   * terminal, stdin and stdout are each a duplicate of its master.
   */
  readonly pipes: readonly [Fd | null, Fd | null, Fd | null];
  /** The pty master with a terminal (for its window size), owned by the caller. */
  readonly terminal?: Fd;
  /** A cgroup created for this process alone (the caller removes it after the exit). */
  readonly ownedCgroup: string | undefined;
  /** Removes ownedCgroup again, if the caller cannot take the process on after all. */
  undo(): void;
  /** The file a PATH search as the target user exec'd (the agent did not look it up itself). */
  readonly found?: string;
}

/** The child's environment, as the spawn will pass it. */
export const childEnv = (options: SpawnOptions, agentEnv: Readonly<Record<string, string>>): Readonly<Record<string, string>> =>
  options.inheritEnv ? { ...agentEnv, ...options.env } : (options.env ?? { PATH: DEFAULT_PATH });

/** The PATH argv[0] is looked up in: the child's. */
export const searchPath = (options: SpawnOptions, agentEnv: Readonly<Record<string, string>>): string => childEnv(options, agentEnv).PATH ?? DEFAULT_PATH;

/**
 * The working directory relative argv[0] and PATH entries are taken from: the request's, else the
 * agent's, or "/" for a child that joins another mount namespace (setns puts it at that root).
 */
export const childCwd = (options: SpawnOptions, joins: NamespaceTarget | undefined): string => options.cwd ?? (joins ? JOINED_CWD : process.cwd());

/**
 * The absolute path argv[0] names, found in the child's PATH and working directory: in the mount
 * namespace the child will exec in (through the joined target's root directory).
 */
export const executableOf = (options: SpawnOptions, agentEnv: Readonly<Record<string, string>>, joins?: NamespaceTarget): string =>
  resolveExecutable(options.argv[0]!, searchPath(options, agentEnv), childCwd(options, joins), joins?.root);

/** The files a PATH search for argv[0] (without a slash) tries, in order, in the child's PATH and cwd. */
export const candidatesOf = (options: SpawnOptions, agentEnv: Readonly<Record<string, string>>, joins?: NamespaceTarget): string[] =>
  pathCandidates(options.argv[0]!, searchPath(options, agentEnv), childCwd(options, joins));

/**
 * Starts the process. With `joins`, the child joins that process's namespaces in the exec helper,
 * first; the working directory and FILE outputs are then entered and opened by the helper after
 * the setns, so they are the joined mount namespace's, and the executable was resolved there.
 */
export async function launch(
  options: SpawnOptions,
  node: SpawnEnvironment,
  handle: HandleId,
  joins?: NamespaceTarget,
  stage: ProcessTelemetry['stage'] = NO_TELEMETRY.stage,
): Promise<Launched> {
  const env = childEnv(options, node.agentEnv);
  // What the policy checked is what runs: resolved once, not again in a PATH that may differ.
  // A path with a slash that the shim execs as it is needs no check first: the kernel's execve
  // checks it anyway, and only a failed one is diagnosed (with the same errors as the check).
  const program = options.argv[0]!;
  const plain = (o: OutputTarget) => o.kind === 'discard' || o.kind === 'inherit';
  const shimmable = !options.terminal && options.stdin !== 'pipe' && plain(options.stdout) && plain(options.stderr) && !needsHelper(options.setup) && node.cgroups.v1Procs.length === 0;
  const unchecked = options.executable === undefined || options.executableUnchecked === true;
  // For another identity, the helper enters cwd, creates and opens files and execs argv[0] as that
  // identity (a name without a slash searched in PATH's files as execvp would); in joined
  // namespaces, it does so after the setns, in the joined mount namespace. Then the agent looks at
  // neither cwd nor argv[0] first: its stat, as root, through a link the tenant put in a cwd_dirs
  // (or executables) directory, would tell what exists where the target may not look. The
  // helper's execve is the check, with the same errno names.
  const byTarget = changesIdentity(options.setup);
  const asTarget = byTarget || joins !== undefined;
  const candidates = byTarget && !program.includes('/') ? (options.executableCandidates ?? candidatesOf(options, node.agentEnv, joins)) : undefined;
  if (candidates?.length === 0) throw notInPath(program, '');
  const deferred = unchecked && program.includes('/') && (byTarget || (joins === undefined && shimmable));
  const path = candidates !== undefined ? program : !unchecked ? options.executable! : deferred ? resolve(childCwd(options, joins), program) : stage('executable', () => executableOf(options, node.agentEnv, joins));
  let direct = false;
  if (options.cwd !== undefined && !asTarget) checkCwd(options.cwd);
  const opened: Fd[] = [];
  const cgroup = options.cgroup && stage('cgroup', () => node.cgroups.prepare(options.cgroup!, handle));
  if (cgroup) opened.push(cgroup.procs);
  const owned = cgroup?.created ? cgroup.dir : undefined;
  const undo = () => {
    if (owned !== undefined) node.cgroups.remove(owned);
  };
  const fallback = cgroup ? undefined : node.cgroups.defaultCgroup;
  let pty: Pty | undefined;
  const ends: Fd[] = [];
  try {
    if (options.terminal) {
      pty = openPty(options.terminal);
      ends.push(dupFd(pty.master), dupFd(pty.master));
    }
    const helperCwd = asTarget ? options.cwd : undefined;
    const outputs: HelperOutput[] = [];
    const output = (target: 1 | 2, o: OutputTarget, field: 'stdout' | 'stderr'): StdioAction => {
      if (!asTarget || o.kind !== 'file') return openOutput(o, field, opened);
      outputs.push([target, o.path, o.append]);
      return { kind: 'null' };
    };
    const tty: StdioAction | undefined = pty && { kind: 'tty', path: pty.slavePath };
    const stdio: [StdioAction, StdioAction, StdioAction] = tty
      ? [tty, tty, tty]
      : [options.stdin === 'pipe' ? { kind: 'pipe' } : { kind: 'null' }, output(1, options.stdout, 'stdout'), output(2, options.stderr, 'stderr')];
    const procs = cgroup?.procs ?? fallback?.procs;
    // A cgroup alone is joined by the spawn shim's child itself where it can, else by the helper.
    const v1 = node.cgroups.v1Procs;
    const helped = needsHelper(options.setup) || joins !== undefined || v1.length > 0;
    direct = !helped && shimHandles(stdio);
    if (deferred && !direct && !byTarget) stage('executable', () => executableOf(options, node.agentEnv, joins));
    const helper = helped || (procs !== undefined && !direct) ? { path: node.helperPath, args: helperArgs(options.setup, outputs, helperCwd, candidates) } : undefined;
    const child = await stage('exec', () => spawnAsync({
      path,
      argv: options.argv,
      envp: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      cwd: asTarget ? undefined : options.cwd,
      stdio,
      newSession: options.newSession,
      helper,
      cgroupProcs: procs,
      v1CgroupProcs: v1,
      namespacesOf: joins?.ref,
    }));
    const found = child.candidate === undefined ? undefined : candidates?.[child.candidate];
    if (pty) return { ref: child.ref, pipes: [ends[0]!, ends[1]!, null], terminal: pty.master, ownedCgroup: owned, undo, found };
    return { ref: child.ref, pipes: child.pipes, ownedCgroup: owned, undo, found };
  } catch (e) {
    undo();
    for (const fd of ends) closeFd(fd);
    if (pty) closeFd(pty.master);
    // The request asked for no cgroup: a failure to join the agent's default one is the node's.
    if (fallback && e instanceof SetupError && e.stage === 'cgroup') {
      throw new AgentError('FailedPrecondition', `the default cgroup ${fallback.dir}: ${e.code}`, { reason: 'DEFAULT_CGROUP', path: fallback.dir, syscall: 'cgroup' }, { cause: e });
    }
    if (deferred && direct && isKernelError(e) && e.syscall === 'execve') executableOf(options, node.agentEnv, joins);
    throw spawnError(e, path, { stdout: fileOf(options.stdout), stderr: fileOf(options.stderr), chdir: options.cwd, execAsTarget: byTarget, candidates });
  } finally {
    for (const fd of opened) closeFd(fd);
  }
}

const fileOf = (o: OutputTarget): string | undefined => (o.kind === 'file' ? o.path : undefined);

export const spawnError = (e: unknown, path: string, outputs?: SetupPaths): unknown =>
  e instanceof SetupError
    ? setupFailure(e, path, outputs)
    : fromKernel(e, { what: `spawn ${path}`, field: 'argv[0]', path, shortageIsNodes: true });
