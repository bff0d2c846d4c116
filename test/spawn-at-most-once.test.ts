// Issue 11 item 2: a Spawn with a request_id runs its command at most once, whatever point of it a
// crash hits, and a retry answers honestly: with the process, or ABORTED / OUTCOME_UNKNOWN when
// the crashed agent had recorded the intent but not yet the process. Every command appends its
// pid to a file of its own when it starts, so starts are counted by the kernel's doing, not the
// agent's word. Agents run under the C subreaper, which reaps (and at the end kills) what they
// leave behind.
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentCallError, State, status, type Process } from '../clients/ts/src/index.js';
import { eventually, tempDir } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';

const reaper = Subreaper.start();
test.after.always(() => reaper.close());

const SPAWNS = 200;

/** The pids that started request i's command, one line each. */
function starts(markers: string, i: number): number[] {
  const file = join(markers, `r${i}`);
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map(Number);
}

test.serial('kill -9 at a random point of 200 concurrent spawns: every retry answers with the process or OUTCOME_UNKNOWN, no command starts twice', async (t) => {
  const dir = tempDir('pidfd-agent-at-most-once-');
  const stateDir = join(dir, 'state');
  const markers = tempDir('pidfd-agent-at-most-once-markers-');
  const argv = (i: number) => ['sh', '-c', `echo $$ >> ${join(markers, `r${i}`)}; exec sleep 1000`];

  const first = await RestartableAgent.start(reaper, dir, stateDir);
  const acked = new Map<number, Process>();
  const killAfter = 1 + Math.floor(Math.random() * (SPAWNS - 2));
  let crashing: Promise<void> | undefined;
  const calls = Array.from({ length: SPAWNS }, async (_, i) => {
    try {
      const { process: p } = await first.client.spawn({ argv: argv(i), requestId: `r${i}` });
      acked.set(i, p!);
    } catch (e) {
      // The agent died under it: UNAVAILABLE, or however the transport ended the call.
      if (!(e instanceof AgentCallError)) throw e;
      return;
    }
    if (acked.size === killAfter) crashing = first.crash();
  });
  await Promise.all(calls);
  if (crashing === undefined) crashing = first.crash();
  await crashing;
  t.log(`killed after ${killAfter} acknowledgements; ${acked.size} acknowledged in all`);

  const second = await RestartableAgent.start(reaper, dir, stateDir);
  type Answer = { i: number; process: Process; replayed: boolean } | { i: number; error: AgentCallError };
  const answers = await Promise.all(
    Array.from({ length: SPAWNS }, async (_, i): Promise<Answer> => {
      try {
        const r = await second.client.spawn({ argv: argv(i), requestId: `r${i}` });
        return { i, process: r.process!, replayed: r.replayed };
      } catch (e) {
        if (!(e instanceof AgentCallError)) throw e;
        return { i, error: e };
      }
    }),
  );
  const counts = { replayed: 0, startedNow: 0, unknown: 0 };
  for (const a of answers) {
    if ('error' in a) {
      t.is(a.error.code, status.ABORTED, `r${a.i}: ${a.error.message}`);
      t.is(a.error.reason, 'OUTCOME_UNKNOWN');
      t.false(acked.has(a.i), `r${a.i} was acknowledged, yet its outcome is unknown`);
      counts.unknown++;
      continue;
    }
    const earlier = acked.get(a.i);
    if (earlier) {
      t.true(a.replayed, `r${a.i}: an acknowledged spawn replays`);
      t.is(a.process!.handle, earlier.handle);
    }
    if (a.replayed) counts.replayed++;
    else counts.startedNow++;
  }
  t.log(`retries: ${counts.replayed} replayed, ${counts.startedNow} started now (never started before), ${counts.unknown} OUTCOME_UNKNOWN`);

  // Each process answered for writes its marker once it runs; then every count is final.
  const running = answers.flatMap((a) => ('error' in a ? [] : [a]));
  await eventually('every process answered for to have started', () => running.every((a) => starts(markers, a.i).includes(a.process.pid)), 30_000);
  for (let i = 0; i < SPAWNS; i++) t.true(starts(markers, i).length <= 1, `r${i} started ${starts(markers, i).length} times`);
  for (const a of running) {
    t.deepEqual(starts(markers, a.i), [a.process!.pid], `r${a.i}: the process answered for is the one start`);
    t.is((await second.client.get({ handle: a.process!.handle })).process!.state, State.STATE_RUNNING);
  }

  // Asked again, every request answers as before.
  for (const a of answers) {
    const again = await second.client.spawn({ argv: argv(a.i), requestId: `r${a.i}` }).then(
      (r) => r.process!.handle,
      (e: AgentCallError) => e.reason,
    );
    t.is(again, 'error' in a ? 'OUTCOME_UNKNOWN' : a.process!.handle, `r${a.i} asked a third time`);
  }

  for (const a of running) await second.client.signal({ handle: a.process!.handle, signal: 'KILL' });
  // What started without an answer runs unmanaged: the subreaper, its parent now, kills it.
  const orphans = answers.filter((a) => 'error' in a).flatMap((a) => starts(markers, a.i));
  t.log(`${orphans.length} of the OUTCOME_UNKNOWN spawns had started`);
  for (const pid of orphans) process.kill(pid, 'SIGKILL');
  await second.stop();
});
