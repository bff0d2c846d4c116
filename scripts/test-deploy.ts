// make test-deploy: the image on a real container runtime (podman + runc), run as the DaemonSet
// runs it. The container's command, args, mounts and host PID come from the manifest
// (deploy/kubernetes), so drift fails here; host paths go under a temp dir, except the node's
// /sys/fs/cgroup; the node's /etc there holds copies of this machine's passwd and group only. The
// node is a stand-in made with unshare (PID 1's namespaces are off-limits in this sandbox), with its
// own hostname. Proves: a spawned `hostname` prints the stand-in's name and the child's mount
// namespace is the stand-in's; users and groups changed on the node by rename (gpasswd, useradd
// under that /etc) reach the agent within its 10 s cache, a rule granted and revoked; `podman rm -f`
// leaves every managed process running and the next container re-adopts them; a second container
// (maxSurge) takes over by handover with no exit lost and the Watch cursor resumed; the state db
// is 0600. Ends with `deploy: N passed, N failed`.
//   node --import tsx scripts/test-deploy.ts        (make test-deploy; root)
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { AgentClient, EventType, OutputMode, OutputStream, State, type Event } from '../clients/ts/src/index.js';
import { cgroup2Mount, cgroupV1Mounts } from '../src/process/spawn/cgroups.js';
import { startStandIn, type StandIn } from '../test/helpers/stand-in.js';
import { TestCa } from '../test/helpers/certs.js';
import { ensureBaseImages, ensureRuntime, podman } from './podman-env.js';

const ROOT = new URL('../', import.meta.url).pathname;
const IMAGE = process.env['IMAGE'] ?? 'localhost/pidfd-agent:test-deploy';
const STAND_IN_HOSTNAME = 'stand-in-node';

