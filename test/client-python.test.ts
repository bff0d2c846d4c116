// The Python client (clients/python): generated from proto/ by protoc and grpc's python plugin
// from Debian, run with Debian's python3-grpcio against a real agent.
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';
import { startHarness, tempDir } from './helpers/harness.js';
import { checkExampleOutput, checkGenerated } from './helpers/clients.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3'; // Debian's, where python3-grpcio is installed

test('the generated Python matches proto/ (regenerate with make proto)', (t) =>
  checkGenerated(t, 'buf.gen.python.yaml', 'clients/python', (p) => !p.includes('/_googleapis/') && (p.endsWith('_pb2.py') || p.endsWith('_pb2_grpc.py'))));

test('the generated google.rpc Python matches proto/google/rpc (regenerate with make proto)', (t) =>
  checkGenerated(t, 'buf.gen.python-rpc.yaml', 'clients/python/pidfd_agent/_googleapis', (p) => p.endsWith('_pb2.py')));

test('the Python example spawns, watches, waits, signals and gets the error reason', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  // Asynchronously: the agent under test runs on this process's event loop.
  const { stdout } = await run(PYTHON, ['-B', join(ROOT, 'clients/python/examples/spawn_and_wait.py'), h.address]);
  checkExampleOutput(t, stdout);
});

test("Python's list_all (sync and asyncio) lists every page, with the first page's sequence", async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const { results } = await h.client.spawnBatch({ requests: Array.from({ length: 8 }, (_, i) => ({ argv: ['true'], labels: { set: i < 7 ? 'paged' : 'other' } })) });
  // Exited, so the sequence stays as it is while Python lists.
  await Promise.all(results.map((r) => h.client.wait({ handle: r.spawned!.process!.handle })));
  const { sequence } = await h.client.list({ pageSize: 1 });
  const script = [
    'import asyncio, sys; sys.path.insert(0, sys.argv[2])',
    'from pidfd_agent import Agent, pb',
    'from pidfd_agent import aio',
    'request = pb.ListRequest(labels={"set": "paged"}, page_size=2)',
    'def show(r): print(len(r.processes), len({p.handle for p in r.processes}), r.sequence, repr(r.next_page_token), request.page_token == "")',
    'with Agent(sys.argv[1]) as agent:',
    '    show(agent.list_all(request))',
    '    show(agent.list_all())',
    'async def main():',
    '    async with aio.Agent(sys.argv[1]) as agent:',
    '        show(await agent.list_all(request))',
    'asyncio.run(main())',
  ].join('\n');
  const { stdout } = await run(PYTHON, ['-B', '-c', script, h.address, join(ROOT, 'clients/python')]);
  t.deepEqual(stdout.trim().split('\n'), [`7 7 ${sequence} '' True`, `8 8 ${sequence} '' True`, `7 7 ${sequence} '' True`]);
});

test('Python errors carry the errno name and the field', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const script = [
    'import sys; sys.path.insert(0, sys.argv[2])',
    'from pidfd_agent import Agent, AgentError, pb',
    'with Agent(sys.argv[1]) as agent:',
    '    try:',
    '        agent.spawn(pb.SpawnRequest(argv=["/no/such/program"]))',
    '    except AgentError as e:',
    '        print(e.code.name, e.reason, e.info.get("field"), e.info.get("path"))',
  ].join('\n');
  const { stdout } = await run(PYTHON, ['-B', '-c', script, h.address, join(ROOT, 'clients/python')]);
  t.is(stdout.trim(), 'NOT_FOUND ENOENT argv[0] /no/such/program');
});

test('with googleapis-common-protos installed, Python errors decode through its google.rpc, registered once', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  // Stands in for googleapis-common-protos (not packaged by Debian): the same upstream files as
  // top-level google.rpc modules, which the client must prefer to its own copy.
  const site = tempDir('pidfd-agent-googleapis-');
  mkdirSync(join(site, 'google/rpc'), { recursive: true });
  for (const f of ['status_pb2.py', 'error_details_pb2.py']) cpSync(join(ROOT, 'clients/python/pidfd_agent/_googleapis/google/rpc', f), join(site, 'google/rpc', f));
  const script = [
    'import sys; sys.path[:0] = [sys.argv[2], sys.argv[3]]',
    'import google.rpc.error_details_pb2 as upstream',
    'from pidfd_agent import Agent, AgentError, pb, _errors',
    'assert _errors.error_details_pb2 is upstream, _errors.error_details_pb2',
    'assert not any(m.startswith("pidfd_agent._googleapis") for m in sys.modules), sorted(sys.modules)',
    'with Agent(sys.argv[1]) as agent:',
    '    try:',
    '        agent.get(pb.GetRequest(handle="nosuchhandle"))',
    '    except AgentError as e:',
    '        print(e.code.name, e.reason)',
  ].join('\n');
  const { stdout } = await run(PYTHON, ['-B', '-c', script, h.address, join(ROOT, 'clients/python'), site]);
  t.is(stdout.trim(), 'NOT_FOUND UNKNOWN_HANDLE');
});
