/**
 * The command line as a user meets it, run as subprocesses: `cluster`
 * trains over a real nats-server with a PS and 2 worker processes and
 * writes metrics.jsonl, summary.json and a model that tfjs loads and that
 * predicts as the PS's weights do; `--help`, unknown flags and unknown
 * config keys answer as documented.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import "@tensorflow/tfjs-backend-cpu";
import { loadImageFolder, makeBatch } from "../src/data/mod.ts";
import { buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";
import { readCheckpoint } from "../src/train/checkpoint.ts";
import { layoutOf, writeFlat } from "../src/train/layout.ts";
import { createTinyDataset, sha256OfFloats } from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

const MAIN = new URL("../cluster/main.ts", import.meta.url).pathname;
const REPO = new URL("..", import.meta.url).pathname;

/** The flags the issue requires on every command. */
const COMMON_FLAGS = [
  "--config",
  "--workers",
  "--epochs",
  "--max-steps",
  "--image-size",
  "--alpha",
  "--weights",
  "--seed",
  "--backend",
  "--out",
];

async function dptrain(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd: REPO,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return {
    code: output.code,
    stdout: text.decode(output.stdout),
    stderr: text.decode(output.stderr),
  };
}

/** Serves `dir` on a free loopback port until `shutdown`. */
function serveFolder(dir: string): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      const name = new URL(request.url).pathname.slice(1);
      if (!/^[\w.-]+$/.test(name)) return new Response(null, { status: 404 });
      try {
        return new Response(await Deno.readFile(join(dir, name)));
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) {
          return new Response(null, { status: 404 });
        }
        throw error;
      }
    },
  );
}

function isFiniteNumber(value: unknown): boolean {
  return typeof value === "number" && Number.isFinite(value);
}

