// What the clients' lost-reply tests share: an agent under the subreaper, reached through a
// CutProxy, and commands that count their own starts in a marker file.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { ExecutionContext } from 'ava';
import { CutProxy } from './cut-proxy.js';
import { eventually, sleep, tempDir } from './harness.js';
import { RestartableAgent, type Subreaper } from './subreaper.js';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The pids that ran the command writing to `marker`, one line each. */
export function starts(marker: string): number[] {
  if (!existsSync(marker)) return [];
  return readFileSync(marker, 'utf8').split('\n').filter((l) => l !== '').map(Number);
}

/**
 * Once the agent has recorded the start (the table shows a record only after its commit): killed
 * before that, the agent leaves the request's outcome unknown (ABORTED on the retry), which is
 * right, but is not the lost reply these tests are about. The command writes its marker after
 * its exec, before the agent's commit, so the marker alone does not say so.
 */
export async function recorded(agent: RestartableAgent, labels: Record<string, string>): Promise<void> {
  await eventually('the agent to record the start', async () => (await agent.client.list({ labels })).processes.length === 1);
}

/** A command that appends its pid to `marker`, then sleeps. */
export const marking = (marker: string): string[] => ['sh', '-c', `echo $$ >> ${marker}; exec sleep 1000`];

export interface Rig {
  readonly dir: string;
  readonly stateDir: string;
  readonly agent: RestartableAgent;
  readonly proxy: CutProxy;
}

export async function startRig(t: ExecutionContext, reaper: Subreaper): Promise<Rig> {
  const dir = tempDir('pidfd-agent-retry-');
  const stateDir = join(dir, 'state');
  const agent = await RestartableAgent.start(reaper, dir, stateDir);
  const proxy = await CutProxy.start(join(dir, 'proxy.sock'), join(dir, 'agent.sock'));
  t.teardown(() => proxy.close());
  return { dir, stateDir, agent, proxy };
}

/** A client program whose stdout is read line by line. */
export class LineChild {
  private readonly lines: AsyncIterator<string>;
  stderr = '';

  constructor(
    readonly child: ChildProcessWithoutNullStreams,
  ) {
    child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  static start(t: ExecutionContext, argv: readonly string[]): LineChild {
    const c = new LineChild(spawn(argv[0]!, argv.slice(1), { stdio: 'pipe' }));
    t.teardown(() => {
      if (c.child.exitCode === null) c.child.kill('SIGKILL');
    });
    return c;
  }

  async line(): Promise<string> {
    const next = await this.lines.next();
    if (next.done) throw new Error(`the client ended without a line: ${this.stderr}`);
    return next.value;
  }

  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }
}

/**
 * The lost-reply case for a client in another language: `argv(proxy, marker)` runs a client that
 * prints `ready`, spawns a marking command labelled case=lost-reply on `go`, and prints its result
 * as JSON. The reply is held, the agent killed once it recorded the start, a new agent started;
 * the client's retry must be answered with the first process, started once.
 */
export async function lostReplyIsRetried(t: ExecutionContext, reaper: Subreaper, argv: (proxy: string, marker: string) => string[]): Promise<void> {
  const { dir, stateDir, agent, proxy } = await startRig(t, reaper);
  const marker = join(dir, 'starts');
  const client = LineChild.start(t, argv(proxy.address, marker));
  t.is(await client.line(), 'ready');
  proxy.hold();
  client.send('go');
  const pid = (await eventually('the command to start', () => (starts(marker).length === 1 ? starts(marker) : undefined)))[0]!;
  await recorded(agent, { case: 'lost-reply' });
  await agent.crash();
  const second = await RestartableAgent.start(reaper, dir, stateDir);
  t.teardown(() => second.stop());
  proxy.drop();

  const res = JSON.parse(await client.line()) as { replayed: boolean; pid: number; handle: string; template_request_id: string };
  t.true(res.replayed, 'the retry was answered with the process the first attempt started');
  t.is(res.pid, pid);
  t.is(res.template_request_id, '', "the caller's request is left as it was");
  const { processes } = await second.client.list({ labels: { case: 'lost-reply' } });
  t.deepEqual(processes.map((p) => p.handle), [res.handle]);
  await sleep(200); // a second start would have written its pid by now
  t.deepEqual(starts(marker), [pid], 'started once');
  await second.client.signal({ handle: res.handle, signal: 'KILL' });
}

