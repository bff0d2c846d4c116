// The policy as pure logic: parsing and validation, rule matching, spawn constraints, quotas.
import test from 'ava';
import { parsePolicy, parseRate, PolicyError, ROOT_ONLY, ruleFor, type SpawnRule } from '../src/auth/policy.js';
import { executableDenial, spawnDenial, type Names, type SpawnFacts } from '../src/auth/spawn-policy.js';
import { Quotas } from '../src/auth/quotas.js';
import { sharedUsers } from '../src/auth/shared-users.js';
import { cachedNames } from '../src/auth/authorize.js';
import { ownerIdentity } from '../src/process/lifecycle/owner.js';

const names: Names = {
  uid: (n) => ({ root: 0, nobody: 65534, ci: 1500 })[n],
  gid: (n) => ({ root: 0, nogroup: 65534 })[n],
};

const POLICY = `
rules:
  - identities: ["spiffe://example.org/tenant-a", "unix:group=ci"]
    role: tenant
    spawn:
      run_as: ["nobody", "1000"]
      executables: ["/usr/bin/*", "/bin/*"]
      max_processes: 100
  - name: ops
    identities: ["spiffe://example.org/ops/*"]
    role: admin
  - identities: ["unix:uid=1200"]
    role: tenant
    allow: [read, signal]
`;

const caller = (identity: string, aliases: string[] = []) => ({ identity, aliases });

test('the minimal shape parses; omitted permissions are all but adopt for a tenant and all for an admin', (t) => {
  const p = parsePolicy(POLICY);
  t.is(p.rules.length, 3);
  const [a, ops, reader] = p.rules;
  t.is(a!.name, 'rules[0]');
  t.deepEqual([...a!.allow].sort(), ['output', 'read', 'release', 'signal', 'spawn', 'stdin']);
  t.true(ops!.allow.has('adopt'));
  t.deepEqual([...reader!.allow].sort(), ['read', 'signal']);
  t.is(a!.spawn.maxProcesses, 100);
  t.deepEqual(reader!.spawn.executables, [], 'a tenant may run nothing it was not given');
  t.deepEqual(ops!.spawn.executables, ['*'], 'an admin without constraints is unconstrained');
});

test('rules match exactly, by a trailing * as a prefix, and through aliases; the first match decides', (t) => {
  const p = parsePolicy(POLICY);
  t.is(ruleFor(p, caller('spiffe://example.org/tenant-a'))?.name, 'rules[0]');
  t.is(ruleFor(p, caller('spiffe://example.org/tenant-ab')), undefined, 'no prefix without a *');
  t.is(ruleFor(p, caller('spiffe://example.org/ops/alice'))?.name, 'ops');
  t.is(ruleFor(p, caller('unix:uid=1500', ['unix:group=ci', 'unix:gid=1500']))?.name, 'rules[0]');
  t.is(ruleFor(p, caller('unix:uid=1200', ['unix:group=ci']))?.name, 'rules[0]', 'file order, not the most specific');
  t.is(ruleFor(p, caller('anonymous')), undefined);
  t.is(ruleFor(ROOT_ONLY, caller('unix:uid=0'))?.role, 'admin');
  t.is(ruleFor(ROOT_ONLY, caller('unix:uid=1')), undefined);
});

