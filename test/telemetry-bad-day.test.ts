// Telemetry on a bad day: a collector that is down or never answers, and a peer that opens
// connection after connection to /metrics. The agent keeps serving, holds a bounded number of
// descriptors, and says what is wrong in its own log, once, without a stack.
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket, connect } from 'node:net';
import test from 'ava';
import { startAgentProcess, type AgentProcess } from './helpers/agent-process.js';
import { eventually, sleep } from './helpers/harness.js';
import { metricsUrl, scrape } from './helpers/metrics-scrape.js';

/** Spawn+Wait of `true`, n times, 8 at a time: each must succeed. */
async function spawnAndWait(agent: AgentProcess, n: number): Promise<void> {
  const one = async () => {
    const { process: p } = await agent.client.spawn({ argv: ['/bin/true'] });
    const r = await agent.client.wait({ handle: p!.handle });
    if (r.process?.exit?.code !== 0) throw new Error(`exit ${JSON.stringify(r.process?.exit)}`);
  };
  for (let done = 0; done < n; done += 8) await Promise.all(Array.from({ length: Math.min(8, n - done) }, one));
}

const problems = (agent: AgentProcess) =>
  agent
    .stderr()
    .split('\n')
    .filter((l) => l.includes('"event":"telemetry_problem"'))
    .map((l) => JSON.parse(l) as { level: string; message: string; repeated?: number });

const fdCount = (agent: AgentProcess) => readdirSync(`/proc/${agent.child.pid}/fd`).length;

const listen = async (server: Server): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
};

test('a collector that is down: every call still succeeds, and the log says so once, without a stack', async (t) => {
  const closed = createServer();
  const port = await listen(closed);
  await new Promise((resolve) => closed.close(resolve)); // nothing listens there now
  const agent = await startAgentProcess([], [], {
    ...process.env,
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_EXPORTER_OTLP_TIMEOUT: '500',
    OTEL_BSP_SCHEDULE_DELAY: '20',
  });
  try {
    await spawnAndWait(agent, 80);
    const lines = await eventually('a telemetry_problem line', () => (problems(agent).length > 0 ? problems(agent) : undefined), 30_000);
    await spawnAndWait(agent, 80);
    t.true(lines.every((l) => l.level === 'error' || l.level === 'warn'));
    t.false(agent.stderr().includes('    at '), 'no stack trace in the log');
    const messages = problems(agent).map((l) => l.message);
    t.is(new Set(messages).size, messages.length, `each message once a minute at most: ${messages.join(' | ')}`);
    t.regex(messages.join(' '), /ECONNREFUSED/);
    t.log(messages.join('\n'));
  } finally {
    await agent.stop();
  }
});

test('a collector that never answers holds few connections, and the agent keeps serving', async (t) => {
  const held = new Set<Socket>();
  let most = 0;
  const hole = createServer((socket) => {
    held.add(socket);
    most = Math.max(most, held.size);
    socket.on('close', () => held.delete(socket));
    socket.on('error', () => {});
    socket.resume(); // read the request, answer nothing
  });
  const port = await listen(hole);
  t.teardown(() => {
    for (const s of held) s.destroy();
    hole.close();
  });
  const agent = await startAgentProcess(['--metrics-listen', '127.0.0.1:0'], [], {
    ...process.env,
    OTEL_TRACES_EXPORTER: 'otlp',
    OTEL_METRICS_EXPORTER: 'otlp',
    OTEL_METRIC_EXPORT_INTERVAL: '500',
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
    OTEL_EXPORTER_OTLP_TIMEOUT: '1000',
    OTEL_BSP_SCHEDULE_DELAY: '20',
    OTEL_BSP_MAX_QUEUE_SIZE: '256',
  });
  try {
    await eventually('the agent connects to the collector', () => held.size > 0 || undefined, 30_000);
    const before = fdCount(agent);
    await spawnAndWait(agent, 400);
    await eventually('a telemetry_problem line', () => problems(agent).length > 0 || undefined, 30_000);
    t.true(most <= 12, `at most ${most} connections to a collector that never answers`);
    t.log(`${most} connections at most`);
    t.true(fdCount(agent) <= before + 8, `fds ${before} before, ${fdCount(agent)} after`);
    t.false(agent.stderr().includes('    at '), 'no stack trace in the log');
    const lines = problems(agent);
    t.true(lines.length <= 6, `${lines.length} lines: ${lines.map((l) => l.message).join(' | ')}`);
    t.log(lines.map((l) => l.message).join('\n'));
    const samples = await scrape(await metricsUrl(agent));
    t.is(samples.get('pidfd_agent_spawns_total{result="ok"}'), 400, 'metrics still count every spawn');
  } finally {
    await agent.stop();
  }
});

