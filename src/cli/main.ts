#!/usr/bin/env node
// pidfdctl: a command-line client of pidfd-agent.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { credentials, type ChannelCredentials, type ClientOptions } from '@grpc/grpc-js';
import { AgentCallError, AgentClient, EnvMode, Event, GetResponse, ListResponse, Output, OutputMode, Process, SignalTarget, State, StdinMode, StopResponse, isRetryable, status } from './client.js';
import { DEFAULT_SOCKET, parseDuration } from '../config/config.js';
import { describeExit, eventLine, exitStatusOf, jsonText, millis, printable, processDetail, processLine } from './format.js';
import { attach, logs, logsArgs, stdinMode } from './logs-and-attach.js';
import { checkHealth } from './health.js';
import { top } from './top.js';
import { attachTerminal, localSize } from './terminal.js';

const USAGE = `usage: pidfdctl [--addr unix:///PATH|HOST:PORT] [--tls-cert FILE --tls-key FILE [--tls-ca FILE] [--tls-server-name NAME]] [--json] COMMAND
  spawn [--label k=v]... [--env K=V]... [--inherit-env] [--cwd DIR] [--request-id ID]
        [--stdout discard|inherit|capture|file:PATH|append:PATH] [--stderr ...] [--no-new-session]
        [--user U] [--group G] [--groups G,G] [--umask 027] [--no-new-privs] [--pdeathsig SIG]
        [--rlimit NOFILE=1024[:4096]]... [--cgroup PATH|new [--memory-max B] [--cpu-max "Q P"] [--pids-max N]]
        [--timeout DURATION [--kill-signal SIG] [--grace DURATION]] [--join-namespaces-of HANDLE] -- CMD [ARG...]
                                  start CMD; prints the handle
  spawn ... [--release-on-exit] -- CMD [ARG...]
                                  the handle is released once a wait (or stop) has returned the exit
  spawn ... [--stdin null|pipe] [--output-events] [--attach] -- CMD [ARG...]
                                  --attach: capture stdout and stderr, stream them here (and this stdin
                                  there with --stdin pipe), exit with the process's status like wait
  spawn --tty [--attach] [...] -- CMD [ARG...]
                                  a terminal (pty) for CMD, its controlling terminal, of this window's size;
                                  --attach: interactive (raw mode, resizes forwarded), exits with its status
  logs HANDLE [-f] [--stderr]        captured stdout (or stderr), raw; -f follows until the process has exited
  signal HANDLE [SIGNAL] [--process-group | --tid TID | --tree]   send SIGNAL (default TERM) to the process, its group,
                                  one thread, or the whole tree in its own cgroup (spawn --cgroup new)
  signal HANDLE --reclaim            SIGKILL, then free its memory at once (process_mrelease); prints how long that took
  stop HANDLE [--signal SIG] [--grace DURATION] [--process-group | --tree | --reclaim]
                                  SIG (TERM), then KILL after the grace (10s); --tree: every process in its own
                                  cgroup, KILL through cgroup.kill, returns once the tree is gone; --reclaim:
                                  free the memory right after the KILL
  threads HANDLE                     the thread IDs of a process
  wait HANDLE [--timeout DURATION]   wait for the exit; exits with the code, or 128+signal (255: status lost)
  watch [HANDLE...] [--label k=v]... [--after SEQ] [--usage DURATION]   a line per event; --usage adds
                                  a usage sample (CPU, RSS, threads, fds) of each running process that often
  top [--interval DURATION]          running processes by CPU with RSS, age, labels and the latest exits,
                                  redrawn every interval (1s) on a terminal until q; one snapshot otherwise
  get HANDLE                         one process
  list [--label k=v]... [--state running|exited]
  release HANDLE                     forget the handle (a running process keeps running)
  adopt PID [--label k=v]... [--start-time TICKS] [--inode N]
  health [--timeout DURATION]        grpc.health.v1 Check: prints SERVING and exits 0, else exits 1 (default 5s)
The address defaults to $PIDFD_AGENT_ADDR, else unix://${DEFAULT_SOCKET}. A HOST:PORT address with
--tls-cert and --tls-key (this client's certificate, PEM) is reached over TLS, the agent verified
against --tls-ca (default: the system's roots); each defaults to $PIDFD_AGENT_TLS_CERT, _KEY, _CA.
--tls-server-name (or $PIDFD_AGENT_TLS_SERVER_NAME) is the name the agent's certificate must carry
when it is not the address's host: dial a node by IP, verify it by its DNS name.`;

