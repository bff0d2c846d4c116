// Random and mutated messages to every RPC of AgentService, as raw bytes over a generic grpc-js
// client (byte mutations of valid encodings, and a quarter of them value mutations that still
// decode, to reach validation and the domain): every reply must be a status the caller can act on (never INTERNAL or UNKNOWN) or a
// message that decodes, and the agent must come out of it serving, with its fds and memory back.
// Spawn and Adopt run what decodes with argv, cwd, output paths and pid pinned to harmless values
// (everything else as mutated): the fuzz must not run random programs or write random files as root.
import { spawn as spawnChild } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { credentials, makeGenericClientConstructor, Metadata, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import test from 'ava';
import { AgentCallError } from '../clients/ts/src/index.js';
import * as api from '../clients/ts/src/gen/pidfd/agent/v1/agent.js';
import { AgentServiceService } from '../clients/ts/src/gen/pidfd/agent/v1/agent.js';
import { openFdCount } from '../src/kernel/fd.js';
import { cgroup2Mount } from '../src/process/spawn/cgroups.js';
import { eventually, startHarness, tempDir, tryRmdir, type Harness } from './helpers/harness.js';

const WARMUP = 2_000;
const MESSAGES = 10_400;
const CONCURRENCY = 48;
/** Long enough for any answer the agent gives at once; Wait, Watch and follow end here. */
const SHORT_DEADLINE_MS = 300;
/** A hung call, not a slow one: at load 90 (other sessions' benches) a prompt answer took over 10 s. */
const DEADLINE_MS = 30_000;
/** The RPCs that wait by design (for an exit, events, output, or a full stdin pipe). */
const MAY_BLOCK = new Set(['wait', 'watch', 'readOutput', 'stop', 'writeStdin']);
/**
 * After the agent let go of everything: a few fds of grpc-js sessions; in RSS, what malloc arenas
 * and V8 keep between rounds after a full GC (measured here: +20 to +45 MiB over the warmed-up
 * baseline, and flat over four successive rounds, so not a leak). A leak of 10 KiB per message
 * would exceed it.
 */
const FD_TOLERANCE = 4;
const RSS_TOLERANCE_BYTES = 96 * 1024 * 1024;

type Method = (typeof AgentServiceService)[keyof typeof AgentServiceService];
/** Each RPC's request type, for seeds built from partial values. */
const messages = {
  spawn: api.SpawnRequest, adopt: api.AdoptRequest, signal: api.SignalRequest, wait: api.WaitRequest, watch: api.WatchRequest,
  get: api.GetRequest, list: api.ListRequest, release: api.ReleaseRequest, stop: api.StopRequest, listThreads: api.ListThreadsRequest,
  readOutput: api.ReadOutputRequest, writeStdin: api.WriteStdinRequest, closeStdin: api.CloseStdinRequest,
  resizeTerminal: api.ResizeTerminalRequest,
  spawnBatch: api.SpawnBatchRequest,
};
const methods = Object.entries(AgentServiceService) as [string, Method][];

/** A deterministic generator (mulberry32), so a failure can be replayed from its seed. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, bytes: (n: number) => Buffer.from(Array.from({ length: n }, () => int(256))) };
}
type Random = ReturnType<typeof random>;

const varint = (v: bigint) => {
  const w = new BinaryWriter();
  w.uint64(v);
  return Buffer.from(w.finish());
};

/** One mutation of a valid encoding: bit flips, truncation, extension, varint garbage, huge lengths. */
function mutate(r: Random, seed: Buffer): Buffer {
  const b = Buffer.from(seed);
  const at = (len: number) => r.int(len + 1);
  switch (r.int(7)) {
    case 0: {
      for (let i = 1 + r.int(8); i > 0 && b.length > 0; i--) {
        const p = r.int(b.length);
        b[p] = b[p]! ^ (1 << r.int(8));
      }
      return b;
    }
    case 1:
      return b.subarray(0, r.int(b.length + 1));
    case 2:
      return Buffer.concat([b, r.bytes(1 + r.int(32))]);
    case 3: {
      const p = at(b.length);
      return Buffer.concat([b.subarray(0, p), Buffer.alloc(1 + r.int(12), 0xff), b.subarray(p)]);
    }
    case 4: {
      // A length-delimited field (number 1-20) claiming far more bytes than follow.
      const p = at(b.length);
      const tag = varint(BigInt(((1 + r.int(20)) << 3) | 2));
      const len = varint([0x7fffffffn, 0xffffffffn, 2n ** 63n, BigInt(b.length + 1 + r.int(1000))][r.int(4)]!);
      return Buffer.concat([b.subarray(0, p), tag, len, b.subarray(p)]);
    }
    case 5: {
      // A field with a random number and wire type (including the invalid 6 and 7, and groups).
      const tag = varint(BigInt(r.int(1 << 20) * 8 + r.int(8)));
      return Buffer.concat([b, tag, r.bytes(r.int(12))]);
    }
    default:
      return r.bytes(r.int(160));
  }
}

// Large enough to cross the agent's own limits (128 KiB strings, 4096 items), small enough that the
// fuzz stays a fuzz and not a flood (which the HTTP/2 layer answers with refused streams).
const SHORT_STRINGS = ['', '\0', '../../..', '-1', '4294967295', 'SIGKILL', '\u{10ffff}\ud800', '=', 'a'.repeat(300)];
const EXTREME_STRINGS = [...SHORT_STRINGS, 'x'.repeat(200_000)];
const EXTREME_NUMBERS = [0, -1, 1, 2 ** 31 - 1, -(2 ** 31), 2 ** 32, 2 ** 53 - 1, -(2 ** 53 - 1), 1e9, 0.5, NaN];

/** One field of the decoded seed set to an extreme value, or an extreme element or entry added. */
function extreme(r: Random, value: unknown): unknown {
  if (typeof value === 'string') return r.int(2) ? EXTREME_STRINGS[r.int(EXTREME_STRINGS.length)] : r.bytes(r.int(64)).toString('latin1');
  if (typeof value === 'number') return EXTREME_NUMBERS[r.int(EXTREME_NUMBERS.length)];
  if (typeof value === 'boolean') return !value;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return r.int(2) ? r.bytes(r.int(16)) : Buffer.alloc(300_000, 0x61);
  if (Array.isArray(value)) return value.length > 0 && r.int(2) ? value.map((v) => extreme(r, v)) : [...value, ...Array.from({ length: r.int(2) ? 1 : 5000 }, () => SHORT_STRINGS[r.int(SHORT_STRINGS.length)])];
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (keys.length === 0 || r.int(4) === 0) return { ...value, [EXTREME_STRINGS[r.int(EXTREME_STRINGS.length)]!]: EXTREME_STRINGS[r.int(EXTREME_STRINGS.length)] };
    const key = keys[r.int(keys.length)]!;
    return { ...value, [key]: extreme(r, (value as Record<string, unknown>)[key]) };
  }
  return value;
}

