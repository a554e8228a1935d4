/**
 * The transport carries bytes, not results (DESIGN.md, "One synchronous
 * step"): the parameter server and 2 workers talking over a real
 * nats-server, with a max_payload small enough that every stream travels
 * in dozens of chunks, end with the same weights, bit for bit, as the same
 * job over the in-process bus with 1 MiB messages.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { readCheckpoint } from "../src/train/checkpoint.ts";
import { runPsRole, runWorkerRole } from "../src/train/run_job.ts";
import { connectNats, subjects, type Transport } from "../src/transport/mod.ts";
import { decodeMessage } from "../src/wire/mod.ts";
import { startNatsServer } from "./_nats_server.ts";
import {
  captureLogger,
  createTinyDataset,
  sha256OfFloats,
  tinyJobConfig,
  trainTiny,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

const NATS_MAX_PAYLOAD_BYTES = 64 * 1024;

Deno.test("transport - nats-server and in-process runs end bit-identical", async () => {
  const dataset = await createTinyDataset();
  const config = tinyJobConfig(dataset);
  const runId = "nats-run";
  const outDir = `${dataset.root}/../${runId}`;
  const { log } = captureLogger(runId);
  const tensorsBefore = tf.memory().numTensors;
  const server = await startNatsServer({
    maxPayloadBytes: NATS_MAX_PAYLOAD_BYTES,
  });
  const transports: Transport[] = [];
  const connect = async (name: string) => {
    const transport = await connectNats({ url: server.url, name });
    transports.push(transport);
    return transport;
  };

  // Distinct chunk indices per stream and step, and the largest message.
  const chunks = new Map<string, Set<number>>();
  let largestMessageBytes = 0;

  try {
    const watcher = await connect("watcher");
    const runSubjects = subjects("dptrain", runId);
    for (const subject of [runSubjects.weights, runSubjects.gradsAll]) {
      watcher.subscribe(subject, (data) => {
        largestMessageBytes = Math.max(largestMessageBytes, data.length);
        const chunk = decodeMessage(data, {
          run: runId,
          workers: 2,
          kinds: ["tensor_chunk"],
        });
        const key = `${chunk.stream} ${chunk.step} ${chunk.rank}`;
        const seen = chunks.get(key) ?? new Set<number>();
        chunks.set(key, seen.add(chunk.index));
      });
    }

    const [ps, worker0, worker1] = await Promise.all(
      ["ps", "worker-0", "worker-1"].map(connect),
    );
    assert.equal(ps.maxPayloadBytes, NATS_MAX_PAYLOAD_BYTES);
    const workers = [worker0, worker1].map((transport, rank) =>
      runWorkerRole({
        config,
        runId,
        rank,
        transport,
        log: log.child(`worker ${rank}`),
        backend: "cpu",
      })
    );
    const [summary] = await Promise.all([
      runPsRole({
        config,
        runId,
        transport: ps,
        log: log.child("ps"),
        outDir,
        backend: "cpu",
      }),
      ...workers,
    ]);
    const overNats = await readCheckpoint(`${outDir}/checkpoint.msgpack`);

    const inProcess = await trainTiny(config, { runId: "hub-run" });

    assert.equal(summary.steps, 2);
    assert.equal(sha256OfFloats(overNats.weights), summary.weightsSha256);
    assert.equal(summary.weightsSha256, inProcess.summary.weightsSha256);
    assert.deepEqual(overNats.weights, inProcess.weights);

    // Every stream really was chunked below the server's max_payload.
    const floats = overNats.weights.length;
    const minChunks = Math.ceil((floats * 4) / NATS_MAX_PAYLOAD_BYTES);
    assert.ok(largestMessageBytes <= NATS_MAX_PAYLOAD_BYTES);
    assert.deepEqual([...chunks.keys()].sort(), [
      "grads 0 0",
      "grads 0 1",
      "grads 1 0",
      "grads 1 1",
      "weights 0 -1",
      "weights 1 -1",
    ]);
    for (const [key, seen] of chunks) {
      assert.ok(seen.size >= minChunks, `${key}: ${seen.size} chunks`);
    }
    assert.equal(tf.memory().numTensors, tensorsBefore);
  } finally {
    for (const transport of transports) await transport.close();
    await server.stop();
    await dataset.remove();
  }
});
