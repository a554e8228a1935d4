/**
 * The job configuration: one JSON file with `model`, `data`, `train` and
 * `optimizer` sections, defaults for everything, and command-line flags on
 * top. Every process of a job derives the same fingerprint from it, and the
 * parameter server refuses a worker whose fingerprint differs.
 *
 * @module
 */
import { type Alpha, ALPHAS } from "./model/mobilenet_v2.ts";

/** How BatchNorm layers behave in the workers' forward pass. */
export type BatchNormMode = "train" | "frozen";

/** Backend names accepted by `--backend`. */
export type BackendName = "auto" | "tensorflow" | "webgpu" | "wasm" | "cpu";

/** The model section. */
export interface ModelConfig {
  /** Width multiplier. */
  alpha: Alpha;
  /** Side of the square input in pixels. */
  imageSize: number;
  /** Units of `flower_dense`. */
  headUnits: number;
  /** `bundled`, `nsfwjs`, `imagenet`, `none`, or a path to weights. */
  weights: string;
  /**
   * `train`: batch statistics in the forward pass, moving statistics
   * averaged by the PS (Keras's default when BatchNorm layers are
   * trainable). `frozen`: the pretrained moving statistics in training as
   * in inference; gamma and beta still train. With 8 images per rank,
   * `frozen` fine-tunes better (docs/results.md), so it is the default.
   */
  batchNorm: BatchNormMode;
}

/** The data section. */
export interface DataConfig {
  /** Image folder: `<root>/<class>/*` or `<root>/{train,val}/<class>/*`. */
  root: string;
  /** Validation share when the folder has no `val/`. */
  valFraction: number;
  /** `error` stops on a bad image; `skip` skips it and counts it. */
  onCorrupt: "error" | "skip";
  /** Random horizontal flips of training images. */
  flip: boolean;
  /**
   * Random resized crops of training images: the smallest share of the
   * area a crop keeps, in (0, 1]; 0 turns crops off.
   */
  cropMinArea: number;
  /** Where decoded images are cached; `null` for the default. */
  cacheDir: string | null;
}

/** The train section. */
export interface TrainConfig {
  /** Number of worker processes (ranks). */
  workers: number;
  /** Examples per rank per step; the global batch is workers times this. */
  perRankBatch: number;
  /** Epochs to run. */
  epochs: number;
  /** Stop after this many steps (all results still written); 0: no cap. */
  maxSteps: number;
  /** Seed of shuffling, flips and initialisation. */
  seed: number;
  /** tfjs backend of the workers. */
  backend: BackendName;
  /** Output folder; `null` picks `runs/<runId>`. */
  out: string | null;
  /** Warn when a step waits this long for a rank. */
  stallWarnSeconds: number;
  /** Give up on a rank that stalls this long: the run stops, checkpointed. */
  stallAbortSeconds: number;
  /** Write a checkpoint every this many steps (and at each epoch end). */
  checkpointEverySteps: number;
  /**
   * Decay of an exponential moving average of the weights, updated after
   * every step; validation, the summary and the saved model use the
   * average. 0 turns it off.
   */
  emaDecay: number;
  /**
   * What a failed checkpoint write does: `stop` ends the run (the previous
   * checkpoint stays intact), `continue` logs the error and trains on.
   */
  onCheckpointError: "stop" | "continue";
  /** Seconds between a worker's heartbeats (`hello` messages). */
  heartbeatSeconds: number;
  /**
   * A rank silent this long is dead: its step's examples go to the others.
   * The PS waits at least 3 times the rank's last step time plus 5 s, since
   * a worker cannot send heartbeats while it computes.
   */
  heartbeatTimeoutSeconds: number;
  /**
   * A stream incomplete this long after its last chunk is asked for again
   * (the PS re-sends weights chunks or asks a worker for gradient chunks).
   */
  retrySeconds: number;
  /** Seconds a step waits for its slowest rank; 0: no deadline. */
  stepDeadlineSeconds: number;
  /**
   * At the deadline: `wait` keeps waiting (and logs), `drop` completes the
   * step without the late ranks and gives their examples to the next step.
   */
  stragglerPolicy: "wait" | "drop";
  /**
   * Ranks needed. To start: all `workers` (or, on resume, the ranks live at
   * the checkpoint), or this many once `stallWarnSeconds` have passed. To
   * go on: this many, at least 1. 0 means all to start, then any survivor.
   * Too few for longer than `stallAbortSeconds` stops the run.
   */
  minWorkers: number;
}

