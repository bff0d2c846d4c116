// Captured stdout/stderr: the ring, ReadOutput (follow, eof, lost_bytes), output events on Watch,
// and what a slow or absent reader may cost the agent.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import {
  AgentCallError,
  EventType,
  OutputMode,
  OutputStream,
  ReadOutputRequest,
  ReadOutputResponse,
  StdinMode,
  status,
  type Event,
} from '../clients/ts/src/index.js';
import { openFdCount } from '../src/kernel/fd.js';
import { READ_CHUNK_BYTES, READ_WRITE_BUDGET } from '../src/service/read-output.js';
import { OUTPUT_EVENT_BYTES } from '../src/process/stdio/captured-output.js';
import { OUTPUT_EVENTS_PER_SECOND, OutputEventBudget } from '../src/process/stdio/output-event-budget.js';
import { collect, pool, range } from './helpers/events.js';
import { eventually, sleep, startHarness, type Harness } from './helpers/harness.js';
import { stalledStream } from './helpers/stalled-stream.js';

const CAPTURE = { mode: OutputMode.OUTPUT_MODE_CAPTURE };
const STDOUT = OutputStream.OUTPUT_STREAM_STDOUT;
const STDERR = OutputStream.OUTPUT_STREAM_STDERR;
const MiB = 1024 * 1024;
const BIG = 50 * MiB;

let h: Harness;
let bigFile: string;
let bigData: Buffer;
test.before(async () => {
  h = await startHarness({ retentionMax: 5000 });
  bigData = randomBytes(BIG);
  bigFile = join(h.dir, 'big.bin');
  writeFileSync(bigFile, bigData);
});
test.after.always(async () => {
  await h?.close();
});

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Everything a follow reader receives, checked for contiguous offsets. */
async function readAll(handle: string, stream = STDOUT, offset = 0, follow = true): Promise<{ data: Buffer; lost: number; responses: ReadOutputResponse[] }> {
  const responses: ReadOutputResponse[] = [];
  for await (const r of h.client.readOutput({ handle, stream, offset, follow })) responses.push(r);
  return { data: Buffer.concat(responses.map((r) => r.data)), lost: responses.reduce((n, r) => n + r.lostBytes, 0), responses };
}

/** Each response starts where the previous one ended, plus what it says was lost. */
function contiguous(responses: readonly ReadOutputResponse[], from: number): boolean {
  let at = from;
  for (const r of responses) {
    if (r.offset !== at + r.lostBytes) return false;
    at = r.offset + r.data.length;
  }
  return true;
}

/** A child that writes the big file once it reads a line on stdin: readers can attach first. */
async function spawnGated(extra = ''): Promise<string> {
  const { process: p } = await h.client.spawn({
    argv: ['sh', '-c', `read go; cat ${bigFile}${extra}`],
    stdin: StdinMode.STDIN_MODE_PIPE,
    stdout: CAPTURE,
  });
  return p!.handle;
}

test.serial('50 MiB through CAPTURE arrives intact, in order, to a reader that keeps up, then eof', async (t) => {
  const handle = await spawnGated();
  const hash = createHash('sha256');
  let bytes = 0;
  let lost = 0;
  let last: ReadOutputResponse | undefined;
  let ordered = true;
  let maxRing = 0;
  let maxInflight = 0;
  const record = h.agent.manager.get(handle);
  const reading = (async () => {
    for await (const r of h.client.readOutput({ handle, stream: STDOUT, follow: true })) {
      if (r.offset !== bytes) ordered = false;
      hash.update(r.data);
      bytes += r.data.length;
      lost += r.lostBytes;
      last = r;
      maxRing = Math.max(maxRing, h.agent.manager.stdioOf(record).ringBytes);
      for (const s of h.agent.readers.stats()) maxInflight = Math.max(maxInflight, s.inflightBytes);
    }
  })();
  await eventually('the reader to attach', () => h.agent.readers.stats().length === 1);
  const started = performance.now();
  await h.client.writeStdin({ handle, data: Buffer.from('go\n') });
  await reading;
  const seconds = (performance.now() - started) / 1000;
  t.log(`50 MiB captured and read in ${seconds.toFixed(2)} s: ${(BIG / 1e6 / seconds).toFixed(0)} MB/s; ring ${maxRing} B, in flight at most ${maxInflight} B`);
  t.is(bytes, BIG);
  t.is(lost, 0, 'a reader that keeps up loses nothing');
  t.true(ordered);
  t.is(hash.digest('hex'), sha256(bigData));
  t.true(last?.eof, 'the last response says eof');
  t.true(maxRing <= MiB, 'the ring never grew past its size');
  t.true(maxInflight <= READ_WRITE_BUDGET * READ_CHUNK_BYTES);
  t.is((await h.client.wait({ handle })).process!.exit!.code, 0);
});

