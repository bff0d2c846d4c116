// The bench side of agent-driver.ts: forks it (under tsx, its own process group) and sends it one
// command at a time over the IPC channel.
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DriverCommand, DriverReply, DriverRun } from './agent-driver.js';

const BENCH = dirname(fileURLToPath(import.meta.url));
/** Cycles of each kind an agent runs before it is measured (JIT, channel, pools: discarded). */
export const WARMUP = 4000;

export class AgentDriver {
  private readonly proc: ChildProcess;
  private pending: ((r: DriverReply) => void) | undefined;

  constructor() {
    this.proc = fork(join(BENCH, 'agent-driver.ts'), [], { cwd: dirname(BENCH), execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true });
    this.proc.on('message', (m) => this.settle(m as DriverReply));
    this.proc.on('exit', (code) => this.settle({ ok: false, error: `agent driver exited (${code})` }));
  }

  async send(cmd: DriverCommand): Promise<DriverReply & { ok: true }> {
    if (this.pending) throw new Error('agent driver: one command at a time');
    const reply = await new Promise<DriverReply>((resolve) => {
      this.pending = resolve;
      this.proc.send(cmd);
    });
    if (!reply.ok) throw new Error(`agent driver ${cmd.op}: ${reply.error}`);
    return reply;
  }

  async run(cmd: DriverCommand): Promise<DriverRun> {
    const r = (await this.send(cmd)).result;
    if (!r) throw new Error(`agent driver ${cmd.op}: no result`);
    return r;
  }

  /**
   * Runs every path the measurements take (Spawn+Wait, Spawn+Watch, bare Gets, 16 in flight) until
   * V8 has compiled them: with only Spawn+Wait warmed, the Watch path was compiled by V8's threads
   * inside the measured run (FINDINGS "Session 13: CPU per cycle": Watch cycle ×0.71 after 8,000).
   */
  async warmUp(n = WARMUP): Promise<void> {
    await this.run({ op: 'tput', conc: 16, n, via: 'wait' });
    await this.run({ op: 'tput', conc: 16, n, via: 'watch' });
    await this.run({ op: 'get', conc: 16, n });
  }

  private settle(reply: DriverReply): void {
    const p = this.pending;
    this.pending = undefined;
    p?.(reply);
  }
}
