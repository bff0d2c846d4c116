// The policy file over time: no policy (root alone), edits and SIGHUP, broken files, and owners
// an older agent persisted in its own form.
import { spawn } from 'node:child_process';
import test from 'ava';
import { mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EventType, OutputMode, OutputStream, State, status } from '../clients/ts/src/index.js';
import { parsePolicy } from '../src/auth/policy.js';
import { newHandleId } from '../src/process/lifecycle/handle.js';
import { ProcessRecord } from '../src/process/lifecycle/record.js';
import { readBootId } from '../src/process/lifecycle/proc-fs.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import { AGENT_BIN } from './helpers/agent-process.js';
import { eventually, startHarness, tempDir } from './helpers/harness.js';
import { asUser, oneAs, shareSocket } from './helpers/tenant.js';

const T = 1003;

const tenantPolicy = (executables: string[]) => `rules:
  - identities: ["unix:uid=0"]
    role: admin
  - name: tenant
    identities: ["unix:uid=${T}"]
    role: tenant
    spawn:
      run_as: ["${T}"]
      executables: ${JSON.stringify(executables)}
  - name: onlooker
    identities: ["unix:uid=${T + 1}"]
    role: tenant
`;

/** Replaced by rename, as editors and config management do. */
function replaceFile(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

test('without --policy a uid other than 0 may do nothing at all, and root may do everything', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  shareSocket(h);
  // A refused Watch ends at once with its error; the 5 s only bound a watch that was let in (on a
  // loaded machine 100 ms could pass before the refusal came, and the watch read as served).
  const outcomes = await asUser(T, h.address, [{ op: 'list' }, { op: 'spawn', req: { argv: ['true'], user: String(T) } }, { op: 'get', req: { handle: 'x' } }, { op: 'watch', ms: 5000 }]);
  for (const o of outcomes) t.like(o.error, { code: status.PERMISSION_DENIED, reason: 'POLICY_DENIED', info: { field: 'identity' } });
  const { process: p } = await h.client.spawn({ argv: ['true'] });
  t.is(p!.owner, 'unix:uid=0');
});

test('a policy edit takes effect for the next call; a broken file keeps the policy in force and says why', async (t) => {
  const dir = tempDir('pidfd-agent-policy-');
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, tenantPolicy(['/usr/bin/*']));
  const h = await startHarness({ policyFile: file });
  t.teardown(() => h.close());
  shareSocket(h);
  const trueAt = (path: string) => ({ op: 'spawn', req: { argv: [path], user: String(T) } });
  t.like((await oneAs(T, h.address, trueAt('/bin/true'))).error, { code: status.PERMISSION_DENIED, info: { field: 'executable' } });

  writeFileSync(file, tenantPolicy(['/usr/bin/*', '/bin/*']));
  t.true(h.agent.reloadPolicy(), 'SIGHUP: read again');
  t.truthy((await oneAs(T, h.address, trueAt('/bin/true'))).ok, 'the next call is decided by the edited policy');

  replaceFile(file, 'rules:\n  - identities: [unclosed\n');
  t.false(h.agent.reloadPolicy(), 'a broken file is not taken');
  const error = h.logs.find((l) => l.event === 'policy_error');
  t.regex(String(error?.fields['error']), /not valid YAML/);
  t.truthy((await oneAs(T, h.address, trueAt('/bin/true'))).ok, 'the previous policy stays in force');

  replaceFile(file, tenantPolicy(['/usr/bin/*']));
  await eventually('the changed file to be read on its own', () => h.logs.some((l) => l.event === 'policy_loaded' && l.fields['why'] === 'change'));
  t.like((await oneAs(T, h.address, trueAt('/bin/true'))).error, { code: status.PERMISSION_DENIED, info: { field: 'executable' } }, 'a file replaced on disk is picked up without a signal');
});

test('a policy mounted from a ConfigMap is reloaded when the kubelet swaps its ..data symlink', async (t) => {
  // The kubelet's atomic writer: the file's path is a symlink through `..data` to a timestamped
  // directory; an update writes a new directory and renames a new `..data` over the old one.
  const dir = tempDir('pidfd-agent-configmap-');
  const version = (name: string, executables: string[]) => {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, 'policy.yaml'), tenantPolicy(executables));
    symlinkSync(name, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  };
  version('..2026_11_28_09_00_00.1', ['/usr/bin/*']);
  symlinkSync('..data/policy.yaml', join(dir, 'policy.yaml'));
  const h = await startHarness({ policyFile: join(dir, 'policy.yaml') });
  t.teardown(() => h.close());
  shareSocket(h);
  const trueAt = { op: 'spawn', req: { argv: ['/bin/true'], user: String(T) } };
  t.like((await oneAs(T, h.address, trueAt)).error, { code: status.PERMISSION_DENIED, info: { field: 'executable' } });

  version('..2026_11_28_09_01_00.2', ['/usr/bin/*', '/bin/*']);
  await eventually('the swapped policy to be read', () => h.logs.some((l) => l.event === 'policy_loaded' && l.fields['why'] === 'change'));
  t.truthy((await oneAs(T, h.address, trueAt)).ok, 'the new version decides, without a SIGHUP');
  const loads = () => h.logs.filter((l) => l.event === 'policy_loaded').length;
  const before = loads();
  writeFileSync(join(dir, 'unrelated'), 'x');
  await new Promise((r) => setTimeout(r, 300));
  t.is(loads(), before, 'another file changing in the directory reloads nothing');
});

