/**
 * dptrain: data-parallel fine-tuning of TensorFlow.js models on Deno. A
 * parameter server applies AdamW with per-layer learning rates to the
 * gradients that workers compute on shards of the data, over NATS.
 *
 * The command line (`deno task demo | cluster | ps | worker | lr | bench`)
 * covers the common jobs; this module is the library underneath.
 *
 * @example Fine-tune in one process (PS and workers over the in-process bus)
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import { parseJobConfig, selectBackend, trainInProcess } from "./mod.ts";
 *
 * const backend = await selectBackend("auto");
 * const config = parseJobConfig({
 *   model: { alpha: 0.35, imageSize: 96 },
 *   train: { workers: 2, epochs: 1, maxSteps: 10 },
 * });
 * const summary = await trainInProcess({
 *   config,
 *   runId: "example",
 *   outDir: "runs/example",
 *   backend: backend.name,
 * });
 * console.log(summary.valAccuracy, tf.memory().numTensors);
 * ```
 *
 * @example AdamW with per-layer rates in plain `model.fit`
 * ```ts
 * import { AdamW, buildMobileNetV2, parseOptimizerConfig } from "./mod.ts";
 *
 * const model = buildMobileNetV2({ alpha: 0.35, imageSize: 96 });
 * const optimizer = new AdamW({
 *   config: parseOptimizerConfig({ preset: "reference" }),
 *   variables: model.trainableWeights,
 *   stepsPerEpoch: 100,
 * });
 * model.compile({ optimizer, loss: "categoricalCrossentropy" });
 * ```
 *
 * @module
 */

// Job configuration.
export {
  applyOverrides,
  type BackendName,
  type BatchNormMode,
  ConfigError,
  type ConfigOverrides,
  type DataConfig,
  DEFAULTS,
  fingerprint,
  type JobConfig,
  loadJobConfig,
  type ModelConfig,
  parseJobConfig,
  type TrainConfig,
} from "./src/config.ts";

// Model and pretrained weights.
export {
  type Alpha,
  ALPHAS,
  buildMobileNetV2,
  makeDivisible,
  type MobileNetV2Options,
  ModelConfigError,
} from "./src/model/mobilenet_v2.ts";
export {
  INPUT_SCALINGS,
  type InputScaling,
  inputScalingOf,
  type LoadedWeights,
  loadPretrainedWeights,
  type LoadWeightsOptions,
  type ShapeMismatch,
  WeightsMismatchError,
  type WeightsSource,
} from "./src/model/weights/mod.ts";

// Data.
export {
  type Batch as ImageBatch,
  type CorruptPolicy,
  downloadTfFlowers,
  type DownloadTfFlowersOptions,
  type FlipPolicy,
  type FolderLayout,
  ImageDecodeError,
  type ImageFolderDataset,
  ImageFolderError,
  type ImageFolderEvent,
  type ImageSet,
  type ImageSplit,
  type LastBatchPolicy,
  loadImageFolder,
  type LoadImageFolderOptions,
  makeBatch,
  type MakeBatchOptions,
  permutation,
  type PermutationOptions,
  type RandomCrop,
  type RandomFlip,
  type RankBatchOptions,
  rankBatchPositions,
  type ResizeFit,
  type SkippedImage,
  stepsPerEpoch,
  type StepsPerEpochOptions,
  type TfFlowersDownload,
  type TfFlowersEvent,
} from "./src/data/mod.ts";

// Optimizer.
export {
  AdamW,
  type AdamWOptions,
  type ConstantSchedule,
  type CosineSchedule,
  type DecayConvention,
  type DecayEta,
  type ExplainOptions,
  explainRates,
  FlatAdamW,
  type FlatAdamWOptions,
  type LayerDecayConfig,
  makeSchedule,
  type MatchMode,
  type MatchRule,
  type MultiplierRule,
  type NamedTensor,
  type NamedWeight,
  type OptimizerConfig,
  OptimizerConfigError,
  type OptimizerState,
  parseOptimizerConfig,
  type PlacedRule,
  PRESETS,
  type RateRow,
  type ReferenceSchedule,
  type RuleSource,
  type RuleWarning,
  type Schedule,
  type ScheduleConfig,
  type ScheduleContext,
  type StepArgs,
  type StepOutcome,
  type VariablePlan,
  type VariableSpec,
  type WarmupStepsSchedule,
} from "./src/optim/mod.ts";

