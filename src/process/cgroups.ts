// cgroup v2 placement. The agent only reads and writes cgroupfs files here; the move itself is
// done by the exec helper (it writes "0" to cgroup.procs before exec).
import { closeSync, constants as fsc, existsSync, mkdirSync, openSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import type { Fd } from '../kernel/fd.js';
import { isAbsolute, join, normalize } from 'node:path';
import { AgentError, invalidArgument, notFound } from './errors.js';

export interface CgroupLimits {
  readonly memoryMax?: string;
  readonly cpuMax?: string;
  readonly pidsMax?: string;
}

export type CgroupRequest = { readonly kind: 'existing'; readonly path: string } | ({ readonly kind: 'create' } & CgroupLimits);

/** The cgroup2 mount point from /proc/self/mountinfo (/sys/fs/cgroup, or .../unified on hybrid hosts). */
export function cgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (post?.split(' ')[0] === 'cgroup2') return pre?.split(' ')[4];
  }
  return undefined;
}

const unavailable = (message: string, field: string) => new AgentError('Unsupported', message, { reason: 'CGROUP_UNAVAILABLE', field });

/** Where processes go that ask for no cgroup: its cgroup.procs is held open for the spawn shim. */
export interface DefaultCgroup {
  readonly dir: string;
  readonly procs: Fd;
}

export class Cgroups {
  /** Set by useDefault; owned here until close. */
  defaultCgroup: DefaultCgroup | undefined;

  /** @param parent where per-process cgroups are created and existing paths are resolved. */
  constructor(readonly parent: string | undefined) {}

  /** Creates PARENT/path if missing and keeps its cgroup.procs open (--default-cgroup). */
  useDefault(path: string): void {
    const dir = join(this.ensureParent(), normalize(path));
    mkdirSync(dir, { recursive: true });
    this.defaultCgroup = { dir, procs: openSync(join(dir, 'cgroup.procs'), fsc.O_WRONLY) as Fd }; // libuv adds O_CLOEXEC
  }

  close(): void {
    if (this.defaultCgroup !== undefined) closeSync(this.defaultCgroup.procs);
    this.defaultCgroup = undefined;
  }

  /** The directory a request places the process in; created (with limits) for kind 'create'. */
  prepare(request: CgroupRequest, name: string): { dir: string; created: boolean } {
    const parent = this.ensureParent();
    if (request.kind === 'existing') return { dir: this.existing(parent, request.path), created: false };
    const wanted = ([['memory', 'memory.max', request.memoryMax], ['cpu', 'cpu.max', request.cpuMax], ['pids', 'pids.max', request.pidsMax]] as const).filter(([, , v]) => v !== undefined);
    const available = readFileSync(join(parent, 'cgroup.controllers'), 'utf8').trim().split(/\s+/);
    for (const [controller, file] of wanted) {
      if (!available.includes(controller)) {
        throw unavailable(`cgroup.${file.replace('.', '_')}: the ${controller} controller is not available in ${parent} (cgroup.controllers: "${available.join(' ')}")`, `cgroup.${file.replace('.', '_')}`);
      }
    }
    const enable = wanted.map(([c]) => `+${c}`).join(' ');
    if (enable) writeFileSync(join(parent, 'cgroup.subtree_control'), enable);
    const dir = join(parent, name);
    mkdirSync(dir);
    try {
      for (const [, file, value] of wanted) writeFileSync(join(dir, file), value!);
    } catch (e) {
      rmdirSync(dir);
      throw invalidArgument(`cgroup`, `writing limits: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    return { dir, created: true };
  }

  /** Removes a created cgroup; false while it is still populated (descendants alive): retry later. */
  remove(dir: string): boolean {
    try {
      rmdirSync(dir);
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return code === 'ENOENT';
    }
  }

  private ensureParent(): string {
    if (this.parent === undefined) throw unavailable('cgroup: no cgroup v2 hierarchy is mounted on this node', 'cgroup');
    mkdirSync(this.parent, { recursive: true });
    return this.parent;
  }

  private existing(parent: string, path: string): string {
    const rel = normalize(path);
    if (path === '' || isAbsolute(path) || rel === '..' || rel.startsWith('../')) {
      throw invalidArgument('cgroup.path', `${JSON.stringify(path)} must be relative to the cgroup parent and stay inside it`);
    }
    const dir = join(parent, rel);
    if (!existsSync(join(dir, 'cgroup.procs')) || !statSync(dir).isDirectory()) {
      throw notFound(`cgroup.path: ${dir} is not a cgroup`, { reason: 'ENOENT', field: 'cgroup.path', path: dir });
    }
    return dir;
  }
}
