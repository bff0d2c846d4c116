// The Go client (clients/go): generated from proto/ by Debian's protoc-gen-go and
// protoc-gen-go-grpc, built offline against Debian's grpc-go, run against a real agent.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';
import { startHarness } from './helpers/harness.js';
import { checkExampleOutput, checkGenerated } from './helpers/clients.js';

const run = promisify(execFile);

test('the generated Go matches proto/ (regenerate with make proto)', (t) => checkGenerated(t, 'buf.gen.go.yaml', 'clients/go', (p) => p.endsWith('.pb.go')));

test('make go-example spawns, watches, waits, signals and gets the error reason through the Go client', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  // Asynchronously: the agent under test runs on this process's event loop.
  const { stdout } = await run('make', ['-s', '--no-print-directory', 'go-example', `ADDR=${h.address}`], { cwd: ROOT, maxBuffer: 1 << 20 });
  checkExampleOutput(t, stdout);
});
