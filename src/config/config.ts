import { isIP } from 'node:net';
import { parseArgs } from 'node:util';

export interface Config {
  /** grpc-js addresses: unix:///abs/path or host:port. */
  readonly listen: readonly string[];
  readonly retentionTtlMs: number;
  readonly retentionMax: number;
  readonly eventRing: number;
  readonly watchBacklog: number;
  readonly maxWatchers: number;
  readonly maxProcesses: number;
  /** Ring size per captured stream unless the request sets ring_bytes. */
  readonly captureBytes: number;
  /** Captured output kept for exited processes, all together; the oldest exits' rings go first. */
  readonly captureRetainedBytes: number;
  /** The capture rings of running and retained processes together; a spawn past it is refused. */
  readonly captureTotalBytes: number;
  readonly logLevel: 'info' | 'quiet';
  /** Where per-process cgroups are created (default: <cgroup2 mount>/pidfd-agent). */
  readonly cgroupParent?: string;
  /**
   * A cgroup under the parent (created if missing) for every spawned process that does not ask
   * for one: out of the agent's own cgroup, so stopping the agent's container does not kill it.
   */
  readonly defaultCgroup?: string;
  /**
   * A process (the node's PID 1 in the DaemonSet) whose mount, UTS, IPC, network and cgroup
   * namespaces every spawned process joins; its pidfd is opened once, at start.
   */
  readonly spawnInNamespacesOf?: number;
  /** The exec helper binary (default: dist/bin/pidfd-exec next to the agent). */
  readonly execHelper?: string;
  /** The agent's environment, for ENV_MODE_INHERIT (main.ts passes process.env). */
  readonly agentEnv: Readonly<Record<string, string>>;
  /** Where the handle table is persisted; undefined (--ephemeral): kept in memory only. */
  readonly stateDir: string | undefined;
  /** A damaged store is moved aside (STATE_DIR/agent.db.broken-TIME) and the agent starts empty. */
  readonly recover: boolean;
  /**
   * Set: the store is written on a thread of its own, and the event loop waits this long for one
   * write: past it the write fails as on a full disk, and later ones fail at once until the
   * stalled one is done. Unset: written on the event loop (cheaper; a stalled file system stalls the agent).
   */
  readonly storeTimeoutMs: number | undefined;
  /**
   * What a start does when another agent serves the state dir (answers on its handover.sock):
   * undefined: leave it alone and fail; 'if-serving': take over if one serves, else start
   * afresh; 'required': take over, and fail when none serves.
   */
  readonly takeover: 'if-serving' | 'required' | undefined;
  /**
   * After handing over: exit, or linger (serve nothing, go on reaping the children it started so
   * their exits reach the successor at once, exit on SIGTERM) for supervisors that restart an
   * exited agent, like a DaemonSet pod's kubelet; a lingering agent exits 1 once its successor is
   * gone and no agent serves the state dir, to be restarted and take the processes back.
   */
  readonly afterHandover: 'exit' | 'linger';
  /**
   * A file that exists exactly while this agent serves (its pid inside): for a readiness probe
   * that must tell this agent from another serving the same shared socket.
   */
  readonly readyFile?: string;
  /**
   * A unix socket that serves gRPC health and nothing else, with connection caps of its own: for a
   * liveness probe that the callers of --listen cannot crowd out (unix:///ABSOLUTE/PATH).
   */
  readonly healthListen?: string;
  /** Open connections per listening address (the unix socket too); more are closed as they are accepted. */
  readonly maxConnections: number;
  /** Of those, per caller (a certificate's identity, a unix uid); more are closed once proved to be its. */
  readonly maxConnectionsPerIdentity: number;
  /**
   * How long a --tcp connection has to complete a verified TLS handshake, and then as long again
   * to start HTTP/2 (plaintext and unix: only the latter); it is closed when it has not.
   */
  readonly handshakeTimeoutMs: number;
  /** TLS for every --tcp address, with client certificates required and verified against clientCa. */
  readonly tls?: TlsFiles;
  /** The authorization policy (YAML); without one, only uid 0 on the unix socket may do anything. */
  readonly policyFile?: string;
  /** Where audit lines go (default: stderr). */
  readonly auditLog?: string;
  /** The unix socket's group (mode 0660, its directory 0750); default: the agent's group. */
  readonly socketGroup?: string;
  /** Prometheus /metrics on this address (loopback unless an address is given). */
  readonly metricsListen?: { readonly host: string; readonly port: number };
  /** argv of spawned processes on spans (it may hold secrets). */
  readonly traceArgv: boolean;
  /** Owners as metric labels, for at most this many owners (0: never). */
  readonly metricsOwners: number;
  readonly logFormat: 'json' | 'text';
}

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly clientCa: string;
}

