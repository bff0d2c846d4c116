// TLS for the TCP listeners: grpc-js's certificate-provider server credentials (client
// certificates required and verified by node:tls), fed by a provider that re-reads the files when
// they change, so short-lived certificates rotate without a restart. New handshakes use the new
// files; an open connection keeps its session.
//
// Not grpc-js's FileWatcherCertificateProvider: it re-reads on a timer and publishes whatever it
// read. A rotation caught half-done (new certificate, old key) makes grpc-js's setSecureContext
// fail, and an unreadable file publishes null; either way grpc-js then drops every new connection
// until a later read succeeds, and a bad file at startup is never reported at all. This provider
// checks each read with node:tls first: startup fails with one clear line, and a bad read later
// is logged while the last good files keep serving.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { experimental, type ServerCredentials } from '@grpc/grpc-js';
import type { TlsFiles } from '../config/config.js';
import type { Logger } from './status.js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/** How often the files' metadata is polled (stat follows the symlinks a Kubernetes secret swaps). */
export const TLS_REFRESH_MS = 1000;

interface Loaded {
  readonly certificate: Buffer;
  readonly privateKey: Buffer;
  readonly caCertificate: Buffer;
  /** Of the agent's certificate, for the log. */
  readonly fingerprint256: string;
  readonly validTo: string;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

function readPem(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`--${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The certificates in a PEM bundle, each parsed (throws on the first that is not one). */
function certificates(flag: string, path: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new Error(`--${flag} ${path}: no PEM certificate in it`);
  return blocks.map((b) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw new Error(`--${flag} ${path}: ${(e as Error).message}`);
    }
  });
}

/** Reads and checks the three files as node:tls will use them; each error names the file. */
export function loadTlsFiles(files: TlsFiles): Loaded {
  const certificate = readPem('tls-cert', files.cert);
  const privateKey = readPem('tls-key', files.key);
  const caCertificate = readPem('tls-client-ca', files.clientCa);
  const leaf = certificates('tls-cert', files.cert, certificate)[0]!;
  certificates('tls-client-ca', files.clientCa, caCertificate);
  try {
    createSecureContext({ cert: certificate, key: privateKey, ca: caCertificate });
  } catch (e) {
    throw new Error(`--tls-cert ${files.cert}, --tls-key ${files.key}: ${opensslReason(e)}`);
  }
  return { certificate, privateKey, caCertificate, fingerprint256: leaf.fingerprint256, validTo: leaf.validTo };
}

/** `error:05800074:x509 certificate routines::key values mismatch` → `key values mismatch`. */
const opensslReason = (e: unknown): string => (e as Error).message.replace(/^error:[0-9A-Fa-f]+:[^:]*:[^:]*:/, '');

const same = (a: Loaded, b: Loaded) => a.certificate.equals(b.certificate) && a.privateKey.equals(b.privateKey) && a.caCertificate.equals(b.caCertificate);

/** The agent's identity and the client CA, as grpc-js's CertificateProvider, from files that may change. */
export class TlsFileProvider implements experimental.CertificateProvider {
  private current: Loaded;
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly onChange = () => this.reload();
  private readonly paths: readonly string[];

  /** Throws (one line naming the file) when the files are unusable now. */
  constructor(
    private readonly files: TlsFiles,
    private readonly log: Logger,
    refreshMs = TLS_REFRESH_MS,
  ) {
    this.current = loadTlsFiles(files);
    this.logLoaded('tls_loaded');
    this.paths = [...new Set([files.cert, files.key, files.clientCa])];
    for (const path of this.paths) watchFile(path, { persistent: false, interval: refreshMs }, this.onChange);
  }

  /** Serves the last good files while the new ones do not load (a rotation half-done, say). */
  reload(): void {
    let next: Loaded;
    try {
      next = loadTlsFiles(this.files);
    } catch (e) {
      this.log('tls_reload_failed', { error: (e as Error).message, serving: this.current.fingerprint256 });
      return;
    }
    if (same(next, this.current)) return;
    this.current = next;
    this.logLoaded('tls_reloaded');
    for (const l of this.caListeners) l({ caCertificate: next.caCertificate });
    for (const l of this.identityListeners) l({ certificate: next.certificate, privateKey: next.privateKey });
  }

  // grpc-js computes a listener's initial state before subscribing it: the first update must come later.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    process.nextTick(() => this.caListeners.has(listener) && listener({ caCertificate: this.current.caCertificate }));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    process.nextTick(() => this.identityListeners.has(listener) && listener({ certificate: this.current.certificate, privateKey: this.current.privateKey }));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  close(): void {
    for (const path of this.paths) unwatchFile(path, this.onChange);
  }

  private logLoaded(event: string): void {
    this.log(event, { cert: this.files.cert, fingerprint256: this.current.fingerprint256, validTo: this.current.validTo });
  }
}

export interface TlsServerCredentials {
  readonly credentials: ServerCredentials;
  /** Stops watching the files. */
  close(): void;
}

/** Server credentials that require a client certificate chaining to the client CA. */
export function tlsServerCredentials(files: TlsFiles, log: Logger, refreshMs?: number): TlsServerCredentials {
  const provider = new TlsFileProvider(files, log, refreshMs);
  // grpc-js 1.14.7 passes this function's first two arguments to the constructor swapped (identity
  // first): harmless here, where one provider is both.
  const credentials = experimental.createCertificateProviderServerCredentials(provider, provider, true);
  return { credentials, close: () => provider.close() };
}
