/**
 * A worker that stays alive (its heartbeats arrive) but whose gradients
 * never do stops the run instead of hanging it: the PS asks for the
 * missing stream again and again, warns while the rank is silent, gives up
 * after `stallAbortSeconds` with a StallError naming the rank, and leaves
 * a checkpoint. Resuming from that checkpoint with every worker healthy
 * ends with the weights of a run that was never interrupted. (A worker
 * that dies is dropped from the step instead: test/fault_elastic_test.ts.)
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { StallError } from "../src/ps/collector.ts";
import { readCheckpoint } from "../src/train/checkpoint.ts";
import { runPsRole, runWorkerRole } from "../src/train/run_job.ts";
import { InProcessHub, subjects } from "../src/transport/mod.ts";
import { FaultyTransport } from "../src/transport/faulty_transport.ts";
import { decodeMessage } from "../src/wire/mod.ts";
import { RunAbortedError } from "../src/worker/worker.ts";
import type { JobConfig } from "../src/config.ts";
import type { Checkpoint } from "../src/train/checkpoint.ts";
import {
  captureLogger,
  createTinyDataset,
  sha256OfFloats,
  tinyJobConfig,
  trainTiny,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

/** Settles `promise` and returns its rejection reason (or fails). */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return await promise.then(
    () => assert.fail("expected a rejection"),
    (error: unknown) => error,
  );
}

/**
 * Runs the PS and 2 workers over one in-process bus. With
 * `muteRank1Grads`, every gradient chunk rank 1 publishes is lost, while
 * its heartbeats still arrive: alive, but never delivering.
 */
function startRun(
  config: JobConfig,
  args: {
    runId: string;
    outDir: string;
    resume?: Checkpoint;
    muteRank1Grads?: boolean;
  },
) {
  const { runId, outDir } = args;
  const hub = new InProcessHub();
  const { log, lines } = captureLogger(runId);
  const [psBus, bus0, plainBus1, watcher] = [0, 1, 2, 3].map(() =>
    hub.connect()
  );
  const grads1 = subjects("dptrain", runId).grads(1);
  const bus1 = args.muteRank1Grads
    ? new FaultyTransport(plainBus1, {
      dropFraction: 0.999999,
      // From step 1 on: step 0 completes, so the checkpoint is not the
      // initial state.
      affects: (subject, data) =>
        subject === grads1 &&
        decodeMessage(data, { run: runId, workers: 2 }).step >= 1,
    })
    : plainBus1;

  const ps = runPsRole({
    config,
    runId,
    transport: psBus,
    log: log.child("ps"),
    outDir,
    backend: "cpu",
    ...(args.resume === undefined ? {} : { resume: args.resume }),
  });
  const workers = [bus0, bus1].map((transport, rank) =>
    runWorkerRole({
      config,
      runId,
      rank,
      transport,
      log: log.child(`worker ${rank}`),
      backend: "cpu",
    })
  );
  const close = async () => {
    for (const bus of [psBus, bus0, bus1, watcher]) await bus.close();
  };
  return { ps, workers, lines, close };
}

Deno.test("stall - a live rank that never delivers stops the run, checkpointed; resuming matches", async () => {
  const dataset = await createTinyDataset();
  // 3 steps. The abort threshold stays above the time two workers take for
  // one step on this slow backend (one thread computes both), so only the
  // dead rank trips it. Stall and checkpoint settings are not part of the
  // fingerprint: the broken run writes no periodic checkpoint, so the one
  // it leaves comes from the stall.
  const train = { maxSteps: 3, stallWarnSeconds: 3, stallAbortSeconds: 20 };
  const config = tinyJobConfig(dataset, {
    train: { ...train, checkpointEverySteps: 1 },
  });
  const brokenConfig = tinyJobConfig(dataset, {
    train: { ...train, checkpointEverySteps: 0 },
  });
  const runId = "stall-run";
  const outDir = `${dataset.root}/../${runId}`;
  const tensorsBefore = tf.memory().numTensors;

  try {
    const uninterrupted = await trainTiny(config, { runId: "whole-run" });
    assert.equal(uninterrupted.summary.steps, 3);

    // Rank 1's gradients never arrive.
    const broken = startRun(brokenConfig, {
      runId,
      outDir,
      muteRank1Grads: true,
    });
    const [stall, aborted0, aborted1] = await Promise.all(
      [broken.ps, ...broken.workers].map(rejection),
    );
    await broken.close();

    assert.ok(stall instanceof StallError, String(stall));
    assert.equal(stall.step, 1);
    assert.deepEqual(stall.missingRanks, [1]);
    assert.match(stall.message, /rank\(s\) 1 after 20 s/);
    assert.ok(aborted0 instanceof RunAbortedError, String(aborted0));
    assert.ok(aborted1 instanceof RunAbortedError, String(aborted1));

    const warnings = broken.lines.filter((l) =>
      /WARN .*ps step=1\] waited \d+ s for rank 1 \(/.test(l)
    );
    assert.ok(warnings.length >= 1, broken.lines.join("\n"));
    assert.ok(!warnings.some((l) => l.includes("rank 0")));
    // The PS knew rank 1 was alive and had answered: the stream was lost.
    assert.ok(
      warnings.some((l) =>
        /no chunk yet; last heartbeat [\d.]+ s ago: answered step 1\)/.test(l)
      ),
      warnings.join("\n"),
    );

    const checkpoint = await readCheckpoint(`${outDir}/checkpoint.msgpack`);
    assert.equal(checkpoint.step, 1);
    assert.equal(checkpoint.epoch, 0);

    // Both workers alive again: the run finishes where it stopped.
    const resumed = startRun(config, { runId, outDir, resume: checkpoint });
    const [summary] = await Promise.all([resumed.ps, ...resumed.workers]);
    await resumed.close();
    const final = await readCheckpoint(`${outDir}/checkpoint.msgpack`);

    assert.equal(summary.steps, 3);
    assert.equal(sha256OfFloats(final.weights), summary.weightsSha256);
    assert.equal(summary.weightsSha256, uninterrupted.summary.weightsSha256);
    assert.deepEqual(final.weights, uninterrupted.weights);

    // One metrics log for the whole run: the broken part's step 0, then
    // the resumed steps, each once.
    const records = (await Deno.readTextFile(`${outDir}/metrics.jsonl`))
      .trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(
      records.map((r) => `${r.type} ${r.step}`),
      ["step 0", "step 1", "step 2", "epoch 2"],
    );
    assert.equal(tf.memory().numTensors, tensorsBefore);
  } finally {
    await dataset.remove();
  }
});
