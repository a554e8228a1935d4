import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";
import {
  concatSortedBytes,
  imagenetFolderName,
  loadPretrainedWeights,
  readModelWeights,
  sha256Hex,
  WeightsFetchError,
} from "../src/model/weights/mod.ts";
import { tempDir } from "./weights_helpers.ts";

await tf.setBackend("cpu");

/** SOURCES.md's hash of the Keras alpha 0.35 ImageNet backbone. */
const KERAS_035_SHA256 =
  "ee5b607dd0e96d06e0583fad110737beab97a838a7e42e85b3af7ed1a05ff0d6";

const FOLDER_224 = imagenetFolderName({ alpha: 0.35, trainedImageSize: 224 });

/**
 * The bucket's folder for alpha 0.35 at 224 px, rebuilt as tfjs would
 * save it: a backbone holding the bundled ImageNet weights, saved to a
 * model.json with its weights split over two shards.
 */
async function buildFixture(): Promise<Map<string, Uint8Array>> {
  const model = buildMobileNetV2({
    alpha: 0.35,
    imageSize: 96,
    backboneOnly: true,
  });
  await loadPretrainedWeights(model, {
    source: "bundled",
    alpha: 0.35,
    imageSize: 96,
  });
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler((a) => {
    artifacts = a;
    return Promise.resolve({
      modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" },
    });
  }));
  model.dispose();

  const data = artifacts!.weightData!;
  const bytes = new Uint8Array(
    Array.isArray(data) ? await new Blob(data).arrayBuffer() : data,
  );
  const half = 4 * Math.floor(bytes.byteLength / 8);
  const modelJson = {
    format: "layers-model",
    modelTopology: artifacts!.modelTopology,
    weightsManifest: [{
      paths: ["group1-shard1of2", "group1-shard2of2"],
      weights: artifacts!.weightSpecs,
    }],
  };
  return new Map([
    [
      `${FOLDER_224}/model.json`,
      new TextEncoder().encode(JSON.stringify(modelJson)),
    ],
    [`${FOLDER_224}/group1-shard1of2`, bytes.slice(0, half)],
    [`${FOLDER_224}/group1-shard2of2`, bytes.slice(half)],
  ]);
}

const FIXTURE = await buildFixture();

/**
 * A loopback HTTP server serving the fixture under /bucket/, logging each
 * request path; `respond` may override a path's response.
 */
