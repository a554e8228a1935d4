/**
 * One full MobileNetV2 training step (alpha 0.35, small input, batch
 * norm in training mode, categorical cross-entropy) on wasm matches the
 * same step on cpu in the loss, every gradient and the updated batch-norm
 * moving statistics; repeated steps leak no tensor.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { initWasmBackend } from "../src/backend/wasm_init.ts";
import { buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";
import {
  compareAll,
  crossEntropy,
  relativeError,
  trainingStep,
} from "./wasm_helpers.ts";

const TOLERANCE = 1e-4;

await initWasmBackend();

Deno.test("wasm training step - MobileNetV2 gradients match cpu within 1e-4", async () => {
  const step = { imageSize: 40, batch: 3 };
  const cpu = await trainingStep("cpu", { ...step, initial: null });
  const wasm = await trainingStep("wasm", { ...step, initial: cpu.initial });

  assert.ok(relativeError(wasm.result.loss, cpu.result.loss) <= TOLERANCE);
  assert.equal(wasm.result.grads.size, cpu.result.grads.size);
  assert.ok(
    cpu.result.grads.size > 100,
    "every trainable variable has a gradient",
  );
  // A batch-norm offset feeding a linear layer and then another batch norm
  // (every project_BN/beta here) has a gradient of exactly zero: the next
  // normalisation removes any per-channel shift. Likewise the batch mean
  // of a 1x1 convolution of normalised (zero-mean) input is exactly zero.
  // Both backends return rounding noise (~1e-6) for these, so each
  // tensor's error is taken relative to its own scale, but never to less
  // than 1e-3 of the largest value of its kind in the model.
  const failures = [
    ...compareAll(wasm.result.grads, cpu.result.grads, {
      include: () => true,
      tolerance: TOLERANCE,
    }),
    ...compareAll(wasm.result.weights, cpu.result.weights, {
      include: (name) => name.includes("moving"),
      tolerance: TOLERANCE,
    }),
  ];
  assert.deepEqual(failures, []);
});

Deno.test("wasm training step - repeated steps do not grow numTensors", async () => {
  await tf.setBackend("wasm");
  const model = buildMobileNetV2({ alpha: 0.35, imageSize: 32 });
  const x = tf.randomUniform([2, 32, 32, 3], -1, 1);
  const labels = tf.oneHot(tf.tensor1d([1, 2], "int32"), 5);
  const counts: number[] = [];
  for (let step = 0; step < 3; step++) {
    const { value, grads } = tf.variableGrads(() =>
      crossEntropy(labels, model.apply(x, { training: true }) as tf.Tensor)
    );
    tf.dispose([value, ...Object.values(grads)]);
    counts.push(tf.memory().numTensors);
  }
  assert.equal(counts[2], counts[0]);
  assert.equal(counts[1], counts[0]);
  tf.dispose([x, labels]);
  model.dispose();
});
