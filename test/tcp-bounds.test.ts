// Remote clients that never authenticate are bounded: a TCP connection has the handshake deadline
// to complete a verified TLS handshake and as long again to start HTTP/2, a listener holds at most
// maxConnections sockets (more are closed at accept), and each refusal is one rate-limited log line.
// Real sockets, real certificates; the flood comes from another process so that this process's
// fd count is the agent's.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import tls from 'node:tls';
import test from 'ava';
import { credentials } from '@grpc/grpc-js';
import { openFdCount } from '../src/kernel/fd.js';
import { AgentCallError, AgentClient } from '../clients/ts/src/index.js';
import { pem, TestCa, type Issued } from './helpers/certs.js';
import { eventually, sleep, startHarness, tempDir, type Harness } from './helpers/harness.js';

const TENANT = 'spiffe://example.org/tenant-a';
const POLICY = `rules:\n  - identities: ["${TENANT}"]\n    role: tenant\n`;
const DEADLINE_MS = 1000;
const CAP = 16;

let ca: TestCa;
let tenant: Issued;
let stranger: Issued;
let h: Harness;
let port: number;

test.before(async () => {
  const dir = tempDir('pidfd-agent-bounds-');
  ca = new TestCa(join(dir, 'ca'), 'agent-ca');
  const agentPair = ca.issue('agent', { san: 'IP:127.0.0.1', usage: 'serverAuth' });
  tenant = ca.issue('tenant-a', { san: `URI:${TENANT}`, usage: 'clientAuth' });
  stranger = new TestCa(join(dir, 'other-ca'), 'other-ca').issue('tenant-a', { san: `URI:${TENANT}`, usage: 'clientAuth' });
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, POLICY);
  h = await startHarness({
    tcp: ['127.0.0.1:0'],
    tls: { cert: agentPair.cert, key: agentPair.key, clientCa: ca.cert },
    policyFile,
    handshakeTimeoutMs: DEADLINE_MS,
    maxConnections: CAP,
  });
  port = Number(h.agent.addresses[1]!.split(':')[1]);
});
test.after.always(async () => {
  await h?.close();
});

const tlsClient = (client: Issued) => new AgentClient(`127.0.0.1:${port}`, credentials.createSsl(pem(ca.cert), pem(client.key), pem(client.cert)));

/** The agent's log lines about one client connection, by its address as the agent sees it. */
const linesFor = (localPort: number | undefined) => h.logs.filter((l) => l.fields['peer'] === `127.0.0.1:${localPort}`);

/** Resolves with how long after `from` the agent closed the socket. */
const closedAfter = (s: net.Socket, from: () => number) =>
  new Promise<number>((resolve) => {
    s.on('error', () => {});
    s.once('close', () => resolve(performance.now() - from()));
  });

test.serial('a client that connects and sends nothing is closed at the handshake deadline, with one log line', async (t) => {
  const s = net.connect(port, '127.0.0.1');
  await once(s, 'connect');
  const { localPort } = s;
  const at = performance.now();
  const ms = await closedAfter(s, () => at);
  t.true(ms >= DEADLINE_MS - 50 && ms < DEADLINE_MS + 5000, `closed after ${ms} ms`);
  await eventually('the log line', () => linesFor(localPort).length > 0);
  t.deepEqual(linesFor(localPort).map((l) => [l.event, l.fields['reason']]), [['tls_handshake_failed', 'ERR_TLS_HANDSHAKE_TIMEOUT']]);
});

/** A real ClientHello, as node:tls sends it (captured from a listener that never answers). */
async function clientHello(): Promise<Buffer> {
  const sink = net.createServer();
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  const c = tls.connect({ host: '127.0.0.1', port: (sink.address() as net.AddressInfo).port, ca: pem(ca.cert), ALPNProtocols: ['h2'] });
  c.on('error', () => {});
  const [socket] = (await once(sink, 'connection')) as [net.Socket];
  const [hello] = (await once(socket, 'data')) as [Buffer];
  c.destroy();
  socket.destroy();
  sink.close();
  return hello;
}

test.serial('the deadline holds for a client that trickles its handshake a byte at a time', async (t) => {
  const hello = await clientHello();
  const s = net.connect(port, '127.0.0.1');
  await once(s, 'connect');
  const { localPort } = s;
  const at = performance.now();
  let sent = 0;
  const drip = setInterval(() => sent < hello.length && s.write(hello.subarray(sent, ++sent)), DEADLINE_MS / 10);
  const ms = await closedAfter(s, () => at);
  clearInterval(drip);
  t.true(sent > 5 && sent < hello.length, `${sent} of ${hello.length} bytes sent`);
  t.true(ms < DEADLINE_MS + 5000, `closed after ${ms} ms: bytes arriving do not extend the deadline`);
  await eventually('the log line', () => linesFor(localPort).length > 0);
  t.is(linesFor(localPort)[0]!.fields['reason'], 'ERR_TLS_HANDSHAKE_TIMEOUT');
});

