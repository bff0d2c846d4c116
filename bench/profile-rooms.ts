// A V8 CPU profile's self time by who runs it: the stack (grpc-js, Node's http2/net/streams,
// protobuf), GC, FFI calls into the kernel (koffi), and the agent's own code by room of src/.
// A native or builtin frame (no script) is charged to the nearest caller that has a script, so a
// C++ binding or a V8 builtin counts where it was called from; node:fs frames are charged to their
// caller too (a stat or a /proc read of ours is our system call).
export interface CpuProfile {
  readonly nodes: readonly { readonly id: number; readonly callFrame: { readonly functionName: string; readonly url: string }; readonly children?: readonly number[] }[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** The bucket a script belongs to. */
export function bucketOf(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    const pkg = rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
    if (pkg === '@grpc/grpc-js') return 'grpc-js';
    if (pkg === '@bufbuild/protobuf') return 'protobuf (encode/decode)';
    if (pkg === 'koffi') return 'kernel calls (koffi FFI: syscalls)';
    if (pkg === 'better-sqlite3') return 'ours: store';
    return `other package: ${pkg}`;
  }
  if (url.startsWith('node:')) {
    if (url.includes('http2')) return 'node:http2';
    if (url.includes('/streams/') || url === 'node:stream') return 'node: streams';
    if (url === 'node:net' || url.includes('stream_base_commons')) return 'node: net (socket writes)';
    if (url.includes('task_queues')) return 'node: microtasks, nextTick';
    return 'node: other (events, timers, buffer, ...)';
  }
  if (url.includes('/clients/ts/src/gen/')) return 'protobuf (encode/decode)';
  const at = url.indexOf('/dist/src/');
  if (at >= 0) {
    const parts = url.slice(at + '/dist/src/'.length).split('/');
    if (parts.length === 1) return 'ours: root (agent, log, api)';
    if (parts[0] === 'process' && parts[1] === 'events') return 'ours: events';
    // kernel/ is the spawn and reap work itself: its JS and the system calls it makes through koffi.
    if (parts[0] === 'kernel') return 'kernel/ (spawner, epoll, pidfd: JS + syscalls via koffi)';
    return `ours: ${parts[0]}`;
  }
  if (url.includes('floor-server.mjs')) return 'floor server script';
  return url === '' ? '(native, no caller)' : `other: ${url}`;
}

const isFs = (url: string): boolean => url === 'node:fs' || url.startsWith('node:internal/fs/');

/** Self ms per bucket over samples within [fromUs, toUs] (the profile's clock), idle left out. */
export function selfByBucket(profile: CpuProfile, fromUs = -Infinity, toUs = Infinity): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const bucketCache = new Map<number, string>();
  const bucket = (id: number): string => {
    const hit = bucketCache.get(id);
    if (hit !== undefined) return hit;
    const node = byId.get(id)!;
    const { functionName, url } = node.callFrame;
    let b: string;
    if (functionName === '(garbage collector)') b = 'GC';
    else if (functionName === '(program)') b = '(program: V8/libuv native outside JS)';
    else if (url !== '' && !isFs(url)) b = bucketOf(url);
    else if (url !== '') {
      // A synchronous fs call is a system call of whoever makes it (a stat, a /proc read, a log line).
      const up = parent.get(id);
      b = up === undefined ? bucketOf(url) : bucket(up);
      if (b.startsWith('node:') || b.startsWith('(')) b = 'node: fs';
    } else {
      const up = parent.get(id);
      b = up === undefined || byId.get(up)!.callFrame.functionName === '(root)' ? '(native, no caller)' : bucket(up);
    }
    bucketCache.set(id, b);
    return b;
  };
  const out = new Map<string, number>();
  let t = profile.startTime;
  profile.samples.forEach((id, i) => {
    t += profile.timeDeltas[i] ?? 0;
    if (t < fromUs || t > toUs) return;
    const node = byId.get(id);
    if (!node || node.callFrame.functionName === '(idle)') return;
    // A sample's weight is the gap to the next one.
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const b = bucket(id);
    out.set(b, (out.get(b) ?? 0) + dt);
  });
  return out;
}
