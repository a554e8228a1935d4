/**
 * One MobileNetV2 training step on tfjs's webgpu backend (Deno's WebGPU;
 * llvmpipe here) matches cpu within 1e-3, and repeated steps do not grow
 * numTensors. Skipped, with the reason printed, where Deno finds no
 * adapter (CI installs mesa-vulkan-drivers so that it does).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-layers";
import {
  initWebGpuBackend,
  probeWebGpu,
} from "../src/backend/webgpu_backend.ts";
import { buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";
import { compareAll, crossEntropy, trainingStep } from "./wasm_helpers.ts";

const TOLERANCE = 1e-3;
const probe = await probeWebGpu();
if (!probe.ok) {
  console.log(`webgpu tests skipped: ${probe.reason}`);
} else {
  await initWebGpuBackend();
  await tf.setBackend("cpu");
}

Deno.test({
  name: "webgpu training step - MobileNetV2 gradients match cpu within 1e-3",
  ignore: !probe.ok,
  fn: async () => {
    // At 32 px the last blocks see 1x1 maps: batch norm over 2 values is
    // ill-conditioned; 40 px and batch 3 give 12 values per channel.
    const step = { imageSize: 40, batch: 3 };
    const cpu = await trainingStep("cpu", { ...step, initial: null });
    const gpu = await trainingStep("webgpu", {
      ...step,
      initial: cpu.initial,
    });
    await tf.setBackend("cpu");

    const failures = [
      ...compareAll(gpu.result.grads, cpu.result.grads, {
        include: () => true,
        tolerance: TOLERANCE,
      }),
      ...compareAll(gpu.result.weights, cpu.result.weights, {
        include: (name) => name.includes("moving"),
        tolerance: TOLERANCE,
      }),
    ];
    assert.deepEqual(failures, []);
  },
});

Deno.test({
  name: "webgpu training step - repeated steps do not grow numTensors",
  ignore: !probe.ok,
  fn: async () => {
    await tf.setBackend("webgpu");
    const model = buildMobileNetV2({ alpha: 0.35, imageSize: 32 });
    const x = tf.randomUniform([2, 32, 32, 3], -1, 1);
    const labels = tf.oneHot(tf.tensor1d([1, 2], "int32"), 5);
    const counts: number[] = [];
    for (let step = 0; step < 3; step++) {
      const { value, grads } = tf.variableGrads(() =>
        crossEntropy(labels, model.apply(x, { training: true }) as tf.Tensor)
      );
      await value.data();
      tf.dispose([value, ...Object.values(grads)]);
      counts.push(tf.memory().numTensors);
    }
    tf.dispose([x, labels]);
    model.dispose();
    await tf.setBackend("cpu");
    assert.deepEqual(counts, [counts[0], counts[0], counts[0]]);
  },
});
