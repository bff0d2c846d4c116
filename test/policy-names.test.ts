// A rule's names may be resolved from a short cache, the request's never: the user a request names
// is checked as the uid it has now, the uid the spawn will run it as. An account renumbered under
// a running agent is refused at once, not run as its new uid on the strength of its old one.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { AgentCallError, status } from '../clients/ts/src/index.js';
import { startHarness, tempDir, type Harness } from './helpers/harness.js';

const NAME = 'pidfd-renum';
const ALLOWED = 61001;
const LATER = 61002;

let h: Harness;

test.serial('a user renumbered under the agent is checked as its new uid at once', async (t) => {
  try {
    execFileSync('userdel', [NAME], { stdio: 'ignore' });
  } catch {
    // not there: the usual case
  }
  execFileSync('useradd', ['-M', '-N', '-g', '65534', '-s', '/usr/sbin/nologin', '-u', String(ALLOWED), NAME]);
  t.teardown(() => {
    try {
      execFileSync('userdel', [NAME], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  });
  const dir = tempDir('pidfd-agent-names-');
  const policyFile = join(dir, 'policy.yaml');
  writeFileSync(policyFile, `rules:\n  - identities: ["unix:uid=0"]\n    role: tenant\n    spawn:\n      run_as: ["${ALLOWED}"]\n      executables: ["/bin/*", "/usr/bin/*"]\n`);
  h = await startHarness({ policyFile });
  t.teardown(() => h.close());

  const first = await h.client.spawn({ argv: ['/bin/true'], user: NAME });
  t.is((await h.client.wait({ handle: first.process!.handle })).process?.exit?.code, 0, `ran as ${NAME}, uid ${ALLOWED}`);

  execFileSync('usermod', ['-u', String(LATER), NAME]);
  // Asked again at once, within any cache's lifetime: the name is uid 61002 now, which the rule does not allow.
  const e = await t.throwsAsync(h.client.spawn({ argv: ['/bin/true'], user: NAME }), { instanceOf: AgentCallError });
  t.is(e?.code, status.PERMISSION_DENIED, e?.message);
  t.is(e?.reason, 'POLICY_DENIED');
  t.is(e?.info['field'], 'run_as');
  const byNumber = await h.client.spawn({ argv: ['/bin/true'], user: String(ALLOWED) });
  t.is((await h.client.wait({ handle: byNumber.process!.handle })).process?.exit?.code, 0, 'uid 61001 itself is still allowed');
});
