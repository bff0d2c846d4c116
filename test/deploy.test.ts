// deploy/: no cluster runs here, so what can be checked is checked: the DaemonSet's update strategy
// and mounts agree with the agent's flags (parsed by the agent's own parser), the image puts the
// files where the manifest runs them, and the manifest's command line (nsenter into PID 1's cgroup
// namespace, --default-cgroup) really starts a serving agent that places processes as intended,
// with the policy and TLS files where the manifest mounts them replaced by the example policy and
// certificates made here. The example policy is parsed by the agent's own policy parser.
import test from 'ava';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { AgentClient } from '../clients/ts/src/index.js';
import { parsePolicy, RULE_KEYS, ruleFor, SPAWN_KEYS } from '../src/auth/policy.js';
import { parseConfig } from '../src/config/config.js';
import { cgroup2Mount } from '../src/process/spawn/cgroups.js';
import { ROOT, startAgentProcess } from './helpers/agent-process.js';
import { pem, TestCa } from './helpers/certs.js';
import { eventually, tempDir, tryRmdir } from './helpers/harness.js';

interface Container {
  command: string[];
  args: string[];
  ports?: { containerPort: number; protocol?: string }[];
  securityContext?: { privileged?: boolean };
  readinessProbe?: { exec?: { command: string[] } };
  volumeMounts: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
}

const docs = parseAllDocuments(readFileSync(join(ROOT, 'deploy/kubernetes/daemonset.yaml'), 'utf8')).map((d) => d.toJS());
const ds = docs.find((d) => d.kind === 'DaemonSet');
const pod = ds.spec.template.spec;
const agent: Container = pod.containers[0];
const AGENT_IN_IMAGE = '/opt/pidfd-agent/dist/src/main.js';
const EXAMPLE_POLICY = join(ROOT, 'deploy/policy.example.yaml');
const ORCHESTRATOR = 'spiffe://example.org/ns/orchestrator/sa/controller';

/** The volume mounted at the directory holding `file`, with its mount. */
function volumeHolding(file: string) {
  const mount = agent.volumeMounts.find((m) => m.mountPath === dirname(file));
  return mount && { mount, volume: pod.volumes.find((v: { name: string }) => v.name === mount.name) };
}

test('upgrades surge a new pod next to the old one, which lingers after handing over', (t) => {
  t.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  const config = parseConfig(agent.args);
  t.is(config.afterHandover, 'linger');
  t.is(config.takeover, 'if-serving', 'the new pod takes over from the old one, and the first pod on a node starts afresh');
  t.true(pod.hostPID);
  t.true(agent.securityContext?.privileged);
});

test('the socket, the state dir and the cgroup parent are host paths mounted where the flags point', (t) => {
  const config = parseConfig(agent.args);
  const hostPathOf = (path: string) => {
    const mount = agent.volumeMounts.filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    return mount && pod.volumes.find((v: { name: string }) => v.name === mount.name)?.hostPath?.path;
  };
  t.is(hostPathOf(config.stateDir!), config.stateDir, 'the state dir (and handover.sock) is shared by the old and the new pod');
  const socket = config.listen[0]!.slice('unix://'.length);
  t.is(hostPathOf(socket), '/run/pidfd-agent');
  t.is(hostPathOf(config.cgroupParent!), '/sys/fs/cgroup');
  t.truthy(config.defaultCgroup);
  t.deepEqual(agent.readinessProbe?.exec?.command, ['test', '-e', config.readyFile], 'ready while this pod\'s agent serves');
  t.false(agent.volumeMounts.some((m) => config.readyFile!.startsWith(`${m.mountPath}/`)), 'the ready file is the container\'s own, not shared');
});

test('the policy comes from a ConfigMap and the TLS files from a Secret, mounted as directories where the flags point', (t) => {
  const config = parseConfig(agent.args);
  const policy = volumeHolding(config.policyFile!);
  t.truthy(policy?.volume?.configMap?.name, '--policy is in a mounted ConfigMap');
  t.is(basename(config.policyFile!), 'policy.yaml');
  t.true(policy!.mount.readOnly);
  const tls = config.tls!;
  t.truthy(tls, 'TLS on the TCP address');
  const secret = volumeHolding(tls.cert);
  t.truthy(secret?.volume?.secret?.secretName, 'the TLS files are a mounted Secret');
  const dir = secret!.mount.mountPath;
  t.deepEqual([tls.cert, tls.key, tls.clientCa], [join(dir, 'tls.crt'), join(dir, 'tls.key'), join(dir, 'ca.crt')], 'the names a cert-manager Secret has');
  // subPath mounts are never updated: the policy reload and the certificate rotation need the
  // kubelet's swaps to reach the files.
  t.false([policy!.mount, secret!.mount].some((m) => m.subPath !== undefined));
  const tcp = config.listen.filter((a) => !a.startsWith('unix://'));
  t.deepEqual(tcp, ['0.0.0.0:50051']);
  t.deepEqual(agent.ports?.map((p) => p.containerPort), [50051], 'the TCP port is declared');
  t.regex(config.socketGroup ?? '', /^\d+$/, 'a gid: the start does not depend on a group name in the image');
});

