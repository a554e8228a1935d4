/**
 * `deno task lr`: explains a recipe. For every trainable variable of the
 * configured MobileNetV2 it prints the name, shape, the rule that matched,
 * the multiplier, whether it is decayed and its effective rate at an epoch
 * or step; warns about doubtful rules; optionally writes an SVG of the
 * schedule and the multipliers.
 *
 * Usage: deno task lr [--config FILE] [--epoch E | --step S] [--json]
 *                     [--plot FILE.svg]
 *
 * @module
 */
import { parseArgs } from "node:util";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { type Alpha, buildMobileNetV2 } from "../model/mobilenet_v2.ts";
import { ConfigError, parseJobConfig } from "../config.ts";
import {
  explainRates,
  makeSchedule,
  type OptimizerConfig,
  OptimizerConfigError,
  parseOptimizerConfig,
  type RateRow,
  resolveVariables,
  ruleWarnings,
  trainableVariableSpecs,
} from "../optim/mod.ts";
import { recipeSvg } from "../optim/plot.ts";

const USAGE = `Usage: deno task lr [options]

Explains the optimizer recipe of a job config: every variable's rule,
multiplier, decay and effective learning rate.

Options:
  --config FILE    job config (JSON); without it, the reference preset
  --epoch E        evaluate at the first step of epoch E (default 0)
  --step S         evaluate at global step S (0-based)
  --json           print the rows as a JSON array
  --plot FILE.svg  write the schedule and multipliers as an SVG
  --help           show this help

Reads the job config with the job's own defaults and validation (model,
train and optimizer sections; the reference preset when there is no
optimizer section), plus three keys only this command uses:
model.numClasses (5), and train.stepsPerEpoch or data.trainExamples (1400)
/ (train.perRankBatch * train.workers).
`;

/** The run facts the explain needs, read from the job config. */
interface RunFacts {
  alpha: Alpha;
  imageSize: number;
  numClasses: number;
  workers: number;
  epochs: number;
  stepsPerEpoch: number;
}

/** A bad flag: exit code 2. */
class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** An unreadable job config or a bad value in it: exit code 1. */
class JobConfigError extends Error {
  readonly file: string;

  constructor(message: string, options: { file: string; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.name = "JobConfigError";
    this.file = options.file;
  }
}

function section(raw: Record<string, unknown>, key: string, file: string) {
  const value = raw[key];
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new JobConfigError(`"${key}" in ${file} must be an object`, {
      file,
    });
  }
  return value as Record<string, unknown>;
}

function readNumber(
  object: Record<string, unknown>,
  options: { key: string; field: string; fallback: number; file: string },
): number {
  const { key, field, fallback, file } = options;
  const value = object[key];
  if (value === undefined) return fallback;
  // Only model.alpha is fractional; every other count is a whole number.
  const wanted = key === "alpha" ? "a positive number" : "a positive integer";
  const bad = typeof value !== "number" || !Number.isFinite(value) ||
    value <= 0 || (key !== "alpha" && !Number.isInteger(value));
  if (bad) {
    throw new JobConfigError(
      `"${field}" in ${file} must be ${wanted}, received ` +
        `${JSON.stringify(value)}`,
      { file },
    );
  }
  return value as number;
}

/**
 * The run's shape, read through the job config parser so that defaults and
 * validation are exactly the job's (src/config.ts). Three keys only this
 * command reads are taken out first: `model.numClasses`,
 * `data.trainExamples` and `train.stepsPerEpoch`, which a running job
 * derives from its dataset.
 */
function runFacts(
  raw: Record<string, unknown>,
  file: string,
): { facts: RunFacts; optimizer: unknown } {
  const model = { ...section(raw, "model", file) };
  const train = { ...section(raw, "train", file) };
  const data = { ...section(raw, "data", file) };
  const num = (
    object: Record<string, unknown>,
    key: string,
    field: string,
    fallback: number,
  ) => readNumber(object, { key, field, fallback, file });

  const numClasses = num(model, "numClasses", "model.numClasses", 5);
  const examples = num(data, "trainExamples", "data.trainExamples", 1400);
  const explicitSteps = train.stepsPerEpoch === undefined
    ? undefined
    : num(train, "stepsPerEpoch", "train.stepsPerEpoch", 1);
  delete model.numClasses;
  delete data.trainExamples;
  delete train.stepsPerEpoch;

  const job = parseJobConfig({ ...raw, model, data, train }, file);
  const { workers, perRankBatch, epochs } = job.train;
  return {
    facts: {
      alpha: job.model.alpha,
      imageSize: job.model.imageSize,
      numClasses,
      workers,
      epochs,
      // The last partial global batch is a step of its own.
      stepsPerEpoch: explicitSteps ??
        Math.ceil(examples / (perRankBatch * workers)),
    },
    optimizer: job.optimizer,
  };
}

async function readConfig(
  file: string | undefined,
): Promise<{ raw: Record<string, unknown>; label: string }> {
  if (file === undefined) {
    return {
      raw: { optimizer: { preset: "reference" } },
      label: "no --config: the reference preset",
    };
  }
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    throw new JobConfigError(
      `Cannot read ${file}: ${(error as Error).message}`,
      { file, cause: error },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new JobConfigError(
      `Cannot parse ${file} as JSON: ${(error as Error).message}`,
      { file, cause: error },
    );
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new JobConfigError(`${file} must hold a JSON object`, { file });
  }
  return { raw: raw as Record<string, unknown>, label: file };
}

