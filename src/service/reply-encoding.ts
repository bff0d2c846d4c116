// Unary replies are encoded into one writer the server keeps, and handed to grpc-js as a Buffer
// over the encoded bytes. The generated serializer makes a new writer per reply (128 bytes, grown
// by doubling with a copy each time: a Spawn or Wait reply outgrows it twice), then copies the
// result twice (finish, Buffer.from) before grpc-js copies it once more behind the frame header.
// Here finish's right-sized copy is the only one. Serialization is synchronous and one reply at a
// time (a single thread), so one writer serves every call.
import type { ServiceDefinition } from '@grpc/grpc-js';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import {
  AdoptResponse,
  CloseStdinResponse,
  GetResponse,
  ListResponse,
  ListThreadsResponse,
  ReleaseResponse,
  ResizeTerminalResponse,
  SignalResponse,
  SpawnBatchResponse,
  SpawnResponse,
  StopResponse,
  WaitResponse,
  WriteStdinResponse,
  type AgentServiceServer,
} from '../api.js';

interface Encoder<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
}

type UnaryName = { [K in keyof AgentServiceServer]: AgentServiceServer[K] extends (call: never, callback: never) => void ? K : never }[keyof AgentServiceServer];
type ReplyOf<K extends UnaryName> = AgentServiceServer[K] extends (call: never, callback: (e: never, value?: infer R) => void) => void ? R : never;

/** Every unary method's reply type: a method added to the API fails to compile until it is listed. */
const REPLIES: { [K in UnaryName]: Encoder<NonNullable<ReplyOf<K>>> } = {
  spawn: SpawnResponse,
  spawnBatch: SpawnBatchResponse,
  adopt: AdoptResponse,
  signal: SignalResponse,
  wait: WaitResponse,
  get: GetResponse,
  list: ListResponse,
  release: ReleaseResponse,
  stop: StopResponse,
  listThreads: ListThreadsResponse,
  writeStdin: WriteStdinResponse,
  closeStdin: CloseStdinResponse,
  resizeTerminal: ResizeTerminalResponse,
};

let writer = new BinaryWriter();

/** Replies a handler encoded itself (a List page measures each process as it encodes it). */
const encodedReplies = new WeakMap<object, Buffer>();

/** `reply`, whose encoding is `bytes`: the serializer sends them instead of encoding it again. */
export function encodedReply<T extends object>(reply: T, bytes: Uint8Array): T {
  encodedReplies.set(reply, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return reply;
}

function serializer<T>(encoder: Encoder<T>): (value: T) => Buffer {
  return (value) => {
    const encoded = encodedReplies.get(value as object);
    if (encoded !== undefined) return encoded;
    let bytes: Uint8Array;
    try {
      bytes = encoder.encode(value, writer).finish();
    } catch (e) {
      // An encode that throws (grpc-js answers INTERNAL) leaves its forks and position behind.
      writer = new BinaryWriter();
      throw e;
    }
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/** The definition with its unary replies encoded through the shared writer. */
export function sharedWriterReplies<T extends ServiceDefinition>(definition: T): T {
  const methods: Record<string, ServiceDefinition[string]> = { ...definition };
  for (const [name, encoder] of Object.entries(REPLIES) as [string, Encoder<unknown>][]) {
    const method = methods[name];
    if (method !== undefined && !method.responseStream) methods[name] = { ...method, responseSerialize: serializer(encoder) };
  }
  return methods as unknown as T;
}