/** A whole job. `optimizer` is validated by the optimizer module. */
export interface JobConfig {
  /** Network shape, pretrained weights and BatchNorm mode. */
  model: ModelConfig;
  /** Image folder, validation split, augmentation and decode cache. */
  data: DataConfig;
  /** Workers, batch, epochs, seed, timeouts and fault handling. */
  train: TrainConfig;
  /** Raw optimizer section, parsed later by `parseOptimizerConfig`. */
  optimizer: unknown;
}

/** Defaults of every field; the demo runs with exactly these. */
export const DEFAULTS: Readonly<Omit<JobConfig, "optimizer">> = Object.freeze({
  model: {
    alpha: 1.0,
    imageSize: 224,
    headUnits: 16,
    weights: "bundled",
    batchNorm: "frozen",
  },
  data: {
    root: "assets/data/flowers5",
    valFraction: 0.2,
    onCorrupt: "error",
    flip: true,
    cropMinArea: 0.5,
    cacheDir: null,
  },
  train: {
    workers: 2,
    perRankBatch: 8,
    epochs: 3,
    maxSteps: 0,
    seed: 42,
    backend: "auto",
    out: null,
    stallWarnSeconds: 30,
    stallAbortSeconds: 300,
    checkpointEverySteps: 0,
    emaDecay: 0,
    onCheckpointError: "stop",
    heartbeatSeconds: 1,
    heartbeatTimeoutSeconds: 20,
    retrySeconds: 2,
    stepDeadlineSeconds: 0,
    stragglerPolicy: "wait",
    minWorkers: 0,
  },
}) as Omit<JobConfig, "optimizer">;

/**
 * The optimizer section the demo uses: the reference recipe, with its
 * warm-up shortened from 3 epochs to 1 (ramped per step) because the demo
 * trains 3 epochs; multipliers, peak, decay and the worker scaling are the
 * reference's.
 */
export const DEFAULT_OPTIMIZER = {
  preset: "reference",
  schedule: { rampEpochs: 1, per: "step" },
};

/** A config value that is missing, unknown or out of range. */
export class ConfigError extends Error {
  /** Dotted path of the field, e.g. `train.workers`. */
  readonly field: string;
  /** The file the value came from, when there was one. */
  readonly file: string | null;

  /** Makes an error for `field` (dotted path), naming `file` when given. */
  constructor(field: string, message: string, file: string | null = null) {
    super(`${file ? `${file}: ` : ""}config field "${field}": ${message}`);
    this.name = "ConfigError";
    this.field = field;
    this.file = file;
  }
}

type Section = "model" | "data" | "train";

const SECTIONS: readonly string[] = ["model", "data", "train", "optimizer"];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Validates one section against its defaults, field by field. */
function mergeSection<T extends object>(
  section: Section,
  defaults: T,
  raw: unknown,
  file: string | null,
): T {
  if (raw === undefined) return { ...defaults };
  if (!isRecord(raw)) {
    throw new ConfigError(section, "expected an object", file);
  }

  const merged: Record<string, unknown> = { ...defaults } as Record<
    string,
    unknown
  >;
  for (const [key, value] of Object.entries(raw)) {
    if (!(key in defaults)) {
      const known = Object.keys(defaults).join(", ");
      throw new ConfigError(
        `${section}.${key}`,
        `unknown key (known: ${known})`,
        file,
      );
    }
    merged[key] = value;
  }
  return merged as T;
}

function checkInt(
  field: string,
  value: unknown,
  min: number,
  max: number,
  file: string | null,
): void {
  checkRange(field, value, { min, max, integer: true }, file);
}

function checkNumber(
  field: string,
  value: unknown,
  min: number,
  max: number,
  file: string | null,
): void {
  checkRange(field, value, { min, max, integer: false }, file);
}

function checkRange(
  field: string,
  value: unknown,
  range: { min: number; max: number; integer: boolean },
  file: string | null,
): void {
  const { min, max, integer } = range;
  const ok = typeof value === "number" && Number.isFinite(value) &&
    (!integer || Number.isInteger(value)) && value >= min && value <= max;
  if (!ok) {
    throw new ConfigError(
      field,
      `expected ${integer ? "an integer" : "a number"} from ${min} to ` +
        `${max}, got ${JSON.stringify(value)}`,
      file,
    );
  }
}

function checkOneOf(
  field: string,
  value: unknown,
  allowed: readonly unknown[],
  file: string | null,
): void {
  if (!allowed.includes(value)) {
    throw new ConfigError(
      field,
      `expected one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}, ` +
        `got ${JSON.stringify(value)}`,
      file,
    );
  }
}