// Backends.
export {
  type BackendChoice,
  type BackendReport,
  selectBackend,
  type SelectBackendOptions,
} from "./src/backend/mod.ts";

// Training runtime.
export {
  type PsRoleOptions,
  runPsRole,
  runWorkerRole,
  trainInProcess,
  type TrainInProcessOptions,
  type WorkerRoleOptions,
} from "./src/train/run_job.ts";
export { type RunSummary } from "./src/train/summary.ts";
export { type AtomicWriteStage } from "./src/train/atomic_file.ts";
export { type Evaluation } from "./src/train/evaluate.ts";
export {
  type JobSetup,
  setupJob,
  type SetupJobOptions,
} from "./src/train/job.ts";
export {
  type Batch,
  computeLocalStep,
  type LocalStepOptions,
  type LocalStepResult,
} from "./src/train/local_step.ts";
export {
  type LayoutEntry,
  layoutOf,
  type VariableLayout,
  type VariableRole,
} from "./src/train/layout.ts";
export {
  type Checkpoint,
  CheckpointError,
  type CheckpointOnDisk,
  CheckpointWriteError,
  readCheckpoint,
  writeCheckpoint,
  type WriteCheckpointOptions,
} from "./src/train/checkpoint.ts";
export { saveLayersModel } from "./src/train/save_model.ts";
export {
  type ParameterServerOptions,
  type PsResult,
  runParameterServer,
} from "./src/ps/parameter_server.ts";
export {
  RunAbortedError,
  runWorker,
  WorkerDisconnectedError,
  type WorkerOptions,
  WorkerRefusedError,
  type WorkerResult,
} from "./src/worker/worker.ts";
export { StallError } from "./src/ps/collector.ts";
export {
  type Assignment,
  EpochPlan,
  type EpochPlanState,
} from "./src/ps/epoch_plan.ts";
export { JoinTimeoutError } from "./src/ps/membership.ts";
export {
  createLogger,
  type LogContext,
  type Logger,
  type LoggerOptions,
  type LogLevel,
} from "./src/log.ts";

// Wire and transports.
export {
  connectNats,
  type ConnectNatsOptions,
  type HandlerErrorCallback,
  type InProcessConnectOptions,
  InProcessHub,
  type MessageHandler,
  type NatsAccess,
  type NatsAuth,
  type NatsNkeyUser,
  type NatsPasswordUser,
  type NatsPermissions,
  type NatsServer,
  type NatsServerAuthorization,
  type NatsServerOperator,
  type NatsServerOptions,
  type NatsServerTls,
  type NatsServerUser,
  type NatsTls,
  type RunSubjects,
  startNatsServer,
  subjects,
  type Subscription,
  type Transport,
  type TransportLog,
  type TransportLogEntry,
  type TransportLogLevel,
} from "./src/transport/mod.ts";
export {
  type FaultCounts,
  type FaultOptions,
  FaultyTransport,
} from "./src/transport/faulty_transport.ts";
export {
  CONTROL_COMMANDS,
  type ControlCommand,
  type ControlMessage,
  type DecodeExpectations,
  decodeMessage,
  encodeMessage,
  type HelloMessage,
  MESSAGE_KINDS,
  type MessageBase,
  type MessageKind,
  type MessageOfKind,
  type OutgoingMessage,
  type ResendMessage,
  type StepWindow,
  TENSOR_STREAMS,
  type TensorChunkInit,
  type TensorChunkMessage,
  type TensorStream,
  type WelcomeMessage,
  WIRE_ERROR_REASONS,
  WireError,
  type WireErrorReason,
  type WireMessage,
  type WireMeta,
  type WireMetaValue,
  WORKER_STATES,
  type WorkerState,
} from "./src/wire/mod.ts";
