// What the SDK reports reaches the agent's log as one line per problem: its message without the
// stack, repeats (the same message with other numbers in it too) at most once a minute with a count.
import test from 'ava';
import { diagnosticsLogger, PROBLEM_LINES_PER_MINUTE } from '../src/telemetry/diagnostics.js';

function logger() {
  const lines: Record<string, unknown>[] = [];
  let now = 0;
  const diag = diagnosticsLogger((event, fields) => lines.push({ event, ...fields }), () => now);
  return { lines, diag, advance: (ms: number) => (now += ms) };
}

test('an error the SDK passes on as JSON with its stack is logged as its message alone', (t) => {
  const { lines, diag } = logger();
  const error = new Error('PeriodicExportingMetricReader: metrics export failed (error Error: connect ECONNREFUSED 127.0.0.1:4318)');
  diag.error(JSON.stringify({ stack: error.stack, message: error.message, name: error.name }));
  diag.warn('a warning', new Error('with an error\n    at somewhere (file.js:1:1)'));
  t.deepEqual(lines, [
    { event: 'telemetry_problem', level: 'error', message: error.message },
    { event: 'telemetry_problem', level: 'warn', message: 'a warning with an error' },
  ]);
});

test('repeats, also with other numbers in them, are written once a minute with how many came between', (t) => {
  const { lines, diag, advance } = logger();
  for (let i = 1; i <= 5; i++) {
    diag.warn(`Dropped ${i * 10} spans because maxQueueSize reached`);
    advance(1_000);
  }
  t.is(lines.length, 1);
  advance(60_000);
  diag.warn('Dropped 999 spans because maxQueueSize reached');
  t.deepEqual(lines[1], { event: 'telemetry_problem', level: 'warn', message: 'Dropped 999 spans because maxQueueSize reached', repeated: 4 });
});

test('what cannot be made JSON is logged as a string, never thrown into the SDK', (t) => {
  const { lines, diag } = logger();
  const cycle: Record<string, unknown> = {};
  cycle['self'] = cycle;
  t.notThrows(() => diag.error('odd values', cycle, 10n));
  t.is(lines.length, 1);
  t.is(lines[0]!['message'], 'odd values [object Object] 10');
  diag.info('not logged');
  diag.debug('not logged');
  t.is(lines.length, 1);
});

test('messages that differ every time are still at most PROBLEM_LINES_PER_MINUTE lines a minute, the rest counted', (t) => {
  const { lines, diag, advance } = logger();
  for (let i = 0; i < 200; i++) {
    diag.error(`Bad ${Math.random().toString(36)}`);
    advance(100);
  }
  // 200 messages over 20 s: one minute's worth of lines.
  t.is(lines.length, PROBLEM_LINES_PER_MINUTE);
  advance(60_000);
  diag.error('the next one');
  t.deepEqual(lines.slice(-2), [
    { event: 'telemetry_problem', level: 'warn', message: `${200 - PROBLEM_LINES_PER_MINUTE} more problems in the minute before were not logged (at most ${PROBLEM_LINES_PER_MINUTE} lines a minute)` },
    { event: 'telemetry_problem', level: 'error', message: 'the next one' },
  ]);
});
