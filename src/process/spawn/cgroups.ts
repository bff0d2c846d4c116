// cgroup v2 placement. The agent only reads and writes cgroupfs files here; the move itself is
// done by the spawned child (the exec helper or the spawn shim writes "0" to an open cgroup.procs).
// Every cgroup.procs is opened beneath the parent by openat2, following no symlink and crossing no
// mount: a symlink or bind mount placed under the parent must not move a process into another
// cgroup (and the parent must be cgroupfs itself, where nobody can create symlinks).
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { KernelError } from '../../kernel/errors.js';
import { closeFd, type Fd } from '../../kernel/fd.js';
import { CGROUP2_SUPER_MAGIC, fsType, fsTypeAt, O_WRONLY, openBeneath, openDirectoryPath } from '../../kernel/files.js';
import { dirname, isAbsolute, join, normalize, relative } from 'node:path';
import { AgentError, fromKernel, invalidArgument } from '../errors.js';

export interface CgroupLimits {
  readonly memoryMax?: string;
  readonly cpuMax?: string;
  readonly pidsMax?: string;
}

export type CgroupRequest = { readonly kind: 'existing'; readonly path: string } | ({ readonly kind: 'create' } & CgroupLimits);

/** A cgroup filesystem mounted here: its mount point and, for v1, the super options naming its controllers. */
interface CgroupMount {
  readonly point: string;
  readonly type: 'cgroup' | 'cgroup2';
  readonly options: string;
}

/**
 * The cgroup mounts of /proc/self/mountinfo, the visible one per mount point: a later mount on the
 * same point (a pod's hostPath of the node's /sys/fs/cgroup over the runtime's own) hides earlier ones.
 */
function cgroupMounts(): CgroupMount[] {
  const byPoint = new Map<string, CgroupMount>();
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    const [type, , options = ''] = post?.split(' ') ?? [];
    const point = pre?.split(' ')[4]?.replace(/\\040/g, ' ');
    if (point === undefined) continue;
    if (type === 'cgroup' || type === 'cgroup2') byPoint.set(point, { point, type, options });
    else byPoint.delete(point);
  }
  return [...byPoint.values()];
}

/** The cgroup2 mount point from /proc/self/mountinfo (/sys/fs/cgroup, or .../unified on hybrid hosts). */
export function cgroup2Mount(): string | undefined {
  return cgroupMounts().find((m) => m.type === 'cgroup2')?.point;
}

/** Mount points of the cgroup v1 hierarchies (none on a pure cgroup v2 node). */
export function cgroupV1Mounts(): string[] {
  return cgroupMounts().filter((m) => m.type === 'cgroup').map((m) => m.point);
}

const unavailable = (message: string, field: string) => new AgentError('Unsupported', message, { reason: 'CGROUP_UNAVAILABLE', field });

/** Where processes go that ask for no cgroup: its cgroup.procs is held open for the spawn shim. */
export interface DefaultCgroup {
  readonly dir: string;
  readonly procs: Fd;
}

const CGROUP_SUPER_MAGIC = 0x27e0eb;

/**
 * POINT/rel in a v1 hierarchy, created level by level if missing (a new cpuset cgroup has no CPUs
 * or memory nodes, and nobody can join it until it gets its parent's), with its cgroup.procs open.
 */
function v1Cgroup(point: string, rel: string): Fd {
  const pointFd = openDirectoryPath(point);
  try {
    if (fsType(pointFd) !== CGROUP_SUPER_MAGIC) throw new Error(`not a cgroup v1 filesystem (f_type ${hex(fsType(pointFd))})`);
    let dir = point;
    for (const part of rel.split('/')) {
      const parent = dir;
      dir = join(dir, part);
      if (existsSync(dir)) continue;
      mkdirSync(dir);
      for (const file of ['cpuset.cpus', 'cpuset.mems']) {
        if (existsSync(join(dir, file)) && readFileSync(join(dir, file), 'utf8').trim() === '') writeFileSync(join(dir, file), readFileSync(join(parent, file), 'utf8'));
      }
    }
    return openBeneath(pointFd, join(rel, 'cgroup.procs'), O_WRONLY);
  } finally {
    closeFd(pointFd);
  }
}

/** The parent is not on cgroup2 (a startup error: the agent refuses to run with it). */
export class CgroupParentError extends Error {}

const hex = (n: number) => `0x${n.toString(16)}`;

export class Cgroups {
  /** Set by useDefault; owned here until close. */
  defaultCgroup: DefaultCgroup | undefined;

  /**
   * @param parent where per-process cgroups are created and existing paths are resolved. Throws
   * CgroupParentError unless it is (or, not created yet, would be) on a cgroup2 filesystem.
   */
  constructor(readonly parent: string | undefined) {
    if (parent === undefined) return;
    let existing = parent;
    while (!existsSync(existing)) existing = dirname(existing);
    const type = fsTypeAt(existing);
    if (type !== CGROUP2_SUPER_MAGIC) {
      const mount = cgroup2Mount();
      const found = mount === undefined ? 'no cgroup2 filesystem is mounted here' : `the cgroup2 mount here is ${mount}: use a directory under it, or leave --cgroup-parent out for ${mount}/pidfd-agent`;
      throw new CgroupParentError(`--cgroup-parent ${parent}: ${existing} is not on a cgroup v2 filesystem (f_type ${hex(type)}, cgroup2 is ${hex(CGROUP2_SUPER_MAGIC)}); ${found}`);
    }
  }