test('a policy that does not parse stops the start, naming what is wrong', async (t) => {
  const file = join(tempDir('pidfd-agent-policy-'), 'policy.yaml');
  writeFileSync(file, 'rules:\n  - identities: ["x"]\n    role: tenant\n    allow: [adopt]\n');
  await t.throwsAsync(startHarness({ policyFile: file }), { message: /rules\[0\]\.allow: adopt is for role admin only/ });
});

test('owners an older agent saved as unix:uid=U,gid=G,pid=P still own their processes', async (t) => {
  const dir = tempDir('pidfd-agent-old-owner-');
  const stateDir = join(dir, 'state');
  const store = new SqliteStore(stateDir, readBootId(), () => undefined);
  const old = new ProcessRecord(newHandleId(), { pid: 1, pidfsInode: 1n }, { argv: ['true'], labels: {}, adopted: false, owner: `unix:uid=${T},gid=${T},pid=4242` }, Date.now() - 1000, null);
  store.commit('test', 0, (w) => w.started(old));
  old.markExited({ termination: { exitCode: 0 }, reason: 'exited', exitedAt: Date.now() });
  store.commit('test', 0, (w) => w.exited(old.handle, old.exit!));
  store.close();
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, tenantPolicy(['/usr/bin/*']));
  const h = await startHarness({ policyFile, stateDir });
  t.teardown(() => h.close());
  shareSocket(h);
  const [mine] = await asUser(T, h.address, [{ op: 'get', req: { handle: old.handle } }]);
  t.is(mine!.ok?.process.owner, `unix:uid=${T}`);
  t.is(mine!.ok?.process.state, State.STATE_EXITED);
  const [other] = await asUser(T + 1, h.address, [{ op: 'get', req: { handle: old.handle } }]);
  t.like(other!.error, { code: status.NOT_FOUND, reason: 'UNKNOWN_HANDLE' }, "another tenant's, as ever");
});

test('spawn_rate and max_watches hold per identity; output needs its permission; an open Watch follows a reload', async (t) => {
  const U = 1004;
  const dir = tempDir('pidfd-agent-policy-');
  const file = join(dir, 'policy.yaml');
  const rules = (tenant: boolean) => `rules:
  - identities: ["unix:uid=0"]
    role: admin
${tenant ? `  - identities: ["unix:uid=${U}"]
    role: tenant
    allow: [spawn, read, signal]
    max_watches: 1
    spawn: {run_as: ["${U}"], executables: ["/usr/bin/*"], spawn_rate: 2/m}
` : ''}`;
  writeFileSync(file, rules(true));
  const h = await startHarness({ policyFile: file });
  t.teardown(() => h.close());
  shareSocket(h);
  const [echo, sleeper, third, read] = await asUser(U, h.address, [
    { op: 'spawn', req: { argv: ['/usr/bin/echo', 'hi'], user: String(U), stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE }, outputEvents: true } },
    { op: 'spawn', req: { argv: ['sleep', '30'], user: String(U) } },
    { op: 'spawn', req: { argv: ['true'], user: String(U) } },
    { op: 'readOutput', req: { handle: 'x', stream: OutputStream.OUTPUT_STREAM_STDOUT } },
  ]);
  const sleeping: string = sleeper!.ok.process.handle;
  t.teardown(() => h.client.stop({ handle: sleeping, signal: 'KILL' }).catch(() => undefined));
  t.like(third!.error, { code: status.RESOURCE_EXHAUSTED, reason: 'POLICY_QUOTA', info: { field: 'spawn_rate' } });
  t.like(read!.error, { code: status.PERMISSION_DENIED, reason: 'POLICY_DENIED', info: { field: 'rpc' } });
  await h.client.wait({ handle: echo!.ok.process.handle });
  const [seen] = await asUser(U, h.address, [{ op: 'watch', req: { afterSequence: 0 }, ms: 1500 }]);
  const types = new Set(seen!.ok.map((e: { type: number }) => e.type));
  t.true(types.has(EventType.EVENT_TYPE_EXITED));
  t.false(types.has(EventType.EVENT_TYPE_OUTPUT), 'no output events without the output permission');

  const { sequence } = await h.client.list();
  // Open long enough to outlast the start of a second tenant client on a loaded machine.
  const open = asUser(U, h.address, [{ op: 'watch', req: { afterSequence: sequence }, ms: 10_000 }]);
  await eventually('the tenant watch to be open', () => h.agent.watchers.stats().length === 1, 20_000);
  // A refused Watch ends at once; only one wrongly let through waits out its window.
  const [second] = await asUser(U, h.address, [{ op: 'watch', ms: 5000 }]);
  t.like(second!.error, { code: status.RESOURCE_EXHAUSTED, reason: 'POLICY_QUOTA', info: { field: 'max_watches' } });
  writeFileSync(file, rules(false));
  t.true(h.agent.reloadPolicy());
  await h.client.stop({ handle: sleeping, signal: 'KILL' });
  const [afterRevoke] = await open;
  t.like(afterRevoke!.error, { code: status.PERMISSION_DENIED, reason: 'POLICY_DENIED', info: { field: 'identity' } }, 'once the rule is gone the open stream ends at its next event, showing nothing more');
});

