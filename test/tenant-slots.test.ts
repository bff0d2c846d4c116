// What a tenant's calls hold of the agent while they wait (ReadOutput streams, Wait and Stop calls)
// is bounded per identity, and a tenant at its bound learns nothing from it about anyone else's
// handles. Tenants are TLS identities (certificates from a throwaway CA), callers in this process.
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import test from 'ava';
import { credentials } from '@grpc/grpc-js';
import { AgentCallError, AgentClient, OutputMode, OutputStream, status } from '../clients/ts/src/index.js';
import { parsePolicy } from '../src/auth/policy.js';
import { pem, TestCa, type Issued } from './helpers/certs.js';
import { eventually, startHarness, tempDir, type Harness } from './helpers/harness.js';

const A = 'spiffe://example.org/tenant-a';
const B = 'spiffe://example.org/tenant-b';
const NEVER = 'aaaaaaaaaaaaaaaaaaaaaaaaaa';

const tenantRule = (identity: string, limits: string) => `  - identities: ["${identity}"]
    role: tenant
${limits}    spawn: { run_as: ["nobody"], executables: ["/usr/bin/*", "/bin/*"] }
`;
const POLICY = `rules:
  - identities: ["unix:uid=0"]
    role: admin
${tenantRule(A, '    max_readers: 1\n    max_waits: 2\n')}${tenantRule(B, '')}`;

let ca: TestCa;
let h: Harness;
let a: AgentClient;
let b: AgentClient;

test.before(async () => {
  const dir = tempDir('pidfd-agent-slots-');
  ca = new TestCa(join(dir, 'ca'), 'agent-ca');
  const agentPair = ca.issue('agent', { san: 'IP:127.0.0.1', usage: 'serverAuth' });
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, POLICY);
  h = await startHarness({ tcp: ['127.0.0.1:0'], tls: { cert: agentPair.cert, key: agentPair.key, clientCa: ca.cert }, policyFile });
  const client = (pair: Issued) => new AgentClient(h.agent.addresses[1]!, credentials.createSsl(pem(ca.cert), pem(pair.key), pem(pair.cert)), {}, { retry: false });
  a = client(ca.issue('tenant-a', { san: `URI:${A}`, usage: 'clientAuth' }));
  b = client(ca.issue('tenant-b', { san: `URI:${B}`, usage: 'clientAuth' }));
});
test.after.always(async () => {
  a?.close();
  b?.close();
  await h?.close();
});

const refusal = async (call: Promise<unknown>) => {
  try {
    await call;
  } catch (e) {
    if (!(e instanceof AgentCallError)) throw e;
    return { code: e.code, reason: e.reason, field: e.info['field'] };
  }
  return 'answered';
};

const sleeper = async (client: AgentClient, capture = false) =>
  (await client.spawn({ argv: ['sleep', '30'], user: 'nobody', ...(capture && { stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } }) })).process!.handle;

test.serial("a tenant holding all its ReadOutput streams is refused alike for another tenant's handle and one that never existed", async (t) => {
  const mine = await sleeper(a, true);
  const theirs = await sleeper(b, true);
  t.teardown(() => Promise.all([h.client.stop({ handle: mine, signal: 'KILL' }), h.client.stop({ handle: theirs, signal: 'KILL' })]));
  const abort = new AbortController();
  const following = (async () => {
    for await (const _ of a.readOutput({ handle: mine, stream: OutputStream.OUTPUT_STREAM_STDOUT, follow: true }, { signal: abort.signal }));
  })().catch(() => undefined);
  await eventually('the stream to be open', () => h.agent.readers.stats().length === 1);
  const read = (handle: string) => refusal((async () => { for await (const _ of a.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })); })());
  // Decided on the handle first, another's was UNKNOWN_HANDLE and a missing one the quota's: an
  // answer that told which handles are someone else's.
  const [another, never] = [await read(theirs), await read(NEVER)];
  t.deepEqual(another, never);
  t.deepEqual(never, { code: status.RESOURCE_EXHAUSTED, reason: 'POLICY_QUOTA', field: 'max_readers' });
  abort.abort();
  await following;
  await eventually('the slot to be free', () => h.agent.readers.stats().length === 0);
  t.deepEqual(await read(theirs), await read(NEVER), 'under the cap, both are UNKNOWN_HANDLE');
  t.like(await read(NEVER), { code: status.NOT_FOUND, reason: 'UNKNOWN_HANDLE' });
});

test.serial('Wait and Stop calls waiting at once are bounded per identity (max_waits): past it at once POLICY_QUOTA, others unaffected', async (t) => {
  const mine = await sleeper(a);
  const theirs = await sleeper(b);
  t.teardown(() => h.client.stop({ handle: theirs, signal: 'KILL' }).catch(() => undefined));
  const waiting = Promise.all([a.wait({ handle: mine }), a.stop({ handle: mine, signal: 'CONT', grace: { seconds: 60, nanos: 0 } })]);
  // Unbounded, one identity's 64 connections held 65,536 of them: ~0.8 GB of the agent. A third
  // call waited too (until its timeout: DEADLINE_EXCEEDED).
  const third = () => refusal(a.wait({ handle: mine, timeout: { seconds: 0, nanos: 200_000_000 } }));
  const quota = { code: status.RESOURCE_EXHAUSTED, reason: 'POLICY_QUOTA', field: 'max_waits' };
  t.deepEqual(await eventually('the two calls to hold their slots', async () => {
    const o = await third();
    return typeof o === 'object' && o.code === status.DEADLINE_EXCEEDED ? undefined : o;
  }), quota);
  t.deepEqual(await refusal(a.wait({ handle: NEVER })), quota, 'any handle alike');
  t.like(await refusal(b.wait({ handle: theirs, timeout: { seconds: 0, nanos: 100_000_000 } })), { code: status.DEADLINE_EXCEEDED }, "another tenant's Wait waits");
  await h.client.signal({ handle: mine, signal: 'KILL' });
  const [waited, stopped] = await waiting;
  t.is(waited.process?.exit?.signalName, 'SIGKILL');
  t.is(stopped.process?.exit?.signalName, 'SIGKILL');
  t.is((await a.wait({ handle: mine })).process?.exit?.signalName, 'SIGKILL', 'answered calls gave their slots back');
  const [admin, , tenant] = parsePolicy(POLICY).rules;
  t.like(admin, { maxWaits: undefined });
  t.like(tenant, { maxWaits: 1024 }, "a tenant's rule without max_waits");
});
