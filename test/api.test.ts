import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';
import { startHarness, type Harness } from './helpers/harness.js';
import { checkGenerated } from './helpers/clients.js';

const run = promisify(execFile);
const BUF = join(ROOT, 'node_modules/.bin/buf');

let h: Harness;
test.before(async () => {
  h = await startHarness();
});
test.after.always(async () => {
  await h?.close();
});

test('the generated TypeScript matches proto/ (regenerate with make proto)', (t) => checkGenerated(t, undefined, 'clients/ts/src/gen'));

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
