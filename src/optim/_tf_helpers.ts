/**
 * Private helpers of the tfjs `AdamW`: the synchronous gradient norm, the
 * saved update counts, the config as saved by tfjs.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { OptimizerConfig } from "./types.ts";

/** Global L2 norm: float32 per-variable sums, added in float64. */
export function globalNorm(grads: tf.Tensor[]): number {
  if (grads.length === 0) return 0;
  const sums = tf.tidy(() => tf.stack(grads.map((g) => tf.sum(tf.mul(g, g)))));
  const values = sums.dataSync();
  sums.dispose();
  let sumOfSquares = 0;
  for (const value of values) sumOfSquares += value;
  return Math.sqrt(sumOfSquares);
}

export function refreshCount(
  tensor: tf.Variable | null,
  count: number,
): tf.Variable {
  if (tensor === null) {
    return tf.tidy(() => tf.variable(tf.scalar(count, "int32"), false));
  }
  if (tensor.dataSync()[0] !== count) {
    tf.tidy(() => tensor.assign(tf.scalar(count, "int32")));
  }
  return tensor;
}

/** The config as JSON; an empty rule list is left out (it re-parses). */
export function configForSave(
  config: OptimizerConfig,
): tf.serialization.ConfigDict {
  const { multipliers, ...rest } = config;
  const plain = multipliers.length === 0 ? rest : config;
  return JSON.parse(JSON.stringify(plain));
}
