// The namespaces a spawned child joins: the node's (--spawn-in-namespaces-of PID, held for the
// agent's life) or a managed process's (SpawnRequest.join_namespaces_of, held for one spawn). The
// child joins them by pidfd in the exec helper (setns, before exec); the agent resolves the
// executable in the same mount namespace through a descriptor of the process's root directory.
import { errnoName, KernelError } from '../../kernel/errors.js';
import { closeFd, type Fd } from '../../kernel/fd.js';
import { openRootOf } from '../../kernel/namespaces.js';
import { PidRef } from '../../kernel/pid-ref.js';
import { SetupError, spawnAsync } from '../../kernel/spawn.js';

/** Where paths resolve for a child that joined a target's mount namespace and has no cwd: its root. */
export const JOINED_CWD = '/';

export class NamespaceTarget {
  private closed = false;

  private constructor(
    /** The process whose namespaces are joined (owned here). */
    readonly ref: PidRef,
    /** Its root directory (O_PATH, owned here): what absolute paths mean in its mount namespace. */
    readonly root: Fd,
  ) {}

  /** Takes `ref` over (closed on failure too) and opens its root. */
  static of(ref: PidRef): NamespaceTarget {
    try {
      return new NamespaceTarget(ref, openRootOf(ref));
    } catch (e) {
      ref.close();
      throw e;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeFd(this.root);
    this.ref.close();
  }
}

/** The namespaces one spawn joins (none: undefined), and what to call when it no longer needs them. */
export interface Joined {
  readonly target: NamespaceTarget | undefined;
  release(): void;
}

/** --spawn-in-namespaces-of names no process, or one whose namespaces cannot be joined (a start-up error). */
export class NamespacesError extends Error {}

const PROBE_REAP_MS = 5000;

/**
 * The target of --spawn-in-namespaces-of PID: its pidfd, opened once, and a probe (the exec
 * helper joins its namespaces and exits without exec) so that a start fails now, naming why,
 * rather than every spawn later.
 */
export async function nodeNamespaces(pid: number, helperPath: string): Promise<NamespaceTarget> {
  const flag = `--spawn-in-namespaces-of ${pid}`;
  const unjoinable = `${flag}: cannot join its mount, UTS, IPC, network and cgroup namespaces`;
  let target: NamespaceTarget;
  try {
    target = NamespaceTarget.of(PidRef.open(pid));
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
    const why = e.code === 'ESRCH' || e.code === 'ENOENT' ? `${flag}: no such process` : `${unjoinable}: ${e.syscall}: ${e.code}`;
    throw new NamespacesError(why, { cause: e });
  }
  try {
    const child = await spawnAsync({ path: '/', argv: ['probe'], envp: [], stdio: [{ kind: 'null' }, { kind: 'null' }, { kind: 'null' }], newSession: true, helper: { path: helperPath, args: ['--no-exec'] }, namespacesOf: target.ref });
    try {
      const { termination } = child.ref.reap(PROBE_REAP_MS);
      if (termination.exitCode !== 0) throw new NamespacesError(`${flag}: the probe of its namespaces ended with ${JSON.stringify(termination)}`);
    } finally {
      child.ref.close();
    }
    return target;
  } catch (e) {
    target.close();
    if (e instanceof SetupError) throw new NamespacesError(`${unjoinable}: ${e.stage === 'setns_owner' ? 'they belong to another user namespace' : `${e.stage}: ${errnoName(e.errno)}`}`, { cause: e });
    throw e;
  }
}
