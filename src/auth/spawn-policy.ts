// Whether one Spawn stays within a rule's `spawn:` constraints. Pure: the request's facts are
// resolved by the caller (authorize.ts), name lookups are passed in.
import { normalize } from 'node:path';
import type { CgroupRequest } from '../process/spawn/cgroups.js';
import type { OutputTarget } from '../process/options.js';
import { NO_ID, type RlimitRequest } from '../process/spawn/setup.js';
import { anyMatch, type Patterns, type SpawnRule } from './policy.js';

/** What a Spawn asks for, resolved as the spawn itself will resolve it. */
export interface SpawnFacts {
  /** The uid the process will run as (the agent's own when the request names no user); undefined: an unknown name. */
  readonly uid: number | undefined;
  /** The gids the request names explicitly (group and groups), resolved; undefined: an unknown name. */
  readonly gids: readonly (number | undefined)[];
  /** Names of the variables the request sets. */
  readonly env: readonly string[];
  readonly envInherit: boolean;
  /** The working directory asked for (absolute); undefined: the agent's. */
  readonly cwd: string | undefined;
  readonly stdout: OutputTarget;
  readonly stderr: OutputTarget;
  readonly cgroup: CgroupRequest | undefined;
  readonly rlimits: readonly RlimitRequest[];
  readonly newSession: boolean;
}

/** NSS, as far as the policy needs it. */
export interface Names {
  uid(name: string): number | undefined;
  gid(name: string): number | undefined;
}

export interface Denial {
  /** The request field refused: run_as, group, executable, env, stdout, cgroup, rlimits... */
  readonly field: string;
  readonly message: string;
}


/**
 * Variables that make the dynamic loader or glibc load code or data of the requester's choosing
 * (glibc's own list for setuid programs): with them `executables` would mean nothing.
 */
const LOADER_ENV = /^(LD_.*|GCONV_PATH|GETCONF_DIR|GLIBC_TUNABLES|HOSTALIASES|LOCALDOMAIN|LOCPATH|MALLOC_TRACE|NIS_PATH|NLSPATH|RESOLV_HOST_CONF|RES_OPTIONS)$/;

export const isLoaderVariable = (name: string): boolean => LOADER_ENV.test(name);

/** Names and numbers in `patterns` resolved to ids; `*` matches any id, even one NSS does not know. */
function idAllowed(patterns: Patterns, id: number | undefined, lookup: (name: string) => number | undefined): boolean {
  if (patterns.includes('*')) return id === undefined || id < NO_ID;
  return id !== undefined && id >= 0 && id < NO_ID && patterns.some((p) => (/^\d+$/.test(p) ? Number(p) === id : lookup(p) === id));
}

export function executableDenial(rule: SpawnRule, path: string): Denial | undefined {
  if (anyMatch(rule.executables, normalize(path))) return undefined;
  return { field: 'executable', message: `${path} is not among the executables this identity may run` };
}

/** The first constraint the spawn breaks, or undefined. The executable is checked on its own. */
export function spawnDenial(rule: SpawnRule, facts: SpawnFacts, names: Names): Denial | undefined {
  return runAsDenial(rule, facts, names) ?? envDenial(rule, facts) ?? cwdDenial(rule, facts.cwd) ?? outputDenial(rule, 'stdout', facts.stdout) ?? outputDenial(rule, 'stderr', facts.stderr) ?? cgroupDenial(rule, facts.cgroup) ?? rlimitDenial(rule, facts.rlimits) ?? sessionDenial(rule, facts.newSession);
}

function sessionDenial(rule: SpawnRule, newSession: boolean): Denial | undefined {
  return newSession || rule.agentSession ? undefined : { field: 'new_session', message: "may not start processes in the agent's own session (new_session: false)" };
}

function runAsDenial(rule: SpawnRule, facts: SpawnFacts, names: Names): Denial | undefined {
  if (!idAllowed(rule.runAs, facts.uid, (n) => names.uid(n))) return { field: 'run_as', message: `may not run as ${facts.uid === undefined ? 'that user' : `uid ${facts.uid}`}` };
  const i = facts.gids.findIndex((g) => !idAllowed(rule.groups, g, (n) => names.gid(n)));
  if (i >= 0) return { field: 'group', message: `may not run with ${facts.gids[i] === undefined ? 'that group' : `gid ${facts.gids[i]}`}` };
  return undefined;
}

function envDenial(rule: SpawnRule, facts: SpawnFacts): Denial | undefined {
  if (facts.envInherit && !rule.envInherit) return { field: 'env_mode', message: "may not inherit the agent's environment" };
  const name = facts.env.find((n) => isLoaderVariable(n) && !anyMatch(rule.envAllow, n));
  return name === undefined ? undefined : { field: 'env', message: `may not set ${name}` };
}

/** `path` (normalized) is below `dir`, or with `self` also `dir` itself; `*` is anywhere. */
function within(dir: string, path: string, self: boolean): boolean {
  if (dir === '*') return true;
  const base = normalize(dir).replace(/\/+$/, '');
  return (self && path === (base || '/')) || path.startsWith(`${base}/`);
}

function cwdDenial(rule: SpawnRule, cwd: string | undefined): Denial | undefined {
  if (cwd === undefined) return undefined;
  const path = normalize(cwd);
  return rule.cwdDirs.some((dir) => within(dir, path, true)) ? undefined : { field: 'cwd', message: `${path} is not an allowed working directory` };
}

function outputDenial(rule: SpawnRule, field: 'stdout' | 'stderr', target: OutputTarget): Denial | undefined {
  if (target.kind === 'inherit' && !rule.outputInherit) return { field, message: "may not write to the agent's own output" };
  if (target.kind !== 'file') return undefined;
  const path = normalize(target.path);
  return rule.outputDirs.some((dir) => within(dir, path, false)) ? undefined : { field: `${field}.path`, message: `${path} is not under an allowed output directory` };
}

function cgroupDenial(rule: SpawnRule, cgroup: CgroupRequest | undefined): Denial | undefined {
  if (cgroup === undefined) return undefined;
  if (cgroup.kind === 'create') return rule.cgroupCreate ? undefined : { field: 'cgroup.create', message: 'may not create cgroups' };
  return anyMatch(rule.cgroups, normalize(cgroup.path)) ? undefined : { field: 'cgroup.path', message: `may not join cgroup ${cgroup.path}` };
}

function rlimitDenial(rule: SpawnRule, rlimits: readonly RlimitRequest[]): Denial | undefined {
  if (rule.rlimits === undefined) return undefined;
  for (const r of rlimits) {
    const cap = rule.rlimits[r.resource];
    const ok = cap === 'inf' || (cap !== undefined && r.hard !== 'inf' && r.soft !== 'inf' && r.hard <= cap);
    if (!ok) return { field: 'rlimits', message: `RLIMIT_${r.resource} ${r.hard} is above what this identity may set` };
  }
  return undefined;
}
