/**
 * Command-line flags shared by `demo`, `cluster`, `ps` and `worker`. Flags
 * override the config file, which overrides the defaults.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { ConfigOverrides } from "../src/config.ts";

/** The parsed command line. */
export interface CommandLine {
  help: boolean;
  config: string | null;
  overrides: ConfigOverrides;
  /** NATS server URL (`ps`, `worker`); the launcher starts its own. */
  nats: string | null;
  runId: string | null;
  rank: number | null;
  /** Device ids for one worker each, e.g. `0,1,2,3`. */
  gpus: string[] | null;
  /** Checkpoint to resume from (`ps`, `cluster`). */
  resume: string | null;
  /** Debug-level logs. */
  verbose: boolean;
}

/** A flag that is unknown or has a bad value. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  config: { type: "string" },
  workers: { type: "string" },
  epochs: { type: "string" },
  "max-steps": { type: "string" },
  "image-size": { type: "string" },
  alpha: { type: "string" },
  weights: { type: "string" },
  seed: { type: "string" },
  backend: { type: "string" },
  out: { type: "string" },
  batch: { type: "string" },
  "batch-norm": { type: "string" },
  data: { type: "string" },
  nats: { type: "string" },
  "run-id": { type: "string" },
  rank: { type: "string" },
  gpus: { type: "string" },
  resume: { type: "string" },
  verbose: { type: "boolean", short: "v" },
} as const;

function toNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`--${flag} expects a number, got "${value}"`);
  }
  return n;
}

/** Parses flags; unknown flags and bad numbers throw {@linkcode UsageError}. */
export function parseCommandLine(args: string[]): CommandLine {
  let values;
  try {
    ({ values } = parseArgs({ args, options: OPTIONS, strict: true }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }

  const overrides: ConfigOverrides = {
    workers: toNumber("workers", values.workers),
    epochs: toNumber("epochs", values.epochs),
    maxSteps: toNumber("max-steps", values["max-steps"]),
    imageSize: toNumber("image-size", values["image-size"]),
    alpha: toNumber("alpha", values.alpha),
    weights: values.weights,
    seed: toNumber("seed", values.seed),
    backend: values.backend,
    out: values.out,
    batch: toNumber("batch", values.batch),
    batchNorm: values["batch-norm"],
    data: values.data,
  };
  for (const key of Object.keys(overrides) as (keyof ConfigOverrides)[]) {
    if (overrides[key] === undefined) delete overrides[key];
  }

  const gpus = values.gpus === undefined
    ? null
    : values.gpus.split(",").map((g) => g.trim()).filter((g) => g !== "");
  if (gpus !== null && gpus.length === 0) {
    throw new UsageError("--gpus expects a list of device ids, e.g. 0,1");
  }

  return {
    help: values.help ?? false,
    config: values.config ?? null,
    overrides,
    nats: values.nats ?? null,
    runId: values["run-id"] ?? null,
    rank: toNumber("rank", values.rank) ?? null,
    gpus,
    resume: values.resume ?? null,
    verbose: values.verbose ?? false,
  };
}

/** Flags every command takes, for `--help`. */
export const COMMON_FLAGS =
  `Flags (they override --config, which overrides the defaults):
  --config FILE        job config (JSON: model, data, train, optimizer)
  --workers N          worker processes (ranks)             [2]
  --epochs N           epochs to train                      [6]
  --max-steps N        stop after N steps, still writing all results
  --batch N            examples per worker per step         [8]
  --image-size PX      square input size, 32..224           [224]
  --alpha A            width: 0.35, 0.5, 0.75, 1.0          [0.35]
  --weights SRC        bundled | nsfwjs | imagenet | none | PATH  [bundled]
  --batch-norm MODE    train | frozen                       [frozen]
  --data DIR           image folder                 [assets/data/flowers5]
  --seed N             seed of shuffling, flips, init       [42]
  --backend NAME       auto | tensorflow | webgpu | wasm | cpu   [auto]
  --out DIR            results folder                  [runs/<run id>]
  --run-id ID          run id (subject prefix on NATS)   [generated]
  -v, --verbose        debug logs (also DPTRAIN_LOG=debug)
  -h, --help           this help`;
