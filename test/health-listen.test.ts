// The liveness probe's own socket (--health-listen). On the callers' socket the probe (root, like
// node root's clients) competed for --max-connections-per-identity and --max-connections: clients
// holding them all failed every probe, and the kubelet restarted a healthy agent each minute. The
// probe socket has its own few connections and serves gRPC health only; a lingering agent answers
// on it, so it is not restarted into taking its processes back.
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { AgentCallError, AgentClient, status } from '../clients/ts/src/index.js';
import { parseConfig } from '../src/config/config.js';
import { SERVICE_NAME } from '../src/service/server.js';
import { PROBE_MAX_CONNECTIONS, PROBE_QUIET_MS } from '../src/transport/probe-listener.js';
import { AGENT_BIN, CLI_BIN, ROOT, startAgentProcess } from './helpers/agent-process.js';
import { agentDir, eventually, sleep, tempDir } from './helpers/harness.js';
import { healthCheck } from './helpers/health.js';

const KUSTOMIZE = join(ROOT, 'deploy/kubernetes');
const manifest = (parseYaml(readFileSync(join(KUSTOMIZE, 'kustomization.yaml'), 'utf8')).resources as string[])
  .flatMap((f) => parseAllDocuments(readFileSync(join(KUSTOMIZE, f), 'utf8')).map((d) => d.toJS()))
  .find((d) => d.kind === 'DaemonSet').spec.template.spec.containers[0];

/** A probe: pidfdctl's exit status and what it printed. */
const probe = (argv: readonly string[]): Promise<{ code: number; out: string }> =>
  new Promise((resolve) => execFile(process.execPath, [...argv], (e, stdout, stderr) => resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}`.trim() })));
const health = (address: string) => probe([CLI_BIN, '--addr', address, 'health', '--timeout', '3s']);

/**
 * What the kubelet waits for the probe command (timeoutSeconds), node's start included: the bound
 * a probe that got its slot must answer within. (Under a loaded CI the CLI's start alone took
 * seconds, and the old 5 s bound, the CLI's own call deadline, failed a probe that had answered.)
 */
const probeTimeoutMs = (): number => (manifest.livenessProbe.timeoutSeconds as number) * 1000;

/** The manifest's liveness probe command (argv after `node`), with the container's paths mapped to a test agent's. */
function manifestProbe(probeAddress: string, nodeAddress: string): string[] {
  const flags = parseConfig(manifest.args);
  const command = (manifest.livenessProbe.exec.command as string[]).map((a) =>
    a === flags.healthListen ? probeAddress : a === flags.listen[0] ? nodeAddress : a === '/opt/pidfd-agent/dist/src/cli/main.js' ? CLI_BIN : a,
  );
  if (command[0] !== 'node') throw new Error(`the manifest's probe is not a node command: ${command.join(' ')}`);
  return command.slice(1);
}

/** n root clients, each on a connection of its own (no shared subchannel), each holding a Watch open. */
async function watchingClients(address: string, n: number): Promise<{ clients: AgentClient[]; close: () => void }> {
  const clients: AgentClient[] = [];
  const abort = new AbortController();
  for (let i = 0; i < n; i++) {
    const client = new AgentClient(address, undefined, { 'grpc.use_local_subchannel_pool': 1 });
    clients.push(client);
    await client.list({}, { deadline: Date.now() + 5000 });
    void (async () => {
      try {
        for await (const _ of client.watch({}, { signal: abort.signal }));
      } catch {
        // ended by the test
      }
    })();
  }
  return { clients, close: () => (abort.abort(), clients.forEach((c) => c.close())) };
}

test("the manifest's liveness probe answers SERVING while root's clients hold every connection the socket's caps allow", async (t) => {
  const flags = parseConfig(manifest.args);
  const probeSocket = join(tempDir('pidfd-agent-probe-'), 'probe', 'health.sock');
  const extra = flags.healthListen === undefined ? [] : ['--health-listen', `unix://${probeSocket}`];
  // Both caps at 2: the harness's own client and one more root client fill them.
  const agent = await startAgentProcess(['--ephemeral', '--max-connections', '2', '--max-connections-per-identity', '2', ...extra]);
  t.teardown(() => agent.stop());
  const { clients, close } = await watchingClients(agent.address, 1);
  t.teardown(close);
  await agent.client.list({});
  t.not((await health(agent.address)).code, 0, 'root holds its cap on the node socket: a new root connection is refused there');
  await eventually('the refusal logged', () => /"event":"unix_connection_refused"/.test(agent.stderr()));
  const command = manifestProbe(`unix://${probeSocket}`, agent.address);
  t.deepEqual(await probe(command), { code: 0, out: 'SERVING' }, 'the probe has connections of its own');
  // And as many times over as a kubelet would within a failure threshold, each a new connection.
  for (let i = 0; i < 3; i++) t.is((await probe(command)).code, 0);
  t.deepEqual(await Promise.all(clients.map((c) => c.list({}).then(() => 'served'))), ['served'], 'the clients are served all along');
});