test.serial('a client that stops reading costs the ring and a few responses; the child still writes 50 MiB and exits', async (t) => {
  const handle = await spawnGated('; echo done >&2');
  const record = h.agent.manager.get(handle);
  const req = ReadOutputRequest.encode(ReadOutputRequest.fromPartial({ handle, stream: STDOUT, follow: true })).finish();
  const stalled = stalledStream(h.address.slice('unix://'.length), 'ReadOutput', req);
  t.teardown(() => stalled.close());
  await eventually('the stalled reader to attach', () => h.agent.readers.stats().length === 1);
  const rssBefore = process.memoryUsage().rss;
  let maxRing = 0;
  let maxInflight = 0;
  let maxRss = rssBefore;
  const sampler = setInterval(() => {
    maxRing = Math.max(maxRing, h.agent.manager.stdioOf(record).ringBytes);
    for (const s of h.agent.readers.stats()) maxInflight = Math.max(maxInflight, s.inflightBytes);
    maxRss = Math.max(maxRss, process.memoryUsage().rss);
  }, 5);
  const started = performance.now();
  await h.client.writeStdin({ handle, data: Buffer.from('go\n') });
  const { process: done } = await h.client.wait({ handle, timeout: { seconds: 60 } });
  clearInterval(sampler);
  t.is(done!.exit!.code, 0, 'the child wrote everything and exited although nobody read');
  t.log(`child finished in ${((performance.now() - started) / 1000).toFixed(2)} s; ring at most ${maxRing} B, stalled reader's responses in flight at most ${maxInflight} B, RSS +${((maxRss - rssBefore) / MiB).toFixed(1)} MiB at the peak`);
  t.true(maxRing <= MiB, `the ring stayed within its 1 MiB (${maxRing})`);
  t.true(maxInflight <= READ_WRITE_BUDGET * READ_CHUNK_BYTES, `in-flight responses stayed bounded (${maxInflight})`);

  // Once it reads again it gets the rest, with the gap accounted for byte for byte.
  const responses: ReadOutputResponse[] = [];
  stalled.resume((m) => responses.push(ReadOutputResponse.decode(m)));
  t.is(await stalled.status, status.OK);
  const lost = responses.reduce((n, r) => n + r.lostBytes, 0);
  const received = responses.reduce((n, r) => n + r.data.length, 0);
  t.true(lost > 0, 'the ring overwrote what it did not read');
  t.is(lost + received, BIG, 'every byte is either received or counted as lost');
  t.true(contiguous(responses, 0));
  t.true(responses.at(-1)!.eof);
  const tail = Buffer.concat(responses.slice(-4).map((r) => r.data));
  t.true(tail.equals(bigData.subarray(BIG - tail.length)), 'what it got after the gap is the real end of the output');
});

test('reading an old offset after the ring overflowed reports exactly the bytes lost', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['seq', '1', '20000'], stdout: { ...CAPTURE, ringBytes: 4096 } });
  const handle = p!.handle;
  await h.client.wait({ handle });
  const full = Buffer.from(Array.from({ length: 20000 }, (_, i) => `${i + 1}\n`).join(''));
  const all = await readAll(handle);
  t.is(all.responses[0]!.offset, full.length - 4096);
  t.is(all.lost, full.length - 4096);
  t.true(all.data.equals(full.subarray(full.length - 4096)));
  t.true(all.responses.at(-1)!.eof);
  const recent = await readAll(handle, STDOUT, full.length - 100);
  t.is(recent.lost, 0);
  t.is(recent.data.toString(), full.subarray(full.length - 100).toString());
  const atEnd = await readAll(handle, STDOUT, full.length);
  t.deepEqual(atEnd.responses.map((r) => [r.offset, r.data.length, r.eof]), [[full.length, 0, true]]);
  const ahead = await t.throwsAsync(readAll(handle, STDOUT, full.length + 1), { instanceOf: AgentCallError });
  t.is(ahead.code, status.OUT_OF_RANGE);
});

