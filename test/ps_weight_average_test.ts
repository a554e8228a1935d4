/**
 * The weight average behind `train.emaDecay`: its decay ramps up with the
 * update count, it tracks the weights, it resumes from checkpointed state
 * exactly, and a bad decay or state is refused.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { WeightAverage } from "../src/ps/weight_average.ts";
import { ConfigError, parseJobConfig } from "../src/config.ts";
import { readCheckpoint } from "../src/train/checkpoint.ts";
import {
  createTinyDataset,
  sha256OfFloats,
  tinyJobConfig,
  trainTiny,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

Deno.test("weight average - early updates follow the weights, later ones lag", () => {
  const ema = new WeightAverage(0.99, new Float32Array([0, 0]));

  // Update 0 keeps min(0.99, 1/10) of the average: 0.9 of 1 is taken.
  ema.update(new Float32Array([1, -2]));
  assert.deepEqual([...ema.average], [Math.fround(0.9), Math.fround(-1.8)]);
  assert.equal(ema.updates, 1);

  for (let i = 0; i < 2000; i++) ema.update(new Float32Array([1, -2]));
  assert.ok(Math.abs(ema.average[0] - 1) < 1e-5, String(ema.average[0]));

  // After a jump, a 0.99 average moves about 1% per update.
  ema.update(new Float32Array([2, -2]));
  assert.ok(Math.abs(ema.average[0] - 1.01) < 1e-4, String(ema.average[0]));
});

Deno.test("weight average - resuming from its state gives the same bits", () => {
  const steps = Array.from(
    { length: 50 },
    (_, i) => new Float32Array([Math.sin(i), Math.cos(i) * 3, i / 7]),
  );
  const whole = new WeightAverage(0.95, steps[0]);
  for (const w of steps) whole.update(w);

  const first = new WeightAverage(0.95, steps[0]);
  for (const w of steps.slice(0, 20)) first.update(w);
  const resumed = new WeightAverage(0.95, steps[0], {
    average: first.average.slice(),
    updates: first.updates,
  });
  for (const w of steps.slice(20)) resumed.update(w);

  assert.deepEqual(resumed.average, whole.average);
});

Deno.test("weight average - a bad decay or state is refused", () => {
  assert.throws(() => new WeightAverage(1, new Float32Array(2)), RangeError);
  assert.throws(() => new WeightAverage(0, new Float32Array(2)), RangeError);
  assert.throws(
    () =>
      new WeightAverage(0.9, new Float32Array(2), {
        average: new Float32Array(3),
        updates: 1,
      }),
    RangeError,
  );
  assert.throws(
    () => parseJobConfig({ train: { emaDecay: 1.5 } }),
    (e) => e instanceof ConfigError && e.field === "train.emaDecay",
  );
  assert.equal(
    parseJobConfig({ train: { emaDecay: 0.99 } }).train.emaDecay,
    0.99,
  );
});

Deno.test("weight average - the PS evaluates, saves and checkpoints the average", async () => {
  const dataset = await createTinyDataset();
  try {
    const config = tinyJobConfig(dataset, {
      train: { maxSteps: 3, emaDecay: 0.9 },
    });
    const run = await trainTiny(config, { runId: "ema" });
    const checkpoint = await readCheckpoint(
      join(run.outDir, "checkpoint.msgpack"),
    );

    assert.ok(checkpoint.ema, "no average in the checkpoint");
    assert.equal(checkpoint.ema.updates, 3);
    assert.equal(
      run.summary.weightsSha256,
      sha256OfFloats(checkpoint.ema.average),
    );
    assert.notEqual(
      run.summary.weightsSha256,
      sha256OfFloats(checkpoint.weights),
    );
  } finally {
    await dataset.remove();
  }
});
