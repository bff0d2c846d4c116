// The Go client (clients/go): generated from proto/ by Debian's protoc-gen-go and
// protoc-gen-go-grpc, built offline against Debian's grpc-go, run against a real agent.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';
import { startHarness, tempDir } from './helpers/harness.js';
import { TestCa } from './helpers/certs.js';
import { checkExampleOutput, checkGenerated } from './helpers/clients.js';

const run = promisify(execFile);

test('the generated Go matches proto/ (regenerate with make proto)', (t) => checkGenerated(t, 'buf.gen.go.yaml', 'clients/go', (p) => p.endsWith('.pb.go')));

test.serial('make go-example spawns, watches, waits, signals and gets the error reason through the Go client', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  // Asynchronously: the agent under test runs on this process's event loop.
  const { stdout } = await run('make', ['-s', '--no-print-directory', 'go-example', `ADDR=${h.address}`], { cwd: ROOT, maxBuffer: 1 << 20 });
  checkExampleOutput(t, stdout);
});

test.serial("the Go client lists every page with ListAll, with the first page's sequence", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const { results } = await h.client.spawnBatch({ requests: Array.from({ length: 8 }, (_, i) => ({ argv: ['true'], labels: { set: i < 7 ? 'paged' : 'other' } })) });
  // Exited, so the sequence stays as it is while the Go client lists.
  await Promise.all(results.map((r) => h.client.wait({ handle: r.spawned!.process!.handle })));
  const { sequence } = await h.client.list({ pageSize: 1 });
  await run('make', ['-s', '--no-print-directory', 'go-client'], { cwd: ROOT });
  const env = { ...process.env, GO111MODULE: 'off', GOFLAGS: '', GOPROXY: 'off', GOPATH: `${ROOT}dist/gopath:/usr/share/gocode`, GOCACHE: `${ROOT}dist/gocache` };
  const bin = join(ROOT, 'dist/bin/go-list-all');
  await run('go', ['build', '-o', bin, './test/fixtures/go-list-all/main.go'], { cwd: ROOT, env });
  const { stdout } = await run(bin, [h.address, '2', 'set=paged']);
  t.is(stdout.split('\n')[0], `7 7 ${sequence} true true`);
});

test.serial('the Go client dials TCP with TLS and a client certificate, and that identity owns the process', async (t) => {
  const dir = tempDir('pidfd-agent-go-tls-');
  const ca = new TestCa(join(dir, 'ca'), 'agent-ca');
  const server = ca.issue('agent', { san: 'IP:127.0.0.1', usage: 'serverAuth' });
  const identity = 'spiffe://example.org/go-client';
  const client = ca.issue('go-client', { san: `URI:${identity}`, usage: 'clientAuth' });
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, `rules:\n  - identities: ["${identity}", "unix:uid=0"]\n    role: admin\n`);
  const h = await startHarness({ tcp: ['127.0.0.1:0'], tls: { cert: server.cert, key: server.key, clientCa: ca.cert }, policyFile });
  t.teardown(() => h.close());
  await run('make', ['-s', '--no-print-directory', 'go-client'], { cwd: ROOT });
  const { stdout } = await run(join(ROOT, 'dist/bin/spawn-and-wait'), ['-cert', client.cert, '-key', client.key, '-ca', ca.cert, h.agent.addresses[1]!]);
  checkExampleOutput(t, stdout);
  const handle = /^spawned (\S+)/.exec(stdout)![1]!;
  t.is((await h.client.get({ handle })).process?.owner, identity);
});