test('a follower sees all output before eof although the exit is reaped before the pipe is drained', async (t) => {
  // sh exits at once; its background child keeps the pipe open and writes later.
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', '(sleep 0.3; echo late) & echo early'], stdout: CAPTURE });
  const handle = p!.handle;
  let exitedFirst = false;
  const waited = h.client.wait({ handle }).then(() => (exitedFirst = true));
  const { data, responses } = await readAll(handle);
  t.true(exitedFirst, 'the exit was recorded while output was still coming');
  await waited;
  t.is(data.toString(), 'early\nlate\n');
  t.true(responses.at(-1)!.eof);
  t.is(responses.filter((r) => r.eof).length, 1);
});

test('stdout and stderr are captured apart; a non-follow read returns what is there and stops', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'echo out; echo err >&2; exec sleep 30'], stdout: CAPTURE, stderr: CAPTURE });
  const handle = p!.handle;
  await eventually('both lines', () => {
    const io = h.agent.manager.stdioOf(h.agent.manager.get(handle));
    return io.stdout!.ring.end === 4 && io.stderr!.ring.end === 4;
  });
  const out = await readAll(handle, STDOUT, 0, false);
  t.is(out.data.toString(), 'out\n');
  t.false(out.responses.some((r) => r.eof), 'no eof while the process runs');
  t.is((await readAll(handle, STDERR, 0, false)).data.toString(), 'err\n');
  await h.client.signal({ handle, signal: 'KILL' });
  t.true((await readAll(handle, STDERR)).responses.at(-1)!.eof);
});

test('output events on Watch carry every byte in coalesced chunks of bounded size', async (t) => {
  const { sequence } = await h.client.list();
  const { process: p } = await h.client.spawn({
    argv: ['sh', '-c', 'printf hello; printf oops >&2; head -c 300000 /dev/zero'],
    stdout: CAPTURE,
    stderr: CAPTURE,
    outputEvents: true,
  });
  const handle = p!.handle;
  const bytesOf = (events: Event[], stream: OutputStream) =>
    events.filter((e) => e.type === EventType.EVENT_TYPE_OUTPUT && e.output!.stream === stream).reduce((n, e) => n + e.output!.data.length, 0);
  const events = await collect(
    h.client,
    { handles: [handle], afterSequence: sequence },
    (ev) => ev.some((e) => e.type === EventType.EVENT_TYPE_EXITED) && bytesOf(ev, STDOUT) === 300005 && bytesOf(ev, STDERR) === 4,
  );
  const outputs = events.filter((e) => e.type === EventType.EVENT_TYPE_OUTPUT);
  t.true(outputs.every((e) => e.output!.data.length > 0 && e.output!.data.length <= OUTPUT_EVENT_BYTES));
  t.true(outputs.length <= Math.ceil(300005 / OUTPUT_EVENT_BYTES) + 8, `coalesced: ${outputs.length} events`);
  for (const stream of [STDOUT, STDERR]) {
    const mine = outputs.filter((e) => e.output!.stream === stream);
    let at = 0;
    for (const e of mine) {
      t.is(e.output!.offset, at, 'offsets are contiguous');
      at += e.output!.data.length;
    }
  }
  const stdout = Buffer.concat(outputs.filter((e) => e.output!.stream === STDOUT).map((e) => e.output!.data));
  t.is(stdout.subarray(0, 5).toString(), 'hello');
  t.true(stdout.subarray(5).equals(Buffer.alloc(300000)));
  t.is(Buffer.concat(outputs.filter((e) => e.output!.stream === STDERR).map((e) => e.output!.data)).toString(), 'oops');
  t.true(outputs.every((e) => e.process!.handle === handle));
});

test('a watcher replaying many output events gets them in responses of bounded size', async (t) => {
  const { sequence } = await h.client.list();
  const size = 8 * MiB;
  const { process: p } = await h.client.spawn({ argv: ['head', '-c', String(size), '/dev/zero'], stdout: { ...CAPTURE, ringBytes: 16 * MiB }, outputEvents: true });
  const handle = p!.handle;
  await readAll(handle); // until eof: every event has been published
  // Replayed all at once: 128 events of 64 KiB would exceed the 4 MiB message limit.
  const outputBytes = (ev: Event[]) => ev.reduce((n, e) => n + (e.output?.data.length ?? 0), 0);
  const events = await collect(h.client, { handles: [handle], afterSequence: sequence }, (ev) => outputBytes(ev) === size);
  t.is(outputBytes(events), size);
});

