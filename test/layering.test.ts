// DESIGN.md's flow, kernel → process → reaper → service, as a rule the imports keep: each room
// of src/ may import only the rooms listed for it, so nothing runs back up.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import test from 'ava';
import { ROOT } from './helpers/agent-process.js';

const SRC = join(ROOT, 'src');

/** Who may import whom (besides itself and the leaf modules log, built-files and api). */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  kernel: [],
  process: ['kernel'],
  reaper: ['kernel', 'process'],
  store: ['kernel', 'process'],
  auth: ['kernel', 'process'],
  transport: ['kernel', 'config'],
  handover: ['kernel', 'process', 'reaper', 'store'],
  service: ['process', 'auth'],
  config: [],
  cli: ['config'],
  // Implements the process room's telemetry port; nothing below it names OpenTelemetry.
  telemetry: ['process'],
};
const LEAVES = new Set(['log', 'built-files', 'api']);
const ROOTS = new Set(['main', 'agent']);

const roomOf = (file: string): string => {
  const parts = relative(SRC, file).split('/');
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/\.[jt]s$/, '');
};

function* sources(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (path.endsWith('.ts')) yield path;
  }
}

test('every import in src/ follows the flow: kernel → process → reaper/store → service, nothing back up', (t) => {
  const offenders: string[] = [];
  let checked = 0;
  for (const file of sources(SRC)) {
    const from = roomOf(file);
    for (const m of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
      const target = normalize(join(dirname(file), m[1]!));
      checked++;
      if (!target.startsWith(SRC)) {
        // Only the two doors reach the generated client package.
        if (!['api', 'cli'].includes(from)) offenders.push(`${relative(ROOT, file)} → ${m[1]}`);
        continue;
      }
      const to = roomOf(target);
      if (to === from || LEAVES.has(to) || ROOTS.has(from)) continue;
      if (!(ALLOWED[from] ?? []).includes(to)) offenders.push(`${relative(ROOT, file)} (${from}) → ${to}: ${m[1]}`);
    }
  }
  t.true(checked > 100, `${checked} imports checked`);
  t.deepEqual(offenders, []);
});
