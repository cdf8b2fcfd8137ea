// TypeScript handler of the cross-language trace (tests/fixtures/templates/telemetry_polyglot.yaml,
// tests/e2e/test_telemetry.py):
//
//   telemetry.typescript_step  starts a span of its own with the OpenTelemetry SDK, under the
//                              attempt's span (ctx.traceContext), exported over OTLP/HTTP
//                              (protobuf) to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

import { ROOT_CONTEXT, defaultTextMapGetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { defineHandler, type StepContext } from 'tasker-core';

const provider = new TracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'typescript-handlers' }),
  spanProcessors: [new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url: process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT }) })],
});
const tracer = provider.getTracer('telemetry_handlers');
const propagator = new W3CTraceContextPropagator();

export const typescriptStep = defineHandler('telemetry.typescript_step', async (ctx: StepContext) => {
  const parent = propagator.extract(ROOT_CONTEXT, { traceparent: ctx.traceContext ?? '' }, defaultTextMapGetter);
  const span = tracer.startSpan('typescript.handler', { attributes: { language: 'typescript' } }, parent);
  span.end();
  await provider.forceFlush();
  return { by: 'typescript', trace_context: ctx.traceContext };
});

export const HANDLERS = [typescriptStep];
