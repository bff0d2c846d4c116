import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentClient } from '../../clients/ts/src/index.js';
import { sleep } from './harness.js';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const AGENT_BIN = join(ROOT, 'dist/src/main.js');
export const CLI_BIN = join(ROOT, 'dist/src/cli/main.js');

export interface AgentProcess {
  readonly child: ChildProcess;
  readonly address: string;
  readonly client: AgentClient;
  readonly stderr: () => string;
  stop(): Promise<void>;
}

/** The built agent as its own process (optionally behind a wrapper such as prlimit). */
export async function startAgentProcess(args: string[] = [], wrapper: string[] = [], env?: NodeJS.ProcessEnv): Promise<AgentProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-proc-'));
  const address = `unix://${join(dir, 'agent.sock')}`;
  const state = args.includes('--state-dir') || args.includes('--ephemeral') ? [] : ['--state-dir', join(dir, 'state')];
  const argv = [...wrapper, process.execPath, AGENT_BIN, '--listen', address, ...state, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env: env ?? process.env });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const client = new AgentClient(address);
  for (let i = 0; ; i++) {
    try {
      await client.list({}, { deadline: 1000 });
      break;
    } catch (e) {
      // Generous: a loaded machine (or the OpenTelemetry SDK loading) can take seconds to start it.
      if (i > 600 || child.exitCode !== null) {
        child.kill('SIGKILL'); // an agent left running would keep the test worker alive
        client.close();
        throw new Error(`agent did not start: ${stderr}`, { cause: e });
      }
      await sleep(50);
    }
  }
  return {
    child,
    address,
    client,
    stderr: () => stderr,
    stop: async () => {
      client.close();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
