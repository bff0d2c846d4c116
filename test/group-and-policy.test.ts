// Issue 10's two locks, together, on one agent: the file system decides who may connect (the
// socket group), and the policy decides what a connected caller may do. Clients are real processes
// of other uids; membership is a real supplementary group, as a login would give it.
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { status } from '../clients/ts/src/index.js';
import { startHarness, tempDir } from './helpers/harness.js';
import { asUser } from './helpers/tenant.js';

/** A gid no group name has here, so only this test's clients are in it. */
const SOCKET_GID = 4329;
/** Not in the group, yet the policy would grant it everything a tenant gets. */
const OUTSIDER = 2101;
const MEMBER_A = 2102;
const MEMBER_B = 2103;
const NOBODY = 65534;

const uidOf = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

const tenantRule = (name: string, uid: number) => `
  - name: ${name}
    identities: ["unix:uid=${uid}"]
    role: tenant
    allow: [spawn, signal, read, release]
    spawn:
      run_as: ["nobody"]
      executables: ["/usr/bin/*", "/bin/*"]`;

test('a uid outside the socket group cannot connect; one in it can do exactly what its rule grants', async (t) => {
  const policyFile = join(tempDir('pidfd-agent-group-policy-'), 'policy.yaml');
  writeFileSync(policyFile, `rules:${tenantRule('outsider', OUTSIDER)}${tenantRule('member-a', MEMBER_A)}${tenantRule('member-b', MEMBER_B)}\n`);
  // No shareSocket(): the agent's own modes (directory 0750, socket 0660, group SOCKET_GID) decide.
  const h = await startHarness({ socketGroup: String(SOCKET_GID), policyFile });
  t.teardown(() => h.close());
  t.is(statSync(h.dir).gid, SOCKET_GID);

  const [outside] = await asUser(OUTSIDER, h.address, [{ op: 'list' }], []);
  t.is(outside!.error?.code, status.UNAVAILABLE);
  t.regex(outside!.error!.details, /EACCES/, 'refused by the kernel at connect, before any policy');

  const [theirs] = await asUser(MEMBER_B, h.address, [{ op: 'spawn', req: { argv: ['sleep', '30'], user: 'nobody' } }], [SOCKET_GID]);
  const other = theirs!.ok.process.handle as string;

  const mine = await asUser(MEMBER_A, h.address, [{ op: 'spawn', req: { argv: ['sleep', '30'], user: 'nobody' } }], [SOCKET_GID]);
  const { handle, pid } = mine[0]!.ok.process;
  t.is(uidOf(pid), NOBODY, 'spawned as the rule allows');

  const [asRoot, elsewhere, adopt, signalOther, getOther, list, get, kill] = await asUser(
    MEMBER_A,
    h.address,
    [
      { op: 'spawn', req: { argv: ['sleep', '30'], user: 'root' } },
      { op: 'spawn', req: { argv: ['/usr/sbin/nologin'], user: 'nobody' } },
      { op: 'adopt', req: { pid } },
      { op: 'signal', req: { handle: other, signal: 'SIGKILL' } },
      { op: 'get', req: { handle: other } },
      { op: 'list' },
      { op: 'get', req: { handle } },
      { op: 'signal', req: { handle, signal: 'SIGKILL' } },
    ],
    [SOCKET_GID],
  );
  const denied = (o: typeof asRoot, field: string) => {
    t.is(o!.error?.code, status.PERMISSION_DENIED, field);
    t.is(o!.error?.reason, 'POLICY_DENIED', field);
    t.is(o!.error?.info['field'], field);
  };
  denied(asRoot, 'run_as');
  denied(elsewhere, 'executable');
  denied(adopt, 'rpc');
  for (const o of [signalOther, getOther]) {
    t.is(o!.error?.code, status.NOT_FOUND);
    t.is(o!.error?.reason, 'UNKNOWN_HANDLE', "another tenant's handle is one that never existed");
  }
  t.deepEqual(list!.ok.processes.map((p: { handle: string }) => p.handle), [handle]);
  t.is(get!.ok.process.owner, `unix:uid=${MEMBER_A}`);
  t.truthy(kill!.ok, 'its own process it may signal');

  const [theirKill] = await asUser(MEMBER_B, h.address, [{ op: 'signal', req: { handle: other, signal: 'SIGKILL' } }], [SOCKET_GID]);
  t.truthy(theirKill!.ok, "B's process was untouched by A and is still B's to stop");
});
