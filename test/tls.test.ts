// TLS on the TCP listener, against real certificates made by openssl: only a client certificate
// that chains to the client CA and is valid now gets an HTTP/2 session; its SPIFFE ID owns what it
// spawns; the agent's certificate rotates by replacing its files, with open sessions kept.
import { execFile, execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { join } from 'node:path';
import tls from 'node:tls';
import test from 'ava';
import { credentials, makeGenericClientConstructor, Server, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { callerOf } from '../src/auth/caller.js';
import type { AgentError } from '../src/process/errors.js';
import { openFdCount } from '../src/kernel/fd.js';
import { listenTcp } from '../src/transport/tcp-listener.js';
import { loadTlsFiles, TlsFileProvider } from '../src/transport/tls-credentials.js';
import { AgentCallError, AgentClient, EventType, status } from '../clients/ts/src/index.js';
import { AGENT_BIN, ROOT } from './helpers/agent-process.js';
import { runCliText } from './helpers/cli.js';
import { fingerprintOf, pem, TestCa, type Issued } from './helpers/certs.js';
import { eventually, sleep, startHarness, tempDir, type Harness } from './helpers/harness.js';
import { SpawnRequest } from '../src/api.js';

const TENANT = 'spiffe://example.org/tenant-a';

const POLICY = `rules:
  - identities: ["${TENANT}"]
    role: tenant
    spawn: { run_as: ["nobody"], executables: ["/usr/bin/*", "/bin/*"], max_processes: 100 }
  # Never matched on a TLS port (every caller there has a certificate): a trap for a caller taken for anonymous.
  - identities: ["anonymous"]
    role: tenant
    spawn: { run_as: ["nobody"], executables: ["/usr/bin/*", "/bin/*"] }
`;

let dir: string;
let ca: TestCa;
let agentPair: Issued;
let tenant: Issued;
/** The agent's --tls-client-ca: a copy of the CA's certificate, rewritten by the CA rotation test. */
let clientCa: string;
let h: Harness;
let address: string;
let port: number;

test.before(async () => {
  dir = tempDir('pidfd-agent-tls-');
  ca = new TestCa(join(dir, 'ca'), 'agent-ca');
  agentPair = ca.issue('agent', { san: 'IP:127.0.0.1', usage: 'serverAuth', cert: join(dir, 'server.pem'), key: join(dir, 'server.key') });
  tenant = ca.issue('tenant-a', { san: `URI:${TENANT}`, usage: 'clientAuth' });
  clientCa = join(dir, 'client-ca.pem');
  copyFileSync(ca.cert, clientCa);
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, POLICY);
  h = await startHarness({ tcp: ['127.0.0.1:0'], tls: { cert: agentPair.cert, key: agentPair.key, clientCa }, policyFile });
  address = h.agent.addresses[1]!;
  port = Number(address.split(':')[1]);
});
test.after.always(async () => {
  await h?.close();
});

const tlsClient = (client?: Issued) =>
  new AgentClient(address, client ? credentials.createSsl(pem(ca.cert), pem(client.key), pem(client.cert)) : credentials.createSsl(pem(ca.cert)));

interface Probe {
  /** The server answered the client's preface in HTTP/2 (its SETTINGS frame): the connection got a session. */
  readonly served: boolean;
  /** The TLS error the client saw, if any (an alert the server sent, a reset). */
  readonly error?: string;
  /** The certificate the agent presented. */
  readonly fingerprint?: string;
}

/** What an HTTP/2 client sends first: the preface and an empty SETTINGS frame (RFC 9113 §3.4). */
const CLIENT_PREFACE = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

/** One raw TLS connection (h2 ALPN), verifying the agent against the CA like any client; it starts HTTP/2. */
function probe(client?: Issued): Promise<Probe> {
  return new Promise((resolve, reject) => {
    let fingerprint: string | undefined;
    let error: string | undefined;
    const s = tls.connect({ host: '127.0.0.1', port, ca: pem(ca.cert), ALPNProtocols: ['h2'], ...(client && { cert: pem(client.cert), key: pem(client.key) }) });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('the agent neither served nor closed the connection'));
    }, 30_000); // generous: a loaded machine can take seconds for a handshake; the answer is what counts
    s.once('secureConnect', () => {
      fingerprint = s.getPeerX509Certificate()?.fingerprint256;
      s.write(CLIENT_PREFACE);
    });
    s.once('data', () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ served: true, fingerprint });
    });
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.once('close', () => {
      clearTimeout(timer);
      resolve({ served: false, error, fingerprint });
    });
  });
}