function serveBucket(
  respond: (path: string) => Response | undefined = () => undefined,
) {
  const requests: string[] = [];
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => {
      const path = new URL(request.url).pathname.replace(/^\/bucket\//, "");
      requests.push(path);
      const override = respond(path);
      if (override !== undefined) return override;
      const body = FIXTURE.get(path);
      return body === undefined
        ? new Response("not found", { status: 404 })
        : new Response(body as Uint8Array<ArrayBuffer>);
    },
  );
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}/bucket`,
    requests,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

async function loadImagenet(
  options: { baseUrl: string; cacheDir: string; imageSize?: number },
) {
  const imageSize = options.imageSize ?? 224;
  const model = buildMobileNetV2({ alpha: 0.35, imageSize });
  const logged: string[] = [];
  try {
    const result = await loadPretrainedWeights(model, {
      source: "imagenet",
      alpha: 0.35,
      imageSize,
      imagenetBaseUrl: options.baseUrl,
      cacheDir: options.cacheDir,
      log: (m) => logged.push(m),
    });
    const sha256 = await sha256Hex(
      concatSortedBytes(readModelWeights(model, { backboneOnly: true })),
    );
    return { result, sha256, logged };
  } finally {
    model.dispose();
  }
}

Deno.test("imagenet weights - a second load comes from the cache, no request", async () => {
  const tensorsBefore = tf.memory().numTensors;
  await using bucket = serveBucket();
  await using cache = await tempDir();

  const first = await loadImagenet({
    baseUrl: bucket.baseUrl,
    cacheDir: cache.path,
  });
  assert.equal(first.result.loaded, 260);
  assert.equal(first.result.inputScaling, "minus_one_to_one");
  assert.equal(first.sha256, KERAS_035_SHA256);
  assert.deepEqual(bucket.requests, [
    `${FOLDER_224}/model.json`,
    `${FOLDER_224}/group1-shard1of2`,
    `${FOLDER_224}/group1-shard2of2`,
  ]);

  const second = await loadImagenet({
    baseUrl: bucket.baseUrl,
    cacheDir: cache.path,
  });
  assert.equal(bucket.requests.length, 3);
  assert.equal(second.sha256, KERAS_035_SHA256);
  assert.match(second.result.description, /cached at /);
  assert.match(second.logged.join("\n"), /cache hit/);
  assert.equal(tf.memory().numTensors, tensorsBefore);
});

Deno.test("imagenet weights - a size the bucket lacks falls back to 224 px", async () => {
  await using bucket = serveBucket();
  await using cache = await tempDir();
  const folder160 = imagenetFolderName({ alpha: 0.35, trainedImageSize: 160 });

  const { result, logged } = await loadImagenet({
    baseUrl: bucket.baseUrl,
    cacheDir: cache.path,
    imageSize: 160,
  });
  assert.equal(result.loaded, 260);
  assert.equal(bucket.requests[0], `${folder160}/model.json`);
  assert.equal(bucket.requests[1], `${FOLDER_224}/model.json`);
  assert.match(logged.join("\n"), /not found, trying 224 px/);

  await loadImagenet({
    baseUrl: bucket.baseUrl,
    cacheDir: cache.path,
    imageSize: 160,
  });
  assert.equal(bucket.requests.length, 4);
});

Deno.test("imagenet weights - an HTTP error fails naming the URL and caches nothing", async () => {
  await using bucket = serveBucket((path) =>
    path.endsWith("shard2of2")
      ? new Response("boom", { status: 503 })
      : undefined
  );
  await using cache = await tempDir();

  await assert.rejects(
    loadImagenet({ baseUrl: bucket.baseUrl, cacheDir: cache.path }),
    (error: unknown) => {
      assert.ok(error instanceof WeightsFetchError);
      assert.equal(error.status, 503);
      assert.equal(
        error.url,
        `${bucket.baseUrl}/${FOLDER_224}/group1-shard2of2`,
      );
      return true;
    },
  );
  assert.deepEqual([...Deno.readDirSync(cache.path)], []);
});

Deno.test("imagenet weights - a missing folder at the last size is a 404 error", async () => {
  await using bucket = serveBucket((path) =>
    path.startsWith(FOLDER_224)
      ? new Response("gone", { status: 404 })
      : undefined
  );
  await using cache = await tempDir();
  await assert.rejects(
    loadImagenet({ baseUrl: bucket.baseUrl, cacheDir: cache.path }),
    (error: unknown) =>
      error instanceof WeightsFetchError && error.status === 404,
  );
});

Deno.test("imagenet weights - a truncated shard is refused and not cached", async () => {
  await using bucket = serveBucket((path) => {
    if (!path.endsWith("shard2of2")) return undefined;
    const full = FIXTURE.get(path)!;
    return new Response(full.slice(0, full.byteLength - 1000));
  });
  await using cache = await tempDir();

  await assert.rejects(
    loadImagenet({ baseUrl: bucket.baseUrl, cacheDir: cache.path }),
    (error: unknown) => {
      assert.ok(error instanceof WeightsFetchError);
      assert.match(error.message, /truncated/);
      assert.match(error.url, /group1-shard1of2, .*group1-shard2of2$/);
      return true;
    },
  );
  assert.deepEqual([...Deno.readDirSync(cache.path)], []);
});

Deno.test("imagenet weights - a damaged cache is fetched again", async () => {
  await using bucket = serveBucket();
  await using cache = await tempDir();
  await loadImagenet({ baseUrl: bucket.baseUrl, cacheDir: cache.path });
  const shard = `${cache.path}/imagenet/${FOLDER_224}/group1-shard2of2`;
  await Deno.truncate(shard, 100);

  const again = await loadImagenet({
    baseUrl: bucket.baseUrl,
    cacheDir: cache.path,
  });
  assert.equal(bucket.requests.length, 6);
  assert.equal(again.sha256, KERAS_035_SHA256);
  assert.match(again.logged.join("\n"), /ignoring damaged cache/);
  assert.equal(
    (await Deno.stat(shard)).size,
    FIXTURE.get(`${FOLDER_224}/group1-shard2of2`)!.byteLength,
  );
});

Deno.test("imagenet weights - the default URL follows the Teachable Machine pattern", () => {
  assert.equal(
    imagenetFolderName({ alpha: 1, trainedImageSize: 224 }),
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.00_224_no_top",
  );
  assert.equal(
    imagenetFolderName({ alpha: 0.5, trainedImageSize: 160 }),
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.50_160_no_top",
  );
});
