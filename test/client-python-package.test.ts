// clients/python as a package: `pip install` (offline, Debian's pip and grpcio) into a venv, then
// its asyncio client (pidfd_agent.aio) against a real agent, imported from the venv.
import { execFile } from 'node:child_process';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';
import { startHarness, tempDir } from './helpers/harness.js';
import { checkExampleOutput } from './helpers/clients.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3'; // Debian's, where python3-grpcio and python3-pip are installed

test('pip installs clients/python, and its asyncio example spawns, watches, waits, signals and gets the error reason', async (t) => {
  const dir = tempDir('pidfd-agent-pip-');
  // A copy: building the package writes build/ and *.egg-info next to its pyproject.toml.
  cpSync(join(ROOT, 'clients/python'), join(dir, 'src'), { recursive: true, filter: (p) => !p.includes('__pycache__') });
  const venv = join(dir, 'venv');
  await run(PYTHON, ['-m', 'venv', '--without-pip', '--system-site-packages', venv]);
  await run(PYTHON, ['-m', 'pip', '--python', join(venv, 'bin/python'), 'install', '-q', '--no-build-isolation', '--no-index', join(dir, 'src')]);
  const example = join(dir, 'example.py'); // away from the source tree: only the installed package is importable
  cpSync(join(ROOT, 'clients/python/examples/spawn_and_wait_async.py'), example);
  const { stdout: where } = await run(join(venv, 'bin/python'), ['-I', '-c', 'import pidfd_agent.aio; print(pidfd_agent.aio.__file__)']);
  t.true(where.startsWith(join(venv, 'lib')), where);

  const h = await startHarness();
  t.teardown(() => h.close());
  // Asynchronously: the agent under test runs on this process's event loop.
  const { stdout } = await run(join(venv, 'bin/python'), ['-I', example, h.address]);
  checkExampleOutput(t, stdout);
});
