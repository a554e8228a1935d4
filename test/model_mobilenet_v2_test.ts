import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import {
  buildMobileNetV2,
  countParams,
  makeDivisible,
  ModelConfigError,
} from "../src/model/mobilenet_v2.ts";

// Parameter counts of keras.applications.MobileNetV2(include_top=False)
// as Keras's model.summary() prints them, per width multiplier.
const KERAS_NO_TOP_PARAMS = {
  0.35: 410_208,
  0.5: 706_224,
  0.75: 1_382_064,
  1.0: 2_257_984,
} as const;

Deno.test("MobileNetV2 - backbone parameter counts equal Keras's", async () => {
  await tf.setBackend("cpu");
  for (const [alpha, expected] of Object.entries(KERAS_NO_TOP_PARAMS)) {
    const model = buildMobileNetV2({
      alpha: Number(alpha) as 0.35,
      imageSize: 32,
      backboneOnly: true,
    });
    assert.equal(countParams(model), expected, `alpha ${alpha}`);
    assert.equal(model.weights.length, 260, `alpha ${alpha}`);
    model.dispose();
  }
});

Deno.test("MobileNetV2 - layers carry the Keras application names", async () => {
  await tf.setBackend("cpu");
  const model = buildMobileNetV2({ alpha: 0.35, imageSize: 64 });
  const names = new Set(model.layers.map((l) => l.name));

  for (
    const name of [
      "Conv1",
      "bn_Conv1",
      "expanded_conv_depthwise",
      "expanded_conv_project_BN",
      "block_1_expand",
      "block_1_expand_BN",
      "block_16_project_BN",
      "Conv_1",
      "Conv_1_bn",
      "out_relu",
      "flower_dense",
      "flower_prob",
    ]
  ) {
    assert.ok(names.has(name), `missing layer ${name}`);
  }
  assert.deepEqual(model.outputs[0].shape, [null, 5]);
  model.dispose();
});

Deno.test("MobileNetV2 - spatial sizes and the head for odd inputs", async () => {
  await tf.setBackend("cpu");
  const before = tf.memory().numTensors;
  const model = buildMobileNetV2({ alpha: 0.5, imageSize: 33, numClasses: 3 });
  const out = model.getLayer("out_relu").output as { shape: number[] };

  // Five stride-2 stages with `same` padding: ceil(33 / 32) = 2.
  assert.deepEqual(out.shape, [null, 2, 2, 1280]);
  const probs = tf.tidy(() =>
    model.predict(tf.zeros([2, 33, 33, 3])) as tf.Tensor
  );
  const sums = tf.tidy(() => tf.sum(probs, 1).arraySync() as number[]);
  for (const s of sums) assert.ok(Math.abs(s - 1) < 1e-5);
  probs.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("MobileNetV2 - seeded initialisation is reproducible", async () => {
  await tf.setBackend("cpu");
  const a = buildMobileNetV2({ alpha: 0.35, imageSize: 32, seed: 7 });
  const b = buildMobileNetV2({ alpha: 0.35, imageSize: 32, seed: 7 });
  const c = buildMobileNetV2({ alpha: 0.35, imageSize: 32, seed: 8 });
  const first = (m: typeof a) =>
    Array.from(m.getLayer("block_3_expand").getWeights()[0].dataSync());

  assert.deepEqual(first(a), first(b));
  assert.notDeepEqual(first(a), first(c));
  for (const m of [a, b, c]) m.dispose();
});

Deno.test("MobileNetV2 - bad options name the field", () => {
  assert.throws(
    () => buildMobileNetV2({ alpha: 0.6 as 0.5 }),
    (e) => e instanceof ModelConfigError && e.field === "alpha",
  );
  assert.throws(
    () => buildMobileNetV2({ imageSize: 300 }),
    (e) => e instanceof ModelConfigError && e.field === "imageSize",
  );
  assert.throws(
    () => buildMobileNetV2({ numClasses: 1 }),
    (e) => e instanceof ModelConfigError && e.field === "numClasses",
  );
});

Deno.test("MobileNetV2 - channel rounding follows Keras's rule", () => {
  assert.equal(makeDivisible(32 * 0.35), 16);
  assert.equal(makeDivisible(16 * 0.35), 8);
  assert.equal(makeDivisible(24 * 0.75), 24);
  assert.equal(makeDivisible(320 * 0.35), 112);
});
