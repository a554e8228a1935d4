/**
 * `summary.json`: what a finished (or stopped) run produced, in one object
 * a script can read.
 *
 * @module
 */
import type { JobSetup } from "./job.ts";
import type { PsResult } from "../ps/parameter_server.ts";
import { writeFileAtomic } from "./atomic_file.ts";

/** The fields of `summary.json`. */
export interface RunSummary {
  /** The run's id, one token of letters, digits, `_` and `-`. */
  runId: string;
  /** Validation accuracy in [0, 1]; null when the run ended unevaluated. */
  valAccuracy: number | null;
  /** Mean validation cross-entropy; null when unevaluated. */
  valLoss: number | null;
  /** Unweighted mean of the per-class F1 scores; null when unevaluated. */
  macroF1: number | null;
  /** Validation counts, `[true][predicted]`; null when unevaluated. */
  confusionMatrix: number[][] | null;
  /** Class names, in label-index order. */
  classes: string[];
  /** Steps done (weights versions published), skipped ones included. */
  steps: number;
  /** Epochs done: whole epochs plus the share of the current one. */
  epochs: number;
  /** Steps whose update was skipped for a non-finite gradient or value. */
  skippedSteps: number;
  /** Worker ranks the config asked for (`train.workers`). */
  workers: number;
  /** Examples per rank per step (`train.perRankBatch`). */
  perRankBatch: number;
  /** tfjs backend of the process that ran the parameter server. */
  backend: string;
  /** Each rank that joined, with its tfjs backend and device (null if none). */
  workerBackends: { rank: number; backend: string; device: string | null }[];
  /** Seed of shuffling, flips, crops and initialisation (`train.seed`). */
  seed: number;
  /** Side of the square model input in pixels. */
  imageSize: number;
  /** MobileNetV2 width multiplier. */
  alpha: number;
  /** BatchNorm mode of the workers' forward pass: `train` or `frozen`. */
  batchNorm: string;
  /** Pretrained weights as configured (`model.weights`). */
  weightsSource: string;
  /** Pixel scaling the weights expect: `minus_one_to_one` or `zero_to_one`. */
  inputScaling: string;
  /** Hex SHA-256 of the final flat weights as little-endian float32 bytes. */
  weightsSha256: string;
  /** The config fingerprint every process of the run agreed on. */
  fingerprint: string;
  /** Images in the training split. */
  trainExamples: number;
  /** Images in the validation split. */
  valExamples: number;
  /** Messages the parameter server rejected, by reason (non-zero only). */
  rejectedMessages: Record<string, number>;
  /** Wall-clock seconds of training, including those before a resume. */
  wallSeconds: number;
  /** Training images per second since this process started or resumed. */
  imagesPerSecond: number;
}

/** Builds the summary of a run from the PS's result. */
export function summarize(args: {
  runId: string;
  setup: JobSetup;
  result: PsResult;
  backend: string;
  inputScaling: string;
}): RunSummary {
  const { runId, setup, result, backend, inputScaling } = args;
  const { config } = setup;
  const e = result.evaluation;
  const rejected = Object.fromEntries(
    Object.entries(result.rejections).filter(([, n]) => n > 0),
  );

  return {
    runId,
    valAccuracy: e?.accuracy ?? null,
    valLoss: e?.loss ?? null,
    macroF1: e?.macroF1 ?? null,
    confusionMatrix: e?.confusionMatrix ?? null,
    classes: setup.classes,
    steps: result.steps,
    epochs: result.epochs,
    skippedSteps: result.skippedSteps,
    workers: config.train.workers,
    perRankBatch: config.train.perRankBatch,
    backend,
    workerBackends: result.members,
    seed: config.train.seed,
    imageSize: config.model.imageSize,
    alpha: config.model.alpha,
    batchNorm: config.model.batchNorm,
    weightsSource: config.model.weights,
    inputScaling,
    weightsSha256: result.weightsSha256,
    fingerprint: setup.fingerprint,
    trainExamples: setup.dataset.train.count,
    valExamples: setup.dataset.val.count,
    rejectedMessages: rejected,
    wallSeconds: result.wallSeconds,
    imagesPerSecond: result.imagesPerSecond,
  };
}

/** Writes `summary.json` atomically. */
export async function writeSummary(
  path: string,
  summary: RunSummary,
): Promise<void> {
  await writeFileAtomic(
    path,
    new TextEncoder().encode(JSON.stringify(summary, null, 2) + "\n"),
  );
}
