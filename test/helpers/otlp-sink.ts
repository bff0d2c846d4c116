// A local OTLP/HTTP receiver for tests and the bench: it accepts what an exporter posts with
// OTEL_EXPORTER_OTLP_PROTOCOL=http/json and keeps it decoded.
import { createServer, type Server } from 'node:http';
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

export async function startOtlpSink(): Promise<OtlpSink> {
  const spans: ReceivedSpan[] = [];
  const requests = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      requests.set(path, (requests.get(path) ?? 0) + 1);
      if (path === '/v1/traces' && (req.headers['content-type'] ?? '').includes('json')) {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as TracesRequest;
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