test('the example policy parses with the agent\'s parser, explains every key, and means what it says', (t) => {
  const text = readFileSync(EXAMPLE_POLICY, 'utf8');
  const policy = parsePolicy(text);
  const raw = parseYaml(text) as { rules: Record<string, unknown>[] };
  const used = new Set(raw.rules.flatMap((r) => [...Object.keys(r), ...Object.keys((r['spawn'] as object | undefined) ?? {})]));
  t.deepEqual([...RULE_KEYS, ...SPAWN_KEYS].filter((k) => !used.has(k)), [], 'every key of the schema appears');
  const as = (identity: string, aliases: string[] = []) => ruleFor(policy, { identity, aliases });
  t.like(as(ORCHESTRATOR), { role: 'admin' });
  t.true(as(ORCHESTRATOR)!.allow.has('adopt'));
  t.like(as('unix:uid=1500', ['unix:group=ci', 'unix:gid=1500']), { name: 'ci', role: 'tenant' });
  t.false(as('unix:uid=1500', ['unix:group=ci'])!.spawn.runAs.includes('root'));
  t.like(as('spiffe://example.org/ns/batch/sa/runner'), { name: 'batch', role: 'tenant' });
  t.false(as('spiffe://example.org/ns/batch/sa/runner')!.allow.has('stdin'));
  t.is(as('spiffe://example.org/ns/other/sa/x'), undefined, 'deny by default');
  t.is(as('unix:uid=1500', ['unix:group=users']), undefined);
});

test('the image has the agent and the CLI where the manifest runs them', (t) => {
  const dockerfile = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
  t.regex(dockerfile, /^WORKDIR \/opt\/pidfd-agent$/m);
  t.regex(dockerfile, /^COPY --from=build \/src\/dist \.\/dist$/m);
  t.regex(dockerfile, /util-linux/, 'nsenter');
  t.true(agent.command.includes(AGENT_IN_IMAGE));
  t.true(existsSync(join(ROOT, 'dist/src/main.js')) && existsSync(join(ROOT, 'dist/src/cli/main.js')), 'make build puts them in dist/');
});

/** What the Secret would hold: the agent's certificate and the CA, with the mounted file names. */
function tlsSecret(dir: string, ca: TestCa): void {
  mkdirSync(dir);
  ca.issue('agent', { san: 'IP:127.0.0.1', usage: 'serverAuth', cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') });
  copyFileSync(ca.cert, join(dir, 'ca.crt'));
}

test.serial("the manifest's command line starts a serving agent that places processes outside its own cgroup", async (t) => {
  const mount = cgroup2Mount();
  if (mount === undefined) return t.fail('no cgroup2 mount on this machine');
  const node = agent.command.indexOf('node');
  t.deepEqual(agent.command.slice(0, node), ['nsenter', '--cgroup=/proc/1/ns/cgroup', '--']);
  // This sandbox denies access to PID 1's namespaces even to root (a node's privileged hostPID pod
  // has it); the suite's own cgroup namespace is this machine's host one, so nsenter targets it.
  const wrapper = ['nsenter', `--cgroup=/proc/${process.pid}/ns/cgroup`, '--'];
  // Host paths of a node, mapped to this machine: the suite's own socket and state dir, and the
  // cgroup2 mount here (/sys/fs/cgroup on a pure v2 node).
  const parent = join(mount, `pidfd-agent-deploy-${process.pid}`);
  const args = [...agent.args];
  const set = (flag: string, value: string) => (args[args.indexOf(flag) + 1] = value);
  set('--cgroup-parent', parent);
  const readyFile = join(tempDir('pidfd-agent-ready-'), 'serving');
  set('--ready-file', readyFile);
  args.splice(args.indexOf('--listen'), 2);
  args.splice(args.indexOf('--state-dir'), 2);
  // The mounted ConfigMap and Secret: the example policy itself and certificates of a CA made here.
  const files = tempDir('pidfd-agent-deploy-files-');
  const ca = new TestCa(join(files, 'ca'), 'deploy-test-ca');
  tlsSecret(join(files, 'tls'), ca);
  for (const [flag, file] of [['--tls-cert', 'tls.crt'], ['--tls-key', 'tls.key'], ['--tls-client-ca', 'ca.crt']] as const) set(flag, join(files, 'tls', file));
  copyFileSync(EXAMPLE_POLICY, join(files, 'policy.yaml'));
  set('--policy', join(files, 'policy.yaml'));
  set('--tcp', '127.0.0.1:0');
  const started = await startAgentProcess(args, wrapper);
  t.teardown(async () => {
    await started.stop();
    for (const d of ['managed', '']) {
      await eventually(`${d || 'the parent'} removed`, () => (tryRmdir(join(parent, d)), !existsSync(join(parent, d))));
    }
  });
  const { process: p } = await started.client.spawn({ argv: ['sleep', '30'] });
  const line = readFileSync(`/proc/${p!.pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
  t.is(line, `0::/${join(parent, 'managed').slice(mount.length + 1)}`);
  t.is(readFileSync(readyFile, 'utf8'), `${started.child.pid}\n`, 'the ready file names the serving agent');

  // Over mutual TLS, as the example policy's orchestrator (admin) and its remote tenant.
  const serving = started.stderr().split('\n').map((l) => (l.includes('"serving"') ? JSON.parse(l) : undefined)).find(Boolean);
  const tcp = (serving.addresses as string[]).find((a) => a.startsWith('127.0.0.1:'))!;
  const remote = (identity: string) => {
    const pair = ca.issue(identity.split('/').pop()!, { san: `URI:${identity}`, usage: 'clientAuth' });
    const client = new AgentClient(tcp, credentials.createSsl(pem(ca.cert), pem(pair.key), pem(pair.cert)));
    t.teardown(() => client.close());
    return client;
  };
  const orchestrator = remote(ORCHESTRATOR);
  t.deepEqual((await orchestrator.list({})).processes.map((q) => q.handle), [p!.handle], 'the admin sees the node\'s processes');
  t.deepEqual((await remote('spiffe://example.org/ns/batch/sa/runner').list({})).processes, [], 'a tenant sees only its own');
  await started.client.signal({ handle: p!.handle, signal: 'SIGKILL' });
  await started.client.wait({ handle: p!.handle });
  await started.stop();
  t.false(existsSync(readyFile), 'gone once the agent stopped serving');
});