test('a broken or ambiguous policy is refused with the place of the mistake', (t) => {
  const bad: [string, RegExp][] = [
    ['rules: [', /not valid YAML/],
    ['rules: {}', /rules: expected a list/],
    ['rulez: []', /unknown key "rulez"/],
    ['rules:\n  - identities: [a]\n    role: boss', /rules\[0\]\.role: expected tenant or admin/],
    ['rules:\n  - identities: []\n    role: tenant', /rules\[0\]\.identities: at least one/],
    ['rules:\n  - identities: [a]\n    role: tenant\n    allow: [adopt]', /adopt is for role admin only/],
    ['rules:\n  - identities: [a]\n    role: tenant\n    allow: [fly]', /unknown permission "fly"/],
    ['rules:\n  - identities: [a]\n    role: tenant\n    spawn: {executable: ["/bin/*"]}', /rules\[0\]\.spawn: unknown key "executable"/],
    ['rules:\n  - identities: [a]\n    role: tenant\n    spawn: {max_processes: -1}', /max_processes: expected an integer/],
    ['rules:\n  - identities: [a]\n    role: tenant\n    spawn: {spawn_rate: fast}', /spawn_rate: expected N\/s/],
    ['rules:\n  - identities: [a]\n    role: tenant\n    spawn: {output_dirs: [tmp]}', /not an absolute path/],
    ['rules:\n  - identities: [a]\n    role: tenant\n    spawn: {rlimits: {WINGS: 1}}', /rlimits\.WINGS: unknown resource/],
    ['rules:\n  - identities: [a]\n    role: tenant\n  - identities: [b]\n    role: tenant\n    role: admin', /not valid YAML/],
  ];
  for (const [text, message] of bad) t.throws(() => parsePolicy(text), { instanceOf: PolicyError, message }, text);
  t.deepEqual(parsePolicy('rules: []').rules, [], 'no rules: nobody may do anything');
});

test('rates read as N per second, minute or hour', (t) => {
  t.deepEqual(parseRate('x', '10/s'), { count: 10, perMs: 1000 });
  t.deepEqual(parseRate('x', '100 / m'), { count: 100, perMs: 60_000 });
  t.throws(() => parseRate('x', '0/s'), { instanceOf: PolicyError });
});

const tenant = (spawn: string): SpawnRule => parsePolicy(`rules:\n  - identities: [a]\n    role: tenant\n    spawn: ${spawn}`).rules[0]!.spawn;

const facts = (f: Partial<SpawnFacts> = {}): SpawnFacts => ({ uid: 65534, gids: [], env: [], envInherit: false, cwd: undefined, stdout: { kind: 'discard' }, stderr: { kind: 'discard' }, cgroup: undefined, rlimits: [], newSession: true, ...f });

test('run_as compares resolved uids; (uid_t)-1 and unknown users are refused; groups are checked too', (t) => {
  const rule = tenant('{run_as: [nobody, "1000"], groups: [nogroup]}');
  t.is(spawnDenial(rule, facts({ uid: 65534 }), names), undefined, 'by name');
  t.is(spawnDenial(rule, facts({ uid: 1000 }), names), undefined, 'by number');
  t.is(spawnDenial(rule, facts({ uid: 0 }), names)?.field, 'run_as');
  t.is(spawnDenial(rule, facts({ uid: undefined }), names)?.field, 'run_as');
  t.is(spawnDenial(rule, facts({ gids: [65534] }), names), undefined);
  t.is(spawnDenial(rule, facts({ gids: [65534, 0] }), names)?.field, 'group');
  const any = tenant('{run_as: ["*"], groups: ["*"]}');
  t.is(spawnDenial(any, facts({ uid: 4294967295 }), names)?.field, 'run_as', '(uid_t)-1 even for *');
  t.is(spawnDenial(any, facts({ gids: [4294967295] }), names)?.field, 'group');
  t.is(spawnDenial(any, facts({ uid: undefined }), names), undefined, 'an unknown name is left to the spawn to report');
});

test('executables match the normalized absolute path', (t) => {
  const rule = tenant('{executables: ["/usr/bin/*", /opt/tool]}');
  t.is(executableDenial(rule, '/usr/bin/sleep'), undefined);
  t.is(executableDenial(rule, '/opt/tool'), undefined);
  t.is(executableDenial(rule, '/opt/tool2')?.field, 'executable');
  t.is(executableDenial(rule, '/usr/bin/../../tmp/evil')?.field, 'executable');
});

