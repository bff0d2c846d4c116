// D10 (review s18-D): an agent whose certificate names its node by DNS only (as
// deploy/kubernetes/certificate.example.yaml issues it) is dialled by IP in every client, naming
// the certificate's name as the TLS server name; without it, hostname verification refuses.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { credentials } from '@grpc/grpc-js';
import { AgentCallError, AgentClient, status } from '../clients/ts/src/index.js';
import { ROOT } from './helpers/agent-process.js';
import { TestCa, pem } from './helpers/certs.js';
import { runCliText } from './helpers/cli.js';
import { checkExampleOutput } from './helpers/clients.js';
import { startHarness, tempDir, type Harness } from './helpers/harness.js';

const run = promisify(execFile);
const NAME = 'node-1.nodes.example.test';
const IDENTITY = 'spiffe://example.org/name-override';

let h: Harness;
let address: string;
let ca: TestCa;
let client: { cert: string; key: string };

test.before(async () => {
  const dir = tempDir('pidfd-agent-tls-name-');
  ca = new TestCa(join(dir, 'ca'), 'agent-ca');
  const server = ca.issue('pidfd-agent', { san: `DNS:*.nodes.example.test`, usage: 'serverAuth' });
  client = ca.issue('client', { san: `URI:${IDENTITY}`, usage: 'clientAuth' });
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, `rules:\n  - identities: ["${IDENTITY}", "unix:uid=0"]\n    role: admin\n`);
  h = await startHarness({ tcp: ['127.0.0.1:0'], tls: { cert: server.cert, key: server.key, clientCa: ca.cert }, policyFile });
  address = h.agent.addresses[1]!;
});
test.after.always(() => h.close());

test('TypeScript: grpc.ssl_target_name_override dials the IP and verifies the name', async (t) => {
  const creds = () => credentials.createSsl(pem(ca.cert), pem(client.key), pem(client.cert));
  const named = new AgentClient(address, creds(), { 'grpc.ssl_target_name_override': NAME });
  t.teardown(() => named.close());
  t.deepEqual((await named.list({ labels: { none: 'x' } })).processes, []);
  const unnamed = new AgentClient(address, creds());
  t.teardown(() => unnamed.close());
  const e = await t.throwsAsync(unnamed.list({}, { deadline: 5000 }), { instanceOf: AgentCallError });
  t.is(e!.code, status.UNAVAILABLE, 'the IP is not in the certificate');
});

test('pidfdctl: --tls-server-name (or PIDFD_AGENT_TLS_SERVER_NAME) dials the IP and verifies the name', async (t) => {
  const flags = ['--tls-ca', ca.cert, '--tls-cert', client.cert, '--tls-key', client.key];
  const named = await runCliText(address, [...flags, '--tls-server-name', NAME, 'list', '--label', 'none=x']);
  t.is(named.code, 0, named.stderr);
  const health = await runCliText(address, [...flags, 'health'], { ...process.env, PIDFD_AGENT_TLS_SERVER_NAME: NAME });
  t.deepEqual([health.code, health.stdout.trim()], [0, 'SERVING'], health.stderr);
  const unnamed = await runCliText(address, [...flags, 'list']);
  t.is(unnamed.code, 1);
  t.regex(unnamed.stderr, /^pidfdctl: UNAVAILABLE: [^\n]*\n$/, 'the IP is not in the certificate: one line');
  const other = await runCliText(address, [...flags, '--tls-server-name', 'node-1.elsewhere.test', 'list']);
  t.is(other.code, 1, 'a name the certificate does not carry is refused');
  const onUnix = await runCliText(h.agent.addresses[0]!, ['--tls-server-name', NAME, 'list']);
  t.is(onUnix.code, 2);
  t.regex(onUnix.stderr, /^pidfdctl: --tls-server-name is for a HOST:PORT address over TLS/);
});

for (const mode of ['sync', 'aio']) {
  test(`Python (${mode}): options=[("grpc.ssl_target_name_override", NAME)] dials the IP and verifies the name`, async (t) => {
    const script = [
      'import asyncio, sys; sys.path.insert(0, sys.argv[2])',
      'from pidfd_agent import AgentError, pb, tls_credentials',
      `from pidfd_agent${mode === 'aio' ? '.aio' : ''} import Agent`,
      'address, ca, cert, key, name = sys.argv[1], *sys.argv[3:7]',
      'async def call(agent, request):',
      '    r = agent.list(request, timeout=5)',
      '    return await r if asyncio.iscoroutine(r) else r',
      'async def main():',
      '    for options in ([("grpc.ssl_target_name_override", name)], None):',
      '        agent = Agent(address, credentials=tls_credentials(cert, key, ca), options=options)',
      '        try:',
      '            print(len((await call(agent, pb.ListRequest(labels={"none": "x"}))).processes))',
      '        except AgentError as e:',
      '            print(e.code.name)',
      '        r = agent.close()',
      '        if asyncio.iscoroutine(r): await r',
      'asyncio.run(main())',
    ].join('\n');
    const { stdout } = await run('/usr/bin/python3', ['-B', '-c', script, address, join(ROOT, 'clients/python'), ca.cert, client.cert, client.key, NAME], { timeout: 30_000 });
    t.deepEqual(stdout.trim().split('\n'), ['0', 'UNAVAILABLE'], 'with the name: served; without: the IP is not in the certificate');
  });
}

test('Go: tls.Config.ServerName (the example\'s -server-name) dials the IP and verifies the name', async (t) => {
  await run('make', ['-s', '--no-print-directory', 'go-client'], { cwd: ROOT });
  const bin = join(ROOT, 'dist/bin/spawn-and-wait');
  const flags = ['-cert', client.cert, '-key', client.key, '-ca', ca.cert];
  const { stdout } = await run(bin, [...flags, '-server-name', NAME, address]);
  checkExampleOutput(t, stdout);
  const e = await t.throwsAsync(run(bin, [...flags, address], { timeout: 30_000 }));
  t.regex(String((e as { stderr?: string }).stderr), /certificate is valid for \*\.nodes\.example\.test, not 127\.0\.0\.1|doesn't contain any IP SANs/);
});
