// The one decision point: every RPC is decided here, on its decoded and validated fields and the
// caller's identity, before anything is touched. Denials and mutating calls are audited here.
import { delimiter, dirname, resolve } from 'node:path';
import { changesIdentity } from '../process/spawn/setup.js';
import { AgentError, unknownHandle } from '../process/errors.js';
import { pathCandidates, resolveExecutable } from '../process/spawn/executable.js';
import { childCwd, searchPath } from '../process/spawn/launch.js';
import type { Joined } from '../process/spawn/namespaces.js';
import type { AdoptOptions, SpawnOptions } from '../process/options.js';
import type { ProcessRecord, ProcessView } from '../process/lifecycle/record.js';
import type { AuditEntry, AuditSink } from './audit.js';
import { callerOf, type Caller, type CallTransport, type Transports } from './caller.js';
import { ruleFor, type Family, type Policy, type Rule } from './policy.js';
import { executableDenial, spawnDenial, type Denial, type Names, type SpawnFacts } from './spawn-policy.js';
import { Quotas } from './quotas.js';
import { lookupGroup, lookupUser } from '../kernel/nss.js';
import { ttlCache } from './ttl-cache.js';

export type HandleRpc = 'Signal' | 'Stop' | 'Wait' | 'Get' | 'ListThreads' | 'ReadOutput' | 'WriteStdin' | 'CloseStdin' | 'Release' | 'ResizeTerminal';
export type Rpc = HandleRpc | 'Spawn' | 'Adopt' | 'List' | 'Watch';

/** What is asked, as decoded and validated: the only input of a decision besides the caller. */
export type Request =
  | { readonly rpc: 'Spawn'; readonly spawn: SpawnOptions }
  | { readonly rpc: 'Adopt'; readonly adopt: AdoptOptions }
  | { readonly rpc: HandleRpc; readonly handle: string }
  | { readonly rpc: 'List' | 'Watch' };

export const FAMILY_OF: Readonly<Record<Rpc, Family>> = {
  Spawn: 'spawn', Adopt: 'adopt', Signal: 'signal', Stop: 'signal', Wait: 'read', Get: 'read', List: 'read', Watch: 'read',
  ListThreads: 'read', ReadOutput: 'output', WriteStdin: 'stdin', CloseStdin: 'stdin', Release: 'release',
  ResizeTerminal: 'stdin',
};

const MUTATING: ReadonlySet<Rpc> = new Set(['Spawn', 'Adopt', 'Signal', 'Stop', 'Release', 'WriteStdin', 'CloseStdin', 'ResizeTerminal']);

/**
 * For the names rules list (run_as, groups), which a decision resolves on every spawn: each answer
 * kept ttlMs, as the caller's groups are (caller.ts). The names a request gives are resolved
 * fresh, as the spawn resolves them, so what is checked is what runs.
 */
export function cachedNames(names: Names, ttlMs = 10_000, now: () => number = Date.now): Names {
  const cached = (lookup: (name: string) => number | undefined) => {
    const cache = ttlCache<string, number | undefined>(ttlMs, 4096, now);
    return (name: string) => cache(name, () => lookup(name));
  };
  return { uid: cached((n) => names.uid(n)), gid: cached((n) => names.gid(n)) };
}

/** Names as the spawn resolves them (NSS). */
export const NSS_NAMES: Names = { uid: (name) => lookupUser(name)?.uid, gid: (name) => lookupGroup(name) };

