// The container runtime for `make test-deploy`: podman and runc from Debian, a containers.conf of
// our own (through CONTAINERS_CONF: the host's files are left alone), and the node:20-bookworm
// base images, or local stand-ins for them where no registry can be reached.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Kept between runs: the debootstrap roots take minutes. */
const CACHE = '/var/tmp/pidfd-agent-test-deploy';
const MIRROR = 'http://deb.debian.org/debian';
const PACKAGES = ['podman', 'runc', 'debootstrap'];

export const podman = (args: readonly string[]): string => execFileSync('podman', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

const run = (file: string, args: readonly string[]) => execFileSync(file, args, { stdio: ['ignore', 'inherit', 'inherit'] });

const installed = (pkg: string) => spawnSync('dpkg-query', ['-W', '-f=${db:Status-Status}', pkg]).stdout?.toString() === 'installed';

export function ensureRuntime(): void {
  const missing = PACKAGES.filter((p) => !installed(p));
  if (missing.length > 0) {
    console.log(`# apt-get install ${missing.join(' ')}`);
    run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'update']);
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '--no-install-recommends', ...missing], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  mkdirSync(CACHE, { recursive: true });
  // crun fails on this hybrid cgroup layout; runc works. The ulimits keep containers from
  // inheriting whatever this shell has.
  const conf = join(CACHE, 'containers.conf');
  writeFileSync(conf, '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n\n[engine]\nruntime = "runc"\n');
  process.env['CONTAINERS_CONF'] = conf;
  console.log(`# ${podman(['--version']).trim()}, ${execFileSync('runc', ['--version'], { encoding: 'utf8' }).split('\n')[0]}, CONTAINERS_CONF=${conf}`);
}

const BASES = ['node:20-bookworm', 'node:20-bookworm-slim'] as const;
const haveImage = (name: string) => spawnSync('podman', ['image', 'exists', name]).status === 0;

/** The official bases if they can be pulled, else stand-ins from debootstrap and this host's Node. */
export function ensureBaseImages(): void {
  if (BASES.every((b) => haveImage(`docker.io/library/${b}`))) {
    console.log('# base images: present');
    return;
  }
  const pulled = BASES.every((b) => spawnSync('podman', ['pull', '-q', `docker.io/library/${b}`], { stdio: 'ignore', timeout: 60_000 }).status === 0);
  if (pulled) {
    console.log('# base images: pulled from docker.io');
    return;
  }
  console.log(`# no container registry reachable: building stand-ins for ${BASES.join(' and ')} from debootstrap (${MIRROR}) and this host's Node ${process.version}`);
  const slim = join(CACHE, 'rootfs-slim');
  if (!existsSync(join(slim, '.complete'))) {
    rmSync(slim, { recursive: true, force: true });
    run('debootstrap', ['--variant=minbase', 'bookworm', slim, MIRROR]);
    addNode(slim);
    writeFileSync(join(slim, '.complete'), '');
  }
  const full = join(CACHE, 'rootfs-full');
  if (!existsSync(join(full, '.complete'))) {
    rmSync(full, { recursive: true, force: true });
    run('cp', ['-a', slim, full]); // device nodes too
    rmSync(join(full, '.complete'));
    copyFileSync('/etc/resolv.conf', join(full, 'etc/resolv.conf'));
    for (const f of readdirSync('/etc/apt/apt.conf.d').filter((n) => n.startsWith('99'))) copyFileSync(join('/etc/apt/apt.conf.d', f), join(full, 'etc/apt/apt.conf.d', f));
    run('chroot', [full, 'apt-get', 'update']);
    execFileSync('chroot', [full, 'apt-get', 'install', '-y', '--no-install-recommends', 'gcc', 'g++', 'make', 'python3'], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    run('chroot', [full, 'apt-get', 'clean']);
    writeFileSync(join(full, '.complete'), '');
  }
  for (const [root, tag] of [[full, 'node:20-bookworm'], [slim, 'node:20-bookworm-slim']] as const) {
    execFileSync('sh', ['-c', 'tar -C "$1" --exclude=./.complete -c . | podman import --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" --change \'CMD ["node"]\' - "$2"', 'sh', root, `docker.io/library/${tag}`], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
}

/** This host's Node, npm and headers, where the official images have them (/usr/local). */
function addNode(root: string): void {
  const local = join(root, 'usr/local');
  copyFileSync(process.execPath, join(local, 'bin/node'));
  cpSync('/usr/include/node', join(local, 'include/node'), { recursive: true });
  cpSync('/usr/lib/node_modules/npm', join(local, 'lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin/npm'));
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin/npx'));
}