test.serial('a verified client that never starts HTTP/2 is closed after as long again', async (t) => {
  const s = tls.connect({ host: '127.0.0.1', port, ca: pem(ca.cert), ALPNProtocols: ['h2'], cert: pem(tenant.cert), key: pem(tenant.key) });
  await once(s, 'secureConnect');
  const { localPort } = s;
  const at = performance.now();
  const ms = await closedAfter(s, () => at);
  t.true(ms >= DEADLINE_MS - 50 && ms < DEADLINE_MS + 5000, `closed after ${ms} ms`);
  await eventually('the log line', () => linesFor(localPort).length > 0);
  t.deepEqual(linesFor(localPort).map((l) => l.event), ['tcp_connection_idle']);
});

test.serial('a certificate from another CA: one tls_handshake_failed line with its address and the verification error', async (t) => {
  const s = tls.connect({ host: '127.0.0.1', port, ca: pem(ca.cert), ALPNProtocols: ['h2'], cert: pem(stranger.cert), key: pem(stranger.key) });
  s.on('error', () => {});
  await once(s, 'secureConnect');
  const localPort = s.localPort;
  await once(s, 'close');
  await eventually('the log line', () => linesFor(localPort).length > 0);
  // Once more, late: a second line would come after the socket closed.
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(linesFor(localPort).map((l) => [l.event, l.fields['reason']]), [['tls_handshake_failed', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE']]);
});

test.serial('a client that offers no ALPN h2 is refused', async (t) => {
  const s = tls.connect({ host: '127.0.0.1', port, ca: pem(ca.cert), cert: pem(tenant.cert), key: pem(tenant.key) });
  s.on('error', () => {});
  await once(s, 'secureConnect');
  const localPort = s.localPort;
  await once(s, 'close');
  await eventually('the log line', () => linesFor(localPort).length > 0);
  t.deepEqual(linesFor(localPort).map((l) => [l.event, l.fields['reason']]), [['tls_handshake_failed', 'no ALPN h2']]);
});

/** Another process that opens n TCP connections to the agent and holds them; says when all are closed. */
function flood(n: number) {
  const script = `
    const net = require('node:net');
    let connected = 0, closed = 0;
    for (let i = 0; i < ${n}; i++) {
      const s = net.connect(${port}, '127.0.0.1');
      s.on('error', () => {});
      s.on('connect', () => ++connected === ${n} && console.log('connected'));
      s.on('close', () => ++closed === ${n} && console.log('closed'));
    }`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return { child, next: async () => (await lines.next()).value as string };
}

/** Lines of an event, and what log_suppressed counted of it. */
function accounted(event: string): { logged: number; suppressed: number } {
  const logged = h.logs.filter((l) => l.event === event).length;
  const suppressed = h.logs.filter((l) => l.event === 'log_suppressed').reduce((n, l) => n + (((l.fields['counts'] as Record<string, number>)[event]) ?? 0), 0);
  return { logged, suppressed };
}

test.serial('a flood past the cap holds at most cap fds, is logged within the rate limit, and a good client is served after', async (t) => {
  const N = 200;
  const client = tlsClient(tenant);
  t.teardown(() => client.close());
  await client.list({});
  // The earlier tests' log window ends first: its counts are then final.
  await sleep(1200);
  const before = { refused: accounted('tcp_connection_refused'), failed: accounted('tls_handshake_failed') };
  const baseline = openFdCount();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, openFdCount())), 2);
  const started = performance.now();
  const f = flood(N);
  t.teardown(() => f.child.kill());
  t.is(await f.next(), 'connected', 'the kernel completed every connection');
  t.is(await f.next(), 'closed', 'the agent closed every one: at accept, or at the deadline');
  clearInterval(sampler);
  const seconds = (performance.now() - started) / 1000;
  t.log(`${peak - baseline} more fds at the peak (cap ${CAP}); ${N} connections in ${seconds.toFixed(1)} s`);
  t.true(peak - baseline <= CAP, `${peak - baseline} more fds at the peak, cap ${CAP}`);

  // Every connection is accounted for once: refused at accept, or timed out in its handshake.
  await eventually('the last window to be reported', () => {
    const refused = accounted('tcp_connection_refused');
    const failed = accounted('tls_handshake_failed');
    const total = refused.logged + refused.suppressed + failed.logged + failed.suppressed - (before.refused.logged + before.refused.suppressed + before.failed.logged + before.failed.suppressed);
    return total === N;
  });
  const refused = accounted('tcp_connection_refused');
  t.true(refused.suppressed > before.refused.suppressed, 'a flood is counted, not written out');
  const lines = refused.logged - before.refused.logged + accounted('tls_handshake_failed').logged - before.failed.logged;
  t.true(lines <= 10 * (Math.ceil(seconds) + 2), `${lines} lines in ${seconds.toFixed(1)} s`);

  const { processes } = await client.list({}, { deadline: 5000 });
  t.true(Array.isArray(processes), 'the existing session still serves');
  const fresh = tlsClient(tenant);
  t.teardown(() => fresh.close());
  await t.notThrowsAsync(fresh.list({}, { deadline: 5000 }), 'and a new connection is served');
  fresh.close();
  await eventually(`the fd count back to its baseline ${baseline}`, () => openFdCount() <= baseline, 10_000).catch((e) => {
    t.log(readdirSync('/proc/self/fd').map((fd) => { try { return readlinkSync(`/proc/self/fd/${fd}`); } catch { return '?'; } }).join(' '));
    throw e;
  });
});

