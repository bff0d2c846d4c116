// --spawn-in-namespaces-of and SpawnRequest.join_namespaces_of, against stand-in "nodes" made with
// unshare (PID 1's namespaces are off-limits here): the child joins the target's mount, UTS, IPC,
// network and cgroup namespaces by pidfd in the exec helper, so its hostname, its mount namespace,
// argv[0], cwd and output files are the target's.
import test from 'ava';
import { chmodSync, existsSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { OutputMode, OutputStream, status, type AgentClient, type SpawnRequest } from '../clients/ts/src/index.js';
import { startAgent } from '../src/agent.js';
import { DEFAULTS } from '../src/config/config.js';
import { startAgentProcess } from './helpers/agent-process.js';
import { eventually, startHarness, tempDir } from './helpers/harness.js';
import { startStandIn } from './helpers/stand-in.js';
import { asUser, shareSocket } from './helpers/tenant.js';
import { runCliText } from './helpers/cli.js';

const CAPTURE = { mode: OutputMode.OUTPUT_MODE_CAPTURE };

/** What the process wrote to stdout, once it exited, and its exit code. */
async function run(client: AgentClient, req: Partial<SpawnRequest>): Promise<{ out: string; code: number | undefined }> {
  const { process: p } = await client.spawn({ stdout: CAPTURE, ...req });
  const exited = await client.wait({ handle: p!.handle });
  const chunks: Uint8Array[] = [];
  for await (const r of client.readOutput({ handle: p!.handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) chunks.push(r.data);
  return { out: Buffer.concat(chunks).toString(), code: exited.process?.exit?.code };
}

const NS = ['mnt', 'uts', 'ipc', 'net', 'cgroup'] as const;

test.serial('--spawn-in-namespaces-of: children run with the stand-in node\'s hostname, mounts and files', async (t) => {
  const node = await startStandIn('stand-in-node');
  t.teardown(() => node.close());
  const h = await startHarness({ spawnInNamespacesOf: node.pid });
  t.teardown(() => h.close());
  t.not(node.ns('mnt'), readlinkSync('/proc/self/ns/mnt'), 'the stand-in has a mount namespace of its own');

  t.deepEqual(await run(h.client, { argv: ['hostname'] }), { out: 'stand-in-node\n', code: 0 });
  t.is((await run(h.client, { argv: ['readlink', '/proc/self/ns/mnt'] })).out, `${node.ns('mnt')}\n`);
  // argv[0] is found in the node's filesystem: the agent's own has an empty directory there.
  t.false(existsSync(join(node.dir, 'only-here')));
  t.deepEqual(await run(h.client, { argv: [join(node.dir, 'only-here')] }), { out: 'only-on-the-node\n', code: 0 });
  t.deepEqual(await run(h.client, { argv: ['only-here'], env: { PATH: `/nonexistent:${node.dir}` } }), { out: 'only-on-the-node\n', code: 0 });
  // So are cwd and FILE outputs.
  t.deepEqual(await run(h.client, { argv: ['ls'], cwd: node.dir }), { out: 'only-here\n', code: 0 });
  const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'echo written-on-the-node'], stdout: { mode: OutputMode.OUTPUT_MODE_FILE, path: join(node.dir, 'out.txt') } });
  await h.client.wait({ handle: p!.handle });
  t.false(existsSync(join(node.dir, 'out.txt')));
  t.is(readFileSync(`/proc/${node.pid}/root${node.dir}/out.txt`, 'utf8'), 'written-on-the-node\n');

  // A running child is in all five of the node's namespaces.
  const { process: sleeper } = await h.client.spawn({ argv: ['sleep', '30'] });
  for (const kind of NS) t.is(readlinkSync(`/proc/${sleeper!.pid}/ns/${kind}`), node.ns(kind), kind);
  await h.client.signal({ handle: sleeper!.handle, signal: 'SIGKILL' });

  // What is missing there is missing, named with the path asked for.
  const missing = await t.throwsAsync(h.client.spawn({ argv: [join(node.dir, 'absent')] }));
  t.is((missing as { code?: number }).code, status.NOT_FOUND);
  t.regex(missing!.message, /absent/);
  const noCwd = await t.throwsAsync(h.client.spawn({ argv: ['true'], cwd: join(node.dir, 'no-such-dir') }));
  t.regex(noCwd!.message, /cwd.*no-such-dir.*ENOENT|ENOENT.*no-such-dir/);
  t.is((await h.client.list({})).processes.length, 6 + 1, 'refused spawns left nothing behind');
});

