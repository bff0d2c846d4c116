// The successor of a handover measures it: pidfd_agent_handover_duration_seconds counts one.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { startAgentProcess } from './helpers/agent-process.js';
import { metricsUrl, scrape } from './helpers/metrics-scrape.js';

test('an agent that took over reports how long the handover took', async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'pidfd-agent-telemetry-handover-'));
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
  const old = await startAgentProcess(['--state-dir', stateDir]);
  try {
    const { process } = await old.client.spawn({ argv: ['/bin/sleep', '100'] });
    const successor = await startAgentProcess(['--state-dir', stateDir, '--takeover', 'required', '--metrics-listen', '127.0.0.1:0']);
    try {
      const samples = await scrape(await metricsUrl(successor));
      t.is(samples.get('pidfd_agent_handover_duration_seconds_count'), 1);
      t.true((samples.get('pidfd_agent_handover_duration_seconds_sum') ?? 0) > 0);
      t.is(samples.get('pidfd_agent_processes{state="running"}'), 1, 'the process came over');
      await successor.client.signal({ handle: process!.handle, signal: 'SIGKILL' });
      await successor.client.wait({ handle: process!.handle });
    } finally {
      await successor.stop();
    }
  } finally {
    await old.stop();
  }
});
