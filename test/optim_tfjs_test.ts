/**
 * The tfjs AdamW: agrees with FlatAdamW over 50 steps of a small model,
 * trains with model.fit without leaking tensors, saves and restores its
 * moments by original name, refuses non-finite gradients.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import "@tensorflow/tfjs-backend-cpu";
import {
  AdamW,
  FlatAdamW,
  type OptimizerConfig,
  parseOptimizerConfig,
  trainableVariableSpecs,
} from "../src/optim/mod.ts";

await tf.setBackend("cpu");

const STEPS_PER_EPOCH = 5;
const TOTAL_STEPS = 50;

function smallModel(seed: number): tfl.LayersModel {
  const init = (s: number) => tfl.initializers.glorotUniform({ seed: s });
  const model = tfl.sequential({
    layers: [
      tfl.layers.dense({
        inputShape: [4],
        units: 8,
        activation: "relu",
        kernelInitializer: init(seed),
        biasInitializer: "ones",
        name: "hidden",
      }),
      tfl.layers.dense({
        units: 3,
        activation: "softmax",
        kernelInitializer: init(seed + 1),
        name: "out",
      }),
    ],
  });
  return model;
}

function batch(step: number): { x: tf.Tensor; y: tf.Tensor } {
  return tf.tidy(() => {
    const x = tf.randomNormal([6, 4], 0, 1, "float32", 1000 + step);
    const labels = tf.tensor1d(
      [0, 1, 2, 1, 0, 2].map((l) => (l + step) % 3),
      "int32",
    );
    return { x, y: tf.cast(tf.oneHot(labels, 3), "float32") };
  });
}

/** Gradients of the model's loss on a batch, keyed by variable name. */
function gradients(model: tfl.LayersModel, step: number): tf.NamedTensorMap {
  const { x, y } = batch(step);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const { value, grads } = tf.variableGrads(
    () =>
      tf.losses.softmaxCrossEntropy(
        y,
        model.predict(x) as tf.Tensor,
      ) as tf.Scalar,
    variables,
  );
  tf.dispose([x, y, value]);
  return grads;
}

function flatFor(model: tfl.LayersModel, config: OptimizerConfig): FlatAdamW {
  return new FlatAdamW({
    variables: trainableVariableSpecs(model.trainableWeights),
    config,
    workers: 1,
    stepsPerEpoch: STEPS_PER_EPOCH,
    totalSteps: TOTAL_STEPS,
  });
}

function adamWFor(model: tfl.LayersModel, config: OptimizerConfig): AdamW {
  return new AdamW({
    config,
    stepsPerEpoch: STEPS_PER_EPOCH,
    totalSteps: TOTAL_STEPS,
    weights: model.weights,
  });
}

const PYTORCH = parseOptimizerConfig({
  convention: "pytorch",
  weightDecay: 0.05,
  multipliers: [["hidden/", 0.5]],
  schedule: { kind: "cosine", peak: 0.02, warmupSteps: 5 },
});
const KERAS_CLIPPED = parseOptimizerConfig({
  convention: "keras",
  weightDecay: 1e-3,
  clipGlobalNorm: 0.5,
  multipliers: [["out/bias", 2], ["hidden", 0.1]],
  schedule: {
    kind: "reference",
    start: 1e-3,
    max: 1e-2,
    min: 1e-3,
    rampEpochs: 2,
    decay: 0.8,
  },
});

Deno.test("tfjs and flat AdamW agree over 50 steps of a small model", () => {
  for (
    const [label, config, exact] of [
      ["pytorch", PYTORCH, true],
      ["keras with clipping", KERAS_CLIPPED, false],
    ] as const
  ) {
    const model = smallModel(7);
    const optimizer = adamWFor(model, config);
    const flat = flatFor(model, config);
    const flatWeights = model.trainableWeights.map((w) =>
      w.read().dataSync().slice() as Float32Array
    );
    const names = model.trainableWeights.map((w) => w.name);
    const tensorsBefore = tf.memory().numTensors;

    for (let step = 0; step < 50; step++) {
      const grads = gradients(model, step);
      const flatGrads = names.map((n) =>
        grads[n]!.dataSync().slice() as Float32Array
      );
      optimizer.applyGradients(grads);
      assert.equal(
        flat.step({ weights: flatWeights, grads: flatGrads, step }).applied,
        true,
      );
      tf.dispose(grads);
    }

    model.trainableWeights.forEach((w, i) => {
      const viaTfjs = w.read().dataSync();
      const viaFlat = flatWeights[i]!;
      viaTfjs.forEach((value, j) => {
        const expected = viaFlat[j]!;
        assert.ok(Number.isFinite(value), `${label}: ${w.originalName}[${j}]`);
        assert.ok(
          Math.abs(value - expected) <= 1e-5 * Math.abs(expected) + 1e-7,
          `${label}: ${w.originalName}[${j}] ${value} vs ${expected}`,
        );
      });
      // Same float32 operations in the same order: identical on cpu.
      if (exact) {
        assert.deepEqual(viaTfjs, viaFlat, `${label}: ${w.originalName}`);
      }
    });

    // 4 moment tensors per variable were created on the first step only.
    assert.equal(tf.memory().numTensors, tensorsBefore + 2 * names.length);
    optimizer.dispose();
    model.dispose();
  }
});

