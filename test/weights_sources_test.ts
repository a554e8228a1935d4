import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import "@tensorflow/tfjs-backend-cpu";
import { buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";
import {
  inputScalingOf,
  loadPretrainedWeights,
  readModelWeights,
  readWeightsSource,
  type WeightMap,
  WeightsFormatError,
  WeightsMismatchError,
  WeightsSourceError,
  writeDptrainWeights,
} from "../src/model/weights/mod.ts";
import { maxAbsDiff, tempDir } from "./weights_helpers.ts";

await tf.setBackend("cpu");

const INFO = {
  alpha: 0.35,
  trainedImageSize: 224,
  inputScaling: "minus_one_to_one" as const,
  description: "edited copy of the bundled 0.35 set",
  origin: "test",
  license: "Apache-2.0",
};

async function bundled035(): Promise<WeightMap> {
  return (await readWeightsSource({
    source: "bundled",
    alpha: 0.35,
    imageSize: 224,
  })).weights;
}

/** Loads an edited weight map through a weights.json on disk. */
async function loadEdited(
  edit: (weights: WeightMap) => void,
  options: { includeHead?: boolean } = {},
) {
  await using dir = await tempDir();
  const weights = await bundled035();
  edit(weights);
  await writeDptrainWeights(dir.path, { weights, info: INFO });
  const model = buildMobileNetV2({ alpha: 0.35, imageSize: 32, seed: 3 });
  try {
    return await loadPretrainedWeights(model, {
      source: dir.path,
      alpha: 0.35,
      imageSize: 32,
      ...options,
    });
  } finally {
    model.dispose();
  }
}

function mismatch(check: (error: WeightsMismatchError) => void) {
  return (error: unknown) => {
    assert.ok(error instanceof WeightsMismatchError, String(error));
    check(error);
    return true;
  };
}

Deno.test("weight sources - a missing tensor is listed and nothing is written", async () => {
  const tensorsBefore = tf.memory().numTensors;
  const model = buildMobileNetV2({ alpha: 0.35, imageSize: 32, seed: 3 });
  const before = readModelWeights(model);
  await using dir = await tempDir();
  const weights = await bundled035();
  weights.delete("block_5_expand/kernel");
  await writeDptrainWeights(dir.path, { weights, info: INFO });

  await assert.rejects(
    loadPretrainedWeights(model, {
      source: dir.path,
      alpha: 0.35,
      imageSize: 32,
    }),
    mismatch((error) => {
      assert.deepEqual(error.missing, ["block_5_expand/kernel"]);
      assert.deepEqual(error.unexpected, []);
      assert.deepEqual(error.shapeMismatches, []);
      assert.match(error.message, /1 missing \(block_5_expand\/kernel\)/);
    }),
  );
  for (const [name, tensor] of readModelWeights(model)) {
    assert.equal(maxAbsDiff(tensor.values, before.get(name)!.values), 0, name);
  }
  model.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore);
});

Deno.test("weight sources - an extra backbone tensor is listed as unexpected", async () => {
  await assert.rejects(
    loadEdited((w) => {
      w.set("block_17_expand/kernel", {
        shape: [1],
        values: new Float32Array([1]),
      });
    }),
    mismatch((error) => {
      assert.deepEqual(error.unexpected, ["block_17_expand/kernel"]);
      assert.deepEqual(error.missing, []);
      assert.match(error.message, /1 unexpected \(block_17_expand\/kernel\)/);
    }),
  );
});

Deno.test("weight sources - a wrong shape is listed with both shapes", async () => {
  await assert.rejects(
    loadEdited((w) => {
      w.set("Conv1/kernel", {
        shape: [3, 3, 3, 8],
        values: new Float32Array(3 * 3 * 3 * 8),
      });
    }),
    mismatch((error) => {
      assert.deepEqual(error.shapeMismatches, [{
        name: "Conv1/kernel",
        expected: [3, 3, 3, 16],
        actual: [3, 3, 3, 8],
      }]);
      assert.match(
        error.message,
        /Conv1\/kernel model \[3,3,3,16\] source \[3,3,3,8\]/,
      );
    }),
  );
});

Deno.test("weight sources - a misspelt name shows up as missing", async () => {
  await assert.rejects(
    loadEdited((w) => {
      w.set("block_1_expnd/kernel", w.get("block_1_expand/kernel")!);
      w.delete("block_1_expand/kernel");
    }),
    mismatch((error) => {
      assert.deepEqual(error.missing, ["block_1_expand/kernel"]);
    }),
  );
});

Deno.test("weight sources - a NaN in a tensor is refused by name", async () => {
  await assert.rejects(
    loadEdited((w) => {
      w.get("block_3_project_BN/gamma")!.values[2] = NaN;
    }),
    (error: unknown) => {
      assert.ok(error instanceof WeightsFormatError);
      assert.equal(error.field, "block_3_project_BN/gamma");
      return true;
    },
  );
});

Deno.test("weight sources - includeHead on a backbone-only source lists the head", async () => {
  await assert.rejects(
    loadEdited(() => {}, { includeHead: true }),
    mismatch((error) => {
      assert.deepEqual(error.missing.sort(), [
        "flower_dense/bias",
        "flower_dense/kernel",
        "flower_prob/bias",
        "flower_prob/kernel",
      ]);
    }),
  );
});

