// SpawnBatch (issue 17): many Spawns in one call, each item validated, authorized and answered on
// its own; the batch is bounded. Real agent, real gRPC on a unix socket; tenants are real client
// processes running as other uids under a policy.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentCallError, State, status, type SpawnBatchResult } from '../clients/ts/src/index.js';
import { startHarness, tempDir, type Harness } from './helpers/harness.js';
import { asUser, shareSocket } from './helpers/tenant.js';

const A = 1001;
const policyDir = tempDir('pidfd-agent-batch-policy-');
const policyFile = join(policyDir, 'policy.yaml');
writeFileSync(
  policyFile,
  `rules:
  - name: root
    identities: ["unix:uid=0"]
    role: admin
  - name: tenant-a
    identities: ["unix:uid=${A}"]
    role: tenant
    spawn:
      run_as: ["${A}"]
      executables: ["/usr/bin/*", "/bin/*"]
      max_processes: 2
`,
);

let h: Harness;
test.before(async () => {
  h = await startHarness({ policyFile });
  shareSocket(h);
});
test.after.always(async () => {
  await h?.close();
});

const reasonOf = (r: SpawnBatchResult | undefined) => r?.error?.reason;

test.serial('good and bad items in one batch each get their own result, in order; request_id works per item', async (t) => {
  const { results } = await h.client.spawnBatch({
    requests: [
      { argv: ['sleep', '30'], labels: { batch: 'mixed' } },
      { argv: [] },
      { argv: ['/nonexistent/tool'] },
      { argv: ['sleep', '30'], requestId: 'batch-key', labels: { batch: 'mixed' } },
      { argv: ['sleep', '30'], requestId: 'batch-key', labels: { batch: 'mixed' } },
      { argv: ['sh', '-c', 'exit 5'], cwd: 'relative' },
    ],
  });
  t.is(results.length, 6);
  t.is(results[0]!.spawned?.process?.state, State.STATE_RUNNING);
  t.is(results[1]!.error?.code, status.INVALID_ARGUMENT);
  t.is(results[1]!.error?.metadata['field'], 'argv');
  t.is(results[2]!.error?.code, status.NOT_FOUND);
  t.is(reasonOf(results[2]), 'ENOENT');
  t.is(results[2]!.error?.metadata['path'], '/nonexistent/tool');
  const keyed = results[3]!.spawned!;
  t.false(keyed.replayed);
  t.true(results[4]!.spawned!.replayed, 'the same request_id in one batch starts one process');
  t.is(results[4]!.spawned!.process!.handle, keyed.process!.handle);
  t.is(results[5]!.error?.code, status.INVALID_ARGUMENT);
  t.is(results[5]!.error?.metadata['field'], 'cwd');
  for (const r of results) t.true((r.spawned === undefined) !== (r.error === undefined), 'exactly one of spawned and error');

  const running = (await h.client.list({ labels: { batch: 'mixed' } })).processes;
  t.deepEqual(running.map((p) => p.handle).sort(), [results[0]!.spawned!.process!.handle, keyed.process!.handle].sort());
  for (const p of running) await h.client.stop({ handle: p.handle, signal: 'KILL' });
  for (const p of running) await h.client.release({ handle: p.handle });
});

test.serial('a batch over 256 is refused as a whole with INVALID_ARGUMENT, and starts nothing', async (t) => {
  const before = (await h.client.list({})).processes.length;
  const requests = Array.from({ length: 257 }, () => ({ argv: ['true'], labels: { batch: 'too-big' } }));
  const e = await t.throwsAsync(h.client.spawnBatch({ requests }), { instanceOf: AgentCallError });
  t.is(e!.code, status.INVALID_ARGUMENT);
  t.is(e!.reason, 'INVALID_ARGUMENT');
  t.is(e!.info['field'], 'requests');
  t.is((await h.client.list({ labels: { batch: 'too-big' } })).processes.length, 0);
  t.is((await h.client.list({})).processes.length, before);
  const { results } = await h.client.spawnBatch({ requests: [] });
  t.deepEqual(results, [], 'an empty batch answers nothing');
});

test.serial("each item is authorized like a Spawn under the caller's policy: denials and quota per item", async (t) => {
  const [outcome] = await asUser(A, h.address, [
    {
      op: 'spawnBatch',
      req: {
        requests: [
          { argv: ['sleep', '30'], user: String(A), labels: { batch: 'tenant' } },
          { argv: ['sleep', '30'], user: '0', labels: { batch: 'tenant' } },
          { argv: ['/sbin/nologin'], user: String(A), labels: { batch: 'tenant' } },
          { argv: ['sleep', '30'], user: String(A), labels: { batch: 'tenant' } },
          { argv: ['sleep', '30'], user: String(A), labels: { batch: 'tenant' } },
        ],
      },
    },
  ]);
  const results = outcome!.ok.results as SpawnBatchResult[];
  t.is(results.length, 5);
  t.is(results[0]!.spawned?.process?.owner, `unix:uid=${A}`);
  t.is(results[1]!.error?.code, status.PERMISSION_DENIED);
  t.is(reasonOf(results[1]), 'POLICY_DENIED');
  t.is(results[1]!.error?.metadata['field'], 'run_as');
  t.is(results[2]!.error?.code, status.PERMISSION_DENIED);
  t.is(reasonOf(results[2]), 'POLICY_DENIED');
  t.truthy(results[3]!.spawned?.process, 'the second running process is within max_processes 2');
  t.is(results[4]!.error?.code, status.RESOURCE_EXHAUSTED);
  t.is(reasonOf(results[4]), 'POLICY_QUOTA');

  const audited = readFileSync(join(h.dir, 'audit.log'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l['identity'] === `unix:uid=${A}` && l['rpc'] === 'Spawn');
  t.is(audited.length, 5, 'one audit entry per item');
  t.is(audited.filter((l) => l['decision'] === 'deny').length, 3);

  for (const r of [results[0]!, results[3]!]) {
    await h.client.stop({ handle: r.spawned!.process!.handle, signal: 'KILL' });
    await h.client.release({ handle: r.spawned!.process!.handle });
  }
});