test('no TLS session is resumed: each connection verifies its certificate anew', async (t) => {
  const connect = (session?: Buffer) =>
    new Promise<{ reused: boolean; session?: Buffer }>((resolve, reject) => {
      let ticket: Buffer | undefined;
      const s = tls.connect({ host: '127.0.0.1', port, ca: pem(ca.cert), ALPNProtocols: ['h2'], cert: pem(tenant.cert), key: pem(tenant.key), session });
      s.on('session', (b: Buffer) => (ticket = b));
      s.once('secureConnect', () => s.write(CLIENT_PREFACE));
      s.once('data', () => {
        const reused = s.isSessionReused();
        // TLS 1.3 sends its tickets after the handshake: give them a moment to arrive.
        setTimeout(() => {
          s.destroy();
          resolve({ reused, session: ticket ?? s.getSession() });
        }, 100);
      });
      s.once('error', reject);
    });
  const first = await connect();
  t.false(first.reused);
  const second = await connect(first.session);
  t.false(second.reused, 'a session offered again is not resumed');
});

test('a client that asks to renegotiate (TLS 1.2) is disconnected; the agent serves on', async (t) => {
  // Renegotiation could bring another certificate than the one verified at the handshake, which
  // the agent reads once per connection. The agent refuses it (disableRenegotiation), and so does
  // node's HTTP/2 over the connection (RFC 9113 §9.2.1): this holds if either stays.
  const outcome = await new Promise<{ served: boolean; renegotiated: boolean; closed: boolean }>((resolve, reject) => {
    let served = false;
    const s = tls.connect({ host: '127.0.0.1', port, ca: pem(ca.cert), ALPNProtocols: ['h2'], cert: pem(tenant.cert), key: pem(tenant.key), maxVersion: 'TLSv1.2' });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('the agent neither renegotiated nor closed the connection'));
    }, 30_000);
    s.on('error', () => {});
    s.once('secureConnect', () => s.write(CLIENT_PREFACE));
    s.once('data', () => {
      served = true;
      const asked = s.renegotiate({ rejectUnauthorized: true }, (e) => {
        if (e === null) {
          clearTimeout(timer);
          s.destroy();
          resolve({ served, renegotiated: true, closed: false });
        }
      });
      t.true(asked, 'node sent the renegotiation request');
    });
    s.once('close', () => {
      clearTimeout(timer);
      resolve({ served, renegotiated: false, closed: true });
    });
  });
  t.deepEqual(outcome, { served: true, renegotiated: false, closed: true });
  const client = tlsClient(tenant);
  t.deepEqual((await client.list({ labels: { none: 'x' } })).processes, []);
  client.close();
});

async function refusedCall(t: import('ava').ExecutionContext, client: AgentClient): Promise<void> {
  const e = await t.throwsAsync(client.list({}, { deadline: 5000 }), { instanceOf: AgentCallError });
  t.is(e?.code, status.UNAVAILABLE, e?.message);
  client.close();
}

