import test from 'ava';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentCallError, status } from '../clients/ts/src/index.js';
import { pool, range } from './helpers/events.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { startHarness, type Harness, tempDir } from './helpers/harness.js';

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

async function rejects(t: import('ava').ExecutionContext, call: Promise<unknown>, code: status, field?: string): Promise<AgentCallError> {
  const e = await t.throwsAsync(call, { instanceOf: AgentCallError });
  t.is(e!.code, code, e!.message);
  if (field !== undefined) t.is(e!.info['field'], field, e!.message);
  t.notRegex(e!.details, /\n\s+at /, 'no stack trace reaches the client');
  return e!;
}

test('bad requests are INVALID_ARGUMENT naming the field, and the agent keeps serving', async (t) => {
  await rejects(t, h.client.spawn({ argv: [] }), status.INVALID_ARGUMENT, 'argv');
  await rejects(t, h.client.spawn({ argv: [''] }), status.INVALID_ARGUMENT, 'argv[0]');
  await rejects(t, h.client.spawn({ argv: ['echo', 'a\0b'] }), status.INVALID_ARGUMENT, 'argv[1]');
  await rejects(t, h.client.spawn({ argv: ['true'], env: { A: 'x\0y' } }), status.INVALID_ARGUMENT, 'env[A]');
  await rejects(t, h.client.spawn({ argv: ['true'], env: { 'A=B': 'x' } }), status.INVALID_ARGUMENT, 'env[A=B]');
  await rejects(t, h.client.spawn({ argv: ['true'], labels: { k: 'v\0' } }), status.INVALID_ARGUMENT, 'labels[k]');
  await rejects(t, h.client.spawn({ argv: ['true'], cwd: 'relative/dir' }), status.INVALID_ARGUMENT, 'cwd');
  await rejects(t, h.client.spawn({ argv: ['true'], stdout: { mode: 2, path: 'rel.log' } }), status.INVALID_ARGUMENT, 'stdout.path');
  await rejects(t, h.client.spawn({ argv: ['true'], stdout: { mode: 99 as never } }), status.INVALID_ARGUMENT, 'stdout.mode');
  await rejects(t, h.client.spawn({ argv: ['x'.repeat(200 * 1024)] }), status.INVALID_ARGUMENT, 'argv[0]');
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  for (const signal of ['SIGNOPE', '0', '65', '32', '-9', '9x']) {
    await rejects(t, h.client.signal({ handle: p!.handle, signal }), status.INVALID_ARGUMENT, 'signal');
  }
  await rejects(t, h.client.signal({ handle: p!.handle, signal: 'TERM', target: 9 as never }), status.INVALID_ARGUMENT, 'target');
  await rejects(t, h.client.wait({ handle: p!.handle, timeout: { seconds: -1, nanos: 0 } }), status.INVALID_ARGUMENT, 'timeout');
  t.is((await h.client.signal({ handle: p!.handle, signal: 'kill' })).signal, 9);
  t.is((await h.client.wait({ handle: p!.handle })).process!.exit!.signal, 9);
});

test('unknown handles are NOT_FOUND for every call', async (t) => {
  const handle = 'AAAAAAAAAAAAAAAAAAAAAA';
  for (const call of [h.client.get({ handle }), h.client.signal({ handle }), h.client.wait({ handle }), h.client.release({ handle })]) {
    const e = await rejects(t, call, status.NOT_FOUND);
    t.is(e.reason, 'UNKNOWN_HANDLE');
  }
  await rejects(t, h.client.get({ handle: '' }), status.INVALID_ARGUMENT, 'handle');
});