test('loader and glibc variables are refused unless allowed; inheriting the agent env needs env_inherit', (t) => {
  const rule = tenant('{run_as: [nobody], env_allow: [LD_LIBRARY_PATH]}');
  for (const name of ['LD_PRELOAD', 'LD_AUDIT', 'GCONV_PATH', 'GLIBC_TUNABLES', 'LOCPATH', 'MALLOC_TRACE']) t.is(spawnDenial(rule, facts({ env: ['HOME', name] }), names)?.field, 'env', name);
  t.is(spawnDenial(rule, facts({ env: ['LD_LIBRARY_PATH', 'PATH', 'LANG'] }), names), undefined);
  t.is(spawnDenial(rule, facts({ envInherit: true }), names)?.field, 'env_mode');
  t.is(spawnDenial(tenant('{run_as: [nobody], env_inherit: true}'), facts({ envInherit: true }), names), undefined);
});

test('output files only under output_dirs, never the agent own output unless allowed', (t) => {
  const rule = tenant('{run_as: [nobody], output_dirs: [/var/log/jobs]}');
  const file = (path: string) => facts({ stdout: { kind: 'file', path, append: false } });
  t.is(spawnDenial(rule, file('/var/log/jobs/a.log'), names), undefined);
  t.is(spawnDenial(rule, file('/var/log/jobs/../secret'), names)?.field, 'stdout.path');
  t.is(spawnDenial(rule, file('/var/log/jobsX/a'), names)?.field, 'stdout.path');
  t.is(spawnDenial(rule, facts({ stderr: { kind: 'inherit' } }), names)?.field, 'stderr');
  t.is(spawnDenial(rule, facts({ stderr: { kind: 'capture' } }), names), undefined);
});

test('a working directory only at or under cwd_dirs, decided on the path alone', (t) => {
  const rule = tenant('{run_as: [nobody], cwd_dirs: [/srv/jobs/]}');
  const at = (cwd: string) => spawnDenial(rule, facts({ cwd }), names)?.field;
  t.is(at('/srv/jobs'), undefined);
  t.is(at('/srv/jobs/42'), undefined);
  t.is(at('/srv/jobs/../secret'), 'cwd');
  t.is(at('/srv/jobsX'), 'cwd');
  t.is(at('/'), 'cwd');
  t.is(spawnDenial(rule, facts(), names), undefined, "no cwd: the agent's own, as before");
  t.is(spawnDenial(tenant('{run_as: [nobody]}'), facts({ cwd: '/tmp' }), names)?.field, 'cwd', "a tenant's omitted cwd_dirs allows none");
  t.is(spawnDenial(tenant('{run_as: [nobody], cwd_dirs: ["/"]}'), facts({ cwd: '/tmp' }), names), undefined);
  t.throws(() => parsePolicy('rules:\n  - identities: [a]\n    role: tenant\n    spawn: {cwd_dirs: [tmp]}'), { message: /cwd_dirs: "tmp" is not an absolute path/ });
});

test('cgroups and rlimits stay within the rule', (t) => {
  const rule = tenant('{run_as: [nobody], cgroups: ["tenant-a/*"], rlimits: {NOFILE: 4096, core: unlimited}}');
  t.is(spawnDenial(rule, facts({ cgroup: { kind: 'existing', path: 'tenant-a/jobs' } }), names), undefined);
  t.is(spawnDenial(rule, facts({ cgroup: { kind: 'existing', path: 'tenant-a/../tenant-b' } }), names)?.field, 'cgroup.path');
  t.is(spawnDenial(rule, facts({ cgroup: { kind: 'create' } }), names)?.field, 'cgroup.create');
  t.is(spawnDenial(rule, facts({ rlimits: [{ resource: 'NOFILE', soft: 1024n, hard: 4096n }] }), names), undefined);
  t.is(spawnDenial(rule, facts({ rlimits: [{ resource: 'NOFILE', soft: 1024n, hard: 8192n }] }), names)?.field, 'rlimits');
  t.is(spawnDenial(rule, facts({ rlimits: [{ resource: 'NOFILE', soft: 'inf', hard: 'inf' }] }), names)?.field, 'rlimits');
  t.is(spawnDenial(rule, facts({ rlimits: [{ resource: 'CORE', soft: 'inf', hard: 'inf' }] }), names), undefined);
  t.is(spawnDenial(rule, facts({ rlimits: [{ resource: 'NPROC', soft: 1n, hard: 1n }] }), names)?.field, 'rlimits', 'a resource not listed');
});

