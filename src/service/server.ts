import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server, ServerCredentials, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { AgentServiceService, type AgentServiceServer } from '../../clients/ts/src/gen/pidfd/agent/v1/agent.js';

export const SERVICE_NAME = 'pidfd.agent.v1.AgentService';
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** The repository's proto/ directory, found from this file in src/ or dist/src/. */
function protoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'proto', 'pidfd', 'agent', 'v1', 'agent.proto'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('proto/pidfd/agent/v1/agent.proto not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return join(dir, 'proto');
}

export interface GrpcServer {
  readonly server: Server;
  readonly health: HealthImplementation;
}

export function createServer(service: AgentServiceServer): GrpcServer {
  const server = new Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
    'grpc.max_concurrent_streams': 1024,
  });
  server.addService(AgentServiceService, service as unknown as UntypedServiceImplementation);
  const health = new HealthImplementation({ '': 'SERVING', [SERVICE_NAME]: 'SERVING' });
  health.addToServer(server);
  const definitions = loadSync([join(protoRoot(), 'pidfd/agent/v1/agent.proto'), healthProtoPath], {
    includeDirs: [protoRoot()],
  });
  new ReflectionService(definitions).addToServer(server);
  return { server, health };
}

export function bind(server: Server, address: string): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
}
