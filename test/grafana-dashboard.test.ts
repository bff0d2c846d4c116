// deploy/grafana/pidfd-agent.json queries only metrics a live agent exposes: every metric name in
// its queries is on /metrics after a little work (a spawn, an exit, a signal, a failure, a watch).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { ROOT, startAgentProcess } from './helpers/agent-process.js';
import { families, metricsUrl, scrape } from './helpers/metrics-scrape.js';

interface Dashboard {
  panels: { title: string; targets: { expr: string }[] }[];
  templating: { list: { query?: unknown }[] };
}

/** Metric names in a PromQL query: a name before a selector's `{` (every query here has one). */
const metricNames = (expr: string): string[] => [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{/g)].map((m) => m[1]!);

test('every metric the Grafana dashboard queries exists on a live agent', async (t) => {
  const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/pidfd-agent.json'), 'utf8')) as Dashboard;
  const queried = new Map<string, string>();
  for (const panel of dashboard.panels) {
    t.true(panel.targets.length > 0, `${panel.title} has a query`);
    for (const { expr } of panel.targets) {
      const names = metricNames(expr);
      t.true(names.length > 0, `a metric in ${expr}`);
      for (const name of names) queried.set(name, panel.title);
    }
  }
  for (const { query } of dashboard.templating.list) {
    const m = typeof query === 'string' ? /label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(query) : null;
    if (m) queried.set(m[1]!, 'the instance variable');
  }

  const agent = await startAgentProcess(['--metrics-listen', '127.0.0.1:0']);
  try {
    const url = await metricsUrl(agent);
    const { process } = await agent.client.spawn({ argv: ['/bin/sleep', '100'] });
    await agent.client.signal({ handle: process!.handle, signal: 'SIGTERM' });
    await agent.client.wait({ handle: process!.handle });
    await t.throwsAsync(agent.client.get({ handle: 'nosuchhandle0000000000000000' }));
    const exposed = families(await scrape(url));
    const missing = [...queried].filter(([name]) => !exposed.has(name)).map(([name, panel]) => `${name} (${panel})`);
    t.deepEqual(missing, []);
    t.true(queried.size >= 15, `${queried.size} metrics queried`);
  } finally {
    await agent.stop();
  }
});
