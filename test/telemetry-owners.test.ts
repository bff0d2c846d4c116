// Owners are metric labels only when asked (--metrics-owners N), and at most N of them.
import test from 'ava';
import { BoundedLabel } from '../src/telemetry/metrics.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { metricsUrl, scrape } from './helpers/metrics-scrape.js';

test('a bounded label keeps the first N values and calls the rest "other"', (t) => {
  const owners = new BoundedLabel(2);
  t.deepEqual(['a', 'b', 'c', 'a', 'd', 'b'].map((o) => owners.of(o)), ['a', 'b', 'other', 'a', 'other', 'b']);
});

test('without --metrics-owners no series names an owner; with it, processes and exits carry the owner', async (t) => {
  const plain = await startAgentProcess(['--metrics-listen', '127.0.0.1:0']);
  try {
    const { process } = await plain.client.spawn({ argv: ['/bin/true'] });
    await plain.client.wait({ handle: process!.handle });
    const samples = await scrape(await metricsUrl(plain));
    t.deepEqual([...samples.keys()].filter((k) => /[{,]owner="/.test(k)), []);
  } finally {
    await plain.stop();
  }
  const labelled = await startAgentProcess(['--metrics-listen', '127.0.0.1:0', '--metrics-owners', '1']);
  try {
    // Before any process: the series dashboards and alerts read are there at 0, under owner "other".
    const fresh = await scrape(await metricsUrl(labelled));
    for (const how of ['code', 'signal', 'timeout', 'lost']) t.is(fresh.get(`pidfd_agent_exits_total{how="${how}",owner="other"}`), 0, how);
    for (const state of ['running', 'exited']) t.is(fresh.get(`pidfd_agent_processes{state="${state}",owner="other"}`), 0, state);
    const { process } = await labelled.client.spawn({ argv: ['/bin/true'] });
    await labelled.client.wait({ handle: process!.handle });
    const samples = await scrape(await metricsUrl(labelled));
    t.is(samples.get('pidfd_agent_processes{state="exited",owner="unix:uid=0"}'), 1);
    t.is(samples.get('pidfd_agent_exits_total{how="code",owner="unix:uid=0"}'), 1);
    t.is(samples.get('pidfd_agent_processes{state="running",owner="other"}'), 0, 'a state no process is in still reads 0');
    t.is(samples.get('pidfd_agent_processes{state="exited",owner="other"}'), 0, 'and so does other where a named owner has processes');
  } finally {
    await labelled.stop();
  }
});