/**
 * The lost reply of a release_on_exit spawn whose process exits and is released before the retry:
 * `argv(proxy, marker)` runs a client that prints `ready`, spawns a command that exits at once
 * (labelled case=released, release_on_exit) on `go`, and prints its error as JSON. The reply is
 * held, someone else's Wait collects the exit (which releases the record), the connection is cut:
 * the client's retry must be refused as released (final, not retried again), the command run once.
 */
export async function releasedReplyIsNotRerun(t: ExecutionContext, reaper: Subreaper, argv: (proxy: string, marker: string) => string[]): Promise<void> {
  const { dir, agent, proxy } = await startRig(t, reaper);
  t.teardown(() => agent.stop());
  const marker = join(dir, 'starts');
  const client = LineChild.start(t, argv(proxy.address, marker));
  t.is(await client.line(), 'ready');
  proxy.hold();
  client.send('go');
  await eventually('the command to start', () => starts(marker).length === 1);
  const labels = { case: 'released' };
  const handle = await eventually('the start to be recorded', async () => (await agent.client.list({ labels })).processes[0]?.handle);
  await agent.client.wait({ handle });
  await eventually('the release on exit', async () => (await agent.client.list({ labels })).processes.length === 0);
  proxy.drop();

  const res = JSON.parse(await client.line()) as { code?: string; reason?: string; handle?: string; request_id?: string; retryable?: boolean; started?: boolean };
  t.like(res, { code: 'ALREADY_EXISTS', reason: 'REQUEST_RELEASED', handle, retryable: false });
  t.regex(res.request_id ?? '', UUID, 'the retry went under the id the client made up');
  await sleep(200); // a second start would have written its pid by now
  t.is(starts(marker).length, 1, 'started once');
}

/** How the fixtures print an error a call ended with (the Go, Python clients'). */
export interface PrintedFailure {
  readonly code: string;
  readonly reason: string;
  readonly method: string;
  readonly request_id: string | null;
  readonly retryable: boolean;
  readonly client_closed: boolean;
  readonly text: string;
}

/**
 * A client closed while its Spawn (and a List) wait for their replies, for a client in another
 * language: `argv(proxy, marker)` runs a client that prints `ready`; on `go` sends a List, then
 * spawns a marking command labelled case=closed-in-flight; on `close` closes the client and prints
 * both failures and how long after the close they came (`closed_ms`) as JSON; then resends the
 * spawn on a new client under the failure's request_id and prints its result as JSON. The agent
 * runs on, its replies held: the calls must end at the close, marked, with the id that gets the
 * first process back, started once.
 */
export async function closedInFlightIsResent(t: ExecutionContext, reaper: Subreaper, argv: (proxy: string, marker: string) => string[]): Promise<void> {
  const { dir, agent, proxy } = await startRig(t, reaper);
  t.teardown(() => agent.stop());
  const marker = join(dir, 'starts');
  const client = LineChild.start(t, argv(proxy.address, marker));
  t.is(await client.line(), 'ready');
  proxy.hold();
  client.send('go');
  const pid = (await eventually('the command to start', () => (starts(marker).length === 1 ? starts(marker) : undefined)))[0]!;
  await recorded(agent, { case: 'closed-in-flight' });
  client.send('close');

  const closed = JSON.parse(await client.line()) as { spawn: PrintedFailure; list: PrintedFailure; closed_ms: number };
  // What the caller needs of a spawn that may have started: that it may have, and its id.
  t.like(closed.spawn, { code: 'UNAVAILABLE', reason: '', method: 'Spawn', retryable: true, client_closed: true }, closed.spawn.text);
  t.regex(closed.spawn.request_id ?? '', UUID);
  t.regex(closed.spawn.text, /^UNAVAILABLE: no reply, the outcome is unknown \(the client was closed with the call in flight\)$/);
  t.like(closed.list, { method: 'List', client_closed: true }, closed.list.text);
  t.true(closed.closed_ms < 1000, `the calls ended at the close, not at a reply (${closed.closed_ms} ms)`);

  const res = JSON.parse(await client.line()) as { replayed: boolean; pid: number; handle: string };
  t.true(res.replayed, 'the resend on a new client was answered with the process the first call started');
  t.is(res.pid, pid);
  await sleep(200); // a second start would have written its pid by now
  t.deepEqual(starts(marker), [pid], 'started once');
  await agent.client.signal({ handle: res.handle, signal: 'KILL' });
}