class UsageError extends Error {}

// grpc-js names an IP target as the TLS server name, which node deprecates (DEP0123) with a warning
// on stderr that no user of this command can act on; stderr here is for our one-line errors.
(process as { noDeprecation?: boolean }).noDeprecation = true;

const options = {
  addr: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-server-name': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  label: { type: 'string', multiple: true },
  env: { type: 'string', multiple: true },
  cwd: { type: 'string' },
  'request-id': { type: 'string' },
  'join-namespaces-of': { type: 'string' },
  stdout: { type: 'string' },
  stderr: { type: 'string' },
  'no-new-session': { type: 'boolean' },
  stdin: { type: 'string' },
  attach: { type: 'boolean' },
  tty: { type: 'boolean' },
  'output-events': { type: 'boolean' },
  'release-on-exit': { type: 'boolean' },
  follow: { type: 'boolean', short: 'f' },
  user: { type: 'string' },
  groups: { type: 'string' },
  umask: { type: 'string' },
  'no-new-privs': { type: 'boolean' },
  pdeathsig: { type: 'string' },
  rlimit: { type: 'string', multiple: true },
  cgroup: { type: 'string' },
  'memory-max': { type: 'string' },
  'cpu-max': { type: 'string' },
  'pids-max': { type: 'string' },
  'inherit-env': { type: 'boolean' },
  'kill-signal': { type: 'string' },
  group: { type: 'string' },
  'process-group': { type: 'boolean' },
  tree: { type: 'boolean' },
  usage: { type: 'string' },
  interval: { type: 'string' },
  reclaim: { type: 'boolean' },
  tid: { type: 'string' },
  signal: { type: 'string' },
  grace: { type: 'string' },
  timeout: { type: 'string' },
  after: { type: 'string' },
  state: { type: 'string' },
  'start-time': { type: 'string' },
  inode: { type: 'string' },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>['values'];

function pairs(flag: string, items: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items ?? []) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--${flag} expects KEY=VALUE, got ${JSON.stringify(item)}`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

function output(flag: string, text: string | undefined): Output | undefined {
  if (text === undefined) return undefined;
  if (text === 'discard') return Output.fromPartial({ mode: OutputMode.OUTPUT_MODE_DISCARD });
  if (text === 'inherit') return Output.fromPartial({ mode: OutputMode.OUTPUT_MODE_INHERIT });
  if (text === 'capture') return Output.fromPartial({ mode: OutputMode.OUTPUT_MODE_CAPTURE });
  const m = /^(file|append):(.+)$/.exec(text);
  if (!m) throw new UsageError(`--${flag} expects discard, inherit, capture, file:PATH or append:PATH`);
  return Output.fromPartial({ mode: OutputMode.OUTPUT_MODE_FILE, path: m[2]!, append: m[1] === 'append' });
}

/** RES=SOFT[:HARD] or RES=unlimited, e.g. NOFILE=1024:4096. */
function rlimit(text: string) {
  const m = /^([A-Za-z_]+)=(unlimited|-?\d+)(?::(-?\d+))?$/.exec(text);
  if (!m) throw new UsageError(`--rlimit expects RESOURCE=SOFT[:HARD] or RESOURCE=unlimited, got ${JSON.stringify(text)}`);
  if (m[2] === 'unlimited') return { resource: m[1]!, soft: 0, unlimited: true };
  return { resource: m[1]!, soft: Number(m[2]), hard: m[3] === undefined ? undefined : Number(m[3]) };
}

/** Spawn's identity, limits, cgroup, environment and deadline flags. */
function setup(v: Values) {
  const limits = v['memory-max'] !== undefined || v['cpu-max'] !== undefined || v['pids-max'] !== undefined;
  const create = v.cgroup === 'new';
  if (limits && !create) throw new UsageError('--memory-max, --cpu-max and --pids-max need --cgroup new');
  return {
    user: v.user ?? '',
    group: v.group ?? '',
    groups: v.groups === undefined ? [] : v.groups.split(',').filter(Boolean),
    umask: v.umask === undefined ? undefined : Number.parseInt(v.umask, 8),
    noNewPrivs: v['no-new-privs'] ?? false,
    parentDeathSignal: v.pdeathsig ?? '',
    rlimits: (v.rlimit ?? []).map(rlimit),
    cgroup: v.cgroup === undefined ? undefined : create ? { create: true, memoryMax: v['memory-max'] ?? '', cpuMax: v['cpu-max'] ?? '', pidsMax: v['pids-max'] ?? '' } : { path: v.cgroup },
    envMode: v['inherit-env'] ? EnvMode.ENV_MODE_INHERIT : EnvMode.ENV_MODE_UNSPECIFIED,
    timeout: duration(v.timeout),
    killSignal: v['kill-signal'] ?? '',
    grace: duration(v.grace),
  };
}

function address(v: Values): string {
  const a = v.addr ?? process.env['PIDFD_AGENT_ADDR'] ?? `unix://${DEFAULT_SOCKET}`;
  return a.startsWith('/') ? `unix://${a}` : a;
}

