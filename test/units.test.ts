// Fast tests of pure logic with in-memory inputs: the event ring, retention, handles, signal
// names, flags, request validation and the PATH search.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { tempDir } from './helpers/harness.js';
import test, { type ExecutionContext } from 'ava';
import { Output, OutputMode, SpawnRequest } from '../clients/ts/src/gen/pidfd/agent/v1/agent.js';
import { ConfigError, DEFAULTS, parseConfig, parseDuration } from '../src/config/config.js';
import { PidRef } from '../src/kernel/pid-ref.js';
import { parseSignal, signalName } from '../src/kernel/signals.js';
import { AgentError, errnoError, fromKernel, type ErrorKind } from '../src/process/errors.js';
import { KernelError } from '../src/kernel/errors.js';
import { EventLog } from '../src/process/event-log.js';
import { resolveExecutable } from '../src/process/executable.js';
import { newHandleId } from '../src/process/handle.js';
import { ProcessRecord } from '../src/process/record.js';
import { ProcessTable } from '../src/process/table.js';
import { LIMITS, spawnOptions } from '../src/service/validate.js';

/** Lets queued microtasks (the event log's notifications) run. */
const flush = () => new Promise((r) => setImmediate(r));

/** A record holding a real pidfd (of this process) that it closes itself on markExited. */
function record(t: ExecutionContext, requestId?: string): ProcessRecord {
  const ref = PidRef.open(process.pid);
  const r = new ProcessRecord(newHandleId(), { pid: process.pid, pidfsInode: ref.inode }, { argv: ['x'], labels: {}, adopted: false, requestId }, 0, ref);
  t.teardown(() => r.closePidfd());
  return r;
}

const exited = (r: ProcessRecord, exitedAt: number) => r.markExited({ termination: { exitCode: 0 }, reason: 'exited', exitedAt });

// ---- EventLog ----

test('event sequence numbers start at 1 and have no gaps; each event carries the state it led to', (t) => {
  let clock = 1000;
  const log = new EventLog(4, () => clock++);
  t.is(log.lastSequence, 0);
  t.is(log.firstSequence, 1);
  const r = record(t);
  const types = ['spawned', 'exited', 'released', 'adopted', 'spawned', 'exited', 'released'] as const;
  const events = types.map((type) => log.append(type, r));
  t.deepEqual(events.map((e) => e.sequence), [1, 2, 3, 4, 5, 6, 7]);
  t.deepEqual(events.map((e) => e.time), [1000, 1001, 1002, 1003, 1004, 1005, 1006]);
  t.deepEqual(events.map((e) => e.state), ['running', 'exited', 'released', 'running', 'running', 'exited', 'released']);
  t.is(log.lastSequence, 7);
});

test('an event keeps the exit as it was when the event was appended', (t) => {
  const log = new EventLog(16);
  const r = record(t);
  const spawned = log.append('spawned', r);
  exited(r, 42);
  const exit = log.append('exited', r);
  t.is(spawned.exit, undefined);
  t.is(exit.exit?.exitedAt, 42);
  t.is(exit.record, r);
});

test('the ring keeps the newest capacity events and get refuses everything else', (t) => {
  const capacity = 4;
  const log = new EventLog(capacity);
  const r = record(t);
  for (let i = 0; i < capacity - 1; i++) log.append('spawned', r);
  t.is(log.firstSequence, 1, 'nothing overwritten yet');
  for (let i = capacity - 1; i < 10; i++) log.append('spawned', r);
  t.is(log.lastSequence, 10);
  t.is(log.firstSequence, 10 - capacity + 1);
  for (let s = log.firstSequence; s <= 10; s++) t.is(log.get(s)?.sequence, s);
  for (const s of [-1, 0, 1, log.firstSequence - 1, 11, 1000]) t.is(log.get(s), undefined, `get(${s})`);
});