export const DEFAULT_STATE_DIR = '/var/lib/pidfd-agent';

export const DEFAULT_SOCKET = '/run/pidfd-agent/agent.sock';

export const DEFAULTS: Config = Object.freeze({
  listen: [`unix://${DEFAULT_SOCKET}`],
  retentionTtlMs: 3_600_000,
  retentionMax: 10_000,
  eventRing: 65_536,
  watchBacklog: 16_384,
  maxWatchers: 1024,
  maxProcesses: 65_536,
  captureBytes: 1024 * 1024,
  captureRetainedBytes: 256 * 1024 * 1024,
  captureTotalBytes: 4 * 1024 ** 3,
  logLevel: 'info',
  cgroupParent: undefined,
  defaultCgroup: undefined,
  spawnInNamespacesOf: undefined,
  execHelper: undefined,
  agentEnv: {},
  recover: false,
  storeTimeoutMs: undefined,
  stateDir: DEFAULT_STATE_DIR,
  takeover: undefined,
  afterHandover: 'exit',
  readyFile: undefined,
  healthListen: undefined,
  maxConnections: 512,
  maxConnectionsPerIdentity: 64,
  handshakeTimeoutMs: 10_000,
  tls: undefined,
  policyFile: undefined,
  auditLog: undefined,
  socketGroup: undefined,
  metricsListen: undefined,
  traceArgv: false,
  metricsOwners: 0,
  logFormat: 'json',
});

