import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';
import { startHarness, type Harness } from './helpers/harness.js';

const run = promisify(execFile);
const BUF = join(ROOT, 'node_modules/.bin/buf');

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

test('the generated TypeScript matches proto/ (regenerate with make proto)', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'pidfd-agent-gen-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  await run(BUF, ['generate', '-o', out], { cwd: ROOT });
  const fresh = tree(join(out, 'clients/ts/src/gen'));
  const committed = tree(join(ROOT, 'clients/ts/src/gen'));
  t.deepEqual([...fresh.keys()].sort(), [...committed.keys()].sort());
  for (const [path, text] of fresh) t.true(committed.get(path) === text, `${path} drifted from proto/: run make proto`);
});

test('the API is lint-clean with buf', async (t) => {
  const { stdout } = await run(BUF, ['lint'], { cwd: ROOT });
  t.is(stdout, '');
});

const curl = (socket: string, ...args: string[]) =>
  run(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--unix-socket', socket, ...args], { cwd: ROOT });

test('buf curl lists the services through reflection and calls them, health included', async (t) => {
  const socket = h.address.slice('unix://'.length);
  const { stdout: services } = await curl(socket, '--list-services', 'http://localhost');
  const listed = services.trim().split('\n');
  t.true(listed.includes('pidfd.agent.v1.AgentService'), services);
  t.true(listed.includes('grpc.health.v1.Health'), services);
  const health = JSON.parse((await curl(socket, '-d', '{"service":"pidfd.agent.v1.AgentService"}', 'http://localhost/grpc.health.v1.Health/Check')).stdout);
  t.deepEqual(health, { status: 'SERVING' });
  const spawned = JSON.parse((await curl(socket, '-d', '{"argv":["sh","-c","exit 6"]}', 'http://localhost/pidfd.agent.v1.AgentService/Spawn')).stdout);
  const waited = JSON.parse((await curl(socket, '-d', JSON.stringify({ handle: spawned.process.handle }), 'http://localhost/pidfd.agent.v1.AgentService/Wait')).stdout);
  t.is(waited.process.exit.code, 6);
  t.is(waited.process.state, 'STATE_EXITED');
});