function checkString(field: string, value: unknown, file: string | null) {
  if (typeof value !== "string" || value.length === 0) {
    throw new ConfigError(field, "expected a non-empty string", file);
  }
}

function checkJob(job: JobConfig, file: string | null): void {
  const { model, data, train } = job;

  checkOneOf("model.alpha", model.alpha, ALPHAS, file);
  checkInt("model.imageSize", model.imageSize, 32, 224, file);
  checkInt("model.headUnits", model.headUnits, 1, 4096, file);
  checkString("model.weights", model.weights, file);
  checkOneOf("model.batchNorm", model.batchNorm, ["train", "frozen"], file);

  checkString("data.root", data.root, file);
  if (
    typeof data.valFraction !== "number" || !(data.valFraction > 0) ||
    !(data.valFraction < 1)
  ) {
    throw new ConfigError("data.valFraction", "expected 0 < x < 1", file);
  }
  checkOneOf("data.onCorrupt", data.onCorrupt, ["error", "skip"], file);
  checkOneOf("data.flip", data.flip, [true, false], file);
  if (
    typeof data.cropMinArea !== "number" || !(data.cropMinArea >= 0) ||
    !(data.cropMinArea <= 1)
  ) {
    throw new ConfigError(
      "data.cropMinArea",
      `expected 0 (off) or a share of the area in (0, 1], got ${
        JSON.stringify(data.cropMinArea)
      }`,
      file,
    );
  }
  if (data.cacheDir !== null) checkString("data.cacheDir", data.cacheDir, file);

  checkInt("train.workers", train.workers, 1, 1024, file);
  checkInt("train.perRankBatch", train.perRankBatch, 1, 4096, file);
  checkInt("train.epochs", train.epochs, 1, 100000, file);
  checkInt("train.maxSteps", train.maxSteps, 0, Number.MAX_SAFE_INTEGER, file);
  checkInt("train.seed", train.seed, 0, 2 ** 31 - 1, file);
  checkOneOf(
    "train.backend",
    train.backend,
    ["auto", "tensorflow", "webgpu", "wasm", "cpu"],
    file,
  );
  if (train.out !== null) checkString("train.out", train.out, file);
  checkInt("train.stallWarnSeconds", train.stallWarnSeconds, 1, 86400, file);
  checkInt("train.stallAbortSeconds", train.stallAbortSeconds, 1, 864000, file);
  checkInt(
    "train.checkpointEverySteps",
    train.checkpointEverySteps,
    0,
    Number.MAX_SAFE_INTEGER,
    file,
  );
  if (train.emaDecay !== 0) {
    checkNumber("train.emaDecay", train.emaDecay, 0.5, 0.99999, file);
  }
  checkOneOf(
    "train.onCheckpointError",
    train.onCheckpointError,
    ["stop", "continue"],
    file,
  );
  checkNumber("train.heartbeatSeconds", train.heartbeatSeconds, 0.05, 60, file);
  checkNumber(
    "train.heartbeatTimeoutSeconds",
    train.heartbeatTimeoutSeconds,
    0.2,
    86400,
    file,
  );
  if (train.heartbeatTimeoutSeconds <= 2 * train.heartbeatSeconds) {
    throw new ConfigError(
      "train.heartbeatTimeoutSeconds",
      `must exceed twice train.heartbeatSeconds ` +
        `(${train.heartbeatSeconds}), got ${train.heartbeatTimeoutSeconds}`,
      file,
    );
  }
  checkNumber("train.retrySeconds", train.retrySeconds, 0.05, 3600, file);
  checkNumber(
    "train.stepDeadlineSeconds",
    train.stepDeadlineSeconds,
    0,
    86400,
    file,
  );
  checkOneOf(
    "train.stragglerPolicy",
    train.stragglerPolicy,
    ["wait", "drop"],
    file,
  );
  checkInt("train.minWorkers", train.minWorkers, 0, train.workers, file);
}

/**
 * Builds a job config from a parsed JSON value: unknown keys and bad values
 * fail with the field's dotted path; missing ones take {@linkcode DEFAULTS}.
 */
