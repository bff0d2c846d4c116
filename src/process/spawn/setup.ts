// What the exec helper does before exec: resolved here (names → ids through NSS, limits checked)
// into the helper's arguments. Only the helper path needs any of it.
import { lookupGroup, lookupUser, userGroups } from '../../kernel/nss.js';
import { invalidArgument } from '../errors.js';

export interface RlimitRequest {
  readonly resource: string;
  /** Numbers of the limit, or 'inf' (RLIM_INFINITY). */
  readonly soft: bigint | 'inf';
  readonly hard: bigint | 'inf';
}

/** Validated (not yet resolved) setup options of a Spawn. */
export interface SetupOptions {
  readonly user?: string;
  readonly group?: string;
  readonly groups?: readonly string[];
  readonly umask?: number;
  readonly noNewPrivs: boolean;
  readonly parentDeathSignal?: number;
  readonly rlimits: readonly RlimitRequest[];
}

// RLIMIT_* numbers (asm-generic; the same on x86_64 and arm64).
export const RLIMITS: Readonly<Record<string, number>> = {
  CPU: 0, FSIZE: 1, DATA: 2, STACK: 3, CORE: 4, RSS: 5, NPROC: 6, NOFILE: 7, MEMLOCK: 8, AS: 9,
  LOCKS: 10, SIGPENDING: 11, MSGQUEUE: 12, NICE: 13, RTPRIO: 14, RTTIME: 15,
};

/** Whether the process runs with other credentials than the agent's. */
export const changesIdentity = (s: SetupOptions): boolean => s.user !== undefined || s.group !== undefined || s.groups !== undefined;

/** Whether setup needs the exec helper (a cgroup alone does not: the spawn shim's child can join one). */
export const needsHelper = (s: SetupOptions): boolean =>
  changesIdentity(s) || s.umask !== undefined || s.noNewPrivs || s.parentDeathSignal !== undefined || s.rlimits.length > 0;

/** A FILE output the helper opens with the target's credentials: [1 or 2, path, append]. */
export type HelperOutput = readonly [target: 1 | 2, path: string, append: boolean];

const numeric = (text: string): number | undefined => (/^\d+$/.test(text) ? Number(text) : undefined);

/**
 * (uid_t)-1 means "leave unchanged" to setresuid/setresgid/chown, so asking for 4294967295 would
 * run the process as the agent (root); anything larger does not fit an id at all.
 */
export const NO_ID = 0xffff_ffff;

export function checkId(field: string, id: number): number {
  if (!(id < NO_ID)) throw invalidArgument(field, `${id} is not a valid id (must be below 4294967295)`, 'ID_OUT_OF_RANGE');
  return id;
}

function resolveGroup(field: string, text: string): number {
  const gid = numeric(text) ?? lookupGroup(text);
  if (gid === undefined) throw invalidArgument(field, `unknown group ${JSON.stringify(text)}`, 'UNKNOWN_GROUP');
  return checkId(field, gid);
}

/**
 * The helper's arguments, in the order it applies them (privileged steps first); `cwd` and
 * `outputs` are what it enters and opens with the target's credentials, `candidates` the files it
 * tries to exec as the target, in order, in place of the path it is given (a PATH search).
 */
export function helperArgs(s: SetupOptions, outputs: readonly HelperOutput[], cwd: string | undefined, candidates: readonly string[] = []): string[] {
  const args: string[] = [];
  for (const r of s.rlimits) args.push('--rlimit', `${RLIMITS[r.resource]}:${r.soft}:${r.hard}`);
  if (s.umask !== undefined) args.push('--umask', s.umask.toString(8));
  const { uid, gid, groups } = identity(s);
  if (groups !== undefined) args.push('--groups', groups.join(','));
  if (gid !== undefined) args.push('--gid', String(gid));
  if (uid !== undefined) args.push('--uid', String(uid));
  if (cwd !== undefined) args.push('--chdir', cwd);
  for (const [target, path, append] of outputs) args.push(target === 1 ? '--stdout' : '--stderr', `${append ? 'a' : 't'}:${path}`);
  if (s.parentDeathSignal !== undefined) args.push('--pdeathsig', String(s.parentDeathSignal));
  if (s.noNewPrivs) args.push('--nnp');
  for (const file of candidates) args.push('--candidate', file);
  return args;
}

/**
 * uid, gid and supplementary groups. With a user and no explicit groups, the user's groups (as
 * initgroups sets them); a uid without a passwd entry gets gid = uid and no supplementary groups.
 */
function identity(s: SetupOptions): { uid?: number; gid?: number; groups?: number[] } {
  let uid: number | undefined;
  let entry;
  if (s.user !== undefined) {
    // Checked before the lookup: getpwuid takes a uint32_t, which would wrap a larger number.
    const digits = numeric(s.user);
    const n = digits === undefined ? undefined : checkId('user', digits);
    entry = n === undefined ? lookupUser(s.user) : lookupUser(n);
    if (entry === undefined && n === undefined) throw invalidArgument('user', `unknown user ${JSON.stringify(s.user)}`, 'UNKNOWN_USER');
    uid = entry !== undefined ? checkId('user', entry.uid) : n;
  }
  const gid = s.group !== undefined ? resolveGroup('group', s.group) : entry !== undefined ? checkId('user', entry.gid) : uid;
  let groups: number[] | undefined;
  if (s.groups !== undefined) groups = s.groups.map((g, i) => resolveGroup(`groups[${i}]`, g));
  else if (uid !== undefined) groups = entry !== undefined && gid !== undefined ? userGroups(entry.name, gid) : [];
  return { uid, gid, groups };
}
