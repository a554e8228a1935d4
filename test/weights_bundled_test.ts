import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";
import {
  concatSortedBytes,
  isBackboneWeightName,
  loadPretrainedWeights,
  readModelWeights,
  readNsfwjsModel,
  readWeightsSource,
  sha256Hex,
  WeightsSourceError,
} from "../src/model/weights/mod.ts";
import { readTfjsModel } from "../src/model/weights/tfjs_manifest.ts";
import {
  layerOutput,
  maxAbsDiff,
  photoBatch,
  PHOTOS,
  ROOT,
} from "./weights_helpers.ts";

await tf.setBackend("cpu");

/**
 * SHA-256 of each bundled set's tensors, sorted by name and concatenated:
 * for 0.35 the value SOURCES.md measured on five Teachable Machine
 * exports; for 1.0 computed with NumPy from the .npy files and the
 * SOURCES.md name table, independently of this project's code.
 */
const SORTED_SHA256 = {
  0.35: "ee5b607dd0e96d06e0583fad110737beab97a838a7e42e85b3af7ed1a05ff0d6",
  1.0: "d3ad453a4d57b230b3b4d95590373aa08866f81f19340d5556f51f54dec98019",
};

const TM_EXPORT = `${ROOT}../shared/weights/` +
  "tm-mobilenet_v2_0.35_224-imagenet-backbone-tfjs-layers/model.json";

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return dot / Math.sqrt(aa * bb);
}

for (const alpha of [0.35, 1.0] as const) {
  const label = alpha === 1.0 ? "1.0" : "0.35";
  Deno.test(`bundled weights - alpha ${label} matches its independent hash`, async () => {
    const { weights } = await readWeightsSource({
      source: "bundled",
      alpha,
      imageSize: 224,
    });
    assert.equal(weights.size, 260);
    assert.equal(
      await sha256Hex(concatSortedBytes(weights)),
      SORTED_SHA256[alpha],
    );
  });

  Deno.test(`bundled weights - alpha ${label} fills all Keras names, real features`, async () => {
    const tensorsBefore = tf.memory().numTensors;
    const model = buildMobileNetV2({ alpha, imageSize: 224, seed: 7 });
    const headBefore = readModelWeights(model);

    const result = await loadPretrainedWeights(model, {
      source: "bundled",
      alpha,
      imageSize: 224,
    });
    assert.equal(result.loaded, 260);
    assert.deepEqual(result.ignored, []);
    assert.equal(result.inputScaling, "minus_one_to_one");

    // Every backbone variable now holds the bundled values; the head
    // keeps its seeded initialisation.
    const { weights } = await readWeightsSource({
      source: "bundled",
      alpha,
      imageSize: 224,
    });
    const after = readModelWeights(model);
    for (const [name, tensor] of after) {
      const expected = isBackboneWeightName(name)
        ? weights.get(name)!.values
        : headBefore.get(name)!.values;
      assert.equal(maxAbsDiff(tensor.values, expected), 0, name);
    }
    assert.equal(after.size - 260, 4); // flower_dense, flower_prob

    // Two daisies, then two sunflowers, in batches of 2.
    const f: Float32Array[] = [];
    for (const pair of [PHOTOS.daisy, PHOTOS.sunflowers]) {
      const input = photoBatch(pair, {
        size: 224,
        scaling: result.inputScaling,
      });
      f.push(...layerOutput(model, {
        layerName: "global_average_pooling2d",
        input,
      }));
      input.dispose();
    }

    for (const features of f) {
      assert.equal(features.length, 1280);
      assert.ok(features.every(Number.isFinite));
      const active = features.filter((v) => v > 0).length;
      // ReLU6 features of a real photo: many channels active, not all.
      assert.ok(active > 100 && active < 1280, `active channels ${active}`);
      assert.ok(features.every((v) => v >= 0 && v <= 6));
    }
    assert.ok(maxAbsDiff(f[0], f[2]) > 0.5);
    assert.ok(cosine(f[0], f[2]) < 0.9);

    if (alpha === 1.0) {
      // Same-class photos look more alike than cross-class ones. Measured
      // margin: 0.077 here, 0.000 with the seeded random initialisation
      // (all features nearly parallel, cosine 0.99).
      const within = (cosine(f[0], f[1]) + cosine(f[2], f[3])) / 2;
      const across = (cosine(f[0], f[2]) + cosine(f[0], f[3]) +
        cosine(f[1], f[2]) + cosine(f[1], f[3])) / 4;
      assert.ok(within - across > 0.03, `margin ${within - across}`);
    }

    model.dispose();
    assert.equal(tf.memory().numTensors, tensorsBefore);
  });
}

function correlation(a: Float32Array, b: Float32Array): number {
  const mean = (v: Float32Array) => v.reduce((s, x) => s + x, 0) / v.length;
  const ma = mean(a), mb = mean(b);
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += (a[i] - ma) * (b[i] - mb);
    aa += (a[i] - ma) ** 2;
    bb += (b[i] - mb) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

Deno.test("bundled weights - alpha 1.0 kernels track nsfwjs's Keras base", async () => {
  // nsfwjs fine-tuned Keras's ImageNet MobileNetV2 1.0, so each of its
  // kernels stays close to the original. A wrong TF-slim name mapping or
  // axis order would pair unrelated values (correlation near 0).
  const { weights: nsfwjs } = await readNsfwjsModel();
  const { weights } = await readWeightsSource({
    source: "bundled",
    alpha: 1.0,
    imageSize: 224,
  });
  const kernels = [...weights.keys()].filter((n) => n.endsWith("kernel"));
  assert.equal(kernels.length, 52);
  for (const name of kernels) {
    const r = correlation(weights.get(name)!.values, nsfwjs.get(name)!.values);
    assert.ok(r > 0.85, `${name}: correlation ${r}`);
  }
});

Deno.test("bundled weights - load at any input size", async () => {
  const tensorsBefore = tf.memory().numTensors;
  const model = buildMobileNetV2({ alpha: 0.35, imageSize: 96 });
  const result = await loadPretrainedWeights(model, {
    source: "bundled",
    alpha: 0.35,
    imageSize: 96,
  });
  assert.equal(result.loaded, 260);
  model.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore);
});

Deno.test("bundled weights - an alpha without a bundled set points to imagenet", async () => {
  const model = buildMobileNetV2({ alpha: 0.5, imageSize: 32 });
  await assert.rejects(
    loadPretrainedWeights(model, {
      source: "bundled",
      alpha: 0.5,
      imageSize: 32,
    }),
    (error: unknown) => {
      assert.ok(error instanceof WeightsSourceError);
      assert.match(error.message, /alpha 0\.35 and 1 only, got 0\.5/);
      assert.match(error.message, /"imagenet"/);
      return true;
    },
  );
  model.dispose();
});

Deno.test({
  name:
    "bundled weights - alpha 0.35 equals the Teachable Machine export's backbone",
  ignore: !existsSync(TM_EXPORT),
  async fn() {
    const { weights: tm } = await readTfjsModel(TM_EXPORT);
    const { weights } = await readWeightsSource({
      source: "bundled",
      alpha: 0.35,
      imageSize: 224,
    });
    for (const [name, tensor] of weights) {
      assert.deepEqual(tm.get(name)!.shape, tensor.shape, name);
      assert.equal(maxAbsDiff(tm.get(name)!.values, tensor.values), 0, name);
    }
    assert.deepEqual(
      [...tm.keys()].filter((n) => !weights.has(n)).sort(),
      ["dense_Dense1/bias", "dense_Dense1/kernel", "dense_Dense2/kernel"],
    );
  },
});

function existsSync(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
