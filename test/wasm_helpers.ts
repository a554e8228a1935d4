/**
 * Helpers of the wasm/webgpu backend tests: seeded inputs, running one
 * kernel on a named backend, and the error measure of the parity tests.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type * as tfl from "@tensorflow/tfjs-layers";
import { buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";

/** A tensor as plain data, movable between backends. */
export interface HostTensor {
  shape: number[];
  values: Float32Array;
}

/** Uniform values in [-1, 1) from a 32-bit seed (mulberry32). */
export function seededValues(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let state = seed >>> 0;
  for (let i = 0; i < size; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** A seeded host tensor of `shape`. */
export function hostTensor(shape: number[], seed: number): HostTensor {
  const size = shape.reduce((a, b) => a * b, 1);
  return { shape, values: seededValues(size, seed) };
}

/**
 * max |actual - expected| / max |expected|: the largest error relative to
 * the tensor's scale (elementwise ratios blow up near zero entries).
 */
export function relativeError(
  actual: Float32Array,
  expected: Float32Array,
): number {
  if (actual.length !== expected.length) {
    throw new RangeError(
      `Cannot compare tensors of ${actual.length} and ${expected.length} values`,
    );
  }
  let maxDiff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    if (!Number.isFinite(actual[i])) return Infinity;
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return scale === 0 ? maxDiff : maxDiff / scale;
}

/**
 * Runs kernel `name` on `backend` with inputs uploaded from host data and
 * returns every output as host data; leaves no tensor behind.
 */
export async function runKernelOn(
  backend: string,
  name: string,
  call: { inputs: Record<string, HostTensor>; attrs?: object },
): Promise<HostTensor[]> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const inputs: Record<string, tf.Tensor> = {};
  for (const [key, host] of Object.entries(call.inputs)) {
    inputs[key] = tf.tensor(host.values, host.shape, "float32");
  }
  const result = tf.engine().runKernel(
    name,
    inputs,
    (call.attrs ?? {}) as tf.NamedAttrMap,
  );
  const outputs = Array.isArray(result) ? result : [result];
  const host: HostTensor[] = [];
  for (const output of outputs) {
    host.push({
      shape: output.shape,
      values: await output.data() as Float32Array,
    });
  }
  tf.dispose([...outputs, ...Object.values(inputs)]);
  const after = tf.memory().numTensors;
  if (after !== before) {
    throw new Error(`Kernel ${name} on ${backend} leaked ${after - before}`);
  }
  return host;
}

export interface StepResult {
  loss: Float32Array;
  grads: Map<string, Float32Array>;
  weights: Map<string, Float32Array>;
}

export function crossEntropy(labels: tf.Tensor, probs: tf.Tensor): tf.Scalar {
  const clipped = tf.clipByValue(probs, 1e-7, 1 - 1e-7);
  return tf.neg(tf.mean(tf.sum(tf.mul(labels, tf.log(clipped)), -1)));
}

/**
 * One MobileNetV2 (alpha 0.35) training step on `backend`, from the
 * weights `initial` (or the seeded initialisation when null), with
 * seeded images: the loss, every gradient and every weight afterwards.
 */
export async function trainingStep(
  backend: string,
  options: { initial: Float32Array[] | null; imageSize: number; batch: number },
): Promise<{ result: StepResult; initial: Float32Array[] }> {
  const { initial, imageSize, batch } = options;
  await tf.setBackend(backend);
  const model: tfl.LayersModel = buildMobileNetV2({
    alpha: 0.35,
    imageSize: imageSize,
    seed: 3,
  });
  if (initial !== null) {
    model.setWeights(
      model.weights.map((w, i) => tf.tensor(initial[i], w.shape as number[])),
    );
  }
  const start = await Promise.all(
    model.weights.map(async (w) => await w.read().data() as Float32Array),
  );

  const images = hostTensor([batch, imageSize, imageSize, 3], 61);
  const x = tf.tensor(images.values, images.shape);
  const labels = tf.oneHot(
    tf.tensor1d(Array.from({ length: batch }, (_, i) => (i * 3) % 5), "int32"),
    5,
  );
  const { value, grads } = tf.variableGrads(() =>
    crossEntropy(labels, model.apply(x, { training: true }) as tf.Tensor)
  );

  const result: StepResult = {
    loss: await value.data() as Float32Array,
    grads: new Map(),
    weights: new Map(),
  };
  // Variable names get unique suffixes per model; key by the Keras name.
  for (const w of model.trainableWeights) {
    result.grads.set(
      w.originalName,
      await grads[w.name].data() as Float32Array,
    );
  }
  for (const w of model.weights) {
    result.weights.set(w.originalName, await w.read().data() as Float32Array);
  }
  tf.dispose([value, x, labels, ...Object.values(grads)]);
  model.dispose();
  return { result, initial: start };
}

/**
 * Names whose error exceeds `tolerance`: max abs difference over the
 * tensor's scale, the scale floored at 1e-3 of the largest value of its
 * kind, for quantities that are zero in exact arithmetic (see the tests).
 */
export function compareAll(
  actual: Map<string, Float32Array>,
  expected: Map<string, Float32Array>,
  options: { include: (name: string) => boolean; tolerance: number },
): string[] {
  const { include, tolerance } = options;
  let largest = 0;
  for (const [name, values] of expected) {
    if (!include(name)) continue;
    for (const v of values) largest = Math.max(largest, Math.abs(v));
  }
  const failures: string[] = [];
  for (const [name, reference] of expected) {
    if (!include(name)) continue;
    const values = actual.get(name);
    if (values === undefined) {
      failures.push(`${name}: missing`);
      continue;
    }
    let maxDiff = 0;
    let scale = 1e-3 * largest;
    for (let i = 0; i < reference.length; i++) {
      maxDiff = Math.max(maxDiff, Math.abs(values[i] - reference[i]));
      scale = Math.max(scale, Math.abs(reference[i]));
    }
    const error = maxDiff / scale;
    if (!(error <= tolerance)) {
      failures.push(`${name}: ${error.toExponential(2)}`);
    }
  }
  return failures;
}
