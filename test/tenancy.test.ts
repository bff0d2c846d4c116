// Tenancy under a policy: tenants are real client processes running as other uids, on the real
// socket; what one tenant does to another's handle must look exactly like a handle that never was.
import test from 'ava';
import { chmodSync, existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EnvMode, OutputMode, OutputStream, State, StdinMode, status } from '../clients/ts/src/index.js';
import { eventually, startHarness, tempDir, type Harness } from './helpers/harness.js';
import { asUser, oneAs, shareSocket, type Outcome } from './helpers/tenant.js';

const A = 1001;
const B = 1002;
const NEVER = 'aaaaaaaaaaaaaaaaaaaaaaaaaa';

const policyDir = tempDir('pidfd-agent-policy-');
const outDir = join(policyDir, 'out');
const policyFile = join(policyDir, 'policy.yaml');
/** Only root may look in here; it holds an executable `probe`. */
const secretDir = tempDir('pidfd-agent-secret-');
writeFileSync(join(secretDir, 'probe'), '#!/bin/sh\n', { mode: 0o755 });
/** Tenant A's working directories, which its processes may write (as a jobs dir is). */
const jobsDir = tempDir('pidfd-agent-jobs-');
chmodSync(jobsDir, 0o777);
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
      executables: ["/usr/bin/*", "/bin/*", "${jobsDir}/*"]
      output_dirs: ["${outDir}"]
      cwd_dirs: ["${jobsDir}"]
      max_processes: 3
  - name: tenant-b
    identities: ["unix:uid=${B}"]
    role: tenant
    spawn:
      run_as: ["${B}"]
      executables: ["/usr/bin/*", "/bin/*"]
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

