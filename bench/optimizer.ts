/**
 * Times `FlatAdamW.step` on MobileNetV2-shaped variables. Exported for the
 * bench runner; also runs standalone: `deno run -A bench/optimizer.ts`.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";
import {
  FlatAdamW,
  parseOptimizerConfig,
  PRESETS,
  trainableVariableSpecs,
  type VariableSpec,
} from "../src/optim/mod.ts";

/** One measured case. */
export interface OptimizerBenchResult {
  name: string;
  /** Trained parameters per step. */
  params: number;
  /** Median wall time of one step. */
  msPerStep: number;
  /** Fastest step: the closest to an unloaded machine when others run. */
  bestMsPerStep: number;
}

const WARMUP_STEPS = 3;
const TIMED_STEPS = 21;

/**
 * MobileNetV2 (alpha 1.0) trainable variables with the flower head. The
 * model is built on whatever backend is active (the bench runner's choice
 * is left alone; standalone, the cpu backend imported above).
 */
async function mobileNetV2Specs(): Promise<VariableSpec[]> {
  await tf.ready();
  const model = buildMobileNetV2({ alpha: 1.0, imageSize: 96 });
  const specs = trainableVariableSpecs(model.trainableWeights);
  model.dispose();
  return specs;
}

/** The same backbone with Keras's 1000-class top: 3.5 M parameters. */
function withImageNetTop(specs: VariableSpec[]): VariableSpec[] {
  return [
    ...specs.filter((s) => !s.name.startsWith("flower_")),
    { name: "predictions/kernel", shape: [1280, 1000] },
    { name: "predictions/bias", shape: [1000] },
  ];
}

function timeSteps(
  name: string,
  options: { variables: VariableSpec[]; raw: unknown; zeroCopy?: boolean },
): OptimizerBenchResult {
  const { variables, raw, zeroCopy = false } = options;
  const optimizer = new FlatAdamW({
    variables,
    config: parseOptimizerConfig(raw),
    workers: 1,
    stepsPerEpoch: 100,
    totalSteps: 1000,
  });

  // The caller's own arrays (copied in and out each step), or the views
  // of kernel memory that `buffers()` hands out (nothing copied).
  const own = variables.map((v) =>
    new Float32Array(v.shape.reduce((a, b) => a * b, 1))
  );
  const { weights, grads } = zeroCopy
    ? optimizer.buffers()
    : { weights: own, grads: own.map((w) => w.slice()) };
  weights.forEach((w) => w.fill(0.01));
  grads.forEach((g) => g.forEach((_, j) => g[j] = Math.sin(j * 0.37) * 1e-3));

  const times: number[] = [];
  for (let step = 0; step < WARMUP_STEPS + TIMED_STEPS; step++) {
    const start = performance.now();
    optimizer.step({ weights, grads, step });
    if (step >= WARMUP_STEPS) times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return {
    name,
    params: optimizer.trainableParams,
    msPerStep: times[Math.floor(times.length / 2)]!,
    bestMsPerStep: times[0]!,
  };
}

/** Median ms per `FlatAdamW.step` for the project's model shapes. */
export async function benchFlatAdamW(): Promise<OptimizerBenchResult[]> {
  const flowers = await mobileNetV2Specs();
  const imageNet = withImageNetTop(flowers);
  const pytorch = { convention: "pytorch", weightDecay: 0.01 };
  const keras = { convention: "keras", weightDecay: 1e-4, clipGlobalNorm: 1 };
  return [
    timeSteps("FlatAdamW pytorch + decay, 3.5M, caller's arrays", {
      variables: imageNet,
      raw: pytorch,
    }),
    timeSteps("FlatAdamW pytorch + decay, 3.5M, buffers() (zero-copy)", {
      variables: imageNet,
      raw: pytorch,
      zeroCopy: true,
    }),
    timeSteps("FlatAdamW keras + clipping, 3.5M, caller's arrays", {
      variables: imageNet,
      raw: keras,
    }),
    timeSteps("FlatAdamW reference preset, 2.2M flowers, caller's arrays", {
      variables: flowers,
      raw: PRESETS.reference,
    }),
  ];
}

if (import.meta.main) {
  for (const result of await benchFlatAdamW()) {
    const { name, params, msPerStep, bestMsPerStep } = result;
    console.log(
      `${name}: ${params} params, ${msPerStep.toFixed(2)} ms/step median, ` +
        `${bestMsPerStep.toFixed(2)} best of ${TIMED_STEPS}`,
    );
  }
}
