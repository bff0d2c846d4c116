#!/usr/bin/env node
// pidfd-agent: the only place that reads argv and the environment.
import { ConfigError, parseConfig, USAGE } from './config/config.js';
import { readFileSync } from 'node:fs';
import { formatLogLine, type Logger } from './log.js';
import { startTelemetry, type Telemetry } from './telemetry/telemetry.js';
import { builtFile } from './built-files.js';
import type { Agent, LingeringAgent } from './agent.js';

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
  // Loaded here, not with this module: its half second of loading is covered by the handlers above.
  const { startAgent, resumeAgent } = await import('./agent.js');
  let agent: Agent;
  try {
    agent = await startAgent({ ...config, agentEnv }, log, telemetry, stopAsked.signal);
  } catch (e) {
    await telemetry.shutdown();
    // Stopped as asked, before it took anything over (startAgent logged what was left as it was).
    if (e === stopAsked.signal.reason) return 0;
    throw e;
  }
  for (;;) {
    starting = false;
    // Without --policy there is nothing to reload; the handler still keeps SIGHUP from killing the agent.
    const started = agent;
    reload = () => void started.reloadPolicy();
    if (reloadPending) reload();
    reloadPending = false;
    // A stop asked for while starting wins the race at once: the agent then stops in order.
    // The races settle with plain values, what they carry goes through variables cleared after use:
    // `signalled` settles only at the end, and keeps the result of every race run against it, so
    // a result holding the lingering (and through it the old table) would keep every agent this
    // process ever ran, capture rings included.
    let lostBecause: string | undefined;
    let handed: LingeringAgent | null = null;
    const ended = await Promise.race([signalled, agent.handedOver.then((lingering) => ((handed = lingering), 'handed over' as const)), agent.storeLost.then((reason) => ((lostBecause = reason), 'store lost' as const))]);
    if (ended === 'handed over') {
      // Handed over. --after-handover exit: done. Lingering: SIGTERM ends it (exit 0), or it serves again.
      const lingering = handed as LingeringAgent | null;
      handed = null;
      const resumed = lingering === null ? 'signal' : await linger(lingering);
      if (resumed === 'signal') {
        await telemetry.shutdown();
        return 0;
      }
      agent = resumed;
      log('resumed_serving', { pid: process.pid, note: 'the lingering agent serves the state dir again, in the same process, with every process it re-adopted; it hands over again to the next agent that asks' });
      continue;
    }
    log('stopping', { note: 'managed processes keep running', ...(ended === 'store lost' ? { why: 'store_lost', reason: lostBecause } : { signal: stopSignal }) });
    await agent.stop();
    await telemetry.shutdown();
    return ended === 'store lost' ? 1 : 0;
  }

  /**
   * Lingering after a handover until SIGTERM ('signal'), or until the successor is gone and no agent
   * serves the state dir: then this process starts again there, as a plain start that takes nothing
   * over, and serves every process (the agent returned). An agent found serving or holding the
   * store by then is followed instead. The processes this agent started never lose their parent
   * (parent_death_signal), and no container restart or its backoff is waited for. A stop asked for
   * during that start is handled as during any start (see above). A start that fails on its own
   * before it has the store took nothing back: lingering goes on, and it is tried again later. Only
   * one that fails after (the old table let go of) ends the agent, exit 1, for its container's
   * restart to take the processes back.
   */
  async function linger(lingering: LingeringAgent): Promise<Agent | 'signal'> {
    // A policy reloaded now would be read again by the start anyway: nothing to remember.
    reload = () => {};
    const keepAlive = setInterval(() => {}, 1 << 30); // nothing else may hold the loop open
    let retryMs = RESUME_RETRY_MS;
    try {
      for (;;) {
        const why = await Promise.race([signalled, lingering.successorGone().then(() => 'gone' as const)]);
        if (why === 'signal') return 'signal';
        starting = true;
        reload = () => void (reloadPending = true);
        let resumed;
        try {
          resumed = await resumeAgent({ ...config!, agentEnv }, log, telemetry, stopAsked.signal, lingering);
        } catch (e) {
          if (e === stopAsked.signal.reason) return 'signal';
          const error = e instanceof Error ? e.message : String(e);
          if (lingering.over) {
            log('resume_failed', { error, note: 'exiting 1, the processes already let go of: restarted, the agent takes them back from the state dir' });
            await telemetry.shutdown();
            throw e;
          }
          // Nothing taken yet (a --policy or TLS file broken meanwhile, a store a newer agent has
          // migrated): an exit would fire every parent_death_signal, and a restart would fail the
          // same way or take over from whoever serves by then. Lingering goes on, reaping, and
          // tries again later, following any agent that serves meanwhile.
          log('resume_failed', { error, retry_in_ms: retryMs, note: 'nothing was taken back: lingering on, reaping the processes it started; it tries again later, unless an agent serves the state dir by then' });
          const retry = await Promise.race([signalled, new Promise<'retry'>((resolve) => setTimeout(resolve, retryMs, 'retry'))]);
          if (retry === 'signal') return 'signal';
          retryMs = Math.min(retryMs * 2, RESUME_RETRY_MAX_MS);
        }
        if (resumed !== undefined && resumed !== 'served') return resumed;
        starting = false;
        reload = () => {};
      }
    } finally {
      clearInterval(keepAlive);
    }
  }
}

/** A resume that failed before it took anything is tried again after this, doubling up to the max. */
const RESUME_RETRY_MS = 1000;
const RESUME_RETRY_MAX_MS = 60_000;

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`pidfd-agent: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