test.serial('--spawn-in-namespaces-of: a PID that is gone, or namespaces that cannot be joined, stop the start', async (t) => {
  const gone = spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim();
  const error = await t.throwsAsync(startAgent({ ...DEFAULTS, listen: [`unix://${join(tempDir('pidfd-agent-ns-'), 's')}`], stateDir: undefined, agentEnv: {}, spawnInNamespacesOf: Number(gone) }, () => {}));
  t.is(error!.message, `--spawn-in-namespaces-of ${gone}: no such process`);

  // An agent in a user namespace of its own has no CAP_SYS_ADMIN over the stand-in's namespaces.
  const node = await startStandIn('unjoinable');
  t.teardown(() => node.close());
  const started = await startAgentProcess(['--ephemeral', '--spawn-in-namespaces-of', String(node.pid)], ['unshare', '--user', '--map-root-user']).catch((e: Error) => e);
  t.true(started instanceof Error, 'the agent does not start');
  t.regex((started as Error).message, new RegExp(`pidfd-agent: --spawn-in-namespaces-of ${node.pid}: cannot join its mount, UTS, IPC, network and cgroup namespaces: (they belong to another user namespace|setns: EPERM|open /proc/${node.pid}/root: EACCES)\n`));
});

test.serial('join_namespaces_of: a process starts in a managed process\'s namespaces, as the policy allows', async (t) => {
  const dir = tempDir('pidfd-agent-join-');
  const policyFile = join(dir, 'policy.yaml');
  const tenant = (uid: number, join: boolean) => `
  - identities: ["unix:uid=${uid}"]
    role: tenant
    spawn: { run_as: ["0"], executables: ["*"], join_namespaces: ${join} }`;
  writeFileSync(policyFile, `rules:\n  - identities: ["unix:uid=0"]\n    role: admin${tenant(1501, true)}${tenant(1500, false)}\n`);
  const h = await startHarness({ policyFile });
  t.teardown(() => h.close());
  shareSocket(h);
  const inner = (name: string) => ['unshare', '--mount', '--uts', '--fork', 'sh', '-c', `hostname ${name} && exec sleep 60`];

  const { process: box } = await h.client.spawn({ argv: inner('box-of-root') });
  const boxNs = async () => (await run(h.client, { argv: ['hostname'], joinNamespacesOf: box!.handle })).out;
  // unshare sets the hostname in a moment; until then the box still has the agent's.
  let seen = '';
  for (let i = 0; i < 100 && seen !== 'box-of-root\n'; i++) seen = await boxNs();
  t.is(seen, 'box-of-root\n');
  const { process: joined } = await h.client.spawn({ argv: ['sleep', '30'], joinNamespacesOf: box!.handle });
  t.is(readlinkSync(`/proc/${joined!.pid}/ns/mnt`), readlinkSync(`/proc/${box!.pid}/ns/mnt`));
  t.is(readlinkSync(`/proc/${joined!.pid}/ns/uts`), readlinkSync(`/proc/${box!.pid}/ns/uts`));
  await h.client.signal({ handle: joined!.handle, signal: 'SIGKILL' });
  // pidfdctl spawn --join-namespaces-of, and its health command.
  const cli = await runCliText(h.address, ['spawn', '--attach', '--join-namespaces-of', box!.handle, '--', 'hostname']);
  t.deepEqual([cli.code, cli.stdout], [0, 'box-of-root\n']);
  t.deepEqual(await runCliText(h.address, ['health']), { code: 0, stdout: 'SERVING\n', stderr: '' });

  // Another tenant's process is a handle that never was; the policy's join_namespaces decides.
  const [intoRoots, own] = await asUser(1501, h.address, [
    { op: 'spawn', req: { argv: ['true'], joinNamespacesOf: box!.handle } },
    { op: 'spawn', req: { argv: inner('box-of-1501') } },
  ]);
  t.like(intoRoots?.error, { code: status.NOT_FOUND, reason: 'UNKNOWN_HANDLE' });
  const [denied] = await asUser(1500, h.address, [{ op: 'spawn', req: { argv: ['true'], joinNamespacesOf: own!.ok.process.handle } }]);
  t.like(denied?.error, { code: status.PERMISSION_DENIED, reason: 'POLICY_DENIED' });
  t.is(denied?.error?.info['field'], 'join_namespaces_of');

  // An exited process has no namespaces to join.
  await h.client.signal({ handle: box!.handle, signal: 'SIGKILL' });
  await h.client.wait({ handle: box!.handle });
  const exited = await t.throwsAsync(h.client.spawn({ argv: ['true'], joinNamespacesOf: box!.handle }));
  t.regex(exited!.message, /join_namespaces_of: process .* has exited/);
  const unknown = await t.throwsAsync(h.client.spawn({ argv: ['true'], joinNamespacesOf: 'aaaaaaaaaaaaaaaaaaaaaaaaaa' }));
  t.regex(unknown!.message, /unknown handle/);
});

