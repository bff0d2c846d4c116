// deploy/: no cluster runs here, so what can be checked is checked: every manifest validates
// against the Kubernetes schemas (kubernetes-models; a broken copy must not), the DaemonSet's
// update strategy and mounts agree with the agent's flags (parsed by the agent's own parser), the
// image puts the files where the manifest runs them, and the manifest's command line
// (--spawn-in-namespaces-of, --default-cgroup) really starts a serving agent that starts processes
// on a stand-in node and out of its own cgroups, with the policy and TLS files where the manifest
// mounts them replaced by the example policy and certificates made here. The example policy is
// parsed by the agent's own policy parser. `make test-deploy` runs the image itself.
import { sharedUsers } from '../src/auth/shared-users.js';
import { lookupUser } from '../src/kernel/nss.js';
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { Namespace } from 'kubernetes-models/v1';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { AgentClient } from '../clients/ts/src/index.js';
import { parsePolicy, RULE_KEYS, ruleFor, SPAWN_KEYS } from '../src/auth/policy.js';
import { parseConfig } from '../src/config/config.js';
import { cgroup2Mount, cgroupV1Mounts } from '../src/process/spawn/cgroups.js';
import { CLI_BIN, ROOT, startAgentProcess } from './helpers/agent-process.js';
import { pem, TestCa } from './helpers/certs.js';
import { eventually, tempDir, tryRmdir } from './helpers/harness.js';
import { startStandIn } from './helpers/stand-in.js';

interface Container {
  command: string[];
  args: string[];
  ports?: { containerPort: number; protocol?: string }[];
  securityContext?: { privileged?: boolean };
  readinessProbe?: { exec?: { command: string[] } };
  livenessProbe?: { exec?: { command: string[] } };
  image: string;
  volumeMounts: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
}

const KUSTOMIZE = join(ROOT, 'deploy/kubernetes');
const kustomization = parseYaml(readFileSync(join(KUSTOMIZE, 'kustomization.yaml'), 'utf8'));
const docs = (kustomization.resources as string[]).flatMap((file) => parseAllDocuments(readFileSync(join(KUSTOMIZE, file), 'utf8')).map((d) => d.toJS()));
const ds = docs.find((d) => d.kind === 'DaemonSet');
const pod = ds.spec.template.spec;
const agent: Container = pod.containers[0];
const AGENT_IN_IMAGE = '/opt/pidfd-agent/dist/src/main.js';
const EXAMPLE_POLICY = join(ROOT, 'deploy/policy.example.yaml');
/** Policy keys added since the last release: an agent from before refuses a policy that has one. */
const NEWER_KEYS = ['max_waits'];
const ORCHESTRATOR = 'spiffe://example.org/ns/orchestrator/sa/controller';

/** The volume mounted at the directory holding `file`, with its mount. */
function volumeHolding(file: string) {
  const mount = agent.volumeMounts.find((m) => m.mountPath === dirname(file));
  return mount && { mount, volume: pod.volumes.find((v: { name: string }) => v.name === mount.name) };
}

test('every manifest validates against the Kubernetes schemas, and a broken copy does not', (t) => {
  const models: Record<string, new (o: object) => { validate(): void }> = { Namespace, DaemonSet };
  t.deepEqual(docs.map((d) => d.kind).sort(), ['DaemonSet', 'Namespace']);
  for (const doc of docs) t.notThrows(() => new models[doc.kind]!(doc).validate(), doc.kind);
  const broken = structuredClone(ds);
  broken.spec.template.spec.containers[0].ports = [{ containerPort: 50051, hostPort: 'fifty thousand' }];
  broken.spec.template.spec.hostPID = 'yes';
  const error = t.throws(() => new DaemonSet(broken).validate());
  t.regex(error!.message, /hostPort|hostPID/);
  const noSelector = structuredClone(ds);
  delete noSelector.spec.selector;
  t.throws(() => new DaemonSet(noSelector).validate(), undefined, 'a DaemonSet needs its selector');
});