Deno.test("cluster cli - trains over nats; writes metrics, summary, model", async () => {
  const dataset = await createTinyDataset();
  const out = join(dataset.root, "..", "out");
  const configFile = join(dataset.root, "..", "job.json");
  await Deno.writeTextFile(
    configFile,
    JSON.stringify({ data: { cacheDir: dataset.cacheDir } }),
  );
  const tensorsBefore = tf.memory().numTensors;

  try {
    const run = await dptrain([
      "cluster",
      "--config",
      configFile,
      "--workers",
      "2",
      "--batch",
      "2",
      "--image-size",
      "32",
      "--max-steps",
      "2",
      "--alpha",
      "0.35",
      "--backend",
      "cpu",
      "--data",
      dataset.root,
      "--out",
      out,
    ]);
    assert.equal(run.code, 0, run.stderr);

    // metrics.jsonl: one record per step, then the epoch's.
    const records = (await Deno.readTextFile(join(out, "metrics.jsonl")))
      .trim().split("\n").map((line) => JSON.parse(line));
    assert.deepEqual(
      records.map((r) => [r.type, r.epoch, r.step]),
      [["step", 0, 0], ["step", 0, 1], ["epoch", 0, 1]],
    );
    for (const record of records) {
      for (
        const field of [
          "loss",
          "lr",
          "accuracy",
          "imagesPerSecond",
          "wallSeconds",
        ]
      ) {
        assert.ok(isFiniteNumber(record[field]), `${field} of ${record}`);
      }
    }
    // The demo's schedule ramps per step from 1e-5: step 0 at 1e-5, step 1
    // (and the epoch record, which reports it) higher, below the peak.
    assert.equal(records[0].lr, 1e-5);
    assert.ok(records[1].lr > 1e-5 && records[1].lr < 2e-4, records[1].lr);
    assert.equal(records[2].lr, records[1].lr);

    // summary.json, checked against the PS's last checkpoint.
    const summary = JSON.parse(
      await Deno.readTextFile(join(out, "summary.json")),
    );
    const checkpoint = await readCheckpoint(join(out, "checkpoint.msgpack"));
    assert.equal(summary.weightsSha256, sha256OfFloats(checkpoint.weights));
    assert.deepEqual(summary.classes, dataset.classes);
    assert.equal(summary.steps, 2);
    assert.equal(summary.epochs, 0.5);
    assert.equal(summary.workers, 2);
    assert.equal(summary.backend, "cpu");
    assert.equal(summary.seed, 42);
    assert.equal(summary.imageSize, 32);
    assert.equal(summary.inputScaling, "minus_one_to_one");
    assert.ok(isFiniteNumber(summary.valAccuracy));
    assert.ok(isFiniteNumber(summary.macroF1));

    // The saved model, loaded the way a browser would, over HTTP.
    const server = serveFolder(join(out, "model"));
    let saved: tfl.LayersModel;
    try {
      saved = await tfl.loadLayersModel(
        `http://127.0.0.1:${server.addr.port}/model.json`,
      );
    } finally {
      await server.shutdown();
    }
    assert.deepEqual(saved.getUserDefinedMetadata(), {
      inputScaling: "minus_one_to_one",
    });

    // The PS's weights in a freshly built model of the same config.
    const reference = buildMobileNetV2({
      alpha: 0.35,
      imageSize: 32,
      numClasses: 5,
      headUnits: 16,
      seed: 42,
    });
    writeFlat(reference, layoutOf(reference), checkpoint.weights);

    const data = await loadImageFolder(dataset.root, {
      imageSize: 32,
      cacheDir: dataset.cacheDir,
    });
    const { val } = data;
    const batch = makeBatch(val, [...Array(val.count).keys()], {
      scaling: summary.inputScaling,
    });
    const [fromFile, fromPs] = tf.tidy(() => {
      const x = tf.tensor4d(batch.x, [val.count, 32, 32, 3]);
      return [saved, reference].map((m) =>
        (m.predict(x) as tf.Tensor).dataSync() as Float32Array
      );
    });
    assert.deepEqual(fromFile, fromPs);

    // The PS's own evaluation saw the same predictions.
    const confusion = summary.classes.map(() => summary.classes.map(() => 0));
    for (let i = 0; i < val.count; i++) {
      const row = Array.from(fromFile.subarray(i * 5, i * 5 + 5));
      confusion[val.labels[i]][row.indexOf(Math.max(...row))]++;
    }
    assert.deepEqual(summary.confusionMatrix, confusion);

    saved.dispose();
    reference.dispose();
    assert.equal(tf.memory().numTensors, tensorsBefore);
  } finally {
    await dataset.remove();
  }
});

Deno.test("cluster cli - --help of every command exits 0 and lists the flags", async () => {
  const commands = ["demo", "cluster", "ps", "worker"];
  const results = await Promise.all(
    commands.map((command) => dptrain([command, "--help"])),
  );

  results.forEach((result, i) => {
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, new RegExp(`deno task ${commands[i]}`));
    for (const flag of COMMON_FLAGS) {
      assert.ok(result.stdout.includes(flag), `${commands[i]}: ${flag}`);
    }
  });
  assert.match(results[2].stdout, /--nats URL/);
  assert.match(results[3].stdout, /--rank R/);
});

Deno.test("cluster cli - an unknown flag exits 2 naming it", async () => {
  const result = await dptrain(["cluster", "--max-stepz", "2"]);

  assert.equal(result.code, 2);
  assert.match(result.stderr, /--max-stepz/);
});

Deno.test("cluster cli - a config key that is unknown fails naming file and field", async () => {
  const file = await Deno.makeTempFile({ suffix: ".json" });

  try {
    await Deno.writeTextFile(
      file,
      JSON.stringify({ train: { workers: 2, perRankBatchSize: 4 } }),
    );
    const result = await dptrain(["cluster", "--config", file]);

    assert.equal(result.code, 1);
    assert.ok(result.stderr.includes(file), result.stderr);
    assert.match(
      result.stderr,
      /config field "train\.perRankBatchSize": unknown key \(known: .*perRankBatch/,
    );
  } finally {
    await Deno.remove(file);
  }
});
