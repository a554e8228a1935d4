/**
 * Determinism of a whole run: every random choice (initialisation,
 * shuffling, flips) is a function of the seed, so the final weights are too.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import {
  createTinyDataset,
  sha256OfFloats,
  tinyJobConfig,
  trainTiny,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

Deno.test("seed - same seed, same weights; another seed, other weights", async () => {
  const dataset = await createTinyDataset();
  const tensorsBefore = tf.memory().numTensors;

  try {
    const seven = tinyJobConfig(dataset, { train: { seed: 7 } });
    const first = await trainTiny(seven, { runId: "seed-first" });
    const second = await trainTiny(seven, { runId: "seed-second" });
    const other = await trainTiny(
      tinyJobConfig(dataset, { train: { seed: 8 } }),
      { runId: "seed-other" },
    );

    assert.equal(first.summary.steps, 2);
    assert.equal(first.summary.skippedSteps, 0);
    assert.equal(sha256OfFloats(first.weights), first.summary.weightsSha256);
    assert.equal(second.summary.weightsSha256, first.summary.weightsSha256);
    assert.deepEqual(second.weights, first.weights);

    assert.equal(sha256OfFloats(other.weights), other.summary.weightsSha256);
    assert.notEqual(other.summary.weightsSha256, first.summary.weightsSha256);
    assert.equal(tf.memory().numTensors, tensorsBefore);
  } finally {
    await dataset.remove();
  }
});
