// The Python client (clients/python): generated from proto/ by protoc and grpc's python plugin
// from Debian, run with Debian's python3-grpcio against a real agent.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';
import { startHarness } from './helpers/harness.js';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3'; // Debian's, where python3-grpcio is installed

function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('_pb2.py') || p.endsWith('_pb2_grpc.py')) out.set(relative(dir, p), readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

test('the generated Python matches proto/ (regenerate with make proto)', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'pidfd-agent-gen-py-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  await run(join(ROOT, 'node_modules/.bin/buf'), ['generate', '--template', 'buf.gen.python.yaml', '-o', out], { cwd: ROOT });
  const fresh = tree(join(out, 'clients/python'));
  const committed = tree(join(ROOT, 'clients/python'));
  t.deepEqual([...fresh.keys()].sort(), [...committed.keys()].sort());
  for (const [path, text] of fresh) t.true(committed.get(path) === text, `${path} drifted from proto/: run make proto`);
});

test('the Python example spawns, watches, waits and gets the error reason', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  // Asynchronously: the agent under test runs on this process's event loop.
  const { stdout } = await run(PYTHON, ['-B', join(ROOT, 'clients/python/examples/spawn_and_wait.py'), h.address]);
  const expected = [
    /^spawned [a-z2-7]{26} \(pid \d+\)$/,
    /^event \d+: EVENT_TYPE_SPAWNED$/,
    /^event \d+: EVENT_TYPE_EXITED$/,
    /^exit code 3$/,
    /^signal after exit: FAILED_PRECONDITION: .* \(PROCESS_EXITED\)$/,
  ];
  const lines = stdout.trim().split('\n');
  t.is(lines.length, expected.length, stdout);
  expected.forEach((re, i) => t.regex(lines[i] ?? '', re));
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
