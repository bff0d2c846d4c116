import { execFile } from 'node:child_process';
import { CLI_BIN } from './agent-process.js';

export interface CliResult {
  readonly code: number;
  readonly stdout: Buffer;
  readonly stderr: string;
}

/**
 * Runs pidfdctl against an agent, asynchronously (a test agent shares the caller's event loop),
 * feeding `input` on stdin; `env` replaces the environment.
 */
export const runCli = (address: string, args: readonly string[], input = '', env?: NodeJS.ProcessEnv): Promise<CliResult> =>
  new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI_BIN, '--addr', address, ...args], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, env }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr: stderr.toString() }),
    );
    child.stdin!.end(input);
  });

/** runCli with stdout as text. */
export async function runCliText(address: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runCli(address, args, '', env);
  return { ...r, stdout: r.stdout.toString() };
}
