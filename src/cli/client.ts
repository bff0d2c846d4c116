// pidfdctl is a client like any other: it takes the API and the typed wrapper from the client
// package (clients/ts), through this one module.
export * from '../../clients/ts/src/index.js';