test('kustomize sets the namespace and the image in one place', (t) => {
  t.is(kustomization.kind, 'Kustomization');
  t.is(kustomization.namespace, docs.find((d) => d.kind === 'Namespace').metadata.name);
  t.deepEqual(kustomization.images.map((i: { name: string }) => i.name), [agent.image], 'images: names the image the DaemonSet runs');
  t.regex(kustomization.images[0].newName, /^[a-z0-9.-]+\.[a-z]+\/.+/, 'a registry');
  t.is(kustomization.images[0].newTag, JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  const certificate = parseYaml(readFileSync(join(KUSTOMIZE, 'certificate.example.yaml'), 'utf8'));
  t.like(certificate, { apiVersion: 'cert-manager.io/v1', kind: 'Certificate', spec: { secretName: volumeHolding(parseConfig(agent.args).tls!.cert)!.volume.secret.secretName } });
  t.true(certificate.spec.usages.includes('server auth'));
});

test('upgrades surge a new pod next to the old one, which lingers after handing over', (t) => {
  t.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  const config = parseConfig(agent.args);
  t.is(config.afterHandover, 'linger');
  t.is(config.takeover, 'if-serving', 'the new pod takes over from the old one, and the first pod on a node starts afresh');
  t.true(pod.hostPID);
  t.true(agent.securityContext?.privileged);
  t.is(pod.priorityClassName, 'system-node-critical');
  // The longest a deleted pod's stop may owe a handover under way: the new agent's 10 s for the old
  // one's spawns in flight, 45 s for the release, then its own stop.
  t.true(pod.terminationGracePeriodSeconds >= 10 + 45 + 5, `the kubelet waits out a handover under way (${pod.terminationGracePeriodSeconds} s)`);
  t.false(pod.automountServiceAccountToken, 'no API token in a pod that never calls the API');
  t.is(docs.find((d) => d.kind === 'Namespace')?.metadata?.labels?.['pod-security.kubernetes.io/enforce'], 'privileged');
  const limit = (agent as { resources?: { limits?: { memory?: string } } }).resources?.limits?.memory ?? '';
  const units: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30 };
  const bytes = Number(/^\d+/.exec(limit)?.[0]) * (units[limit.replace(/^\d+/, '')] ?? Number.NaN);
  // The agent's own heap and stacks take ~100-200 MiB under load: its captured output must fit beside them.
  t.true(config.captureTotalBytes + 256 * 2 ** 20 <= bytes, `--capture-total ${config.captureTotalBytes} within the memory limit ${limit}`);
});

test('children start on the node: its namespaces by pidfd, out of the pod\'s cgroups, with no wrapper', (t) => {
  const config = parseConfig(agent.args);
  t.deepEqual(agent.command, ['node', AGENT_IN_IMAGE], 'no nsenter: the exec helper joins the namespaces');
  t.is(config.spawnInNamespacesOf, 1, 'the node\'s init, with hostPID');
  t.truthy(config.defaultCgroup);
  t.is(config.cgroupParent, undefined, 'the parent comes from the cgroup2 mount: no path that breaks on hybrid nodes');
  const cgroup = agent.volumeMounts.find((m) => m.mountPath === '/sys/fs/cgroup');
  t.is(pod.volumes.find((v: { name: string }) => v.name === cgroup?.name)?.hostPath?.path, '/sys/fs/cgroup', 'the node\'s cgroup tree, v2 and v1');
});

test('the socket and the state dir are host paths mounted where the flags point', (t) => {
  const config = parseConfig(agent.args);
  const hostPathOf = (path: string) => {
    const mount = agent.volumeMounts.filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    return mount && pod.volumes.find((v: { name: string }) => v.name === mount.name)?.hostPath?.path;
  };
  t.is(hostPathOf(config.stateDir!), config.stateDir, 'the state dir (and handover.sock) is shared by the old and the new pod');
  const socket = config.listen[0]!.slice('unix://'.length);
  t.is(hostPathOf(socket), '/run/pidfd-agent');
  t.deepEqual(agent.readinessProbe?.exec?.command, ['test', '-e', config.readyFile], 'ready while this pod\'s agent serves');
  t.false(agent.volumeMounts.some((m) => config.readyFile!.startsWith(`${m.mountPath}/`)), 'the ready file is the container\'s own, not shared');
  const liveness = agent.livenessProbe?.exec?.command ?? [];
  t.deepEqual(liveness.slice(0, 2), ['node', '/opt/pidfd-agent/dist/src/cli/main.js']);
  t.truthy(config.healthListen, 'a probe socket of its own (--health-listen)');
  t.is(liveness[liveness.indexOf('--addr') + 1], config.healthListen, 'gRPC health on the probe socket: none of the node socket\'s connection caps');
  t.false(agent.volumeMounts.some((m) => config.healthListen!.slice('unix://'.length).startsWith(`${m.mountPath}/`)), 'the probe socket is the container\'s own: no node client reaches it');
  t.true(liveness.includes('health'));
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
  // On the node's address through its network, never a hostPort (hostNetwork makes every declared
  // port one): a surge pod next to the old one could not be scheduled and no upgrade would finish.
  t.true(pod.hostNetwork, "the node's network: the mTLS port on the node's address");
  t.is(agent.ports, undefined, 'no declared port: no hostPort');
  t.is(pod.dnsPolicy, 'ClusterFirstWithHostNet');
  t.regex(config.socketGroup ?? '', /^\d+$/, 'a gid: the start does not depend on a group name in the image');
});

