import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import {
  frozenBatchNormGradConfig,
  installFrozenBatchNormGradient,
} from "../src/train/batch_norm_grad.ts";

function gradsOfBatchNorm(seed: number): Float32Array[] {
  return tf.tidy(() => {
    const x = tf.randomNormal([2, 5, 3, 4], 0, 1, "float32", seed);
    const mean = tf.randomNormal([4], 0, 1, "float32", seed + 1);
    const variance = tf.randomUniform([4], 0.5, 2, "float32", seed + 2);
    const offset = tf.randomNormal([4], 0, 1, "float32", seed + 3);
    const scale = tf.randomNormal([4], 1, 0.2, "float32", seed + 4);
    const upstream = tf.randomNormal([2, 5, 3, 4], 0, 1, "float32", seed + 5);
    const f = (
      a: tf.Tensor,
      m: tf.Tensor,
      v: tf.Tensor,
      o: tf.Tensor,
      s: tf.Tensor,
    ) => tf.sum(tf.mul(tf.batchNorm(a, m, v, o, s, 1e-3), upstream));
    const grads = tf.grads(f)([x, mean, variance, offset, scale]);
    return grads.map((g) => g.dataSync() as Float32Array);
  });
}

Deno.test("frozen BatchNorm gradient - bit-identical to tfjs's own", async () => {
  await tf.setBackend("cpu");
  const before = tf.memory().numTensors;
  const reference = gradsOfBatchNorm(7);

  installFrozenBatchNormGradient();
  const ours = gradsOfBatchNorm(7);

  assert.equal(ours.length, 5);
  for (let i = 0; i < ours.length; i++) {
    assert.deepEqual(Array.from(ours[i]), Array.from(reference[i]));
  }
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("frozen BatchNorm gradient - never tiles the activation", () => {
  const src = frozenBatchNormGradConfig.gradFunc.toString();
  assert.ok(!/\btile\b/.test(src), "the gradient must broadcast, not tile");
});
