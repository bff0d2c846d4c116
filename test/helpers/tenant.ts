// Calling the agent as another unix user: a client process run with that uid and gid.
import { execFile } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './agent-process.js';
import type { Harness } from './harness.js';

const FIXTURE = join(ROOT, 'test/fixtures/tenant-client.ts');

export interface CallError {
  readonly code: number;
  readonly reason: string;
  readonly info: Record<string, string>;
  readonly details: string;
}

export type Outcome = { readonly ok: any; readonly error?: undefined } | { readonly ok?: undefined; readonly error: CallError };

export interface TenantCall {
  readonly op: string;
  readonly req?: Record<string, unknown>;
  readonly ms?: number;
  readonly text?: string;
  /** op 'together': these calls at once, at most inFlight at a time; the outcome's ok lists theirs. */
  readonly calls?: readonly TenantCall[];
  readonly inFlight?: number;
}

/** The harness's socket, reachable by any user (its temp dir is 0700, the socket 0660). */
export function shareSocket(h: Harness): void {
  chmodSync(h.dir, 0o711);
  chmodSync(join(h.dir, 'agent.sock'), 0o666);
}

/**
 * Performs `calls` in order as uid (gid = uid) and returns each outcome. With `groups`, the client
 * also has those supplementary groups (through setpriv: Node's own uid switch drops them all).
 */
export function asUser(uid: number, address: string, calls: readonly TenantCall[], groups?: readonly number[]): Promise<Outcome[]> {
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: '/' };
  const client = [process.execPath, '--import', 'tsx', FIXTURE, address, JSON.stringify(calls)];
  const [file, args, ids] =
    groups === undefined
      ? [client[0]!, client.slice(1), { uid, gid: uid }]
      : ['setpriv', [`--reuid=${uid}`, `--regid=${uid}`, groups.length > 0 ? `--groups=${groups.join(',')}` : '--clear-groups', '--', ...client], {}];
  return new Promise((resolve, reject) => {
    execFile(file, args, { ...ids, env, cwd: ROOT, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`tenant client (uid ${uid}) failed: ${stderr}`, { cause: err }));
      else resolve(JSON.parse(stdout) as Outcome[]);
    });
  });
}

/** The one outcome of a single call as uid. */
export async function oneAs(uid: number, address: string, call: TenantCall): Promise<Outcome> {
  const [outcome] = await asUser(uid, address, [call]);
  return outcome!;
}
