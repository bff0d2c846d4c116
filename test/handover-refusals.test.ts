// A lingering agent that cannot watch its successor (another PID namespace) asks handover.sock who
// serves every 5 s for as long as it lingers, and each of its empty connections is refused: the
// serving agent logs the first refusal of a kind, then counts them, one line each quiet period.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import test from 'ava';
import { connectServing } from '../src/handover/incoming.js';
import { HandoverListener, type HandoverHost } from '../src/handover/outgoing.js';
import { Tag, receiveTagged } from '../src/handover/wire.js';
import { useFdPassing, type FdSocket } from '../src/kernel/fd-passing.js';
import { ROOT, startAgentProcess } from './helpers/agent-process.js';
import { eventually, sleep } from './helpers/harness.js';

useFdPassing(join(ROOT, 'dist/lib/libpidfd-fdpass.so'));

type Line = { event: string; why?: string; repeated?: number; ms?: number };

/** Connections that send no request, as a lingering agent's: resolves once each is refused ("no request", after 1 s). */
async function emptyConnections(stateDir: string, n: number): Promise<void> {
  const sockets: FdSocket[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = connectServing(stateDir);
      if (typeof s === 'string') throw new Error(`handover.sock does not answer: ${s}`);
      sockets.push(s);
      // Its backlog is 4, and connect blocks: the listener (in this process, too) accepts meanwhile.
      await sleep(20);
    }
    await Promise.all(
      sockets.map(async (s) => {
        if (!(await s.readable(10_000))) throw new Error('not refused within 10 s');
        receiveTagged(s, [Tag.refused], 0);
      }),
    );
  } finally {
    for (const s of sockets) s.close();
  }
}

/** Every refusal a line stands for: itself, or the count it carries. */
const refusals = (lines: readonly Line[]) => lines.reduce((sum, l) => sum + (l.repeated ?? 1), 0);

const unused = () => {
  throw new Error('no handover in this test');
};
const host: HandoverHost = { refusal: () => undefined, prepare: unused, encode: unused, resume: unused, commit: unused };

test('refusals of one kind are logged once, then counted in a line each quiet period; after a quiet period the next is logged again', async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'pidfd-agent-refusals-'));
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
  const lines: Line[] = [];
  const quietMs = 2000;
  const listener = new HandoverListener(stateDir, host, (event, fields) => lines.push({ event, ...fields }), () => {}, quietMs);
  t.teardown(() => listener.close());

  await emptyConnections(stateDir, 6);
  t.deepEqual(lines, [{ event: 'handover_refused', why: 'no request' }], 'the first refusal is logged, the other five only counted');
  await eventually('the count logged', () => lines.length === 2, quietMs + 5000);
  t.like(lines[1], { event: 'handover_refused', why: 'no request', repeated: 5 });
  t.true(lines[1]!.ms! >= quietMs - 50, `the count covers the quiet period: ${lines[1]!.ms} ms`);

  // A quiet period with no refusal ends the count; the next refusal is a first again, said at once.
  await sleep(quietMs + 500);
  t.is(lines.length, 2, 'a period with nothing to count logs nothing');
  await emptyConnections(stateDir, 1);
  t.deepEqual(lines.slice(2), [{ event: 'handover_refused', why: 'no request' }]);
  t.is(refusals(lines), 7);
});

test('a serving agent asked by empty connections again and again logs a line for the first, and the count when it stops', async (t) => {
  const agent = await startAgentProcess();
  t.teardown(() => agent.stop());
  const stateDir = join(dirname(agent.address.slice('unix://'.length)), 'state');
  const logged = () =>
    agent
      .stderr()
      .split('\n')
      .filter((l) => l.includes('"event":"handover_refused"'))
      .map((l) => JSON.parse(l) as Line);
  // As lingering agents ask: each is refused after the second it waits for a request.
  await emptyConnections(stateDir, 8);
  await eventually('the first refusal logged', () => logged().length > 0);
  t.is(logged().length, 1, 'one line for 8 refusals of one kind');
  agent.child.kill('SIGTERM');
  await eventually('the agent to stop', () => agent.child.exitCode !== null, 20_000);
  t.is(agent.child.exitCode, 0);
  const lines = logged();
  t.is(lines.length, 2, 'and one with the count at the stop');
  t.like(lines[1], { why: 'no request', repeated: 7 });
  t.is(refusals(lines), 8);
});