Deno.test("AdamW trains with model.fit; tensors do not grow", async () => {
  const model = smallModel(3);
  const optimizer = adamWFor(
    model,
    parseOptimizerConfig({ schedule: { kind: "constant", value: 0.05 } }),
  );
  model.compile({ optimizer, loss: "categoricalCrossentropy" });
  const { x, y } = batch(0);

  const first = await model.fit(x, y, { epochs: 5, batchSize: 3, verbose: 0 });
  const afterFirst = tf.memory().numTensors;
  const second = await model.fit(x, y, {
    epochs: 20,
    batchSize: 3,
    verbose: 0,
  });

  assert.equal(tf.memory().numTensors, afterFirst);
  assert.equal(optimizer.iterations, 50);
  const loss = (h: tfl.History) => h.history.loss as number[];
  assert.ok(loss(second).at(-1)! < loss(first)[0]! * 0.5, "loss halves");
  tf.dispose([x, y]);
  optimizer.dispose();
  model.dispose();
});

Deno.test("AdamW getWeights/setWeights carry moments and step by original name", async () => {
  // Model B is a second model in the process: tfjs names its variables
  // hidden/kernel_1 etc.; the optimizer still keys moments by the original.
  const modelA = smallModel(11);
  const modelB = smallModel(11);
  assert.notEqual(modelB.trainableWeights[0]!.name, "hidden/kernel");
  assert.equal(modelB.trainableWeights[0]!.originalName, "hidden/kernel");

  const optimizerA = adamWFor(modelA, PYTORCH);
  for (let step = 0; step < 5; step++) {
    const grads = gradients(modelA, step);
    optimizerA.applyGradients(grads);
    tf.dispose(grads);
  }
  modelB.setWeights(modelA.getWeights());

  const saved = await optimizerA.getWeights();
  assert.deepEqual(saved.map((w) => w.name), [
    "iter",
    "hidden/kernel/m",
    "hidden/kernel/v",
    "hidden/kernel/t",
    "hidden/bias/m",
    "hidden/bias/v",
    "hidden/bias/t",
    "out/kernel/m",
    "out/kernel/v",
    "out/kernel/t",
    "out/bias/m",
    "out/bias/v",
    "out/bias/t",
  ]);
  const optimizerB = adamWFor(modelB, PYTORCH);
  await optimizerB.setWeights(
    saved.map((w) => ({ name: w.name, tensor: w.tensor.clone() })),
  );
  assert.equal(optimizerB.iterations, 5);

  for (let step = 5; step < 10; step++) {
    for (
      const [model, optimizer] of [[modelA, optimizerA], [
        modelB,
        optimizerB,
      ]] as const
    ) {
      const grads = gradients(model, step);
      optimizer.applyGradients(grads);
      tf.dispose(grads);
    }
  }
  modelA.trainableWeights.forEach((w, i) =>
    assert.deepEqual(
      modelB.trainableWeights[i]!.read().dataSync(),
      w.read().dataSync(),
      w.originalName,
    )
  );
  tf.dispose(saved[0]!.tensor);
  for (const x of [optimizerA, optimizerB, modelA, modelB]) x.dispose();
});

Deno.test("AdamW rules match original names on a second model", () => {
  smallModel(1).dispose(); // takes the unsuffixed names
  const model = smallModel(2);
  const optimizer = adamWFor(
    model,
    parseOptimizerConfig({
      multipliers: [{ key: "hidden/kernel", multiplier: 0, match: "exact" }],
    }),
  );
  const before = model.getWeights()[0]!.dataSync().slice();
  const grads = gradients(model, 0);
  optimizer.applyGradients(grads);
  tf.dispose(grads);
  assert.deepEqual(
    model.getWeights()[0]!.dataSync(),
    before,
    "frozen by exact rule",
  );
  assert.notDeepEqual(model.getWeights()[2]!.dataSync(), new Float32Array(24));
  optimizer.dispose();
  model.dispose();
});

