// The bench side of agent-driver.ts: forks it (under tsx, its own process group) and sends it one
// command at a time over the IPC channel.
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DriverCommand, DriverReply, DriverRun } from './agent-driver.js';

const BENCH = dirname(fileURLToPath(import.meta.url));

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

  private settle(reply: DriverReply): void {
    const p = this.pending;
    this.pending = undefined;
    p?.(reply);
  }
}
