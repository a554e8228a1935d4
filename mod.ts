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
  ConfigError,
  type ConfigOverrides,
  DEFAULTS,
  fingerprint,
  type JobConfig,
  loadJobConfig,
  parseJobConfig,
} from "./src/config.ts";

// Model and pretrained weights.
export {
  ALPHAS,
  buildMobileNetV2,
  makeDivisible,
  type MobileNetV2Options,
  ModelConfigError,
} from "./src/model/mobilenet_v2.ts";
export {
  type InputScaling,
  inputScalingOf,
  type LoadedWeights,
  loadPretrainedWeights,
  type LoadWeightsOptions,
  WeightsMismatchError,
} from "./src/model/weights/mod.ts";

// Data.
export {
  downloadTfFlowers,
  ImageDecodeError,
  type ImageFolderDataset,
  ImageFolderError,
  loadImageFolder,
  type LoadImageFolderOptions,
  makeBatch,
  permutation,
  rankBatchPositions,
  stepsPerEpoch,
} from "./src/data/mod.ts";

// Optimizer.
export {
  AdamW,
  type AdamWOptions,
  explainRates,
  FlatAdamW,
  type FlatAdamWOptions,
  makeSchedule,
  type OptimizerConfig,
  OptimizerConfigError,
  parseOptimizerConfig,
  PRESETS,
} from "./src/optim/mod.ts";

// Backends.
export {
  type BackendChoice,
  type BackendReport,
  selectBackend,
} from "./src/backend/mod.ts";

// Training runtime.
export {
  runPsRole,
  runWorkerRole,
  trainInProcess,
  type TrainInProcessOptions,
} from "./src/train/run_job.ts";
export { type RunSummary } from "./src/train/summary.ts";
export {
  type Batch,
  computeLocalStep,
  type LocalStepResult,
} from "./src/train/local_step.ts";
export { layoutOf, type VariableLayout } from "./src/train/layout.ts";
export {
  type Checkpoint,
  CheckpointError,
  CheckpointWriteError,
  readCheckpoint,
  writeCheckpoint,
} from "./src/train/checkpoint.ts";
export { saveLayersModel } from "./src/train/save_model.ts";
export { runParameterServer } from "./src/ps/parameter_server.ts";
export {
  RunAbortedError,
  runWorker,
  WorkerDisconnectedError,
  WorkerRefusedError,
} from "./src/worker/worker.ts";
export { StallError } from "./src/ps/collector.ts";
export {
  type Assignment,
  EpochPlan,
  type EpochPlanState,
} from "./src/ps/epoch_plan.ts";
export { JoinTimeoutError } from "./src/ps/membership.ts";
export { createLogger, type Logger } from "./src/log.ts";

// Wire and transports.
export {
  connectNats,
  InProcessHub,
  startNatsServer,
  subjects,
  type Transport,
} from "./src/transport/mod.ts";
export {
  type FaultOptions,
  FaultyTransport,
} from "./src/transport/faulty_transport.ts";
export { decodeMessage, encodeMessage, WireError } from "./src/wire/mod.ts";