test('capture requests are validated and ReadOutput refuses what was not captured', async (t) => {
  const tooBig = await t.throwsAsync(h.client.spawn({ argv: ['true'], stdout: { ...CAPTURE, ringBytes: 64 * MiB + 1 } }), { instanceOf: AgentCallError });
  t.is(tooBig.code, status.INVALID_ARGUMENT);
  t.is(tooBig.info['field'], 'stdout.ring_bytes');
  const events = await t.throwsAsync(h.client.spawn({ argv: ['true'], outputEvents: true }), { instanceOf: AgentCallError });
  t.is(events.code, status.INVALID_ARGUMENT);
  t.is(events.info['field'], 'output_events');
  const { process: p } = await h.client.spawn({ argv: ['true'], stdout: CAPTURE });
  const notCaptured = await t.throwsAsync(readAll(p!.handle, STDERR), { instanceOf: AgentCallError });
  t.is(notCaptured.code, status.FAILED_PRECONDITION);
  t.is(notCaptured.reason, 'NOT_CAPTURED');
  const noStream = await t.throwsAsync(readAll(p!.handle, OutputStream.OUTPUT_STREAM_UNSPECIFIED), { instanceOf: AgentCallError });
  t.is(noStream.code, status.INVALID_ARGUMENT);
  const unknown = await t.throwsAsync(readAll('no-such-handle'), { instanceOf: AgentCallError });
  t.is(unknown.code, status.NOT_FOUND);
});

test('a released process that still writes keeps running: its pipe is drained, not closed', async (t) => {
  const marker = join(h.dir, 'survived');
  // More than a pipe buffer after the release: a closed pipe would kill it (SIGPIPE), an unread one block it.
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', `sleep 0.3; head -c 300000 /dev/zero; echo yes > ${marker}`], stdout: CAPTURE });
  await h.client.release({ handle: p!.handle });
  await eventually('the released process to finish writing', () => existsSync(marker) && readFileSync(marker, 'utf8') === 'yes\n');
  await eventually('its pipe to be closed', () => h.agent.manager.stats().stdio.openPipes === 0);
  t.pass();
});

test.serial("the agent's fd count and ring memory return to baseline after many capture spawns", async (t) => {
  let peak = 0;
  const cycle = async (i: number) => {
    const { process: p } = await h.client.spawn({
      argv: ['sh', '-c', 'cat; echo err >&2'],
      stdin: StdinMode.STDIN_MODE_PIPE,
      stdout: CAPTURE,
      stderr: CAPTURE,
      outputEvents: i % 2 === 0,
    });
    const handle = p!.handle;
    // This cycle's own pipes are open until its stdin is closed and its output read to the end.
    peak = Math.max(peak, openFdCount());
    await h.client.writeStdin({ handle, data: Buffer.from(`line ${i}\n`) });
    await h.client.closeStdin({ handle });
    const out = await readAll(handle);
    t.is(out.data.toString(), `line ${i}\n`);
    t.is((await h.client.wait({ handle })).process!.exit!.code, 0);
    await h.client.release({ handle });
  };
  await pool(range(20), 8, cycle);
  await sleep(100);
  const baseline = openFdCount();
  const before = h.agent.manager.stats().stdio;
  peak = baseline;
  await pool(range(300), 16, async (i) => {
    await cycle(i);
    peak = Math.max(peak, openFdCount());
  });
  await eventually('pipes closed', () => h.agent.manager.stats().stdio.openPipes === 0);
  t.log(`baseline ${baseline} fds, peak ${peak}, after ${openFdCount()}; stdio ${JSON.stringify(h.agent.manager.stats().stdio)}`);
  t.true(peak > baseline + 16, 'pipes were really opened');
  t.is(openFdCount(), baseline);
  const after = h.agent.manager.stats().stdio;
  t.is(after.processes, before.processes, 'released processes leave nothing behind');
  t.is(after.ringBytes, before.ringBytes, 'their rings were freed');
});

