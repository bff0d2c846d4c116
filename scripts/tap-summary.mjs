// Passes ava's TAP output through and ends with the plain line CI reads: "N passed, N failed".
import { createInterface } from 'node:readline';

let passed = 0;
let failed = 0;
for await (const line of createInterface({ input: process.stdin })) {
  console.log(line);
  if (/^not ok \d+/.test(line)) failed++;
  else if (/^ok \d+/.test(line) && !/# (SKIP|TODO)/i.test(line)) passed++;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
