import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';
import { startHarness, tempDir } from './helpers/harness.js';
import { checkExampleOutput } from './helpers/clients.js';

const run = promisify(execFile);

test('the TypeScript client is importable from another project and its example runs', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  // Another project: its node_modules holds only the client package (as `npm install file:` links it).
  const project = tempDir('pidfd-agent-client-user-');
  mkdirSync(join(project, 'node_modules', '@pidfd-agent'), { recursive: true });
  symlinkSync(join(ROOT, 'clients/ts'), join(project, 'node_modules', '@pidfd-agent', 'client'));
  copyFileSync(join(ROOT, 'clients/ts/examples/spawn-and-wait.mjs'), join(project, 'example.mjs'));
  const { stdout } = await run(process.execPath, ['example.mjs', h.address], { cwd: project });
  checkExampleOutput(t, stdout);
});