function pickStep(
  values: { epoch?: string | undefined; step?: string | undefined },
  facts: RunFacts,
): number {
  if (values.epoch !== undefined && values.step !== undefined) {
    throw new UsageError("Give --epoch or --step, not both");
  }
  if (values.step !== undefined) {
    const step = Number(values.step);
    if (!Number.isInteger(step) || step < 0) {
      throw new UsageError(
        `--step must be an integer >= 0, received ${values.step}`,
      );
    }
    return step;
  }
  const epoch = Number(values.epoch ?? "0");
  if (!Number.isFinite(epoch) || epoch < 0) {
    throw new UsageError(
      `--epoch must be a number >= 0, received ${values.epoch}`,
    );
  }
  return Math.round(epoch * facts.stepsPerEpoch);
}

function formatTable(rows: RateRow[]): string {
  const header = ["name", "shape", "rule", "multiplier", "decayed", "lr"];
  const cells = rows.map((row) => [
    row.name,
    JSON.stringify(row.shape),
    row.frozen
      ? `frozen (${row.frozenBy})`
      : row.rule === null
      ? "(none)"
      : `${row.ruleSource}[${row.ruleIndex}] "${row.rule}"` +
        (row.match === "substring" ? "" : ` ${row.match}`),
    String(row.multiplier),
    row.decayed ? "yes" : `no (${row.decayExcludedBy})`,
    row.lr.toExponential(4),
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...cells.map((c) => c[i]!.length))
  );
  const line = (c: string[]) =>
    c.map((v, i) => v.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(header), ...cells.map(line)].join("\n");
}

function scheduleLines(
  config: OptimizerConfig,
  facts: RunFacts,
  at: (step: number) => number,
): string {
  const lines = [`epoch  first step  lr (before multipliers)`];
  for (let epoch = 0; epoch < facts.epochs; epoch++) {
    const step = epoch * facts.stepsPerEpoch;
    lines.push(
      `${String(epoch).padEnd(5)}  ${String(step).padEnd(10)}  ` +
        at(step).toExponential(4),
    );
  }
  return `schedule ${JSON.stringify(config.schedule)}\n${lines.join("\n")}`;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: "string" },
      epoch: { type: "string" },
      step: { type: "string" },
      json: { type: "boolean", default: false },
      plot: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }

  const { raw, label } = await readConfig(values.config);
  const file = values.config ?? "the reference preset";
  const { facts, optimizer } = runFacts(raw, file);
  const config = parseOptimizerConfig(optimizer, values.config);
  const totalSteps = facts.epochs * facts.stepsPerEpoch;
  const step = pickStep(values, facts);

  await tf.setBackend("cpu");
  const model = buildMobileNetV2({
    alpha: facts.alpha,
    imageSize: facts.imageSize,
    numClasses: facts.numClasses,
  });
  const variables = trainableVariableSpecs(model.trainableWeights);
  model.dispose();

  const schedule = makeSchedule(config.schedule, {
    workers: facts.workers,
    stepsPerEpoch: facts.stepsPerEpoch,
    totalSteps,
  });
  const plans = resolveVariables(variables, config);
  const rows = explainRates({ plans, config, schedule, totalSteps, step });
  const warnings = ruleWarnings(plans, config);

  if (values.json) {
    console.log(JSON.stringify(rows, null, 2));
  } else {
    const trained = rows.filter((r) => !r.frozen);
    console.log(
      `config: ${label}; convention ${config.convention}, ` +
        `${facts.epochs} epochs x ${facts.stepsPerEpoch} steps, ` +
        `${facts.workers} worker(s), MobileNetV2 alpha ${facts.alpha}`,
    );
    console.log(scheduleLines(config, facts, (s) => schedule.at(s)));
    console.log(
      `\nat step ${step} (epoch ${schedule.epochOf(step)}): schedule ` +
        `${schedule.at(step).toExponential(4)}\n`,
    );
    console.log(formatTable(rows));
    console.log(
      `\n${rows.length} variables, ${
        trained.reduce((s, r) => s + r.params, 0)
      } trained parameters, ${rows.length - trained.length} frozen ` +
        `variable(s)`,
    );
  }
  for (const warning of warnings) {
    console.error(`warning: ${warning.message}`);
  }

  if (values.plot !== undefined) {
    const svg = recipeSvg({
      schedule,
      stepsPerEpoch: facts.stepsPerEpoch,
      totalSteps,
      rows,
      title: `${label}: ${config.schedule.kind} schedule, ` +
        `${facts.workers} worker(s)`,
    });
    await Deno.writeTextFile(values.plot, svg);
    console.error(`wrote ${values.plot}`);
  }
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`error: ${error.message}`);
      Deno.exit(2);
    }
    // Config errors, and model options the builder refuses (RangeError).
    if (
      error instanceof JobConfigError || error instanceof ConfigError ||
      error instanceof OptimizerConfigError || error instanceof RangeError
    ) {
      console.error(`error: ${error.message}`);
      Deno.exit(1);
    }
    if (error instanceof TypeError && "code" in error) {
      // node:util parseArgs rejects unknown or malformed flags this way.
      console.error(`error: ${error.message}\n\n${USAGE}`);
      Deno.exit(2);
    }
    throw error;
  }
}
