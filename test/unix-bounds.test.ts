// The unix socket is bounded as --tcp is: anyone in its group can connect, so connections that
// never speak are capped (--max-connections) and closed at the --handshake-timeout, and an agent
// flooded past its descriptors keeps serving once the flood ends.
import { readdirSync } from 'node:fs';
import net from 'node:net';
import test from 'ava';
import { startAgentProcess } from './helpers/agent-process.js';
import { eventually, sleep } from './helpers/harness.js';

const fdCount = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

/** n connections to the socket that send nothing; resolves once each is connected or refused. */
async function silent(path: string, n: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<void>((resolve) => {
        const s = net.connect(path, () => resolve());
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        sockets.push(s);
      }),
    ),
  );
  return sockets;
}

const closedCount = (sockets: net.Socket[]) => sockets.filter((s) => s.closed || s.destroyed).length;

test('silent connections past --max-connections are closed at accept, the rest at --handshake-timeout; a client is served after', async (t) => {
  const agent = await startAgentProcess(['--ephemeral', '--max-connections', '8', '--handshake-timeout', '1s']);
  t.teardown(() => agent.stop());
  const pid = agent.child.pid!;
  const path = agent.address.slice('unix://'.length);
  // The test's own client holds one of the 8 (a session).
  await agent.client.list({});
  const baseline = fdCount(pid);
  const flood = await silent(path, 60);
  t.teardown(() => flood.forEach((s) => s.destroy()));
  await eventually('the connections past the cap closed by the agent', () => closedCount(flood) >= 60 - 7);
  t.true(fdCount(pid) <= baseline + 7, `at most the cap's fds held (${fdCount(pid)} vs ${baseline} before)`);
  await eventually('every silent connection closed at the deadline', () => closedCount(flood) === 60, 5_000);
  await agent.client.list({});
  // Past 10 lines a second, lines are counted in one log_suppressed line instead.
  await eventually('refusals and deadlines logged', () => /"event":"unix_connection_refused"/.test(agent.stderr()) && /"event":"unix_connection_idle"|"unix_connection_idle":\d+/.test(agent.stderr()));
  const refusedLines = agent.stderr().split('\n').filter((l) => l.includes('"event":"unix_connection_refused"')).length;
  // 10 lines a second: the flood lasts well under a second, but may straddle two of the limiter's windows.
  t.true(refusedLines <= 20, `the refusals are rate-limited: ${refusedLines} lines for 53`);
});

test('an agent flooded past its descriptors on the unix socket keeps running and serves once the flood ends', async (t) => {
  const agent = await startAgentProcess(['--ephemeral', '--handshake-timeout', '60s', '--max-connections-per-identity', '1000'], ['prlimit', '--nofile=128', '--']);
  t.teardown(() => agent.stop());
  const path = agent.address.slice('unix://'.length);
  await agent.client.list({});
  const flood = await silent(path, 300);
  // Long enough for the agent's once-a-second housekeeping to run out of descriptors too.
  await sleep(3_000);
  t.is(agent.child.exitCode, null, 'still running');
  await eventually('the agent out of descriptors', () => /EMFILE/.test(agent.stderr()));
  flood.forEach((s) => s.destroy());
  await eventually('served again', async () => {
    try {
      await agent.client.list({}, { deadline: 1000 });
      return true;
    } catch {
      return false;
    }
  });
  t.is(agent.child.exitCode, null);
});

test('one uid holds at most --max-connections-per-identity connections on the unix socket', async (t) => {
  const agent = await startAgentProcess(['--ephemeral', '--max-connections-per-identity', '4', '--handshake-timeout', '30s']);
  t.teardown(() => agent.stop());
  const path = agent.address.slice('unix://'.length);
  await agent.client.list({});
  // The test's client holds one of root's 4.
  const flood = await silent(path, 10);
  t.teardown(() => flood.forEach((s) => s.destroy()));
  await eventually('the connections past the cap closed by the agent', () => closedCount(flood) === 7);
  await sleep(300);
  t.is(closedCount(flood), 7, 'three of the ten kept: root already had one');
  await eventually('the refusal logged', () => /"event":"unix_connection_refused".*uid 0 holds 4 connections/.test(agent.stderr()));
  flood.forEach((s) => s.destroy());
  t.true(await eventually('closed connections free their places', async () => {
    const again = await silent(path, 3);
    await sleep(300);
    const kept = closedCount(again) === 0;
    again.forEach((s) => s.destroy());
    return kept;
  }));
});
