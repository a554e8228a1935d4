/**
 * Who may take part: the PS compares each worker's config fingerprint with
 * its own and refuses a worker started with another model or data config,
 * with a message that says so, then keeps waiting for the right worker.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { runPsRole, runWorkerRole } from "../src/train/run_job.ts";
import { InProcessHub } from "../src/transport/mod.ts";
import { WorkerRefusedError } from "../src/worker/worker.ts";
import type { JobConfig } from "../src/config.ts";
import {
  captureLogger,
  createTinyDataset,
  tinyJobConfig,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

Deno.test("membership - another config is refused by fingerprint; the PS waits", async () => {
  const dataset = await createTinyDataset();
  const config = tinyJobConfig(dataset, {
    train: { workers: 1, maxSteps: 1 },
  });
  const runId = "member-run";
  const hub = new InProcessHub();
  const connections = [0, 1, 2, 3].map(() => hub.connect());
  const [psBus, ...workerBuses] = connections;
  const { log, lines } = captureLogger(runId);
  const tensorsBefore = tf.memory().numTensors;
  const worker = (workerConfig: JobConfig, name: string) =>
    runWorkerRole({
      config: workerConfig,
      runId,
      rank: 0,
      transport: workerBuses.shift()!,
      log: log.child(name),
      backend: "cpu",
    });

  try {
    const ps = runPsRole({
      config,
      runId,
      transport: psBus,
      log: log.child("ps"),
      outDir: `${dataset.root}/../${runId}`,
      backend: "cpu",
    });

    const wrongModel = tinyJobConfig(dataset, {
      model: { imageSize: 48 },
      train: { workers: 1, maxSteps: 1 },
    });
    const wrongSeed = tinyJobConfig(dataset, {
      train: { workers: 1, maxSteps: 1, seed: 8 },
    });
    for (
      const [name, wrong] of [["image size", wrongModel], [
        "seed",
        wrongSeed,
      ]] as const
    ) {
      const error = await worker(wrong, `wrong ${name}`).then(
        () => assert.fail(`a worker with another ${name} was accepted`),
        (error: unknown) => error,
      );
      assert.ok(error instanceof WorkerRefusedError, String(error));
      assert.equal(error.rank, 0);
      assert.match(
        error.message,
        new RegExp(
          "refused rank 0: config fingerprint [0-9a-f]{16} differs from " +
            "the parameter server's [0-9a-f]{16}",
        ),
      );
      assert.match(error.message, /same config file/);
    }

    const [summary, work] = await Promise.all([ps, worker(config, "right")]);
    assert.equal(summary.steps, 1);
    assert.equal(work.steps, 1);
    assert.deepEqual(summary.workerBackends, [
      { rank: 0, backend: "cpu", device: null },
    ]);
    assert.ok(
      lines.some((l) =>
        /WARN .*ps\] refused rank 0 .*config fingerprint/.test(l)
      ),
      lines.join("\n"),
    );
    assert.equal(tf.memory().numTensors, tensorsBefore);
  } finally {
    for (const c of connections) await c.close();
    await dataset.remove();
  }
});