export const USAGE = `usage: pidfd-agent [options]
  --listen unix:///PATH     serve on a unix socket (repeatable; default unix://${DEFAULT_SOCKET})
  --tcp [IP:]PORT           also serve gRPC on TCP (default IP 127.0.0.1; an IP address, never a name):
                            plaintext on loopback only, any address with TLS
  --tls-cert FILE           TLS on every --tcp address: the agent's certificate (PEM; re-read when it changes)
  --tls-key FILE            ... its private key
  --tls-client-ca FILE      ... the CA bundle client certificates must chain to (required and verified)
  --max-connections N       open connections per listening address (unix socket or --tcp); more are
                            closed at accept (default 512)
  --max-connections-per-identity N  of those, per caller (a client certificate's identity, a unix uid);
                            more are closed once the handshake proves whose they are (default 64)
  --handshake-timeout DURATION  a --tcp connection not through a verified TLS handshake by then is
                            closed, and one (unix too) that has not started HTTP/2 as long after it (default 10s)
  --policy FILE             authorization policy (YAML; reloaded on SIGHUP and on change). Without it only
                            uid 0 on the unix socket may do anything; TLS needs one
  --audit-log FILE          one JSON line per mutating call and per denial (default: stderr)
  --socket-group GROUP      group (name or gid) of the unix socket (0660) and its directory (0750, the
                            agent's own: not a shared one like /tmp); default: the agent's group
  --retention-ttl DURATION  keep exited processes readable this long, and released ones' request ids
                            taken as long after their release (default 1h)
  --retention-max N         keep at most N exited processes, and N released ones' request ids (default 10000)
  --event-ring N            events kept for Watch replay (default 65536)
  --watch-backlog N         drop a watcher this many events behind (default 16384)
  --max-watchers N          concurrent Watch streams (default 1024)
  --max-processes N         running processes under management (default 65536)
  --capture-bytes N[k|m]    ring per captured stdout/stderr unless the request says (default 1m, at most 64m)
  --capture-retained N[k|m|g]  captured output kept for exited processes in all (default 256m)
  --capture-total N[k|m|g]  capture rings of running and retained processes together (default 4g): a
                            spawn past it drops the oldest retained rings, else is refused with
                            RESOURCE_EXHAUSTED (CAPTURE_TOTAL_EXCEEDED); rings are never shrunk
  --cgroup-parent DIR       cgroup v2 directory for per-process cgroups (default <cgroup2 mount>/pidfd-agent)
  --default-cgroup PATH     place processes that ask for no cgroup in PARENT/PATH (created if missing),
                            outside the agent's own cgroup (default: they stay in the agent's); on cgroup
                            v1 and hybrid nodes also the same path in every mounted v1 hierarchy
  --spawn-in-namespaces-of PID  every spawned process joins the mount, UTS, IPC, network and cgroup
                            namespaces of PID (by a pidfd opened and probed at start; 1 in a hostPID pod:
                            the node's), so argv[0], cwd and output files are the node's paths
  --exec-helper PATH        the exec helper (default dist/bin/pidfd-exec)
  --state-dir DIR           persisted handle table, re-adopted after a restart (default ${DEFAULT_STATE_DIR})
  --recover                 if the store (STATE_DIR/agent.db) is damaged, move it aside as
                            agent.db.broken-TIME and start with an empty table; a store that opens is kept
  --store-timeout DURATION  write the store on a thread of its own, each write bounded by DURATION
                            (at least 100ms; 5s is a sane bound): past it, and until the stalled write
                            is done, whatever needs one fails with STORE_WRITE_FAILED (a frozen or
                            hung state dir file system) while reads, signals and deadlines go on.
                            Without it the store is written on the event loop: cheaper, but a
                            stalled file system stalls the whole agent
  --ephemeral               keep the handle table in memory only: a restarted agent forgets its processes
  --takeover if-serving|required  take over the processes of an agent serving the state dir (it
                            answers on STATE_DIR/handover.sock): if-serving starts afresh when none
                            does, required fails then. Without it, a start fails while one serves
  --after-handover exit|linger  once handed over: exit (default), or linger until SIGTERM, reaping
                            the children it started (for supervisors that restart an exited agent);
                            should its successor go and no agent serve the state dir, it serves
                            it again itself, in the same process
  --ready-file PATH         exists (with the agent's pid) exactly while this agent serves
  --health-listen unix:///PATH  gRPC health only, for a liveness probe: its own few connections, none
                            of --listen's caps; SERVING ("") while the agent runs, lingering too
  --quiet                   no log lines on stderr
  --log-format json|text    log lines as JSON objects (default) or as text; with a span active both
                            carry trace_id and span_id
  --metrics-listen [IP:]PORT  serve Prometheus metrics at http://IP:PORT/metrics (default IP 127.0.0.1;
                            an IP address, never a name; another address only when given explicitly)
  --metrics-owners N        label pidfd_agent_processes and pidfd_agent_exits_total by owner, for at
                            most N owners (the rest: owner="other"); default 0, no owner labels
  --trace-argv              record the argv of spawned processes on spans (it may hold secrets)
  Traces and metrics export is configured by the standard OTEL_* variables (OTEL_TRACES_EXPORTER,
  OTEL_METRICS_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_SERVICE_NAME,
  OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED); with none of them and no --metrics-listen, none runs`;

export class ConfigError extends Error {}

const TAKEOVER = ['if-serving', 'required'] as const;

/**
 * --takeover once was a switch; alone it now says neither what the old scripts meant (required)
 * nor what a DaemonSet wants (if-serving), so it must say which, rather than take the next flag
 * as its value or parseArgs' generic complaint.
 */
function bareTakeover(argv: readonly string[]): void {
  const i = argv.indexOf('--takeover');
  if (i >= 0 && (i + 1 === argv.length || argv[i + 1]!.startsWith('-'))) {
    throw new ConfigError(`--takeover: needs a value: --takeover ${TAKEOVER[0]} (take over an agent serving the state dir, else start afresh) or --takeover ${TAKEOVER[1]} (fail unless one hands over)`);
  }
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new ConfigError(`--${flag}: expected ${allowed.join(' or ')}, got ${JSON.stringify(value)}`);
  return value as T;
}

