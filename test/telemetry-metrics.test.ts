// /metrics around five spawns and exits: every counter they touch moves by exactly five.
import { readFileSync } from 'node:fs';
import test from 'ava';
import { startAgentProcess } from './helpers/agent-process.js';
import { metricsUrl, scrape, type Samples } from './helpers/metrics-scrape.js';

const SPAWN_OK = 'rpc_server_call_duration_count{rpc_system_name="grpc",rpc_method="pidfd.agent.v1.AgentService/Spawn",rpc_response_status_code="OK"}';

test('five spawns and exits move the spawn, exit, event and RPC counters by exactly five', async (t) => {
  const agent = await startAgentProcess(['--metrics-listen', '127.0.0.1:0']);
  try {
    const url = await metricsUrl(agent);
    const before = await scrape(url);
    for (let i = 0; i < 5; i++) {
      const { process } = await agent.client.spawn({ argv: ['/bin/true'] });
      await agent.client.wait({ handle: process!.handle });
    }
    const after = await scrape(url);
    const delta = (s: string) => (after.get(s) ?? 0) - (before.get(s) ?? 0);
    t.is(delta('pidfd_agent_spawns_total{result="ok"}'), 5);
    t.is(delta('pidfd_agent_exits_total{how="code"}'), 5);
    t.is(delta('pidfd_agent_exits_total{how="signal"}'), 0);
    t.is(delta('pidfd_agent_spawn_duration_seconds_count'), 5);
    t.is(delta(SPAWN_OK), 5);
    t.is(delta('pidfd_agent_processes{state="exited"}'), 5);
    t.is(delta('pidfd_agent_events_total'), 10, 'spawned and exited, each');
    t.true((after.get('pidfd_agent_store_write_duration_seconds_count') ?? 0) >= 10, 'each start and each exit written');
    t.is(after.get('pidfd_agent_processes{state="running"}'), 0);
    const present = (s: Samples) => [...s.keys()].some((k) => k.startsWith('process_unix_file_descriptor_count'));
    t.true(present(after), 'the runtime metrics are there');
  } finally {
    await agent.stop();
  }
});

test('a failed spawn is counted by its ErrorInfo reason, a signal by its name', async (t) => {
  const agent = await startAgentProcess(['--metrics-listen', '127.0.0.1:0']);
  try {
    const url = await metricsUrl(agent);
    await t.throwsAsync(agent.client.spawn({ argv: ['/nonexistent/program'] }));
    const { process } = await agent.client.spawn({ argv: ['/bin/sleep', '100'] });
    await agent.client.signal({ handle: process!.handle, signal: 'SIGKILL' });
    await agent.client.wait({ handle: process!.handle });
    const after = await scrape(url);
    t.is(after.get('pidfd_agent_spawns_total{result="ENOENT"}'), 1);
    t.is(after.get('pidfd_agent_signals_total{signal="SIGKILL"}'), 1);
    t.is(after.get('pidfd_agent_exits_total{how="signal"}'), 1);
  } finally {
    await agent.stop();
  }
});

test('each item of a SpawnBatch is counted in pidfd_agent_spawns_total by its own result', async (t) => {
  const agent = await startAgentProcess(['--metrics-listen', '127.0.0.1:0']);
  t.teardown(() => agent.stop());
  const url = await metricsUrl(agent);
  const before = await scrape(url);
  const { results } = await agent.client.spawnBatch({ requests: [{ argv: ['/bin/true'] }, { argv: ['/bin/true'] }, { argv: ['/nonexistent/program'] }] });
  t.is(results.length, 3);
  for (const r of results) if (r.spawned) await agent.client.wait({ handle: r.spawned.process!.handle });
  const after = await scrape(url);
  const delta = (s: string) => (after.get(s) ?? 0) - (before.get(s) ?? 0);
  t.is(delta('pidfd_agent_spawns_total{result="ok"}'), 2);
  t.is(delta('pidfd_agent_spawns_total{result="ENOENT"}'), 1);
  t.is(delta('pidfd_agent_exits_total{how="code"}'), 2);
});

test('the resource is whole before the first scrape: target_info has host_id, and no error about unsettled attributes', async (t) => {
  const agent = await startAgentProcess(['--metrics-listen', '127.0.0.1:0']);
  t.teardown(() => agent.stop());
  const url = await metricsUrl(agent);
  const text = await (await fetch(url)).text();
  const machineId = readFileSync('/etc/machine-id', 'utf8').trim();
  t.regex(text, new RegExp(`target_info\\{[^}]*host_id="${machineId}"`));
  await fetch(url);
  t.false(agent.stderr().includes('async attributes settled'), agent.stderr());
});