test('exec errors name the path: a missing cwd is NOT_FOUND, a non-executable file PERMISSION_DENIED', async (t) => {
  const dir = tempDir('pidfd-agent-exec-');
  const script = join(dir, 'not-executable.sh');
  writeFileSync(script, '#!/bin/sh\nexit 0\n');
  chmodSync(script, 0o644);
  const denied = await rejects(t, h.client.spawn({ argv: [script] }), status.PERMISSION_DENIED, 'argv[0]');
  t.is(denied.reason, 'EACCES');
  t.is(denied.info['path'], script);
  const cwd = await rejects(t, h.client.spawn({ argv: ['true'], cwd: join(dir, 'missing') }), status.NOT_FOUND, 'cwd');
  t.is(cwd.reason, 'ENOENT');
  const notDir = await rejects(t, h.client.spawn({ argv: ['true'], cwd: script }), status.INVALID_ARGUMENT, 'cwd');
  t.is(notDir.reason, 'ENOTDIR');
  const garbage = join(dir, 'garbage');
  writeFileSync(garbage, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]));
  chmodSync(garbage, 0o755);
  const noexec = await rejects(t, h.client.spawn({ argv: [garbage] }), status.INVALID_ARGUMENT);
  t.is(noexec.reason, 'ENOEXEC');
  const out = await rejects(t, h.client.spawn({ argv: ['true'], stdout: { mode: 2, path: join(dir, 'no/such/dir/out.log') } }), status.NOT_FOUND, 'stdout.path');
  t.is(out.reason, 'ENOENT');
});

test('more processes than --max-processes is RESOURCE_EXHAUSTED until some exit', async (t) => {
  const small = await startHarness({ maxProcesses: 16 });
  t.teardown(() => small.close());
  const started = await pool(range(16), 8, async () => (await small.client.spawn({ argv: ['sleep', '30'] })).process!);
  const e = await rejects(t, small.client.spawn({ argv: ['sleep', '30'] }), status.RESOURCE_EXHAUSTED);
  t.is(e.reason, 'MAX_PROCESSES');
  await small.client.signal({ handle: started[0]!.handle, signal: 'KILL' });
  await small.client.wait({ handle: started[0]!.handle });
  const { process: p } = await small.client.spawn({ argv: ['true'] });
  t.is((await small.client.wait({ handle: p!.handle })).process!.exit!.code, 0);
  await Promise.all(started.slice(1).map((q) => small.client.signal({ handle: q.handle, signal: 'KILL' })));
});

test('--max-processes spawns all succeed at any concurrency (a spawn still finishing is counted once)', async (t) => {
  const small = await startHarness({ maxProcesses: 16 });
  t.teardown(() => small.close());
  for (let concurrency = 1; concurrency <= 16; concurrency++) {
    const started = await pool(range(16), concurrency, () => small.client.spawn({ argv: ['sleep', '30'] }));
    t.is(started.length, 16);
    await rejects(t, small.client.spawn({ argv: ['sleep', '30'] }), status.RESOURCE_EXHAUSTED);
    await Promise.all(started.map(({ process: p }) => small.client.stop({ handle: p!.handle, signal: 'KILL' })));
    await Promise.all(started.map(({ process: p }) => small.client.release({ handle: p!.handle })));
  }
});

test('running out of file descriptors is RESOURCE_EXHAUSTED (EMFILE) and the agent recovers', async (t) => {
  const agent = await startAgentProcess(['--quiet'], ['prlimit', '--nofile=96:96']);
  t.teardown(() => agent.stop());
  const started: string[] = [];
  let failure: AgentCallError | undefined;
  for (let i = 0; i < 200 && !failure; i++) {
    try {
      started.push((await agent.client.spawn({ argv: ['sleep', '30'] })).process!.handle);
    } catch (e) {
      failure = e as AgentCallError;
    }
  }
  t.truthy(failure, 'the descriptor limit was reached');
  t.is(failure!.code, status.RESOURCE_EXHAUSTED, failure!.message);
  t.is(failure!.reason, 'EMFILE');
  t.true(started.length > 10);
  await Promise.all(started.map((handle) => agent.client.signal({ handle, signal: 'KILL' })));
  await Promise.all(started.map((handle) => agent.client.wait({ handle })));
  const { process: p } = await agent.client.spawn({ argv: ['sh', '-c', 'exit 4'] });
  t.is((await agent.client.wait({ handle: p!.handle })).process!.exit!.code, 4);
  t.is(agent.child.exitCode, null, 'still serving');
});
