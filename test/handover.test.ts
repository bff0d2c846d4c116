// Issue 5, part 4: a new agent on the same state dir takes over from the running one. The old one
// hands over its pidfds, pipes and event history over STATE_DIR/handover.sock and exits; nothing
// is lost or reported twice. Agents run under the C subreaper, which reaps what the old one leaves.
import test from 'ava';
import { execFileSync, spawn as spawnChild } from 'node:child_process';
import { credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentCallError, AgentClient, EventType, ExitReason, State, OutputMode, OutputStream, StdinMode, status, type Event } from '../clients/ts/src/index.js';
import { connectFdSocket, useFdPassing } from '../src/kernel/fd-passing.js';
import { closeFd } from '../src/kernel/fd.js';
import { HANDOVER_SOCKET } from '../src/handover/outgoing.js';
import { HANDOVER_PROTOCOL } from '../src/handover/snapshot.js';
import { receiveSnapshot, sendTagged } from '../src/handover/wire.js';
import { STORE_SCHEMA } from '../src/store/sqlite-store.js';
import { AGENT_BIN, ROOT } from './helpers/agent-process.js';
import { pool, range } from './helpers/events.js';
import { agentDir, eventually, sleep } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
const dirs: string[] = [];
const fixtures = mkdtempSync(join(tmpdir(), 'pidfd-agent-handover-bin-'));
const EXIT_AT = join(fixtures, 'exit-at');
execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', EXIT_AT, join(ROOT, 'test/fixtures/exit-at.c')]);
dirs.push(fixtures);
test.after.always(async () => {
  await reaper.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const tempDir = () => agentDir('pidfd-agent-handover-');

/** Everything a process's stdout captured so far. */
async function stdoutOf(client: AgentClient, handle: string): Promise<string> {
  let text = '';
  for await (const r of client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) text += Buffer.from(r.data).toString();
  return text;
}

/** Writes `data` to a cat's stdin, closes it, waits for the exit: what it printed. */
async function lastWords(client: AgentClient, handle: string, data: string): Promise<string> {
  await client.writeStdin({ handle, data: Buffer.from(data) });
  await client.closeStdin({ handle });
  await client.wait({ handle });
  return stdoutOf(client, handle);
}

const isUnavailable = (e: unknown): e is AgentCallError => e instanceof AgentCallError && e.code === status.UNAVAILABLE;

/**
 * A Watch that survives the switch like a client should: when its stream ends it reconnects
 * (a new channel, retrying while nobody serves) from the last sequence it saw.
 */
async function watchAcross(address: string, after: number, done: (events: Event[]) => boolean, ends: AgentCallError[]): Promise<Event[]> {
  const events: Event[] = [];
  let cursor = after;
  const deadline = Date.now() + 120_000;
  while (!done(events)) {
    if (Date.now() > deadline) throw new Error(`watch: gave up after ${events.length} events`);
    const client = new AgentClient(address);
    try {
      for await (const e of client.watch({ afterSequence: cursor })) {
        events.push(e);
        cursor = e.sequence;
        if (done(events)) break;
      }
    } catch (e) {
      if (!isUnavailable(e)) throw e;
      ends.push(e);
      await sleep(10);
    } finally {
      client.close();
    }
  }
  return events;
}

test.serial('under load: every exit is reported once with its code, the sequence has no gap, a reconnecting watcher misses nothing', async (t) => {
  t.timeout(180_000);
  const { dir, stateDir, address } = tempDir();
  const old = await RestartableAgent.start(reaper, dir, stateDir, [], true);
  const N = 3000;
  // Three groups wait on FIFOs; opening one for writing releases its group at once, and process i
  // exits i ms after that: one exit per millisecond. The first 1,000 are released before the
  // switch (the old agent has reported the first of them when it starts), the next 1,800 as the
  // successor is started (they exit during the switch), the last 200 once it serves: on a machine
  // slow enough for the switch to outlast the middle group, both agents still report exits.
  const groups = [
    { fifo: join(dir, 'before'), from: 0 },
    { fifo: join(dir, 'during'), from: 1000 },
    { fifo: join(dir, 'after'), from: 2800 },
  ];
  const groupOf = (i: number) => groups.findLast((g) => i >= g.from)!;
  for (const g of groups) execFileSync('mkfifo', [g.fifo]);
  const ends: AgentCallError[] = [];
  const handles: string[] = [];
  const watching = watchAcross(address, 0, (events) => events.filter((e) => e.type === EventType.EVENT_TYPE_EXITED).length >= N, ends);
  await pool(range(N), 16, async (i) => {
    const g = groupOf(i);
    const { process } = await old.client.spawn({ argv: [EXIT_AT, g.fifo, String(i - g.from), String(i % 256)], labels: { i: String(i) } });
    handles[i] = process!.handle;
  });
  // Each kept open, so that a process still on its way to open() is released too.
  const release = (g: { fifo: string }) => {
    const go = openSync(g.fifo, 'w');
    t.teardown(() => closeSync(go));
  };
  release(groups[0]!);
  await old.client.wait({ handle: handles[0]! });
  const switching = RestartableAgent.takeOver(reaper, dir, stateDir, old);
  release(groups[1]!);
  const { agent, oldEnded } = await switching;
  t.teardown(() => agent.stop());
  release(groups[2]!);
  t.is(oldEnded, 'exit 0', 'the old agent exits once it has handed over');
  const events = await watching;

  for (let k = 1; k < events.length; k++) t.is(events[k]!.sequence, events[k - 1]!.sequence + 1, `no gap or repeat at ${events[k - 1]!.sequence}`);
  t.is(events[0]!.sequence, 1);
  const exited = events.filter((e) => e.type === EventType.EVENT_TYPE_EXITED);
  t.is(exited.length, N);
  t.is(new Set(exited.map((e) => e.process!.handle)).size, N, 'each exit once');
  const wrong = exited.filter((e) => e.process!.exit?.code !== Number(e.process!.labels.i) % 256 || e.process!.exit?.statusLost);
  t.deepEqual(wrong.map((e) => e.process!.labels.i), [], 'each with its own code, none lost');

  const taken = /"event":"taken_over".*?"sequence":(\d+)/.exec(reaper.stderr);
  t.truthy(taken, reaper.stderr);
  const switchedAt = Number(taken![1]);
  const before = exited.filter((e) => e.sequence <= switchedAt).length;
  t.log(`${before} exits reported by the old agent, ${N - before} by its successor; the watcher was ended ${ends.length}x (${ends[0]?.reason})`);
  t.true(before > 0 && before < N, 'both agents reported exits');
  t.true(ends.length >= 1 && ends[0]!.reason === 'HANDOVER', 'the old agent ended the watch with UNAVAILABLE/HANDOVER');
  const handed = /"event":"handed_over"[^\n]*"ms":(\d+)/.exec(reaper.stderr);
  t.log(`the old agent took ${handed?.[1]} ms from the request to handing over`);

  const waits = await pool(handles, 32, (handle) => agent.client.wait({ handle }));
  t.true(waits.every((w, i) => w.process!.exit?.code === i % 256), 'Wait on the successor gives every code');
});

test.serial('captured output, stdin and output events continue across handovers, twice', async (t) => {
  const { dir, stateDir } = tempDir();
  const old = await RestartableAgent.start(reaper, dir, stateDir);
  const { process: cat } = await old.client.spawn({
    argv: ['/bin/cat'],
    stdin: StdinMode.STDIN_MODE_PIPE,
    stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE },
    outputEvents: true,
  });
  const handle = cat!.handle;
  const read = (client: AgentClient) => stdoutOf(client, handle);
  const { process: shut } = await old.client.spawn({ argv: ['/bin/sleep', '60'], stdin: StdinMode.STDIN_MODE_PIPE });
  // Captured, but nothing written before the switch: an empty ring is handed over too.
  const { process: quiet } = await old.client.spawn({ argv: ['/bin/cat'], stdin: StdinMode.STDIN_MODE_PIPE, stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  await old.client.closeStdin({ handle: shut!.handle });
  await old.client.writeStdin({ handle, data: Buffer.from('before\n') });
  await eventually('cat to echo', async () => (await read(old.client)) === 'before\n', 20_000);
  const waiting = old.client.wait({ handle }).then(
    () => 'answered',
    (e: unknown) => (e instanceof AgentCallError ? `${status[e.code]} ${e.reason}` : String(e)),
  );

  const { agent } = await RestartableAgent.takeOver(reaper, dir, stateDir, old);
  t.is(await waiting, 'UNAVAILABLE HANDOVER', 'a Wait in flight ends with UNAVAILABLE, to be retried on the successor');
  t.is(await read(agent.client), 'before\n', 'the successor has the bytes the old agent captured');
  const refused = await agent.client.writeStdin({ handle: shut!.handle, data: Buffer.from('x') }).catch((e: unknown) => e);
  t.true(refused instanceof AgentCallError && refused.code === status.FAILED_PRECONDITION && refused.reason === 'STDIN_CLOSED', 'a stdin closed before the switch stays closed');
  await agent.client.signal({ handle: shut!.handle, signal: 'SIGKILL' });
  t.is(await lastWords(agent.client, quiet!.handle, 'late\n'), 'late\n', 'a capture with nothing in it yet carries on too');
  await agent.client.writeStdin({ handle, data: Buffer.from('after\n') });
  await eventually('cat to echo again', async () => (await read(agent.client)) === 'before\nafter\n', 20_000);

  // And on to a third agent, which gets from the second what the second got from the first.
  const { agent: third } = await RestartableAgent.takeOver(reaper, dir, stateDir, agent, ['--quiet']);
  t.teardown(() => third.stop());
  await third.client.writeStdin({ handle, data: Buffer.from('third\n') });
  await third.client.closeStdin({ handle });
  const { process: done } = await third.client.wait({ handle });
  t.is(done!.exit?.code, 0, 'cat read end-of-file from the twice handed-over stdin and exited');
  t.is(await read(third.client), 'before\nafter\nthird\n');
  t.is(done!.owner, 'unix:uid=0', 'the owner is kept');

  const output: string[] = [];
  for await (const e of third.client.watch({ afterSequence: 0, handles: [handle] })) {
    if (e.type === EventType.EVENT_TYPE_OUTPUT) output.push(Buffer.from(e.output!.data).toString());
    if (e.type === EventType.EVENT_TYPE_EXITED) break;
  }
  t.deepEqual(output, ['before\n', 'after\n', 'third\n'], 'output events from all three agents, in one history');
});

/** A stream's whole ring as ReadOutput gives it from offset 0: the bytes, where they start, what was lost before. */
async function ringOf(client: AgentClient, handle: string, stream: OutputStream): Promise<{ offset: number; lost: number; data: Buffer }> {
  const parts: Buffer[] = [];
  let offset = -1;
  let lost = 0;
  for await (const r of client.readOutput({ handle, stream })) {
    if (offset < 0) offset = Number(r.offset);
    lost += Number(r.lostBytes);
    parts.push(Buffer.from(r.data));
  }
  return { offset, lost, data: Buffer.concat(parts) };
}

test.serial('rings that are full and wrapped are handed over byte for byte at their offsets, and go on from there', async (t) => {
  const { dir, stateDir } = tempDir();
  const old = await RestartableAgent.start(reaper, dir, stateDir);
  // Wrapped (2.5 rings, and exactly 2: the ring's start at its buffer's start), exactly full, half
  // full, and a few bytes; stdout and stderr of different sizes, random bytes, so that any
  // misplaced, repeated or shifted byte shows.
  const cases = [
    { ring: 64 * 1024, out: 160 * 1024 + 17, err: 2 * (64 * 1024 + 4096) },
    { ring: 100_000, out: 100_000, err: 250_001 },
    { ring: 256 * 1024, out: 128 * 1024 + 3, err: 700 },
    { ring: 1024 * 1024, out: 2.5 * 1024 * 1024 + 1, err: 3 * 1024 * 1024 },
  ];
  const handles = await pool(cases, 4, async (c) => {
    const { process } = await old.client.spawn({
      argv: ['/bin/sh', '-c', `head -c ${c.out} /dev/urandom; head -c ${c.err} /dev/urandom >&2; exec cat`],
      stdin: StdinMode.STDIN_MODE_PIPE,
      stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE, ringBytes: c.ring },
      stderr: { mode: OutputMode.OUTPUT_MODE_CAPTURE, ringBytes: c.ring + 4096 },
    });
    return process!.handle;
  });
  const streams = [OutputStream.OUTPUT_STREAM_STDOUT, OutputStream.OUTPUT_STREAM_STDERR] as const;
  // Everything written is in the rings once ReadOutput at its end is no longer OFFSET_AHEAD.
  const produced = (handle: string, stream: OutputStream, bytes: number) =>
    eventually('the output to be read', async () => {
      try {
        for await (const r of old.client.readOutput({ handle, stream, offset: bytes })) void r;
        return true;
      } catch {
        return false;
      }
    }, 20_000);
  await Promise.all(cases.flatMap((c, i) => [produced(handles[i]!, streams[0], c.out), produced(handles[i]!, streams[1], c.err)]));
  const before = await pool(cases.flatMap((_, i) => streams.map((s) => [handles[i]!, s] as const)), 4, ([h, s]) => ringOf(old.client, h, s));
  cases.forEach((c, i) => {
    for (const [k, written, ring] of [[0, c.out, c.ring], [1, c.err, c.ring + 4096]] as const) {
      const r = before[2 * i + k]!;
      const held = Math.min(written, ring);
      t.deepEqual({ offset: r.offset, lost: r.lost, bytes: r.data.length }, { offset: written - held, lost: written - held, bytes: held }, `process ${i} ${k === 0 ? 'stdout' : 'stderr'} before the handover`);
    }
  });

  const { agent, oldEnded } = await RestartableAgent.takeOver(reaper, dir, stateDir, old, ['--quiet']);
  t.teardown(() => agent.stop());
  t.is(oldEnded, 'exit 0');
  const after = await pool(cases.flatMap((_, i) => streams.map((s) => [handles[i]!, s] as const)), 4, ([h, s]) => ringOf(agent.client, h, s));
  before.forEach((b, j) => {
    const a = after[j]!;
    t.deepEqual({ offset: a.offset, lost: a.lost, bytes: a.data.length }, { offset: b.offset, lost: b.lost, bytes: b.data.length }, `ring ${j}: the same offsets`);
    t.true(a.data.equals(b.data), `ring ${j}: the same bytes`);
  });
  // Output after the switch lands right after the handed-over bytes, in the same ring.
  for (const [i, c] of cases.entries()) {
    await agent.client.writeStdin({ handle: handles[i]!, data: Buffer.from(`after ${i}\n`) });
    await eventually('cat to echo', async () => {
      let text = '';
      for await (const r of agent.client.readOutput({ handle: handles[i]!, stream: streams[0], offset: c.out })) text += Buffer.from(r.data).toString();
      return text === `after ${i}\n`;
    }, 20_000);
    const { offset, data } = await ringOf(agent.client, handles[i]!, streams[0]);
    const held = before[2 * i]!.data;
    const expected = Buffer.concat([held, Buffer.from(`after ${i}\n`)]);
    t.true(data.equals(expected.subarray(expected.length - data.length)), `process ${i}: the ring goes on from the handed-over bytes`);
    t.is(offset + data.length, c.out + `after ${i}\n`.length);
  }
  await pool(handles, 4, (handle) => agent.client.signal({ handle, signal: 'SIGKILL' }));
});

test.serial('spawns retried with their request_id during the switch start once; adopted processes and deadlines carry over', async (t) => {
  const { dir, stateDir, address } = tempDir();
  const old = await RestartableAgent.start(reaper, dir, stateDir);
  // Adopted: a child of this test process, so its exit is read through PIDFD_INFO_EXIT.
  const outsider = spawnChild('/bin/sleep', ['60'], { stdio: 'ignore' });
  const { process: adopted } = await old.client.adopt({ pid: outsider.pid! });
  const { process: timed } = await old.client.spawn({ argv: ['/bin/sleep', '60'], timeout: { seconds: 1, nanos: 500_000_000 } });
  const timedAt = Date.now();

  // A client that keeps spawning through the switch and retries UNAVAILABLE with the same key.
  let stop = false;
  let retries = 0;
  const started = new Map<string, string>();
  const spawner = (async () => {
    const client = new AgentClient(address);
    for (let k = 0; !stop; k++) {
      const requestId = `req-${k}`;
      for (;;) {
        try {
          const { process } = await client.spawn({ argv: ['/bin/true'], requestId }, { retry: false }); // this loop is the retry
          started.set(requestId, process!.handle);
          break;
        } catch (e) {
          if (!isUnavailable(e)) throw e;
          retries++;
          await sleep(5);
        }
      }
    }
    client.close();
  })();
  await sleep(300);
  const { agent } = await RestartableAgent.takeOver(reaper, dir, stateDir, old);
  t.teardown(() => agent.stop());
  await sleep(300);
  stop = true;
  await spawner;

  const { processes } = await agent.client.list({});
  const trues = processes.filter((p) => p.argv[0] === '/bin/true');
  t.is(trues.length, started.size, 'one process per request, although some requests were sent twice');
  t.deepEqual(trues.map((p) => p.handle).sort(), [...started.values()].sort());
  for (const [requestId, handle] of started) {
    const { process, replayed } = await agent.client.spawn({ argv: ['/bin/true'], requestId });
    if (process!.handle !== handle || !replayed) t.fail(`${requestId}: ${process!.handle} replayed=${replayed}, first ${handle}`);
  }
  t.log(`${started.size} spawns through the switch, ${retries} retried after UNAVAILABLE`);
  t.true(retries > 0, 'some spawns met the switch');

  outsider.kill('SIGTERM');
  const { process: a } = await agent.client.wait({ handle: adopted!.handle });
  t.is(a!.exit?.signal, 15, 'the adopted process exit is seen by the successor');
  const { process: d } = await agent.client.wait({ handle: timed!.handle });
  t.is(d!.exit?.reason, ExitReason.EXIT_REASON_TIMEOUT, 'the deadline was re-armed by the successor');
  t.is(d!.exit?.signal, 15);
  t.true(Date.now() - timedAt >= 1400, 'not before its time');
});

/** A grpc.health.v1 Watch left open: a stream the agent itself never ends. */
function openHealthWatch(address: string): { first: Promise<void>; ended: Promise<string>; close: () => void } {
  const identity = (b: Buffer) => b;
  const Health = makeGenericClientConstructor(
    { Watch: { path: '/grpc.health.v1.Health/Watch', requestStream: false, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity } },
    'Health',
  );
  const client = new Health(address, credentials.createInsecure()) as unknown as { Watch(req: Buffer): NodeJS.EventEmitter; close(): void };
  const call = client.Watch(Buffer.alloc(0));
  const first = new Promise<void>((resolve) => call.once('data', () => resolve()));
  const ended = new Promise<string>((resolve) => {
    call.on('error', (e: { code: number }) => resolve(status[e.code] ?? String(e.code)));
    call.on('end', () => resolve('end'));
  });
  return { first, ended, close: () => client.close() };
}

test.serial('a stream the agent does not end itself (a health Watch) holds neither a handover nor a SIGTERM stop', async (t) => {
  const { dir, stateDir } = tempDir();
  const old = await RestartableAgent.start(reaper, dir, stateDir);
  const first = openHealthWatch(`unix://${join(dir, 'agent.sock')}`);
  await first.first;
  const { agent, oldEnded } = await RestartableAgent.takeOver(reaper, dir, stateDir, old, ['--quiet']);
  t.is(oldEnded, 'exit 0', 'the old agent handed over and exited');
  t.truthy(await first.ended, 'and its health Watch was ended');
  first.close();
  const second = openHealthWatch(`unix://${join(dir, 'agent.sock')}`);
  await second.first;
  await reaper.kill(agent.pid, 15);
  t.is(await reaper.wait(agent.pid, 20_000), 'exit 0', 'SIGTERM stops the agent with the stream open');
  await second.ended;
  second.close();
  agent.client.close();
});

test.serial('a successor that fails halfway leaves the agent serving as before, with no descriptor lost or leaked', async (t) => {
  const { dir, stateDir } = tempDir();
  const old = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => old.stop());
  const { process: cat } = await old.client.spawn({ argv: ['/bin/cat'], stdin: StdinMode.STDIN_MODE_PIPE, stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  const { process: quick } = await old.client.spawn({ argv: ['/bin/sh', '-c', 'sleep 0.3; exit 7'] });
  const fdsBefore = readdirSync(`/proc/${old.pid}/fd`).length;

  useFdPassing(join(ROOT, 'dist/lib/libpidfd-fdpass.so'));
  const socket = connectFdSocket(join(stateDir, HANDOVER_SOCKET));
  sendTagged(socket, 'T', { protocol: HANDOVER_PROTOCOL, storeSchema: STORE_SCHEMA });
  const { fds } = await receiveSnapshot(socket, 30_000);
  t.is(fds.length, 4, 'two pidfds, stdin and stdout of cat');
  for (const fd of fds) closeFd(fd);
  try {
    await old.client.get({ handle: cat!.handle });
    t.fail('the agent is not serving while it hands over');
  } catch (e) {
    t.true(isUnavailable(e) && e.reason === 'HANDOVER', String(e));
  }
  await sleep(500); // the quick one exits while the agent is quiesced
  socket.close(); // gone without confirming

  await eventually('the agent to serve again', () => old.client.get({ handle: cat!.handle }).then((r) => r.process !== undefined, () => false), 20_000);
  const { process: q } = await old.client.wait({ handle: quick!.handle });
  t.is(q!.exit?.code, 7, 'the exit that happened meanwhile is collected');
  t.is(await lastWords(old.client, cat!.handle, 'still here\n'), 'still here\n', 'its pipes work again');
  await old.client.release({ handle: cat!.handle });
  await old.client.release({ handle: quick!.handle });
  await eventually('descriptors to go', () => readdirSync(`/proc/${old.pid}/fd`).length <= fdsBefore - 3, 20_000);
  t.pass();
});

test.serial('a successor speaking another handover protocol is refused, and the agent serves on', async (t) => {
  const { dir, stateDir } = tempDir();
  const old = await RestartableAgent.start(reaper, dir, stateDir);
  const { process: p } = await old.client.spawn({ argv: ['/bin/sleep', '60'] });
  useFdPassing(join(ROOT, 'dist/lib/libpidfd-fdpass.so'));
  const socket = connectFdSocket(join(stateDir, HANDOVER_SOCKET));
  sendTagged(socket, 'T', { protocol: HANDOVER_PROTOCOL + 1 });
  await t.throwsAsync(receiveSnapshot(socket, 10_000), { message: /refused the handover: "protocol 2 is not 1"/ });
  socket.close();
  // A rollback: an agent that knows only an older store schema could not open this store.
  const older = connectFdSocket(join(stateDir, HANDOVER_SOCKET));
  sendTagged(older, 'T', { protocol: HANDOVER_PROTOCOL, storeSchema: STORE_SCHEMA - 1 });
  await t.throwsAsync(receiveSnapshot(older, 10_000), { message: new RegExp(`knows store schema ${STORE_SCHEMA - 1}, this store has ${STORE_SCHEMA}`) });
  older.close();
  t.is((await old.client.get({ handle: p!.handle })).process!.state, State.STATE_RUNNING);
  const { agent } = await RestartableAgent.takeOver(reaper, dir, stateDir, old, ['--quiet']);
  t.teardown(() => agent.stop());
  t.is((await agent.client.get({ handle: p!.handle })).process!.state, State.STATE_RUNNING, 'a proper successor is served after the refusal');
  await agent.client.signal({ handle: p!.handle, signal: 'SIGKILL' });
});

test.serial('--after-handover linger: the old agent serves nothing but reaps its children, so their exits reach the successor at once', async (t) => {
  const { dir, stateDir, address } = tempDir();
  const old = await RestartableAgent.start(reaper, dir, stateDir, ['--after-handover', 'linger'], true);
  const { process: child } = await old.client.spawn({ argv: ['/bin/sh', '-c', 'read x; exit 5'], stdin: StdinMode.STDIN_MODE_PIPE });
  // As the DaemonSet starts its new pod.
  const pid = await reaper.start([process.execPath, AGENT_BIN, '--listen', address, '--state-dir', stateDir, '--takeover', 'if-serving', '--quiet']);
  const successor = new AgentClient(address);
  t.teardown(async () => {
    successor.close();
    await reaper.kill(pid, 15);
    await reaper.wait(pid, 10_000);
  });
  await eventually('the old agent to hand over and linger', () => /"event":"lingering","children":1\b/.test(reaper.stderr), 20_000);
  await eventually('the successor to serve', () => successor.writeStdin({ handle: child!.handle, data: Buffer.from('go\n') }).then((r) => r.written === 3, () => false), 20_000);
  const { process: done } = await successor.wait({ handle: child!.handle }, { deadline: 5000 });
  t.is(done!.exit?.code, 5, 'reaped by the lingering agent, read by the successor');
  t.is(await reaper.wait(old.pid, 0), 'timeout', 'the old agent is still there');
  await reaper.kill(old.pid, 15);
  t.is(await reaper.wait(old.pid, 10_000), 'exit 0', 'and exits on SIGTERM');
  old.client.close();
});
