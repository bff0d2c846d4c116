// Spawns finishing in one turn of the event loop and the exits reaped in it are one store
// transaction (manager.ts, commitStarts). A kill -9 at a random point of that churn must not make
// the store lie: every Spawn answered is known to the restarted agent, and every exit reported
// (a Wait answered) is still that exit, never status_lost nor RUNNING again.
import test from 'ava';
import { join } from 'node:path';
import { State, type AgentClient } from '../clients/ts/src/index.js';
import { tempDir } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

const CYCLES = 600;
const CONCURRENCY = 16;

test.serial('kill -9 during grouped commits: every answered spawn is known after the restart, every reported exit is kept', async (t) => {
  const dir = tempDir('pidfd-agent-group-commit-');
  const stateDir = join(dir, 'state');
  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const spawned = new Set<string>();
  /** Exits the crashed agent reported: handle → exit code. */
  const reported = new Map<string, number>();
  const killAt = 50 + Math.floor(Math.random() * (CYCLES - 100));
  let started = 0;
  let crashing: Promise<void> | undefined;
  const worker = async (client: AgentClient) => {
    while (started < CYCLES && crashing === undefined) {
      const n = started++;
      if (n === killAt) crashing = first.crash();
      try {
        // Exit codes differ, so a reported exit is checked as that exit, not any.
        const { process: p } = await client.spawn({ argv: ['sh', '-c', `exit ${n % 100}`] });
        spawned.add(p!.handle);
        const { process: done } = await client.wait({ handle: p!.handle });
        if (done!.state === State.STATE_EXITED) reported.set(p!.handle, done!.exit!.code!);
      } catch {
        return; // the agent is gone
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, () => worker(first.client)));
  await (crashing ?? first.crash());
  t.log(`killed after ${started} spawns started: ${spawned.size} answered, ${reported.size} exits reported`);
  t.true(reported.size > 0, 'some exits were reported before the crash');

  const second = await RestartableAgent.start(reaper, dir, stateDir);
  try {
    const { processes } = await second.client.list({});
    const after = new Map(processes.map((p) => [p.handle, p]));
    const unknown = [...spawned].filter((h) => !after.has(h));
    t.deepEqual(unknown, [], 'every answered Spawn is in the restarted table');
    const changed = [...reported].filter(([h, code]) => {
      const p = after.get(h);
      return p === undefined || p.state !== State.STATE_EXITED || p.exit?.statusLost === true || p.exit?.code !== code;
    });
    t.deepEqual(changed, [], 'every reported exit is still that exit');
  } finally {
    await second.crash();
  }
});
