// A tenant whose released processes still run (released-across-agents.test.ts,
// handover-resume.test.ts): how it spawns and releases them, how it ends one (by pidfd), and what
// a Spawn past its max_processes answers.
import type { ExecutionContext } from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentCallError, status, type AgentClient } from '../../clients/ts/src/index.js';
import { PidRef } from '../../src/kernel/pid-ref.js';
import { eventually, tempDir } from './harness.js';

const SIGKILL = 9;
const TENANT = 'unix:uid=0';

/** The test's own client is a tenant that may run two processes at once. */
export function policyFile(): string {
  const file = join(tempDir('pidfd-agent-released-policy-'), 'policy.yaml');
  writeFileSync(
    file,
    `rules:
  - identities: ["${TENANT}"]
    role: tenant
    spawn: { run_as: ["nobody"], executables: ["/usr/bin/*", "/bin/*"], max_processes: 2 }
`,
  );
  return file;
}

/** The process is killed (if it still runs) and its pidfd closed when the test ends. */
export function killedAtTeardown(t: ExecutionContext, ref: PidRef): void {
  t.teardown(() => {
    try {
      ref.signal(SIGKILL);
    } catch {
      // exited already
    }
    ref.close();
  });
}

/**
 * Spawns a long sleep and releases it. Its pidfd is the test's way to end it later: opened on the
 * pid the spawn answered while the agent still holds the process (its unreaped child, so the pid
 * cannot name another), and checked against the pidfs inode the agent reported.
 */
export async function spawnAndRelease(t: ExecutionContext, client: AgentClient): Promise<PidRef> {
  const { process: p } = await client.spawn({ argv: ['/bin/sleep', '600'], user: 'nobody' }, { retry: false });
  const ref = PidRef.open(p!.pid);
  killedAtTeardown(t, ref);
  t.is(ref.inode, BigInt(p!.pidfsInode), 'the pidfd names the process spawned');
  await client.release({ handle: p!.handle });
  return ref;
}

/** The next Spawn is refused, naming how many of the running ones are released. */
export async function refusedWith(t: ExecutionContext, client: AgentClient, released: number): Promise<void> {
  const e = await t.throwsAsync(client.spawn({ argv: ['/bin/sleep', '600'], user: 'nobody' }, { retry: false }), { instanceOf: AgentCallError });
  const of = released === 1 ? '1 of them is' : `${released} of them are`;
  t.like(e, { code: status.RESOURCE_EXHAUSTED, reason: 'POLICY_QUOTA', details: `max_processes: at most 2 running processes at once; ${of} released and still running (policy)` });
}

/** Once the released process is killed (through its pidfd) and reaped, its place is free: a Spawn runs. */
export async function placeComesBack(t: ExecutionContext, client: AgentClient, released: PidRef): Promise<void> {
  released.signal(SIGKILL);
  const { process: p } = await eventually('the place of the released process', async () => {
    try {
      return await client.spawn({ argv: ['/bin/sleep', '600'], user: 'nobody' }, { retry: false });
    } catch (e) {
      if (e instanceof AgentCallError && e.reason === 'POLICY_QUOTA') return undefined;
      throw e;
    }
  }, 10_000);
  const ref = PidRef.open(p!.pid);
  killedAtTeardown(t, ref);
  // The other released one still counts: the two places are taken again.
  await refusedWith(t, client, 1);
}

