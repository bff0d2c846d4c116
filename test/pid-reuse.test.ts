import test from 'ava';
import { readFileSync } from 'node:fs';
import { runInPidNamespace } from './fixtures/pid-namespace.js';

const TRIALS = 1000;

test('a recycled PID never receives the agent signal, while kill(pid) hits the innocent process', async (t) => {
  const hostPidMax = readFileSync('/proc/sys/kernel/pid_max', 'utf8');
  const run = await runInPidNamespace('reuse-trials', [String(TRIALS)], 150_000);
  t.log(`${run.stdout.trimEnd()}\n(${(run.ms / 1000).toFixed(1)}s)`);
  t.is(run.code, 0, run.stderr);
  const lines = run.stdout.trimEnd().split('\n');
  const m = /^reuse trials: (\d+), agent wrong targets: (\d+), pid-based wrong targets: (\d+)$/.exec(lines.at(-1) ?? '');
  t.truthy(m, 'the tally is the last line');
  const [trials, agentWrong, pidWrong] = (m ?? []).slice(1).map(Number);
  t.is(trials, TRIALS);
  t.is(agentWrong, 0, 'the agent never signalled the innocent process');
  // The control proves the PID really was recycled to the innocent; if it misses, the test is not
  // forcing reuse and proves nothing.
  t.true(pidWrong! >= 0.99 * TRIALS, `kill(pid) hit the innocent in only ${pidWrong}/${TRIALS} trials`);
  t.regex(run.stdout, /unexpected: 0$/m, 'every refusal was FAILED_PRECONDITION (exited) or NOT_FOUND (released)');
  t.regex(run.stdout, /still open after releasing every handle: 0$/m);
  t.is(readFileSync('/proc/sys/kernel/pid_max', 'utf8'), hostPidMax, 'only the namespace pid_max changed');
});