/** Parses a duration like 500ms, 30s, 5m, 1h (a bare number is seconds). */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new ConfigError(`not a duration: ${JSON.stringify(text)} (use e.g. 500ms, 30s, 5m, 1h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's'] ?? 1000;
  return Math.round(Number(m[1]) * unit);
}

function flagDuration(flag: string, text: string): number {
  try {
    return parseDuration(text);
  } catch (e) {
    throw new ConfigError(`--${flag}: ${(e as Error).message}`);
  }
}

function positive(flag: string, ms: number): number {
  if (ms < 1) throw new ConfigError(`--${flag}: expected a duration above 0`);
  return ms;
}

/**
 * A bound below what a healthy commit takes (a WAL checkpoint's fsync can take tens of ms) would
 * fail writes that were never stalled, and undo them when they land.
 */
function storeTimeout(text: string): number {
  const ms = flagDuration('store-timeout', text);
  if (ms < 100) throw new ConfigError(`--store-timeout: at least 100ms, got ${JSON.stringify(text)}`);
  return ms;
}

function count(name: string, text: string | undefined, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new ConfigError(`--${name}: expected an integer >= ${min}, got ${JSON.stringify(text)}`);
  return n;
}

/** The largest capture ring (as the API's ring_bytes). */
const MAX_CAPTURE_BYTES = 64 * 1024 * 1024;

/** Bytes, optionally in KiB (k) or MiB (m), between 1 and 64 MiB. */
function byteSize(name: string, text: string | undefined, fallback: number, max = MAX_CAPTURE_BYTES): number {
  if (text === undefined) return fallback;
  const m = /^(\d+)([kmg]?)$/i.exec(text.trim());
  const n = m ? Number(m[1]) * ({ k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase()] ?? 1) : NaN;
  if (!(n >= 1 && n <= max)) throw new ConfigError(`--${name}: expected bytes (e.g. 65536, 64k, 1m) up to ${max / 1024 ** 2}m, got ${JSON.stringify(text)}`);
  return n;
}

/** Loopback by the parsed address alone: 127.0.0.0/8, ::1, and IPv4-mapped 127/8. */
export function isLoopback(ip: string): boolean {
  if (isIP(ip) === 4) return ip.startsWith('127.');
  if (isIP(ip) !== 6) return false;
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (v4) return isLoopback(v4[1]!);
  return /^(0{0,4}:){2,7}0{0,3}1$/.test(ip) || ip === '::1';
}

function tcpAddress(text: string, tls: boolean): string {
  const m = /^(?:(.+):)?(\d+)$/.exec(text);
  if (!m) throw new ConfigError(`--tcp: expected [IP:]PORT, got ${JSON.stringify(text)}`);
  const host = m[1] ?? '127.0.0.1';
  const ip = host.replace(/^\[(.*)\]$/, '$1');
  // Never a name: what /etc/hosts or DNS say it means can change, and is not what was checked.
  if (isIP(ip) === 0 || (isIP(ip) === 6 && ip === host)) throw new ConfigError(`--tcp: ${host} is not an IP address (IPv6 in brackets: [::1]:PORT); names are not resolved`);
  if (!tls && !isLoopback(ip)) throw new ConfigError(`--tcp: ${host} is not loopback; plaintext TCP is loopback-only, remote clients need --tls-cert, --tls-key and --tls-client-ca`);
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigError(`--tcp: port ${port} is out of range`);
  return `${host}:${port}`;
}

/** --metrics-listen: like --tcp, an IP address (never a name), loopback unless one is given. */
function metricsAddress(text: string | undefined): Config['metricsListen'] {
  if (text === undefined) return undefined;
  const m = /^(?:(.+):)?(\d+)$/.exec(text);
  if (!m) throw new ConfigError(`--metrics-listen: expected [IP:]PORT, got ${JSON.stringify(text)}`);
  const given = m[1] ?? '127.0.0.1';
  const host = given.replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) === 0 || (isIP(host) === 6 && host === given)) throw new ConfigError(`--metrics-listen: ${given} is not an IP address (IPv6 in brackets: [::1]:PORT); names are not resolved`);
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigError(`--metrics-listen: port ${port} is out of range`);
  return { host, port };
}

function tlsFiles(cert: string | undefined, key: string | undefined, clientCa: string | undefined): TlsFiles | undefined {
  const given = [cert, key, clientCa].filter((f) => f !== undefined).length;
  if (given === 0) return undefined;
  if (given < 3) throw new ConfigError('--tls-cert: --tls-cert, --tls-key and --tls-client-ca go together (clients must present a certificate)');
  return { cert: absolute('tls-cert', cert)!, key: absolute('tls-key', key)!, clientCa: absolute('tls-client-ca', clientCa)! };
}

function unixAddress(text: string): string {
  if (!text.startsWith('unix:///')) throw new ConfigError(`--listen: expected unix:///ABSOLUTE/PATH, got ${JSON.stringify(text)} (TCP needs --tcp)`);
  return text;
}

