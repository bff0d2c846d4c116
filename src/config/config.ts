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
  readonly logLevel: 'info' | 'quiet';
}

export const DEFAULT_SOCKET = '/run/pidfd-agent/agent.sock';

export const DEFAULTS: Config = Object.freeze({
  listen: [`unix://${DEFAULT_SOCKET}`],
  retentionTtlMs: 3_600_000,
  retentionMax: 10_000,
  eventRing: 65_536,
  watchBacklog: 16_384,
  maxWatchers: 1024,
  maxProcesses: 65_536,
  logLevel: 'info',
});

export const USAGE = `usage: pidfd-agent [options]
  --listen unix:///PATH     serve on a unix socket (repeatable; default unix://${DEFAULT_SOCKET})
  --tcp [HOST:]PORT         also serve plaintext gRPC on TCP; HOST must be loopback (default 127.0.0.1)
  --retention-ttl DURATION  keep exited processes readable this long (default 1h)
  --retention-max N         keep at most N exited processes (default 10000)
  --event-ring N            events kept for Watch replay (default 65536)
  --watch-backlog N         drop a watcher this many events behind (default 16384)
  --max-watchers N          concurrent Watch streams (default 1024)
  --max-processes N         running processes under management (default 65536)
  --quiet                   no log lines on stderr`;

export class ConfigError extends Error {}

/** Parses a duration like 500ms, 30s, 5m, 1h (a bare number is seconds). */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new ConfigError(`not a duration: ${JSON.stringify(text)} (use e.g. 500ms, 30s, 5m, 1h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's'] ?? 1000;
  return Math.round(Number(m[1]) * unit);
}

function count(name: string, text: string | undefined, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`--${name}: expected an integer >= ${min}, got ${JSON.stringify(text)}`);
  return n;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;

function tcpAddress(text: string): string {
  const m = /^(?:(.+):)?(\d+)$/.exec(text);
  if (!m) throw new ConfigError(`--tcp: expected [HOST:]PORT, got ${JSON.stringify(text)}`);
  const host = m[1] ?? '127.0.0.1';
  if (!LOOPBACK.test(host)) throw new ConfigError(`--tcp: ${host} is not loopback; remote clients need mTLS, which this build does not serve`);
  return `${host}:${m[2]}`;
}

function unixAddress(text: string): string {
  if (!text.startsWith('unix:///')) throw new ConfigError(`--listen: expected unix:///ABSOLUTE/PATH, got ${JSON.stringify(text)} (TCP needs --tcp)`);
  return text;
}

export function parseConfig(argv: readonly string[]): Config {
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
      quiet: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  });
  const unix = (values.listen ?? []).map(unixAddress);
  const tcp = (values.tcp ?? []).map(tcpAddress);
  const eventRing = count('event-ring', values['event-ring'], DEFAULTS.eventRing, 16);
  const config: Config = {
    listen: unix.length + tcp.length > 0 ? [...unix, ...tcp] : DEFAULTS.listen,
    retentionTtlMs: values['retention-ttl'] ? parseDuration(values['retention-ttl']) : DEFAULTS.retentionTtlMs,
    retentionMax: count('retention-max', values['retention-max'], DEFAULTS.retentionMax, 0),
    eventRing,
    watchBacklog: Math.min(count('watch-backlog', values['watch-backlog'], DEFAULTS.watchBacklog), eventRing - 1),
    maxWatchers: count('max-watchers', values['max-watchers'], DEFAULTS.maxWatchers),
    maxProcesses: count('max-processes', values['max-processes'], DEFAULTS.maxProcesses),
    logLevel: values.quiet ? 'quiet' : 'info',
  };
  return Object.freeze(config);
}
