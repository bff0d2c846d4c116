// Spans for OTLP over http/protobuf, encoded the moment they end. The SDK's batch processor keeps
// every ended span (an object graph of ~1 KiB) until its batch is exported, ~80 ms at the agent's
// rate: long enough to be copied by a scavenge, and the encoder then walks 512 spans gone cold in
// the cache. Here a span's bytes are written while it is still hot and the span is let go; a batch
// is bytes. The batching rules are the SDK's BatchSpanProcessor's, read from the same OTEL_BSP_*
// variables: a batch of maxExportBatchSize goes at once, a smaller one after scheduledDelayMillis,
// one export at a time, at most maxQueueSize spans waiting (more are dropped and counted), an
// export given up after exportTimeoutMillis. The request is sent by the SDK's own OTLP/HTTP
// exporter (endpoint, headers, retries, response handling); test/otlp-span-stream.test.ts holds the
// bytes to the SDK serializer's for the same spans.
import { context, diag, TraceFlags } from '@opentelemetry/api';
import { ExportResultCode, globalErrorHandler, suppressTracing, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Out, resourceSpans, scopeSpans, writeSpan, type Resource, type Scope } from './otlp-span-encoder.js';

/** One ExportTraceServiceRequest, encoded, and how many spans it carries. */
export interface EncodedSpans {
  readonly bytes: Uint8Array;
  readonly spans: number;
}

/** What the processor needs of an exporter: OTLPExporterBase<EncodedSpans> is one. */
export interface EncodedSpanExporter {
  export(batch: EncodedSpans, done: (result: ExportResult) => void): void;
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

export interface BatchLimits {
  readonly maxExportBatchSize: number;
  readonly maxQueueSize: number;
  readonly scheduledDelayMillis: number;
  readonly exportTimeoutMillis: number;
}

export const SDK_BATCH_LIMITS: BatchLimits = { maxExportBatchSize: 512, maxQueueSize: 2048, scheduledDelayMillis: 5000, exportTimeoutMillis: 30_000 };

/** The spans of one batch so far: their bytes by scope, in the order the scopes came. */
class Batch {
  readonly byScope = new Map<Scope, Out>();
  spans = 0;

  constructor(readonly resource: Resource) {}

  add(span: ReadableSpan, sizeHint: number): void {
    let out = this.byScope.get(span.instrumentationScope);
    if (out === undefined) this.byScope.set(span.instrumentationScope, (out = new Out(sizeHint)));
    writeSpan(out, span);
    this.spans++;
  }

  /** The request; the resource's attributes are final by now (see whenSettled). */
  encode(): EncodedSpans {
    let size = 64;
    for (const out of this.byScope.values()) size += out.pos + 64;
    const request = new Out(size + 4096);
    resourceSpans(request, this.resource, () => {
      for (const [scope, out] of this.byScope) scopeSpans(request, scope, () => request.append(out.buf.subarray(0, out.pos)));
    });
    return { bytes: request.buf.subarray(0, request.pos), spans: this.spans };
  }
}

export class OtlpSpanStream implements SpanProcessor {
  private limits: BatchLimits;
  /** Spans of another resource than the last (never in the agent, whose tracers share one) start a batch. */
  private current: Batch | undefined;
  private readonly waiting: Batch[] = [];
  private waitingSpans = 0;
  private exporting = false;
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;
  private sizeHint = 64 * 1024;
  private shutDown: Promise<void> | undefined;
  private readonly idle: (() => void)[] = [];

  constructor(
    private readonly exporter: EncodedSpanExporter,
    limits: Partial<BatchLimits> = {},
  ) {
    const set = Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined));
    this.limits = { ...SDK_BATCH_LIMITS, ...set };
    if (this.limits.maxExportBatchSize > this.limits.maxQueueSize) this.limits = { ...this.limits, maxExportBatchSize: this.limits.maxQueueSize };
  }

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    if (this.shutDown !== undefined || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.waitingSpans + (this.current?.spans ?? 0) >= this.limits.maxQueueSize) {
      if (this.dropped++ === 0) diag.debug('maxQueueSize reached, dropping spans');
      return;
    }
    if (this.dropped > 0) {
      diag.warn(`Dropped ${this.dropped} spans because maxQueueSize reached`);
      this.dropped = 0;
    }
    if (this.current !== undefined && this.current.resource !== span.resource) this.close();
    this.current ??= new Batch(span.resource);
    this.current.add(span, this.sizeHint);
    if (this.current.spans >= this.limits.maxExportBatchSize) this.close();
    else if (this.timer === undefined && !this.exporting) this.startTimer();
  }

  forceFlush(): Promise<void> {
    if (this.shutDown !== undefined) return this.shutDown;
    return this.flushAll();
  }

  shutdown(): Promise<void> {
    this.shutDown ??= this.flushAll().then(() => this.exporter.shutdown());
    return this.shutDown;
  }

  private flushAll(): Promise<void> {
    this.close();
    if (!this.exporting && this.waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private close(): void {
    this.clearTimer();
    const batch = this.current;
    if (batch === undefined || batch.spans === 0) return;
    this.current = undefined;
    this.waiting.push(batch);
    this.waitingSpans += batch.spans;
    this.next();
  }

  /** Exports the next waiting batch unless one is on its way; else times the one being filled. */
  private next(): void {
    if (this.exporting) return;
    const batch = this.waiting.shift();
    if (batch === undefined) {
      if (this.idle.length > 0) for (const resolve of this.idle.splice(0)) resolve();
      if (this.current !== undefined && this.timer === undefined) this.startTimer();
      return;
    }
    this.waitingSpans -= batch.spans;
    this.exporting = true;
    void this.export(batch)
      .catch((e: unknown) => globalErrorHandler(e as Error))
      .finally(() => {
        this.exporting = false;
        this.next();
      });
  }

  /** A detected resource may still be reading some attributes; the SDK's processor waits for them too. */
  private export(batch: Batch): Promise<void> {
    const r = batch.resource as { asyncAttributesPending?: boolean; waitForAsyncAttributes?: () => Promise<void> };
    if (r.asyncAttributesPending && r.waitForAsyncAttributes) return r.waitForAsyncAttributes().then(() => this.send(batch));
    return this.send(batch);
  }

  private send(batch: Batch): Promise<void> {
    const request = batch.encode();
    this.sizeHint = Math.max(1024, Math.ceil(request.bytes.length / Math.max(1, batch.byScope.size)) + 1024);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('Timeout')), this.limits.exportTimeoutMillis);
      context.with(suppressTracing(context.active()), () =>
        this.exporter.export(request, (result) => {
          clearTimeout(timer);
          if (result.code === ExportResultCode.SUCCESS) resolve();
          else reject(result.error ?? new Error('BatchSpanProcessor: span export failed'));
        }),
      );
    });
  }

  private startTimer(): void {
    this.timer = setTimeout(() => this.close(), this.limits.scheduledDelayMillis).unref();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
