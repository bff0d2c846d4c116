// WriteStdin and CloseStdin: a pipe the agent writes, with bounded pending bytes, EPIPE contained.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { AgentCallError, OutputMode, OutputStream, StdinMode, status, type ReadOutputResponse } from '../clients/ts/src/index.js';
import { closeFd, pipe } from '../src/kernel/fd.js';
import { STDIN_PENDING_BYTES } from '../src/process/stdio/process-pipes.js';
import { StdinPipe } from '../src/process/stdio/stdin-pipe.js';
import { eventually, startHarness, type Harness } from './helpers/harness.js';

const CAPTURE = { mode: OutputMode.OUTPUT_MODE_CAPTURE };
const PIPE = StdinMode.STDIN_MODE_PIPE;

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

async function failure(t: ExecutionContext, call: Promise<unknown>, code: status, reason: string): Promise<void> {
  const e = await t.throwsAsync(call, { instanceOf: AgentCallError });
  t.is(e?.code, code, e?.message);
  t.is(e?.reason, reason, e?.message);
}

test('stdin round trip through cat into capture; CloseStdin is its end-of-file', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['cat'], stdin: PIPE, stdout: CAPTURE });
  const handle = p!.handle;
  const received: ReadOutputResponse[] = [];
  const reading = (async () => {
    for await (const r of h.client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT, follow: true })) received.push(r);
  })();
  const text = () => Buffer.concat(received.map((r) => r.data));
  t.deepEqual(await h.client.writeStdin({ handle, data: Buffer.from('hello\n') }), { written: 6 });
  await eventually('the echo', () => text().toString() === 'hello\n');
  // Four times the pipe buffer, in one call: it resolves once the pipe took all of it.
  const payload = randomBytes(256 * 1024);
  t.is((await h.client.writeStdin({ handle, data: payload })).written, payload.length);
  t.is((await h.client.writeStdin({ handle, data: Buffer.alloc(0) })).written, 0);
  await h.client.closeStdin({ handle });
  await h.client.closeStdin({ handle }); // idempotent
  await reading;
  t.true(text().equals(Buffer.concat([Buffer.from('hello\n'), payload])));
  t.true(received.at(-1)!.eof);
  t.is((await h.client.wait({ handle })).process!.exit!.code, 0, 'cat saw end-of-file and exited');
});

test('WriteStdin after CloseStdin or after the exit is FAILED_PRECONDITION; without a pipe too', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'], stdin: PIPE });
  const handle = p!.handle;
  await h.client.closeStdin({ handle });
  await failure(t, h.client.writeStdin({ handle, data: Buffer.from('late') }), status.FAILED_PRECONDITION, 'STDIN_CLOSED');
  await h.client.signal({ handle, signal: 'KILL' });
  await h.client.wait({ handle });
  await failure(t, h.client.writeStdin({ handle, data: Buffer.from('late') }), status.FAILED_PRECONDITION, 'PROCESS_EXITED');

  const { process: q } = await h.client.spawn({ argv: ['true'] });
  await failure(t, h.client.writeStdin({ handle: q!.handle, data: Buffer.from('x') }), status.FAILED_PRECONDITION, 'NOT_PIPED');
  await failure(t, h.client.closeStdin({ handle: q!.handle }), status.FAILED_PRECONDITION, 'NOT_PIPED');
  await failure(t, h.client.writeStdin({ handle: 'no-such-handle', data: Buffer.from('x') }), status.NOT_FOUND, 'UNKNOWN_HANDLE');
});

test('a child that does not read: pending bytes are bounded (RESOURCE_EXHAUSTED) and its exit fails the waiting write', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'], stdin: PIPE });
  const handle = p!.handle;
  // The pipe takes 64 KiB; the rest waits in the agent, up to the limit.
  const big = h.client.writeStdin({ handle, data: Buffer.alloc((STDIN_PENDING_BYTES * 3) / 4) });
  big.catch(() => {});
  const io = h.agent.manager.stdioOf(h.agent.manager.get(handle));
  await eventually('bytes pending', () => io.pendingStdin > 0);
  await failure(t, h.client.writeStdin({ handle, data: Buffer.alloc(STDIN_PENDING_BYTES / 2) }), status.RESOURCE_EXHAUSTED, 'STDIN_BACKLOG');
  t.true(io.pendingStdin <= STDIN_PENDING_BYTES);
  await h.client.signal({ handle, signal: 'KILL' });
  const e = await t.throwsAsync(big, { instanceOf: AgentCallError });
  t.is(e.code, status.FAILED_PRECONDITION);
  // Usually the exit is seen first; a write that failed in the instant before says EPIPE.
  t.true(['PROCESS_EXITED', 'EPIPE'].includes(e.reason), e.reason);
  await eventually('nothing pending', () => io.pendingStdin === 0);
});

test('a child that closes its stdin: the write fails with EPIPE as FAILED_PRECONDITION and the agent lives on', async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'exec 0<&-; exec sleep 30'], stdin: PIPE });
  const handle = p!.handle;
  await eventually('the child to close fd 0', () => !existsSync(`/proc/${p!.pid}/fd/0`));
  await failure(t, h.client.writeStdin({ handle, data: Buffer.from('anyone there?\n') }), status.FAILED_PRECONDITION, 'EPIPE');
  await failure(t, h.client.writeStdin({ handle, data: Buffer.from('again\n') }), status.FAILED_PRECONDITION, 'EPIPE');
  t.is((await h.client.get({ handle })).process!.exit, undefined, 'the child was not hurt');
  await h.client.signal({ handle, signal: 'KILL' });
  t.is((await h.client.wait({ handle })).process!.exit!.signal, 9);
});

test('a write still queued when the pipe is destroyed fails: Node would report it written', async (t) => {
  const [r, w] = pipe();
  t.teardown(() => closeFd(r)); // held, never read: the pipe takes 64 KiB and the rest stays queued
  const stdin = new StdinPipe(w, () => {});
  const queued = stdin.write(Buffer.alloc(1 << 20));
  await eventually('bytes queued', () => stdin.pendingBytes > 0);
  stdin.destroy();
  await t.throwsAsync(queued, { message: /closed before the process read it/ });
  t.is(stdin.pendingBytes, 0);
});
