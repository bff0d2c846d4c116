// What the agent does with every HTTP/2 stream of its gRPC server, before grpc-js sees it. grpc-js
// keeps the HTTP/2 server behind each connection injector in a private map: the only way to a
// call's stream before any handler runs, and after the call has closed.
import type { Http2Server, ServerHttp2Stream } from 'node:http2';
import type { Server } from '@grpc/grpc-js';
import type { InboundBudget } from './inbound-budget.js';
import type { OutboundBudget } from './outbound-budget.js';

/** What counts a connection's request and response bytes, across listeners. */
export interface StreamBudgets {
  readonly inbound?: InboundBudget;
  readonly outbound?: OutboundBudget;
}

/** Hooks the HTTP/2 server grpc-js made for the injector just created; onStream sees each call start. */
export function watchServerStreams(server: Server, budgets: StreamBudgets, onStream?: (stream: ServerHttp2Stream) => void): void {
  const servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  const newest = servers === undefined ? undefined : [...servers.keys()].at(-1);
  if (newest === undefined) throw new Error('grpc-js keeps no http2Servers: the agent cannot see its streams');
  newest.on('stream', (stream: ServerHttp2Stream) => {
    budgets.inbound?.track(stream);
    budgets.outbound?.track(stream);
    onStream?.(stream);
    stream.on('close', release);
  });
}

/*
 * Node keeps a closed stream reachable until a full collection (from its native handle, as far as
 * we can tell: V8's scavenges count such wrappers as live, and a heap snapshot, which collects in
 * full first, holds none of them), so everything the stream's listeners hold, grpc-js's call
 * and the handler's closures and messages with it, outlived two scavenges and was promoted to the
 * old generation: 2.6 KB a call in a bare grpc-js echo server, 0.9 KB once released; in the agent
 * 8.6 KB a Spawn+Wait cycle, 5.2 released (bench/FINDINGS.md "Session 18"). A stream emits nothing
 * after its close, so its listeners can go; an error listener stays in case node's internals emit one.
 */
function release(this: ServerHttp2Stream): void {
  // The close being emitted still reaches every listener: emit runs a copy of the list.
  this.removeAllListeners();
  this.on('error', ignore);
}

function ignore(): void {}
