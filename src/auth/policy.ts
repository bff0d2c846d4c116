// The authorization policy: parsed and validated from YAML into frozen rules, matched against a
// caller. Pure (no files, no NSS: name lookups are passed in), so every rule is unit-testable.
import { createRequire } from 'node:module';
import type { parse } from 'yaml';
import type { Caller } from './caller.js';
import { RLIMITS } from '../process/spawn/setup.js';

/** Loaded with the first policy: the parser costs ~2 MiB of RSS that an agent without --policy never needs. */
const parseYaml = (): typeof parse => (createRequire(import.meta.url)('yaml') as { parse: typeof parse }).parse;

/** What an RPC needs; a rule grants families, not single RPCs. */
export const FAMILIES = ['spawn', 'signal', 'read', 'output', 'stdin', 'release', 'adopt'] as const;
export type Family = (typeof FAMILIES)[number];

export type Role = 'tenant' | 'admin';

/** A pattern list: exact strings, `PREFIX*`, or `*` for anything. */
export type Patterns = readonly string[];

export interface SpawnRule {
  /** Users a spawn may run as: names or uids, compared on the resolved uid. */
  readonly runAs: Patterns;
  /** Groups a spawn may name in `group`/`groups`: names or gids. */
  readonly groups: Patterns;
  /** Resolved absolute argv[0]. */
  readonly executables: Patterns;
  /** Loader and glibc variables (refused by default) the request env may set anyway. */
  readonly envAllow: Patterns;
  /** ENV_MODE_INHERIT (the agent's own environment). */
  readonly envInherit: boolean;
  /** Directories OUTPUT_MODE_FILE paths must be under. */
  readonly outputDirs: Patterns;
  /**
   * Directories a request's `cwd` must be (or be under): decided on the path alone, so the agent,
   * which checks the directory as root, never tells a tenant what exists outside them.
   */
  readonly cwdDirs: Patterns;
  /** OUTPUT_MODE_INHERIT (the agent's own stdout/stderr, where the audit may go). */
  readonly outputInherit: boolean;
  /** new_session: false, a process in the agent's own session (and so near its process group and terminal). */
  readonly agentSession: boolean;
  /** Existing cgroups (relative to the cgroup parent) a spawn may join. */
  readonly cgroups: Patterns;
  readonly cgroupCreate: boolean;
  /** Highest hard limit per resource ('inf' allows unlimited); undefined: any limit. */
  readonly rlimits: Readonly<Record<string, bigint | 'inf'>> | undefined;
  /** Running at once per identity. */
  readonly maxProcesses: number | undefined;
  /** Capture ring bytes (ring_bytes) the identity's running and retained processes hold together. */
  readonly maxCaptureBytes: number | undefined;
  readonly spawnRate: Rate | undefined;
  /** SpawnRequest.join_namespaces_of: start a process inside a visible managed process's namespaces. */
  readonly joinNamespaces: boolean;
}

export interface Rate {
  readonly count: number;
  readonly perMs: number;
}

export interface Rule {
  /** For the audit: `name`, else `rules[i]`. */
  readonly name: string;
  readonly identities: Patterns;
  readonly role: Role;
  readonly allow: ReadonlySet<Family>;
  readonly spawn: SpawnRule;
  /** Concurrent Watch streams per identity. */
  readonly maxWatches: number | undefined;
  /** ReadOutput streams open at once per identity. */
  readonly maxReaders: number | undefined;
  /** Wait and Stop calls waiting at once per identity. */
  readonly maxWaits: number | undefined;
}

export interface Policy {
  readonly rules: readonly Rule[];
}

export class PolicyError extends Error {}

const ANY: Patterns = Object.freeze(['*']);
const NONE: Patterns = Object.freeze([]);

const UNRESTRICTED: SpawnRule = Object.freeze({
  runAs: ANY, groups: ANY, executables: ANY, envAllow: ANY, envInherit: true, outputDirs: ANY, cwdDirs: ANY, outputInherit: true, agentSession: true,
  cgroups: ANY, cgroupCreate: true, rlimits: undefined, maxProcesses: undefined, maxCaptureBytes: undefined, spawnRate: undefined, joinNamespaces: true,
});

/** Without --policy: uid 0 on the unix socket is admin, nobody else may do anything. */
export const ROOT_ONLY: Policy = Object.freeze({
  rules: [Object.freeze({ name: 'builtin:root', identities: ['unix:uid=0'], role: 'admin' as const, allow: new Set(FAMILIES), spawn: UNRESTRICTED, maxWatches: undefined, maxReaders: undefined, maxWaits: undefined })],
});

/** `a` is exact, `a*` a prefix, `*` anything. */
export function matches(pattern: string, value: string): boolean {
  return pattern.endsWith('*') ? value.startsWith(pattern.slice(0, -1)) : pattern === value;
}

export const anyMatch = (patterns: Patterns, value: string): boolean => patterns.some((p) => matches(p, value));