/** A seed with values changed rather than bytes: decodable, so it reaches validation and the domain. */
function mutateValue(r: Random, type: { decode(b: Buffer): unknown; encode(m: never): { finish(): Uint8Array } }, seed: Buffer): Buffer | undefined {
  try {
    return Buffer.from(type.encode(extreme(r, type.decode(seed)) as never).finish());
  } catch {
    return undefined; // a value the encoder refuses (an int32 out of range): a byte mutation instead
  }
}

let h: Harness;
let client: Client;
let dir: string;
const mount = cgroup2Mount();
const parent = mount === undefined ? undefined : join(mount, `pidfd-agent-fuzz-${process.pid}`);

test.before(async () => {
  h = await startHarness({ cgroupParent: parent });
  dir = tempDir('pidfd-agent-fuzz-');
  const definition = Object.fromEntries(
    methods.map(([name, m]) => [
      name,
      { path: m.path, requestStream: false, responseStream: m.responseStream, requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b, responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b },
    ]),
  );
  const Generic = makeGenericClientConstructor(definition, 'AgentService');
  client = new Generic(h.address, credentials.createInsecure());
});
test.after.always(async () => {
  client?.close();
  await h?.close();
  if (parent !== undefined) tryRmdir(parent);
});

// Garbage is not a leak: both RSS readings are taken after a full collection.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const rssBytes = () => (gc(), gc(), rssOf());
const rssOf = () => Number(/^VmRSS:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;

interface Outcome {
  code: status | 'ok';
  detail?: string;
  reason?: string;
}

const failed = (e: ServiceError): Outcome => ({ code: e.code, detail: e.details, reason: new AgentCallError(e).reason });

/** One call with raw bytes; the reply as a status, or ok when every message decoded. */
function call(method: Method, name: string, bytes: Buffer): Promise<Outcome> {
  const deadline = Date.now() + (MAY_BLOCK.has(name) ? SHORT_DEADLINE_MS : DEADLINE_MS);
  const decodes = (b: Buffer) => {
    try {
      method.responseDeserialize(b);
      return true;
    } catch {
      return false;
    }
  };
  return new Promise((resolve) => {
    if (method.responseStream) {
      const stream = client.makeServerStreamRequest(method.path, (b: Buffer) => b, (b: Buffer) => b, bytes, new Metadata(), { deadline });
      let bad: string | undefined;
      stream.on('data', (b: Buffer) => {
        if (!decodes(b)) bad = b.toString('hex');
      });
      stream.on('error', (e: ServiceError) => resolve(failed(e)));
      stream.on('end', () => resolve(bad === undefined ? { code: 'ok' } : { code: status.UNKNOWN, detail: `undecodable reply ${bad}` }));
      return;
    }
    client.makeUnaryRequest(method.path, (b: Buffer) => b, (b: Buffer) => b, bytes, new Metadata(), { deadline }, (e, b) => {
      if (e) resolve(failed(e));
      else resolve(decodes(b!) ? { code: 'ok' } : { code: status.UNKNOWN, detail: `undecodable reply ${b!.toString('hex')}` });
    });
  });
}

test('ten thousand random and mutated messages to every RPC: no INTERNAL, no crash, nothing leaked', async (t) => {
  t.timeout(120_000);
  const seed = Number(process.env['FUZZ_SEED'] ?? Date.now() % 2 ** 31);
  t.log(`FUZZ_SEED=${seed}`);
  const r = random(seed);
  const victim = spawnChild('sleep', ['120'], { stdio: 'ignore' });
  t.teardown(() => victim.kill('SIGKILL'));
  const outFile = join(dir, 'out.txt');
  const { process: target } = await h.client.spawn({ argv: ['cat'], stdin: 2, stdout: { mode: 4 }, labels: { fuzz: 'target' } });
  await h.client.writeStdin({ handle: target!.handle, data: Buffer.from('hello\n') });
  const handle = target!.handle;
  const bogus = 'aaaaaaaaaaaaaaaaaaaaaaaaaa';

  const S = AgentServiceService;
  const enc = (name: keyof typeof messages, value: object) => {
    const type = messages[name] as unknown as { fromPartial(v: object): unknown; encode(m: unknown): { finish(): Uint8Array } };
    return Buffer.from(type.encode(type.fromPartial(value)).finish());
  };
  const seeds: Record<string, Buffer[]> = {
    spawn: [
      enc('spawn', { argv: ['true'] }),
      enc('spawn', {
        argv: ['true'], env: { A: '1', LD_PRELOAD: '/nonexistent.so' }, user: 'nobody', group: 'nogroup', groups: ['1', 'adm'], umask: 0o22, noNewPrivs: true,
        parentDeathSignal: 'TERM', rlimits: [{ resource: 'NOFILE', soft: 100, hard: 200, unlimited: false }], cgroup: { create: true, pidsMax: '10', path: '', memoryMax: '', cpuMax: '' },
        timeout: { seconds: 5, nanos: 0 }, grace: { seconds: 1, nanos: 5 }, killSignal: 'KILL', labels: { fuzz: 'spawned' }, requestId: 'r-1', stdin: 2,
        stdout: { mode: 4, path: '', append: false, ringBytes: 4096 }, stderr: { mode: 2, path: outFile, append: true, ringBytes: 0 }, outputEvents: true, cwd: dir, envMode: 2, newSession: true,
      }),
    ],
    adopt: [enc('adopt', { pid: victim.pid!, labels: { fuzz: 'adopted' }, requestId: 'a-1', expectedStartTime: 1, expectedPidfsInode: 2 }), enc('adopt', { pid: 1 })],
    signal: [enc('signal', { handle, signal: 'SIGCONT', target: 1, tid: 0 }), enc('signal', { handle: bogus, signal: '18', target: 3, tid: 1 })],
    wait: [enc('wait', { handle, timeout: { seconds: 0, nanos: 1_000_000 } })],
    watch: [enc('watch', { handles: [handle], labels: { fuzz: 'target' }, afterSequence: 0 })],
    get: [enc('get', { handle })],
    list: [enc('list', { labels: { fuzz: 'target' }, state: 1 })],
    release: [enc('release', { handle: bogus })],
    stop: [enc('stop', { handle: bogus, signal: 'TERM', grace: { seconds: 1, nanos: 0 }, processGroup: true })],
    listThreads: [enc('listThreads', { handle })],
    readOutput: [enc('readOutput', { handle, stream: 1, offset: 2, follow: true })],
    writeStdin: [enc('writeStdin', { handle, data: Buffer.from('x') })],
    closeStdin: [enc('closeStdin', { handle: bogus })],
    resizeTerminal: [enc('resizeTerminal', { handle, size: { rows: 24, cols: 80 } }), enc('resizeTerminal', { handle: bogus, size: { rows: 0, cols: 70000 } })],
    // One process per batch at most (the second one replays), as a Spawn seed starts one.
    spawnBatch: [enc('spawnBatch', { requests: [{ argv: ['true'], labels: { fuzz: 'batch' }, releaseOnExit: true }, { argv: [] }] }), enc('spawnBatch', { requests: [{ argv: ['true'], requestId: 'b-1' }] })],
  };
  t.deepEqual(Object.keys(seeds).sort(), methods.map(([n]) => n).sort(), 'a seed for every RPC');

  // int64 values that are valid protobuf but beyond 2^53: INVALID_ARGUMENT like any other refusal.
  const uint64Field = (field: number, value: bigint) => Buffer.from(new BinaryWriter().uint32(field << 3).uint64(value).finish());
  const crafted: [string, Buffer][] = [
    ['wait', enc('wait', { handle, timeout: { seconds: 2 ** 60 } })],
    ['stop', enc('stop', { handle: bogus, grace: { seconds: 2 ** 53 } })],
    ['watch', uint64Field(3, 2n ** 64n - 1n)],
    ['readOutput', uint64Field(3, 2n ** 63n)],
    ['adopt', enc('adopt', { pid: victim.pid!, expectedStartTime: 2 ** 62 })],
    ['spawn', enc('spawn', { argv: ['true'], rlimits: [{ resource: 'NOFILE', soft: 2 ** 62 }] })],
    ['spawn', enc('spawn', { argv: ['true'], rlimits: [{ resource: 'NOFILE', soft: -(2 ** 60) }] })],
  ];

  const counts = new Map<string, number>();
  const failures: string[] = [];
  const record = (name: string, bytes: Buffer, o: Outcome) => {
    const key = `${name} ${o.code === 'ok' ? 'OK' : status[o.code]}${o.reason === 'UNDECODABLE' ? ' (UNDECODABLE)' : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    const hung = o.code === status.DEADLINE_EXCEEDED && !MAY_BLOCK.has(name);
    if (o.code === status.INTERNAL || o.code === status.UNKNOWN || o.code === status.UNAVAILABLE || hung) {
      if (failures.length < 20) failures.push(`${key}: ${o.detail} ← ${bytes.toString('hex')}`);
    }
  };

  for (const [name, bytes] of crafted) {
    const o = await call(S[name as keyof typeof S], name, bytes);
    t.is(o.code, status.INVALID_ARGUMENT, `${name} with an int64 beyond 2^53: ${o.detail}`);
    t.is(o.reason, 'UNDECODABLE');
    record(name, bytes, o);
  }

  const round = async (count: number) => {
    let sent = 0;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (sent < count) {
          sent++;
          const [name, method] = methods[r.int(methods.length)]!;
          const seed = seeds[name]![r.int(seeds[name]!.length)]!;
          const mutated = (r.int(4) === 0 && mutateValue(r, messages[name as keyof typeof messages], seed)) || mutate(r, seed);
          const bytes = harmless(name, method, mutated, { dir, outFile, victim: victim.pid! });
          record(name, bytes, await call(method, name, bytes));
        }
      }),
    );
    t.log(`${sent} messages in ${Date.now() - started} ms`);
  };
  /** Everything the fuzz started or adopted is let go: what a leak would keep is what remains. */
  const letGo = async (keep: string | undefined) => {
    for (const p of (await h.client.list()).processes) {
      if (p.handle === keep) continue;
      if (p.state === 1 && !p.adopted) await h.client.signal({ handle: p.handle, signal: 'KILL' }).catch(() => undefined);
      if (!p.adopted) await h.client.wait({ handle: p.handle }, { deadline: 5000 }).catch(() => undefined);
      await h.client.release({ handle: p.handle }).catch(() => undefined);
    }
    await eventually('only the target left in the table', async () => (await h.client.list()).processes.every((p) => p.handle === keep));
  };

  // A first round grows the allocators, pools and caches to their working size; the second, the
  // one measured, must not grow them further.
  await round(WARMUP);
  await letGo(handle);
  const fdBaseline = openFdCount();
  const rssBaseline = rssBytes();
  await round(MESSAGES);
  t.log([...counts].sort().map(([k, v]) => `${k}: ${v}`).join(', '));
  t.deepEqual(failures, [], 'no INTERNAL, UNKNOWN or UNAVAILABLE, and no call that should answer at once hung');
  t.deepEqual(h.logs.filter((l) => l.event === 'internal_error'), []);
  await letGo(handle);
  await eventually(`fds back near ${fdBaseline}`, () => openFdCount() <= fdBaseline + FD_TOLERANCE, 15_000);
  const rss = rssBytes();
  t.log(`fds ${fdBaseline} → ${openFdCount()}, RSS ${(rssBaseline / 2 ** 20).toFixed(0)} → ${(rss / 2 ** 20).toFixed(0)} MiB`);
  t.true(rss <= rssBaseline + RSS_TOLERANCE_BYTES, `RSS grew by ${((rss - rssBaseline) / 2 ** 20).toFixed(0)} MiB`);

  // The agent still serves.
  await letGo(undefined);
  const { process: after } = await h.client.spawn({ argv: ['sh', '-c', 'exit 3'] });
  t.is((await h.client.wait({ handle: after!.handle })).process!.exit!.code, 3, 'the agent still spawns and reaps');
  await h.client.release({ handle: after!.handle });
});

/**
 * What a decodable Spawn or Adopt would do, pinned to something harmless: argv `true`, cwd and
 * FILE outputs inside the fuzz dir, Adopt of our own sleeping child or of a PID that is refused.
 * Bytes that do not decode are sent as they are (the agent decodes with the same code).
 */
function harmless(name: string, method: Method, bytes: Buffer, ctx: { dir: string; outFile: string; victim: number }): Buffer {
  if (name !== 'spawn' && name !== 'adopt' && name !== 'spawnBatch') return bytes;
  let req: Record<string, unknown>;
  try {
    req = method.requestDeserialize(bytes) as unknown as Record<string, unknown>;
  } catch {
    return bytes;
  }
  if (name === 'adopt') {
    const allowed = [ctx.victim, 1, 2, 0, -1, 4_000_000, process.pid];
    return req['pid'] === ctx.victim || allowed.includes(req['pid'] as number) ? bytes : Buffer.from(api.AdoptRequest.encode({ ...(req as unknown as api.AdoptRequest), pid: allowed[Math.abs(req['pid'] as number) % allowed.length]! }).finish());
  }
  const safeOutput = (o: unknown) => (o && typeof o === 'object' && (o as { path?: string }).path ? { ...(o as object), path: ctx.outFile } : o);
  const pin = (req: Record<string, unknown>) => {
    const argv = req['argv'] as string[];
    return { ...req, argv: argv.length === 1 && argv[0] === 'true' ? argv : ['true'], cwd: req['cwd'] ? ctx.dir : req['cwd'], stdout: safeOutput(req['stdout']), stderr: safeOutput(req['stderr']) };
  };
  // Each item of a batch is a Spawn, pinned the same way.
  if (name === 'spawnBatch') return Buffer.from(api.SpawnBatchRequest.encode({ requests: (req['requests'] as Record<string, unknown>[]).map(pin) } as unknown as api.SpawnBatchRequest).finish());
  return Buffer.from(api.SpawnRequest.encode(pin(req) as unknown as api.SpawnRequest).finish());
}
