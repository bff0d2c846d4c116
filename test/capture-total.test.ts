// Issue 11 item 5: --capture-total caps the rings of running and retained processes together. A
// Spawn past it frees the oldest retained rings first; when running ones leave no room it is
// RESOURCE_EXHAUSTED (CAPTURE_TOTAL_EXCEEDED) and nothing starts.
import test, { type ExecutionContext } from 'ava';
import { AgentCallError, OutputMode, OutputStream, status } from '../clients/ts/src/index.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../src/config/config.js';
import { eventually, startHarness, tempDir, type Harness } from './helpers/harness.js';
import { asUser, shareSocket } from './helpers/tenant.js';

const KiB = 1024;
const capture = (ringBytes: number) => ({ mode: OutputMode.OUTPUT_MODE_CAPTURE, ringBytes });

/** A process's stdout as read now, and how much of it no ring holds any more. */
/**
 * A harness whose policy makes uid 0 admin and the uids `a` and `b` tenants that run as
 * themselves; `aSpawn` adds keys to a's spawn rule (", max_capture_bytes: 256k").
 */
async function twoTenants(t: ExecutionContext, a: number, b: number, aSpawn: string, options: Partial<Config> = {}): Promise<Harness> {
  const policyFile = join(tempDir('pidfd-agent-capture-'), 'policy.yaml');
  const tenant = (uid: number, extra = '') => `  - identities: ["unix:uid=${uid}"]\n    role: tenant\n    spawn: { run_as: ["${uid}"], executables: ["/usr/bin/*", "/bin/*"]${extra} }\n`;
  writeFileSync(policyFile, `rules:\n  - identities: ["unix:uid=0"]\n    role: admin\n${tenant(a, aSpawn)}${tenant(b)}`);
  const h = await startHarness({ policyFile, ...options });
  t.teardown(() => h.close());
  shareSocket(h);
  return h;
}

async function stdoutOf(h: Harness, handle: string): Promise<{ lost: number; data: string }> {
  let lost = 0;
  let data = '';
  for await (const r of h.client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) {
    lost += r.lostBytes;
    data += Buffer.from(r.data).toString();
  }
  return { lost, data };
}

