import assert from "node:assert/strict";
import {
  encodeDptrainWeights,
  parseDptrainManifest,
  readDptrainWeights,
  writeDptrainWeights,
} from "../src/model/weights/dptrain_format.ts";
import { WeightsFormatError } from "../src/model/weights/errors.ts";
import type { WeightMap } from "../src/model/weights/weight_map.ts";
import { tempDir } from "./weights_helpers.ts";

const INFO = {
  alpha: 0.35,
  trainedImageSize: 224,
  inputScaling: "minus_one_to_one" as const,
  description: "test weights",
  origin: "built in the test",
  license: "Apache-2.0",
};

function smallWeights(): WeightMap {
  return new Map([
    ["b/kernel", { shape: [2, 2], values: new Float32Array([1, 2, 3, 4]) }],
    ["a/bias", { shape: [3], values: new Float32Array([-1.5, 0, 2.25]) }],
  ]);
}

/** Writes a manifest object and bin bytes as they are, unchecked. */
async function writeRaw(
  dir: string,
  manifest: Record<string, unknown>,
  bin: Uint8Array,
): Promise<string> {
  await Deno.writeTextFile(`${dir}/weights.json`, JSON.stringify(manifest));
  await Deno.writeFile(`${dir}/weights.bin`, bin);
  return `${dir}/weights.json`;
}

Deno.test("dptrain format - round trip keeps names, shapes and values", async () => {
  await using dir = await tempDir();
  const manifest = await writeDptrainWeights(dir.path, {
    weights: smallWeights(),
    info: INFO,
  });

  // Sorted by name: a/bias (12 bytes) then b/kernel (16 bytes).
  assert.deepEqual(
    manifest.tensors.map((t) => [t.name, t.offset, t.byteLength]),
    [["a/bias", 0, 12], ["b/kernel", 12, 16]],
  );
  assert.equal(manifest.weightsBytes, 28);

  const { weights } = await readDptrainWeights(`${dir.path}/weights.json`);
  assert.deepEqual([...weights.keys()], ["a/bias", "b/kernel"]);
  assert.deepEqual(weights.get("b/kernel")!.shape, [2, 2]);
  assert.deepEqual([...weights.get("a/bias")!.values], [-1.5, 0, 2.25]);
  assert.deepEqual([...weights.get("b/kernel")!.values], [1, 2, 3, 4]);
});

Deno.test("dptrain format - bin bytes are little-endian float32 in name order", async () => {
  const { bin } = await encodeDptrainWeights(smallWeights(), INFO);
  const view = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  const values = Array.from(
    { length: 7 },
    (_, i) => view.getFloat32(4 * i, true),
  );
  assert.deepEqual(values, [-1.5, 0, 2.25, 1, 2, 3, 4]);
});

Deno.test("dptrain format - a changed byte fails the sha256 check naming the bin", async () => {
  await using dir = await tempDir();
  const { manifest, bin } = await encodeDptrainWeights(smallWeights(), INFO);
  bin[5] ^= 0xff;
  const path = await writeRaw(dir.path, { ...manifest }, bin);

  await assert.rejects(readDptrainWeights(path), (error: unknown) => {
    assert.ok(error instanceof WeightsFormatError);
    assert.equal(error.field, "sha256");
    assert.equal(error.file, `${dir.path}/weights.bin`);
    return true;
  });
});

Deno.test("dptrain format - a short bin fails on its size before hashing", async () => {
  await using dir = await tempDir();
  const { manifest, bin } = await encodeDptrainWeights(smallWeights(), INFO);
  const path = await writeRaw(dir.path, { ...manifest }, bin.slice(0, 20));

  await assert.rejects(readDptrainWeights(path), (error: unknown) => {
    assert.ok(error instanceof WeightsFormatError);
    assert.equal(error.field, "weightsBytes");
    assert.match(error.message, /file has 20 bytes, manifest says 28/);
    return true;
  });
});

Deno.test("dptrain format - each malformed manifest field is named", async () => {
  const { manifest } = await encodeDptrainWeights(smallWeights(), INFO);
  const base = JSON.parse(JSON.stringify(manifest));
  const tensor = (i: number, patch: Record<string, unknown>) => {
    const copy = structuredClone(base);
    Object.assign(copy.tensors[i], patch);
    return copy;
  };
  const cases: [string, Record<string, unknown>][] = [
    ["format", { ...base, format: "tfjs" }],
    ["version", { ...base, version: 2 }],
    ["alpha", { ...base, alpha: -1 }],
    ["inputScaling", { ...base, inputScaling: "zero_to_255" }],
    ["weightsFile", { ...base, weightsFile: "../secret.bin" }],
    ["sha256", { ...base, sha256: "abc" }],
    ["tensors[0].dtype", tensor(0, { dtype: "float16" })],
    ["tensors[0].byteLength", tensor(0, { byteLength: 16 })],
    ["tensors[1].offset", tensor(1, { offset: 14 })],
    ["tensors[1].offset", tensor(1, { offset: 8 })],
    ["tensors[1].name", tensor(1, { name: "a/bias" })],
    ["tensors[1].shape", tensor(1, { shape: [2, -2] })],
    ["weightsBytes", { ...base, weightsBytes: 32 }],
  ];

  for (const [field, manifestObject] of cases) {
    assert.throws(
      () => parseDptrainManifest(JSON.stringify(manifestObject), "w.json"),
      (error: unknown) => {
        assert.ok(error instanceof WeightsFormatError, field);
        assert.equal(error.field, field);
        assert.equal(error.file, "w.json");
        assert.ok(error.message.includes(`w.json: ${field}`), error.message);
        return true;
      },
    );
  }
  assert.throws(
    () => parseDptrainManifest("{not json", "w.json"),
    /w\.json: \(json\): not valid JSON/,
  );
});
