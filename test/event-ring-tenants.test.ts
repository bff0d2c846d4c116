// The event ring is shared fairly between owners: a tenant that turns it over gives up its own
// events, so another tenant's Watch resumes from its cursor with every one of its events, while
// the flooding tenant's old cursor and an admin's (who sees everyone's) expire.
import test, { type ExecutionContext } from 'ava';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentCallError, status, type AgentClient } from '../clients/ts/src/index.js';
import { agentDir, eventually, startHarness, tempDir, type Harness } from './helpers/harness.js';
import { RestartableAgent, Subreaper } from './helpers/subreaper.js';
import { asUser, oneAs, shareSocket } from './helpers/tenant.js';

const A = 1001;
const B = 1002;
const RING = 64;

const policyDir = tempDir('pidfd-agent-ring-policy-');
const policyFile = join(policyDir, 'policy.yaml');
const tenant = (uid: number) => `
  - name: tenant-${uid}
    identities: ["unix:uid=${uid}"]
    role: tenant
    spawn:
      run_as: ["${uid}"]
      executables: ["/usr/bin/*", "/bin/*"]`;
writeFileSync(policyFile, `rules:\n  - name: root\n    identities: ["unix:uid=0"]\n    role: admin${tenant(A)}${tenant(B)}\n`);

const reaper = Subreaper.start();
let h: Harness;
test.before(async () => {
  h = await startHarness({ policyFile, eventRing: RING });
  shareSocket(h);
});
test.after.always(async () => {
  await h?.close();
  await reaper.close();
});

interface WatchedEvent {
  readonly sequence: number;
  readonly process: { readonly handle: string; readonly owner: string };
}

/** What the scenario left for the checks: each one's cursor from before A's flood, and B's handles. */
interface Before {
  readonly cursorA: number;
  readonly cursorB: number;
  readonly cursorAdmin: number;
  readonly first: string;
  readonly second: string;
}

/**
 * B watches its first process, goes away, starts a second; then A starts twice the ring's worth
 * of short processes (a spawned and an exited event each).
 */
async function floodWhileBIsAway(t: ExecutionContext, address: string, admin: AgentClient): Promise<Before> {
  const sleeper = (uid: number) => ({ op: 'spawn', req: { argv: ['/bin/sleep', '30'], user: String(uid) } });
  const [first, seen] = await asUser(B, address, [sleeper(B), { op: 'watch', req: { afterSequence: 0 }, ms: 500 }]);
  const cursorB = Math.max(...(seen!.ok as WatchedEvent[]).map((e) => e.sequence));
  // B's watcher is gone; one more event of B's happens before A's flood.
  const second = await oneAs(B, address, sleeper(B));
  t.teardown(() => asUser(B, address, [{ op: 'stop', req: { handle: first!.ok.process.handle, signal: 'KILL' } }, { op: 'stop', req: { handle: second.ok.process.handle, signal: 'KILL' } }]).catch(() => undefined));
  const { sequence: cursorAdmin } = await admin.list();
  const cursorA = (await oneAs(A, address, { op: 'list' })).ok.sequence as number;

  const churn = Array.from({ length: RING }, () => ({ op: 'spawn', req: { argv: ['/bin/true'], user: String(A) } }));
  const [spawned] = await asUser(A, address, [{ op: 'together', calls: churn, inFlight: 8 }]);
  t.true((spawned!.ok as { ok?: unknown }[]).every((o) => o.ok !== undefined), 'every spawn of the flood started');
  await eventually('the flood to turn the ring over', async () => (await admin.list()).sequence >= cursorAdmin + 2 * RING, 20_000);
  return { cursorA, cursorB, cursorAdmin, first: first!.ok.process.handle, second: second.ok.process.handle };
}

