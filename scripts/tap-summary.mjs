// Passes ava's TAP output through and ends with the plain line CI reads: "N passed, N failed".
// Tests that never reported (ava crashed or timed out) count as failed.
import { createInterface } from 'node:readline';

let passed = 0;
let failed = 0;
let planned;
for await (const line of createInterface({ input: process.stdin })) {
  console.log(line);
  const plan = /^1\.\.(\d+)/.exec(line);
  if (plan) planned = Number(plan[1]);
  else if (/^not ok \d+/.test(line)) failed++;
  else if (/^ok \d+/.test(line) && !/# (SKIP|TODO)/i.test(line)) passed++;
}
if (planned === undefined) failed = Math.max(failed, 1);
else if (passed + failed < planned) failed = planned - passed;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