test('quotas: slots are freed once, the rate refills over time', (t) => {
  let now = 0;
  const q = new Quotas(() => now);
  const first = q.takeSpawn('a', 1);
  t.truthy(first);
  t.is(q.takeSpawn('a', 1), undefined);
  t.truthy(q.takeSpawn('b', 1), 'per identity');
  first!();
  first!();
  t.truthy(q.takeSpawn('a', 1));
  t.is(q.takeSpawn('a', 1), undefined, 'a second release freed nothing more');
  const rate = { count: 2, perMs: 1000 };
  t.deepEqual([q.takeRate('a', rate), q.takeRate('a', rate), q.takeRate('a', rate)], [true, true, false]);
  now += 500;
  t.deepEqual([q.takeRate('a', rate), q.takeRate('a', rate)], [true, false]);
});

test('owners in the old peer form become the identity; others stay as they are', (t) => {
  t.is(ownerIdentity('unix:uid=1001,gid=1001,pid=77'), 'unix:uid=1001');
  t.is(ownerIdentity('unix:uid=0'), 'unix:uid=0');
  t.is(ownerIdentity('spiffe://example.org/a'), 'spiffe://example.org/a');
  t.is(ownerIdentity('127.0.0.1:4242'), '127.0.0.1:4242');
  t.is(ownerIdentity(undefined), undefined);
});

test('a decision resolves each name once per ttl, an unknown one too; after the ttl NSS is asked again', (t) => {
  const asked: string[] = [];
  let now = 1_000;
  const cached = cachedNames(
    {
      uid: (n) => (asked.push(`uid:${n}`), ({ root: 0, nobody: 65534 }) as Record<string, number>)[n],
      gid: (n) => (asked.push(`gid:${n}`), n === 'nogroup' ? 65534 : undefined),
    },
    10_000,
    () => now,
  );
  for (let i = 0; i < 3; i++) {
    t.is(cached.uid('nobody'), 65534);
    t.is(cached.uid('ghost'), undefined);
    t.is(cached.gid('nogroup'), 65534);
  }
  t.deepEqual(asked, ['uid:nobody', 'uid:ghost', 'gid:nogroup']);
  now += 10_000;
  t.is(cached.uid('nobody'), 65534);
  t.deepEqual(asked, ['uid:nobody', 'uid:ghost', 'gid:nogroup', 'uid:nobody']);
});

test('tenants that may run as the same uid are found: by name or number, or anyone (*); admins and distinct uids are not', (t) => {
  const tenant = (name: string, user: string) => `  - name: ${name}\n    identities: ["spiffe://x/${name}"]\n    role: tenant\n    spawn: { run_as: ["${user}"], executables: ["/bin/*"] }\n`;
  const admin = '  - name: ops\n    identities: ["spiffe://x/ops"]\n    role: admin\n';
  const p = parsePolicy(`rules:\n${tenant('a', 'nobody')}${tenant('b', '65534')}${tenant('c', '1000')}${admin}`);
  t.deepEqual(sharedUsers(p, (n) => names.uid(n)), [{ rules: ['a', 'b'], uid: '65534' }]);
  const any = parsePolicy(`rules:\n${tenant('c', '1000')}${tenant('d', '*')}`);
  t.deepEqual(sharedUsers(any, (n) => names.uid(n)), [{ rules: ['c', 'd'], uid: '*' }]);
});

test("new_session: false (the agent's own session) is an admin's unless a tenant's rule says agent_session", (t) => {
  t.like(spawnDenial(tenant('{run_as: ["*"]}'), facts({ newSession: false }), names), { field: 'new_session' });
  t.is(spawnDenial(tenant('{run_as: ["*"], agent_session: true}'), facts({ newSession: false }), names), undefined);
  t.is(spawnDenial(tenant('{run_as: ["*"]}'), facts(), names), undefined, 'a session of its own is always allowed');
  t.is(spawnDenial(parsePolicy('rules:\n  - identities: [a]\n    role: admin').rules[0]!.spawn, facts({ newSession: false }), names), undefined);
});