export interface AuthorizerDeps {
  /** The policy in force now (reloads swap it whole). */
  readonly policy: () => Policy;
  /** The request's user and group names, resolved as the spawn will resolve them. */
  readonly names: Names;
  /** The names rules list (run_as, groups); may answer from a cache. Default: names. */
  readonly ruleNames?: Names;
  /** The uid a spawn without `user` runs as. */
  readonly agentUid: number;
  /** How --tcp is served: a TCP caller without a certificate is anonymous only on plaintext loopback. */
  readonly transports: Transports;
  /** The agent's environment, for ENV_MODE_INHERIT: PATH is looked up as the spawn will. */
  readonly agentEnv: Readonly<Record<string, string>>;
  /** The record a handle names now, whoever owns it. */
  readonly lookup: (handle: string) => ProcessRecord | undefined;
  /** The namespaces a spawn's child would join (its executable is resolved in their mount namespace). */
  readonly namespaces?: (spawn: SpawnOptions) => Joined;
  /** Running processes an identity owns. */
  readonly running: (owner: string) => number;
  /** Of those, the released ones (it can no longer end them): named in a max_processes refusal. */
  readonly released?: (owner: string) => number;
  /** Whether the identity already made a spawn with this request_id (a retry replays it). */
  readonly replays: (owner: string, requestId: string) => boolean;
  readonly audit: AuditSink;
  /** The sink for a granted call's outcome, taken as it is decided (a traced call's line names its trace); else audit. */
  readonly auditOfCall?: () => AuditSink | undefined;
  /** Runs a PATH search for argv[0] as a stage of the spawn's trace (a path with a slash is not searched). */
  readonly searching?: <T>(fn: () => T) => T;
}

interface GrantParts {
  readonly caller: Caller;
  /** The rule that decided the call. */
  readonly rule: Rule;
  readonly request: Request;
  readonly audit: AuditSink;
  /** The caller's rule in the policy in force now (a Watch outlives reloads). */
  readonly ruleNow: () => Rule | undefined;
  /** Frees what the call took of a quota. */
  readonly release?: () => void;
  /** Spawns: argv[0] resolved, what was checked and what runs. */
  readonly executable?: string;
  /** Spawns: `executable` is a path with a slash the spawn checks (or execve does), not checked here. */
  readonly executableUnchecked?: boolean;
  /** Spawns as another user: argv[0] without a slash is one of these files, searched by the spawn as that user. */
  readonly executableCandidates?: readonly string[];
}

/** What a call was granted: who may see what, and, for a spawn, the executable that was checked. */
export class Grant {
  private finished = false;
  /** A stream's revocation was audited. */
  private revoked = false;
  /** The file a spawn's PATH search as the target user exec'd (not known when granted). */
  private found: string | undefined;

  constructor(private readonly parts: GrantParts) {}

  get caller(): Caller {
    return this.parts.caller;
  }

  get executable(): string | undefined {
    return this.parts.executable;
  }

  /** Spawns: the capture ring bytes the caller's processes may hold together (its rule's max_capture_bytes). */
  get captureQuota(): number | undefined {
    return this.parts.rule.spawn.maxCaptureBytes;
  }

  get executableUnchecked(): boolean | undefined {
    return this.parts.executableUnchecked;
  }

  get executableCandidates(): readonly string[] | undefined {
    return this.parts.executableCandidates;
  }

  /**
   * A granted spawn as it runs: owned by the caller, with what its rule sets. A tenant's process in
   * another process's namespaces runs with no_new_privs: setuid and file capabilities there would
   * work on files the tenant may have put in them (a container's image, say).
   */
  spawnOptions(spawn: SpawnOptions): SpawnOptions {
    const contained = spawn.joinNamespacesOf !== undefined && this.parts.rule.role !== 'admin' && !spawn.setup.noNewPrivs;
    return {
      ...spawn,
      ...(contained ? { setup: { ...spawn.setup, noNewPrivs: true } } : {}),
      owner: this.owner,
      captureQuota: this.captureQuota,
      executable: this.executable,
      executableUnchecked: this.executableUnchecked,
      executableCandidates: this.executableCandidates,
    };
  }

  /** The owner a spawned or adopted process gets. */
  get owner(): string {
    return this.parts.caller.identity;
  }

  /** Whose processes the caller sees under the policy in force now: everyone's (undefined) for an admin, else its own. */
  ownerSeen(): string | undefined {
    return this.parts.ruleNow()?.role === 'admin' ? undefined : this.parts.caller.identity;
  }

  /** Under the policy in force now: admins see everything, anyone else only what it owns. */
  canSee(record: { readonly spec: Pick<ProcessView['spec'], 'owner'> }): boolean {
    const rule = this.parts.ruleNow();
    return rule !== undefined && (rule.role === 'admin' || record.spec.owner === this.parts.caller.identity);
  }

  /** Whether the policy in force now grants the caller `family`. */
  may(family: Family): boolean {
    return this.parts.ruleNow()?.allow.has(family) === true;
  }

