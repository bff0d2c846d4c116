import type { CgroupRequest } from './spawn/cgroups.js';
import type { SetupOptions } from './spawn/setup.js';

/** Where stdout or stderr goes. */
export type OutputTarget =
  | { readonly kind: 'discard' }
  | { readonly kind: 'inherit' }
  | { readonly kind: 'file'; readonly path: string; readonly append: boolean }
  /** A pipe read by the agent into a ring of ringBytes (the agent's default when undefined). */
  | { readonly kind: 'capture'; readonly ringBytes?: number };

export interface Deadline {
  readonly timeoutMs: number;
  readonly killSignal: number;
  readonly graceMs: number;
}

/** A validated Spawn request. */
export interface SpawnOptions {
  readonly argv: readonly string[];
  /** The child's whole environment (undefined: the minimal default), or overrides with inheritEnv. */
  readonly env?: Readonly<Record<string, string>>;
  readonly inheritEnv?: boolean;
  readonly setup: SetupOptions;
  readonly cgroup?: CgroupRequest;
  readonly deadline?: Deadline;
  readonly cwd?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly requestId?: string;
  readonly newSession: boolean;
  readonly stdout: OutputTarget;
  readonly stderr: OutputTarget;
  /** A pipe written with WriteStdin; /dev/null when absent. */
  readonly stdin?: 'pipe';
  /** Publish captured output as events too. */
  readonly outputEvents?: boolean;
  /**
   * A pty as stdin, stdout, stderr and controlling terminal, of this size; what it shows is
   * captured as stdout (the ring `stdout` says), stdin and stderr are then unused.
   */
  readonly terminal?: { readonly rows: number; readonly cols: number };
  /** Who asked: the caller's identity (`unix:uid=U`, a certificate's SPIFFE ID...). */
  readonly owner?: string;
  /** The capture ring bytes the owner's running and retained processes may hold together (its rule's max_capture_bytes). */
  readonly captureQuota?: number;
  /** argv[0] already resolved to an absolute path (by the authorization, which checked it). */
  readonly executable?: string;
  /**
   * `executable` is argv[0] with a slash made absolute, not yet checked: the spawn checks it before
   * it runs, or leaves that to the kernel's execve where the shim execs it as it is.
   */
  readonly executableUnchecked?: boolean;
  /**
   * argv[0] without a slash, for a spawn as another user: the files of PATH the policy allows it to
   * be, in order, which the exec helper tries as that user (the agent looks at none of them).
   */
  readonly executableCandidates?: readonly string[];
  /** A managed process's handle: the child joins its mount, UTS, IPC, network and cgroup namespaces. */
  readonly joinNamespacesOf?: string;
  /** Released once a Wait or Stop has delivered its exit (SpawnRequest.release_on_exit). */
  readonly releaseOnExit?: boolean;
}

export interface AdoptOptions {
  readonly pid: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly requestId?: string;
  readonly expectedStartTime?: bigint;
  readonly expectedPidfsInode?: bigint;
  /** Who asked: the caller's identity. */
  readonly owner?: string;
}

export type SignalTarget =
  | { readonly kind: 'process' }
  | { readonly kind: 'process-group' }
  | { readonly kind: 'thread'; readonly tid: number }
  /** Every process in the process's own cgroup. */
  | { readonly kind: 'tree' };

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
