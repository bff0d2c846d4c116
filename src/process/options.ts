/** Where stdout or stderr goes. */
export type OutputTarget =
  | { readonly kind: 'discard' }
  | { readonly kind: 'inherit' }
  | { readonly kind: 'file'; readonly path: string; readonly append: boolean };

/** A validated Spawn request. */
export interface SpawnOptions {
  readonly argv: readonly string[];
  /** The child's whole environment; undefined means the minimal default. */
  readonly env?: Readonly<Record<string, string>>;
  readonly cwd?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly requestId?: string;
  readonly newSession: boolean;
  readonly stdout: OutputTarget;
  readonly stderr: OutputTarget;
}

export interface AdoptOptions {
  readonly pid: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly requestId?: string;
  readonly expectedStartTime?: bigint;
  readonly expectedPidfsInode?: bigint;
}

export type SignalTarget =
  | { readonly kind: 'process' }
  | { readonly kind: 'process-group' }
  | { readonly kind: 'thread'; readonly tid: number };

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
