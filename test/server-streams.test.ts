// A finished call's HTTP/2 stream lets go of what its listeners held (grpc-js's call, the handler's
// closures and messages): node keeps a closed stream reachable until a full collection, which made
// all of it outlive two scavenges and be promoted (bench/FINDINGS.md "Session 18"). Checked on a
// real grpc-js server over a unix socket, for calls that succeed, fail, stream, and are cancelled.
import { mkdtempSync, rmSync } from 'node:fs';
import type { Http2Server, ServerHttp2Stream } from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, makeGenericClientConstructor, Server, ServerCredentials, status, type ServiceDefinition, type ServiceError } from '@grpc/grpc-js';
import test from 'ava';
import { watchServerStreams } from '../src/transport/server-streams.js';
import { eventually } from './helpers/harness.js';

const raw = (b: Buffer) => b;
const method = (name: string, responseStream: boolean) => ({ path: `/t.T/${name}`, requestStream: false, responseStream, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw });
const definition = { echo: method('Echo', false), fail: method('Fail', false), ticks: method('Ticks', true) } as unknown as ServiceDefinition;

test('closed streams keep no listener but a harmless error one, whatever ended their call, and the server goes on serving', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pidfd-agent-streams-'));
  const server = new Server({ 'grpc.enable_channelz': 0 });
  t.teardown(() => {
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  });
  server.addService(definition, {
    echo: (call: { request: Buffer }, cb: (e: null, v: Buffer) => void) => cb(null, call.request),
    fail: (_call: unknown, cb: (e: Partial<ServiceError>) => void) => cb({ code: status.FAILED_PRECONDITION, details: 'no' }),
    ticks: (call: { write(b: Buffer): void; end(): void; on(e: 'cancelled', f: () => void): void }) => {
      const timer = setInterval(() => call.write(Buffer.from('tick')), 5);
      call.on('cancelled', () => clearInterval(timer));
    },
  });
  const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  watchServerStreams(server, {});
  const seen: ServerHttp2Stream[] = [];
  const http2Server = [...(server as unknown as { http2Servers: Map<Http2Server, unknown> }).http2Servers.keys()].at(-1)!;
  http2Server.on('stream', (s: ServerHttp2Stream) => seen.push(s));
  const path = join(dir, 's.sock');
  const listener = net.createServer((socket) => injector.injectConnection(socket));
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  t.teardown(() => listener.close());

  const Client = makeGenericClientConstructor(definition, 'T');
  const client = new Client(`unix://${path}`, credentials.createInsecure()) as unknown as Record<string, (...a: unknown[]) => unknown>;
  t.teardown(() => (client as unknown as { close(): void }).close());
  const unary = (name: string) => new Promise<ServiceError | null>((resolve) => client[name]!(Buffer.from('hi'), (e: ServiceError | null) => resolve(e)));

  for (let round = 0; round < 2; round++) {
    t.is(await unary('echo'), null);
    t.is((await unary('fail'))?.code, status.FAILED_PRECONDITION);
    const ticks = client['ticks']!(Buffer.from('')) as NodeJS.ReadableStream & { cancel(): void };
    await new Promise((resolve) => ticks.once('data', resolve));
    ticks.on('error', () => {});
    ticks.cancel();
  }
  t.is(seen.length, 6);
  await eventually('every stream closed and released', () => seen.every((s) => s.closed && s.eventNames().length === 1));
  for (const s of seen) t.deepEqual(s.eventNames(), ['error']);
  // An error after the release would find a listener, not throw out of the event loop.
  seen[0]!.emit('error', new Error('late'));
  t.is(await unary('echo'), null, 'the server serves after the releases');
});
