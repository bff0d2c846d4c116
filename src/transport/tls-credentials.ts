// The files TLS on the TCP listeners is made of, re-read when they change, so short-lived
// certificates rotate without a restart. New handshakes use the new files; an open connection
// keeps its session.
//
// Each read is checked with node:tls before it is used: startup fails with one clear line, and a
// bad read later (a rotation caught half-done: new certificate, old key; a bundle cut off in the
// middle of a certificate; an unreadable file) is logged while the last good files keep serving.
// (grpc-js's FileWatcherCertificateProvider would publish the bad read, and every new connection
// would then be dropped until a later read.)
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { TlsFiles } from '../config/config.js';
import type { Logger } from '../log.js';

/** How often the files' metadata is polled (stat follows the symlinks a Kubernetes secret swaps). */
export const TLS_REFRESH_MS = 1000;

export interface Loaded {
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

/** The certificates of a PEM bundle already loaded (it was checked then). */
export const pemCertificates = (pem: Buffer): X509Certificate[] => (pem.toString('latin1').match(PEM_CERTIFICATE) ?? []).map((b) => new X509Certificate(b));

/**
 * Whole PEM blocks of any type. Base64 has no '-', but RFC 1421 headers may (a legacy encrypted
 * key's `DEK-Info: AES-128-CBC,…`): a body is anything without a run of five dashes.
 */
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----(?:[^-]|-(?!----))*?-----END \1-----/g;

/**
 * A block begun and not ended: a file read while it was being written in place. node:tls loads
 * the whole blocks before the cut and ignores the rest, so a client CA bundle caught so would be
 * a bundle without its last CAs, and their clients' open connections would be revoked. What is
 * left without the whole blocks is text (`- intermediate, then root`, `------` between blocks, all
 * loaded by node:tls before): only a BEGIN or END line, or a file ending in one cut short, is a cut.
 */
const unfinished = (text: string): boolean => /-----(?:BEGIN|END)\b/.test(text.replace(PEM_BLOCK, '')) || /(?:^|\n)-+(?:B(?:E(?:G(?:I(?:N)?)?)?)?)?\s*$/.test(text);

/** The certificates in a PEM bundle, each parsed (throws on the first that is not one, or a block cut off). */
function certificates(flag: string, path: string, pem: Buffer): X509Certificate[] {
  const text = pem.toString('latin1');
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new Error(`--${flag} ${path}: no PEM certificate in it`);
  if (unfinished(text)) throw new Error(`--${flag} ${path}: a PEM block begins and does not end (a file still being written?)`);
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

/** What node:tls takes: the agent's certificate and key, and the CA client certificates chain to. */
export interface TlsContextOptions {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer;
}

const contextOptions = (l: Loaded): TlsContextOptions => ({ cert: l.certificate, key: l.privateKey, ca: l.caCertificate });

/** The agent's identity and the client CA, from files that may change. */
export class TlsFileProvider {
  private current: Loaded;
  private readonly listeners = new Set<(options: TlsContextOptions) => void>();
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

  /** The last good files. */
  get options(): TlsContextOptions {
    return contextOptions(this.current);
  }

  /** listener gets every new good pair; returns its unsubscribe. */
  subscribe(listener: (options: TlsContextOptions) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
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
    for (const l of this.listeners) l(contextOptions(next));
  }

  close(): void {
    for (const path of this.paths) unwatchFile(path, this.onChange);
    this.listeners.clear();
  }

  private logLoaded(event: string): void {
    this.log(event, { cert: this.files.cert, fingerprint256: this.current.fingerprint256, validTo: this.current.validTo });
  }
}
