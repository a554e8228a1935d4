/**
 * What every process of a job prepares before the first step: the data,
 * the model and its variable layout, the schedule's length and the config
 * fingerprint that the parameter server checks when a worker joins.
 *
 * @module
 */
import type { LayersModel } from "../_tfjs_types.ts";
import { fingerprint, type JobConfig } from "../config.ts";
import {
  type ImageFolderDataset,
  type ImageFolderEvent,
  loadImageFolder,
  stepsPerEpoch as countSteps,
} from "../data/mod.ts";
import { buildMobileNetV2 } from "../model/mobilenet_v2.ts";
import { describeLayout, layoutOf, type VariableLayout } from "./layout.ts";

/** The data loaded, the model built and the run's length. */
export interface JobSetup {
  /** The job's config, as given. */
  config: JobConfig;
  /** The decoded train and validation splits. */
  dataset: ImageFolderDataset;
  /** Class names in label-index order (the dataset's). */
  classes: string[];
  /** MobileNetV2 with seeded initial weights; the caller disposes it. */
  model: LayersModel;
  /** Order of the model's variables in the flat vector. */
  layout: VariableLayout;
  /** Config fingerprint the parameter server checks when a worker joins. */
  fingerprint: string;
  /** Steps per epoch with every rank live: ceil(examples / global batch). */
  stepsPerEpoch: number;
  /** Steps the run takes: epochs times steps per epoch, or `maxSteps`. */
  totalSteps: number;
}

/** Options of {@linkcode setupJob}. */
export interface SetupJobOptions {
  /** Receives data-loading progress. */
  onData?: (event: ImageFolderEvent) => void;
}

/**
 * Loads the dataset (decoded once, then from the cache), builds the model
 * with seeded initial weights and derives the fingerprint.
 */
export async function setupJob(
  config: JobConfig,
  options: SetupJobOptions = {},
): Promise<JobSetup> {
  const { model: m, data, train } = config;

  const dataset = await loadImageFolder(data.root, {
    imageSize: m.imageSize,
    valFraction: data.valFraction,
    seed: train.seed,
    onCorrupt: data.onCorrupt,
    ...(data.cacheDir === null ? {} : { cacheDir: data.cacheDir }),
    log: options.onData,
  });

  const model = buildMobileNetV2({
    alpha: m.alpha,
    imageSize: m.imageSize,
    numClasses: dataset.classes.length,
    headUnits: m.headUnits,
    seed: train.seed,
  });
  const layout = layoutOf(model);

  const perEpoch = countSteps({
    n: dataset.train.count,
    globalBatch: train.workers * train.perRankBatch,
  });
  const fullRun = perEpoch * train.epochs;
  const totalSteps = train.maxSteps > 0
    ? Math.min(train.maxSteps, fullRun)
    : fullRun;

  return {
    config,
    dataset,
    classes: dataset.classes,
    model,
    layout,
    fingerprint: await fingerprint(config, {
      classes: dataset.classes,
      layout: describeLayout(layout),
    }),
    stepsPerEpoch: perEpoch,
    totalSteps,
  };
}