export function parseJobConfig(
  raw: unknown,
  file: string | null = null,
): JobConfig {
  if (raw === undefined) raw = {};
  if (!isRecord(raw)) {
    throw new ConfigError("(root)", "expected an object", file);
  }

  for (const key of Object.keys(raw)) {
    if (!SECTIONS.includes(key)) {
      throw new ConfigError(
        key,
        `unknown section (known: ${SECTIONS.join(", ")})`,
        file,
      );
    }
  }

  const job: JobConfig = {
    model: mergeSection("model", DEFAULTS.model, raw.model, file),
    data: mergeSection("data", DEFAULTS.data, raw.data, file),
    train: mergeSection("train", DEFAULTS.train, raw.train, file),
    optimizer: raw.optimizer ?? DEFAULT_OPTIMIZER,
  };
  checkJob(job, file);
  return job;
}

/** Values given on the command line; each replaces the file's value. */
export interface ConfigOverrides {
  /** `--workers`: replaces `train.workers`. */
  workers?: number;
  /** `--epochs`: replaces `train.epochs`. */
  epochs?: number;
  /** `--max-steps`: replaces `train.maxSteps`. */
  maxSteps?: number;
  /** `--image-size`: replaces `model.imageSize`. */
  imageSize?: number;
  /** `--alpha`: replaces `model.alpha`. */
  alpha?: number;
  /** `--weights`: replaces `model.weights`. */
  weights?: string;
  /** `--seed`: replaces `train.seed`. */
  seed?: number;
  /** `--backend`: replaces `train.backend`. */
  backend?: string;
  /** `--out`: replaces `train.out`. */
  out?: string;
  /** `--batch`: replaces `train.perRankBatch`. */
  batch?: number;
  /** `--batch-norm`: replaces `model.batchNorm`. */
  batchNorm?: string;
  /** `--data`: replaces `data.root`. */
  data?: string;
}

/** Applies command-line overrides and validates the result again. */
export function applyOverrides(
  job: JobConfig,
  overrides: ConfigOverrides,
): JobConfig {
  const next: JobConfig = {
    model: { ...job.model },
    data: { ...job.data },
    train: { ...job.train },
    optimizer: job.optimizer,
  };
  const o = overrides;

  if (o.alpha !== undefined) next.model.alpha = o.alpha as Alpha;
  if (o.imageSize !== undefined) next.model.imageSize = o.imageSize;
  if (o.weights !== undefined) next.model.weights = o.weights;
  if (o.batchNorm !== undefined) {
    next.model.batchNorm = o.batchNorm as BatchNormMode;
  }
  if (o.data !== undefined) next.data.root = o.data;
  if (o.workers !== undefined) next.train.workers = o.workers;
  if (o.epochs !== undefined) next.train.epochs = o.epochs;
  if (o.maxSteps !== undefined) next.train.maxSteps = o.maxSteps;
  if (o.seed !== undefined) next.train.seed = o.seed;
  if (o.backend !== undefined) next.train.backend = o.backend as BackendName;
  if (o.out !== undefined) next.train.out = o.out;
  if (o.batch !== undefined) next.train.perRankBatch = o.batch;

  checkJob(next, "(command line)");
  return next;
}

/** Reads and validates a config file; errors name the file and field. */
export async function loadJobConfig(path: string): Promise<JobConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError("(file)", `cannot read: ${error}`, path);
  }

  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError("(file)", `invalid JSON: ${error}`, path);
  }
  return parseJobConfig(raw, path);
}

/**
 * What every process of a job must agree on, as canonical JSON: the model
 * and data settings, the class list and the variable layout. Backend, output
 * folder and stall thresholds may differ between processes.
 */
export function fingerprintInput(
  job: JobConfig,
  extra: { classes: readonly string[]; layout: readonly string[] },
): string {
  return canonicalJson({
    model: job.model,
    data: {
      flip: job.data.flip,
      cropMinArea: job.data.cropMinArea,
      valFraction: job.data.valFraction,
      onCorrupt: job.data.onCorrupt,
    },
    train: {
      workers: job.train.workers,
      perRankBatch: job.train.perRankBatch,
      seed: job.train.seed,
    },
    classes: extra.classes,
    layout: extra.layout,
  });
}

/** SHA-256 (hex) of the fingerprint input. */
export async function fingerprint(
  job: JobConfig,
  extra: { classes: readonly string[]; layout: readonly string[] },
): Promise<string> {
  return await sha256Hex(
    new TextEncoder().encode(fingerprintInput(job, extra)),
  );
}

/** JSON with object keys sorted, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(",")}]`;
  }
  if (isRecord(value)) {
    const keys = Object.keys(value).sort();
    return `{${
      keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`)
        .join(",")
    }}`;
  }
  return JSON.stringify(value);
}

/** Hex SHA-256 of bytes. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    bytes as Uint8Array<ArrayBuffer>,
  );
  return Array.from(new Uint8Array(digest))
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}