  /**
   * For a stream that outlives reloads and certificates: undefined while the policy in force still
   * grants what it was opened with (`family`, and `record` if it reads one) and the caller's
   * certificate is still valid; else the PERMISSION_DENIED (or UNAUTHENTICATED) to end it with,
   * audited once.
   */
  revocation(family: Family, record?: { readonly spec: Pick<ProcessView['spec'], 'owner'> }, now: number = Date.now()): AgentError | undefined {
    const { caller, request } = this.parts;
    const expired = caller.validUntil !== undefined && !(now <= caller.validUntil);
    if (!expired && this.may(family) && (record === undefined || this.canSee(record))) return undefined;
    const rule = this.parts.ruleNow();
    const error = expired
      ? new AgentError('Unauthenticated', `the client certificate expired at ${new Date(caller.validUntil!).toISOString()}`, { reason: 'CERTIFICATE_EXPIRED' })
      : policyDenied(rule === undefined ? { field: 'identity', message: `no rule names ${caller.identity} since the policy was reloaded` } : { field: 'rpc', message: `${request.rpc} needs permission ${family} since the policy was reloaded` });
    if (!this.revoked) {
      this.revoked = true;
      this.parts.audit({ ...describe(caller, request), decision: 'deny', rule: rule?.name ?? null, reason: error.detail.reason, field: error.detail.field, message: error.message });
    }
    return error;
  }

  /** A spawn's argv[0] searched by the exec helper as the target user: the file that runs, for the audit. */
  ran(found: string | undefined): void {
    this.found ??= found;
  }

  /** Once per call, when it is answered: audits a mutating call's outcome, frees its quota. */
  finish(outcome: { handle?: string; pid?: number; error?: unknown } = {}): void {
    if (this.finished) return;
    this.finished = true;
    this.parts.release?.();
    const { caller, request, rule, executable } = this.parts;
    if (!MUTATING.has(request.rpc)) return;
    const e = outcome.error;
    const result = e === undefined ? 'ok' : e instanceof AgentError ? e.detail.reason : 'INTERNAL';
    // One object of one shape, in describe's field order (JSON leaves out the undefined ones):
    // this runs for every mutating call.
    this.parts.audit({
      identity: caller.identity,
      peer: caller.peer,
      rpc: request.rpc,
      handle: outcome.handle ?? handleOf(request),
      argv0: request.rpc === 'Spawn' ? request.spawn.argv[0] : undefined,
      pid: outcome.pid ?? (request.rpc === 'Adopt' ? request.adopt.pid : undefined),
      executable: this.found ?? (this.parts.executableCandidates === undefined ? executable : undefined),
      decision: 'allow',
      rule: rule.name,
      result,
    });
  }
}

const handleOf = (r: Request): string | undefined => ('handle' in r ? r.handle : undefined);

function describe(caller: Pick<Caller, 'identity' | 'peer'>, request: Request): Pick<AuditEntry, 'identity' | 'peer' | 'rpc' | 'handle' | 'argv0' | 'pid'> {
  const what = request.rpc === 'Spawn' ? { argv0: request.spawn.argv[0] } : request.rpc === 'Adopt' ? { pid: request.adopt.pid } : {};
  return { identity: caller.identity, peer: caller.peer, rpc: request.rpc, handle: handleOf(request), ...what };
}

/** The identity an audit line names when the connection proved none. */
const UNAUTHENTICATED = '(unauthenticated)';

const policyDenied = (d: Denial) => new AgentError('PermissionDenied', `${d.field}: ${d.message} (policy)`, { reason: 'POLICY_DENIED', field: d.field });

export class Authorizer {
  private readonly quotas = new Quotas();

  constructor(private readonly deps: AuthorizerDeps) {}

  /** Decides a call; throws the AgentError the caller gets (after auditing it). */
  authorize(call: CallTransport, request: Request): Grant {
    let caller: Caller;
    try {
      caller = callerOf(call, this.deps.transports);
    } catch (e) {
      if (e instanceof AgentError) {
        const peer = call.getPeer();
        this.deps.audit({ ...describe({ identity: UNAUTHENTICATED, peer }, request), decision: 'deny', rule: null, reason: e.detail.reason, message: e.message });
      }
      throw e;
    }
    return this.decide(caller, request);
  }

