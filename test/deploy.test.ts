// deploy/: no cluster runs here, so what can be checked is checked: the DaemonSet's update strategy
// and mounts agree with the agent's flags (parsed by the agent's own parser), the image puts the
// files where the manifest runs them, and the manifest's command line (nsenter into PID 1's cgroup
// namespace, --default-cgroup) really starts a serving agent that places processes as intended.
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../src/config/config.js';
import { cgroup2Mount } from '../src/process/cgroups.js';
import { ROOT, startAgentProcess } from './helpers/agent-process.js';
import { eventually, tempDir, tryRmdir } from './helpers/harness.js';

interface Container {
  command: string[];
  args: string[];
  securityContext?: { privileged?: boolean };
  readinessProbe?: { exec?: { command: string[] } };
  volumeMounts: { name: string; mountPath: string }[];
}

const docs = parseAllDocuments(readFileSync(join(ROOT, 'deploy/kubernetes/daemonset.yaml'), 'utf8')).map((d) => d.toJS());
const ds = docs.find((d) => d.kind === 'DaemonSet');
const pod = ds.spec.template.spec;
const agent: Container = pod.containers[0];
const AGENT_IN_IMAGE = '/opt/pidfd-agent/dist/src/main.js';

test('upgrades surge a new pod next to the old one, which lingers after handing over', (t) => {
  t.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  const config = parseConfig(agent.args);
  t.is(config.afterHandover, 'linger');
  t.is(config.takeover, false, 'the first pod on a node starts afresh');
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

test('the image has the agent and the CLI where the manifest runs them', (t) => {
  const dockerfile = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
  t.regex(dockerfile, /^WORKDIR \/opt\/pidfd-agent$/m);
  t.regex(dockerfile, /^COPY --from=build \/src\/dist \.\/dist$/m);
  t.regex(dockerfile, /util-linux/, 'nsenter');
  t.true(agent.command.includes(AGENT_IN_IMAGE));
  t.true(existsSync(join(ROOT, 'dist/src/main.js')) && existsSync(join(ROOT, 'dist/src/cli/main.js')), 'make build puts them in dist/');
});

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
  await started.client.signal({ handle: p!.handle, signal: 'SIGKILL' });
  await started.client.wait({ handle: p!.handle });
  await started.stop();
  t.false(existsSync(readyFile), 'gone once the agent stopped serving');
});
