// The API as the server takes it: the TypeScript that `make proto` generates from proto/ with
// ts-proto. It is generated once, into the client package that ships it (clients/ts/src/gen, whose
// own build has rootDir src); this module is the server's one door to it.
export * from '../clients/ts/src/gen/pidfd/agent/v1/agent.js';
export { Status } from '../clients/ts/src/gen/google/rpc/status.js';
export { ErrorInfo } from '../clients/ts/src/gen/google/rpc/error_details.js';
export type { Duration } from '../clients/ts/src/gen/google/protobuf/duration.js';