const auditLines = () =>
  readFileSync(join(h.dir, 'audit.log'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** The error with the handle it names replaced, to compare two errors' shapes. */
const shape = (o: Outcome, handle: string) => {
  if (o.error === undefined) return { ok: o.ok };
  const { code, reason, info, details } = o.error;
  return { code, reason, info: { ...info, handle: info['handle'] === handle ? 'H' : info['handle'] }, details: details.replaceAll(handle, 'H') };
};

test.serial("another tenant's handle answers NOT_FOUND exactly as a handle that never existed, and nothing reaches the process", async (t) => {
  const [spawned] = await asUser(A, h.address, [{ op: 'spawn', req: { argv: ['cat'], user: String(A), stdin: StdinMode.STDIN_MODE_PIPE, stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } } }]);
  const p = spawned!.ok.process;
  t.is(p.owner, `unix:uid=${A}`);
  const handle: string = p.handle;
  const probes = (hd: string) => [
    { op: 'get', req: { handle: hd } },
    { op: 'signal', req: { handle: hd, signal: 'KILL' } },
    { op: 'stop', req: { handle: hd, signal: 'KILL' } },
    { op: 'wait', req: { handle: hd } },
    { op: 'listThreads', req: { handle: hd } },
    { op: 'readOutput', req: { handle: hd, stream: OutputStream.OUTPUT_STREAM_STDOUT } },
    { op: 'writeStdin', req: { handle: hd }, text: 'intruder\n' },
    { op: 'closeStdin', req: { handle: hd } },
    { op: 'release', req: { handle: hd } },
  ];
  const onTheirs = await asUser(B, h.address, probes(handle));
  const onNone = await asUser(B, h.address, probes(NEVER));
  for (const [i, o] of onTheirs.entries()) {
    t.is(o.error?.code, status.NOT_FOUND, `${probes(handle)[i]!.op}: NOT_FOUND`);
    t.is(o.error?.reason, 'UNKNOWN_HANDLE');
    t.deepEqual(shape(o, handle), shape(onNone[i]!, NEVER), `${probes(handle)[i]!.op}: the same answer as for a handle that never existed`);
  }
  const { process: still } = await h.client.get({ handle });
  t.is(still!.state, State.STATE_RUNNING, "A's process is untouched");
  const own = await asUser(A, h.address, [
    { op: 'writeStdin', req: { handle }, text: 'mine\n' },
    { op: 'closeStdin', req: { handle } },
    { op: 'wait', req: { handle } },
    { op: 'readOutput', req: { handle, stream: OutputStream.OUTPUT_STREAM_STDOUT } },
  ]);
  t.is(own[2]!.ok.process.exit.code, 0);
  t.is(own[3]!.ok.map((r: { data: string }) => r.data).join(''), 'mine\n', "not one byte of B's reached A's stdin");
  const denied = auditLines().filter((l) => l['identity'] === `unix:uid=${B}` && l['handle'] === handle);
  t.is(denied.length, probes(handle).length, 'each refusal is audited');
  t.like(denied[0], { decision: 'deny', reason: 'UNKNOWN_HANDLE', rule: 'tenant-b', rpc: 'Get' });
});

test.serial("a tenant's List and Watch show none of another tenant's processes", async (t) => {
  const [a] = await asUser(A, h.address, [{ op: 'spawn', req: { argv: ['sleep', '30'], user: String(A), labels: { who: 'a' } } }]);
  const [b] = await asUser(B, h.address, [{ op: 'spawn', req: { argv: ['sleep', '30'], user: String(B), labels: { who: 'b' } } }]);
  t.teardown(() => Promise.all([a, b].map((o) => h.client.stop({ handle: o!.ok.process.handle, signal: 'KILL' }).catch(() => undefined))));
  const [list, watch, filtered] = await asUser(B, h.address, [
    { op: 'list' },
    { op: 'watch', req: { afterSequence: 0 }, ms: 500 },
    { op: 'watch', req: { afterSequence: 0, handles: [a!.ok.process.handle] }, ms: 300 },
  ]);
  const owners = (ps: { owner: string }[]) => [...new Set(ps.map((p) => p.owner))];
  t.deepEqual(owners(list!.ok.processes), [`unix:uid=${B}`]);
  t.deepEqual(owners(watch!.ok.map((e: { process: { owner: string } }) => e.process)), [`unix:uid=${B}`]);
  t.deepEqual(filtered!.ok, [], "asking for A's handle by name shows nothing either");
  const { processes } = await h.client.list();
  t.true(processes.some((p) => p.owner === `unix:uid=${A}`), 'an admin sees everyone');
});

test("a tenant's cwd outside cwd_dirs is refused before the agent looks: existing, missing and non-directories alike", async (t) => {
  // The agent checks cwd as root: answered from the file system, the three would differ (a
  // spawn, NOT_FOUND, ENOTDIR) and tell the tenant what exists where it cannot look.
  const cwds = [secretDir, join(secretDir, 'missing'), join(secretDir, 'probe')];
  const outcomes = await asUser(A, h.address, cwds.map((cwd) => ({ op: 'spawn', req: { argv: ['true'], user: String(A), cwd } })));
  for (const [i, o] of outcomes.entries()) {
    t.like(o.error, { code: status.PERMISSION_DENIED, reason: 'POLICY_DENIED', info: { field: 'cwd' } }, cwds[i]);
    t.is(o.error?.details, `cwd: ${cwds[i]} is not an allowed working directory (policy)`);
  }
});

test.serial("a link a tenant put in its cwd_dirs leads the agent nowhere it cannot look: the cwd is entered as the tenant's user, missing or not", async (t) => {
  const link = join(jobsDir, 'link');
  const [ln] = await asUser(A, h.address, [{ op: 'spawn', req: { argv: ['ln', '-s', secretDir, link], user: String(A), cwd: jobsDir } }]);
  t.truthy(ln!.ok, JSON.stringify(ln));
  await eventually('the link', () => existsSync(link) || lstatSync(link, { throwIfNoEntry: false })?.isSymbolicLink());
  // Stat'd by the agent as root, the three differed (the helper's EACCES, NOT_FOUND, ENOTDIR).
  const cwds = [link, join(link, 'missing'), join(link, 'probe')];
  const outcomes = await asUser(A, h.address, cwds.map((cwd) => ({ op: 'spawn', req: { argv: ['true'], user: String(A), cwd } })));
  for (const [i, o] of outcomes.entries()) {
    t.like(o.error, { code: status.PERMISSION_DENIED, reason: 'EACCES', info: { field: 'cwd', path: cwds[i] } }, cwds[i]);
    t.is(o.error?.details.replace(cwds[i]!, 'CWD'), outcomes[0]!.error?.details.replace(cwds[0]!, 'CWD'));
  }
});

test.serial("a link a tenant put in a directory its executables allow leads the agent nowhere it cannot look: argv[0] is exec'd as the tenant's user only", async (t) => {
  const link = join(jobsDir, 'exec-link');
  const [ln] = await asUser(A, h.address, [{ op: 'spawn', req: { argv: ['ln', '-s', secretDir, link], user: String(A), cwd: jobsDir } }]);
  t.truthy(ln!.ok, JSON.stringify(ln));
  await eventually('the link', () => lstatSync(link, { throwIfNoEntry: false })?.isSymbolicLink());
  // Stat'd by the agent as root first, these differed: NOT_FOUND ENOENT, the helper's EACCES, a
  // second EACCES text (a file, not executable) and NOT_FOUND ENOTDIR.
  writeFileSync(join(secretDir, 'data'), 'x', { mode: 0o600 });
  const paths = [join(link, 'missing'), join(link, 'probe'), join(link, 'data'), join(link, 'probe', 'x')];
  const spawns = [
    ...paths.map((p) => ({ argv: [p], user: String(A) })),
    { argv: ['exec-link/missing'], user: String(A), cwd: jobsDir },
  ];
  const outcomes = await asUser(A, h.address, spawns.map((req) => ({ op: 'spawn', req })));
  const expected = [...paths, join(jobsDir, 'exec-link/missing')];
  for (const [i, o] of outcomes.entries()) {
    t.like(o.error, { code: status.PERMISSION_DENIED, reason: 'EACCES', info: { field: 'argv[0]', path: expected[i] } }, expected[i]);
    t.is(o.error?.details.replace(expected[i]!, 'P'), 'argv[0]: P: EACCES (as the target user)', expected[i]);
  }
  // Where the tenant's user may look, the helper's execve says what is wrong, as clearly.
  const [missing] = await asUser(A, h.address, [{ op: 'spawn', req: { argv: [join(jobsDir, 'no-such-job')], user: String(A) } }]);
  t.like(missing!.error, { code: status.NOT_FOUND, reason: 'ENOENT', info: { field: 'argv[0]' } });
  t.is(missing!.error?.details, `argv[0]: ${join(jobsDir, 'no-such-job')}: ENOENT (as the target user)`);
});

/** What a finished process wrote to stdout (read by the admin), and its exit code. */
async function outputOf(handle: string): Promise<{ out: string; code: number | undefined }> {
  const exited = await h.client.wait({ handle });
  const chunks: Uint8Array[] = [];
  for await (const r of h.client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) chunks.push(r.data);
  return { out: Buffer.concat(chunks).toString(), code: exited.process?.exit?.code };
}

/** Links tenant A's user makes in its jobs directory (as a job would), there once the spawn ends. */
async function tenantLinks(t: { truthy(v: unknown, m?: string): void }, links: Readonly<Record<string, string>>): Promise<void> {
  const script = Object.entries(links).map(([name, to]) => `ln -s '${to}' '${join(jobsDir, name)}'`).join(' && ');
  const [ln] = await asUser(A, h.address, [{ op: 'spawn', req: { argv: ['sh', '-c', script], user: String(A), cwd: jobsDir } }]);
  t.truthy(ln!.ok, JSON.stringify(ln));
  await h.client.wait({ handle: ln!.ok.process.handle });
  for (const name of Object.keys(links)) await eventually(name, () => lstatSync(join(jobsDir, name), { throwIfNoEntry: false })?.isSymbolicLink() === true);
}

test.serial("argv[0] without a slash is searched in PATH as the tenant's user: a link it put in a directory its executables allow tells nothing of where that user cannot look", async (t) => {
  writeFileSync(join(secretDir, 'data'), 'x', { mode: 0o600 });
  await tenantLinks(t, { 'bare-probe': join(secretDir, 'probe'), 'bare-missing': join(secretDir, 'missing'), 'bare-data': join(secretDir, 'data') });
  const PATH = `${jobsDir}:/usr/bin:/bin`;
  // Looked up by the agent as root, these differed: bare-missing was NOT_FOUND, the other two
  // the helper's EACCES (root may look in the secret directory, the tenant's user may not).
  const names = ['bare-probe', 'bare-missing', 'bare-data'];
  const outcomes = await asUser(A, h.address, names.map((name) => ({ op: 'spawn', req: { argv: [name], user: String(A), env: { PATH } } })));
  for (const [i, o] of outcomes.entries()) {
    const path = join(jobsDir, names[i]!);
    t.like(o.error, { code: status.PERMISSION_DENIED, reason: 'EACCES', info: { field: 'argv[0]', path } }, names[i]);
    t.is(o.error?.details.replace(path, 'P'), 'argv[0]: P: EACCES (as the target user)', names[i]);
  }
  // A name in no allowed directory is not found, as that user; one in a directory the rule does
  // not allow (the secret one, first in PATH) is not looked at, exactly as a missing one.
  const [missing, elsewhere] = await asUser(A, h.address, [
    { op: 'spawn', req: { argv: ['no-such-program'], user: String(A), env: { PATH } } },
    { op: 'spawn', req: { argv: ['probe'], user: String(A), env: { PATH: `${secretDir}:${PATH}` } } },
  ]);
  t.like(missing!.error, { code: status.NOT_FOUND, reason: 'ENOENT', info: { field: 'argv[0]', path: 'no-such-program' } });
  t.is(missing!.error?.details, `argv[0]: no-such-program: ENOENT (not found in PATH ${PATH}, as the target user)`);
  t.like(elsewhere!.error, { code: status.NOT_FOUND, reason: 'ENOENT', info: { field: 'argv[0]', path: 'probe' } });
  t.is(elsewhere!.error?.details, `argv[0]: probe: ENOENT (not found in PATH ${PATH}, as the target user)`);
});

test.serial("a program found in PATH runs as the tenant's user, and a link that user cannot follow hides no later directory's program (as execvp)", async (t) => {
  writeFileSync(join(jobsDir, 'bare-job'), '#!/bin/sh\nid -u\n', { mode: 0o755 });
  await tenantLinks(t, { id: join(secretDir, 'probe') });
  const capture = { mode: OutputMode.OUTPUT_MODE_CAPTURE };
  const PATH = `${jobsDir}:/usr/bin:/bin`;
  // The audit names the file that ran, which only the helper's search knew.
  for (const [argv, ran] of [[['bare-job'], join(jobsDir, 'bare-job')], [['id', '-u'], '/usr/bin/id']] as const) {
    const [o] = await asUser(A, h.address, [{ op: 'spawn', req: { argv, user: String(A), env: { PATH }, stdout: capture } }]);
    t.truthy(o!.ok, `${argv[0]}: ${JSON.stringify(o)}`);
    const { handle } = o!.ok.process as { handle: string };
    t.deepEqual(await outputOf(handle), { out: `${A}\n`, code: 0 }, argv[0]);
    t.like(auditLines().find((l) => l['rpc'] === 'Spawn' && l['handle'] === handle), { argv0: argv[0], executable: ran, result: 'ok' });
  }
});

test.serial('a spawn outside the rule is POLICY_DENIED naming the field, and audited', async (t) => {
  const spawn = (req: Record<string, unknown>) => ({ op: 'spawn', req: { argv: ['true'], user: String(A), ...req } });
  const outcomes = await asUser(A, h.address, [
    spawn({ user: 'root' }),
    spawn({ user: '' }),
    spawn({ user: '4294967294' }), // (4294967295 is malformed for anyone: INVALID_ARGUMENT before the policy, test/spawn-hardening)
    spawn({ argv: ['/usr/sbin/nologin'] }),
    spawn({ argv: ['nologin'], env: { PATH: '/usr/sbin' } }),
    spawn({ argv: ['probe'], env: { PATH: secretDir } }),
    spawn({ argv: ['absent'], env: { PATH: secretDir } }),
    spawn({ env: { LD_PRELOAD: '/tmp/x.so' } }),
    spawn({ env: { GLIBC_TUNABLES: 'x' } }),
    spawn({ envMode: EnvMode.ENV_MODE_INHERIT }),
    spawn({ stdout: { mode: OutputMode.OUTPUT_MODE_FILE, path: '/etc/passwd' } }),
    spawn({ stdout: { mode: OutputMode.OUTPUT_MODE_FILE, path: `${outDir}/../escape` } }),
    spawn({ stdout: { mode: OutputMode.OUTPUT_MODE_INHERIT } }),
    spawn({ group: 'root' }),
    spawn({ cgroup: { create: true } }),
    spawn({ rlimits: [{ resource: 'NOFILE', soft: 10 }] }),
    { op: 'adopt', req: { pid: process.pid } },
  ]);
  const fields = ['run_as', 'run_as', 'run_as', 'executable', 'executable', 'executable', 'executable', 'env', 'env', 'env_mode', 'stdout.path', 'stdout.path', 'stdout', 'group', 'cgroup.create', 'rlimits', 'rpc'];
  for (const [i, o] of outcomes.entries()) {
    t.is(o.error?.code, status.PERMISSION_DENIED, `call ${i}: ${JSON.stringify(o)}`);
    t.is(o.error?.reason, 'POLICY_DENIED');
    t.is(o.error?.info['field'], fields[i], `call ${i}`);
  }
  t.is(outcomes[5]!.error?.details.replace('probe', 'X'), outcomes[6]!.error?.details.replace('absent', 'X'), 'where a tenant may not look, what exists is not told');
  const lines = auditLines().filter((l) => l['identity'] === `unix:uid=${A}` && l['decision'] === 'deny' && l['reason'] === 'POLICY_DENIED');
  t.true(lines.length >= outcomes.length);
  t.like(lines.find((l) => l['field'] === 'executable'), { rpc: 'Spawn', argv0: '/usr/sbin/nologin', rule: 'tenant-a' });
  t.like(lines.find((l) => l['rpc'] === 'Adopt'), { pid: process.pid, field: 'rpc', rule: 'tenant-a' });
  for (const l of lines) for (const k of ['time', 'identity', 'peer', 'rpc', 'decision', 'rule']) t.true(k in l, `${k} in ${JSON.stringify(l)}`);
});

test.serial('past max_processes a spawn is RESOURCE_EXHAUSTED; an exit makes room again', async (t) => {
  const sleep = { op: 'spawn', req: { argv: ['sleep', '30'], user: String(A) } };
  const outcomes = await asUser(A, h.address, [sleep, sleep, sleep, sleep]);
  const started = outcomes.filter((o) => o.ok).map((o) => o.ok.process.handle as string);
  t.teardown(() => Promise.all(started.map((handle) => h.client.stop({ handle, signal: 'KILL' }).catch(() => undefined))));
  t.is(started.length, 3);
  t.like(outcomes[3]!.error, { code: status.RESOURCE_EXHAUSTED, reason: 'POLICY_QUOTA', info: { field: 'max_processes' } });
  await h.client.stop({ handle: started.pop()!, signal: 'KILL' });
  const [again] = await asUser(A, h.address, [sleep]);
  t.truthy(again!.ok, JSON.stringify(again));
  started.push(again!.ok.process.handle);
});

test.serial('a released process that still runs counts against max_processes until it exits: Release after each Spawn starts no more', async (t) => {
  const sleep = { op: 'spawn', req: { argv: ['sleep', '30'], user: String(A) } };
  const spawned = await asUser(A, h.address, [sleep, sleep, sleep]);
  const pids = spawned.map((o) => o.ok?.process.pid as number);
  t.teardown(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited already
      }
    }
  });
  const released = await asUser(A, h.address, spawned.map((o) => ({ op: 'release', req: { handle: o.ok.process.handle } })));
  t.true(released.every((o) => o.ok), JSON.stringify(released));
  const [past] = await asUser(A, h.address, [sleep]);
  if (past!.ok) pids.push(past!.ok.process.pid);
  t.like(past!.error, { code: status.RESOURCE_EXHAUSTED, reason: 'POLICY_QUOTA', info: { field: 'max_processes' } });
  // The tenant's List shows none of them, and it can end none: the refusal says what fills it.
  t.is(past!.error?.details, 'max_processes: at most 3 running processes at once; 3 of them are released and still running (policy)');
  // The agent reaps the released child it still watches: its place is free again.
  process.kill(pids.shift()!, 'SIGKILL');
  const again = await eventually('a place once a released process exited', async () => {
    const [o] = await asUser(A, h.address, [sleep]);
    return o!.ok ?? (o!.error?.reason === 'POLICY_QUOTA' ? undefined : o);
  });
  t.truthy(again.process, JSON.stringify(again));
  await h.client.stop({ handle: again.process.handle, signal: 'KILL' });
});

