// pidfdctl's captured-output commands: `logs` and `spawn --attach`.
import { once } from 'node:events';
import { OutputStream, StdinMode, type AgentClient } from './client.js';
import { exitStatusOf } from './format.js';

/** Waits while out is full, so a slow terminal or pipe slows the stream rather than growing memory. */
async function write(out: NodeJS.WritableStream, data: Buffer): Promise<void> {
  if (!out.write(data)) await once(out, 'drain');
}

/** Copies a captured stream to out as raw bytes; a gap the agent's ring overwrote is noted on stderr. */
export async function copyOutput(client: AgentClient, handle: string, stream: OutputStream, follow: boolean, out: NodeJS.WritableStream): Promise<void> {
  const name = stream === OutputStream.OUTPUT_STREAM_STDERR ? 'stderr' : 'stdout';
  for await (const r of client.readOutput({ handle, stream, follow })) {
    if (r.lostBytes > 0) process.stderr.write(`pidfdctl: ${r.lostBytes} bytes of ${name} were lost (overwritten in the agent's ring)\n`);
    if (r.data.length > 0) await write(out, r.data);
  }
}

/** Forwards this process's stdin to the process's stdin pipe, then closes it. */
async function feedStdin(client: AgentClient, handle: string): Promise<void> {
  try {
    for await (const chunk of process.stdin) await client.writeStdin({ handle, data: chunk as Buffer });
    await client.closeStdin({ handle });
  } catch {
    // The process exited or closed its stdin: what it did not read is of no use to it any more.
  }
}

/**
 * `spawn --attach`: streams the captured stdout and stderr here until the process has exited and
 * its pipes are drained, then returns its status like `wait` does.
 */
export async function attach(client: AgentClient, handle: string, captured: { stdout: boolean; stderr: boolean }, stdin: boolean): Promise<number> {
  const copies: Promise<void>[] = [];
  if (captured.stdout) copies.push(copyOutput(client, handle, OutputStream.OUTPUT_STREAM_STDOUT, true, process.stdout));
  if (captured.stderr) copies.push(copyOutput(client, handle, OutputStream.OUTPUT_STREAM_STDERR, true, process.stderr));
  if (stdin) void feedStdin(client, handle);
  try {
    await Promise.all(copies);
    const { process: done } = await client.wait({ handle });
    return exitStatusOf(done!.exit);
  } finally {
    if (stdin) process.stdin.destroy();
  }
}

/** `logs HANDLE [-f] [--stderr]`: the captured stream as raw bytes on stdout. */
export async function logs(client: AgentClient, handle: string, stderr: boolean, follow: boolean): Promise<number> {
  await copyOutput(client, handle, stderr ? OutputStream.OUTPUT_STREAM_STDERR : OutputStream.OUTPUT_STREAM_STDOUT, follow, process.stdout);
  return 0;
}

export function stdinMode(text: string | undefined): StdinMode {
  if (text === undefined || text === 'null') return StdinMode.STDIN_MODE_UNSPECIFIED;
  if (text === 'pipe') return StdinMode.STDIN_MODE_PIPE;
  throw new Error(`--stdin expects null or pipe, got ${JSON.stringify(text)}`);
}

/**
 * `logs` has its own flags: there `--stderr` is a switch, for `spawn` it takes a destination.
 * The switch is rewritten to a value so one parser serves both.
 */
export function logsArgs(argv: string[]): string[] {
  const end = argv.indexOf('--');
  const command = argv.find((a, i) => !a.startsWith('-') && argv[i - 1] !== '--addr' && (end < 0 || i < end));
  if (command !== 'logs') return argv;
  return argv.map((a, i) => (a === '--stderr' && (end < 0 || i < end) ? '--stderr=stderr' : a));
}
