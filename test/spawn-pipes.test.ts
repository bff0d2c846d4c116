// A spawned child's stdio pipes: output intact and apart, stdin streamed through with its EOF.
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { NULL, PIPE, start, feed } from './helpers/kernel-children.js';

test('a child\'s stdout and stderr pipes carry its output intact and apart', async (t) => {
  const child = start(t, ['/bin/sh', '-c', 'printf "%s|" "$@"; echo to-stderr >&2', 'sh', 'one', 'two words', ''], [NULL, PIPE, PIPE]);
  const out = child.output(1);
  const err = child.output(2);
  t.deepEqual((await child.reap()).termination, { exitCode: 0 });
  t.is((await out.done).toString(), 'one|two words||');
  t.is((await err.done).toString(), 'to-stderr\n');
});

test('a stdin pipe fed by the agent streams through the child and its close is the child\'s EOF', async (t) => {
  // Four times the 64 KiB pipe buffer: both sides must stream, neither can buffer it all.
  const payload = randomBytes(256 * 1024);
  const child = start(t, ['/bin/cat'], [PIPE, PIPE, NULL]);
  const out = child.output(1);
  await feed(child.take(0), payload);
  t.true((await out.done).equals(payload));
  t.deepEqual((await child.reap()).termination, { exitCode: 0 });
});
