import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { startAgentProcess } from './helpers/agent-process.js';
import { eventually, procState, startHarness, tempDir } from './helpers/harness.js';

const modeOf = (path: string) => statSync(path).mode & 0o777;

test('the state dir is 0700 and its files 0600, even when they existed with wider modes', async (t) => {
  const stateDir = join(tempDir('pidfd-agent-state-'), 'state');
  mkdirSync(stateDir, { mode: 0o755 });
  chmodSync(stateDir, 0o755);
  const check = async (when: string) => {
    const h = await startHarness({ stateDir });
    try {
      const { process: p } = await h.client.spawn({ argv: ['sh', '-c', 'exit 0', 'secret-argument'] });
      await h.client.wait({ handle: p!.handle });
      t.is(modeOf(stateDir), 0o700, `${when}: the dir`);
      const files = readdirSync(stateDir);
      for (const f of ['agent.db', 'agent.db-wal', 'handover.sock']) t.true(files.includes(f), `${when}: ${f} is there (${files.join(' ')})`);
      // Directories in it (capture/) are 0700, like the state dir itself.
      for (const f of files) t.is(modeOf(join(stateDir, f)), statSync(join(stateDir, f)).isDirectory() ? 0o700 : 0o600, `${when}: ${f}`);
    } finally {
      await h.close();
    }
  };
  await check('a fresh store in an existing 0755 dir');
  // A store left world-readable by an older agent.
  chmodSync(stateDir, 0o755);
  for (const f of readdirSync(stateDir)) chmodSync(join(stateDir, f), 0o644);
  t.true(existsSync(join(stateDir, 'agent.db')));
  await check('an existing store');
});

test('a state dir deleted under the agent is noticed within a second: it stops (exit 1) for a fresh agent, and its processes run on', async (t) => {
  const dir = tempDir('pidfd-agent-lost-');
  const stateDir = join(dir, 'state');
  const agent = await startAgentProcess(['--state-dir', stateDir]);
  t.teardown(() => agent.stop());
  const { process: p } = await agent.client.spawn({ argv: ['sleep', '600'] });
  t.teardown(() => process.kill(p!.pid, 'SIGKILL'));
  rmSync(stateDir, { recursive: true, force: true });
  const exited = new Promise<number | null>((resolve) => agent.child.once('exit', (code) => resolve(code)));
  await eventually('the loss noticed', () => agent.stderr().includes('"event":"store_lost"'));
  t.is(await exited, 1, 'it stops, failed: its DaemonSet starts a fresh agent');
  t.regex(agent.stderr(), /"event":"store_lost".*"reason":"state_dir_replaced"/);
  t.regex(agent.stderr(), /"event":"stopping".*"why":"store_lost","reason":"state_dir_replaced"/);
  t.true(['S', 'R'].includes(procState(p!.pid) ?? ''), 'the process it managed runs on');
});
