// A caller names the commands the agent logs (argv[0] in every audit line), and an operator reads
// the log in a terminal: nothing a caller sends may reach it as a control sequence, a bidi override
// or a line break, in either log format, while a JSON reader still gets the same value back.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { formatLogLine, logJson } from '../src/log.js';
import { eventually, startHarness } from './helpers/harness.js';

/** Bytes a terminal acts on: C0 controls, DEL, C1 controls (UTF-8 C2 80–9F), U+2028/2029, bidi. */
const ACTIVE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

const hostile = '/bin/\u001b]0;owned\u0007\u001b[2J\u009b31m\u202eexe.sh\u2028next\u007f\u061c\u200f';

test('a log value a caller chose is written without anything a terminal would act on, and reads back the same', (t) => {
  const json = formatLogLine('json', new Date(0), 'spawn_failed', { argv0: hostile });
  t.false(ACTIVE.test(json), json);
  t.is((JSON.parse(json) as { argv0: string }).argv0, hostile);
  const text = formatLogLine('text', new Date(0), 'spawn_failed', { argv0: hostile, plain: '/bin/true', eq: 'a=b' });
  t.false(ACTIVE.test(text), text);
  t.is(text.split(' ').length, 5, 'one field per space: nothing unquoted splits a value');
  t.true(text.includes(' plain=/bin/true '), text);
  t.true(text.endsWith(' eq="a=b"'), text);
  const argv0 = /argv0=("(?:[^"\\]|\\.)*")/.exec(text)?.[1];
  t.is(JSON.parse(argv0 ?? '""'), hostile);
  t.is(logJson({ a: 'plain', n: 1 }), JSON.stringify({ a: 'plain', n: 1 }), 'anything else is written as JSON.stringify writes it');
});

test('an audit line of a spawn with a hostile argv[0] carries it escaped', async (t) => {
  const h = await startHarness({});
  t.teardown(() => h.close());
  await t.throwsAsync(h.client.spawn({ argv: [hostile] }), { message: /ENOENT|not found|No such file/i });
  const file = join(h.dir, 'audit.log');
  const line = await eventually('the audit line', () => readFileSync(file, 'utf8').split('\n').find((l) => l.includes('exe.sh')), 5_000);
  t.false(ACTIVE.test(line), line);
  t.is((JSON.parse(line) as { argv0: string }).argv0, hostile);
});
