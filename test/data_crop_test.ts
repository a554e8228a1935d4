import assert from "node:assert/strict";
import { makeBatch, randomCropBox } from "../src/data/mod.ts";
import type { ImageSet } from "../src/data/mod.ts";

function gradientSet(size: number, count: number): ImageSet {
  const images = new Uint8Array(count * size * size * 3);
  for (let i = 0; i < images.length; i++) images[i] = (i * 7) % 256;
  return {
    images,
    labels: new Int32Array(count),
    imageSize: size,
    count,
  };
}

Deno.test("random crop - box stays inside the image with the asked area", () => {
  for (let index = 0; index < 500; index++) {
    const box = randomCropBox({
      seed: 3,
      epoch: 2,
      index,
      size: 64,
      minArea: 0.5,
    });
    assert.ok(box.x >= 0 && box.y >= 0);
    assert.ok(box.x + box.width <= 64 + 1e-9);
    assert.ok(box.y + box.height <= 64 + 1e-9);
    // Clipping a side to the image can only shrink the area below the draw.
    assert.ok(box.width * box.height <= 64 * 64 + 1e-6);
    assert.ok(box.width * box.height >= 0.5 * 64 * 64 * (3 / 4) - 1e-6);
  }
});

Deno.test("random crop - a pure function of seed, epoch and example", () => {
  const a = randomCropBox({
    seed: 1,
    epoch: 4,
    index: 9,
    size: 32,
    minArea: 0.6,
  });
  const b = randomCropBox({
    seed: 1,
    epoch: 4,
    index: 9,
    size: 32,
    minArea: 0.6,
  });
  const c = randomCropBox({
    seed: 1,
    epoch: 5,
    index: 9,
    size: 32,
    minArea: 0.6,
  });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("random crop - the same example gets the same pixels on any rank", () => {
  const set = gradientSet(16, 6);
  const crop = { seed: 5, epoch: 1, minArea: 0.5 };
  const flip = { seed: 5, epoch: 1 };
  const whole = makeBatch(set, [0, 1, 2, 3, 4, 5], {
    scaling: "zero_to_one",
    crop,
    flip,
  });
  const alone = makeBatch(set, [4], { scaling: "zero_to_one", crop, flip });
  const pixels = 16 * 16 * 3;
  assert.deepEqual(
    Array.from(alone.x),
    Array.from(whole.x.subarray(4 * pixels, 5 * pixels)),
  );
});

Deno.test("random crop - values stay in the scaling's range", () => {
  const set = gradientSet(20, 3);
  const batch = makeBatch(set, [0, 1, 2], {
    scaling: "minus_one_to_one",
    crop: { seed: 9, epoch: 0, minArea: 0.3 },
  });
  for (const v of batch.x) assert.ok(v >= -1 && v <= 1, `value ${v}`);
});

Deno.test("random crop - minArea outside (0, 1] is refused", () => {
  assert.throws(
    () => randomCropBox({ seed: 0, epoch: 0, index: 0, size: 8, minArea: 0 }),
    /minArea must be in \(0, 1\]/,
  );
});