test('--capture-total refuses a spawn the running rings leave no room for, and frees retained rings for one', async (t) => {
  const h = await startHarness({ captureTotalBytes: 2048 * KiB });
  t.teardown(() => h.close());
  const committed = () => h.agent.manager.stats().stdio.committedBytes;

  const { process: a } = await h.client.spawn({ argv: ['sleep', '60'], stdout: capture(1024 * KiB) });
  const { process: b } = await h.client.spawn({ argv: ['sh', '-c', 'echo hi; exec sleep 60'], stdout: capture(512 * KiB), stderr: capture(512 * KiB) });
  t.is(committed(), 2048 * KiB);

  const running = h.agent.manager.stats().running;
  const refused = await t.throwsAsync(h.client.spawn({ argv: ['true'], stdout: capture(64 * KiB) }), { instanceOf: AgentCallError });
  t.is(refused.code, status.RESOURCE_EXHAUSTED);
  t.is(refused.reason, 'CAPTURE_TOTAL_EXCEEDED');
  t.is(h.agent.manager.stats().running, running, 'nothing was started');
  t.is(committed(), 2048 * KiB, 'the refused spawn left no charge behind');
  // A spawn that captures nothing is not concerned.
  await h.client.wait({ handle: (await h.client.spawn({ argv: ['true'] })).process!.handle });

  // b exits: its rings are retained, and the next spawn that needs room frees them.
  await h.client.signal({ handle: b!.handle, signal: 'KILL' });
  await h.client.wait({ handle: b!.handle });
  const { process: c } = await h.client.spawn({ argv: ['sleep', '60'], stdout: capture(64 * KiB) });
  t.is(committed(), (1024 + 64) * KiB);
  let lost = 0;
  let data = '';
  for await (const r of h.client.readOutput({ handle: b!.handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) {
    lost += r.lostBytes;
    data += Buffer.from(r.data).toString();
  }
  t.is(data, '');
  t.is(lost, 'hi\n'.length, "b's retained output was freed for c's ring");

  // Releasing a handle frees its rings' share.
  await h.client.signal({ handle: a!.handle, signal: 'KILL' });
  await h.client.wait({ handle: a!.handle });
  await h.client.release({ handle: a!.handle });
  t.is(committed(), 64 * KiB);
  const { process: d } = await h.client.spawn({ argv: ['sleep', '60'], stdout: capture(1984 * KiB) });
  t.is(committed(), 2048 * KiB);
  for (const p of [c, d]) await h.client.signal({ handle: p!.handle, signal: 'KILL' });
});

test('past --capture-retained the owner holding the most retained output loses its oldest first: one tenant cannot push out another', async (t) => {
  const [A, B] = [1013, 1014];
  const h = await twoTenants(t, A, B, '', { captureRetainedBytes: 256 * KiB });
  const [b] = await asUser(B, h.address, [{ op: 'spawn', req: { argv: ['/bin/echo', 'B-RESULT'], user: String(B), stdout: capture(64 * KiB) } }]);
  const bHandle: string = b!.ok.process.handle;
  await h.client.wait({ handle: bHandle });
  // A's five exits retain 500,000 bytes of ring beside B's 9 (rings hold what was written): 256 KiB is the budget.
  const floods = await asUser(A, h.address, Array.from({ length: 5 }, () => ({ op: 'spawn', req: { argv: ['/usr/bin/head', '-c', '100000', '/dev/zero'], user: String(A), stdout: capture(128 * KiB) } })));
  const aHandles: string[] = floods.map((f) => f.ok.process.handle);
  for (const handle of aHandles) await h.client.wait({ handle });
  const lostOf = (handle: string) => stdoutOf(h, handle);
  // Retention is enforced once a second.
  await eventually('A over the budget trimmed', async () => (await lostOf(aHandles[0]!)).lost > 0);
  t.deepEqual(await lostOf(bHandle), { lost: 0, data: 'B-RESULT\n' }, "B's output, the oldest, is kept");
  t.true((await lostOf(aHandles[4]!)).lost === 0, "A's newest is kept too: A went down to its share first");
});

test('max_capture_bytes holds one tenant to its share of capture rings: past it POLICY_QUOTA, its own retained output goes first, another tenant is not concerned', async (t) => {
  const [A, B] = [1015, 1016];
  const h = await twoTenants(t, A, B, ', max_capture_bytes: 256k');
  const sleeper = (uid: number, ringBytes: number) => ({ op: 'spawn', req: { argv: ['/bin/sleep', '60'], user: String(uid), stdout: capture(ringBytes) } });
  const [a1, a2, a3] = await asUser(A, h.address, [sleeper(A, 128 * KiB), sleeper(A, 128 * KiB), sleeper(A, 64 * KiB)]);
  const running = [a1!.ok.process.handle, a2!.ok.process.handle];
  t.teardown(async () => {
    for (const handle of running) await h.client.signal({ handle, signal: 'KILL' }).catch(() => undefined);
  });
  t.like(a3!.error, { code: status.RESOURCE_EXHAUSTED, reason: 'POLICY_QUOTA', info: { field: 'max_capture_bytes' } });
  const [b1] = await asUser(B, h.address, [sleeper(B, 512 * KiB)]);
  running.push(b1!.ok.process.handle);
  // A's first exits: its retained ring is the room its next capture takes.
  await h.client.signal({ handle: running[0]!, signal: 'KILL' });
  await h.client.wait({ handle: running[0]! });
  const [a4] = await asUser(A, h.address, [sleeper(A, 64 * KiB)]);
  t.truthy(a4!.ok, JSON.stringify(a4!.error));
  running.push(a4!.ok.process.handle);
});

test('room under --capture-total is made fairly by what rings are charged, and a refused spawn frees nothing', async (t) => {
  const [A, B] = [1017, 1018];
  const h = await twoTenants(t, A, B, ', max_capture_bytes: 512k', { captureTotalBytes: 1024 * KiB });
  const echo = (uid: number, text: string, ringBytes: number) => ({ op: 'spawn', req: { argv: ['/bin/echo', text], user: String(uid), stdout: capture(ringBytes) } });
  const sleeper = (uid: number, ringBytes: number) => ({ op: 'spawn', req: { argv: ['/bin/sleep', '60'], user: String(uid), stdout: capture(ringBytes) } });
  const read = (handle: string) => stdoutOf(h, handle);
  const running: string[] = [];
  t.teardown(async () => {
    for (const handle of running) await h.client.signal({ handle, signal: 'KILL' }).catch(() => undefined);
  });
  const as = await asUser(A, h.address, [echo(A, 'A0', 128 * KiB), echo(A, 'A1', 128 * KiB), echo(A, 'A2', 128 * KiB)]);
  const [b] = await asUser(B, h.address, [echo(B, 'B-RESULT', 64 * KiB)]);
  const [a0, a1, a2] = as.map((o) => o.ok.process.handle as string);
  const bHandle: string = b!.ok.process.handle;
  for (const handle of [a0!, a1!, a2!, bHandle]) await h.client.wait({ handle });
  // A's quota: its own oldest retained rings make room (A0, A1), nobody else's.
  const [big] = await asUser(A, h.address, [sleeper(A, 384 * KiB)]);
  running.push(big!.ok.process.handle);
  t.true((await read(a0!)).lost > 0 && (await read(a1!)).lost > 0);
  // Past its quota with running rings alone: refused, and A2 is not freed for nothing.
  const [refused] = await asUser(A, h.address, [sleeper(A, 256 * KiB)]);
  t.like(refused!.error, { reason: 'POLICY_QUOTA', info: { field: 'max_capture_bytes' } });
  t.deepEqual(await read(a2!), { lost: 0, data: 'A2\n' });
  // B needs room under --capture-total: A holds more retained ring (charged 128 KiB against B's 64) and gives first.
  const [bBig] = await asUser(B, h.address, [sleeper(B, 512 * KiB)]);
  running.push(bBig!.ok.process.handle);
  t.deepEqual(await read(bHandle), { lost: 0, data: 'B-RESULT\n' });
  t.true((await read(a2!)).lost > 0);
});