async function checkCursors(t: ExecutionContext, address: string, admin: AgentClient, before: Before): Promise<void> {
  const [resumed, whole] = await asUser(B, address, [
    { op: 'watch', req: { afterSequence: before.cursorB }, ms: 500 },
    { op: 'watch', req: { afterSequence: 0 }, ms: 500 },
  ]);
  t.is(resumed!.error, undefined, `B resumes from ${before.cursorB}: ${JSON.stringify(resumed!.error)}`);
  t.deepEqual((resumed!.ok as WatchedEvent[]).map((e) => e.process.handle), [before.second], 'with the one event of its own it had not seen');
  t.deepEqual((whole!.ok as WatchedEvent[]).map((e) => e.process.handle), [before.first, before.second], 'and its whole history is still there');

  const stale = await oneAs(A, address, { op: 'watch', req: { afterSequence: before.cursorA }, ms: 500 });
  t.is(stale.error?.code, status.OUT_OF_RANGE, "A's own events after its cursor went");
  t.is(stale.error?.reason, 'CURSOR_EXPIRED');

  const expired = await (async () => {
    for await (const _ of admin.watch({ afterSequence: before.cursorAdmin })) break;
  })().catch((e: unknown) => e);
  t.true(expired instanceof AgentCallError && expired.code === status.OUT_OF_RANGE && expired.reason === 'CURSOR_EXPIRED', `an admin sees A's events too: ${String(expired)}`);
}

test.serial("a tenant that turns the ring over expires only its own cursor: another tenant resumes with all its events, an admin's old cursor expires", async (t) => {
  const before = await floodWhileBIsAway(t, h.address, h.client);
  await checkCursors(t, h.address, h.client, before);
});

test.serial('after a handover the successor decides cursors as its predecessor did: the ring goes over with the holes and marks it had', async (t) => {
  const { dir, stateDir, address } = agentDir('pidfd-agent-ring-handover-');
  const share = () => {
    chmodSync(dir, 0o711);
    chmodSync(join(dir, 'agent.sock'), 0o666);
  };
  const args = ['--policy', policyFile, '--event-ring', String(RING)];
  const old = await RestartableAgent.start(reaper, dir, stateDir, args);
  share();
  const before = await floodWhileBIsAway(t, address, old.client);
  const { agent, oldEnded } = await RestartableAgent.takeOver(reaper, dir, stateDir, old, args);
  t.teardown(() => agent.stop());
  t.is(oldEnded, 'exit 0');
  share();
  await checkCursors(t, address, agent.client, before);
});

test.serial("a tenant's blocked Watch is not dropped when another tenant turns the ring over: it reads on, every one of its events", async (t) => {
  const ring = 1024;
  // --watch-backlog as the flag parser caps it: below the ring.
  const small = await startHarness({ policyFile, eventRing: ring, watchBacklog: ring - 1 });
  t.teardown(() => small.close());
  shareSocket(small);
  const go = join(small.dir, 'go');
  const { sequence: start } = await small.client.list();
  const stalled = asUser(B, small.address, [{ op: 'stalledWatch', req: { afterSequence: start }, text: go, ms: 2000 }]);
  // A failed assertion ends the test: the client must not wait for its go forever.
  t.teardown(() => writeFileSync(go, ''));
  await eventually("B's Watch to open", () => small.agent.watchers.stats().length === 1, 20_000);
  const spawns = (uid: number, n: number, inFlight: number) => ({ op: 'together', calls: Array.from({ length: n }, () => ({ op: 'spawn', req: { argv: ['/bin/true'], user: String(uid) } })), inFlight });
  // Its own events one by one, each its own response, until its transport takes no more.
  for (let i = 0; i < 20 && small.agent.watchers.stats()[0]!.buffered < 17; i++) await asUser(B, small.address, [spawns(B, 20, 1)]);
  t.true(small.agent.watchers.stats()[0]!.buffered >= 17, 'blocked');
  await asUser(A, small.address, [spawns(A, ring + 100, 16)]);
  await eventually('the flood to turn the ring over', () => (small.agent.watchers.stats()[0]?.behind ?? Infinity) > 2 * ring, 20_000);
  t.is(small.agent.watchers.stats().length, 1, "still open: none of the events it would be sent went, A's own went");
  const [own] = await asUser(B, small.address, [{ op: 'watch', req: { afterSequence: start }, ms: 1000 }]);
  writeFileSync(go, '');
  const [read] = await stalled;
  t.is(read!.ok.status, null, 'not ended');
  t.is(read!.ok.events, (own!.ok as unknown[]).length, 'it reads every event of its own');
});