test('plaintext loopback TCP: a client that never starts HTTP/2 is closed at the deadline; one that does is served', async (t) => {
  const plain = await startHarness({ tcp: ['127.0.0.1:0'], handshakeTimeoutMs: DEADLINE_MS, maxConnections: CAP });
  t.teardown(() => plain.close());
  const address = plain.agent.addresses[1]!;
  const s = net.connect(Number(address.split(':')[1]), '127.0.0.1');
  await once(s, 'connect');
  const { localPort } = s;
  const at = performance.now();
  const ms = await closedAfter(s, () => at);
  t.true(ms >= DEADLINE_MS - 50 && ms < DEADLINE_MS + 5000, `closed after ${ms} ms`);
  await eventually('the log line', () => plain.logs.some((l) => l.event === 'tcp_connection_idle' && l.fields['peer'] === `127.0.0.1:${localPort}`));
  const client = new AgentClient(address);
  t.teardown(() => client.close());
  const denied = await t.throwsAsync(client.list({}, { deadline: 5000 }), { instanceOf: AgentCallError });
  t.is(denied?.reason, 'POLICY_DENIED', 'served: the agent itself answered (anonymous may do nothing without a policy)');
});

test('one caller holds at most --max-connections-per-identity connections: past it its own are refused, another caller is served', async (t) => {
  const dir = tempDir('pidfd-agent-per-identity-');
  const other = ca.issue('tenant-b', { san: 'URI:spiffe://example.org/tenant-b', usage: 'clientAuth' });
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, `${POLICY}  - identities: ["spiffe://example.org/tenant-b"]\n    role: tenant\n`);
  const agentPair = ca.issue('agent-2', { san: 'IP:127.0.0.1', usage: 'serverAuth' });
  const hh = await startHarness({ tcp: ['127.0.0.1:0'], tls: { cert: agentPair.cert, key: agentPair.key, clientCa: ca.cert }, policyFile, maxConnectionsPerIdentity: 3 });
  t.teardown(() => hh.close());
  const p = Number(hh.agent.addresses[1]!.split(':')[1]);
  /** A verified TLS connection that starts HTTP/2; resolves whether the agent served it (sent its SETTINGS). */
  const connect = (client: Issued) =>
    new Promise<{ served: boolean; socket: tls.TLSSocket }>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: p, ca: pem(ca.cert), cert: pem(client.cert), key: pem(client.key), ALPNProtocols: ['h2'] }, () =>
        s.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])),
      );
      s.on('error', () => {});
      s.once('data', () => resolve({ served: true, socket: s }));
      s.once('close', () => resolve({ served: false, socket: s }));
    });
  const held: { served: boolean; socket: tls.TLSSocket }[] = [];
  for (let i = 0; i < 3; i++) held.push(await connect(tenant));
  t.teardown(() => held.forEach((c) => c.socket.destroy()));
  t.deepEqual(held.map((c) => c.served), [true, true, true]);
  t.false((await connect(tenant)).served, 'the fourth of one identity is refused');
  const b = await connect(other);
  b.socket.destroy();
  t.true(b.served, 'another identity is served');
  await eventually('the refusal logged with the identity', () => hh.logs.some((l) => l.event === 'tcp_connection_refused' && l.fields['identity'] === TENANT));
  held.pop()!.socket.destroy();
  await eventually('a closed connection frees its place', async () => {
    const again = await connect(tenant);
    again.socket.destroy();
    return again.served;
  });
});

test('an IPv6 TCP caller is a caller like any other: plaintext [::1] is anonymous, decided by the policy', async (t) => {
  const dir = tempDir('pidfd-agent-v6-');
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, 'rules:\n  - identities: ["anonymous"]\n    role: tenant\n    allow: [read]\n');
  const v6 = await startHarness({ tcp: ['[::1]:0'], policyFile });
  t.teardown(() => v6.close());
  const client = new AgentClient(v6.agent.addresses[1]!);
  t.teardown(() => client.close());
  const { processes } = await client.list({});
  t.deepEqual(processes, [], 'served as anonymous, which sees nothing of root\'s');
  const denied = await t.throwsAsync(client.spawn({ argv: ['/bin/true'] }), { instanceOf: AgentCallError });
  t.is(denied?.reason, 'POLICY_DENIED');
  t.regex(denied?.message ?? '', /spawn/, 'refused by the rule, not as an unknown caller');
});
