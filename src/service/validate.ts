// API requests → validated domain options. Every failure names the offending field.
import { isAbsolute } from 'node:path';
import { parseSignal } from '../process/lifecycle/signalling.js';
import { invalidArgument } from '../process/errors.js';
import type { AdoptOptions, OutputTarget, SignalTarget, SpawnOptions } from '../process/options.js';
import type { StopScope } from '../process/manager.js';
import {
  OutputMode,
  SignalTarget as ApiSignalTarget,
  type AdoptRequest,
  type Output,
  type SpawnRequest,
} from '../api.js';
import type { Duration } from '../api.js';
import { cgroupRequest, deadline, inheritsEnv, setupOptions } from './validate-setup.js';
import { capture, stdinAndEvents } from './validate-stdin-output.js';
import { terminal } from './validate-terminal.js';

const NAME_MAX = 255;

export const LIMITS = {
  argvItems: 4096,
  envItems: 4096,
  labels: 64,
  labelKeyBytes: 128,
  labelValueBytes: 1024,
  stringBytes: 128 * 1024,
  totalBytes: 1024 * 1024,
  requestIdBytes: 256,
  watchHandles: 1024,
} as const;

function text(field: string, value: string, maxBytes: number = LIMITS.stringBytes): string {
  if (value.includes('\0')) throw invalidArgument(field, 'contains a NUL byte');
  if (Buffer.byteLength(value) > maxBytes) throw invalidArgument(field, `longer than ${maxBytes} bytes`);
  return value;
}

export function labels(field: string, map: Record<string, string>): Record<string, string> {
  const entries = Object.entries(map);
  if (entries.length > LIMITS.labels) throw invalidArgument(field, `more than ${LIMITS.labels} labels`);
  for (const [k, v] of entries) {
    if (k === '') throw invalidArgument(field, 'empty label key');
    text(`${field}[${k}]`, k, LIMITS.labelKeyBytes);
    text(`${field}[${k}]`, v, LIMITS.labelValueBytes);
  }
  // Most processes have none: one shared object instead of one per record (a retained record and
  // its events keep theirs for an hour; 56 B each, 1.6 MiB after a bench round).
  return entries.length === 0 ? NO_LABELS : map;
}

const NO_LABELS: Record<string, string> = Object.freeze({});

function requestId(value: string): string | undefined {
  return value === '' ? undefined : text('request_id', value, LIMITS.requestIdBytes);
}

function output(field: string, o: Output | undefined): OutputTarget {
  switch (o?.mode ?? OutputMode.OUTPUT_MODE_UNSPECIFIED) {
    case OutputMode.OUTPUT_MODE_UNSPECIFIED:
    case OutputMode.OUTPUT_MODE_DISCARD:
      return { kind: 'discard' };
    case OutputMode.OUTPUT_MODE_INHERIT:
      return { kind: 'inherit' };
    case OutputMode.OUTPUT_MODE_FILE: {
      const path = text(`${field}.path`, o?.path ?? '');
      if (!isAbsolute(path)) throw invalidArgument(`${field}.path`, 'must be an absolute path');
      return { kind: 'file', path, append: o?.append ?? false };
    }
    case OutputMode.OUTPUT_MODE_CAPTURE:
      return capture(field, o!);
    default:
      throw invalidArgument(`${field}.mode`, `unknown mode ${o?.mode}`);
  }
}

export function spawnOptions(req: SpawnRequest): SpawnOptions {
  if (req.argv.length === 0) throw invalidArgument('argv', 'must not be empty');
  if (req.argv[0] === '') throw invalidArgument('argv[0]', 'must not be empty');
  // execvp's own bound: no file name is longer, and each PATH entry would make a path of it first.
  if (!req.argv[0]!.includes('/') && Buffer.byteLength(req.argv[0]!) > NAME_MAX) throw invalidArgument('argv[0]', `a name without a slash is searched in PATH and must be at most ${NAME_MAX} bytes (ENAMETOOLONG)`);
  if (req.argv.length > LIMITS.argvItems) throw invalidArgument('argv', `more than ${LIMITS.argvItems} items`);
  let total = 0;
  req.argv.forEach((a, i) => (total += Buffer.byteLength(text(`argv[${i}]`, a))));
  const envEntries = Object.entries(req.env);
  if (envEntries.length > LIMITS.envItems) throw invalidArgument('env', `more than ${LIMITS.envItems} variables`);
  for (const [k, v] of envEntries) {
    if (k === '' || k.includes('=')) throw invalidArgument(`env[${k}]`, 'name must be non-empty and without "="');
    total += Buffer.byteLength(text(`env[${k}]`, k)) + Buffer.byteLength(text(`env[${k}]`, v));
  }
  if (total > LIMITS.totalBytes) throw invalidArgument('argv', `argv and env exceed ${LIMITS.totalBytes} bytes`);
  const cwd = req.cwd === '' ? undefined : text('cwd', req.cwd);
  if (cwd !== undefined && !isAbsolute(cwd)) throw invalidArgument('cwd', 'must be an absolute path');
  const term = terminal(req);
  return {
    argv: req.argv,
    env: envEntries.length > 0 ? req.env : undefined,
    cwd,
    labels: labels('labels', req.labels),
    requestId: requestId(req.requestId),
    newSession: req.newSession ?? true,
    stdout: term ? capture('stdout', req.stdout!) : output('stdout', req.stdout),
    stderr: term ? { kind: 'discard' } : output('stderr', req.stderr),
    ...(term ? { terminal: term, ...(req.outputEvents && { outputEvents: true }) } : stdinAndEvents(req)),
    inheritEnv: inheritsEnv(req.envMode),
    setup: setupOptions(req),
    cgroup: cgroupRequest(req.cgroup),
    deadline: deadline(req),
    joinNamespacesOf: req.joinNamespacesOf === '' ? undefined : text('join_namespaces_of', req.joinNamespacesOf),
    ...(req.releaseOnExit && { releaseOnExit: true }),
  };
}

