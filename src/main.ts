#!/usr/bin/env node
// pidfd-agent: the only place that reads argv and the environment.
import { startAgent } from './agent.js';
import { ConfigError, parseConfig, USAGE } from './config/config.js';
import type { Logger } from './log.js';

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
  const log: Logger =
    config.logLevel === 'quiet'
      ? () => {}
      : (event, fields) => process.stderr.write(JSON.stringify({ time: new Date().toISOString(), event, ...fields }) + '\n');
  const agentEnv = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
  const agent = await startAgent({ ...config, agentEnv }, log);
  // Without --policy there is nothing to reload; the handler still keeps SIGHUP from killing the agent.
  process.on('SIGHUP', () => agent.reloadPolicy());
  const signalled = new Promise<'signal'>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve('signal'));
  });
  if ((await Promise.race([signalled, agent.handedOver.then(() => 'handover' as const)])) === 'handover') {
    if (config.afterHandover === 'linger') {
      const keepAlive = setInterval(() => {}, 1 << 30); // nothing else may hold the loop open
      await signalled;
      clearInterval(keepAlive);
    }
    return 0;
  }
  log('stopping', { note: 'managed processes keep running' });
  await agent.stop();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`pidfd-agent: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  },
);
