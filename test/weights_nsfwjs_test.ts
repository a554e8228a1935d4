import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import "@tensorflow/tfjs-backend-cpu";
import { buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";
import {
  inputScalingOf,
  loadPretrainedWeights,
  NSFWJS_CLASSES,
  readNsfwjsModel,
  WeightsSourceError,
} from "../src/model/weights/mod.ts";
import {
  layerOutputs,
  maxAbsDiff,
  photoBatch,
  PHOTOS,
} from "./weights_helpers.ts";

await tf.setBackend("cpu");

/**
 * Our alpha 1.0 backbone with nsfwjs's head rebuilt on top: global
 * average pooling stands in for its 7x7 average pool + flatten (equal at
 * 224 px), and dropout is left out (inactive at inference).
 */
function backboneWithNsfwjsHead(): tfl.LayersModel {
  const backbone = buildMobileNetV2({ alpha: 1.0, backboneOnly: true });
  let x = tfl.layers.globalAveragePooling2d({ name: "pool" })
    .apply(backbone.outputs[0]) as tfl.SymbolicTensor;
  x = tfl.layers.dense({ units: 256, activation: "relu", name: "dense_1" })
    .apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dense({ units: 128, activation: "relu", name: "dense_2" })
    .apply(x) as tfl.SymbolicTensor;
  const output = tfl.layers.dense({
    units: NSFWJS_CLASSES.length,
    activation: "softmax",
    name: "dense_3",
  }).apply(x) as tfl.SymbolicTensor;
  return tfl.model({ inputs: backbone.inputs, outputs: output });
}

Deno.test("nsfwjs weights - our backbone plus its head reproduces the package model", async () => {
  const tensorsBefore = tf.memory().numTensors;
  const files = await readNsfwjsModel();
  const groups = files.modelJson.weightsManifest as {
    weights: tf.io.WeightsManifestEntry[];
  }[];
  const reference = await tfl.loadLayersModel(tf.io.fromMemory({
    modelTopology: files.modelJson.modelTopology as tf.io.ModelJSON[
      "modelTopology"
    ],
    weightSpecs: groups.flatMap((g) => g.weights),
    weightData: files.weightData.slice().buffer,
  }));

  const ours = backboneWithNsfwjsHead();
  const result = await loadPretrainedWeights(ours, {
    source: "nsfwjs",
    alpha: 1.0,
    imageSize: 224,
    includeHead: true,
  });
  assert.equal(result.loaded, 266);
  assert.equal(result.inputScaling, "zero_to_one");

  const input = photoBatch([PHOTOS.daisy[0]], {
    size: 224,
    scaling: "zero_to_one",
  });
  const [[ourFeatures], [actual]] = layerOutputs(ours, {
    layerNames: ["out_relu", "dense_3"],
    input,
  });
  const [[theirFeatures], [expected]] = layerOutputs(reference, {
    layerNames: ["out_relu", "dense_3"],
    input,
  });
  assert.equal(actual.length, 5);
  assert.ok(
    maxAbsDiff(actual, expected) <= 1e-4,
    `predictions ${actual} vs ${expected}`,
  );
  assert.ok(maxAbsDiff(ourFeatures, theirFeatures) <= 1e-4);
  // A flower photo is neither drawing nor explicit: "Neutral" wins.
  assert.equal(
    NSFWJS_CLASSES[expected.indexOf(Math.max(...expected))],
    "Neutral",
  );

  input.dispose();
  ours.dispose();
  reference.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore);
});

Deno.test("nsfwjs weights - a flower model leaves the nsfwjs head out", async () => {
  const tensorsBefore = tf.memory().numTensors;
  const model = buildMobileNetV2({ alpha: 1.0, imageSize: 96 });
  const logged: string[] = [];
  const result = await loadPretrainedWeights(model, {
    source: "nsfwjs",
    alpha: 1.0,
    imageSize: 96,
    log: (m) => logged.push(m),
  });
  assert.equal(result.loaded, 260);
  assert.deepEqual(result.ignored.sort(), [
    "dense_1/bias",
    "dense_1/kernel",
    "dense_2/bias",
    "dense_2/kernel",
    "dense_3/bias",
    "dense_3/kernel",
  ]);
  assert.match(logged.join("\n"), /left out 6 head tensors/);
  assert.equal(inputScalingOf("nsfwjs"), "zero_to_one");
  model.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore);
});

Deno.test("nsfwjs weights - only alpha 1.0 exists", async () => {
  const model = buildMobileNetV2({ alpha: 0.35, imageSize: 32 });
  await assert.rejects(
    loadPretrainedWeights(model, {
      source: "nsfwjs",
      alpha: 0.35,
      imageSize: 32,
    }),
    WeightsSourceError,
  );
  model.dispose();
});