  /**
   * The cgroup.procs of the v1 hierarchies' cgroups every child also moves into (set by
   * useDefault on cgroup v1 and hybrid nodes; owned here until close).
   */
  v1Procs: readonly Fd[] = [];
  /** Their directories, one per mounted v1 hierarchy. */
  v1Dirs: readonly string[] = [];

  /**
   * Creates PARENT/path if missing and keeps its cgroup.procs open (--default-cgroup). Where cgroup
   * v1 hierarchies are mounted (v1 and hybrid nodes), also the same path relative to the cgroup2
   * root in each of them: a pod's runtime kills what is in the pod's v1 cgroups too.
   */
  useDefault(path: string): void {
    const rel = normalize(path);
    this.withParent((parentFd) => {
      mkdirSync(join(this.parent!, rel), { recursive: true });
      this.defaultCgroup = { dir: join(this.parent!, rel), procs: openBeneath(parentFd, join(rel, 'cgroup.procs'), O_WRONLY) };
    });
    const v1 = cgroupV1Mounts();
    if (v1.length === 0) return;
    const mount = cgroup2Mount();
    const fromRoot = mount === undefined ? '..' : relative(mount, this.defaultCgroup!.dir);
    if (fromRoot.startsWith('..') || isAbsolute(fromRoot)) {
      throw new CgroupParentError(`--default-cgroup ${path}: ${this.defaultCgroup!.dir} is not under the cgroup2 mount ${mount ?? '(none)'}, so it has no path in the cgroup v1 hierarchies (${v1.join(', ')})`);
    }
    const procs: Fd[] = [];
    const dirs: string[] = [];
    try {
      for (const point of v1) {
        dirs.push(join(point, fromRoot));
        procs.push(v1Cgroup(point, fromRoot));
      }
    } catch (e) {
      for (const fd of procs) closeFd(fd);
      throw new CgroupParentError(`--default-cgroup ${path}: cgroup v1 hierarchy ${dirs.at(-1)}: ${(e as Error).message}`, { cause: e });
    }
    this.v1Procs = procs;
    this.v1Dirs = dirs;
  }

  close(): void {
    if (this.defaultCgroup !== undefined) closeFd(this.defaultCgroup.procs);
    this.defaultCgroup = undefined;
    for (const fd of this.v1Procs) closeFd(fd);
    this.v1Procs = [];
  }

  /**
   * The directory a request places the process in (created, with limits, for kind 'create') and
   * its cgroup.procs, open for writing: the caller owns and closes `procs`.
   */
  prepare(request: CgroupRequest, name: string): { dir: string; created: boolean; procs: Fd } {
    return this.withParent((parentFd) => this.place(parentFd, request, name));
  }

  private place(parentFd: Fd, request: CgroupRequest, name: string): { dir: string; created: boolean; procs: Fd } {
    const parent = this.parent!;
    if (request.kind === 'existing') return this.existing(parentFd, request.path);
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
      return { dir, created: true, procs: openBeneath(parentFd, join(name, 'cgroup.procs'), O_WRONLY) };
    } catch (e) {
      rmdirSync(dir);
      throw fromKernel(e, { what: `cgroup ${dir}`, field: 'cgroup', path: dir, otherwise: 'InvalidArgument', note: e instanceof KernelError ? undefined : 'writing limits' });
    }
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

  /** Runs fn with an O_PATH fd of the parent (created if missing), closed again after. */
  private withParent<T>(fn: (parentFd: Fd) => T): T {
    if (this.parent === undefined) throw unavailable('cgroup: no cgroup v2 hierarchy is mounted on this node', 'cgroup');
    mkdirSync(this.parent, { recursive: true });
    const fd = openDirectoryPath(this.parent);
    try {
      // Checked again on the fd everything is resolved beneath: the path may have changed since startup.
      if (fsType(fd) !== CGROUP2_SUPER_MAGIC) {
        throw new AgentError('FailedPrecondition', `cgroup: the cgroup parent ${this.parent} is not on cgroup2`, { reason: 'CGROUP_PARENT', field: 'cgroup', path: this.parent });
      }
      return fn(fd);
    } finally {
      closeFd(fd);
    }
  }

  private existing(parentFd: Fd, path: string): { dir: string; created: boolean; procs: Fd } {
    const rel = normalize(path);
    if (path === '' || isAbsolute(path) || rel === '..' || rel.startsWith('../')) {
      throw invalidArgument('cgroup.path', `${JSON.stringify(path)} must be relative to the cgroup parent and stay inside it`);
    }
    const dir = join(this.parent!, rel);
    try {
      return { dir, created: false, procs: openBeneath(parentFd, join(rel, 'cgroup.procs'), O_WRONLY) };
    } catch (e) {
      if (!(e instanceof KernelError)) throw e;
      const note = e.code === 'ELOOP' || e.code === 'EXDEV' ? 'it leads through a symlink or out of the cgroup parent' : e.code === 'ENOENT' || e.code === 'ENOTDIR' ? 'not a cgroup' : undefined;
      throw fromKernel(e, { what: `cgroup.path: ${dir}`, field: 'cgroup.path', path: dir, note });
    }
  }
}
