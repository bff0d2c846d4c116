// docs/api.md is generated from the proto comments (scripts/api-docs.ts), and every element of
// the API has a comment.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';
import { apiDocs, undocumented } from '../scripts/api-docs.js';

const run = promisify(execFile);

async function descriptors(): Promise<Buffer> {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-docs-'));
  try {
    await run(join(ROOT, 'node_modules/.bin/buf'), ['build', '-o', join(dir, 'agent.binpb')], { cwd: ROOT });
    return readFileSync(join(dir, 'agent.binpb'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('docs/api.md matches the proto comments (regenerate with make proto)', async (t) => {
  const fresh = apiDocs(await descriptors());
  t.true(fresh === readFileSync(join(ROOT, 'docs/api.md'), 'utf8'), 'docs/api.md drifted from proto/: run make proto');
  for (const rpc of ['Spawn', 'Wait', 'Watch', 'ReadOutput']) t.true(fresh.includes(`### ${rpc}\n`), rpc);
});

test('every service, rpc, message, field and enum value of agent.proto has a comment', async (t) => {
  t.deepEqual(undocumented(await descriptors()), [], 'add a comment in proto/pidfd/agent/v1/agent.proto, then run make proto');
});

test('every rpc documents its errors as CODE / REASON', async (t) => {
  const docs = apiDocs(await descriptors());
  const rpcs = [...docs.matchAll(/^### (\w+)\n\n`rpc [^`]*`\n\n([\s\S]*?)(?=\n### |\n## )/gm)];
  t.true(rpcs.length >= 13, `${rpcs.length} rpcs`);
  for (const [, name, text] of rpcs) t.regex(text ?? '', /\*\*Errors \(code \/ reason\)[^*]*\*\*\n\n- [A-Z_]+ \/ [A-Z_]+/, `${name} lists no errors`);
});