test('canReplayAfter is true exactly from the sequence before the oldest held event up to the newest', (t) => {
  const log = new EventLog(4);
  t.true(log.canReplayAfter(0), 'an empty log replays everything after 0');
  t.false(log.canReplayAfter(1), 'a sequence from the future');
  t.false(log.canReplayAfter(-1));
  const r = record(t);
  for (let i = 0; i < 10; i++) log.append('spawned', r);
  const first = log.firstSequence;
  t.true(log.canReplayAfter(first - 1));
  t.false(log.canReplayAfter(first - 2), 'event first-1 was overwritten');
  t.true(log.canReplayAfter(log.lastSequence), 'caught up');
  t.false(log.canReplayAfter(log.lastSequence + 1));
  t.false(log.canReplayAfter(0));
});

test('subscribers are notified once per microtask batch, not once per event', async (t) => {
  const log = new EventLog(64);
  const r = record(t);
  const seen: number[][] = [[], []];
  const unsubscribe = [0, 1].map((i) => log.subscribe(() => seen[i]!.push(log.lastSequence)));
  t.is(log.subscriberCount, 2);
  log.append('spawned', r);
  log.append('exited', r);
  log.append('released', r);
  t.deepEqual(seen, [[], []], 'not synchronously');
  await flush();
  t.deepEqual(seen, [[3], [3]]);
  await flush();
  t.deepEqual(seen, [[3], [3]], 'nothing new, no notification');
  log.append('spawned', r);
  unsubscribe[1]!();
  t.is(log.subscriberCount, 1);
  await flush();
  t.deepEqual(seen, [[3, 4], [3]]);
});

// ---- ProcessTable ----

test('retention by TTL: an exited record expires ttl ms after its exit, oldest first, and is not removed by expired()', (t) => {
  const table = new ProcessTable({ ttlMs: 1000, maxExited: 100 });
  const [a, b, c] = [record(t), record(t), record(t)];
  for (const r of [a, b, c]) table.add(r);
  exited(a, 0);
  table.noteExited(a);
  exited(b, 500);
  table.noteExited(b);
  t.deepEqual(table.expired(999), []);
  t.deepEqual(table.expired(1000), [a]);
  t.deepEqual(table.expired(1500), [a, b]);
  t.deepEqual(table.expired(1_000_000), [a, b], 'a running record never expires');
  t.is(table.size, 3);
  table.remove(a);
  t.deepEqual(table.expired(1500), [b]);
});

test('retention by count: beyond maxExited the oldest exits expire first, whatever their age', (t) => {
  const table = new ProcessTable({ ttlMs: 3_600_000, maxExited: 2 });
  const records = Array.from({ length: 5 }, () => record(t));
  records.forEach((r, i) => {
    table.add(r);
    exited(r, i);
    table.noteExited(r);
  });
  t.deepEqual(table.expired(10), records.slice(0, 3));
  for (const r of records.slice(0, 3)) table.remove(r);
  t.deepEqual(table.expired(10), []);

  const none = new ProcessTable({ ttlMs: 3_600_000, maxExited: 0 });
  const r = record(t);
  none.add(r);
  t.deepEqual(none.expired(0), []);
  exited(r, 0);
  none.noteExited(r);
  t.deepEqual(none.expired(0), [r], 'maxExited 0 keeps no exited record');
});

test('runningCount follows add, noteExited and remove; a second remove changes nothing', (t) => {
  const table = new ProcessTable({ ttlMs: 1000, maxExited: 10 });
  const [a, b, c] = [record(t), record(t), record(t)];
  for (const r of [a, b, c]) table.add(r);
  t.deepEqual([table.runningCount, table.size], [3, 3]);
  exited(a, 0);
  table.noteExited(a);
  t.deepEqual([table.runningCount, table.size], [2, 3]);
  table.remove(a);
  t.deepEqual([table.runningCount, table.size], [2, 2], 'removing an exited record leaves the running count');
  table.remove(b);
  t.deepEqual([table.runningCount, table.size], [1, 1], 'removing a running record (a release) lowers it');
  table.remove(b);
  table.remove(a);
  t.deepEqual([table.runningCount, table.size], [1, 1]);
  t.deepEqual([...table.values()], [c]);
});

