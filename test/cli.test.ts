import { spawn } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import test from 'ava';
import { CLI_BIN } from './helpers/agent-process.js';
import { runCliText } from './helpers/cli.js';
import { procState, startHarness, tempDir, type Harness } from './helpers/harness.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

const ctl = (...args: string[]) => runCliText(h.address, args);

test('spawn prints the handle alone; wait prints the exit and exits with its code', async (t) => {
  const spawned = await ctl('spawn', '--label', 'app=cli', '--', 'sh', '-c', 'exit 3');
  t.is(spawned.code, 0, spawned.stderr);
  t.regex(spawned.stdout, /^[a-z2-7]{26}\n$/);
  const handle = spawned.stdout.trim();
  const waited = await ctl('wait', handle);
  t.is(waited.code, 3);
  t.is(waited.stdout, 'exited with code 3\n');
  const got = await ctl('get', handle, '--json');
  t.is(JSON.parse(got.stdout).process.exit.code, 3);
  t.deepEqual(JSON.parse(got.stdout).process.labels, { app: 'cli' });
});

test('signal then wait: the CLI exits with 128+signal like a shell', async (t) => {
  const handle = (await ctl('spawn', '--', 'sleep', '30')).stdout.trim();
  const sent = await ctl('signal', handle, 'INT');
  t.is(sent.stdout, 'sent SIGINT\n');
  const waited = await ctl('wait', handle);
  t.is(waited.code, 130);
  t.is(waited.stdout, 'killed by SIGINT (signal 2)\n');
  const again = await ctl('signal', handle);
  t.is(again.code, 1);
  t.regex(again.stderr, /^pidfdctl: FAILED_PRECONDITION: .* \(PROCESS_EXITED\)\n$/);
});

test('wait --timeout on a running process fails with DEADLINE_EXCEEDED', async (t) => {
  const handle = (await ctl('spawn', '--', 'sleep', '30')).stdout.trim();
  const waited = await ctl('wait', handle, '--timeout', '100ms');
  t.is(waited.code, 1);
  t.regex(waited.stderr, /DEADLINE_EXCEEDED/);
  t.is((await ctl('signal', handle, 'KILL')).code, 0);
  t.is((await ctl('wait', handle, '--json')).code, 137);
});

test('list, release and adopt work, and errors are one clear line', async (t) => {
  const handle = (await ctl('spawn', '--label', 'team=list', '--', 'sleep', '30')).stdout.trim();
  const listed = await ctl('list', '--label', 'team=list');
  t.regex(listed.stdout, new RegExp(`^${handle}  pid \\d+  running  \\[team=list\\]  "sleep 30"\\n$`));
  const json = JSON.parse((await ctl('list', '--label', 'team=list', '--json')).stdout);
  t.is(json.processes.length, 1);
  const pid = json.processes[0].pid as number;
  const released = await ctl('release', handle);
  t.is(released.stdout, 'released\n', released.stderr);
  t.true(['R', 'S', 'D'].includes(procState(pid) ?? ''), 'release leaves the process running');
  const adopted = await ctl('adopt', String(pid), '--label', 'team=adopted');
  t.is(adopted.code, 0, adopted.stderr);
  const newHandle = adopted.stdout.trim();
  t.not(newHandle, handle, 'handles are never reused');
  await ctl('signal', newHandle, 'KILL');
  t.is((await ctl('wait', newHandle)).code, 137);
  const missing = await ctl('spawn', '--', '/no/such/binary');
  t.is(missing.code, 1);
  t.is(missing.stderr, 'pidfdctl: NOT_FOUND: argv[0]: /no/such/binary: ENOENT (ENOENT)\n');
  const usage = await ctl('frobnicate');
  t.is(usage.code, 2);
  t.regex(usage.stderr, /unknown command/);
});

test('watch prints a line per event and --json objects; --after replays', async (t) => {
  const { sequence } = await h.client.list();
  const child = spawn(process.execPath, [CLI_BIN, '--addr', h.address, 'watch', '--json', '--after', String(sequence), '--label', 'w=1']);
  const lines: string[] = [];
  const rl = createInterface({ input: child.stdout! });
  const gotTwo = new Promise<void>((resolve) => rl.on('line', (l) => lines.push(l) === 2 && resolve()));
  const handle = (await ctl('spawn', '--label', 'w=1', '--', 'sh', '-c', 'exit 9')).stdout.trim();
  await gotTwo;
  child.kill('SIGINT');
  const events = lines.map((l) => JSON.parse(l));
  t.deepEqual(events.map((e) => e.type), ['EVENT_TYPE_SPAWNED', 'EVENT_TYPE_EXITED']);
  t.true(events.every((e) => e.process.handle === handle));
  t.is(events[1].process.exit.code, 9);
  t.true(Number(events[1].sequence) > Number(events[0].sequence));
  const text = await new Promise<string>((resolve) => {
    const c = spawn(process.execPath, [CLI_BIN, '--addr', h.address, 'watch', handle, '--after', String(sequence)]);
    let out = '';
    c.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.split('\n').length > 2) c.kill('SIGINT');
    });
    c.on('exit', () => resolve(out));
  });
  t.regex(text, new RegExp(`^\\d+  \\S+  ${handle}  pid \\d+  spawned\\n\\d+  \\S+  ${handle}  pid \\d+  exited with code 9\\n`));
});

test('list, get and top show control characters in labels and argv escaped, never raw to the terminal', async (t) => {
  // Another tenant's labels and argv reach an admin's terminal: retitle it, hide text, rewrite lines.
  const hostile = 'web\u001b]0;owned\u0007\u001b[8m\u009b2K\u007f\u202e\u2028\u061c\u200f';
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', `sleep 30 #\u001b[2K\r\u001b[1A${hostile}`], labels: { app: hostile, team: 'escapes' } });
  t.teardown(() => h.client.stop({ handle: p!.handle, signal: 'KILL' }));
  const outputs = [await ctl('list', '--label', 'team=escapes'), await ctl('get', p!.handle), await ctl('top')];
  for (const out of outputs) {
    t.is(out.code, 0, out.stderr);
    t.notRegex(out.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/, 'no control character but the line ends');
  }
  for (const out of outputs.slice(0, 2)) t.true(out.stdout.includes('app=web\\x1b]0;owned\\x07\\x1b[8m\\x9b2K\\x7f'), out.stdout);
  // --json stays JSON with the same values, but a terminal showing it sees escapes only.
  const json = await ctl('get', p!.handle, '--json');
  t.notRegex(json.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
  t.is(JSON.parse(json.stdout).process.labels.app, hostile);
  // top cuts labels to their column; argv is whole.
  t.true(outputs[2]!.stdout.includes('app=web\\x1b]0;owned'), outputs[2]!.stdout);
  t.true(outputs[2]!.stdout.includes('sh -c sleep 30 #\\x1b[2K\\x0d\\x1b[1Aweb\\x1b]0;owned\\x07\\x1b[8m\\x9b2K\\x7f'), outputs[2]!.stdout);
});

test('health against a socket that never answers fails with one line and status 1, no stack', async (t) => {
  const path = join(tempDir('pidfd-agent-mute-'), 'mute.sock');
  const held: Socket[] = [];
  const mute = createServer((s) => held.push(s));
  await new Promise<void>((resolve) => mute.listen(path, resolve));
  t.teardown(() => {
    held.forEach((s) => s.destroy());
    mute.close();
  });
  const out = await runCliText(`unix://${path}`, ['health', '--timeout', '500ms']);
  t.is(out.code, 1);
  t.regex(out.stderr, /^pidfdctl: DEADLINE_EXCEEDED: [^\n]+\n$/);
});
