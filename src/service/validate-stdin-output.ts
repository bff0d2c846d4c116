// Spawn's stdin, capture and output-event fields, and the ReadOutput request → domain options.
import { invalidArgument } from '../process/errors.js';
import type { OutputTarget, SpawnOptions } from '../process/options.js';
import { MAX_CAPTURE_BYTES } from '../process/stdio/pipe-table.js';
import type { StreamName } from '../process/stdio/captured-output.js';
import { OutputMode, OutputStream, StdinMode, type Output, type SpawnRequest } from '../api.js';

export function capture(field: string, o: Output): OutputTarget {
  if (o.ringBytes > MAX_CAPTURE_BYTES) throw invalidArgument(`${field}.ring_bytes`, `at most ${MAX_CAPTURE_BYTES} (64 MiB)`);
  return o.ringBytes === 0 ? { kind: 'capture' } : { kind: 'capture', ringBytes: o.ringBytes };
}

/** Only the non-default values, so a request that uses neither yields no extra fields. */
export function stdinAndEvents(req: SpawnRequest): Pick<SpawnOptions, 'stdin' | 'outputEvents'> {
  let stdin: 'pipe' | undefined;
  switch (req.stdin) {
    case StdinMode.STDIN_MODE_UNSPECIFIED:
    case StdinMode.STDIN_MODE_NULL:
      break;
    case StdinMode.STDIN_MODE_PIPE:
      stdin = 'pipe';
      break;
    default:
      throw invalidArgument('stdin', `unknown mode ${req.stdin}`);
  }
  const captured = [req.stdout, req.stderr].some((o) => o?.mode === OutputMode.OUTPUT_MODE_CAPTURE);
  if (req.outputEvents && !captured) throw invalidArgument('output_events', 'needs stdout or stderr in OUTPUT_MODE_CAPTURE');
  return { ...(stdin && { stdin }), ...(req.outputEvents && { outputEvents: true }) };
}

export function outputStream(s: OutputStream): StreamName {
  if (s === OutputStream.OUTPUT_STREAM_STDOUT) return 'stdout';
  if (s === OutputStream.OUTPUT_STREAM_STDERR) return 'stderr';
  throw invalidArgument('stream', 'must be OUTPUT_STREAM_STDOUT or OUTPUT_STREAM_STDERR');
}