/** The first rule naming the caller's identity or one of its aliases (file order decides). */
export function ruleFor(policy: Policy, caller: Pick<Caller, 'identity' | 'aliases'>): Rule | undefined {
  const names = [caller.identity, ...caller.aliases];
  return policy.rules.find((r) => names.some((n) => anyMatch(r.identities, n)));
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function keys(where: string, o: Obj, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new PolicyError(`${where}: unknown key ${JSON.stringify(k)} (known: ${allowed.join(', ')})`);
}

function strings(where: string, v: unknown, fallback: Patterns): Patterns {
  if (v === undefined) return fallback;
  if (!Array.isArray(v)) throw new PolicyError(`${where}: expected a list`);
  return Object.freeze(
    v.map((s, i) => {
      if (typeof s === 'number' && Number.isInteger(s)) return String(s);
      if (typeof s !== 'string' || s === '') throw new PolicyError(`${where}[${i}]: expected a non-empty string`);
      return s;
    }),
  );
}

function flag(where: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new PolicyError(`${where}: expected true or false`);
  return v;
}

function positive(where: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new PolicyError(`${where}: expected an integer >= 0`);
  return v;
}

const SIZE_UNITS: Readonly<Record<string, number>> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** A size: bytes as an integer, or `N`, `Nk`, `Nm`, `Ng` (binary units) as the agent's flags take it. */
function bytes(where: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const m = typeof v === 'number' ? [String(v), String(v), ''] : typeof v === 'string' ? /^\s*(\d+)\s*([kmg]?)\s*$/i.exec(v) : null;
  const n = m === null ? Number.NaN : Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(n) || n < 0) throw new PolicyError(`${where}: expected bytes (an integer, or N with k, m or g), got ${JSON.stringify(v)}`);
  return n;
}

const RATE_UNITS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000 };

/** `10/s`, `100/m`, `1000/h`. */
export function parseRate(where: string, v: unknown): Rate | undefined {
  if (v === undefined) return undefined;
  const m = typeof v === 'string' ? /^\s*(\d+)\s*\/\s*(s|m|h)\s*$/.exec(v) : null;
  if (!m || Number(m[1]) < 1) throw new PolicyError(`${where}: expected N/s, N/m or N/h with N >= 1, got ${JSON.stringify(v)}`);
  return { count: Number(m[1]), perMs: RATE_UNITS[m[2]!]! };
}

function rlimitCaps(where: string, v: unknown): SpawnRule['rlimits'] {
  if (v === undefined) return {};
  if (!isObj(v)) throw new PolicyError(`${where}: expected a map RESOURCE: LIMIT`);
  const caps: Record<string, bigint | 'inf'> = {};
  for (const [k, limit] of Object.entries(v)) {
    const resource = k.toUpperCase().replace(/^RLIMIT_/, '');
    if (RLIMITS[resource] === undefined) throw new PolicyError(`${where}.${k}: unknown resource`);
    if (limit === 'unlimited' || limit === 'infinity') caps[resource] = 'inf';
    else if (typeof limit === 'number' && Number.isSafeInteger(limit) && limit >= 0) caps[resource] = BigInt(limit);
    else throw new PolicyError(`${where}.${k}: expected an integer >= 0 or "unlimited"`);
  }
  return Object.freeze(caps);
}

/** The schema's keys, for the parser and for checks that documentation names them all. */
export const SPAWN_KEYS: readonly string[] = ['run_as', 'groups', 'executables', 'env_allow', 'env_inherit', 'output_dirs', 'cwd_dirs', 'output_inherit', 'agent_session', 'cgroups', 'cgroup_create', 'rlimits', 'max_processes', 'max_capture_bytes', 'spawn_rate', 'join_namespaces'];

