// What the SDK builds from the OTEL_* environment for its tracer provider, by the SDK's own
// functions: the agent's tracer (span-recorder.ts) stands where that provider would, so it takes the
// same sampler, span limits, processors and resource. sdk-node does not list these in its index,
// hence the paths into its build (no exports map forbids them; the version is pinned, and
// test/span-recorder.test.ts fails if one moves).
import { AlwaysOnSampler, ParentBasedSampler, type Sampler, type SpanExporter, type SpanLimits, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { detectResources, envDetector, hostDetector, processDetector, type Resource } from '@opentelemetry/resources';
import { metrics } from '@opentelemetry/api';
import { getBooleanFromEnv, getStringFromEnv } from '@opentelemetry/core';
import { createBatchSpanProcessorFromEnv, createSamplerFromEnv, createSpanLimitsFromEnv } from '@opentelemetry/sdk-node/build/src/create-from-env.js';
import { getResourceDetectorsFromEnv, getSpanProcessorsFromEnv } from '@opentelemetry/sdk-node/build/src/utils.js';

/** The SDK TracerProvider's defaults, under what the environment sets. */
const DEFAULT_LIMITS: Required<SpanLimits> = {
  attributeCountLimit: 128,
  attributeValueLengthLimit: Infinity,
  eventCountLimit: 128,
  linkCountLimit: 128,
  attributePerEventCountLimit: 128,
  attributePerLinkCountLimit: 128,
};

export function samplerFromEnv(): Sampler {
  return createSamplerFromEnv() ?? new ParentBasedSampler({ root: new AlwaysOnSampler() });
}

export function spanLimitsFromEnv(): Required<SpanLimits> {
  const set = Object.entries(createSpanLimitsFromEnv() ?? {}).filter(([, v]) => v !== undefined);
  return { ...DEFAULT_LIMITS, ...Object.fromEntries(set) };
}

/**
 * A batch processor around `exporter` (OTEL_BSP_* honoured), or without one every exporter
 * OTEL_TRACES_EXPORTER names; with OTEL_NODE_EXPERIMENTAL_SDK_METRICS, reporting on themselves to
 * the global meter provider as NodeSDK's would (the recorder itself reports no otel.sdk.span.*).
 */
export function spanProcessorsFromEnv(exporter?: SpanExporter): SpanProcessor[] {
  const selfMetrics = getBooleanFromEnv('OTEL_NODE_EXPERIMENTAL_SDK_METRICS') ? metrics.getMeterProvider() : undefined;
  return exporter !== undefined ? [createBatchSpanProcessorFromEnv(exporter, selfMetrics)] : getSpanProcessorsFromEnv(selfMetrics);
}

/** `base` with what NodeSDK's default detectors (or OTEL_NODE_RESOURCE_DETECTORS) find merged over it. */
export function detectedResource(base: Resource): Resource {
  const detectors = getStringFromEnv('OTEL_NODE_RESOURCE_DETECTORS') ? getResourceDetectorsFromEnv() : [envDetector, processDetector, hostDetector];
  return base.merge(detectResources({ detectors }));
}
