// A SpawnRequest → domain options: the documented defaults, and InvalidArgument naming the field.
import test from 'ava';
import { Output, OutputMode, SpawnRequest } from '../clients/ts/src/gen/pidfd/agent/v1/agent.js';
import { AgentError } from '../src/process/errors.js';
import { LIMITS, spawnOptions } from '../src/service/validate.js';

// Every other field at its proto default, as a client that does not set it would send it.
const request = (overrides: Partial<SpawnRequest>): SpawnRequest => ({ ...SpawnRequest.create(), argv: ['true'], ...overrides });
const output = (mode: OutputMode, path = '', append = false): Output => ({ ...Output.create(), mode, path, append });

test('a minimal spawn request gets the documented defaults', (t) => {
  t.like(spawnOptions(request({})), {
    argv: ['true'],
    env: undefined,
    cwd: undefined,
    labels: {},
    requestId: undefined,
    newSession: true,
    stdout: { kind: 'discard' },
    stderr: { kind: 'discard' },
  });
  const full = spawnOptions(
    request({
      env: { A: '1' },
      cwd: '/tmp',
      labels: { k: 'v' },
      requestId: 'r',
      newSession: false,
      stdout: output(OutputMode.OUTPUT_MODE_FILE, '/tmp/out.log', true),
      stderr: output(OutputMode.OUTPUT_MODE_INHERIT),
    }),
  );
  t.like(full, {
    argv: ['true'],
    env: { A: '1' },
    cwd: '/tmp',
    labels: { k: 'v' },
    requestId: 'r',
    newSession: false,
    stdout: { kind: 'file', path: '/tmp/out.log', append: true },
    stderr: { kind: 'inherit' },
  });
});

test('invalid spawn requests are InvalidArgument naming the field', (t) => {
  const long = 'x'.repeat(LIMITS.stringBytes + 1);
  const cases: [Partial<SpawnRequest>, string][] = [
    [{ argv: [] }, 'argv'],
    [{ argv: [''] }, 'argv[0]'],
    [{ argv: ['echo', 'ok', 'a\0b'] }, 'argv[2]'],
    [{ argv: ['echo', long] }, 'argv[1]'],
    [{ argv: Array.from({ length: LIMITS.argvItems + 1 }, () => 'a') }, 'argv'],
    [{ argv: ['echo', ...Array.from({ length: 9 }, () => 'y'.repeat(LIMITS.totalBytes / 8))] }, 'argv'],
    [{ env: { 'A=B': 'x' } }, 'env[A=B]'],
    [{ env: { '': 'x' } }, 'env[]'],
    [{ env: { A: 'x\0y' } }, 'env[A]'],
    [{ cwd: 'relative/dir' }, 'cwd'],
    [{ cwd: '/tmp\0x' }, 'cwd'],
    [{ labels: { '': 'v' } }, 'labels'],
    [{ labels: { k: 'v'.repeat(LIMITS.labelValueBytes + 1) } }, 'labels[k]'],
    [{ labels: Object.fromEntries(Array.from({ length: LIMITS.labels + 1 }, (_, i) => [`k${i}`, 'v'])) }, 'labels'],
    [{ requestId: 'r'.repeat(LIMITS.requestIdBytes + 1) }, 'request_id'],
    [{ stdout: output(OutputMode.OUTPUT_MODE_FILE, 'rel.log') }, 'stdout.path'],
    [{ stderr: output(OutputMode.OUTPUT_MODE_FILE) }, 'stderr.path'],
    [{ stderr: output(99 as OutputMode) }, 'stderr.mode'],
  ];
  for (const [overrides, field] of cases) {
    const e = t.throws(() => spawnOptions(request(overrides)), { instanceOf: AgentError }, field);
    t.is(e?.kind, 'InvalidArgument', field);
    t.is(e?.detail.field, field, e?.message);
    t.true(e?.message.startsWith(`${field}: `), e?.message);
  }
});
