// The floor agent of bench/floor.ts: the agent's own API (its generated service definition, the
// same grpc-js, a unix socket) with nothing but the work the bench's cycles need. Spawn goes
// through the agent's own spawner threads (dist/src/kernel/spawn.js, as a default-stdio Spawn of
// the agent does), exits come from the agent's own pidfd epoll reaper (dist/src/reaper/reaper.js);
// the rest is a Map from handle to record. No store, no authorization, no event ring or resume,
// no telemetry, no limits, no validation, no usage read on Get, no SPAWNED/RELEASED events.
// Plain JavaScript on purpose (like peers/child-process.mjs): run by plain node, as the agent is,
// with no loader in the process measured.
//
//   node bench/floor-server.mjs --repo DIR --listen unix:///path/agent.sock   (other flags ignored)
import { Server, ServerCredentials, status } from '@grpc/grpc-js';
import { constants } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values: opt } = parseArgs({ options: { listen: { type: 'string' }, repo: { type: 'string' } }, strict: false, allowPositionals: true });
const repo = resolve(String(opt.repo ?? '.'));
const fromDist = (rel) => import(pathToFileURL(join(repo, 'dist', rel)).href);
const api = await fromDist('src/api.js');
const kernelSpawn = await fromDist('src/kernel/spawn.js');
const { EpollReaper } = await fromDist('src/reaper/reaper.js');

kernelSpawn.useSpawnShim(join(repo, 'dist/lib/libpidfd-spawn.so'));

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const ENVP = [`PATH=${PATH}`];
const OWNER = `unix:uid=${process.getuid?.() ?? 0}`;
const NULL_STDIO = [{ kind: 'null' }, { kind: 'null' }, { kind: 'null' }];
const signalNames = Object.fromEntries(Object.entries(constants.signals).map(([k, v]) => [v, k]));

/** handle → { handle, ref, pid, inode, argv, startedAt, exit, waiters } */
const records = new Map();
const byRef = new Map();
const watchers = new Set();
let nextHandle = 0;
let sequence = 0;

const micros = (us) => ({ seconds: Math.floor(us / 1e6), nanos: (us % 1e6) * 1000 });

// The same fields the agent fills (a 26-character handle, owner, pidfs inode, exit with rusage), so
// the messages weigh the same on the wire.
function processOf(r) {
  return {
    handle: r.handle,
    pid: r.pid,
    state: r.exit ? api.State.STATE_EXITED : api.State.STATE_RUNNING,
    argv: r.argv,
    labels: {},
    startedAt: new Date(r.startedAt),
    exit: r.exit,
    adopted: false,
    pidfsInode: Number(r.inode),
    owner: OWNER,
    usage: undefined,
  };
}

function exitOf({ termination: t, rusage: u }) {
  return {
    code: t?.exitCode,
    signal: t?.signal,
    signalName: t?.signal === undefined ? '' : (signalNames[t.signal] ?? ''),
    coreDumped: t?.signal !== undefined && t.coreDumped,
    exitedAt: new Date(),
    rusage: u && {
      userCpu: micros(u.userMicros),
      systemCpu: micros(u.systemMicros),
      maxRssKib: u.maxRssKib,
      minorFaults: u.minorFaults,
      majorFaults: u.majorFaults,
      voluntaryContextSwitches: u.voluntaryContextSwitches,
      involuntaryContextSwitches: u.involuntaryContextSwitches,
    },
    reason: api.ExitReason.EXIT_REASON_EXITED,
    statusLost: false,
    reclaimTime: undefined,
  };
}

/** One reaper drain: every exit recorded, its waiters answered, one Watch message for all. */
function onExits(exits) {
  const events = [];
  for (const e of exits) {
    const r = byRef.get(e.ref);
    byRef.delete(e.ref);
    e.ref.close();
    if (r === undefined) continue;
    r.ref = undefined;
    r.exit = exitOf(e);
    const process = processOf(r);
    for (const w of r.waiters) w(null, { process });
    r.waiters.length = 0;
    events.push({ sequence: ++sequence, type: api.EventType.EVENT_TYPE_EXITED, time: new Date(), process, output: undefined });
  }
  if (events.length > 0) for (const call of watchers) call.write({ events });
}

const reaper = new EpollReaper(onExits, (e) => console.error('floor reaper:', e));

const notFound = (handle) => ({ code: status.NOT_FOUND, details: `no process ${handle}` });

const service = {
  spawn(call, callback) {
    const argv = call.request.argv;
    // The bench's argv[0] is always a path (/bin/true, /bin/sleep): no PATH search here.
    const path = argv[0] ?? '';
    kernelSpawn
      .spawnAsync({ path: path.includes('/') ? path : `/usr/bin/${path}`, argv, envp: ENVP, stdio: NULL_STDIO, newSession: call.request.newSession ?? true })
      .then(
        ({ ref }) => {
          const handle = String(++nextHandle).padStart(26, 'a');
          const r = { handle, ref, pid: ref.pid, inode: ref.inode, argv, startedAt: Date.now(), exit: undefined, waiters: [] };
          records.set(handle, r);
          byRef.set(ref, r);
          reaper.watch(ref, 'child');
          callback(null, { process: processOf(r), replayed: false });
        },
        (e) => callback({ code: status.INTERNAL, details: String(e) }),
      );
  },
  wait(call, callback) {
    const r = records.get(call.request.handle);
    if (r === undefined) return callback(notFound(call.request.handle));
    if (r.exit) return callback(null, { process: processOf(r) });
    r.waiters.push(callback);
  },
  get(call, callback) {
    const r = records.get(call.request.handle);
    if (r === undefined) return callback(notFound(call.request.handle));
    callback(null, { process: processOf(r) });
  },
  signal(call, callback) {
    const r = records.get(call.request.handle);
    if (r === undefined) return callback(notFound(call.request.handle));
    const name = call.request.signal.replace(/^SIG/, '') || 'TERM';
    const signal = constants.signals[`SIG${name}`];
    if (signal === undefined) return callback({ code: status.INVALID_ARGUMENT, details: `no signal ${name}` });
    try {
      if (r.ref) r.ref.signal(signal);
      callback(null, { signal, signalName: `SIG${name}`, reclaimTime: undefined });
    } catch (e) {
      callback({ code: status.FAILED_PRECONDITION, details: String(e) });
    }
  },
  release(call, callback) {
    const r = records.get(call.request.handle);
    if (r === undefined) return callback(notFound(call.request.handle));
    if (r.ref) return callback({ code: status.FAILED_PRECONDITION, details: 'still running' });
    records.delete(r.handle);
    callback(null, {});
  },
  list(_call, callback) {
    callback(null, { processes: [], sequence });
  },
  watch(call) {
    watchers.add(call);
    const gone = () => watchers.delete(call);
    call.on('cancelled', gone);
    call.on('close', gone);
    call.on('error', gone);
  },
};

const server = new Server({
  'grpc.max_receive_message_length': 4 * 1024 * 1024,
  'grpc.max_send_message_length': 4 * 1024 * 1024,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.max_concurrent_streams': 1024,
  'grpc.enable_channelz': 0,
});
server.addService(api.AgentServiceService, service);
const address = String(opt.listen ?? '');
if (!address.startsWith('unix://')) throw new Error('usage: floor-server.mjs --repo DIR --listen unix:///path');
await new Promise((res, rej) => server.bindAsync(`unix:${address.slice('unix://'.length)}`, ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));

process.once('SIGTERM', () => {
  server.forceShutdown();
  reaper.close();
  process.exit(0);
});
