// Response bytes held for a peer that does not take them are bounded: grpc-js writes a unary
// response whole, and HTTP/2 flow control keeps it in the agent until the peer reads. A remote
// caller over mTLS that makes its own processes big (argv near 1 MiB each) and then asks List
// again and again without reading made the agent hold every answer. Past 64 MiB on one connection
// (256 MiB in all) the connection is closed with ENHANCE_YOUR_CALM.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import test from 'ava';
import { credentials } from '@grpc/grpc-js';
import { AgentClient } from '../clients/ts/src/index.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { pem, TestCa } from './helpers/certs.js';
import { eventually, sleep, tempDir } from './helpers/harness.js';

const TENANT = 'spiffe://example.org/tenant-a';
const POLICY = `rules:
  - identities: ["${TENANT}"]
    role: tenant
    spawn: { run_as: ["nobody"], executables: ["/usr/bin/*", "/bin/*"] }
  - identities: ["unix:uid=0"]   # the test's own client, on the agent's unix socket
    role: admin
`;

const rssMiB = (pid: number) => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

const frame = (type: number, flags: number, stream: number, payload = Buffer.alloc(0)) => {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
};
/** HPACK: a literal header field, not indexed, with a new name (RFC 7541 §6.2.2); names and values under 127 bytes. */
const literal = (name: string, value: string) => Buffer.concat([Buffer.from([0, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
const LIST_HEADERS = Buffer.concat([
  literal(':method', 'POST'), literal(':scheme', 'https'), literal(':path', '/pidfd.agent.v1.AgentService/List'),
  literal(':authority', '127.0.0.1'), literal('content-type', 'application/grpc'), literal('te', 'trailers'),
]);
const PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(4, 0, 0)]);
const HEADERS = 1;
const DATA = 0;
const END_HEADERS = 4;
const END_STREAM = 1;

test('a remote caller that asks List again and again and never reads is disconnected past 64 MiB; the agent stays bounded and serves others', async (t) => {
  const dir = tempDir('pidfd-agent-outbound-');
  const ca = new TestCa(join(dir, 'ca'), 'agent-ca');
  const server = ca.issue('agent', { san: 'IP:127.0.0.1', usage: 'serverAuth' });
  const tenant = ca.issue('tenant-a', { san: `URI:${TENANT}`, usage: 'clientAuth' });
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, POLICY);
  const agent = await startAgentProcess(['--ephemeral', '--tcp', '127.0.0.1:0', '--tls-cert', server.cert, '--tls-key', server.key, '--tls-client-ca', ca.cert, '--policy', policy]);
  t.teardown(() => agent.stop());
  const serving = agent.stderr().split('\n').find((l) => l.includes('"event":"serving"'))!;
  const address = (JSON.parse(serving) as { addresses: string[] }).addresses.find((a) => !a.startsWith('unix:'))!;
  const client = new AgentClient(address, credentials.createSsl(pem(ca.cert), pem(tenant.key), pem(tenant.cert)));
  t.teardown(() => client.close());
  // Four processes with ~960 KB of argv each (8 arguments under the kernel's 128 KiB): every List is ~3.8 MiB.
  const arg = 'x'.repeat(120_000);
  for (let i = 0; i < 4; i++) await client.spawn({ argv: ['/bin/sleep', '3600', ...Array<string>(8).fill(arg)], user: 'nobody' });
  const pid = agent.child.pid!;
  const before = rssMiB(pid);

  // 200 Lists (760 MiB of answers), ten every 100 ms, on a connection whose socket is never read.
  const socket = tls.connect({ host: '127.0.0.1', port: Number(address.split(':')[1]), ca: pem(ca.cert), cert: pem(tenant.cert), key: pem(tenant.key), ALPNProtocols: ['h2'] });
  socket.on('error', () => {});
  t.teardown(() => socket.destroy());
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  socket.pause();
  socket.write(PREFACE);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 50);
  t.teardown(() => clearInterval(sampler));
  const refused = () => /"event":"connection_refused".*response bytes not taken on one connection/.test(agent.stderr());
  for (let id = 1; id < 400 && !refused(); id += 2) {
    socket.write(Buffer.concat([frame(HEADERS, END_HEADERS, id, LIST_HEADERS), frame(DATA, END_STREAM, id, Buffer.alloc(5))]));
    if (id % 20 === 19) await sleep(100);
  }
  await eventually('the connection closed for what it did not take', refused, 20_000);
  await sleep(1000);
  clearInterval(sampler);
  t.true(peak - before < 400, `RSS rose ${Math.round(peak - before)} MiB (from ${Math.round(before)} MiB); 760 MiB of answers were asked for`);
  const { processes } = await client.list({});
  t.is(processes.length, 4, 'a client that reads is served');
});
