// `pidfdctl spawn --tty --attach`: this terminal becomes the process's. Keys go over WriteStdin as
// typed (raw mode: the remote pty does the line editing and echo), what it shows comes back over
// ReadOutput, and each resize of this window is forwarded with ResizeTerminal.
import { OutputStream, type AgentClient } from './client.js';
import { exitStatusOf } from './format.js';
import { copyOutput } from './logs-and-attach.js';

/** This terminal's size, or the classic 24x80 when stdout is not one. */
export const localSize = (): { rows: number; cols: number } =>
  process.stdout.isTTY ? { rows: process.stdout.rows, cols: process.stdout.columns } : { rows: 24, cols: 80 };

/** Resolves with the process's status, like `wait`, once it has exited and its output is drained. */
export async function attachTerminal(client: AgentClient, handle: string): Promise<number> {
  const stdin = process.stdin;
  const raw = stdin.isTTY === true;
  if (raw) stdin.setRawMode(true);
  const onResize = () => void client.resizeTerminal({ handle, size: localSize() }).catch(() => undefined);
  process.stdout.on('resize', onResize);
  const feeding = (async () => {
    for await (const chunk of stdin) await client.writeStdin({ handle, data: chunk as Buffer });
  })().catch(() => undefined); // the process exited: what it did not read is of no use to it
  try {
    await copyOutput(client, handle, OutputStream.OUTPUT_STREAM_STDOUT, true, process.stdout);
    const { process: done } = await client.wait({ handle });
    return exitStatusOf(done!.exit);
  } finally {
    process.stdout.off('resize', onResize);
    if (raw) stdin.setRawMode(false);
    stdin.destroy();
    void feeding;
  }
}
