// What counts against a tenant's max_processes, at the edges: a spawn waiting for its store commit
// (a held record enters the table only once the group commit is done; runningOwnedBy subtracted
// it before that too, so a tenant with one process in that window counted -1 and its next Spawn
// was let in: review s21 T1), and a release whose clean-up failed (T5). The store stage is slowed
// here (a telemetry stage that waits), so the commit window is wide, not rare.
import test from 'ava';
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentCallError, OutputMode, State, status } from '../clients/ts/src/index.js';
import { NO_TELEMETRY, type SpawnStage } from '../src/process/telemetry-port.js';
import { TELEMETRY_OFF } from '../src/telemetry/telemetry.js';
import { eventually, procState, sleep, startHarness, tempDir, type Harness } from './helpers/harness.js';

const COMMIT_DELAY_MS = 300;

const slowStore = {
  ...TELEMETRY_OFF,
  process: {
    ...NO_TELEMETRY,
    spawnTrace: () => ({
      stage: <T>(stage: SpawnStage, fn: () => T): T => (stage === 'store' ? (sleep(COMMIT_DELAY_MS).then(fn) as T) : fn()),
      started: () => {},
    }),
  },
};

let h: Harness;
test.before(async () => {
  const policyFile = join(tempDir('pidfd-agent-commit-policy-'), 'policy.yaml');
  writeFileSync(
    policyFile,
    `rules:
  - identities: ["unix:uid=0"]
    role: tenant
    spawn: { run_as: ["nobody"], executables: ["/usr/bin/*", "/bin/*"], max_processes: 1 }
`,
  );
  h = await startHarness({ policyFile, telemetry: slowStore });
});
test.after.always(async () => {
  await h?.close();
});

test.serial('a tenant at max_processes: 1 flooding Spawn runs one process at a time, also while a spawn waits for its commit', async (t) => {
  const started: { handle: string; pid: number }[] = [];
  t.teardown(async () => {
    for (const { pid } of started) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  const refusals = new Map<string, number>();
  const until = Date.now() + 4 * COMMIT_DELAY_MS;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (Date.now() < until) {
        try {
          const { process: p } = await h.client.spawn({ argv: ['sleep', '30'], user: 'nobody' }, { retry: false });
          started.push({ handle: p!.handle, pid: p!.pid });
        } catch (e) {
          if (!(e instanceof AgentCallError)) throw e;
          const key = `${e.code} ${e.reason} ${String(e.info['field'])}`;
          refusals.set(key, (refusals.get(key) ?? 0) + 1);
          await sleep(5);
        }
      }
    }),
  );
  // Every one sleeps for 30 s: all that were let in run at once.
  t.true(started.every(({ pid }) => procState(pid) !== undefined));
  t.is(started.length, 1, `let in: ${started.length}, refused: ${JSON.stringify([...refusals])}`);
  t.deepEqual([...refusals.keys()], ['8 POLICY_QUOTA max_processes']);
  const { processes } = await h.client.list({});
  t.is(processes.filter((p) => p.state === State.STATE_RUNNING).length, 1);
  // The count is not left off by one the other way: once it is stopped, the next spawn starts.
  await h.client.stop({ handle: started[0]!.handle, signal: 'KILL' });
  const { process: next } = await h.client.spawn({ argv: ['sleep', '30'], user: 'nobody' }, { retry: false });
  started.push({ handle: next!.handle, pid: next!.pid });
  t.is(next!.state, State.STATE_RUNNING);
});

test.serial('a release whose capture-file clean-up fails is done, and its running process still counts against max_processes', async (t) => {
  // The test before killed its process in its teardown: its place is free once the agent reaped it.
  await eventually('the place of the test before', () => h.agent.manager.runningOwnedBy('unix:uid=0') === 0);
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'], user: 'nobody', stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } }, { retry: false });
  const pid = p!.pid;
  const ring = join(h.dir, 'state', 'capture', `${p!.handle}.stdout.ring`);
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
    if (existsSync(ring)) rmdirSync(ring);
  });
  await eventually('its capture file', () => existsSync(join(h.dir, 'state', 'capture', `${p!.handle}.json`)));
  // A directory where a ring file would be: removing the capture files fails (EISDIR) after the
  // store recorded the release and the table let go of the record. The files are the older
  // agent's copy of the store's marks, so that no longer fails the release (capture_file_error).
  mkdirSync(ring);
  await h.client.release({ handle: p!.handle });
  t.is(h.agent.manager.runningOwnedBy('unix:uid=0'), 1, 'the released process still runs and still counts');
  const past = await t.throwsAsync(h.client.spawn({ argv: ['sleep', '30'], user: 'nobody' }, { retry: false }), { instanceOf: AgentCallError });
  t.like(past, { code: status.RESOURCE_EXHAUSTED, reason: 'POLICY_QUOTA', details: 'max_processes: at most 1 running processes at once; 1 of them is released and still running (policy)' });
  process.kill(pid, 'SIGKILL');
  await eventually('its exit to free the place', () => h.agent.manager.runningOwnedBy('unix:uid=0') === 0);
});