test('a reload that takes away output ends an open ReadOutput stream, audited', async (t) => {
  const U = 1005;
  const dir = tempDir('pidfd-agent-policy-');
  const file = join(dir, 'policy.yaml');
  const rules = (allow: string) => `rules:
  - identities: ["unix:uid=0"]
    role: admin
  - name: reader
    identities: ["unix:uid=${U}"]
    role: tenant
    allow: [${allow}]
    spawn: {run_as: ["${U}"], executables: ["/usr/bin/*", "/bin/*"]}
`;
  writeFileSync(file, rules('spawn, read, output, signal'));
  const h = await startHarness({ policyFile: file });
  t.teardown(() => h.close());
  shareSocket(h);
  const spawned = await oneAs(U, h.address, { op: 'spawn', req: { argv: ['/bin/sh', '-c', 'for i in $(seq 1 60); do echo tick $i; sleep 0.25; done'], user: String(U), stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } } });
  const handle: string = spawned.ok.process.handle;
  t.teardown(() => h.client.stop({ handle, signal: 'KILL' }).catch(() => undefined));
  const started = performance.now();
  const reading = oneAs(U, h.address, { op: 'readOutput', req: { handle, stream: OutputStream.OUTPUT_STREAM_STDOUT, follow: true } });
  await eventually('the stream to be open', () => h.agent.readers.stats().length === 1, 20_000);
  writeFileSync(file, rules('spawn, read, signal'));
  t.true(h.agent.reloadPolicy());
  const outcome = await reading;
  t.like(outcome.error, { code: status.PERMISSION_DENIED, reason: 'POLICY_DENIED', info: { field: 'rpc' } });
  t.true(performance.now() - started < 12_000, 'ended at the reload, not when the process did (15 s)');
  const audit = readFileSync(join(h.dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.true(audit.some((l) => l['rpc'] === 'ReadOutput' && l['decision'] === 'deny' && l['identity'] === `unix:uid=${U}` && /since the policy was reloaded/.test(String(l['message']))));
});

test('a policy whose tenants may run as the same uid loads with a policy_warning naming them', async (t) => {
  const dir = tempDir('pidfd-agent-policy-');
  const file = join(dir, 'policy.yaml');
  const tenant = (name: string, user: string) => `  - name: ${name}\n    identities: ["spiffe://example.org/${name}"]\n    role: tenant\n    spawn: { run_as: ["${user}"], executables: ["/bin/*"] }\n`;
  writeFileSync(file, `rules:\n${tenant('tenant-a', 'nobody')}${tenant('tenant-b', 'nobody')}`);
  const h = await startHarness({ policyFile: file });
  t.teardown(() => h.close());
  t.like(h.logs.find((l) => l.event === 'policy_warning')?.fields, { rules: ['tenant-a', 'tenant-b'], uid: '65534' });
  replaceFile(file, `rules:\n${tenant('tenant-a', '10001')}${tenant('tenant-b', '10002')}`);
  const warned = h.logs.filter((l) => l.event === 'policy_warning').length;
  t.true(h.agent.reloadPolicy());
  t.is(h.logs.filter((l) => l.event === 'policy_warning').length, warned, 'distinct uids: no warning');
});

test('a reload that takes away read ends a Watch that only sends usage samples', async (t) => {
  const U = 1006;
  const dir = tempDir('pidfd-agent-policy-');
  const file = join(dir, 'policy.yaml');
  const rules = (allow: string) => `rules:\n  - identities: ["unix:uid=0"]\n    role: admin\n  - identities: ["unix:uid=${U}"]\n    role: tenant\n    allow: [${allow}]\n    spawn: {run_as: ["${U}"], executables: ["/usr/bin/*", "/bin/*"]}\n`;
  writeFileSync(file, rules('spawn, read, signal'));
  const h = await startHarness({ policyFile: file });
  t.teardown(() => h.close());
  shareSocket(h);
  const spawned = await oneAs(U, h.address, { op: 'spawn', req: { argv: ['/bin/sleep', '30'], user: String(U) } });
  const handle: string = spawned.ok.process.handle;
  t.teardown(() => h.client.stop({ handle, signal: 'KILL' }).catch(() => undefined));
  const watching = oneAs(U, h.address, { op: 'watch', req: { handles: [handle], usageInterval: { seconds: 1, nanos: 0 } }, ms: 15_000 });
  await eventually('the Watch to be open', () => h.agent.watchers.stats().length === 1, 20_000);
  writeFileSync(file, rules('spawn, signal'));
  t.true(h.agent.reloadPolicy());
  const outcome = await watching;
  t.like(outcome.error, { code: status.PERMISSION_DENIED, reason: 'POLICY_DENIED', info: { field: 'rpc' } }, 'ended at its next sample, not at the end of the window');
});

test("max_readers holds a tenant's ReadOutput streams, freed as each ends; a tenant rule without limits gets 64 of each", async (t) => {
  const U = 1006;
  const dir = tempDir('pidfd-agent-policy-');
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, `rules:
  - identities: ["unix:uid=0"]
    role: admin
  - identities: ["unix:uid=${U}"]
    role: tenant
    max_readers: 1
    spawn: {run_as: ["${U}"], executables: ["/usr/bin/*", "/bin/*"]}
  - identities: ["unix:uid=${U + 1}"]
    role: tenant
`);
  const h = await startHarness({ policyFile: file });
  t.teardown(() => h.close());
  shareSocket(h);
  const spawned = await oneAs(U, h.address, { op: 'spawn', req: { argv: ['/bin/sh', '-c', 'echo hi; exec sleep 30'], user: String(U), stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } } });
  const handle: string = spawned.ok.process.handle;
  t.teardown(() => h.client.stop({ handle, signal: 'KILL' }).catch(() => undefined));
  const req = { handle, stream: OutputStream.OUTPUT_STREAM_STDOUT };
  const following = oneAs(U, h.address, { op: 'readOutput', req: { ...req, follow: true } });
  await eventually('the stream to be open', () => h.agent.readers.stats().length === 1, 20_000);
  const refused = await oneAs(U, h.address, { op: 'readOutput', req });
  t.like(refused.error, { code: status.RESOURCE_EXHAUSTED, reason: 'POLICY_QUOTA', info: { field: 'max_readers' } });
  await h.client.stop({ handle, signal: 'KILL' });
  t.deepEqual((await following).ok.map((r: { data: string }) => r.data).join(''), 'hi\n');
  const again = await oneAs(U, h.address, { op: 'readOutput', req });
  t.deepEqual(again.ok.map((r: { data: string }) => r.data).join(''), 'hi\n', 'the ended stream gave its slot back');
  const [admin, , silent] = parsePolicy(readFileSync(file, 'utf8')).rules;
  t.like(silent, { maxWatches: 64, maxReaders: 64 });
  t.like(admin, { maxWatches: undefined, maxReaders: undefined });
});

test('SIGHUPs while the agent starts are remembered, not fatal: it serves, then reloads the policy once', async (t) => {
  const dir = tempDir('pidfd-agent-policy-');
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, 'rules:\n  - identities: ["unix:uid=0"]\n    role: admin\n');
  const socket = join(dir, 'agent.sock');
  const child = spawn(process.execPath, [AGENT_BIN, '--listen', `unix://${socket}`, '--ephemeral', '--policy', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  // From the first line it logs (its handlers are in place by then) until it serves.
  await eventually('the first log line', () => stderr.includes('"event":"telemetry"'), 20_000);
  // One at once: under load the test may see the first line only with "serving" behind it, and an
  // interval's first tick would then come after the check below had ended it.
  child.kill('SIGHUP');
  const hups = setInterval(() => child.kill('SIGHUP'), 5);
  try {
    await eventually('the agent to serve, or die', () => stderr.includes('"event":"serving"') || child.exitCode !== null || child.signalCode !== null, 20_000);
  } finally {
    clearInterval(hups);
  }
  t.is(child.signalCode, null, stderr);
  t.regex(stderr, /"event":"serving"/);
  await eventually('the pending reload applied', () => /"event":"policy_loaded".*"why":"sighup"/.test(stderr));
});
