/**
 * Test helper for the runtime tests: a tiny image folder copied from the
 * bundled flowers5 photos (a few real JPEGs per class, `train/` and `val/`
 * subfolders), so a test decodes 20 images instead of 1,700; a job config
 * on it that the cpu backend trains in seconds; and an in-process run of
 * that job that returns its summary and final weights.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { type JobConfig, parseJobConfig } from "../src/config.ts";
import { createLogger, type Logger } from "../src/log.ts";
import { readCheckpoint } from "../src/train/checkpoint.ts";
import { trainInProcess } from "../src/train/run_job.ts";
import type { RunSummary } from "../src/train/summary.ts";
import type { Transport } from "../src/transport/mod.ts";

const FLOWERS5 = new URL("../assets/data/flowers5/", import.meta.url).pathname;

/** Options of {@linkcode createTinyDataset}. */
export interface TinyDatasetOptions {
  /** Classes to copy, in flowers5's sorted order. @default 5 */
  classes?: number;
  /** Training images per class. @default 3 */
  trainPerClass?: number;
  /** Validation images per class. @default 1 */
  valPerClass?: number;
}

/** A tiny dataset in a temporary folder. */
export interface TinyDataset {
  /** The image folder (`<root>/{train,val}/<class>/*.jpg`). */
  root: string;
  /** A fresh, empty folder for the decoded-image cache. */
  cacheDir: string;
  /** Class names, sorted. */
  classes: string[];
  /** Training images in all. */
  trainCount: number;
  /** Removes everything. */
  remove(): Promise<void>;
}

async function sortedNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/**
 * Copies the first `trainPerClass` training and `valPerClass` validation
 * photos of the first `classes` flowers5 classes (sorted by file name) into
 * a new temporary folder.
 */
export async function createTinyDataset(
  options: TinyDatasetOptions = {},
): Promise<TinyDataset> {
  const { classes = 5, trainPerClass = 3, valPerClass = 1 } = options;

  const base = await Deno.makeTempDir({ prefix: "dptrain_tiny_" });
  const root = join(base, "images");
  const cacheDir = join(base, "cache");
  await Deno.mkdir(cacheDir, { recursive: true });
  const names = (await sortedNames(join(FLOWERS5, "train"))).slice(0, classes);

  const splits: [string, number][] = [
    ["train", trainPerClass],
    ["val", valPerClass],
  ];
  for (const [split, count] of splits) {
    for (const name of names) {
      const from = join(FLOWERS5, split, name);
      const to = join(root, split, name);
      await Deno.mkdir(to, { recursive: true });
      const files = (await sortedNames(from)).slice(0, count);
      for (const file of files) {
        await Deno.copyFile(join(from, file), join(to, file));
      }
    }
  }

  return {
    root,
    cacheDir,
    classes: names,
    trainCount: names.length * trainPerClass,
    remove: () => Deno.remove(base, { recursive: true }),
  };
}

/** Sections to lay over {@linkcode tinyJobConfig}'s defaults. */
export interface TinyJobSections {
  model?: Record<string, unknown>;
  data?: Record<string, unknown>;
  train?: Record<string, unknown>;
  optimizer?: unknown;
}

/**
 * A job on a tiny dataset that the cpu backend trains in seconds:
 * MobileNetV2 alpha 0.35 at 32 px with seeded random weights, 2 workers of
 * 2 examples, 2 steps, the dataset's own cache folder.
 */
export function tinyJobConfig(
  dataset: TinyDataset,
  sections: TinyJobSections = {},
): JobConfig {
  return parseJobConfig({
    model: {
      alpha: 0.35,
      imageSize: 32,
      weights: "none",
      // The PS's averaging of moving statistics is what "train" exercises.
      batchNorm: "train",
      ...sections.model,
    },
    data: {
      root: dataset.root,
      cacheDir: dataset.cacheDir,
      cropMinArea: 0.5,
      ...sections.data,
    },
    train: {
      workers: 2,
      perRankBatch: 2,
      epochs: 1,
      maxSteps: 2,
      seed: 7,
      backend: "cpu",
      // Fast heartbeats: the PS's goodbye (re-sending `stop` while workers
      // still beat) then takes a fraction of a second.
      heartbeatSeconds: 0.2,
      heartbeatTimeoutSeconds: 5,
      retrySeconds: 0.5,
      ...sections.train,
    },
    ...(sections.optimizer === undefined
      ? {}
      : { optimizer: sections.optimizer }),
  });
}

/** A logger that keeps its lines for assertions instead of printing. */
export function captureLogger(
  runId: string,
  role = "test",
): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const log = createLogger({ runId, role }, {
    level: "info",
    sink: (line) => lines.push(line),
  });
  return { log, lines };
}

/** What {@linkcode trainTiny} returns. */
export interface TinyRun {
  summary: RunSummary;
  /** The final flat weights, from the run's last checkpoint. */
  weights: Float32Array;
  outDir: string;
  /** The run's log lines. */
  lines: string[];
}

/** Options of {@linkcode trainTiny}. */
export interface TrainTinyOptions {
  runId: string;
  /** The in-process bus's message size limit. */
  maxPayloadBytes?: number;
  /** Called with a connection to the bus once the roles are started. */
  inject?: (transport: Transport) => void;
}

/**
 * Trains `config` in this process over the in-process transport into a
 * new folder beside `config.data.root`, and reads the final weights back
 * from the checkpoint the parameter server writes at the last step.
 */
export async function trainTiny(
  config: JobConfig,
  options: TrainTinyOptions,
): Promise<TinyRun> {
  const { runId } = options;
  // Next to the images, so that removing the dataset removes the run too.
  const outDir = await Deno.makeTempDir({
    dir: join(config.data.root, ".."),
    prefix: `${runId}_`,
  });
  const { log, lines } = captureLogger(runId);

  const summary = await trainInProcess({
    config,
    runId,
    outDir,
    backend: "cpu",
    log,
    ...(options.maxPayloadBytes === undefined
      ? {}
      : { maxPayloadBytes: options.maxPayloadBytes }),
    ...(options.inject === undefined ? {} : { inject: options.inject }),
  });
  const checkpoint = await readCheckpoint(join(outDir, "checkpoint.msgpack"));
  return { summary, weights: checkpoint.weights, outDir, lines };
}

/**
 * Hex SHA-256 of float32 values as little-endian bytes, computed here with
 * node:crypto (not with the code under test) to check `weightsSha256`.
 */
export function sha256OfFloats(values: Float32Array): string {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return createHash("sha256").update(bytes).digest("hex");
}
