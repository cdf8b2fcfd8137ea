/**
 * Tasker for Node.js: workflows of steps whose handlers are TypeScript functions and classes,
 * run by a Rust engine on SQLite or PostgreSQL.
 *
 * @example
 * import { connect, defineHandler, Worker } from 'tasker-core';
 * const client = connect();
 * await client.registerTemplates('./templates');
 * const worker = new Worker(client, {
 *   queues: ['orders'],
 *   handlers: [defineHandler('orders.Validate', (ctx) => ({ ok: true }))],
 * });
 * await worker.start();
 * const task = await client.createTask({ namespace: 'orders', name: 'process_order', context: { id: 1 },
 *   initiator: 'me', sourceSystem: 'docs', reason: 'example' });
 * const done = await task.wait({ timeoutMs: 10_000 });
 *
 * @module
 */

export {
  type AddToDlqOptions,
  Client,
  type CompleteStepOptions,
  connect,
  type ConnectOptions,
  type CreateTaskRequest,
  type EventDeadLettersOptions,
  type HealthReport,
  type ListDlqFilter,
  type ListTasksFilter,
  type MetricsSnapshot,
  type OperatorAction,
  type StalenessReportOptions,
  Task,
  TaskDetail,
  type UpdateDlqEntryOptions,
  type WaitOptions,
} from './client.js';
export { type ConfigOrigin, type ConfigValue, loadConfig } from './config.js';
export { EventBridge, type EventBridgeListener, type EventBridgeOptions } from './bridge.js';
export {
  catalog,
  type Delivery,
  envelopeSchema,
  type Event,
  type EventCategory,
  type EventDeadLetter,
  type EventDelivery,
  type EventGroupStatus,
  eventInfo,
  type EventInfo,
  EventSubscription,
  FastSubscription,
  type NextOptions,
  patternMatches,
  type PollOptions,
  type SubscriptionOptions,
} from './events.js';
export {
  type DeliveryInfo,
  type EventHandler,
  routeMethod,
  type RunnerStopOptions,
  Subscriber,
  type SubscriberClass,
  subscriber,
  type SubscriberDefinition,
  type SubscriberDefinitionOptions,
  SubscriberRunner,
  type SubscriberRunnerOptions,
  type SubscriberRunnerStats,
  type SubscriberSource,
} from './subscriber.js';
export {
  BatchContext,
  type BatchData,
  type CheckpointSink,
  type HandlerSpec,
  type PublishedEvent,
  StepContext,
  type StepContextData,
} from './context.js';
export {
  type ConfigProblem,
  ConfigurationError,
  DatabaseError,
  DlqEntryNotFoundError,
  FencedError,
  UnavailableError,
  BackpressureError,
  type HandlerErrorOptions,
  HandlerNotFoundError,
  IllegalTransitionError,
  InvalidArgumentError,
  InvalidStateError,
  PermanentError,
  RetryableError,
  type RetryableErrorOptions,
  ShutDownError,
  StepNotFoundError,
  WorkerFailedError,
  TaskerError,
  type TaskerErrorDetails,
  TaskNotFoundError,
  TemplateConflictError,
  TemplateError,
  TemplateNotFoundError,
  type TemplateProblem,
  TimeoutError,
  ValidationError,
} from './errors.js';
export {
  defineHandler,
  parseModulePath,
  type HandlerDefinition,
  type HandlerFunction,
  HandlerRegistry,
  type Handlers,
  type HandlerSource,
  StepHandler,
  type StepHandlerClass,
} from './handler.js';
export {
  type BatchesSpec,
  batchCursors,
  type BatchOutcome,
  type DecisionOutcome,
  type EvenBatches,
  type ExplicitBatches,
} from './outcomes.js';
export {
  type BatchCursor,
  type Checkpoint,
  DLQ_REASONS,
  DLQ_STATUSES,
  type DlqCount,
  type DlqEntry,
  type DlqNote,
  type DlqReason,
  type DlqSnapshot,
  type DlqSnapshotStep,
  type DlqStats,
  type DlqStatus,
  type Health,
  type JsonObject,
  type JsonValue,
  type QueuedDlqEntry,
  type RegisteredTemplate,
  type TemplateInfo,
  type ShutdownReport,
  type Step,
  type StepBatch,
  type StepDetail,
  type StepError,
  type StepState,
  type TaskHealth,
  TERMINAL_TASK_STATES,
  type TaskState,
  type TaskSummary,
  type Transition,
  type WorkerInfo,
} from './records.js';
export { defaultLogger, type LogFunction, type Logger, type LoggerObject, type LogLevel, type LogRecord, setLogger } from './logging.js';
export { type FailureOptions, type StepFailure, StepResult } from './result.js';
export { type ErrorStep, type StopOptions, Worker, type WorkerOptions, type WorkerStats } from './worker.js';
