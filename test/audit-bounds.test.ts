// The audit trail is bounded against callers who are refused: each identity's denials are written
// at most DENIALS_PER_SECOND a second and the rest counted in one line, and a long field (argv[0]
// as requested) is cut, so a flood of refused calls cannot fill the disk.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { AgentCallError } from '../clients/ts/src/index.js';
import { AUDIT_FIELD_CHARS, DENIALS_PER_SECOND } from '../src/auth/audit.js';
import { eventually, startHarness, tempDir } from './helpers/harness.js';

test('a flood of refused spawns with a huge argv[0]: a bounded number of short lines, the rest counted by identity', async (t) => {
  const dir = tempDir('pidfd-agent-audit-');
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, 'rules:\n  - identities: ["unix:uid=4242"]\n    role: tenant\n');
  const h = await startHarness({ policyFile });
  t.teardown(() => h.close());
  const N = 200;
  const huge = `/usr/bin/${'x'.repeat(100_000)}`;
  const started = Date.now();
  const results = await Promise.allSettled(Array.from({ length: N }, () => h.client.spawn({ argv: [huge] })));
  // The windows of one second the flood touched (a slow machine takes more of them).
  const windows = Math.ceil((Date.now() - started) / 1000) + 1;
  const outcomes = results.map((r) => (r.status === 'rejected' ? (r.reason instanceof AgentCallError ? r.reason.reason || r.reason.message : String(r.reason)) : 'ok'));
  t.deepEqual([...new Set(outcomes)], ['POLICY_DENIED'], 'every call is refused all the same');
  const file = join(h.dir, 'audit.log');
  const lines = () => readFileSync(file, 'utf8').trim().split('\n');
  const tally = () => {
    const parsed = lines().map((l) => JSON.parse(l) as Record<string, unknown>);
    const written = parsed.filter((l) => l['decision'] === 'deny' && l['identity'] === 'unix:uid=0');
    const counted = parsed.filter((l) => l['event'] === 'audit_suppressed').reduce((n, l) => n + ((l['denials'] as Record<string, number>)['unix:uid=0'] ?? 0), 0);
    return { written, counted };
  };
  // Every window the flood touched ends with its count, a second after its first denial: on a
  // loaded machine the flood spans several, and the last count comes after the first.
  await eventually('every window closed with its count', () => tally().written.length + tally().counted >= N, 5_000).catch(() => undefined);
  const { written, counted } = tally();
  t.is(written.length + counted, N, 'every denial is written or counted');
  t.true(written.length <= windows * DENIALS_PER_SECOND, `${written.length} lines written in ${windows} windows`);
  t.true(lines().every((l) => l.length < 8 * AUDIT_FIELD_CHARS), 'no line carries the 100 KB argv[0]');
  const argv0 = String(written[0]!['argv0']);
  t.true(argv0.startsWith('/usr/bin/xxx') && argv0.endsWith(`…(${huge.length - AUDIT_FIELD_CHARS} more)`), argv0.slice(-40));
});
