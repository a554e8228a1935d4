/**
 * Workers run for thousands of steps: a step must free every tensor it
 * makes, or memory grows until the process dies. Counted with
 * `tf.memory().numTensors`, which tfjs keeps for every backend.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { makeBatch } from "../src/data/mod.ts";
import { setupJob } from "../src/train/job.ts";
import { readFlat, writeFlat } from "../src/train/layout.ts";
import { computeLocalStep } from "../src/train/local_step.ts";
import { subjects } from "../src/transport/mod.ts";
import { decodeMessage } from "../src/wire/mod.ts";
import {
  createTinyDataset,
  tinyJobConfig,
  trainTiny,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

Deno.test("memory - computeLocalStep frees every tensor it makes", async () => {
  const dataset = await createTinyDataset();
  const tensorsBefore = tf.memory().numTensors;

  try {
    const setup = await setupJob(tinyJobConfig(dataset));
    const { model, layout } = setup;
    const options = { imageSize: 32, numClasses: 5 };
    const batch = makeBatch(setup.dataset.train, [0, 7], {
      scaling: "minus_one_to_one",
      flip: { seed: 7, epoch: 0 },
    });
    const empty = makeBatch(setup.dataset.train, [], {
      scaling: "minus_one_to_one",
    });
    const weights = readFlat(model, layout);
    const modelTensors = tf.memory().numTensors;

    for (const batchNorm of ["train", "frozen"] as const) {
      // The worker's cycle: new weights in, one local step out.
      const counts: number[] = [];
      for (let step = 0; step < 3; step++) {
        writeFlat(model, layout, weights);
        const result = computeLocalStep(model, layout, batch, {
          ...options,
          batchNorm,
        });
        assert.equal(result.count, 2);
        assert.equal(result.firstNonFinite, -1);
        counts.push(tf.memory().numTensors);
      }
      assert.deepEqual(counts, [modelTensors, modelTensors, modelTensors]);
    }

    const nothing = computeLocalStep(model, layout, empty, {
      ...options,
      batchNorm: "train",
    });
    assert.equal(nothing.count, 0);
    assert.equal(tf.memory().numTensors, modelTensors);

    model.dispose();
    assert.equal(tf.memory().numTensors, tensorsBefore);
  } finally {
    await dataset.remove();
  }
});

Deno.test("memory - numTensors stays flat across the steps of a run", async () => {
  const dataset = await createTinyDataset();
  const config = tinyJobConfig(dataset, { train: { maxSteps: 4 } });
  const runId = "memory-run";
  const tensorsBefore = tf.memory().numTensors;
  // numTensors when each weights version goes out: every worker is idle
  // then, between two steps.
  const atVersion = new Map<number, number>();

  try {
    const run = await trainTiny(config, {
      runId,
      inject: (transport) => {
        transport.subscribe(subjects("dptrain", runId).weights, (data) => {
          const chunk = decodeMessage(data, {
            run: runId,
            workers: 2,
            kinds: ["tensor_chunk"],
          });
          if (!atVersion.has(chunk.step)) {
            atVersion.set(chunk.step, tf.memory().numTensors);
          }
        });
      },
    });

    assert.equal(run.summary.steps, 4);
    assert.deepEqual([...atVersion.keys()], [0, 1, 2, 3]);
    const counts = [...atVersion.values()];
    assert.deepEqual(counts, counts.map(() => counts[0]));
    assert.equal(tf.memory().numTensors, tensorsBefore);
  } finally {
    await dataset.remove();
  }
});
