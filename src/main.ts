#!/usr/bin/env node
// pidfd-agent: the only place that reads argv and the environment.
import { ConfigError, parseConfig, USAGE } from './config/config.js';
import { readFileSync } from 'node:fs';
import { formatLogLine, type Logger } from './log.js';
import { startTelemetry, type Telemetry } from './telemetry/telemetry.js';
import { builtFile } from './built-files.js';

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  let config;
  try {
    config = parseConfig(args);
  } catch (e) {
    if (!(e instanceof ConfigError) && !(e instanceof TypeError)) throw e;
    console.error(`pidfd-agent: ${e.message}\n${USAGE}`);
    return 2;
  }
  // SIGHUP reloads the policy; until the agent exists (telemetry, the lock, restore, a takeover's
  // wait for its predecessor) one is remembered, not left to its default action, which would end
  // the agent in the middle of its start.
  let reloadPending = false;
  let reload = () => void (reloadPending = true);
  process.on('SIGHUP', () => reload());
  // Before anything else, so everything after runs with the SDK (or the API's no-ops) in place.
  const version = (JSON.parse(readFileSync(builtFile('package.json'), 'utf8')) as { version: string }).version;
  let traceIds: Telemetry['traceIds'] = () => undefined;
  const log: Logger =
    config.logLevel === 'quiet'
      ? () => {}
      : (event, fields) => process.stderr.write(formatLogLine(config.logFormat, new Date(), event, { ...fields, ...traceIds() }) + '\n');
  const telemetry = await startTelemetry(process.env, config, { version, nodeName: process.env.K8S_NODE_NAME || undefined }, log);
  traceIds = () => telemetry.traceIds();
  log('telemetry', telemetry.off === undefined ? { exporters: telemetry.exporters, metrics_url: telemetry.metricsUrl } : { exporters: [], off: telemetry.off });
  const agentEnv = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
  let agent;
  try {
    // Loaded here, not with this module: its half second of loading is covered by the handlers above.
    const { startAgent } = await import('./agent.js');
    agent = await startAgent({ ...config, agentEnv }, log, telemetry);
  } catch (e) {
    await telemetry.shutdown();
    throw e;
  }
  // Without --policy there is nothing to reload; the handler still keeps SIGHUP from killing the agent.
  const started = agent;
  reload = () => void started.reloadPolicy();
  if (reloadPending) reload();
  const signalled = new Promise<'signal'>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve('signal'));
  });
  let lostBecause: string | undefined;
  const ended = await Promise.race([signalled, agent.handedOver.then(() => 'handover' as const), agent.storeLost.then((reason) => ((lostBecause = reason), 'store lost' as const))]);
  if (ended === 'handover') {
    if (config.afterHandover === 'linger') {
      const keepAlive = setInterval(() => {}, 1 << 30); // nothing else may hold the loop open
      await signalled;
      clearInterval(keepAlive);
    }
    await telemetry.shutdown();
    return 0;
  }
  log('stopping', { note: 'managed processes keep running', ...(ended === 'store lost' ? { why: 'store_lost', reason: lostBecause } : {}) });
  await agent.stop();
  await telemetry.shutdown();
  return ended === 'store lost' ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`pidfd-agent: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
