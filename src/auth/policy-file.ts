// --policy FILE: loaded at start (a broken file stops the start), reloaded on SIGHUP and when the
// file changes. A reload swaps the whole policy at once; a broken file keeps the previous one.
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { parsePolicy, PolicyError, type Policy } from './policy.js';
import type { Logger } from '../log.js';
import { lookupUser } from '../kernel/nss.js';
import { sharedUsers } from './shared-users.js';

/** Editors write in steps: changes are read once they have settled this long. */
const SETTLE_MS = 50;

export function readPolicy(path: string): Policy {
  return parseText(path, readText(path));
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new PolicyError(`${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function parseText(path: string, text: string): Policy {
  try {
    return parsePolicy(text);
  } catch (e) {
    throw new PolicyError(`${path}: ${(e as Error).message}`);
  }
}

export class PolicyFile {
  private current: Policy;
  /** The text last read, taken or not: a change event that finds it again has nothing to say. */
  private seen: string;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** Throws PolicyError when the file cannot be read or is not a valid policy. */
  constructor(
    readonly path: string,
    private readonly log: Logger,
  ) {
    this.seen = readText(path);
    this.current = parseText(path, this.seen);
    log('policy_loaded', { path, rules: this.current.rules.length, why: 'start' });
    this.warnShared();
    // The directory, not the file: a file replaced by rename (as editors and config management
    // do) is a new inode that a watch on the old one would never report. And any entry in it, not
    // only the file's name: the kubelet updates a mounted ConfigMap by renaming the `..data`
    // symlink the file's path goes through, and no event names the file itself.
    this.watcher = watch(dirname(path), { persistent: false }, () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.reload('change'), SETTLE_MS);
      this.timer.unref();
    });
    this.watcher.on('error', (e) => log('policy_error', { path, error: String(e), note: 'no longer watching the file; SIGHUP still reloads' }));
  }

  get policy(): Policy {
    return this.current;
  }

  /** True when the file was read and is now in force; else the previous policy stays (logged). */
  reload(why: 'sighup' | 'change'): boolean {
    try {
      const text = readText(this.path);
      if (why === 'change' && text === this.seen) return true;
      this.seen = text;
      this.current = parseText(this.path, text);
      this.log('policy_loaded', { path: this.path, rules: this.current.rules.length, why });
      this.warnShared();
      return true;
    } catch (e) {
      this.log('policy_error', { path: this.path, why, error: (e as Error).message, note: 'keeping the previous policy' });
      return false;
    }
  }

  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** The agent keeps tenants apart; the kernel does so only for different uids. */
  private warnShared(): void {
    for (const { rules, uid } of sharedUsers(this.current, (name) => lookupUser(name)?.uid)) {
      this.log('policy_warning', { path: this.path, rules, uid, note: `both may run processes as ${uid === '*' ? 'any uid' : `uid ${uid}`}: the kernel lets those processes read each other's /proc and signal each other, whatever the agent refuses; give each tenant its own run_as` });
    }
  }
}