test('/metrics holds a bounded number of connections; the agent keeps serving and scrapes work once they go', async (t) => {
  const agent = await startAgentProcess(['--metrics-listen', '127.0.0.1:0']);
  const sockets: Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  try {
    const url = new URL(await metricsUrl(agent));
    await scrape(url.href);
    const before = fdCount(agent);
    // Half-open requests, as a slow or hostile peer would leave them.
    for (let i = 0; i < 300; i++) {
      const s = connect(Number(url.port), url.hostname);
      s.on('error', () => {});
      s.on('connect', () => s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'));
      sockets.push(s);
    }
    await eventually('all 300 connections accepted or refused', () => sockets.every((s) => !s.connecting) || undefined, 30_000);
    const during = fdCount(agent);
    t.true(during <= before + 32 + 4, `fds ${before} before, ${during} with 300 peers (at most 32 connections held)`);
    await spawnAndWait(agent, 16);
    for (const s of sockets) s.destroy();
    const samples = await eventually('a scrape answers once the peers are gone', async () => {
      try {
        return await scrape(url.href);
      } catch {
        return undefined;
      }
    });
    t.is(samples.get('pidfd_agent_spawns_total{result="ok"}'), 16);
  } finally {
    await agent.stop();
  }
});

test('SIGTERM with the collector down: the agent exits 0 and logs the lost last export', async (t) => {
  const closed = createServer();
  const port = await listen(closed);
  await new Promise((resolve) => closed.close(resolve));
  const agent = await startAgentProcess(['--ephemeral'], [], { ...process.env, OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_EXPORTER_OTLP_TIMEOUT: '500', OTEL_BSP_SCHEDULE_DELAY: '60000' });
  await spawnAndWait(agent, 16); // spans queued for the export at shutdown
  const exited = new Promise<number | null>((resolve) => agent.child.once('exit', (code) => resolve(code)));
  agent.child.kill('SIGTERM');
  t.is(await exited, 0);
  t.true(problems(agent).some((l) => /shutdown: the last export failed/.test(l.message)), agent.stderr().slice(-600));
  await agent.stop();
});

test('what the SDK cannot read in its variables is logged at startup, without OTEL_LOG_LEVEL', async (t) => {
  const agent = await startAgentProcess(['--ephemeral'], [], { ...process.env, OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_EXPORTER_OTLP_TIMEOUT: '500', OTEL_BSP_SCHEDULE_DELAY: '60000', OTEL_TRACES_SAMPLER: 'bogus', OTEL_BSP_MAX_QUEUE_SIZE: 'abc' });
  t.teardown(() => agent.stop());
  const messages = problems(agent).map((l) => l.message).join('\n');
  t.regex(messages, /OTEL_TRACES_SAMPLER/);
  t.regex(messages, /OTEL_BSP_MAX_QUEUE_SIZE/);
});

test('/metrics: pipelined requests from peers that never read cost a bounded amount; scrapes still answer', async (t) => {
  const agent = await startAgentProcess(['--ephemeral', '--metrics-listen', '127.0.0.1:0']);
  t.teardown(() => agent.stop());
  const url = new URL(await metricsUrl(agent));
  await scrape(url.href);
  const rss = () => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${agent.child.pid}/status`, 'utf8'))![1]) / 1024;
  const before = rss();
  const sockets: Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  for (let i = 0; i < 32; i++) {
    const s = connect(Number(url.port), url.hostname);
    s.on('error', () => {});
    s.pause(); // never reads a byte of the answers
    s.on('connect', () => s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(20_000)));
    sockets.push(s);
  }
  let peak = before;
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 250));
    peak = Math.max(peak, rss());
  }
  t.log(`RSS ${Math.round(before)} MiB before, ${Math.round(peak)} MiB at the peak of 640,000 pipelined requests`);
  t.true(peak - before < 200, `RSS grew ${Math.round(peak - before)} MiB`);
  sockets.forEach((s) => s.destroy());
  const samples = await eventually('a scrape answers', async () => {
    try {
      return await scrape(url.href);
    } catch {
      return undefined;
    }
  });
  t.true(samples.size > 0);
});

test('an OTEL_METRIC_EXPORT_INTERVAL past what a timer takes is refused with a warning, not run as a 1 ms loop', async (t) => {
  const closed = createServer();
  const port = await listen(closed);
  await new Promise((resolve) => closed.close(resolve));
  const agent = await startAgentProcess(['--ephemeral'], [], { ...process.env, OTEL_METRICS_EXPORTER: 'otlp', OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_METRIC_EXPORT_INTERVAL: '99999999999', OTEL_METRIC_EXPORT_TIMEOUT: 'soon' });
  t.teardown(() => agent.stop());
  await sleep(1000);
  const messages = problems(agent).map((l) => l.message).join('\n');
  t.regex(messages, /OTEL_METRIC_EXPORT_INTERVAL="99999999999" is not a number of milliseconds .*: using 60000/);
  t.regex(messages, /OTEL_METRIC_EXPORT_TIMEOUT="soon"/);
  t.false(agent.stderr().includes('TimeoutOverflowWarning'));
  t.false(/ECONNREFUSED/.test(messages), 'no export was tried within the second');
});