test.serial('join_namespaces_of: namespaces a tenant made for itself are refused, and a tenant joining others runs with no_new_privs', async (t) => {
  const dir = tempDir('pidfd-agent-join-');
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, `rules:\n  - identities: ["unix:uid=0"]\n    role: admin\n  - identities: ["unix:uid=1502"]\n    role: tenant\n    spawn: { run_as: ["1502"], executables: ["*"], join_namespaces: true }\n`);
  const h = await startHarness({ policyFile });
  t.teardown(() => h.close());
  shareSocket(h);
  // The review's way to root: a user and mount namespace of the tenant's own, where it may mount
  // over /etc (ld.so.preload), then a setuid program run there by the agent from outside them.
  const [own, plain] = await asUser(1502, h.address, [
    { op: 'spawn', req: { argv: ['unshare', '-Urm', 'sh', '-c', 'mount -t tmpfs none /mnt && exec sleep 60'], user: '1502' } },
    { op: 'spawn', req: { argv: ['sleep', '60'], user: '1502' } },
  ]);
  const ownPid = own!.ok.process.pid as number;
  await eventually('the tenant in a user namespace of its own', () => readlinkSync(`/proc/${ownPid}/ns/mnt`) !== readlinkSync('/proc/self/ns/mnt'));
  const before = (await h.client.list({})).processes.length;
  const [refused, joined] = await asUser(1502, h.address, [
    { op: 'spawn', req: { argv: ['true'], user: '1502', joinNamespacesOf: own!.ok.process.handle } },
    { op: 'spawn', req: { argv: ['grep', 'NoNewPrivs', '/proc/self/status'], user: '1502', joinNamespacesOf: plain!.ok.process.handle, stdout: CAPTURE } },
  ]);
  t.like(refused?.error, { code: status.PERMISSION_DENIED, reason: 'EPERM' });
  t.is(refused?.error?.info['field'], 'join_namespaces_of');
  t.regex(refused!.error!.details, /namespaces belong to another user namespace/);
  // The agent's own namespaces (the plain sleep's) are joined, without setuid's power.
  const handle = joined!.ok.process.handle as string;
  t.is((await h.client.wait({ handle })).process?.exit?.code, 0);
  const chunks: Uint8Array[] = [];
  for await (const r of h.client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) chunks.push(r.data);
  t.is(Buffer.concat(chunks).toString(), 'NoNewPrivs:\t1\n');
  t.is((await h.client.list({})).processes.length, before + 1, 'the refused spawn left nothing behind');
  for (const p of [own, plain]) await h.client.signal({ handle: p!.ok.process.handle, signal: 'SIGKILL' });
});

