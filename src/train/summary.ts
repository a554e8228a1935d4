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
  runId: string;
  valAccuracy: number | null;
  valLoss: number | null;
  macroF1: number | null;
  confusionMatrix: number[][] | null;
  classes: string[];
  steps: number;
  epochs: number;
  skippedSteps: number;
  workers: number;
  perRankBatch: number;
  backend: string;
  workerBackends: { rank: number; backend: string; device: string | null }[];
  seed: number;
  imageSize: number;
  alpha: number;
  batchNorm: string;
  weightsSource: string;
  inputScaling: string;
  weightsSha256: string;
  fingerprint: string;
  trainExamples: number;
  valExamples: number;
  rejectedMessages: Record<string, number>;
  wallSeconds: number;
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
