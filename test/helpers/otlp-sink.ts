// A local OTLP/HTTP receiver for tests and the bench: it accepts the spans an exporter posts with
// OTEL_EXPORTER_OTLP_PROTOCOL=http/json or http/protobuf and keeps them decoded, in OTLP/JSON's shape.
import { createServer, type Server } from 'node:http';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import type { AddressInfo } from 'node:net';

export interface OtlpValue {
  readonly stringValue?: string;
  readonly intValue?: string | number;
  readonly boolValue?: boolean;
  readonly doubleValue?: number;
  readonly arrayValue?: { readonly values: OtlpValue[] };
}
export interface OtlpAttribute {
  readonly key: string;
  readonly value: OtlpValue;
}
export interface OtlpSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly name: string;
  readonly kind: number;
  readonly attributes: OtlpAttribute[];
  readonly links?: { traceId: string; spanId: string }[];
  readonly status?: { code?: number };
}
export interface ReceivedSpan extends OtlpSpan {
  readonly resource: OtlpAttribute[];
}

export interface OtlpSink {
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  /** Requests received per path (/v1/traces, /v1/metrics). */
  readonly requests: Map<string, number>;
  close(): Promise<void>;
}

/** The attribute's value as JS (int64 arrives as a string in OTLP/JSON). */
export function attr(attributes: readonly OtlpAttribute[], key: string): unknown {
  const v = attributes.find((a) => a.key === key)?.value;
  if (v === undefined) return undefined;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.arrayValue !== undefined) return v.arrayValue.values.map((x) => x.stringValue);
  return v.stringValue ?? v.boolValue ?? v.doubleValue;
}

interface TracesRequest {
  resourceSpans?: { resource?: { attributes?: OtlpAttribute[] }; scopeSpans?: { spans?: OtlpSpan[] }[] }[];
}

/** Reads each field of a message: `on` gets its number and a reader at its value, and must consume it or return false. */
function fields(bytes: Uint8Array, on: (field: number, r: BinaryReader) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (!on(field, r)) r.skip(wire, field);
  }
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

function anyValue(bytes: Uint8Array): OtlpValue {
  let value: OtlpValue = {};
  fields(bytes, (field, r) => {
    if (field === 1) value = { stringValue: r.string() };
    else if (field === 2) value = { boolValue: r.bool() };
    else if (field === 3) value = { intValue: String(r.int64()) };
    else if (field === 4) value = { doubleValue: r.double() };
    else if (field === 5) {
      const values: OtlpValue[] = [];
      fields(r.bytes(), (f, a) => f === 1 && values.push(anyValue(a.bytes())) > 0);
      value = { arrayValue: { values } };
    } else return false;
    return true;
  });
  return value;
}

function keyValue(bytes: Uint8Array): OtlpAttribute {
  let key = '';
  let value: OtlpValue = {};
  fields(bytes, (field, r) => {
    if (field === 1) key = r.string();
    else if (field === 2) value = anyValue(r.bytes());
    else return false;
    return true;
  });
  return { key, value };
}

function span(bytes: Uint8Array): OtlpSpan {
  const s: { -readonly [K in keyof OtlpSpan]: OtlpSpan[K] } = { traceId: '', spanId: '', name: '', kind: 0, attributes: [] };
  fields(bytes, (field, r) => {
    if (field === 1) s.traceId = hex(r.bytes());
    else if (field === 2) s.spanId = hex(r.bytes());
    else if (field === 4) s.parentSpanId = hex(r.bytes());
    else if (field === 5) s.name = r.string();
    else if (field === 6) s.kind = r.int32();
    else if (field === 9) s.attributes.push(keyValue(r.bytes()));
    else if (field === 13) {
      const link = { traceId: '', spanId: '' };
      fields(r.bytes(), (f, l) => (f === 1 ? ((link.traceId = hex(l.bytes())), true) : f === 2 ? ((link.spanId = hex(l.bytes())), true) : false));
      (s.links ??= []).push(link);
    } else if (field === 15) {
      const status: { code?: number } = {};
      fields(r.bytes(), (f, st) => f === 3 && ((status.code = st.int32()), true));
      s.status = status;
    } else return false;
    return true;
  });
  return s;
}

/** An ExportTraceServiceRequest (opentelemetry/proto/collector/trace/v1), the fields the tests read. */
function decodeTracesRequest(bytes: Uint8Array): TracesRequest {
  const resourceSpans: NonNullable<TracesRequest['resourceSpans']> = [];
  fields(bytes, (field, r) => {
    if (field !== 1) return false;
    const rs: { resource: { attributes: OtlpAttribute[] }; scopeSpans: { spans: OtlpSpan[] }[] } = { resource: { attributes: [] }, scopeSpans: [] };
    fields(r.bytes(), (f, a) => {
      if (f === 1) fields(a.bytes(), (rf, ra) => rf === 1 && rs.resource.attributes.push(keyValue(ra.bytes())) > 0);
      else if (f === 2) {
        const spans: OtlpSpan[] = [];
        fields(a.bytes(), (sf, sa) => sf === 2 && spans.push(span(sa.bytes())) > 0);
        rs.scopeSpans.push({ spans });
      } else return false;
      return true;
    });
    resourceSpans.push(rs);
    return true;
  });
  return { resourceSpans };
}

export async function startOtlpSink(): Promise<OtlpSink> {
  const spans: ReceivedSpan[] = [];
  const requests = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      requests.set(path, (requests.get(path) ?? 0) + 1);
      const type = req.headers['content-type'] ?? '';
      if (path === '/v1/traces' && (type.includes('json') || type.includes('protobuf'))) {
        const bytes = Buffer.concat(chunks);
        const body = type.includes('json') ? (JSON.parse(bytes.toString('utf8')) as TracesRequest) : decodeTracesRequest(bytes);
        for (const rs of body.resourceSpans ?? []) {
          for (const ss of rs.scopeSpans ?? []) for (const span of ss.spans ?? []) spans.push({ ...span, attributes: span.attributes ?? [], resource: rs.resource?.attributes ?? [] });
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** The OTEL_* variables that send an agent's traces (and metrics) to the sink, flushed quickly. */
export const otlpEnv = (sink: OtlpSink, extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
  ...process.env,
  OTEL_TRACES_EXPORTER: 'otlp',
  OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
  OTEL_EXPORTER_OTLP_ENDPOINT: sink.endpoint,
  OTEL_BSP_SCHEDULE_DELAY: '50',
  ...extra,
});
