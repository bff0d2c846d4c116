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
  const version = (JSON.parse(readFileSync(builtFile('package.json'), 'utf8')) as { version: string }).version;
  let traceIds: Telemetry['traceIds'] = () => undefined;
  const log: Logger =
    config.logLevel === 'quiet'
      ? () => {}
      : (event, fields) => process.stderr.write(formatLogLine(config.logFormat, new Date(), event, { ...fields, ...traceIds() }) + '\n');
  // SIGHUP reloads the policy; until the agent exists (telemetry, the lock, restore, a takeover's
  // wait for its predecessor) one is remembered, not left to its default action, which would end
  // the agent in the middle of its start.
  let reloadPending = false;
  let reload = () => void (reloadPending = true);
  process.on('SIGHUP', () => reload());
  // SIGTERM and SIGINT stop the agent, handled from here to the exit. The first asks for the stop.
  // While the agent starts it is remembered: startAgent ends a start that has taken nothing over
  // yet, and abandons a takeover it has not confirmed (the serving agent serves on); past that,
  // the start completes and the agent stops in order, saving what it took over for the next one.
  // A later signal is logged and changes nothing: a second `kubectl delete` or a supervisor's
  // repeated signal must not cut short a stop that waits for a handover, nor a takeover.
  // SIGKILL is the escalation.
  const stopAsked = new AbortController();
  let starting = true;
  let stopSignal: NodeJS.Signals | undefined;
  const askStop = (signal: NodeJS.Signals) => {
    if (stopSignal !== undefined) {
      log('already_stopping', { signal, first: stopSignal, note: 'the stop under way goes on; SIGKILL ends the agent at once' });
      return;
    }
    stopSignal = signal;
    if (starting) log('stop_requested', { signal, note: 'the agent is starting: it stops as soon as it can without losing anything' });
    stopAsked.abort(new Error(`stopped by ${signal} while starting`));
  };
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, askStop);
  const signalled = new Promise<'signal'>((resolve) => stopAsked.signal.addEventListener('abort', () => resolve('signal'), { once: true }));
  // Before anything else, so everything after runs with the SDK (or the API's no-ops) in place.
  const telemetry = await startTelemetry(process.env, config, { version, nodeName: process.env.K8S_NODE_NAME || undefined }, log);
  traceIds = () => telemetry.traceIds();
  log('telemetry', telemetry.off === undefined ? { exporters: telemetry.exporters, metrics_url: telemetry.metricsUrl } : { exporters: [], off: telemetry.off });
  const agentEnv = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
  let agent;
  try {
    // Loaded here, not with this module: its half second of loading is covered by the handlers above.
    const { startAgent } = await import('./agent.js');
    agent = await startAgent({ ...config, agentEnv }, log, telemetry, stopAsked.signal);
  } catch (e) {
    await telemetry.shutdown();
    // Stopped as asked, before it took anything over (startAgent logged what was left as it was).
    if (e === stopAsked.signal.reason) return 0;
    throw e;
  }
  starting = false;
  // Without --policy there is nothing to reload; the handler still keeps SIGHUP from killing the agent.
  const started = agent;
  reload = () => void started.reloadPolicy();
  if (reloadPending) reload();
  // A stop asked for while starting wins the race at once: the agent then stops in order.
  let lostBecause: string | undefined;
  const ended = await Promise.race([signalled, agent.handedOver.then(() => 'handover' as const), agent.storeLost.then((reason) => ((lostBecause = reason), 'store lost' as const))]);
  if (ended === 'handover') {
    let lingered: 'signal' | 'successor gone' = 'signal';
    if (config.afterHandover === 'linger') {
      const keepAlive = setInterval(() => {}, 1 << 30); // nothing else may hold the loop open
      lingered = await Promise.race([signalled, agent.successorGone.then(() => 'successor gone' as const)]);
      clearInterval(keepAlive);
    }
    await telemetry.shutdown();
    // Restarted (the kubelet restarts the container), the agent takes the processes back from the
    // state dir: exit 0 would be restarted too, but tells a supervisor that all went well.
    return lingered === 'signal' ? 0 : 1;
  }
  log('stopping', { note: 'managed processes keep running', ...(ended === 'store lost' ? { why: 'store_lost', reason: lostBecause } : { signal: stopSignal }) });
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
