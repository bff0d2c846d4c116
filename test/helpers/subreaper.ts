// Agents run under test/fixtures/subreaper.c, so that what they leave behind when they die is
// reaped (PID 1 here does not), and the real exits reach a restarted agent via PIDFD_INFO_EXIT.
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { AgentClient } from '../../clients/ts/src/index.js';
import { AGENT_BIN, ROOT } from './agent-process.js';
import { sleep } from './harness.js';

export class Subreaper {
  private queue: Promise<unknown> = Promise.resolve();
  stderr = '';

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly replies: AsyncIterator<string>,
    private readonly dir: string,
  ) {
    child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }

  static start(): Subreaper {
    const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-subreaper-'));
    const bin = join(dir, 'subreaper');
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', bin, join(ROOT, 'test/fixtures/subreaper.c')]);
    const child = spawn(bin, [], { stdio: 'pipe' });
    return new Subreaper(child, createInterface({ input: child.stdout })[Symbol.asyncIterator](), dir);
  }

  /** Starts argv (no spaces inside arguments) as our child; its pid. */
  async start(argv: readonly string[]): Promise<number> {
    return Number((await this.ask(`start ${argv.join(' ')}`, /^pid (\d+)$/))[1]);
  }

  async kill(pid: number, signal: number): Promise<void> {
    await this.ask(`kill ${pid} ${signal}`, /^ok$/);
  }

  /** How pid ended once we reaped it ("exit C" / "signal S"), or "timeout". */
  async wait(pid: number, ms: number): Promise<string> {
    return (await this.ask(`wait ${pid} ${ms}`, /^(exit \d+|signal \d+|timeout)$/))[0];
  }

  /** Ends input: the fixture kills and reaps whatever children it still has, then exits. */
  async close(): Promise<void> {
    this.child.stdin.end();
    if (this.child.exitCode === null) await once(this.child, 'exit');
    rmSync(this.dir, { recursive: true, force: true });
  }

  private ask(command: string, reply: RegExp): Promise<RegExpExecArray> {
    const asked = this.queue.then(async () => {
      this.child.stdin.write(`${command}\n`);
      const line = await this.replies.next();
      const m = line.done ? null : reply.exec(line.value);
      if (!m) throw new Error(`subreaper: ${command} -> ${line.done ? 'EOF' : line.value} ${this.stderr}`);
      return m;
    });
    this.queue = asked.catch(() => undefined);
    return asked;
  }
}

/** The built agent as a child of the subreaper, on a socket in `dir`, with `stateDir`. */
export class RestartableAgent {
  private constructor(
    readonly pid: number,
    readonly client: AgentClient,
    private readonly reaper: Subreaper,
  ) {}

  /** Quiet unless `log`: then its log lines go to the subreaper's stderr. */
  static async start(reaper: Subreaper, dir: string, stateDir: string, args: readonly string[] = [], log = false): Promise<RestartableAgent> {
    const address = `unix://${join(dir, 'agent.sock')}`;
    const pid = await reaper.start([process.execPath, AGENT_BIN, '--listen', address, '--state-dir', stateDir, ...(log ? [] : ['--quiet']), ...args]);
    return RestartableAgent.ready(reaper, pid, address);
  }

  /**
   * Starts a successor on the same socket and state dir while `old` runs: it takes over, `old`
   * exits (how it ended is returned) and the successor serves.
   */
  static async takeOver(reaper: Subreaper, dir: string, stateDir: string, old: RestartableAgent, args: readonly string[] = []): Promise<{ agent: RestartableAgent; oldEnded: string }> {
    const address = `unix://${join(dir, 'agent.sock')}`;
    const pid = await reaper.start([process.execPath, AGENT_BIN, '--listen', address, '--state-dir', stateDir, '--takeover', 'required', ...args]);
    const oldEnded = await reaper.wait(old.pid, 60_000);
    old.client.close();
    return { agent: await RestartableAgent.ready(reaper, pid, address), oldEnded };
  }

  /** A client for an agent already started as the subreaper's child, once it serves. */
  static attach(reaper: Subreaper, pid: number, address: string): Promise<RestartableAgent> {
    return RestartableAgent.ready(reaper, pid, address);
  }

  private static async ready(reaper: Subreaper, pid: number, address: string): Promise<RestartableAgent> {
    const client = new AgentClient(address);
    for (let i = 0; ; i++) {
      try {
        await client.list({}, { deadline: 1000 });
        return new RestartableAgent(pid, client, reaper);
      } catch (e) {
        const ended = await reaper.wait(pid, 0);
        if (ended !== 'timeout' || i > 200) throw new Error(`agent did not start (${ended}): ${reaper.stderr}`, { cause: e });
        await sleep(25);
      }
    }
  }

  /** SIGKILL, and wait until it is dead and reaped. */
  async crash(): Promise<void> {
    this.client.close();
    await this.reaper.kill(this.pid, 9);
    const ended = await this.reaper.wait(this.pid, 10_000);
    if (ended !== 'signal 9') throw new Error(`agent ${this.pid} did not die of SIGKILL: ${ended}`);
  }

  async stop(): Promise<void> {
    this.client.close();
    await this.reaper.kill(this.pid, 15);
    await this.reaper.wait(this.pid, 10_000);
  }
}