  decide(caller: Caller, request: Request): Grant {
    const rule = ruleFor(this.deps.policy(), caller);
    const deny = (error: AgentError): never => {
      this.deps.audit({ ...describe(caller, request), decision: 'deny', rule: rule?.name ?? null, reason: error.detail.reason, field: error.detail.field, message: error.message });
      throw error;
    };
    if (rule === undefined) return deny(policyDenied({ field: 'identity', message: `no rule names ${caller.identity}` }));
    const family = FAMILY_OF[request.rpc];
    if (!rule.allow.has(family)) return deny(policyDenied({ field: 'rpc', message: `${request.rpc} needs permission ${family}` }));
    // Taken before the handle is looked at: a caller at its cap is refused alike whichever handle
    // it names, so the refusal never tells another's handle from one that never existed.
    const slot = this.slot(caller.identity, rule, request.rpc);
    if (slot instanceof AgentError) return deny(slot);
    if ('handle' in request) {
      const record = this.deps.lookup(request.handle);
      // Someone else's process answers exactly as a handle that never existed: no oracle.
      if (record !== undefined && rule.role !== 'admin' && record.spec.owner !== caller.identity) {
        slot?.();
        return deny(unknownHandle(request.handle));
      }
    }
    const parts = { caller, rule, request, audit: this.deps.auditOfCall?.() ?? this.deps.audit, ruleNow: this.liveRule(caller, rule), release: slot };
    if (request.rpc === 'Spawn') return this.spawn(parts, request.spawn, deny);
    return new Grant(parts);
  }

  /** What a call holds of its caller's quotas until it is answered (streams, waits), or the refusal. */
  private slot(identity: string, rule: Rule, rpc: Rpc): (() => void) | AgentError | undefined {
    switch (rpc) {
      case 'Watch':
        return this.quotas.takeWatch(identity, rule.maxWatches) ?? quota('max_watches', `at most ${rule.maxWatches} Watch streams at once`);
      case 'ReadOutput':
        return this.quotas.takeReader(identity, rule.maxReaders) ?? quota('max_readers', `at most ${rule.maxReaders} ReadOutput streams at once`);
      case 'Wait':
      case 'Stop':
        return this.quotas.takeWaiter(identity, rule.maxWaits) ?? quota('max_waits', `at most ${rule.maxWaits} Wait and Stop calls waiting at once`);
      default:
        return undefined;
    }
  }

  /** The caller's rule as of the policy in force, looked up again only after a reload. */
  private liveRule(caller: Caller, rule: Rule): () => Rule | undefined {
    let policy = this.deps.policy();
    let current: Rule | undefined = rule;
    return () => {
      const now = this.deps.policy();
      if (now !== policy) {
        policy = now;
        current = ruleFor(now, caller);
      }
      return current;
    };
  }

  private spawn(parts: GrantParts, spawn: SpawnOptions, deny: (e: AgentError) => never): Grant {
    const { rule, caller } = parts;
    const denial = spawnDenial(rule.spawn, this.facts(spawn), this.deps.ruleNames ?? this.deps.names);
    if (denial) return deny(policyDenied(denial));
    const into = spawn.joinNamespacesOf;
    if (into !== undefined) {
      if (!rule.spawn.joinNamespaces) return deny(policyDenied({ field: 'join_namespaces_of', message: "may not start processes in another process's namespaces" }));
      // Someone else's process answers exactly as a handle that never existed, as for any other RPC.
      const record = this.deps.lookup(into);
      if (record === undefined || (rule.role !== 'admin' && record.spec.owner !== caller.identity)) return deny(unknownHandle(into));
    }
    let resolved: Resolved | Denial;
    try {
      resolved = this.executable(rule, spawn);
    } catch (e) {
      new Grant(parts).finish({ error: e });
      throw e;
    }
    if (!('executable' in resolved)) return deny(policyDenied(resolved));
    const { executable, executableUnchecked, executableCandidates } = resolved;
    // A retry of a spawn already made replays it: it starts nothing, so no quota may refuse it.
    if (spawn.requestId !== undefined && this.deps.replays(caller.identity, spawn.requestId)) return new Grant({ ...parts, executable, executableUnchecked, executableCandidates });
    const { maxProcesses, spawnRate } = rule.spawn;
    const release = this.quotas.takeSpawn(caller.identity, maxProcesses === undefined ? undefined : maxProcesses - this.deps.running(caller.identity));
    if (release === undefined) return deny(quota('max_processes', `at most ${maxProcesses} running processes at once${releasedNote(this.deps.released?.(caller.identity) ?? 0)}`));
    if (!this.quotas.takeRate(caller.identity, spawnRate)) {
      release();
      return deny(quota('spawn_rate', `at most ${spawnRate!.count} spawns per ${spawnRate!.perMs / 1000} s`));
    }
    return new Grant({ ...parts, release, executable, executableUnchecked, executableCandidates });
  }

