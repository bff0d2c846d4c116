// Compatibility: proto/ against the committed baseline image (proto/baseline, `make api-baseline`).
import { execFile } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';
import { tempDir } from './helpers/harness.js';

const run = promisify(execFile);
const BUF = join(ROOT, 'node_modules/.bin/buf');
const BASELINE = join(ROOT, 'proto/baseline/agent-v1.binpb');

const breaking = (cwd: string) =>
  run(BUF, ['breaking', '--against', BASELINE], { cwd }).then(
    () => '',
    (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}` || 'buf breaking failed',
  );

test('proto/ has no breaking change against the baseline (buf breaking, FILE rules)', async (t) => {
  t.is(await breaking(ROOT), '');
});

test('buf breaking catches a renumbered field and a removed enum value', async (t) => {
  const copy = tempDir('pidfd-agent-breaking-');
  cpSync(join(ROOT, 'proto'), join(copy, 'proto'), { recursive: true });
  cpSync(join(ROOT, 'buf.yaml'), join(copy, 'buf.yaml'));
  const file = join(copy, 'proto/pidfd/agent/v1/agent.proto');
  const text = readFileSync(file, 'utf8');
  const broken = text.replace('string request_id = 5;', 'string request_id = 55;').replace(/\n\s*OUTPUT_MODE_CAPTURE = 4;/, '');
  t.not(broken, text);
  writeFileSync(file, broken);
  const report = await breaking(copy);
  t.regex(report, /request_id/);
  t.regex(report, /enum value "4" on enum "OutputMode"/);
});
