// Response bytes held for a peer that does not take them are bounded: grpc-js writes a unary
// response whole, and HTTP/2 flow control keeps it in the agent until the peer reads. A remote
// caller over mTLS that makes its own processes big (argv near 1 MiB each) and then asks List
// again and again without reading made the agent hold every answer. Past 64 MiB per caller
// (across its connections) the call that would go over is refused, RESOURCE_EXHAUSTED
// (ANSWERS_UNREAD), and nothing else; past 256 MiB in all only the caller holding the most is.
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import test from 'ava';
import { credentials, status } from '@grpc/grpc-js';
import { AgentCallError, AgentClient } from '../clients/ts/src/index.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { ListRequest } from '../clients/ts/src/gen/pidfd/agent/v1/agent.js';
import { pem, TestCa } from './helpers/certs.js';
import { eventually, sleep, tempDir } from './helpers/harness.js';

const TENANTS = ['a', 'b', 'c', 'd', 'e'].map((n) => `spiffe://example.org/tenant-${n}`);
const POLICY = `rules:
  - identities: [${TENANTS.map((t) => `"${t}"`).join(', ')}]
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
const listHeaders = (authority: string) =>
  Buffer.concat([
    literal(':method', 'POST'), literal(':scheme', 'https'), literal(':path', '/pidfd.agent.v1.AgentService/List'),
    literal(':authority', authority), literal('content-type', 'application/grpc'), literal('te', 'trailers'),
  ]);
const HEADERS = 1;
const DATA = 0;
const RST_STREAM = 3;
const GOAWAY = 7;
const END_HEADERS = 4;
const END_STREAM = 1;
/** A List call; `pageSize` for a caller that sees more than fits in one answer. */
const list = (id: number, authority = '127.0.0.1', pageSize = 0) => {
  const body = Buffer.from(ListRequest.encode({ labels: {}, state: 0, pageSize, pageToken: '' }).finish());
  const message = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
  return Buffer.concat([frame(HEADERS, END_HEADERS, id, listHeaders(authority)), frame(DATA, END_STREAM, id, message)]);
};
/** A client preface; `wide`: windows as large as HTTP/2 allows, so the agent sends all it has (and the kernel holds what is not read). */
const preface = (wide = false) => {
  const settings = wide ? Buffer.from([0, 4, 0x7f, 0xff, 0xff, 0xff]) : Buffer.alloc(0);
  const more = wide ? frame(8, 0, 0, Buffer.from([0x7f, 0xff, 0, 0])) : Buffer.alloc(0);
  return Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(4, 0, 0, settings), more]);
};

/** What a raw connection received: DATA bytes and END_STREAM per stream, RST_STREAM and GOAWAY codes. */
function frames(bytes: Buffer) {
  const data = new Map<number, number>();
  const ended = new Set<number>();
  const resets: number[] = [];
  const goaways: number[] = [];
  for (let at = 0; at + 9 <= bytes.length; ) {
    const len = bytes.readUIntBE(at, 3);
    const [type, flags, id] = [bytes[at + 3]!, bytes[at + 4]!, bytes.readUInt32BE(at + 5) & 0x7fffffff];
    if (type === DATA) data.set(id, (data.get(id) ?? 0) + len);
    if ((type === DATA || type === HEADERS) && flags & END_STREAM) ended.add(id);
    if (type === RST_STREAM && at + 13 <= bytes.length) resets.push(bytes.readUInt32BE(at + 9));
    if (type === GOAWAY && at + 17 <= bytes.length) goaways.push(bytes.readUInt32BE(at + 13));
    at += 9 + len;
  }
  return { data, ended, resets, goaways };
}

/** Four processes with ~960 KB of argv each (8 arguments under the kernel's 128 KiB): every List is ~3.8 MiB. */
const BIG_ARGV = ['/bin/sleep', '3600', ...Array<string>(8).fill('x'.repeat(120_000))];

async function tlsAgent(t: { teardown(f: () => void): void }) {
  const dir = tempDir('pidfd-agent-outbound-');
  const ca = new TestCa(join(dir, 'ca'), 'agent-ca');
  const server = ca.issue('agent', { san: 'IP:127.0.0.1', usage: 'serverAuth' });
  const tenants = TENANTS.map((id, i) => ca.issue(`tenant-${i}`, { san: `URI:${id}`, usage: 'clientAuth' }));
  const policy = join(dir, 'policy.yaml');
  writeFileSync(policy, POLICY);
  const agent = await startAgentProcess(['--ephemeral', '--tcp', '127.0.0.1:0', '--tls-cert', server.cert, '--tls-key', server.key, '--tls-client-ca', ca.cert, '--policy', policy]);
  t.teardown(() => agent.stop());
  const serving = agent.stderr().split('\n').find((l) => l.includes('"event":"serving"'))!;
  const address = (JSON.parse(serving) as { addresses: string[] }).addresses.find((a) => !a.startsWith('unix:'))!;
  const clientOf = (i: number) => {
    const c = new AgentClient(address, credentials.createSsl(pem(ca.cert), pem(tenants[i]!.key), pem(tenants[i]!.cert)));
    t.teardown(() => c.close());
    return c;
  };
  const sockets: net.Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  /** A connection of tenant i that never reads. */
  const rawTls = async (i: number) => {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(address.split(':')[1]), ca: pem(ca.cert), cert: pem(tenants[i]!.cert), key: pem(tenants[i]!.key), ALPNProtocols: ['h2'] });
    socket.on('error', () => {});
    sockets.push(socket);
    await new Promise((resolve) => socket.once('secureConnect', resolve));
    socket.pause();
    socket.write(preface());
    return socket;
  };
  /** A connection of the admin (uid 0) on the unix socket, reading only when resumed. */
  const rawUnix = (wide: boolean) => {
    const socket = net.connect(agent.address.slice('unix://'.length));
    socket.on('error', () => {});
    sockets.push(socket);
    socket.pause();
    socket.write(preface(wide));
    return socket;
  };
  return { agent, clientOf, rawTls, rawUnix };
}

test.serial('a remote caller that asks List again and again and never reads has its calls past 64 MiB refused; the agent stays bounded and serves others', async (t) => {
  const { agent, clientOf, rawTls } = await tlsAgent(t);
  const client = clientOf(0);
  for (let i = 0; i < 4; i++) await client.spawn({ argv: BIG_ARGV, user: 'nobody' });
  const pid = agent.child.pid!;
  const before = rssMiB(pid);

  // 200 Lists (760 MiB of answers), ten every 100 ms, on a connection whose socket is never read.
  const socket = await rawTls(0);
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 50);
  t.teardown(() => clearInterval(sampler));
  for (let id = 1; id < 400; id += 2) {
    socket.write(list(id));
    if (id % 20 === 19) await sleep(100);
  }
  await eventually('a refusal for what the caller did not take', () => /"event":"(answer|connection)_refused"/.test(agent.stderr()), 20_000);
  await sleep(1000);
  clearInterval(sampler);
  t.log(`RSS ${Math.round(before)} → peak ${Math.round(peak)} MiB`);
  t.true(peak - before < 250, `RSS rose ${Math.round(peak - before)} MiB (from ${Math.round(before)} MiB); 760 MiB of answers were asked for`);
  // The same caller on another connection: its budget is its own, across connections; the refusal says so.
  const refused = await t.throwsAsync(client.list({}), { instanceOf: AgentCallError });
  t.is(refused?.code, status.RESOURCE_EXHAUSTED);
  t.is(refused?.reason, 'ANSWERS_UNREAD');
  t.regex(refused?.details ?? '', /not yet read by this caller/);
  // Another caller is served.
  t.is((await agent.client.list({})).processes.length, 4, 'the admin, another caller, is served');
  t.is((await clientOf(1).list({})).processes.length, 0, 'another tenant is served');
  t.false(/connection_refused/.test(agent.stderr()), 'no connection is closed for it');
  // Once its unread calls go, it is served again.
  socket.destroy();
  await eventually('the caller served again once its unread answers are gone', async () => await client.list({}).then(() => true, () => false), 20_000);
});

test.serial("one tenant's unread answers, spread over identities and connections, never fail another caller's calls", async (t) => {
  const { agent, clientOf, rawTls, rawUnix } = await tlsAgent(t);
  for (let n = 0; n < TENANTS.length; n++) for (let i = 0; i < 4; i++) await clientOf(n).spawn({ argv: BIG_ARGV, user: 'nobody' });
  // The other caller: the node's admin on the unix socket, six pages of List in flight (11 MiB, more
  // than any one connection of the tenant), not read yet.
  const victim = rawUnix(true);
  const calls = [1, 3, 5, 7, 9, 11];
  victim.write(Buffer.concat(calls.map((id) => list(id, 'localhost', 4))));
  await sleep(1500);
  // The tenant: five certificates (or five tenants together), ten connections each, two unread Lists on each (380 MiB asked).
  for (let i = 0; i < 50; i++) {
    const s = await rawTls(i % TENANTS.length);
    s.write(Buffer.concat([list(1), list(3)]));
    await sleep(20);
  }
  await eventually('refusals for the total', () => /"event":"(answer|connection)_refused".*in all/.test(agent.stderr()), 20_000);
  await sleep(1000);
  const got: Buffer[] = [];
  victim.on('data', (d: Buffer) => got.push(d));
  victim.resume();
  await eventually("the admin's answers", () => frames(Buffer.concat(got)).ended.size === calls.length, 20_000);
  const seen = frames(Buffer.concat(got));
  t.deepEqual(seen.goaways, [], 'the admin\'s connection is not closed');
  t.deepEqual(seen.resets, [], 'nor its calls reset');
  for (const id of calls) t.true((seen.data.get(id) ?? 0) > 1_800_000, `List ${id} answered whole (${seen.data.get(id) ?? 0} bytes)`);
  t.false(/_refused","peer":"unix:/.test(agent.stderr()), 'no call of the admin is refused');
  t.true((await agent.client.list({ pageSize: 4 })).processes.length > 0, 'and it is served still');
});

test.serial('a client that reads as it should, fanning out Gets, is served; past 64 MiB at once only the calls over are refused, and the connection goes on', async (t) => {
  const agent = await startAgentProcess(['--ephemeral']);
  t.teardown(() => agent.stop());
  const handle = (await agent.client.spawn({ argv: BIG_ARGV })).process!.handle;
  // A fresh client (its own connection): a controller refreshing the processes it manages at once.
  const client = new AgentClient(agent.address);
  t.teardown(() => client.close());
  await client.get({ handle });
  const forty = await Promise.allSettled(Array.from({ length: 40 }, () => client.get({ handle })));
  t.is(forty.filter((r) => r.status === 'rejected').length, 0, '40 answers of ~1 MiB, read as they come, are all served');
  const eighty = await Promise.allSettled(Array.from({ length: 80 }, () => client.get({ handle })));
  const failed = eighty.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as AgentCallError);
  t.log(`80 Gets (~77 MiB at once): ${80 - failed.length} served, ${failed.length} refused`);
  for (const e of failed) t.like(e, { code: status.RESOURCE_EXHAUSTED, reason: 'ANSWERS_UNREAD' });
  t.true(failed.length <= 40, 'only the calls past the budget are refused');
  t.false(/connection_refused/.test(agent.stderr()), 'the connection is not closed');
  await client.get({ handle });
});