  /**
   * argv[0] resolved as the spawn will run it, looking only where the rule allows: a path outside
   * is refused, and PATH directories outside are skipped, before the file system is asked (the
   * agent's stat must not tell a tenant what exists where it may not look). A spawn as another
   * user is not looked up here at all: the exec helper does it after the drop, as that user, in
   * the allowed files only, so the kernel follows a tenant's links with the target's permissions.
   */
  private executable(rule: Rule, spawn: SpawnOptions): Resolved | Denial {
    const program = spawn.argv[0]!;
    const joined = this.deps.namespaces?.(spawn);
    try {
      const cwd = childCwd(spawn, joined?.target);
      const root = joined?.target?.root;
      const asTarget = changesIdentity(spawn.setup);
      if (program.includes('/')) {
        const path = resolve(cwd, program);
        const denial = executableDenial(rule.spawn, path);
        if (denial) return denial;
        // In the agent's own mount namespace a path needs no stat + access here: the spawn checks
        // it, or the kernel's execve does and only a failed one is diagnosed (the same errors).
        if (joined?.target === undefined || asTarget) return { executable: path, executableUnchecked: true };
        return { executable: resolveExecutable(program, '', cwd, root) };
      }
      const files = pathCandidates(program, searchPath(spawn, this.deps.agentEnv), cwd).filter((file) => executableDenial(rule.spawn, file) === undefined);
      if (files.length === 0) return { field: 'executable', message: `${program}: no directory of PATH holds an executable this identity may run` };
      if (asTarget) return { executable: program, executableUnchecked: true, executableCandidates: files };
      const dirs = files.map((file) => dirname(file));
      const search = () => resolveExecutable(program, dirs.join(delimiter), cwd, root);
      return { executable: this.deps.searching === undefined ? search() : this.deps.searching(search) };
    } finally {
      joined?.release();
    }
  }

  private facts(spawn: SpawnOptions): SpawnFacts {
    const { setup } = spawn;
    const { names, agentUid } = this.deps;
    const id = (text: string, lookup: (n: string) => number | undefined) => (/^\d+$/.test(text) ? Number(text) : lookup(text));
    const gids = [...(setup.group === undefined ? [] : [setup.group]), ...(setup.groups ?? [])];
    return {
      uid: setup.user === undefined ? agentUid : id(setup.user, (n) => names.uid(n)),
      gids: gids.map((g) => id(g, (n) => names.gid(n))),
      env: Object.keys(spawn.env ?? {}),
      envInherit: spawn.inheritEnv === true,
      cwd: spawn.cwd,
      stdout: spawn.stdout,
      stderr: spawn.stderr,
      cgroup: spawn.cgroup,
      rlimits: setup.rlimits,
      newSession: spawn.newSession,
    };
  }
}

/** argv[0] as the spawn will run it. */
interface Resolved {
  readonly executable: string;
  readonly executableUnchecked?: true;
  readonly executableCandidates?: readonly string[];
}

/** Released processes fill max_processes as any other until they exit, out of the tenant's reach: say so. */
const releasedNote = (released: number): string => (released === 0 ? '' : `; ${released} of them ${released === 1 ? 'is' : 'are'} released and still running`);

const quota = (field: string, message: string) => new AgentError('ResourceExhausted', `${field}: ${message} (policy)`, { reason: 'POLICY_QUOTA', field });
