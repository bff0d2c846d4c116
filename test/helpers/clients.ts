// What the client tests share: generated code checked against proto/, and the output every
// language's spawn-and-wait example must print.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { ROOT } from './agent-process.js';

const run = promisify(execFile);

function tree(dir: string, keep: (path: string) => boolean): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (keep(p)) out.set(relative(dir, p), readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out;
}

/** Runs buf generate (with `template`, if any) into a temporary dir and compares `dir` file by file. */
export async function checkGenerated(t: ExecutionContext, template: string | undefined, dir: string, keep: (path: string) => boolean = () => true): Promise<void> {
  const out = mkdtempSync(join(tmpdir(), 'pidfd-agent-gen-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  await run(join(ROOT, 'node_modules/.bin/buf'), ['generate', ...(template ? ['--template', template] : []), '-o', out], { cwd: ROOT });
  const fresh = tree(join(out, dir), keep);
  const committed = tree(join(ROOT, dir), keep);
  t.deepEqual([...fresh.keys()].sort(), [...committed.keys()].sort());
  for (const [path, text] of fresh) t.true(committed.get(path) === text, `${path} drifted from proto/: run make proto`);
}

/** The lines of examples/spawn-and-wait in every language. */
export function checkExampleOutput(t: ExecutionContext, stdout: string): void {
  const expected = [
    /^spawned [a-z2-7]{26} \(pid \d+\)$/,
    /^event \d+: EVENT_TYPE_SPAWNED$/,
    /^event \d+: EVENT_TYPE_EXITED$/,
    /^exited with code 3$/,
    /^signal after exit: FAILED_PRECONDITION: .* \(PROCESS_EXITED\)$/,
    /^sleep 60: killed by signal SIGTERM$/,
  ];
  const lines = stdout.trim().split('\n');
  t.is(lines.length, expected.length, stdout);
  expected.forEach((re, i) => t.regex(lines[i] ?? '', re));
}