test('the probe socket serves gRPC health only, to a few connections of its own', async (t) => {
  const dir = tempDir('pidfd-agent-probe-');
  const address = `unix://${join(dir, 'probe', 'health.sock')}`;
  const agent = await startAgentProcess(['--ephemeral', '--health-listen', address]);
  t.teardown(() => agent.stop());
  t.deepEqual(await health(address), { code: 0, out: 'SERVING' });
  t.is(await healthCheck(address, SERVICE_NAME), 'SERVING', 'the agent serves AgentService (on --listen)');
  const onProbe = new AgentClient(address);
  t.teardown(() => onProbe.close());
  const e = await t.throwsAsync(onProbe.list({}), { instanceOf: AgentCallError });
  t.is(e?.code, status.UNIMPLEMENTED, 'no AgentService call on the probe socket');
  await t.throwsAsync(onProbe.spawn({ argv: ['true'] }), { instanceOf: AgentCallError, message: /UNIMPLEMENTED/ });
  t.deepEqual((await agent.client.list({})).processes, [], 'nothing was spawned');
  t.true(agent.stderr().includes(`"health":"${address}"`), 'the serving line names it');
  // Its cap is its own: silent connections past it are closed at accept, and the node socket is untouched.
  const silent = await Promise.all(Array.from({ length: PROBE_MAX_CONNECTIONS + 4 }, () => new Promise<net.Socket>((resolve) => {
    const s = net.connect(join(dir, 'probe', 'health.sock'), () => resolve(s));
    s.on('error', () => resolve(s));
  })));
  t.teardown(() => silent.forEach((s) => s.destroy()));
  await eventually('the connections past the probe cap closed', () => silent.filter((s) => s.closed || s.destroyed).length >= 4);
  t.regex(agent.stderr(), /"event":"unix_connection_refused".*--health-listen socket's own cap/);
  await agent.client.list({});
});

/**
 * Peers on the probe socket that say nothing: each connects again whenever the agent closes it, so
 * a deadline alone would only hand its slot back to it.
 */
function silentPeers(path: string, n: number): { readonly closes: () => number; stop: () => void } {
  let stopped = false;
  let closes = 0;
  const sockets = new Set<net.Socket>();
  const connect = () => {
    if (stopped) return;
    const s = net.connect(path);
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => {
      sockets.delete(s);
      closes++;
      setTimeout(connect, 50);
    });
  };
  for (let i = 0; i < n; i++) connect();
  return { closes: () => closes, stop: () => ((stopped = true), sockets.forEach((s) => s.destroy())) };
}

/** A probe as the manifest runs it, timed. */
async function timedProbe(command: readonly string[]): Promise<{ code: number; out: string; ms: number }> {
  const start = Date.now();
  return { ...(await probe(command)), ms: Date.now() - start };
}

