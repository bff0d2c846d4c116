// Spawn's identity, limits, cgroup, environment and deadline fields → domain options.
import { parseSignal } from '../process/lifecycle/signalling.js';
import type { CgroupRequest } from '../process/spawn/cgroups.js';
import { invalidArgument } from '../process/errors.js';
import type { Deadline } from '../process/options.js';
import { checkId, RLIMITS, type RlimitRequest, type SetupOptions } from '../process/spawn/setup.js';
import { EnvMode, type Cgroup, type Rlimit, type SpawnRequest } from '../api.js';
import type { Duration } from '../api.js';

const MAX_GROUPS = 1024;
const DEFAULT_GRACE_MS = 10_000;

const name = (field: string, value: string): string => {
  if (!/^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$/.test(value)) throw invalidArgument(field, `${JSON.stringify(value)} is not a user or group name or id`);
  // (uid_t)-1 means "unchanged" to setresuid: malformed for everyone, before any policy is asked.
  if (/^\d+$/.test(value)) checkId(field, Number(value));
  return value;
};

function rlimit(r: Rlimit, i: number): RlimitRequest {
  const field = `rlimits[${i}]`;
  const resource = r.resource.toUpperCase().replace(/^RLIMIT_/, '');
  if (RLIMITS[resource] === undefined) throw invalidArgument(`${field}.resource`, `unknown resource ${JSON.stringify(r.resource)}`);
  if (r.unlimited) return { resource, soft: 'inf', hard: 'inf' };
  const hard = r.hard ?? r.soft;
  if (r.soft < 0 || hard < 0) throw invalidArgument(field, 'limits must not be negative');
  if (r.soft > hard) throw invalidArgument(field, `soft limit ${r.soft} exceeds hard limit ${hard}`);
  return { resource, soft: BigInt(r.soft), hard: BigInt(hard) };
}

export function setupOptions(req: SpawnRequest): SetupOptions {
  if (req.groups.length > MAX_GROUPS) throw invalidArgument('groups', `more than ${MAX_GROUPS}`);
  if (req.umask !== undefined && (req.umask < 0 || req.umask > 0o777)) throw invalidArgument('umask', 'must be within 0..0777');
  const pdeath = req.parentDeathSignal === '' ? undefined : parseSignal(req.parentDeathSignal);
  if (req.parentDeathSignal !== '' && pdeath === undefined) throw invalidArgument('parent_death_signal', `${JSON.stringify(req.parentDeathSignal)} is not a signal`);
  return {
    user: req.user === '' ? undefined : name('user', req.user),
    group: req.group === '' ? undefined : name('group', req.group),
    groups: req.groups.length === 0 ? undefined : req.groups.map((g, i) => name(`groups[${i}]`, g)),
    umask: req.umask,
    noNewPrivs: req.noNewPrivs,
    parentDeathSignal: pdeath,
    rlimits: req.rlimits.map(rlimit),
  };
}

export function cgroupRequest(c: Cgroup | undefined): CgroupRequest | undefined {
  if (c === undefined) return undefined;
  const limitsGiven = c.memoryMax !== '' || c.cpuMax !== '' || c.pidsMax !== '';
  if (c.create === (c.path !== '')) throw invalidArgument('cgroup', 'set exactly one of path or create');
  if (!c.create && limitsGiven) throw invalidArgument('cgroup', 'limits apply only to a created cgroup (create: true)');
  if (!c.create) return { kind: 'existing', path: c.path };
  const check = (field: string, value: string, re: RegExp) => {
    if (value === '') return undefined;
    if (!re.test(value)) throw invalidArgument(`cgroup.${field}`, `${JSON.stringify(value)} is not a valid value`);
    return value;
  };
  return {
    kind: 'create',
    memoryMax: check('memory_max', c.memoryMax, /^(max|\d+)$/),
    cpuMax: check('cpu_max', c.cpuMax, /^(max|\d+)( \d+)?$/),
    pidsMax: check('pids_max', c.pidsMax, /^(max|\d+)$/),
  };
}

const ms = (d: Duration) => d.seconds * 1000 + Math.floor(d.nanos / 1e6);

export function deadline(req: SpawnRequest): Deadline | undefined {
  if (req.timeout === undefined) {
    if (req.killSignal !== '' || req.grace !== undefined) throw invalidArgument('timeout', 'kill_signal and grace need a timeout');
    return undefined;
  }
  const timeoutMs = ms(req.timeout);
  if (!(timeoutMs > 0)) throw invalidArgument('timeout', 'must be positive');
  const killSignal = req.killSignal === '' ? 15 : parseSignal(req.killSignal);
  if (killSignal === undefined) throw invalidArgument('kill_signal', `${JSON.stringify(req.killSignal)} is not a signal`);
  const graceMs = req.grace === undefined ? DEFAULT_GRACE_MS : ms(req.grace);
  if (!(graceMs >= 0)) throw invalidArgument('grace', 'must not be negative');
  return { timeoutMs: Math.min(timeoutMs, 2 ** 31 - 1), killSignal, graceMs: Math.min(graceMs, 2 ** 31 - 1) };
}

export function inheritsEnv(mode: EnvMode): boolean {
  if (mode === EnvMode.ENV_MODE_INHERIT) return true;
  if (mode === EnvMode.ENV_MODE_UNSPECIFIED || mode === EnvMode.ENV_MODE_EXPLICIT) return false;
  throw invalidArgument('env_mode', `unknown mode ${mode}`);
}