test('a record is found by handle and by request id until it is removed', (t) => {
  const table = new ProcessTable({ ttlMs: 1000, maxExited: 10 });
  const withId = record(t, 'req-1');
  const without = record(t);
  table.add(withId);
  table.add(without);
  t.is(table.get(withId.handle), withId);
  t.is(table.get(without.handle), without);
  t.is(table.byRequest(undefined, 'req-1'), withId);
  t.is(table.byRequest(undefined, 'req-2'), undefined);
  t.is(table.byRequest('unix:uid=1001', 'req-1'), undefined, "another owner's key is another key");
  t.is(table.get('no-such-handle'), undefined);
  table.remove(withId);
  t.is(table.get(withId.handle), undefined);
  t.is(table.byRequest(undefined, 'req-1'), undefined);
  t.is(table.get(without.handle), without);
});

// ---- handles ----

/** RFC 4648 base32 (lower case, no padding) → bytes; throws if the trailing bits are not zero. */
function base32Decode(text: string): Buffer {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes: number[] = [];
  let value = 0;
  let bits = 0;
  for (const c of text) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error(`not base32: ${c}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((value >>> bits) & 0xff);
      value &= (1 << bits) - 1;
    }
  }
  if (value !== 0) throw new Error(`non-zero padding bits in ${text}`);
  return Buffer.from(bytes);
}

test('handles are 26 lower-case base32 characters holding 128 bits, and 10,000 of them are all different', (t) => {
  const ids = Array.from({ length: 10_000 }, newHandleId);
  const malformed = ids.filter((id) => !/^[a-z2-7]{26}$/.test(id));
  t.deepEqual(malformed, []);
  const decoded = ids.map((id) => base32Decode(id));
  t.true(decoded.every((b) => b.length === 16));
  t.is(new Set(ids).size, ids.length);
  t.is(new Set(decoded.map((b) => b.toString('hex'))).size, ids.length);
});

// ---- signals ----

const bashSignal = (name: string): number => Number(execFileSync('bash', ['-c', `kill -l ${name}`], { encoding: 'utf8' }).trim());

test('parseSignal takes names with or without SIG in any case, numbers and real-time names', (t) => {
  const term = constants.signals.SIGTERM;
  for (const text of ['TERM', 'SIGTERM', 'sigterm', 'Term', ` ${term} `, String(term)]) t.is(parseSignal(text), term, text);
  t.is(parseSignal('KILL'), constants.signals.SIGKILL);
  // glibc's SIGRTMIN as programs see it, asked of bash rather than assumed.
  t.is(parseSignal('SIGRTMIN+3'), bashSignal('SIGRTMIN+3'));
  t.is(parseSignal('rtmin+3'), bashSignal('SIGRTMIN+3'));
  t.is(parseSignal('SIGRTMIN'), bashSignal('SIGRTMIN'));
  t.is(parseSignal('SIGRTMAX'), bashSignal('SIGRTMAX'));
});

test('parseSignal rejects glibc\'s internal 32 and 33, 0, numbers past SIGRTMAX and junk', (t) => {
  for (const text of ['32', '33', '0', '65', String(bashSignal('SIGRTMAX') + 1), '-9', '+9', '9x', '1e1', '', 'SIG', 'SIGJUNK', 'SIG32', 'SIGRTMIN+31']) {
    t.is(parseSignal(text), undefined, JSON.stringify(text));
  }
});

test('signalName and parseSignal round-trip every deliverable signal', (t) => {
  const rtmin = bashSignal('SIGRTMIN');
  const rtmax = bashSignal('SIGRTMAX');
  t.is(signalName(constants.signals.SIGTERM), 'SIGTERM');
  t.is(signalName(constants.signals.SIGABRT), 'SIGABRT', 'the first name of an alias (SIGIOT)');
  t.is(signalName(rtmin + 3), 'SIGRTMIN+3');
  t.is(signalName(32), 'SIG32');
  for (let n = 1; n <= rtmax; n++) {
    if (n > constants.signals.SIGSYS && n < rtmin) continue;
    t.is(parseSignal(signalName(n)), n, signalName(n));
  }
});

// ---- config ----

test('no flags give the frozen defaults', (t) => {
  const config = parseConfig([]);
  t.deepEqual(config, DEFAULTS);
  t.true(Object.isFrozen(config));
});

test('--listen is repeatable and --tcp adds loopback addresses after the unix ones', (t) => {
  const config = parseConfig(['--tcp', '50051', '--listen', 'unix:///run/a.sock', '--listen', 'unix:///run/b.sock', '--tcp', '127.0.0.1:7', '--tcp', '[::1]:8', '--tcp', '127.0.0.2:9']);
  t.deepEqual(config.listen, ['unix:///run/a.sock', 'unix:///run/b.sock', '127.0.0.1:50051', '127.0.0.1:7', '[::1]:8', '127.0.0.2:9']);
  t.deepEqual(parseConfig(['--tcp', '1']).listen, ['127.0.0.1:1'], '--tcp alone replaces the default socket');
});

test('bad flag values throw ConfigError naming the flag', (t) => {
  const cases: [string[], string][] = [
    [['--tcp', '0.0.0.0:80'], '--tcp'],
    [['--tcp', '10.1.2.3:80'], '--tcp'],
    [['--tcp', 'localhost'], '--tcp'],
    [['--tcp', 'localhost:80'], '--tcp'],
    [['--tcp', '[::ffff:10.0.0.1]:80'], '--tcp'],
    [['--tcp', '::1:80'], '--tcp'],
    [['--tcp', '10.0.0.1:80', '--tls-cert', '/c', '--tls-key', '/k'], '--tls-cert'],
    [['--tcp', '10.0.0.1:80', '--tls-cert', '/c', '--tls-key', '/k', '--tls-client-ca', '/ca'], '--policy'],
    [['--tls-cert', '/c', '--tls-key', '/k', '--tls-client-ca', '/ca', '--policy', '/p'], '--tls-cert'],
    [['--policy', 'p.yaml'], '--policy'],
    [['--listen', 'localhost:80'], '--listen'],
    [['--listen', 'unix://relative.sock'], '--listen'],
    [['--retention-max=-1'], '--retention-max'],
    [['--retention-max', '1.5'], '--retention-max'],
    [['--event-ring', '15'], '--event-ring'],
    [['--event-ring', 'many'], '--event-ring'],
    [['--watch-backlog', '0'], '--watch-backlog'],
    [['--max-watchers', '0'], '--max-watchers'],
    [['--max-processes', 'lots'], '--max-processes'],
    [['--state-dir', 'var/lib/x'], '--state-dir'],
    [['--state-dir', '/var/lib/x', '--ephemeral'], '--state-dir'],
    [['--state-dir', `/${'d'.repeat(93)}`], '--state-dir'],
    [['--ephemeral', '--takeover'], '--takeover'],
    [['--after-handover', 'stay'], '--after-handover'],
    [['--ready-file', 'serving'], '--ready-file'],
    [['--max-connections', '0'], '--max-connections'],
    [['--handshake-timeout', '0s'], '--handshake-timeout'],
    [['--handshake-timeout', 'soon'], '--handshake-timeout'],
  ];
  for (const [argv, flag] of cases) {
    const e = t.throws(() => parseConfig(argv), { instanceOf: ConfigError }, argv.join(' '));
    t.true(e?.message.startsWith(`${flag}:`), `${argv.join(' ')} → ${e?.message}`);
  }
});

test('numeric flags take their lower bounds and the watch backlog stays below the event ring', (t) => {
  const config = parseConfig(['--retention-max', '0', '--event-ring', '16', '--max-watchers', '1', '--max-processes', '1', '--retention-ttl', '90s', '--quiet']);
  t.is(config.retentionMax, 0);
  t.is(config.eventRing, 16);
  t.is(config.watchBacklog, 15, 'the default backlog is capped at eventRing - 1');
  t.is(config.maxWatchers, 1);
  t.is(config.maxProcesses, 1);
  t.is(config.retentionTtlMs, parseDuration('90s'));
  t.is(config.logLevel, 'quiet');
  t.is(parseConfig(['--watch-backlog', '100']).watchBacklog, 100);
  t.is(parseConfig(['--state-dir', `/${'d'.repeat(92)}`]).stateDir?.length, 93, 'the longest state dir whose handover socket fits');
  t.is(parseConfig(['--after-handover', 'linger', '--takeover']).afterHandover, 'linger');
  t.like(parseConfig(['--max-connections', '1', '--handshake-timeout', '1500ms']), { maxConnections: 1, handshakeTimeoutMs: 1500 });
});

test('the handle table is persisted under /var/lib/pidfd-agent unless --state-dir or --ephemeral say otherwise', (t) => {
  t.is(parseConfig([]).stateDir, '/var/lib/pidfd-agent');
  t.is(parseConfig(['--state-dir', '/srv/agent']).stateDir, '/srv/agent');
  t.is(parseConfig(['--ephemeral']).stateDir, undefined);
});

test('parseDuration reads ms, s, m and h, and a bare number as seconds', (t) => {
  t.is(parseDuration('500ms'), 500);
  t.is(parseDuration('30s'), 30 * 1000);
  t.is(parseDuration('5m'), 5 * 60 * 1000);
  t.is(parseDuration('1h'), 60 * 60 * 1000);
  t.is(parseDuration('2'), 2 * 1000);
  t.is(parseDuration('1.5s'), 1500);
  t.is(parseDuration(' 5m '), parseDuration('5m'));
  t.is(parseDuration('0'), 0);
  for (const bad of ['', 'forever', '-1s', '5 m', '1d', 'ms', '1.s', '1h30m']) {
    t.throws(() => parseDuration(bad), { instanceOf: ConfigError }, JSON.stringify(bad));
  }
});

// ---- request validation ----

// Every other field at its proto default, as a client that does not set it would send it.
const request = (overrides: Partial<SpawnRequest>): SpawnRequest => ({ ...SpawnRequest.create(), argv: ['true'], ...overrides });
const output = (mode: OutputMode, path = '', append = false): Output => ({ ...Output.create(), mode, path, append });

test('a minimal spawn request gets the documented defaults', (t) => {
  t.like(spawnOptions(request({})), {
    argv: ['true'],
    env: undefined,
    cwd: undefined,
    labels: {},
    requestId: undefined,
    newSession: true,
    stdout: { kind: 'discard' },
    stderr: { kind: 'discard' },
  });
  const full = spawnOptions(
    request({
      env: { A: '1' },
      cwd: '/tmp',
      labels: { k: 'v' },
      requestId: 'r',
      newSession: false,
      stdout: output(OutputMode.OUTPUT_MODE_FILE, '/tmp/out.log', true),
      stderr: output(OutputMode.OUTPUT_MODE_INHERIT),
    }),
  );
  t.like(full, {
    argv: ['true'],
    env: { A: '1' },
    cwd: '/tmp',
    labels: { k: 'v' },
    requestId: 'r',
    newSession: false,
    stdout: { kind: 'file', path: '/tmp/out.log', append: true },
    stderr: { kind: 'inherit' },
  });
});

test('invalid spawn requests are InvalidArgument naming the field', (t) => {
  const long = 'x'.repeat(LIMITS.stringBytes + 1);
  const cases: [Partial<SpawnRequest>, string][] = [
    [{ argv: [] }, 'argv'],
    [{ argv: [''] }, 'argv[0]'],
    [{ argv: ['echo', 'ok', 'a\0b'] }, 'argv[2]'],
    [{ argv: ['echo', long] }, 'argv[1]'],
    [{ argv: Array.from({ length: LIMITS.argvItems + 1 }, () => 'a') }, 'argv'],
    [{ argv: ['echo', ...Array.from({ length: 9 }, () => 'y'.repeat(LIMITS.totalBytes / 8))] }, 'argv'],
    [{ env: { 'A=B': 'x' } }, 'env[A=B]'],
    [{ env: { '': 'x' } }, 'env[]'],
    [{ env: { A: 'x\0y' } }, 'env[A]'],
    [{ cwd: 'relative/dir' }, 'cwd'],
    [{ cwd: '/tmp\0x' }, 'cwd'],
    [{ labels: { '': 'v' } }, 'labels'],
    [{ labels: { k: 'v'.repeat(LIMITS.labelValueBytes + 1) } }, 'labels[k]'],
    [{ labels: Object.fromEntries(Array.from({ length: LIMITS.labels + 1 }, (_, i) => [`k${i}`, 'v'])) }, 'labels'],
    [{ requestId: 'r'.repeat(LIMITS.requestIdBytes + 1) }, 'request_id'],
    [{ stdout: output(OutputMode.OUTPUT_MODE_FILE, 'rel.log') }, 'stdout.path'],
    [{ stderr: output(OutputMode.OUTPUT_MODE_FILE) }, 'stderr.path'],
    [{ stderr: output(99 as OutputMode) }, 'stderr.mode'],
  ];
  for (const [overrides, field] of cases) {
    const e = t.throws(() => spawnOptions(request(overrides)), { instanceOf: AgentError }, field);
    t.is(e?.kind, 'InvalidArgument', field);
    t.is(e?.detail.field, field, e?.message);
    t.true(e?.message.startsWith(`${field}: `), e?.message);
  }
});

// ---- PATH search ----

function scratch(t: ExecutionContext): (rel: string, kind: 'exec' | 'file' | 'dir') => string {
  const root = mkdtempSync(join(tmpdir(), 'pidfd-agent-units-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return (rel, kind) => {
    const path = join(root, rel);
    mkdirSync(join(path, '..'), { recursive: true });
    if (kind === 'dir') mkdirSync(path);
    else {
      writeFileSync(path, '#!/bin/sh\n');
      chmodSync(path, kind === 'exec' ? 0o755 : 0o644);
    }
    return path;
  };
}

function agentError(t: ExecutionContext, fn: () => unknown, kind: ErrorKind, reason: string, path: string): void {
  const e = t.throws(fn, { instanceOf: AgentError });
  t.is(e?.kind, kind);
  t.is(e?.detail.reason, reason);
  t.is(e?.detail.field, 'argv[0]');
  t.is(e?.detail.path, path);
}

test('one errno table: the call site names what, field and path; a shortage blames the node only where the site says so', (t) => {
  const denied = errnoError('EACCES', { what: 'cwd: /x', field: 'cwd', path: '/x' })!;
  t.like(denied, { kind: 'PermissionDenied', message: 'cwd: /x: EACCES', detail: { reason: 'EACCES', field: 'cwd', path: '/x' } });
  t.is(errnoError('EMFILE', { what: 'spawn /bin/true', field: 'argv[0]' })!.detail.field, 'argv[0]');
  t.like(errnoError('EMFILE', { what: 'spawn /bin/true', field: 'argv[0]', shortageIsNodes: true })!, { kind: 'ResourceExhausted', detail: { field: undefined } });
  t.is(errnoError('EBADMSG', { what: 'x' }), undefined, 'an errno the table does not know stays internal');
  t.is(errnoError('EBADMSG', { what: 'x', otherwise: 'InvalidArgument' })!.kind, 'InvalidArgument');
  const kernel = new KernelError('openat2', 18);
  t.like(fromKernel(kernel, { what: 'cgroup.path: a' }) as AgentError, { kind: 'InvalidArgument', detail: { reason: 'EXDEV', syscall: 'openat2' } });
  const node = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT', syscall: 'stat' });
  t.like(fromKernel(node, { what: 'cwd: /nope', field: 'cwd' }) as AgentError, { kind: 'NotFound', detail: { reason: 'ENOENT', syscall: 'stat', field: 'cwd' } });
  const plain = new Error('not a system call');
  t.is(fromKernel(plain, { what: 'x', otherwise: 'InvalidArgument' }), plain);
});

test('resolveExecutable takes the first executable in PATH, passing over files without x and directories', (t) => {
  const make = scratch(t);
  const noExec = make('a/tool', 'file');
  const dir = make('b/tool', 'dir');
  const good = make('c/tool', 'exec');
  const later = make('d/tool', 'exec');
  const PATH = [noExec, dir, good, later].map((p) => join(p, '..')).join(':');
  t.is(resolveExecutable('tool', PATH), good);
  t.is(resolveExecutable('tool', `::${join(later, '..')}`), later, 'empty PATH entries are skipped');
});

test('resolveExecutable reports EACCES for the first candidate when none is executable, ENOENT when none exists', (t) => {
  const make = scratch(t);
  const noExec = make('a/tool', 'file');
  const dir = make('b/tool', 'dir');
  const empty = join(make('c/other', 'exec'), '..');
  const path = (...dirs: string[]) => dirs.join(':');
  agentError(t, () => resolveExecutable('tool', path(empty, join(noExec, '..'), join(dir, '..'))), 'PermissionDenied', 'EACCES', noExec);
  agentError(t, () => resolveExecutable('tool', path(empty, join(dir, '..'), join(noExec, '..'))), 'PermissionDenied', 'EACCES', dir);
  agentError(t, () => resolveExecutable('tool', empty), 'NotFound', 'ENOENT', 'tool');
  agentError(t, () => resolveExecutable('tool', ''), 'NotFound', 'ENOENT', 'tool');
});

test('resolveExecutable checks a path with a slash as given, without searching', (t) => {
  const make = scratch(t);
  const good = make('bin/tool', 'exec');
  const noExec = make('bin/data', 'file');
  const dir = make('bin/sub', 'dir');
  t.is(resolveExecutable(good, '/nonexistent'), good);
  agentError(t, () => resolveExecutable(noExec, join(good, '..')), 'PermissionDenied', 'EACCES', noExec);
  agentError(t, () => resolveExecutable(dir, join(good, '..')), 'PermissionDenied', 'EACCES', dir);
  agentError(t, () => resolveExecutable(join(dir, 'missing'), join(good, '..')), 'NotFound', 'ENOENT', join(dir, 'missing'));
  agentError(t, () => resolveExecutable(join(good, 'x'), join(good, '..')), 'NotFound', 'ENOTDIR', join(good, 'x'));
});

test('resolveExecutable takes relative programs from the child cwd and returns an absolute path', (t) => {
  const root = tempDir('pidfd-agent-rel-');
  mkdirSync(join(root, 'bin'));
  writeFileSync(join(root, 'bin', 'tool'), '#!/bin/sh\n');
  chmodSync(join(root, 'bin', 'tool'), 0o755);
  t.is(resolveExecutable('bin/tool', '/nonexistent', root), join(root, 'bin', 'tool'));
  t.is(resolveExecutable('tool', 'bin', root), join(root, 'bin', 'tool'), 'a relative PATH entry too');
  const e = t.throws(() => resolveExecutable('bin/tool', '/nonexistent', '/'));
  t.is((e as { kind?: string }).kind, 'NotFound');
});

test('parseConfig rejects empty, non-decimal and out-of-range values, naming the flag', (t) => {
  for (const [args, flag] of [
    [['--retention-ttl', 'forever'], '--retention-ttl'],
    [['--retention-ttl='], '--retention-ttl'],
    [['--retention-max='], '--retention-max'],
    [['--retention-max', '0x10'], '--retention-max'],
    [['--event-ring', '1e3'], '--event-ring'],
    [['--tcp', '99999'], '--tcp'],
    [['--tcp', '127.999.0.1:80'], '--tcp'],
  ] as const) {
    const e = t.throws(() => parseConfig([...args]), { instanceOf: ConfigError });
    t.true(e!.message.startsWith(`${flag}:`), e!.message);
  }
  t.deepEqual(parseConfig(['--tcp', '127.0.0.2:8080']).listen, ['127.0.0.2:8080']);
  const tls = parseConfig(['--tcp', '0.0.0.0:7443', '--tcp', '[::]:7443', '--tls-cert', '/c', '--tls-key', '/k', '--tls-client-ca', '/ca', '--policy', '/p']);
  t.deepEqual(tls.listen, ['0.0.0.0:7443', '[::]:7443'], 'with TLS any address is served');
  t.deepEqual(tls.tls, { cert: '/c', key: '/k', clientCa: '/ca' });
});
