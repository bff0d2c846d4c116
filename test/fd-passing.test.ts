// kernel/fd-passing.ts against the real kernel: SCM_RIGHTS over a unix SOCK_SEQPACKET pair.
import test from 'ava';
import { mkdtempSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KernelError } from '../src/kernel/errors.js';
import { closeFd, dupFd, openFdCount, pipe, type Fd } from '../src/kernel/fd.js';
import { connectFdSocket, FdListener, maxFdsPerMessage, useFdPassing, type FdSocket } from '../src/kernel/fd-passing.js';
import { ROOT } from './helpers/agent-process.js';

useFdPassing(join(ROOT, 'dist/lib/libpidfd-fdpass.so'));

function connectedPair(): { a: FdSocket; b: FdSocket; close: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-fdpass-'));
  const listener = new FdListener(join(dir, 's.sock'));
  const a = connectFdSocket(listener.path);
  const b = listener.accept()!;
  return {
    a,
    b,
    close: () => {
      a.close();
      b.close();
      listener.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const cloexec = (fd: Fd): boolean => (parseInt(/flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'))![1]!, 8) & 0o2000000) !== 0;

test('a message carries up to SCM_MAX_FD descriptors, each a close-on-exec reference to the same file', (t) => {
  const { a, b, close } = connectedPair();
  const baseline = openFdCount();
  const [r, w] = pipe();
  const max = maxFdsPerMessage();
  t.is(max, 253);
  a.send(Buffer.from('x'), Array.from({ length: max }, () => r));
  const m = b.receive(1000)!;
  t.is(m.data.toString(), 'x');
  t.is(m.fds.length, max);
  t.true(m.fds.every(cloexec));
  writeSync(w, 'hello');
  const buf = Buffer.alloc(5);
  readSync(m.fds[max - 1]!, buf);
  t.is(buf.toString(), 'hello', 'the received descriptor reads the same pipe');
  for (const fd of m.fds) closeFd(fd);
  closeFd(r);
  closeFd(w);
  t.is(openFdCount(), baseline, 'nothing leaked');
  close();
});

test('more descriptors than one message takes is EINVAL; nothing waiting is ETIMEDOUT', (t) => {
  const { a, b, close } = connectedPair();
  const [r, w] = pipe();
  t.throws(() => a.send(Buffer.from('x'), Array.from({ length: maxFdsPerMessage() + 1 }, () => r)), { instanceOf: KernelError, message: /EINVAL/ });
  t.throws(() => b.receive(10), { instanceOf: KernelError, message: /ETIMEDOUT/ });
  closeFd(r);
  closeFd(w);
  close();
});

test('what a peer sent before closing still arrives, with its descriptors; then the end reads as null', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-fdpass-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const listener = new FdListener(join(dir, 's.sock'));
  const a = connectFdSocket(listener.path);
  const b = listener.accept()!;
  t.is(listener.accept(), null, 'no second connection is pending');
  const [r, w] = pipe();
  const copy = dupFd(r);
  a.send(Buffer.from('last'), [copy]);
  closeFd(copy);
  a.close();
  const m = b.receive(1000)!;
  t.is(m.data.toString(), 'last');
  t.is(m.fds.length, 1);
  writeSync(w, 'y');
  const buf = Buffer.alloc(1);
  readSync(m.fds[0]!, buf);
  t.is(buf.toString(), 'y');
  closeFd(m.fds[0]!);
  t.is(b.receive(1000), null);
  b.close();
  listener.close();
  closeFd(r);
  closeFd(w);
});