function pemFile(flag: string, path: string | undefined): Buffer | undefined {
  if (path === undefined || path === '') return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`--${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** TLS with this client's certificate when one is given (flags, else the environment). */
function channelCredentials(v: Values, addr: string): ChannelCredentials {
  const [ca, cert, key] = (['ca', 'cert', 'key'] as const).map((f) => v[`tls-${f}`] ?? process.env[`PIDFD_AGENT_TLS_${f.toUpperCase()}`]);
  if (ca === undefined && cert === undefined && key === undefined) return credentials.createInsecure();
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--tls-cert and --tls-key go together (the agent requires a client certificate)');
  if (addr.startsWith('unix://')) throw new UsageError(`TLS is for a HOST:PORT address, not ${addr}`);
  return credentials.createSsl(pemFile('tls-ca', ca) ?? null, pemFile('tls-key', key) ?? null, pemFile('tls-cert', cert) ?? null);
}

/** The channel's options: the name the agent's certificate is verified against, if not the address's host. */
function channelOptions(v: Values, addr: string): Partial<ClientOptions> {
  const name = v['tls-server-name'] ?? process.env['PIDFD_AGENT_TLS_SERVER_NAME'];
  if (name === undefined) return {};
  if (name === '' || addr.startsWith('unix://')) throw new UsageError(name === '' ? '--tls-server-name: empty' : `--tls-server-name is for a HOST:PORT address over TLS, not ${addr}`);
  return { 'grpc.ssl_target_name_override': name };
}

function one(args: string[], what: string): string {
  if (args.length !== 1) throw new UsageError(`expected ${what}`);
  return args[0]!;
}

function duration(text: string | undefined): { seconds: number; nanos: number } | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

const print = (json: boolean, value: unknown, text: string) => console.log(json ? jsonText(value) : text);

async function run(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({ args: logsArgs(argv), options, allowPositionals: true, strict: true });
  const [command, ...args] = positionals;
  if (v.help || command === undefined) {
    console.log(USAGE);
    return command === undefined && !v.help ? 2 : 0;
  }
  const json = v.json ?? false;
  const addr = address(v);
  const client = new AgentClient(addr, channelCredentials(v, addr), channelOptions(v, addr));
  try {
    switch (command) {
      case 'spawn': {
        if (args.length === 0) throw new UsageError('spawn needs a command after --');
        if (v.tty && (v.stdin !== undefined || v.stdout !== undefined || v.stderr !== undefined)) throw new UsageError('--tty is stdin, stdout and stderr: not with --stdin, --stdout or --stderr');
        const { process: p } = await client.spawn({
          argv: args,
          labels: pairs('label', v.label),
          env: pairs('env', v.env),
          cwd: v.cwd ?? '',
          requestId: v['request-id'] ?? '',
          newSession: !v['no-new-session'],
          stdout: output('stdout', v.stdout ?? (v.attach ? 'capture' : undefined)),
          stderr: output('stderr', v.stderr ?? (v.attach ? 'capture' : undefined)),
          stdin: stdinMode(v.stdin),
          outputEvents: v['output-events'] ?? false,
          joinNamespacesOf: v['join-namespaces-of'] ?? '',
          releaseOnExit: v['release-on-exit'] ?? false,
          ...setup(v),
          ...(v.tty && { stdin: StdinMode.STDIN_MODE_TTY, stdout: { mode: OutputMode.OUTPUT_MODE_TTY }, stderr: undefined, terminalSize: localSize() }),
        });
        if (v.attach && v.tty) return await attachTerminal(client, p!.handle);
        if (v.attach) return await attach(client, p!.handle, { stdout: (v.stdout ?? 'capture') === 'capture', stderr: (v.stderr ?? 'capture') === 'capture' }, v.stdin === 'pipe');
        print(json, Process.toJSON(p!), p!.handle);
        return 0;
      }
      case 'signal': {
        if (args.length < 1 || args.length > 2) throw new UsageError('signal HANDLE [SIGNAL]');
        if ([v['process-group'], v.tid !== undefined, v.tree].filter(Boolean).length > 1) throw new UsageError('--process-group, --tid and --tree exclude each other');
        const target = v['process-group'] ? SignalTarget.SIGNAL_TARGET_PROCESS_GROUP : v.tid !== undefined ? SignalTarget.SIGNAL_TARGET_THREAD : v.tree ? SignalTarget.SIGNAL_TARGET_TREE : SignalTarget.SIGNAL_TARGET_PROCESS;
        const res = await client.signal({ handle: args[0], signal: args[1] ?? (v.reclaim ? 'KILL' : 'TERM'), target, tid: v.tid === undefined ? 0 : Number(v.tid), reclaimMemory: v.reclaim ?? false });
        print(json, res, `sent ${res.signalName}${v.tree ? ' to the tree' : ''}${res.reclaimTime ? `; memory freed ${millis(res.reclaimTime)} ms after it` : ''}`);
        return 0;
      }
      case 'stop': {
        const res = await client.stop({ handle: one(args, 'stop HANDLE'), signal: v.signal ?? '', grace: duration(v.grace), processGroup: v['process-group'] ?? false, tree: v.tree ?? false, reclaimMemory: v.reclaim ?? false });
        const notes = [
          res.escalated ? ' (after SIGKILL: the grace period ran out)' : '',
          res.treeGoneAt ? `; the whole tree was gone at ${res.treeGoneAt.toISOString()}` : '',
          res.reclaimTime ? `; memory freed ${millis(res.reclaimTime)} ms after the SIGKILL` : '',
        ];
        print(json, StopResponse.toJSON(res), `${describeExit(res.process!.exit)}${notes.join('')}`);
        return exitStatusOf(res.process!.exit);
      }
      case 'threads': {
        const res = await client.listThreads({ handle: one(args, 'threads HANDLE') });
        print(json, res, res.tids.join('\n'));
        return 0;
      }
      case 'wait': {
        const res = await client.wait({ handle: one(args, 'wait HANDLE'), timeout: duration(v.timeout) });
        print(json, Process.toJSON(res.process!), describeExit(res.process!.exit));
        return exitStatusOf(res.process!.exit);
      }
      case 'get': {
        const res = await client.get({ handle: one(args, 'get HANDLE') });
        print(json, GetResponse.toJSON(res), processDetail(res.process!));
        return 0;
      }
      case 'list': {
        const state = v.state === undefined ? State.STATE_UNSPECIFIED : State[`STATE_${v.state.toUpperCase()}` as keyof typeof State];
        if (state === undefined) throw new UsageError('--state expects running or exited');
        const res = await client.listAll({ labels: pairs('label', v.label), state });
        print(json, ListResponse.toJSON(res), res.processes.map(processLine).join('\n') || '(no processes)');
        return 0;
      }
      case 'logs':
        return await logs(client, one(args, 'logs HANDLE'), v.stderr !== undefined, v.follow ?? false);
      case 'release':
        await client.release({ handle: one(args, 'release HANDLE') });
        print(json, {}, 'released');
        return 0;
      case 'adopt': {
        const pid = Number(one(args, 'adopt PID'));
        const { process: p } = await client.adopt({
          pid,
          labels: pairs('label', v.label),
          expectedStartTime: v['start-time'] === undefined ? undefined : Number(v['start-time']),
          expectedPidfsInode: v.inode === undefined ? undefined : Number(v.inode),
        });
        print(json, Process.toJSON(p!), p!.handle);
        return 0;
      }
      case 'watch': {
        const after = v.after === undefined ? undefined : Number(v.after);
        const abort = new AbortController();
        process.once('SIGINT', () => abort.abort());
        for await (const e of client.watch({ handles: args, labels: pairs('label', v.label), afterSequence: after, usageInterval: duration(v.usage) }, { signal: abort.signal })) {
          print(json, Event.toJSON(e), eventLine(e));
        }
        return 0;
      }
      case 'health': {
        const serving = await checkHealth(addr, channelCredentials(v, addr), channelOptions(v, addr), v.timeout === undefined ? 5000 : parseDuration(v.timeout));
        print(json, { status: serving }, serving);
        return serving === 'SERVING' ? 0 : 1;
      }
      case 'top':
        return await top(client, v.interval === undefined ? 1000 : parseDuration(v.interval));
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } finally {
    client.close();
  }
}

// exitCode rather than exit(): stdout to a pipe is written asynchronously and exit() would cut it.
run(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    if (e instanceof AgentCallError) {
      // grpc-js's connection errors span lines (OpenSSL's among them): one line, like every other error.
      // A spawn that may have started: only a rerun under the same request id is safe.
      // A refusal (HANDOVER) ran nothing: only a failed connection leaves the spawn unknown.
      const rerun = e.method === 'Spawn' && e.requestId && e.reason === '' && isRetryable(e) ? `; it may have started: rerun with --request-id ${e.requestId}` : '';
      console.error(`pidfdctl: ${status[e.code]}: ${printable(e.details.replace(/\s*\n\s*/g, ' ').trim())}${e.reason ? ` (${e.reason})` : ''}${rerun}`);
      process.exitCode = 1;
      return;
    }
    const { code, details } = e as { code?: unknown; details?: unknown };
    // A call made without the API's client (health): a grpc-js error with a numeric code.
    if (typeof code === 'number' && typeof details === 'string') {
      console.error(`pidfdctl: ${status[code] ?? code}: ${printable(details.replace(/\s*\n\s*/g, ' ').trim())}`);
      process.exitCode = 1;
      return;
    }
    const usage = e instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'));
    console.error(`pidfdctl: ${e instanceof Error ? e.message : String(e)}${usage ? `\n${USAGE}` : ''}`);
    process.exitCode = usage ? 2 : 1;
  },
);