test.serial('max_processes spawns made at once all start (a spawn still finishing is counted once)', async (t) => {
  const sleep = { op: 'spawn', req: { argv: ['sleep', '30'], user: String(A) } };
  const rounds = [1, 2, 3, ...Array<number>(27).fill(2)].flatMap((inFlight) => [{ op: 'together', calls: [sleep, sleep, sleep], inFlight }, { op: 'stopStarted' }]);
  const outcomes = await asUser(A, h.address, rounds);
  const spawns = outcomes.filter((_, i) => i % 2 === 0).flatMap((o) => o.ok as Outcome[]);
  t.is(spawns.length, 90);
  t.deepEqual(
    spawns.filter((o) => o.error).map((o) => o.error),
    [],
  );
  t.true(outcomes.every((o) => o.ok), 'every round was stopped');
});

test.serial('an audit line per mutating call: who, from where, what, which rule, and how it ended', async (t) => {
  const [spawned, signalled] = await asUser(B, h.address, [
    { op: 'spawn', req: { argv: ['sleep', '30'], user: String(B) } },
    { op: 'signal', req: { handle: '$', signal: 'TERM' } },
  ]);
  const handle = spawned!.ok.process.handle;
  t.is(signalled!.error?.reason, 'UNKNOWN_HANDLE', 'a handle that never existed: an allowed call that failed');
  await oneAs(B, h.address, { op: 'signal', req: { handle, signal: 'KILL' } });
  const lines = auditLines().filter((l) => l['identity'] === `unix:uid=${B}`);
  t.like(lines.find((l) => l['rpc'] === 'Spawn' && l['handle'] === handle), { decision: 'allow', rule: 'tenant-b', argv0: 'sleep', executable: '/usr/bin/sleep', result: 'ok', pid: spawned!.ok.process.pid });
  t.like(lines.find((l) => l['rpc'] === 'Signal' && l['handle'] === handle), { decision: 'allow', rule: 'tenant-b', result: 'ok' });
  t.like(lines.find((l) => l['rpc'] === 'Signal' && l['handle'] === '$'), { decision: 'allow', result: 'UNKNOWN_HANDLE' });
  t.regex(String(lines[0]!['peer']), new RegExp(`^unix:uid=${B},gid=${B},pid=\\d+$`));
  t.false(lines.some((l) => (l['rpc'] === 'Get' || l['rpc'] === 'List') && l['decision'] === 'allow'), 'reads that were allowed are not audited');
});

test.serial("request ids are the caller's own: the same key from another tenant starts its own process", async (t) => {
  const [a] = await asUser(A, h.address, [{ op: 'spawn', req: { argv: ['sleep', '30'], user: String(A), requestId: 'shared-key' } }]);
  const [b] = await asUser(B, h.address, [{ op: 'spawn', req: { argv: ['sleep', '31'], user: String(B), requestId: 'shared-key' } }]);
  t.teardown(() => Promise.all([a, b].map((o) => o?.ok && h.client.stop({ handle: o.ok.process.handle, signal: 'KILL' }).catch(() => undefined))));
  t.false(b!.ok.replayed);
  t.not(b!.ok.process.handle, a!.ok.process.handle);
  t.is(b!.ok.process.owner, `unix:uid=${B}`);
});

test("a tenant does not see an admin's processes", async (t) => {
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  t.teardown(() => h.client.stop({ handle: p!.handle, signal: 'KILL' }).catch(() => undefined));
  t.is(p!.owner, 'unix:uid=0');
  const o = await oneAs(B, h.address, { op: 'get', req: { handle: p!.handle } });
  t.is(o.error?.code, status.NOT_FOUND);
});