Deno.test("weight sources - a weights.json of another alpha is refused", async () => {
  await using dir = await tempDir();
  await writeDptrainWeights(dir.path, {
    weights: await bundled035(),
    info: INFO,
  });
  const model = buildMobileNetV2({ alpha: 1.0, imageSize: 32 });
  await assert.rejects(
    loadPretrainedWeights(model, {
      source: dir.path,
      alpha: 1.0,
      imageSize: 32,
    }),
    /holds alpha 0\.35 weights, the model has alpha 1/,
  );
  model.dispose();
});

Deno.test("weight sources - an unknown name or missing path says what is accepted", async () => {
  const model = buildMobileNetV2({ alpha: 0.35, imageSize: 32 });
  await assert.rejects(
    loadPretrainedWeights(model, {
      source: "imagenett",
      alpha: 0.35,
      imageSize: 32,
    }),
    (error: unknown) => {
      assert.ok(error instanceof WeightsSourceError);
      assert.match(error.message, /bundled, nsfwjs, imagenet, none/);
      return true;
    },
  );
  model.dispose();
});

/**
 * A Teachable Machine-shaped export: Sequential(Sequential(MobileNetV2,
 * pooling), Sequential(Dense, Dense)), saved as model.json + one shard.
 */
async function saveNestedExport(
  dir: string,
  options: { userDefinedMetadata?: Record<string, unknown> } = {},
): Promise<WeightMap> {
  const backbone = buildMobileNetV2({
    alpha: 0.35,
    imageSize: 64,
    seed: 11,
    backboneOnly: true,
  });
  const features = tfl.sequential({
    layers: [backbone, tfl.layers.globalAveragePooling2d({})],
  });
  const head = tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [1280], units: 4, name: "dense_Dense1" }),
      tfl.layers.dense({ units: 3, useBias: false, name: "dense_Dense2" }),
    ],
  });
  const exported = tfl.sequential({ layers: [features, head] });

  await exported.save(tf.io.withSaveHandler(async (artifacts) => {
    const data = artifacts.weightData!;
    const bytes = Array.isArray(data)
      ? await new Blob(data).arrayBuffer()
      : data;
    await Deno.writeFile(`${dir}/weights.bin`, new Uint8Array(bytes));
    await Deno.writeTextFile(
      `${dir}/model.json`,
      JSON.stringify({
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{
          paths: ["weights.bin"],
          weights: artifacts.weightSpecs,
        }],
        ...options,
      }),
    );
    return {
      modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" },
    };
  }));
  const backboneWeights = readModelWeights(exported, { backboneOnly: true });
  // tfjs leaves the last nested Sequential's variables to its own dispose.
  exported.dispose();
  head.dispose();
  return backboneWeights;
}

Deno.test("weight sources - a nested tfjs model.json loads its backbone by name", async () => {
  const tensorsBefore = tf.memory().numTensors;
  await using dir = await tempDir();
  const expected = await saveNestedExport(dir.path);

  const model = buildMobileNetV2({ alpha: 0.35, imageSize: 96 });
  const result = await loadPretrainedWeights(model, {
    source: `${dir.path}/model.json`,
    alpha: 0.35,
    imageSize: 96,
  });
  assert.equal(result.loaded, 260);
  assert.deepEqual(result.ignored.sort(), [
    "dense_Dense1/bias",
    "dense_Dense1/kernel",
    "dense_Dense2/kernel",
  ]);
  assert.equal(result.inputScaling, "minus_one_to_one");
  for (
    const [name, tensor] of readModelWeights(model, { backboneOnly: true })
  ) {
    assert.equal(
      maxAbsDiff(tensor.values, expected.get(name)!.values),
      0,
      name,
    );
  }
  model.dispose();
  assert.equal(tf.memory().numTensors, tensorsBefore);
});

Deno.test("weight sources - input scaling is known without loading", async () => {
  await using tm = await tempDir();
  await saveNestedExport(tm.path, {
    userDefinedMetadata: { inputScaling: "zero_to_one" },
  });
  await using dp = await tempDir();
  await writeDptrainWeights(dp.path, {
    weights: await bundled035(),
    info: { ...INFO, inputScaling: "zero_to_one" },
  });

  assert.equal(inputScalingOf("bundled"), "minus_one_to_one");
  assert.equal(inputScalingOf("imagenet"), "minus_one_to_one");
  assert.equal(inputScalingOf("none"), "minus_one_to_one");
  assert.equal(inputScalingOf("nsfwjs"), "zero_to_one");
  assert.equal(inputScalingOf(`${tm.path}/model.json`), "zero_to_one");
  assert.equal(inputScalingOf(dp.path), "zero_to_one");
  assert.throws(() => inputScalingOf("no/such/model.json"), WeightsSourceError);
});

Deno.test("weight sources - none keeps the seeded initialisation", async () => {
  const model = buildMobileNetV2({ alpha: 0.35, imageSize: 32, seed: 5 });
  const before = readModelWeights(model);
  const result = await loadPretrainedWeights(model, {
    source: "none",
    alpha: 0.35,
    imageSize: 32,
  });
  assert.equal(result.loaded, 0);
  for (const [name, tensor] of readModelWeights(model)) {
    assert.equal(maxAbsDiff(tensor.values, before.get(name)!.values), 0, name);
  }
  model.dispose();
});