test('the example policy parses with the agent\'s parser, explains every key, and means what it says', (t) => {
  const text = readFileSync(EXAMPLE_POLICY, 'utf8');
  const policy = parsePolicy(text);
  const raw = parseYaml(text) as { rules: Record<string, unknown>[] };
  const used = new Set(raw.rules.flatMap((r) => [...Object.keys(r), ...Object.keys((r['spawn'] as object | undefined) ?? {})]));
  // A key an older agent does not know appears commented out: that agent refuses a policy using
  // it, and a rollback would crash-loop.
  const commented = new Set([...text.matchAll(/^\s*# ([a-z_]+): /gm)].map((m) => m[1]));
  t.deepEqual([...RULE_KEYS, ...SPAWN_KEYS].filter((k) => !used.has(k) && !commented.has(k)), [], 'every key of the schema appears');
  t.deepEqual(NEWER_KEYS.filter((k) => used.has(k) || !commented.has(k)), [], 'keys older agents refuse are only shown, commented out');
  const as = (identity: string, aliases: string[] = []) => ruleFor(policy, { identity, aliases });
  t.like(as(ORCHESTRATOR), { role: 'admin' });
  t.true(as(ORCHESTRATOR)!.allow.has('adopt'));
  t.like(as('unix:uid=1500', ['unix:group=ci', 'unix:gid=1500']), { name: 'ci', role: 'tenant' });
  t.false(as('unix:uid=1500', ['unix:group=ci'])!.spawn.runAs.includes('root'));
  t.like(as('spiffe://example.org/ns/batch/sa/runner'), { name: 'batch', role: 'tenant' });
  t.false(as('spiffe://example.org/ns/batch/sa/runner')!.allow.has('stdin'));
  t.is(as('spiffe://example.org/ns/other/sa/x'), undefined, 'deny by default');
  t.deepEqual(sharedUsers(policy, (name) => lookupUser(name)?.uid), [], 'no two tenants share a uid');
  t.is(as('unix:uid=1500', ['unix:group=users']), undefined);
});

test('the image has the agent and the CLI where the manifest runs them, and builds with registry settings as a secret', (t) => {
  const dockerfile = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
  t.regex(dockerfile, /^WORKDIR \/opt\/pidfd-agent$/m);
  t.regex(dockerfile, /^COPY --from=build \/src\/dist \.\/dist$/m);
  t.regex(dockerfile, /^RUN --mount=type=secret,id=npmrc,target=\/root\/\.npmrc\b/m, 'a proxy or private registry needs no edit');
  t.regex(dockerfile.slice(dockerfile.lastIndexOf('\nFROM ')), /^\nFROM \$\{NODE_RUNTIME_IMAGE\}\n/, 'the runtime stage: no compiler');
  t.regex(dockerfile, /^ARG NODE_RUNTIME_IMAGE=node:20-bookworm-slim$/m, 'by default the slim base');
  // A release pins the bases by digest through these, without an edit here.
  t.regex(dockerfile, /^ARG NODE_IMAGE=node:20-bookworm\nARG NODE_RUNTIME_IMAGE=.*\nFROM \$\{NODE_IMAGE\} AS build$/m);
  t.true(agent.command.includes(AGENT_IN_IMAGE));
  t.true(existsSync(join(ROOT, 'dist/src/main.js')) && existsSync(join(ROOT, 'dist/src/cli/main.js')), 'make build puts them in dist/');
});

test("the node's users and groups: its /etc, read-only, as a directory at /host/etc, which the image's passwd and group link into", (t) => {
  const hostPathOf = (name: string) => pod.volumes.find((v: { name: string }) => v.name === name)?.hostPath;
  const etc = agent.volumeMounts.find((m) => m.mountPath === '/host/etc');
  t.deepEqual(etc && { ...hostPathOf(etc.name), readOnly: etc.readOnly, subPath: etc.subPath }, { path: '/etc', type: 'Directory', readOnly: true, subPath: undefined });
  // A file mount pins the file it found: shadow-utils replaces passwd and group by rename.
  const fileMounts = agent.volumeMounts.filter((m) => hostPathOf(m.name)?.type === 'File' || /^\/etc\/(passwd|group|shadow|gshadow)$/.test(hostPathOf(m.name)?.path ?? ''));
  t.deepEqual(fileMounts, [], 'no single-file mount of the node\'s users, groups or passwords');
  t.false(agent.volumeMounts.some((m) => m.mountPath === '/etc' || m.mountPath.startsWith('/etc/') && !m.mountPath.startsWith('/etc/pidfd-agent/')), 'the image\'s /etc is its own, but for the links');
  const runtime = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
  const stage = runtime.slice(runtime.lastIndexOf('\nFROM ')).split('\n').filter((l) => !l.startsWith('#')).join('\n');
  t.regex(stage, /ln -sfn \/host\/etc\/passwd \/etc\/passwd\b/);
  t.regex(stage, /ln -sfn \/host\/etc\/group \/etc\/group\b/);
  t.notRegex(stage, /shadow/, 'the node\'s passwords are never linked');
  t.regex(stage, /s\/\^\(passwd\|group\):\.\*\/\\1: files\//, 'NSS files only, as documented');
});

/** What the Secret would hold: the agent's certificate and the CA, with the mounted file names. */
function tlsSecret(dir: string, ca: TestCa): void {
  mkdirSync(dir);
  ca.issue('agent', { san: 'IP:127.0.0.1', usage: 'serverAuth', cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key') });
  copyFileSync(ca.cert, join(dir, 'ca.crt'));
}

test.serial("the manifest's command line starts a serving agent that starts processes on the (stand-in) node, out of its own cgroups", async (t) => {
  const mount = cgroup2Mount();
  if (mount === undefined) return t.fail('no cgroup2 mount on this machine');
  // Host paths of a node, mapped to this machine: PID 1's namespaces are off-limits here, so the
  // node is a stand-in made with unshare; the cgroup parent a directory of this test under the
  // cgroup2 mount (the default, <mount>/pidfd-agent, is shared by every agent here).
  const node = await startStandIn('deploy-node');
  t.teardown(() => node.close());
  const name = `pidfd-agent-deploy-${process.pid}`;
  const args = [...agent.args, '--cgroup-parent', join(mount, name)];
  const set = (flag: string, value: string) => (args[args.indexOf(flag) + 1] = value);
  set('--spawn-in-namespaces-of', String(node.pid));
  const readyFile = join(tempDir('pidfd-agent-ready-'), 'serving');
  set('--ready-file', readyFile);
  const listen = args.splice(args.indexOf('--listen'), 2)[1]!;
  const healthListen = args[args.indexOf('--health-listen') + 1]!;
  const probeSocket = `unix://${join(tempDir('pidfd-agent-deploy-probe-'), 'probe', 'health.sock')}`;
  set('--health-listen', probeSocket);
  // The state dir as DirectoryOrCreate makes it: 0755; the agent makes it 0700 and agent.db 0600.
  const stateDir = join(tempDir('pidfd-agent-deploy-state-'), 'state');
  mkdirSync(stateDir);
  chmodSync(stateDir, 0o755);
  set('--state-dir', stateDir);
  // The mounted ConfigMap and Secret: the example policy itself and certificates of a CA made here.
  const files = tempDir('pidfd-agent-deploy-files-');
  const ca = new TestCa(join(files, 'ca'), 'deploy-test-ca');
  tlsSecret(join(files, 'tls'), ca);
  for (const [flag, file] of [['--tls-cert', 'tls.crt'], ['--tls-key', 'tls.key'], ['--tls-client-ca', 'ca.crt']] as const) set(flag, join(files, 'tls', file));
  copyFileSync(EXAMPLE_POLICY, join(files, 'policy.yaml'));
  set('--policy', join(files, 'policy.yaml'));
  set('--tcp', '127.0.0.1:0');
  const started = await startAgentProcess(args);
  t.teardown(async () => {
    await started.stop();
    for (const dir of [mount, ...cgroupV1Mounts()]) {
      await eventually(`${dir}/${name} removed`, () => (tryRmdir(join(dir, name, 'managed')), tryRmdir(join(dir, name)), !existsSync(join(dir, name))));
    }
  });
  t.is(statSync(stateDir).mode & 0o777, 0o700);
  t.deepEqual(readdirSync(stateDir).filter((f) => f.startsWith('agent.db')).map((f) => statSync(join(stateDir, f)).mode & 0o777).filter((m) => m !== 0o600), [], 'agent.db* 0600');

  const { process: p } = await started.client.spawn({ argv: ['sleep', '30'] });
  for (const kind of ['mnt', 'uts'] as const) t.is(readlinkSync(`/proc/${p!.pid}/ns/${kind}`), node.ns(kind), `the node's ${kind} namespace`);
  for (const line of readFileSync(`/proc/${p!.pid}/cgroup`, 'utf8').trim().split('\n')) t.true(line.endsWith(`:/${name}/managed`), line);
  t.is(readFileSync(readyFile, 'utf8'), `${started.child.pid}\n`, 'the ready file names the serving agent');
  // The liveness probe's command, on this agent's probe socket.
  const probe = agent.livenessProbe!.exec!.command.map((a) => (a === listen ? started.address : a === healthListen ? probeSocket : a === AGENT_IN_IMAGE.replace('main.js', 'cli/main.js') ? CLI_BIN : a));
  t.is(execFileSync(process.execPath, probe.slice(1)).toString(), 'SERVING\n');

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