test("peers that fill the probe socket and say nothing, reconnecting when closed, give their slots to the manifest's probe", async (t) => {
  const path = join(tempDir('pidfd-agent-probe-'), 'probe', 'health.sock');
  const agent = await startAgentProcess(['--ephemeral', '--health-listen', `unix://${path}`]);
  t.teardown(() => agent.stop());
  const peers = silentPeers(path, PROBE_MAX_CONNECTIONS);
  t.teardown(peers.stop);
  // Every slot taken, and quiet for long enough; far within --handshake-timeout (10 s), which closes none of them.
  await sleep(PROBE_QUIET_MS + 500);
  t.is(peers.closes(), 0, 'they hold every slot');
  const command = manifestProbe(`unix://${path}`, agent.address);
  const first = await timedProbe(command);
  t.deepEqual({ code: first.code, out: first.out }, { code: 0, out: 'SERVING' }, 'the probe got a slot');
  t.true(first.ms < probeTimeoutMs(), `within the kubelet's timeout for the probe (${first.ms} ms)`);
  t.regex(agent.stderr(), /"event":"unix_connection_evicted".*no call for \d+ ms.*--health-listen socket's own cap/);
  t.true(peers.closes() >= 1, 'a silent peer gave its slot up');
  // Each evicted peer came back and took the slot of another (not the probe's, which had called);
  // a kubelet's next probe, a period later, finds them quiet again.
  for (let i = 0; i < 2; i++) {
    await sleep(PROBE_QUIET_MS + 500);
    t.is((await probe(command)).code, 0);
  }
});

const quietHttp2 = test.macro({
  async exec(t, calls: boolean) {
    const path = join(tempDir('pidfd-agent-probe-'), 'probe', 'health.sock');
    const agent = await startAgentProcess(['--ephemeral', '--health-listen', `unix://${path}`]);
    t.teardown(() => agent.stop());
    const sessions = await Promise.all(Array.from({ length: PROBE_MAX_CONNECTIONS }, async () => {
      const session = http2.connect('http://probe', { createConnection: () => net.connect(path) });
      session.on('error', () => {});
      // The agent's SETTINGS: the connection is served by grpc-js, past its preface deadline's reach.
      await once(session, 'remoteSettings');
      if (calls) {
        // A Check whose request never comes: the call stays open.
        const call = session.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check', 'content-type': 'application/grpc', te: 'trailers' }, { endStream: false });
        call.on('error', () => {});
        if (call.pending) await once(call, 'ready');
      }
      return session;
    }));
    t.teardown(() => sessions.forEach((s) => s.destroy()));
    await sleep(PROBE_QUIET_MS + 500);
    t.is(sessions.filter((s) => s.closed || s.destroyed).length, 0, 'they hold every slot');
    const { code, out, ms } = await timedProbe(manifestProbe(`unix://${path}`, agent.address));
    t.deepEqual({ code, out }, { code: 0, out: 'SERVING' }, 'the probe got a slot');
    t.true(ms < probeTimeoutMs(), `within the kubelet's timeout for the probe (${ms} ms)`);
    await eventually('the quietest connection closed', () => sessions.filter((s) => s.closed || s.destroyed).length === 1);
  },
  title: (_, calls: boolean) => `HTTP/2 connections to the probe socket that ${calls ? 'never finish a call' : 'never call'} give their slots to the manifest's probe`,
});

test(quietHttp2, false);
test(quietHttp2, true);

test('a lingering agent still answers its probe SERVING after handing over, and says it serves no AgentService', async (t) => {
  const { stateDir } = agentDir('pidfd-agent-probe-state-');
  const dir = tempDir('pidfd-agent-probe-');
  const oldProbe = `unix://${join(dir, 'old', 'health.sock')}`;
  const newProbe = `unix://${join(dir, 'new', 'health.sock')}`;
  const old = await startAgentProcess(['--state-dir', stateDir, '--after-handover', 'linger', '--health-listen', oldProbe]);
  t.teardown(() => old.stop());

  // A successor given the same probe path fails before it asks for the handover: the old one goes on serving.
  const clash = spawn(process.execPath, [AGENT_BIN, '--listen', `unix://${join(dir, 'clash', 'agent.sock')}`, '--state-dir', stateDir, '--takeover', 'required', '--health-listen', oldProbe], { stdio: ['ignore', 'ignore', 'pipe'] });
  let clashErr = '';
  clash.stderr!.on('data', (d: Buffer) => (clashErr += d.toString()));
  const [code] = await once(clash, 'exit');
  t.is(code, 1);
  t.regex(clashErr, /health\.sock: another process is serving on this socket/);
  await old.client.list({});
  t.false(/"event":"lingering"/.test(old.stderr()), 'not handed over');

  const successor = await startAgentProcess(['--state-dir', stateDir, '--takeover', 'required', '--health-listen', newProbe]);
  t.teardown(() => successor.stop());
  await eventually('the old agent lingers', () => /"event":"lingering"/.test(old.stderr()));
  t.is(old.child.exitCode, null);
  t.deepEqual(await health(oldProbe), { code: 0, out: 'SERVING' }, 'alive: a liveness probe leaves it be');
  t.is(await healthCheck(oldProbe, SERVICE_NAME), 'NOT_SERVING', 'but it serves no AgentService');
  t.deepEqual(await health(newProbe), { code: 0, out: 'SERVING' });
  t.is(await healthCheck(newProbe, SERVICE_NAME), 'SERVING');
  await old.stop();
  t.not((await health(oldProbe)).code, 0, 'gone with the agent');
});
