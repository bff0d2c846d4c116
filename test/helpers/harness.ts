import { mkdtempSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentCallError, AgentClient } from '../../clients/ts/src/index.js';
import { startAgent, type Agent } from '../../src/agent.js';
import { DEFAULTS, type Config } from '../../src/config/config.js';
import type { Telemetry } from '../../src/telemetry/telemetry.js';

export interface Harness {
  readonly agent: Agent;
  readonly client: AgentClient;
  readonly address: string;
  readonly dir: string;
  readonly logs: { event: string; fields: Record<string, unknown> }[];
  close(): Promise<void>;
}

/** A real agent in this process, serving on a unix socket in a fresh temp dir (and on `tcp` addresses). */
export async function startHarness({ tcp = [], telemetry, ...overrides }: Partial<Config> & { tcp?: readonly string[]; telemetry?: Telemetry } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-test-'));
  const address = `unix://${join(dir, 'agent.sock')}`;
  const logs: Harness['logs'] = [];
  const agentEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: process.env['HOME'] ?? '/root' };
  const stateDir = join(dir, 'state');
  // The audit trail goes to a file in the temp dir rather than into the test runner's output.
  const auditLog = join(dir, 'audit.log');
  const agent = await startAgent({ ...DEFAULTS, listen: [address, ...tcp], agentEnv, stateDir, auditLog, ...overrides }, (event, fields) => logs.push({ event, fields }), telemetry);
  const client = new AgentClient(address);
  return {
    agent,
    client,
    address,
    dir,
    logs,
    close: async () => {
      client.close();
      await agent.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Maybe<T> = T | undefined | false;

export async function eventually<T>(what: string, fn: () => Maybe<T> | Promise<Maybe<T>>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** rmdir that tolerates a still-populated or already removed directory (cgroups in teardowns). */
export function tryRmdir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // still populated, or gone: tried again, or nothing to do
  }
}

/** State letter of a pid from /proc (R, S, Z, ...), undefined when there is no such pid. For tests only. */
export function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

const tempDirs: string[] = [];
process.on('exit', () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory under the system temp dir, removed when the test process exits. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** A fresh directory (removed at exit) for one agent: its socket address and state dir inside. */
export function agentDir(prefix: string): { dir: string; stateDir: string; address: string } {
  const dir = tempDir(prefix);
  return { dir, stateDir: join(dir, 'state'), address: `unix://${join(dir, 'agent.sock')}` };
}

/** The AgentCallError a call fails with; anything else (a success too) fails the test. */
export async function refusal(call: Promise<unknown>): Promise<AgentCallError> {
  try {
    await call;
  } catch (e) {
    if (e instanceof AgentCallError) return e;
    throw e;
  }
  throw new Error('the call was expected to fail');
}
