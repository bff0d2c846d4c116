// Issue 11 item 5: --capture-total caps the rings of running and retained processes together. A
// Spawn past it frees the oldest retained rings first; when running ones leave no room it is
// RESOURCE_EXHAUSTED (CAPTURE_TOTAL_EXCEEDED) and nothing starts.
import test from 'ava';
import { AgentCallError, OutputMode, OutputStream, status } from '../clients/ts/src/index.js';
import { startHarness } from './helpers/harness.js';

const KiB = 1024;
const capture = (ringBytes: number) => ({ mode: OutputMode.OUTPUT_MODE_CAPTURE, ringBytes });

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
