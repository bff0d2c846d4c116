// A throwaway PKI made by the real openssl: a CA per instance, certificates it signs with any
// validity window (`openssl ca -startdate/-enddate`, which also makes expired ones).
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Issued {
  readonly cert: string;
  readonly key: string;
}

export interface IssueOptions {
  /** subjectAltName, e.g. `URI:spiffe://example.org/a` or `IP:127.0.0.1` (none: the CN alone names it). */
  readonly san?: string;
  readonly usage: 'serverAuth' | 'clientAuth';
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** Where to write the files (default: the CA's dir, named after the subject). */
  readonly cert?: string;
  readonly key?: string;
}

const HOUR = 3_600_000;

const openssl = (cwd: string, ...args: string[]) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });

/** YYYYMMDDHHMMSSZ, as `openssl ca` takes it. */
const asn1Time = (d: Date) => d.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');

const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export class TestCa implements Issued {
  readonly cert: string;
  readonly key: string;

  constructor(
    readonly dir: string,
    readonly name: string,
  ) {
    mkdirSync(join(dir, 'issued'), { recursive: true });
    writeFileSync(join(dir, 'index.txt'), '');
    writeFileSync(join(dir, 'serial'), '1000\n');
    writeFileSync(
      join(dir, 'ca.cnf'),
      ['[ca]', 'default_ca = test', '[test]', 'database = index.txt', 'serial = serial', 'new_certs_dir = issued', 'default_md = sha256',
        'policy = any', 'unique_subject = no', 'copy_extensions = none', '[any]', 'commonName = supplied', ''].join('\n'),
    );
    this.cert = join(dir, 'ca.pem');
    this.key = join(dir, 'ca.key');
    openssl(dir, 'req', '-x509', ...newKey, '-keyout', this.key, '-out', this.cert, '-days', '2', '-subj', `/CN=${name}`);
  }

  /** A certificate for `subject` (a fresh key) valid from an hour ago for a day, unless told. */
  issue(subject: string, o: IssueOptions): Issued {
    const file = subject.replace(/[^\w.-]/g, '_');
    const cert = o.cert ?? join(this.dir, `${file}.pem`);
    const key = o.key ?? join(this.dir, `${file}.key`);
    const csr = join(this.dir, `${file}.csr`);
    const ext = join(this.dir, `${file}.ext`);
    writeFileSync(ext, `${o.san === undefined ? '' : `subjectAltName = ${o.san}\n`}extendedKeyUsage = ${o.usage}\nbasicConstraints = CA:FALSE\n`);
    openssl(this.dir, 'req', '-new', ...newKey, '-keyout', key, '-out', csr, '-subj', `/CN=${subject.replace(/[/\\]/g, '\\$&')}`);
    const from = o.notBefore ?? new Date(Date.now() - HOUR);
    const to = o.notAfter ?? new Date(Date.now() + 24 * HOUR);
    openssl(this.dir, 'ca', '-config', 'ca.cnf', '-batch', '-notext', '-cert', this.cert, '-keyfile', this.key, '-in', csr, '-out', cert,
      '-extfile', ext, '-startdate', asn1Time(from), '-enddate', asn1Time(to));
    return { cert, key };
  }
}

/** SHA-256 fingerprint of a PEM certificate file, as node:tls reports a peer's. */
export const fingerprintOf = (certFile: string): string => new X509Certificate(readFileSync(certFile)).fingerprint256;

/** grpc-js credentials.createSsl's arguments from files. */
export const pem = (file: string): Buffer => readFileSync(file);