export function adoptOptions(req: AdoptRequest): AdoptOptions {
  if (!Number.isInteger(req.pid) || req.pid <= 0) throw invalidArgument('pid', 'must be a positive process ID');
  return {
    pid: req.pid,
    labels: labels('labels', req.labels),
    requestId: requestId(req.requestId),
    expectedStartTime: req.expectedStartTime === undefined ? undefined : BigInt(req.expectedStartTime),
    expectedPidfsInode: req.expectedPidfsInode === undefined ? undefined : BigInt(req.expectedPidfsInode),
  };
}

/** "" → SIGTERM. 32 and 33 belong to glibc's threads and are refused. */
export function signal(value: string): number {
  if (value.trim() === '') return 15;
  const n = parseSignal(value);
  if (n === undefined || n === 0) throw invalidArgument('signal', `${JSON.stringify(value)} is not a signal`);
  return n;
}

export function signalTarget(t: ApiSignalTarget, tid: number): SignalTarget {
  switch (t) {
    case ApiSignalTarget.SIGNAL_TARGET_UNSPECIFIED:
    case ApiSignalTarget.SIGNAL_TARGET_PROCESS:
      return { kind: 'process' };
    case ApiSignalTarget.SIGNAL_TARGET_PROCESS_GROUP:
      return { kind: 'process-group' };
    case ApiSignalTarget.SIGNAL_TARGET_THREAD:
      if (!Number.isInteger(tid) || tid <= 0) throw invalidArgument('tid', 'must be a positive thread ID');
      return { kind: 'thread', tid };
    case ApiSignalTarget.SIGNAL_TARGET_TREE:
      return { kind: 'tree' };
    default:
      throw invalidArgument('target', `unknown target ${t}`);
  }
}

/** reclaim_memory frees what a SIGKILL leaves: "" means SIGKILL, anything else is refused, as is a tree or one thread. */
export function reclaimSignal(value: string, target: SignalTarget): number {
  const n = value.trim() === '' ? 9 : signal(value);
  if (n !== 9) throw invalidArgument('signal', `reclaim_memory follows SIGKILL: ${JSON.stringify(value)} is not SIGKILL`);
  if (target.kind !== 'process') throw invalidArgument('reclaim_memory', 'only with target SIGNAL_TARGET_PROCESS');
  return n;
}

/** Stop's scope: tree and process_group exclude each other; reclaim_memory is for one process. */
export function stopScope(req: { processGroup: boolean; tree: boolean; reclaimMemory: boolean }): StopScope {
  if (req.tree && req.processGroup) throw invalidArgument('tree', 'tree and process_group exclude each other');
  if (req.tree && req.reclaimMemory) throw invalidArgument('reclaim_memory', 'not with tree (cgroup.kill ends the tree)');
  if (req.processGroup && req.reclaimMemory) throw invalidArgument('reclaim_memory', 'not with process_group: it frees the memory of the process itself');
  return req.tree ? 'tree' : req.processGroup ? 'process-group' : 'process';
}

export function handle(value: string): string {
  if (value === '') throw invalidArgument('handle', 'must not be empty');
  return text('handle', value, 64);
}

export function durationMs(field: string, d: Duration | undefined): number | undefined {
  if (d === undefined) return undefined;
  const ms = d.seconds * 1000 + Math.floor(d.nanos / 1e6);
  if (!Number.isFinite(ms) || ms < 0) throw invalidArgument(field, 'must not be negative');
  return Math.min(ms, 2 ** 31 - 1);
}
