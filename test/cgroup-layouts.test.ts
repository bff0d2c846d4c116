// --default-cgroup on every cgroup layout (this host is hybrid: v1 controllers under a tmpfs at
// /sys/fs/cgroup, cgroup2 at /sys/fs/cgroup/unified): the child leaves the agent's cgroup in the
// v2 hierarchy *and* in every v1 hierarchy, since a pod's runtime kills by either; and a
// --cgroup-parent that is not on cgroup2 stops the start, naming the cgroup2 mount, creating nothing.
import test from 'ava';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startAgent } from '../src/agent.js';
import { DEFAULTS } from '../src/config/config.js';
import { cgroup2Mount, cgroupV1Mounts } from '../src/process/spawn/cgroups.js';
import { eventually, startHarness, tempDir, tryRmdir } from './helpers/harness.js';

/** /proc/PID/cgroup as hierarchy id → path ("0" is cgroup2). */
function cgroupsOf(pid: number): Map<string, string> {
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  return new Map(lines.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1)]));
}

test.serial('--default-cgroup moves the child out of the agent\'s cgroup in cgroup2 and in every v1 hierarchy', async (t) => {
  const mount = cgroup2Mount()!;
  const v1 = cgroupV1Mounts();
  t.true(v1.length > 0, 'this host is hybrid: the test is about its v1 hierarchies');
  const name = `pidfd-agent-layouts-${process.pid}`;
  const h = await startHarness({ cgroupParent: join(mount, name), defaultCgroup: 'managed' });
  const { process: p } = await h.client.spawn({ argv: ['sleep', '30'] });
  const { process: capturing } = await h.client.spawn({ argv: ['sleep', '30'], stdout: { mode: 3 } });
  t.teardown(async () => {
    await h.close();
    for (const dir of [...v1, mount]) {
      await eventually(`${dir}/${name} removed`, () => (tryRmdir(join(dir, name, 'managed')), tryRmdir(join(dir, name)), !existsSync(join(dir, name))));
    }
  });
  for (const pid of [p!.pid, capturing!.pid]) {
    const paths = cgroupsOf(pid);
    t.is(paths.get('0'), `/${name}/managed`, 'cgroup2');
    t.is(paths.size, v1.length + 1, 'one line per hierarchy');
    for (const [id, path] of paths) t.is(path, `/${name}/managed`, `hierarchy ${id}`);
  }
  for (const dir of v1) t.true(readFileSync(join(dir, name, 'managed', 'cgroup.procs'), 'utf8').split('\n').includes(String(p!.pid)), dir);
  for (const handle of [p!.handle, capturing!.handle]) {
    await h.client.signal({ handle, signal: 'SIGKILL' });
    await h.client.wait({ handle });
  }
});

test.serial('a --cgroup-parent that is not on cgroup2 stops the start, names the cgroup2 mount and creates nothing', async (t) => {
  const mount = cgroup2Mount()!;
  const parent = `/sys/fs/cgroup/pidfd-agent-layouts-${process.pid}`;
  t.not(mount, '/sys/fs/cgroup', 'hybrid: /sys/fs/cgroup is a tmpfs here');
  const before = readdirSync('/sys/fs/cgroup');
  const error = await t.throwsAsync(startAgent({ ...DEFAULTS, listen: [`unix://${join(tempDir('pidfd-agent-cg-'), 's')}`], stateDir: undefined, agentEnv: {}, cgroupParent: parent, defaultCgroup: 'managed' }, () => {}));
  t.regex(error!.message, new RegExp(`^--cgroup-parent ${parent}: /sys/fs/cgroup is not on a cgroup v2 filesystem .*; the cgroup2 mount here is ${mount}: `));
  t.deepEqual(readdirSync('/sys/fs/cgroup'), before, 'no stray directory');
});