/**
 * A unix socket only: on TCP, a DaemonSet's surge pod (on the node's network) could not bind the
 * old pod's port, and a probe address on the node's network would be anyone's to fill.
 */
function healthAddress(text: string | undefined, listen: readonly string[]): string | undefined {
  if (text === undefined) return undefined;
  if (!text.startsWith('unix:///')) throw new ConfigError(`--health-listen: expected unix:///ABSOLUTE/PATH, got ${JSON.stringify(text)} (a probe socket is unix only)`);
  if (listen.includes(text)) throw new ConfigError(`--health-listen: ${text} is also a --listen address; the probe needs a socket of its own`);
  return text;
}

function relative(flag: string, path: string | undefined): string | undefined {
  if (path !== undefined && (path === '' || path.startsWith('/') || path.split('/').includes('..'))) {
    throw new ConfigError(`--${flag}: expected a path relative to --cgroup-parent that stays inside it, got ${JSON.stringify(path)}`);
  }
  return path;
}

function absolute(flag: string, path: string | undefined): string | undefined {
  if (path !== undefined && !path.startsWith('/')) throw new ConfigError(`--${flag}: expected an absolute path, got ${JSON.stringify(path)}`);
  return path;
}

export function parseConfig(argv: readonly string[]): Config {
  bareTakeover(argv);
  const { values } = parseArgs({
    args: [...argv],
    options: {
      listen: { type: 'string', multiple: true },
      tcp: { type: 'string', multiple: true },
      'retention-ttl': { type: 'string' },
      'retention-max': { type: 'string' },
      'event-ring': { type: 'string' },
      'watch-backlog': { type: 'string' },
      'max-watchers': { type: 'string' },
      'max-processes': { type: 'string' },
      'capture-bytes': { type: 'string' },
      'capture-retained': { type: 'string' },
      'capture-total': { type: 'string' },
      quiet: { type: 'boolean' },
      'cgroup-parent': { type: 'string' },
      'default-cgroup': { type: 'string' },
      'exec-helper': { type: 'string' },
      'spawn-in-namespaces-of': { type: 'string' },
      'state-dir': { type: 'string' },
      ephemeral: { type: 'boolean' },
      takeover: { type: 'string' },
      'after-handover': { type: 'string' },
      'ready-file': { type: 'string' },
      'health-listen': { type: 'string' },
      'max-connections': { type: 'string' },
      'max-connections-per-identity': { type: 'string' },
      'handshake-timeout': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-client-ca': { type: 'string' },
      policy: { type: 'string' },
      'audit-log': { type: 'string' },
      'socket-group': { type: 'string' },
      recover: { type: 'boolean' },
      'store-timeout': { type: 'string' },
      'metrics-listen': { type: 'string' },
      'metrics-owners': { type: 'string' },
      'trace-argv': { type: 'boolean' },
      'log-format': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const unix = (values.listen ?? []).map(unixAddress);
  const tls = tlsFiles(values['tls-cert'], values['tls-key'], values['tls-client-ca']);
  const tcp = (values.tcp ?? []).map((a) => tcpAddress(a, tls !== undefined));
  if (tls !== undefined && tcp.length === 0) throw new ConfigError('--tls-cert: TLS is served on --tcp addresses; give at least one');
  if (tls !== undefined && values.policy === undefined) throw new ConfigError('--policy: required with TLS (without one, remote callers may do nothing)');
  if (values['socket-group'] === '') throw new ConfigError('--socket-group: expected a group name or gid');
  const eventRing = count('event-ring', values['event-ring'], DEFAULTS.eventRing, 16);
  if (values.ephemeral && values['state-dir'] !== undefined) throw new ConfigError('--state-dir: not with --ephemeral, which keeps no state');
  if (values.ephemeral && values.takeover !== undefined) throw new ConfigError('--takeover: not with --ephemeral (a handover goes through the state dir)');
  // STATE_DIR/handover.sock must fit a unix socket address (107 bytes).
  const stateDirBytes = Buffer.byteLength(values['state-dir'] ?? '');
  if (stateDirBytes > 107 - '/handover.sock'.length) throw new ConfigError(`--state-dir: at most ${107 - '/handover.sock'.length} bytes (its handover socket must fit a unix socket address)`);
  if (values.ephemeral && values.recover) throw new ConfigError('--recover: not with --ephemeral, which keeps no store');
  if (values.ephemeral && values['store-timeout'] !== undefined) throw new ConfigError('--store-timeout: not with --ephemeral, which keeps no store');
  const listen = unix.length + tcp.length > 0 ? [...unix, ...tcp] : DEFAULTS.listen;
  const config: Config = {
    listen,
    retentionTtlMs: values['retention-ttl'] === undefined ? DEFAULTS.retentionTtlMs : flagDuration('retention-ttl', values['retention-ttl']),
    retentionMax: count('retention-max', values['retention-max'], DEFAULTS.retentionMax, 0),
    eventRing,
    watchBacklog: Math.min(count('watch-backlog', values['watch-backlog'], DEFAULTS.watchBacklog), eventRing - 1),
    maxWatchers: count('max-watchers', values['max-watchers'], DEFAULTS.maxWatchers),
    maxProcesses: count('max-processes', values['max-processes'], DEFAULTS.maxProcesses),
    captureBytes: byteSize('capture-bytes', values['capture-bytes'], DEFAULTS.captureBytes),
    captureRetainedBytes: byteSize('capture-retained', values['capture-retained'], DEFAULTS.captureRetainedBytes, 64 * 1024 ** 3),
    captureTotalBytes: byteSize('capture-total', values['capture-total'], DEFAULTS.captureTotalBytes, 1024 ** 4),
    logLevel: values.quiet ? 'quiet' : 'info',
    cgroupParent: absolute('cgroup-parent', values['cgroup-parent']),
    defaultCgroup: relative('default-cgroup', values['default-cgroup']),
    execHelper: absolute('exec-helper', values['exec-helper']),
    spawnInNamespacesOf: values['spawn-in-namespaces-of'] === undefined ? undefined : count('spawn-in-namespaces-of', values['spawn-in-namespaces-of'], 0, 1),
    agentEnv: {},
    stateDir: values.ephemeral ? undefined : (absolute('state-dir', values['state-dir']) ?? DEFAULT_STATE_DIR),
    takeover: values.takeover === undefined ? undefined : oneOf('takeover', values.takeover, TAKEOVER, 'required'),
    afterHandover: oneOf('after-handover', values['after-handover'], ['exit', 'linger'] as const, DEFAULTS.afterHandover),
    readyFile: absolute('ready-file', values['ready-file']),
    healthListen: healthAddress(values['health-listen'], listen),
    maxConnections: count('max-connections', values['max-connections'], DEFAULTS.maxConnections),
    maxConnectionsPerIdentity: count('max-connections-per-identity', values['max-connections-per-identity'], DEFAULTS.maxConnectionsPerIdentity),
    handshakeTimeoutMs: values['handshake-timeout'] === undefined ? DEFAULTS.handshakeTimeoutMs : positive('handshake-timeout', flagDuration('handshake-timeout', values['handshake-timeout'])),
    tls,
    policyFile: absolute('policy', values.policy),
    auditLog: absolute('audit-log', values['audit-log']),
    socketGroup: values['socket-group'],
    recover: values.recover === true,
    storeTimeoutMs: values['store-timeout'] === undefined ? undefined : storeTimeout(values['store-timeout']),
    metricsListen: metricsAddress(values['metrics-listen']),
    traceArgv: values['trace-argv'] === true,
    metricsOwners: count('metrics-owners', values['metrics-owners'], DEFAULTS.metricsOwners, 0),
    logFormat: oneOf('log-format', values['log-format'], ['json', 'text'] as const, DEFAULTS.logFormat),
  };
  return Object.freeze(config);
}
