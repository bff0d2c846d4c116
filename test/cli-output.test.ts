// pidfdctl with captured output: spawn --stdout capture, logs [-f] [--stderr], spawn --attach.
import test from 'ava';
import { runCli } from './helpers/cli.js';
import { startHarness, type Harness } from './helpers/harness.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

const ctl = (args: string[], input?: string) => runCli(h.address, args, input);

test('logs prints captured stdout or stderr as raw bytes; -f follows until the process has exited', async (t) => {
  const spawned = await ctl(['spawn', '--stdout', 'capture', '--stderr', 'capture', '--', 'sh', '-c', 'printf "a\\0b"; echo oops >&2; sleep 0.3; printf tail']);
  t.is(spawned.code, 0, spawned.stderr);
  const handle = spawned.stdout.toString().trim();
  const followed = await ctl(['logs', handle, '-f']);
  t.is(followed.code, 0, followed.stderr);
  t.true(followed.stdout.equals(Buffer.from('a\0btail')), JSON.stringify(followed.stdout.toString()));
  const err = await ctl(['logs', '--stderr', handle]);
  t.is(err.stdout.toString(), 'oops\n');
  const missing = await ctl(['logs', (await ctl(['spawn', '--', 'true'])).stdout.toString().trim()]);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /^pidfdctl: FAILED_PRECONDITION: .* \(NOT_CAPTURED\)\n$/);
});

test('spawn --attach streams stdout and stderr apart and exits with the process status', async (t) => {
  const res = await ctl(['spawn', '--attach', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
  t.is(res.code, 7);
  t.is(res.stdout.toString(), 'out\n');
  t.is(res.stderr, 'err\n');
  const killed = await ctl(['spawn', '--attach', '--', 'sh', '-c', 'echo bye; kill -TERM $$']);
  t.is(killed.code, 143);
  t.is(killed.stdout.toString(), 'bye\n');
});

test('spawn --attach --stdin pipe forwards the CLI input; a megabyte comes back intact', async (t) => {
  const input = 'x'.repeat(1024 * 1024 - 1) + '\n';
  const res = await ctl(['spawn', '--attach', '--stdin', 'pipe', '--', 'sh', '-c', 'cat; exit 4'], input);
  t.is(res.code, 4, res.stderr);
  t.is(res.stdout.length, input.length);
  t.true(res.stdout.equals(Buffer.from(input)));
  const wc = await ctl(['spawn', '--attach', '--stdin', 'pipe', '--', 'wc', '-l'], 'one\ntwo\n');
  t.is(wc.stdout.toString().trim(), '2');
});
