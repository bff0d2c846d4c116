import { readFileSync } from 'node:fs';
import { Server, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { ReflectionService } from '@grpc/reflection';
import type { PackageDefinition } from '@grpc/proto-loader';
import { HealthImplementation } from 'grpc-health-check';
import { AgentServiceService, type AgentServiceServer } from '../api.js';
import { builtFile } from '../built-files.js';
import { refusingUndecodable, tolerantDefinition } from './decode-guard.js';
import { encodedWatchResponses } from './event-encoding.js';
import { sharedWriterReplies } from './reply-encoding.js';

export const SERVICE_NAME = 'pidfd.agent.v1.AgentService';
export const MAX_GRPC_MESSAGE_BYTES = 4 * 1024 * 1024;

/** The FileDescriptorProtos of a FileDescriptorSet (field 1), kept encoded as reflection serves them. */
function filesOf(set: Uint8Array): Buffer[] {
  const reader = new BinaryReader(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  return files;
}

export interface GrpcServer {
  readonly server: Server;
  readonly health: HealthImplementation;
}

/** Wraps every handler of the service (telemetry: one span and one measurement per call). */
export type Instrument = (definition: ServiceDefinition, implementation: UntypedServiceImplementation) => UntypedServiceImplementation;

export function createServer(service: AgentServiceServer, instrument: Instrument = (_d, implementation) => implementation): GrpcServer {
  const server = new Server({
    'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
    // A PING to every connection each 30 s keeps long quiet Watch and ReadOutput streams alive
    // through proxies and load balancers that drop idle connections (often after 60 s) and finds
    // dead clients; the clients ping at the same rate (grpc-js polices no client ping rate).
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.max_concurrent_streams': 1024,
    // Per-call channelz bookkeeping costs on every RPC and nothing here reads it.
    'grpc.enable_channelz': 0,
  });
  const definition = sharedWriterReplies(encodedWatchResponses(tolerantDefinition(AgentServiceService)));
  server.addService(definition, instrument(definition, refusingUndecodable(definition, service as unknown as UntypedServiceImplementation)));
  const health = new HealthImplementation({ '': 'SERVING', [SERVICE_NAME]: 'SERVING' });
  health.addToServer(server);
  // Reflection serves the files exactly as compiled by buf (names and imports intact), which
  // reflection clients such as `buf curl` need; proto-loader's regrouped files lack their imports.
  const fileDescriptorProtos = ['agent.binpb', 'health.binpb'].flatMap((f) => filesOf(readFileSync(builtFile(`dist/descriptors/${f}`))));
  new ReflectionService({ all: { fileDescriptorProtos } } as unknown as PackageDefinition).addToServer(server);
  return { server, health };
}

/**
 * gRPC health and nothing else (--health-listen): AgentService calls get UNIMPLEMENTED. "" is the
 * agent process itself, SERVING from its start until it stops (lingering after a handover too: a
 * liveness probe must not restart it, or it would take the processes back); SERVICE_NAME says
 * whether it serves AgentService. Requests are a service name: a few KiB and a few streams will do.
 */
export function createProbeServer(): GrpcServer {
  const server = new Server({
    'grpc.max_receive_message_length': 4096,
    'grpc.max_concurrent_streams': 4,
    'grpc.enable_channelz': 0,
  });
  const health = new HealthImplementation({ '': 'SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
  health.addToServer(server);
  return { server, health };
}
