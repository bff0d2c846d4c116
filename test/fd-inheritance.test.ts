// Issue 11 item 7: no spawned child ever inherits a descriptor of the agent. 1,000 children start
// concurrently while the agent opens and passes descriptors for everything else it does at the
// same time (captured output pipes, stdin pipes, the exec helper's report pipe and environment
// memfd, thread pidfds for thread signals, a handover passing every descriptor to a successor),
// and each lists its own descriptors after its exec: only 0-2, every time.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { AgentCallError, AgentClient, OutputMode, OutputStream, SignalTarget, StdinMode, status } from '../clients/ts/src/index.js';
import { ROOT } from './helpers/agent-process.js';
import { pool, range } from './helpers/events.js';
import { eventually, sleep } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-fds-'));
test.after.always(async () => {
  await reaper.close();
  rmSync(dir, { recursive: true, force: true });
});

const N = 1000;
const isUnavailable = (e: unknown) => e instanceof AgentCallError && e.code === status.UNAVAILABLE;

/** A client that follows the agent across the handover: on UNAVAILABLE it reconnects and retries. */
class Following {
  private client: AgentClient;
  constructor(private readonly address: string) {
    this.client = new AgentClient(address);
  }

  async call<T>(fn: (c: AgentClient) => Promise<T>): Promise<T> {
    for (let i = 0; ; i++) {
      try {
        return await fn(this.client);
      } catch (e) {
        if (!isUnavailable(e) || i > 400) throw e;
        this.client.close();
        this.client = new AgentClient(this.address);
        await sleep(25);
      }
    }
  }

  close(): void {
    this.client.close();
  }
}

test('1,000 children started amid captures, stdin pipes, thread signals and a handover hold only fds 0-2', async (t) => {
  t.timeout(170_000);
  const listFds = join(dir, 'list-fds');
  const threads = join(dir, 'threads');
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', listFds, join(ROOT, 'test/fixtures/list-fds.c')]);
  execFileSync('gcc', ['-O2', '-pthread', '-o', threads, join(ROOT, 'test/fixtures/threads.c')]);
  const stateDir = join(dir, 'state');
  const address = `unix://${join(dir, 'agent.sock')}`;
  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const client = new Following(address);
  t.teardown(() => client.close());

  // A multi-threaded process whose threads are signalled (a PIDFD_THREAD pidfd each time) throughout.
  const report = join(dir, 'threads.out');
  const { process: mt } = await first.client.spawn({ argv: [threads, 'report', '3'], stdout: { mode: OutputMode.OUTPUT_MODE_FILE, path: report } });
  const tids = await eventually('the threads to report', () => {
    const tids = readFileSync(report, 'utf8').split('\n').filter((l) => l.startsWith('tid ')).map((l) => Number(l.slice(4)));
    return tids.length === 4 && tids;
  });
  let spawning = true;
  let signalled = 0;
  const signals = (async () => {
    while (spawning) {
      for (const tid of tids) {
        await client.call((c) => c.signal({ handle: mt!.handle, signal: 'USR1', target: SignalTarget.SIGNAL_TARGET_THREAD, tid }));
        signalled++;
      }
    }
  })();

  let started = 0;
  const handover = (async () => {
    await eventually('a third of the children to start', () => started >= N / 3, 60_000);
    return RestartableAgent.takeOver(reaper, dir, stateDir, first, ['--quiet']);
  })();
  const handles = await pool(range(N), 16, async (i) => {
    const { process: p } = await client.call((c) =>
      c.spawn({
        argv: [listFds],
        requestId: `fds-${i}`,
        stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE, ringBytes: 4096 },
        stderr: i % 3 === 0 ? { mode: OutputMode.OUTPUT_MODE_CAPTURE, ringBytes: 4096 } : { mode: OutputMode.OUTPUT_MODE_DISCARD },
        stdin: i % 2 === 0 ? StdinMode.STDIN_MODE_PIPE : StdinMode.STDIN_MODE_NULL,
        // Through the exec helper (report pipe, environment memfd) for some.
        ...(i % 4 === 1 ? { umask: 0o022 } : {}),
      }),
    );
    started++;
    return p!.handle;
  });
  spawning = false;
  await signals;
  const { agent: second, oldEnded } = await handover;
  t.teardown(() => second.stop());
  t.is(oldEnded, 'exit 0', 'the handover happened');

  const listings = await pool(handles, 32, async (handle) => {
    await client.call((c) => c.wait({ handle }));
    let text = '';
    await client.call(async (c) => {
      text = '';
      for await (const r of c.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT, follow: true })) text += Buffer.from(r.data).toString();
    });
    return text;
  });
  const wrong = listings.map((l, i) => [i, l] as const).filter(([, l]) => l !== '0 1 2\n');
  t.log(`${N} children, ${signalled} thread signals, handover at child ${Math.round(N / 3)} or later`);
  t.deepEqual(wrong, [], 'every child held exactly 0 1 2');
  await client.call((c) => c.signal({ handle: mt!.handle, signal: 'KILL' }));
});
