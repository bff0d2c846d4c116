// A lingering agent's successor watch that cannot watch the successor's exit logs the failure and
// looks again later, instead of throwing out of a constructor or a timer callback.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import test from 'ava';
import { openFdCount } from '../src/kernel/fd.js';
import { useFdPassing } from '../src/kernel/fd-passing.js';
import { PidRef } from '../src/kernel/pid-ref.js';
import { SuccessorWatch } from '../src/handover/successor.js';
import { ROOT } from './helpers/agent-process.js';
import { eventually, tempDir } from './helpers/harness.js';

useFdPassing(join(ROOT, 'dist/lib/libpidfd-fdpass.so'));

test('a successor watch that cannot watch its successor logs it, holds no pidfd, and looks for an agent again later', async (t) => {
  const child = spawn('/bin/sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => child.kill('SIGKILL'));
  const before = openFdCount();
  // A reference its holder closed already: ExitWatch fails before it takes any descriptor.
  const ref = PidRef.open(child.pid!);
  ref.close();
  const lines: { event: string; error?: string }[] = [];
  let gone = false;
  const started = performance.now();
  const watch = new SuccessorWatch(tempDir('pidfd-agent-exit-watch-'), ref, (event, fields) => lines.push({ event, ...fields }), () => (gone = true));
  t.teardown(() => watch.close());
  t.is(openFdCount(), before, 'no pidfd held');
  t.deepEqual(lines.map((l) => l.event), ['housekeeping_failed']);
  t.regex(lines[0]!.error ?? '', /closed or moved/);
  // Nobody serves the empty state dir, nobody holds its store: gone, once looked at again.
  await eventually('the watch to give up on the state dir', () => gone, 20_000);
  const ms = performance.now() - started;
  t.true(ms >= 5000, `after looking again (${Math.round(ms)} ms)`);
  t.is(lines.filter((l) => l.event === 'successor_gone').length, 1);
});