test.serial('TLS connections, served or refused at any stage, leave no descriptor behind', async (t) => {
  const expired = ca.issue('tenant-a-lapsed', { san: `URI:${TENANT}`, usage: 'clientAuth', notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2020-01-02T00:00:00Z') });
  await probe(tenant);
  const baseline = openFdCount();
  for (let i = 0; i < 20; i++) {
    const results = await Promise.all([probe(tenant), probe(), probe(expired)]);
    t.deepEqual(results.map((r) => r.served), [true, false, false]);
  }
  await eventually('the fd count back to its baseline', () => openFdCount() <= baseline);
  t.pass();
});

test('a certificate from the client CA gets a session; its SPIFFE ID owns what it spawns', async (t) => {
  t.true((await probe(tenant)).served);
  const client = tlsClient(tenant);
  t.teardown(() => client.close());
  const { process: p } = await client.spawn({ argv: ['/usr/bin/true'], user: 'nobody' });
  t.is(p!.owner, TENANT);
  const { process: done } = await client.wait({ handle: p!.handle });
  t.is(done!.exit?.code, 0);
  t.is((await client.get({ handle: p!.handle })).process!.owner, TENANT);
});

test('no client certificate: the handshake is refused', async (t) => {
  const r = await probe();
  t.false(r.served);
  t.is(r.error, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');
  await refusedCall(t, tlsClient());
});

test('a certificate from another CA is refused', async (t) => {
  const other = new TestCa(join(dir, 'other-ca'), 'other-ca');
  const stranger = other.issue('tenant-a', { san: `URI:${TENANT}`, usage: 'clientAuth' });
  const r = await probe(stranger);
  t.false(r.served, 'no HTTP/2 session: node:tls ends the connection once verification failed');
  t.truthy(r.fingerprint, 'the agent did present its certificate: the refusal is about the client');
  await refusedCall(t, tlsClient(stranger));
});

test('an expired certificate from the client CA is refused', async (t) => {
  const expired = ca.issue('tenant-a-expired', { san: `URI:${TENANT}`, usage: 'clientAuth', notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2020-01-02T00:00:00Z') });
  t.false((await probe(expired)).served);
  await refusedCall(t, tlsClient(expired));
});

/** Replaces a file the way a rotation should: a new file renamed over the old. */
function replaceFile(path: string, content: Buffer): void {
  writeFileSync(`${path}.new`, content);
  renameSync(`${path}.new`, path);
}

test.serial('a new client CA file decides the next handshakes', async (t) => {
  const other = new TestCa(join(dir, 'next-ca'), 'next-ca');
  const newcomer = other.issue('tenant-a', { san: `URI:${TENANT}`, usage: 'clientAuth' });
  t.false((await probe(newcomer)).served);
  replaceFile(clientCa, Buffer.concat([readFileSync(ca.cert), readFileSync(other.cert)]));
  await eventually('the bundle with the next CA to be read', async () => (await probe(newcomer)).served);
  t.true((await probe(tenant)).served, 'both CAs while the bundle holds both');
  replaceFile(clientCa, readFileSync(other.cert));
  await eventually('the old CA to be dropped', async () => !(await probe(tenant)).served);
  t.true((await probe(newcomer)).served);
  replaceFile(clientCa, readFileSync(ca.cert));
  await eventually('the first CA back', async () => (await probe(tenant)).served);
});

test.serial('a CA taken out of the client CA bundle closes the open connections of its clients; the others go on', async (t) => {
  const other = new TestCa(join(dir, 'leaving-ca'), 'leaving-ca');
  const leaving = other.issue('tenant-a', { san: `URI:${TENANT}`, usage: 'clientAuth' });
  replaceFile(clientCa, Buffer.concat([readFileSync(ca.cert), readFileSync(other.cert)]));
  await eventually('the bundle with both CAs to be read', async () => (await probe(leaving)).served);
  const staying = tlsClient(tenant);
  const going = tlsClient(leaving);
  t.teardown(() => {
    staying.close();
    going.close();
  });
  await staying.list({});
  await going.list({});
  const revoked = () => h.logs.filter((l) => l.event === 'tls_connection_revoked').length;
  const before = revoked(); // other tests' CA changes revoke connections too
  replaceFile(clientCa, readFileSync(ca.cert));
  await eventually('the revocation logged', () => revoked() > before);
  const e = await t.throwsAsync(going.list({}, { deadline: 5_000 }), { instanceOf: AgentCallError });
  t.is(e!.code, status.UNAVAILABLE, 'its connection is gone, and a new one fails the handshake');
  await t.notThrowsAsync(staying.list({}), 'a client of the CA that stays is not disturbed');
});

test.serial('a client CA bundle read while half-written is not loaded: no connection is revoked, its clients are still served', async (t) => {
  const other = new TestCa(join(dir, 'first-in-bundle-ca'), 'first-in-bundle-ca');
  const whole = Buffer.concat([readFileSync(other.cert), readFileSync(ca.cert)]);
  replaceFile(clientCa, whole);
  await eventually('the bundle with both CAs to be read', async () => (await probe(other.issue('tenant-a', { san: `URI:${TENANT}`, usage: 'clientAuth' }))).served);
  const client = tlsClient(tenant);
  t.teardown(() => client.close());
  await client.list({});
  const count = (event: string) => h.logs.filter((l) => l.event === event).length;
  const [failed, reloaded, revoked] = [count('tls_reload_failed'), count('tls_reloaded'), count('tls_connection_revoked')];
  // What a reader sees of a bundle being written in place: the first CA whole, the second cut off
  // in its base64 (node:tls would load the first CA alone, and drop the second's clients).
  const cut = whole.subarray(0, readFileSync(other.cert).length + 200);
  replaceFile(clientCa, cut);
  await eventually('the half-written bundle to be read', () => count('tls_reload_failed') > failed || count('tls_reloaded') > reloaded);
  t.is(count('tls_reloaded'), reloaded, 'not loaded');
  t.regex(String(h.logs.filter((l) => l.event === 'tls_reload_failed').at(-1)?.fields['error']), /--tls-client-ca .*: a PEM block .* not end/);
  t.is(count('tls_connection_revoked'), revoked, 'no connection revoked');
  await t.notThrowsAsync(client.list({}), 'the open connection goes on');
  t.true((await probe(tenant)).served, 'new connections are still verified against the last good bundle');
  replaceFile(clientCa, readFileSync(ca.cert));
  await eventually('the bundle of the first CA alone to be read', () => count('tls_reloaded') > reloaded);
});

test('a client CA file with text and other blocks between its certificates loads; only a BEGIN without its END, or an END without its BEGIN, is refused', (t) => {
  const here = tempDir('pidfd-agent-pem-');
  // A legacy encrypted key: RFC 1421 headers (Proc-Type, DEK-Info) inside the block, with '-' in them.
  const encrypted = execFileSync('openssl', ['genrsa', '-aes128', '-passout', 'pass:x', '-traditional', '2048'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString('latin1');
  t.regex(encrypted, /DEK-Info: AES-128-CBC,/);
  const caPem = readFileSync(ca.cert, 'latin1');
  const load = (text: string) => {
    const clientCa = join(here, `ca-${Math.random().toString(36).slice(2)}.pem`);
    writeFileSync(clientCa, text, 'latin1');
    return () => loadTlsFiles({ cert: agentPair.cert, key: agentPair.key, clientCa });
  };
  const loads = {
    'a legacy encrypted key beside the certificate': caPem + encrypted,
    'a text line led by a dash': '- the intermediate, then the root\n' + caPem,
    'a separator line of dashes between blocks': caPem + '--------------------\n' + caPem,
  };
  for (const [what, text] of Object.entries(loads)) t.notThrows(load(text), what);
  const cut = {
    'a BEGIN without its END': caPem + caPem.slice(0, 200),
    'a block cut in its END line': caPem + caPem.slice(0, caPem.length - 6),
    'an END without its BEGIN': caPem + caPem.slice(caPem.indexOf('\n') + 1),
    'a BEGIN line cut short at the end': caPem + '-----BEG',
  };
  for (const [what, text] of Object.entries(cut)) t.throws(load(text), { message: /a PEM block begins and does not end/ }, what);
});

test.serial('new certificate files: new connections get the new certificate, a half-done rotation keeps the old one, open sessions go on', async (t) => {
  const before = fingerprintOf(agentPair.cert);
  t.is((await probe(tenant)).fingerprint, before);
  const client = tlsClient(tenant);
  t.teardown(() => client.close());
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  // From the start of the replay ring, so the stream is known to be open before the rotation.
  const events = client.watch({ afterSequence: 0 }, { signal: abort.signal })[Symbol.asyncIterator]();
  const spawned = async (handle: string) => {
    for (;;) {
      const { value, done } = await events.next();
      if (done) return false;
      if (value.process?.handle === handle && value.type === EventType.EVENT_TYPE_SPAWNED) return true;
    }
  };
  const first = await client.spawn({ argv: ['/usr/bin/true'], user: 'nobody' });
  t.true(await spawned(first.process!.handle));

  // A rotation as a file-by-file copy would do it: the certificate first, its key a moment later.
  const next = ca.issue('agent-next', { san: 'IP:127.0.0.1', usage: 'serverAuth' });
  const failures = () => h.logs.filter((l) => l.event === 'tls_reload_failed').length;
  const failed = failures();
  renameSync(next.cert, agentPair.cert);
  await eventually('the mismatched pair to be read and refused', () => failures() > failed);
  const during = await probe(tenant);
  t.true(during.served, 'still serving');
  t.is(during.fingerprint, before, 'with the last good pair');

  renameSync(next.key, agentPair.key);
  const after = fingerprintOf(agentPair.cert);
  t.not(after, before);
  await eventually('a new connection to see the new certificate', async () => (await probe(tenant)).fingerprint === after);
  t.true(h.logs.some((l) => l.event === 'tls_reloaded' && l.fields['fingerprint256'] === after));

  const second = await client.spawn({ argv: ['/usr/bin/true'], user: 'nobody' });
  t.true(await spawned(second.process!.handle), 'the Watch opened before the rotation still streams: its session was kept');
});

/** The agent binary's exit code and stderr for a start that must fail. */
const failedStart = (...args: string[]): Promise<{ code: number; stderr: string }> =>
  new Promise((resolve) => {
    const sock = join(tempDir('pidfd-agent-tls-start-'), 'run', 'agent.sock');
    const base = ['--quiet', '--ephemeral', '--listen', `unix://${sock}`, '--tcp', '127.0.0.1:0', '--policy', join(dir, 'policy.yaml')];
    execFile(process.execPath, [AGENT_BIN, ...base, ...args], { timeout: 20_000 }, (err, _stdout, stderr) => resolve({ code: (err as { code?: number } | null)?.code ?? 0, stderr }));
  });

test('unusable TLS files stop the start with one line naming the file, no stack', async (t) => {
  const missing = await failedStart('--tls-cert', join(dir, 'missing.pem'), '--tls-key', agentPair.key, '--tls-client-ca', ca.cert);
  t.is(missing.code, 1);
  t.is(missing.stderr, `pidfd-agent: --tls-cert ${join(dir, 'missing.pem')}: ENOENT\n`);
  const mismatched = await failedStart('--tls-cert', agentPair.cert, '--tls-key', tenant.key, '--tls-client-ca', ca.cert);
  t.is(mismatched.code, 1);
  t.is(mismatched.stderr, `pidfd-agent: --tls-cert ${agentPair.cert}, --tls-key ${tenant.key}: key values mismatch\n`);
  const noCa = await failedStart('--tls-cert', agentPair.cert, '--tls-key', agentPair.key, '--tls-client-ca', agentPair.key);
  t.is(noCa.stderr, `pidfd-agent: --tls-client-ca ${agentPair.key}: no PEM certificate in it\n`);
});

test('pidfdctl reaches the TLS address with --tls-* flags or PIDFD_AGENT_TLS_* variables', async (t) => {
  const flags = ['--tls-ca', ca.cert, '--tls-cert', tenant.cert, '--tls-key', tenant.key];
  const spawned = await runCliText(address, [...flags, 'spawn', '--user', 'nobody', '--', '/usr/bin/true']);
  t.is(spawned.code, 0, spawned.stderr);
  const handle = spawned.stdout.trim();
  const env = { ...process.env, PIDFD_AGENT_TLS_CA: ca.cert, PIDFD_AGENT_TLS_CERT: tenant.cert, PIDFD_AGENT_TLS_KEY: tenant.key };
  const got = await runCliText(address, ['get', handle, '--json'], env);
  t.is(got.code, 0, got.stderr);
  t.is(JSON.parse(got.stdout).process.owner, TENANT);

  const anonymous = await runCliText(address, ['--tls-ca', ca.cert, 'list']);
  t.is(anonymous.code, 1);
  t.regex(anonymous.stderr, /^pidfdctl: UNAVAILABLE: [^\n]*alert certificate required[^\n]*\n$/, 'one line');
  const missing = await runCliText(address, [...flags.slice(0, 2), '--tls-cert', join(dir, 'missing.pem'), '--tls-key', tenant.key, 'list']);
  t.is(missing.stderr, `pidfdctl: --tls-cert ${join(dir, 'missing.pem')}: ENOENT\n`);
  const half = await runCliText(address, ['--tls-cert', tenant.cert, 'list']);
  t.is(half.code, 2);
  t.regex(half.stderr, /^pidfdctl: --tls-cert and --tls-key go together/);
});

test('the Python client reaches the TLS address with tls_credentials', async (t) => {
  const script = [
    'import sys; sys.path.insert(0, sys.argv[2])',
    'from pidfd_agent import Agent, AgentError, pb, tls_credentials',
    'ca, cert, key = sys.argv[3:6]',
    'with Agent(sys.argv[1], credentials=tls_credentials(cert, key, ca)) as agent:',
    '    p = agent.spawn(pb.SpawnRequest(argv=["/usr/bin/true"], user="nobody")).process',
    '    print(p.owner, agent.wait(pb.WaitRequest(handle=p.handle)).process.exit.code)',
    'with Agent(sys.argv[1], credentials=tls_credentials(cert, key)) as agent:',
    '    try:',
    '        agent.list(pb.ListRequest(), timeout=5)',
    '    except AgentError as e:',
    '        print(e.code.name)',
  ].join('\n');
  // Asynchronously: the agent under test runs on this process's event loop.
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile('/usr/bin/python3', ['-B', '-c', script, address, join(ROOT, 'clients/python'), ca.cert, tenant.cert, tenant.key], { timeout: 30_000 }, (err, out, errOut) => (err ? reject(new Error(errOut)) : resolve(out))),
  );
  t.deepEqual(stdout.trim().split('\n'), [`${TENANT} 0`, 'UNAVAILABLE'], 'and without the CA the agent itself is not trusted');
});

test('callerOf on a call over TLS: the one URI SAN, else the first DNS SAN, else the CN; an ambiguous certificate is refused', async (t) => {
  // The policy's contract, checked on a bare grpc-js server behind the agent's own TLS listener.
  const raw = (b: Buffer) => b;
  const service = { whoAmI: { path: '/test.Identity/WhoAmI', requestStream: false, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } };
  const server = new Server();
  server.addService(service as ServiceDefinition, { whoAmI: (call: Parameters<typeof callerOf>[0], cb: (e: null, r: Buffer) => void) => cb(null, Buffer.from(JSON.stringify(whoIs(call)))) } as unknown as UntypedServiceImplementation);
  const files = new TlsFileProvider({ cert: agentPair.cert, key: agentPair.key, clientCa: ca.cert }, () => {});
  const listener = await listenTcp(server, '127.0.0.1:0', () => {}, { tls: files, maxConnections: 16, handshakeTimeoutMs: 10_000 });
  t.teardown(() => {
    listener.close();
    server.forceShutdown();
    files.close();
  });
  const Client = makeGenericClientConstructor(service, 'Identity');
  const whoAmI = (client: Issued) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const c = new Client(listener.address, credentials.createSsl(pem(ca.cert), pem(client.key), pem(client.cert)));
      (c as unknown as Record<string, (req: Buffer, cb: (e: Error | null, r: Buffer) => void) => void>)['whoAmI']!(Buffer.alloc(0), (e, r) => {
        c.close();
        return e ? reject(e) : resolve(JSON.parse(r.toString()));
      });
    });
  t.like(await whoAmI(tenant), { identity: TENANT, transport: 'tls', aliases: [] });
  t.regex(String((await whoAmI(tenant))['peer']), /^127\.0\.0\.1:\d+$/);
  const dns = ca.issue('worker', { san: 'DNS:worker.example.org, DNS:other.example.org', usage: 'clientAuth' });
  t.like(await whoAmI(dns), { identity: 'worker.example.org', transport: 'tls' });
  const cn = ca.issue('batch-runner', { usage: 'clientAuth' });
  t.like(await whoAmI(cn), { identity: 'batch-runner', transport: 'tls' });
  const posing = ca.issue('posing', { san: 'URI:unix:uid=0', usage: 'clientAuth' });
  t.like(await whoAmI(posing), { identity: 'tls:unix:uid=0', transport: 'tls' }, 'a certificate never passes for a unix caller');
  // Only a URI SAN spells a URI; a DNS SAN or CN that does would pass for the SPIFFE ID it names.
  for (const [name, san] of [['dns-posing', `DNS:${TENANT}`], [TENANT, undefined], ['unix:uid=0', undefined]] as const) {
    t.deepEqual(await whoAmI(ca.issue(name, { ...(san && { san }), usage: 'clientAuth' })), { refused: 'CERTIFICATE_IDENTITY' }, `${san ?? `CN=${name}`}`);
  }
  // An X.509-SVID has one URI SAN: with two, their order would pick the rule.
  const two = ca.issue('two', { san: `URI:${TENANT}, URI:spiffe://example.org/admin`, usage: 'clientAuth' });
  t.deepEqual(await whoAmI(two), { refused: 'CERTIFICATE_IDENTITY' });
});

/** callerOf as the agent calls it (TLS on --tcp), or the reason it refused the caller. */
function whoIs(call: Parameters<typeof callerOf>[0]): unknown {
  try {
    return callerOf(call, { tcpTls: true });
  } catch (e) {
    return { refused: (e as AgentError).detail.reason };
  }
}

test('a Watch that outlives its certificate ends with UNAUTHENTICATED at its next event', async (t) => {
  // 8 s of validity and the handshake made by a first call: on a loaded machine a handshake alone can take seconds.
  const shortLived = ca.issue('tenant-a-short-watch', { san: `URI:${TENANT}`, usage: 'clientAuth', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 8_000) });
  const client = tlsClient(shortLived);
  t.teardown(() => client.close());
  await t.notThrowsAsync(client.list({}), 'valid now: served');
  const expiry = Date.parse(new X509Certificate(readFileSync(shortLived.cert)).validTo);
  const ended = (async () => {
    try {
      for await (const _ of client.watch({})) {
        // events before the expiry are the caller's to see
      }
      return undefined;
    } catch (e) {
      return e as AgentCallError;
    }
  })();
  await sleep(Math.max(0, expiry - Date.now()) + 1500);
  // An event after the expiry: the stream is decided again before it is sent.
  const other = tlsClient(tenant);
  t.teardown(() => other.close());
  const { process: p } = await other.spawn({ argv: ['/usr/bin/true'], user: 'nobody' });
  await other.wait({ handle: p!.handle });
  const e = await ended;
  t.is(e?.code, status.UNAUTHENTICATED);
  t.is(e?.reason, 'CERTIFICATE_EXPIRED');
});

test('a call reset before it is decided is refused as UNAUTHENTICATED, never taken for the anonymous caller', async (t) => {
  const outsider = ca.issue('outsider', { usage: 'clientAuth' });
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca: pem(ca.cert), cert: pem(outsider.cert), key: pem(outsider.key), servername: '127.0.0.1' });
  t.teardown(() => session.destroy());
  await new Promise<void>((resolve, reject) => session.once('connect', () => resolve()).once('error', reject));
  const marker = join(dir, `reset-${process.pid}`);
  const closed: Promise<void>[] = [];
  for (let i = 0; i < 30; i++) {
    const body = SpawnRequest.encode(SpawnRequest.fromPartial({ argv: ['/usr/bin/touch', `${marker}-${i}`], user: 'nobody' })).finish();
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    const stream = session.request({ ':method': 'POST', ':path': '/pidfd.agent.v1.AgentService/Spawn', 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => {});
    stream.end(frame);
    stream.close(http2.constants.NGHTTP2_CANCEL);
    closed.push(new Promise((r) => stream.once('close', () => r())));
  }
  await Promise.all(closed);
  // The same caller, not reset: refused by the policy under its own name.
  const e = await t.throwsAsync(new AgentClient(address, credentials.createSsl(pem(ca.cert), pem(outsider.key), pem(outsider.cert))).spawn({ argv: ['/usr/bin/true'], user: 'nobody' }), { instanceOf: AgentCallError });
  t.is(e!.reason, 'POLICY_DENIED');
  await sleep(500);
  t.deepEqual(readdirSync(dir).filter((f) => f.startsWith(`reset-${process.pid}`)), [], 'nothing ran');
  const audit = readFileSync(join(h.dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.deepEqual(audit.filter((l) => l['identity'] === 'anonymous'), []);
  t.true(audit.some((l) => l['reason'] === 'CALLER_UNKNOWN' && l['identity'] === '(unauthenticated)' && l['peer'] === 'unknown'), 'reset calls that reached a decision were refused');
});

test('a connection outlives its certificate: the next call on it is UNAUTHENTICATED, audited', async (t) => {
  const shortLived = ca.issue('tenant-a-short', { san: `URI:${TENANT}`, usage: 'clientAuth', notBefore: new Date(Date.now() - 60_000), notAfter: new Date(Date.now() + 8_000) });
  const client = tlsClient(shortLived);
  t.teardown(() => client.close());
  await t.notThrowsAsync(client.list({}), 'valid now: served');
  const expiry = Date.parse(new X509Certificate(readFileSync(shortLived.cert)).validTo);
  await new Promise((r) => setTimeout(r, Math.max(0, expiry - Date.now()) + 1500));
  const e = await t.throwsAsync(client.list({}), { instanceOf: AgentCallError });
  t.is(e!.code, status.UNAUTHENTICATED);
  t.is(e!.reason, 'CERTIFICATE_EXPIRED');
  const audit = readFileSync(join(h.dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.true(audit.some((l) => l['reason'] === 'CERTIFICATE_EXPIRED' && l['identity'] === '(unauthenticated)' && l['decision'] === 'deny' && l['rpc'] === 'List'), 'the refusal is audited');
});