test.serial('captured output of exited processes stays within --capture-retained: the oldest exits go first', async (t) => {
  const small = await startHarness({ captureRetainedBytes: 600 * 1024 });
  t.teardown(() => small.close());
  const handles: string[] = [];
  for (let i = 0; i < 3; i++) {
    const { process: p } = await small.client.spawn({ argv: ['sh', '-c', `head -c ${256 * 1024} /dev/zero`], stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
    handles.push(p!.handle);
    await small.client.wait({ handle: p!.handle });
  }
  // 256 KiB each: a ring's buffer is then exactly its data, growing or sealed, so the sums are
  // exact. The pipes are drained shortly after the exits; retention is enforced each second, or now.
  const drained = async (handle: string) => {
    let total = 0;
    for await (const r of small.client.readOutput({ handle, stream: STDOUT, follow: true })) total += r.data.length + Number(r.lostBytes);
    return total;
  };
  for (const handle of handles) t.is(await drained(handle), 256 * 1024);
  small.agent.manager.expire();
  const read = async (handle: string) => {
    let data = 0;
    let lost = 0;
    for await (const r of small.client.readOutput({ handle, stream: STDOUT })) {
      data += r.data.length;
      lost += Number(r.lostBytes);
    }
    return { data, lost };
  };
  t.deepEqual(await read(handles[0]!), { data: 0, lost: 256 * 1024 }, 'the oldest exit lost its output');
  t.deepEqual(await read(handles[1]!), { data: 256 * 1024, lost: 0 });
  t.deepEqual(await read(handles[2]!), { data: 256 * 1024, lost: 0 });
  t.true(small.agent.manager.stats().stdio.ringBytes <= 600 * 1024);
});

test("one owner's chatty processes publish output events within its budget, and every byte is still covered", async (t) => {
  // 20 processes, each a line every 5 ms for about a second: 800 events a second at one per 25 ms
  // each, four times the owner's budget. The log is every owner's replay window.
  const { sequence } = await h.client.list();
  const lines = 200;
  const script = `$|=1; for (1..${lines}) { printf "line-%03d\\n", $_; select(undef, undef, undef, 0.005) }`;
  const started = performance.now();
  const spawned = await Promise.all(range(20).map(() => h.client.spawn({ argv: ['perl', '-e', script], stdout: CAPTURE, outputEvents: true, labels: { test: 'budget' } })));
  const handles = new Set(spawned.map((s) => s.process!.handle));
  const exited = new Set<string>();
  const perLine = 'line-000\n'.length;
  const published = new Map<string, number>();
  // Output events may follow the exit (the pipe drains after it): until each process's last byte too.
  const events = await collect(h.client, { labels: { test: 'budget' }, afterSequence: sequence }, (ev) => {
    const e = ev[ev.length - 1]!;
    if (e.type === EventType.EVENT_TYPE_EXITED) exited.add(e.process!.handle);
    if (e.output) published.set(e.process!.handle, Number(e.output.offset) + e.output.data.length);
    return exited.size === handles.size && [...handles].every((h) => published.get(h) === lines * perLine);
  });
  const seconds = (performance.now() - started) / 1000;
  const outputs = events.filter((e) => e.type === EventType.EVENT_TYPE_OUTPUT);
  // The budget's burst, its rate over the run, and each process's last output published before its exit.
  const bound = OUTPUT_EVENTS_PER_SECOND + OUTPUT_EVENTS_PER_SECOND * seconds + handles.size;
  t.true(outputs.length <= bound, `${outputs.length} output events in ${seconds.toFixed(2)} s, at most ${Math.floor(bound)}`);
  for (const handle of handles) {
    const mine = outputs.filter((e) => e.process!.handle === handle);
    let at = 0;
    for (const e of mine) {
      t.is(Number(e.output!.offset), at, 'contiguous: a ring this large is not overwritten before its turn');
      at += e.output!.data.length;
    }
    t.is(at, lines * perLine);
  }
});

test('the output event budget: a burst of its rate, then waiting streams in the order they asked, behind one timer per owner', async (t) => {
  let now = 0;
  const budget = new OutputEventBudget(20, () => now);
  const a = budget.publisher('a', () => {});
  t.deepEqual(range(20).map(() => a.admit(() => {})), range(20).map(() => true), 'the burst');
  const order: string[] = [];
  const [first, gone, second] = ['first', 'gone', 'second'].map((name) => () => void order.push(name)) as [() => void, () => void, () => void];
  t.deepEqual([a.admit(first), a.admit(gone), a.admit(second)], [false, false, false]);
  a.withdraw(gone);
  t.true(budget.publisher('b', () => {}).admit(() => {}), 'another owner has its own');
  await sleep(120);
  t.deepEqual(order, [], 'no time has passed on its clock: nobody is admitted');
  now = 50;
  await eventually('one event of budget back', () => order.length === 1);
  now = 100;
  await eventually('another', () => order.length === 2);
  t.deepEqual(order, ['first', 'second'], 'in turn; the withdrawn one never');
  // A flush that published more than it was admitted for is charged: the owner waits it off.
  a.spend(20);
  now = 1000;
  const late = () => {};
  t.false(a.admit(late), '18 events of budget back, 20 owed');
  a.withdraw(late);
});