/** An admin's omitted constraint allows anything; a tenant's allows nothing (deny by default). */
function spawnRule(where: string, v: unknown, role: Role): SpawnRule {
  if (v !== undefined && !isObj(v)) throw new PolicyError(`${where}: expected a map`);
  const s = (v ?? {}) as Obj;
  keys(where, s, SPAWN_KEYS);
  const d = role === 'admin' ? UNRESTRICTED : { ...UNRESTRICTED, runAs: NONE, groups: NONE, executables: NONE, envAllow: NONE, envInherit: false, outputDirs: NONE, cwdDirs: NONE, outputInherit: false, agentSession: false, cgroups: NONE, cgroupCreate: false, rlimits: {}, joinNamespaces: false };
  const dirs = (key: string, fallback: Patterns) => {
    const list = strings(`${where}.${key}`, s[key], fallback);
    for (const dir of list) if (dir !== '*' && !dir.startsWith('/')) throw new PolicyError(`${where}.${key}: ${JSON.stringify(dir)} is not an absolute path`);
    return list;
  };
  const outputDirs = dirs('output_dirs', d.outputDirs);
  return Object.freeze({
    runAs: strings(`${where}.run_as`, s['run_as'], d.runAs),
    groups: strings(`${where}.groups`, s['groups'], d.groups),
    executables: strings(`${where}.executables`, s['executables'], d.executables),
    envAllow: strings(`${where}.env_allow`, s['env_allow'], d.envAllow),
    envInherit: flag(`${where}.env_inherit`, s['env_inherit'], d.envInherit),
    outputDirs,
    cwdDirs: dirs('cwd_dirs', d.cwdDirs),
    outputInherit: flag(`${where}.output_inherit`, s['output_inherit'], d.outputInherit),
    agentSession: flag(`${where}.agent_session`, s['agent_session'], d.agentSession),
    cgroups: strings(`${where}.cgroups`, s['cgroups'], d.cgroups),
    cgroupCreate: flag(`${where}.cgroup_create`, s['cgroup_create'], d.cgroupCreate),
    rlimits: s['rlimits'] === undefined ? d.rlimits : rlimitCaps(`${where}.rlimits`, s['rlimits']),
    maxProcesses: positive(`${where}.max_processes`, s['max_processes']),
    maxCaptureBytes: bytes(`${where}.max_capture_bytes`, s['max_capture_bytes']),
    spawnRate: parseRate(`${where}.spawn_rate`, s['spawn_rate']),
    joinNamespaces: flag(`${where}.join_namespaces`, s['join_namespaces'], d.joinNamespaces),
  });
}

function families(where: string, v: unknown, role: Role): ReadonlySet<Family> {
  if (v === undefined) return new Set(role === 'admin' ? FAMILIES : FAMILIES.filter((f) => f !== 'adopt'));
  const list = strings(where, v, NONE);
  for (const f of list) {
    if (!(FAMILIES as readonly string[]).includes(f)) throw new PolicyError(`${where}: unknown permission ${JSON.stringify(f)} (known: ${FAMILIES.join(', ')})`);
    // Adopting takes any process on the node under management: never a tenant's to do.
    if (f === 'adopt' && role !== 'admin') throw new PolicyError(`${where}: adopt is for role admin only`);
  }
  return new Set(list as Family[]);
}

/** A rule's keys (a spawn rule's are SPAWN_KEYS). */
export const RULE_KEYS: readonly string[] = ['name', 'identities', 'role', 'allow', 'spawn', 'max_watches', 'max_readers', 'max_waits'];

/**
 * A tenant's streams when its rule names no limit: the agent's --max-watchers (and as many
 * ReadOutput streams) are shared by every identity, and one tenant holding them all would lock
 * the others out. An admin's are bounded only by the agent's.
 */
export const TENANT_STREAMS = 64;

/**
 * A tenant's Wait and Stop calls waiting at once when its rule names no limit: each holds ~12 KB
 * of the agent until it is answered, and one identity's 64 connections could hold 65,536 of them
 * (~0.8 GB, the agent slow to answer anyone). An admin's are bounded only by its connections.
 */
export const TENANT_WAITS = 1024;

function rule(v: unknown, i: number): Rule {
  const where = `rules[${i}]`;
  if (!isObj(v)) throw new PolicyError(`${where}: expected a map`);
  keys(where, v, RULE_KEYS);
  const role = v['role'];
  if (role !== 'tenant' && role !== 'admin') throw new PolicyError(`${where}.role: expected tenant or admin`);
  const identities = strings(`${where}.identities`, v['identities'], NONE);
  if (identities.length === 0) throw new PolicyError(`${where}.identities: at least one identity`);
  if (v['name'] !== undefined && typeof v['name'] !== 'string') throw new PolicyError(`${where}.name: expected a string`);
  return Object.freeze({
    name: (v['name'] as string | undefined) ?? where,
    identities,
    role,
    allow: families(`${where}.allow`, v['allow'], role),
    spawn: spawnRule(`${where}.spawn`, v['spawn'], role),
    maxWatches: positive(`${where}.max_watches`, v['max_watches']) ?? (role === 'tenant' ? TENANT_STREAMS : undefined),
    maxReaders: positive(`${where}.max_readers`, v['max_readers']) ?? (role === 'tenant' ? TENANT_STREAMS : undefined),
    maxWaits: positive(`${where}.max_waits`, v['max_waits']) ?? (role === 'tenant' ? TENANT_WAITS : undefined),
  });
}

/** The policy in `text` (YAML); throws PolicyError naming the first thing wrong. */
export function parsePolicy(text: string): Policy {
  let doc: unknown;
  try {
    doc = parseYaml()(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    throw new PolicyError(`not valid YAML: ${(e as Error).message}`);
  }
  if (!isObj(doc)) throw new PolicyError('expected a map with a "rules" list');
  keys('policy', doc, ['rules']);
  const rules = doc['rules'];
  if (!Array.isArray(rules)) throw new PolicyError('rules: expected a list');
  return Object.freeze({ rules: Object.freeze(rules.map(rule)) });
}