Deno.test("AdamW skips a non-finite step and reports it", () => {
  const model = smallModel(5);
  const outcomes: Array<{ applied: boolean; step: number }> = [];
  const optimizer = new AdamW({
    config: PYTORCH,
    stepsPerEpoch: STEPS_PER_EPOCH,
    totalSteps: TOTAL_STEPS,
    weights: model.weights,
    onStep: ({ applied, step }) => outcomes.push({ applied, step }),
  });
  const before = model.getWeights().map((w) => w.dataSync().slice());
  const grads = gradients(model, 0);
  const name = model.trainableWeights[1]!.name;
  const poisoned = {
    ...grads,
    [name]: tf.fill(grads[name]!.shape, Number.NaN),
  };

  const tensorsBefore = tf.memory().numTensors;
  optimizer.applyGradients(poisoned);
  assert.equal(tf.memory().numTensors, tensorsBefore);
  assert.equal(optimizer.lastOutcome?.applied, false);
  assert.match(
    optimizer.lastOutcome!.reason!,
    /non-finite gradient in "hidden\/bias"/,
  );
  assert.equal(optimizer.iterations, 0);
  model.getWeights().forEach((w, i) =>
    assert.deepEqual(w.dataSync(), before[i])
  );

  optimizer.applyGradients(grads);
  assert.deepEqual(outcomes, [{ applied: false, step: 0 }, {
    applied: true,
    step: 0,
  }]);
  tf.dispose([grads, poisoned[name]!]);
  optimizer.dispose();
  model.dispose();
});

Deno.test("AdamW serialises its config through fromConfig", () => {
  const optimizer = new AdamW({
    config: PYTORCH,
    stepsPerEpoch: 4,
    totalSteps: 8,
    workers: 2,
  });
  const copy = AdamW.fromConfig(AdamW, optimizer.getConfig());
  assert.ok(copy instanceof AdamW);
  assert.deepEqual(copy.config, PYTORCH);
  assert.equal(copy.workers, 2);
  assert.equal(copy.getClassName(), "AdamW");
  optimizer.dispose();
  copy.dispose();
});

Deno.test("AdamW device guard equals the sync guard and still skips NaN steps", async () => {
  // The device guard (for webgpu) exercised on cpu: finite steps give the
  // same bits; a NaN step changes nothing and is reported asynchronously.
  const models = [smallModel(21), smallModel(21)];
  const outcomes: Array<{ applied: boolean; step: number }> = [];
  const [sync, device] = (["sync", "device"] as const).map((guard, i) =>
    new AdamW({
      config: PYTORCH,
      stepsPerEpoch: STEPS_PER_EPOCH,
      totalSteps: TOTAL_STEPS,
      weights: models[i]!.weights,
      guard,
      onStep: guard === "device"
        ? ({ applied, step }) => outcomes.push({ applied, step })
        : undefined,
    })
  );
  const tensorsBefore = tf.memory().numTensors;

  for (let step = 0; step < 6; step++) {
    for (
      const [model, optimizer] of [[models[0]!, sync!], [
        models[1]!,
        device!,
      ]] as const
    ) {
      const grads = gradients(model, step);
      optimizer.applyGradients(grads);
      tf.dispose(grads);
    }
  }
  models[0]!.trainableWeights.forEach((w, i) =>
    assert.deepEqual(
      models[1]!.trainableWeights[i]!.read().dataSync(),
      w.read().dataSync(),
    )
  );

  const before = models[1]!.getWeights().map((w) => w.dataSync().slice());
  const grads = gradients(models[1]!, 6);
  const name = models[1]!.trainableWeights[2]!.name;
  const poisoned = {
    ...grads,
    [name]: tf.fill(grads[name]!.shape, Number.POSITIVE_INFINITY),
  };
  device!.applyGradients(poisoned);
  models[1]!.getWeights().forEach((w, i) =>
    assert.deepEqual(w.dataSync(), before[i])
  );

  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(outcomes.length, 7);
  assert.deepEqual(outcomes.at(-1), { applied: false, step: 6 });
  assert.ok(outcomes.slice(0, 6).every((o) => o.applied));
  tf.dispose([grads, poisoned[name]!]);
  assert.equal(tf.memory().numTensors, tensorsBefore + 2 * 2 * 4);
  for (const x of [sync!, device!, ...models]) x.dispose();
});