test.serial('--spawn-in-namespaces-of as another user: argv[0] is searched in the node\'s PATH by the helper, as that user', async (t) => {
  const node = await startStandIn('stand-in-as-user');
  t.teardown(() => node.close());
  const h = await startHarness({ spawnInNamespacesOf: node.pid });
  t.teardown(() => h.close());
  const PATH = `/nonexistent:${node.dir}`;
  t.deepEqual(await run(h.client, { argv: ['only-here'], user: '1503', env: { PATH } }), { out: 'only-on-the-node\n', code: 0 });
  t.deepEqual(await run(h.client, { argv: ['id', '-u'], user: '1503' }), { out: '1503\n', code: 0 });
  const missing = await t.throwsAsync(h.client.spawn({ argv: ['no-such-program'], user: '1503', env: { PATH } }));
  t.like(missing, { code: status.NOT_FOUND, reason: 'ENOENT' });
  t.is((missing as { details?: string }).details, `argv[0]: no-such-program: ENOENT (not found in PATH ${PATH}, as the target user)`);
});

test.serial('join_namespaces_of as another user: argv[0], bare or a path, is looked up by the helper after the setns and the drop, so a link tells nothing of where that user cannot look', async (t) => {
  const dir = tempDir('pidfd-agent-join-');
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, `rules:\n  - identities: ["unix:uid=0"]\n    role: admin\n  - identities: ["unix:uid=1503"]\n    role: tenant\n    spawn: { run_as: ["1503"], executables: ["*"], join_namespaces: true }\n`);
  /** Only root may look in here. */
  const secret = tempDir('pidfd-agent-secret-');
  writeFileSync(join(secret, 'probe'), '#!/bin/sh\n', { mode: 0o755 });
  /** A directory the tenant may write, with its links into the secret one. */
  const links = tempDir('pidfd-agent-links-');
  chmodSync(links, 0o777);
  symlinkSync(join(secret, 'probe'), join(links, 'bare-probe'));
  symlinkSync(join(secret, 'missing'), join(links, 'bare-missing'));
  const h = await startHarness({ policyFile });
  t.teardown(() => h.close());
  shareSocket(h);
  const [box] = await asUser(1503, h.address, [{ op: 'spawn', req: { argv: ['sleep', '60'], user: '1503' } }]);
  const into = box!.ok.process.handle as string;
  const PATH = `${links}:/usr/bin:/bin`;
  // Resolved by the agent as root in the joined mount namespace, bare-missing was NOT_FOUND and
  // bare-probe the helper's EACCES.
  const argvs = [['bare-probe'], ['bare-missing'], [join(links, 'bare-probe')], [join(links, 'bare-missing')]];
  const outcomes = await asUser(1503, h.address, argvs.map((argv) => ({ op: 'spawn', req: { argv, user: '1503', env: { PATH }, joinNamespacesOf: into } })));
  for (const [i, o] of outcomes.entries()) {
    const path = join(links, argvs[i]![0]!.replace(/.*\//, ''));
    t.like(o.error, { code: status.PERMISSION_DENIED, reason: 'EACCES', info: { field: 'argv[0]', path } }, argvs[i]![0]);
    t.is(o.error?.details.replace(path, 'P'), 'argv[0]: P: EACCES (as the target user)', argvs[i]![0]);
  }
  const [missing, found] = await asUser(1503, h.address, [
    { op: 'spawn', req: { argv: ['no-such-program'], user: '1503', env: { PATH }, joinNamespacesOf: into } },
    { op: 'spawn', req: { argv: ['id', '-u'], user: '1503', env: { PATH }, joinNamespacesOf: into, stdout: CAPTURE } },
  ]);
  t.like(missing!.error, { code: status.NOT_FOUND, reason: 'ENOENT', info: { field: 'argv[0]', path: 'no-such-program' } });
  t.is(missing!.error?.details, `argv[0]: no-such-program: ENOENT (not found in PATH ${PATH}, as the target user)`);
  const handle = found!.ok.process.handle as string;
  t.is((await h.client.wait({ handle })).process?.exit?.code, 0);
  const chunks: Uint8Array[] = [];
  for await (const r of h.client.readOutput({ handle, stream: OutputStream.OUTPUT_STREAM_STDOUT })) chunks.push(r.data);
  t.is(Buffer.concat(chunks).toString(), '1503\n');
  await h.client.signal({ handle: into, signal: 'SIGKILL' });
});