let passed = 0;
let failed = 0;
function check(what: string, ok: boolean, detail = ''): void {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok' : 'not ok'} - ${what}${ok || detail === '' ? '' : ` (${detail})`}`);
}
const step = (what: string) => console.log(`# ${what}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(200);
  }
}

interface Mount { name: string; mountPath: string; readOnly?: boolean }
interface Volume { name: string; hostPath?: { path: string }; configMap?: object; secret?: object }

const kdir = join(ROOT, 'deploy/kubernetes');
const kustomization = parseYaml(readFileSync(join(kdir, 'kustomization.yaml'), 'utf8'));
const docs = (kustomization.resources as string[]).flatMap((f) => parseAllDocuments(readFileSync(join(kdir, f), 'utf8')).map((d) => d.toJS()));
const pod = docs.find((d) => d.kind === 'DaemonSet').spec.template.spec;
const container = pod.containers[0];

/** A user of the node, in the group the example policy's ci rule names (and in no other a rule names). */
const CI_USER = { name: 'pidfd-deploy-ci', uid: 41500 };
const CI_GROUP = { name: 'ci', gid: 41501 };
/** Created on the node only once the agent runs, for a spawn's run_as. */
const LATE_USER = { name: 'pidfd-deploy-late', uid: 41503 };

/**
 * The node's /etc: this machine's passwd and group (nothing else: no shadow), less any `ci` group
 * of its own, with CI_GROUP and CI_USER, a member of it, added by shadow-utils itself.
 */
function nodeEtc(root: string): void {
  const etc = join(root, 'etc');
  mkdirSync(etc, { recursive: true });
  copyFileSync('/etc/passwd', join(etc, 'passwd'));
  const group = readFileSync('/etc/group', 'utf8').split('\n').filter((l) => !l.startsWith(`${CI_GROUP.name}:`)).join('\n');
  writeFileSync(join(etc, 'group'), group);
  execFileSync('groupadd', ['-P', root, '-g', String(CI_GROUP.gid), CI_GROUP.name]);
  execFileSync('useradd', ['-P', root, '-u', String(CI_USER.uid), '-U', '-G', CI_GROUP.name, '-M', '-s', '/usr/sbin/nologin', CI_USER.name], { stdio: ['ignore', 'ignore', 'ignore'] });
}

/** The state, socket and Secret/ConfigMap volumes of a "node" under one temp dir. */
function nodeDirs(base: string): Map<string, string> {
  const ca = new TestCa(join(base, 'ca'), 'test-deploy-ca');
  const hostOf = new Map<string, string>();
  nodeEtc(join(base, 'host'));
  for (const m of container.volumeMounts as Mount[]) {
    const v = (pod.volumes as Volume[]).find((x) => x.name === m.name)!;
    const path = v.hostPath?.path;
    const underEtc = path === '/etc' || path?.startsWith('/etc/') === true;
    if (path === '/sys/fs/cgroup') hostOf.set(m.mountPath, path);
    else if (path !== undefined) hostOf.set(m.mountPath, join(base, 'host', path));
    else hostOf.set(m.mountPath, join(base, 'volume', m.name));
    if (!underEtc && path !== '/sys/fs/cgroup') mkdirSync(hostOf.get(m.mountPath)!, { recursive: true });
  }
  const tls = hostOf.get('/etc/pidfd-agent/tls')!;
  ca.issue('agent', { san: 'IP:127.0.0.1', usage: 'serverAuth', cert: join(tls, 'tls.crt'), key: join(tls, 'tls.key') });
  copyFileSync(ca.cert, join(tls, 'ca.crt'));
  copyFileSync(join(ROOT, 'deploy/policy.example.yaml'), join(hostOf.get('/etc/pidfd-agent/policy')!, 'policy.yaml'));
  return hostOf;
}

/** `podman run` as the kubelet would start the DaemonSet's container, by the manifest. */
function runAgentContainer(name: string, hostOf: Map<string, string>, node: StandIn): void {
  const args = [...(container.args as string[])];
  // With hostPID the stand-in's PID is the same inside: it plays the node's PID 1.
  args[args.indexOf('--spawn-in-namespaces-of') + 1] = String(node.pid);
  // --network=host here, so not the node's 50051 (others may use it): any free loopback port.
  args[args.indexOf('--tcp') + 1] = '127.0.0.1:0';
  const volumes = (container.volumeMounts as Mount[]).flatMap((m) => ['-v', `${hostOf.get(m.mountPath)}:${m.mountPath}:${m.readOnly ? 'ro' : 'rw'}${m.mountPath === '/sys/fs/cgroup' ? ',rbind' : ''}`]);
  podman(['run', '-d', '--name', name, pod.hostPID ? '--pid=host' : '--pid=private', container.securityContext?.privileged ? '--privileged' : '', '--network=host',
    ...volumes, '--entrypoint', container.command[0], IMAGE, ...container.command.slice(1), ...args].filter((a) => a !== ''));
}

/** How long fn takes to hold (polled), or undefined if it does not within ms. */
async function within(ms: number, fn: () => boolean | Promise<boolean>): Promise<number | undefined> {
  const start = Date.now();
  for (;;) {
    if (await fn()) return Date.now() - start;
    if (Date.now() - start > ms) return undefined;
    await sleep(250);
  }
}

/** `pidfdctl list` in the container as CI_USER, with the socket's group as its gid: the error, or '' when served. */
function listAsCiUser(name: string): string {
  const cli = (container.livenessProbe.exec.command as string[]).find((a) => a.endsWith('/cli/main.js'))!;
  const args = container.args as string[];
  const r = spawnSync('podman', ['exec', '--user', `${CI_USER.uid}:${args[args.indexOf('--socket-group') + 1]}`, name, 'node', cli, '--addr', args[args.indexOf('--listen') + 1]!, 'list']);
  return r.status === 0 ? '' : `${r.stderr.toString().trim()} (exit ${r.status})`;
}

/**
 * Shadow-utils on the node's /etc (under a prefix), as an operator would run it: each writes a new
 * file and renames it over the old one. Returns whether the path now names another file than before.
 */
function onNode(root: string, file: string, command: string[]): boolean {
  const held = openSync(join(root, 'etc', file), 'r'); // so its inode cannot be reused meanwhile
  try {
    execFileSync(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    return statSync(join(root, 'etc', file)).ino !== fstatSync(held).ino;
  } finally {
    closeSync(held);
  }
}

/** The readiness probe's command, in the container. */
const ready = (name: string) => spawnSync('podman', ['exec', name, ...container.readinessProbe.exec.command]).status === 0;
/** The liveness probe's command, in the container: what it printed, with its exit status. */
const live = (name: string) => {
  const r = spawnSync('podman', ['exec', name, ...container.livenessProbe.exec.command]);
  return `${`${r.stdout}${r.stderr}`.trim()} (exit ${r.status})`;
};

async function output(client: AgentClient, argv: string[], user?: string): Promise<string> {
  const { process: p } = await client.spawn({ argv, ...(user !== undefined && { user }), stdout: { mode: OutputMode.OUTPUT_MODE_CAPTURE } });
  await client.wait({ handle: p!.handle });
  const chunks: Uint8Array[] = [];
  for await (const r of client.readOutput({ handle: p!.handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) chunks.push(r.data);
  return Buffer.concat(chunks).toString();
}

const procState = (pid: number) => {
  try {
    return /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
};

async function main(): Promise<void> {
  const started = Date.now();
  step('podman and runc from Debian, containers.conf for this hybrid cgroup layout');
  ensureRuntime();
  step('base images');
  ensureBaseImages();
  step(`building ${IMAGE} (make image)`);
  const t0 = Date.now();
  // Host networking for the build's RUN steps: no container network is set up here.
  execFileSync(join(ROOT, 'scripts/image.sh'), ['--network=host'], { stdio: 'inherit', env: { ...process.env, IMAGE } });
  const bytes = Number(podman(['image', 'inspect', '--format', '{{.Size}}', IMAGE]).trim());
  console.log(`# image built in ${Math.round((Date.now() - t0) / 1000)} s, ${Math.round(bytes / 1e6)} MB`);
  const compilers = spawnSync('podman', ['run', '--rm', '--network=none', '--entrypoint', 'sh', IMAGE, '-c', 'command -v gcc cc g++ make || true']).stdout.toString().trim();
  check('the runtime image holds no compiler', compilers === '', compilers);

  const base = mkdtempSync(join(tmpdir(), 'pidfd-agent-test-deploy-'));
  const hostOf = nodeDirs(base);
  const node = await startStandIn(STAND_IN_HOSTNAME);
  // Of this run: another run's cleanup must not remove them.
  const names = ['a', 'b', 'c'].map((x) => `pidfd-agent-${x}-${process.pid}`);
  for (const n of names) spawnSync('podman', ['rm', '-f', n]);
  const socketDir = hostOf.get('/run/pidfd-agent')!;
  const stateDir = hostOf.get('/var/lib/pidfd-agent')!;
  const socket = `unix://${join(socketDir, 'agent.sock')}`;
  const sleepers: { handle: string; pid: number }[] = [];
  try {
    step('pod 1: the first agent on the node');
    runAgentContainer(names[0]!, hostOf, node);
    await until('pod 1 ready', () => ready(names[0]!));
    let client = new AgentClient(socket);
    check('the liveness probe answers SERVING in the container', live(names[0]!) === 'SERVING (exit 0)', live(names[0]!));
    check('a spawned hostname prints the stand-in node\'s name', (await output(client, ['hostname'])) === `${STAND_IN_HOSTNAME}\n`);
    const mnt = (await output(client, ['readlink', '/proc/self/ns/mnt'])).trim();
    check('the child\'s mount namespace is the stand-in node\'s', mnt === node.ns('mnt'), `${mnt} vs ${node.ns('mnt')}`);
    const db = readdirSync(stateDir).filter((f) => f.startsWith('agent.db'));
    check('the state dir is 0700 and agent.db 0600', (statSync(stateDir).mode & 0o777) === 0o700 && db.length > 0 && db.every((f) => (statSync(join(stateDir, f)).mode & 0o777) === 0o600),
      `${(statSync(stateDir).mode & 0o777).toString(8)} ${db.map((f) => `${f}:${(statSync(join(stateDir, f)).mode & 0o777).toString(8)}`).join(' ')}`);

    step("the node's users and groups, changed there by rename, reach the agent within its 10 s cache");
    const nodeRoot = join(base, 'host');
    // Each change is checked from the state just before it: on the old file mounts neither is seen.
    const member = listAsCiUser(names[0]!);
    check(`${CI_USER.name}, a member of ${CI_GROUP.name}, is served by the ci rule`, member === '', member);
    const revoked = onNode(nodeRoot, 'group', ['gpasswd', '-Q', nodeRoot, '-d', CI_USER.name, CI_GROUP.name]);
    const revokedIn = await within(15_000, () => /PERMISSION_DENIED/.test(listAsCiUser(names[0]!)));
    const revokeSeen = member === '' && revoked && revokedIn !== undefined;
    check(`gpasswd -d ${CI_USER.name} ${CI_GROUP.name} on the node (a new group file: ${revoked}) revokes the ci rule within 15 s`, revokeSeen, listAsCiUser(names[0]!) || 'still served');
    if (revokeSeen) console.log(`# revoked after ${(revokedIn / 1000).toFixed(1)} s`);
    const denied = listAsCiUser(names[0]!);
    const granted = onNode(nodeRoot, 'group', ['gpasswd', '-Q', nodeRoot, '-a', CI_USER.name, CI_GROUP.name]);
    const grantedIn = await within(15_000, () => listAsCiUser(names[0]!) === '');
    const grantSeen = /PERMISSION_DENIED/.test(denied) && granted && grantedIn !== undefined;
    check(`gpasswd -a on the node (a new group file: ${granted}) grants it again within 15 s`, grantSeen, `before: ${denied || 'served'}; after: ${listAsCiUser(names[0]!) || 'served'}`);
    if (grantSeen) console.log(`# granted after ${(grantedIn / 1000).toFixed(1)} s`);
    const asLate = () => output(client, ['id', '-u'], LATE_USER.name).catch((e: Error) => e.message);
    const before = await asLate();
    const added = onNode(nodeRoot, 'passwd', ['useradd', '-P', nodeRoot, '-u', String(LATE_USER.uid), '-U', '-M', '-s', '/usr/sbin/nologin', LATE_USER.name]);
    const after = await asLate();
    check(`a run_as user added on the node after the start (useradd; a new passwd file: ${added}) is found`, added && before !== `${LATE_USER.uid}\n` && after === `${LATE_USER.uid}\n`, `before: ${before.trim()}; after: ${after.trim()}`);

    for (let i = 0; i < 3; i++) {
      const { process: p } = await client.spawn({ argv: ['sleep', '600'], labels: { job: `sleeper-${i}` } });
      sleepers.push({ handle: p!.handle, pid: p!.pid });
    }
    client.close();

    step('podman rm -f of pod 1');
    podman(['rm', '-f', names[0]!]);
    check('podman rm -f leaves every managed process running', sleepers.every((s) => ['S', 'R'].includes(procState(s.pid) ?? '')), sleepers.map((s) => `${s.pid}:${procState(s.pid)}`).join(' '));

    step('pod 2 on the same state dir');
    runAgentContainer(names[1]!, hostOf, node);
    await until('pod 2 ready', () => ready(names[1]!));
    client = new AgentClient(socket);
    const listed = (await client.list({})).processes;
    check('the next container re-adopts them', sleepers.every((s) => listed.some((p) => p.handle === s.handle && p.pid === s.pid && p.state === State.STATE_RUNNING)), JSON.stringify(listed.map((p) => [p.handle, p.pid, p.state])));

    step('pod 3 surges next to pod 2 and takes over (maxSurge 1)');
    const { sequence } = await client.list({});
    // Exits during the handover: one process killed just before, one that ends by itself within it.
    const { process: short } = await client.spawn({ argv: ['sleep', '2'] });
    await client.signal({ handle: sleepers[0]!.handle, signal: 'SIGTERM' });
    client.close();
    runAgentContainer(names[2]!, hostOf, node);
    await until('pod 3 ready', () => ready(names[2]!));
    check('the old pod lingers, not ready, its container still running', !ready(names[1]!) && podman(['inspect', '--format', '{{.State.Running}}', names[1]!]).trim() === 'true');
    check('the lingering pod\'s liveness probe still answers SERVING, so it is not restarted into taking over again', live(names[1]!) === 'SERVING (exit 0)', live(names[1]!));
    check('and the new pod\'s answers SERVING', live(names[2]!) === 'SERVING (exit 0)', live(names[2]!));
    client = new AgentClient(socket);
    const shortExit = await client.wait({ handle: short!.handle });
    const killedExit = await client.wait({ handle: sleepers[0]!.handle });
    check('no exit lost: both exits are known with their status', shortExit.process?.exit?.code === 0 && killedExit.process?.exit?.signal === 15, JSON.stringify([shortExit.process?.exit, killedExit.process?.exit]));
    const events: Event[] = [];
    const abort = new AbortController();
    const watching = (async () => {
      try {
        for await (const e of client.watch({ afterSequence: sequence }, { signal: abort.signal })) events.push(e);
      } catch {
        // aborted
      }
    })();
    await until('replayed exits', () => events.filter((e) => e.type === EventType.EVENT_TYPE_EXITED).length >= 2, 10_000).catch(() => undefined);
    abort.abort();
    await watching;
    const seqs = events.map((e) => e.sequence);
    check('the Watch cursor resumes on the new agent: every event after it, in order, none missing',
      seqs.length > 0 && seqs[0] === sequence + 1 && seqs.every((s, i) => i === 0 || s === seqs[i - 1]! + 1) && events.filter((e) => e.type === EventType.EVENT_TYPE_EXITED).length >= 2,
      JSON.stringify(events.map((e) => [e.sequence, e.type, e.process?.handle])));
    check('the processes still running are the new agent\'s', (await client.list({})).processes.filter((p) => p.state === State.STATE_RUNNING).length === 2);
    for (const s of sleepers.slice(1)) await client.signal({ handle: s.handle, signal: 'SIGKILL' });
    client.close();
  } catch (e) {
    check('the run completed', false, e instanceof Error ? e.message : String(e));
    for (const n of names) console.log(spawnSync('podman', ['logs', '--tail', '20', n]).stderr?.toString() ?? '');
  } finally {
    for (const n of names) spawnSync('podman', ['rm', '-f', n]);
    for (const s of sleepers) if (procState(s.pid) !== undefined) spawnSync('kill', ['-9', String(s.pid)]);
    await node.close();
    const mount = cgroup2Mount();
    for (const dir of [mount, ...cgroupV1Mounts()]) {
      if (dir === undefined) continue;
      for (const d of ['pidfd-agent/managed', 'pidfd-agent']) spawnSync('rmdir', [join(dir, d)]);
    }
    rmSync(base, { recursive: true, force: true });
  }
  console.log(`# ${Math.round((Date.now() - started) / 1000)} s in all`);
  console.log(`deploy: ${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

await main();
