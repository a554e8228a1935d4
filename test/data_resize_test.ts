import assert from "node:assert/strict";
import { decodeImage } from "../src/data/decode_image.ts";
import { resizeRgb } from "../src/data/resize.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);

function image(
  width: number,
  height: number,
  pixel: (x: number, y: number) => number[],
) {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(pixel(x, y), (y * width + x) * 3);
  }
  return { width, height, data };
}

Deno.test("resizeRgb - same size is an exact copy", () => {
  const src = image(5, 5, (x, y) => [x * 50, y * 50, (x * y) % 256]);
  assert.deepEqual(resizeRgb(src, { size: 5 }), src.data);
});

Deno.test("resizeRgb - a 1x1 image becomes a uniform square", () => {
  const out = resizeRgb(image(1, 1, () => [10, 20, 30]), { size: 4 });
  assert.equal(out.length, 4 * 4 * 3);
  for (let p = 0; p < 16; p++) {
    assert.deepEqual([...out.subarray(p * 3, p * 3 + 3)], [10, 20, 30]);
  }
});

Deno.test("resizeRgb - halving uses a widened triangle filter (worked by hand)", () => {
  // Columns 0, 70, 140, 210. Output column 0 has its centre at source x = 1;
  // radius 2 gives taps x=0,1,2 with weights .75,.75,.25:
  // (0*.75 + 70*.75 + 140*.25) / 1.75 = 50. Column 1 (centre 3): taps
  // x=1,2,3 with .25,.75,.75: (17.5 + 105 + 157.5) / 1.75 = 160.
  const src = image(4, 4, (x) => [x * 70, x * 70, x * 70]);
  const out = resizeRgb(src, { size: 2 });
  assert.deepEqual([...out], [
    50,
    50,
    50,
    160,
    160,
    160,
    50,
    50,
    50,
    160,
    160,
    160,
  ]);
});

Deno.test("resizeRgb - squash keeps the whole width, center_crop the middle", () => {
  // 6x2: red, red, green, green, blue, blue.
  const colours = [[255, 0, 0], [255, 0, 0], [0, 255, 0], [0, 255, 0], [
    0,
    0,
    255,
  ], [0, 0, 255]];
  const src = image(6, 2, (x) => colours[x]!);

  // Squash, output column 0: centre 1.5, radius 3, taps x=0..3 with
  // weights 2/3, 1, 2/3, 1/3 (sum 8/3): red 5/3 / (8/3) * 255 = 159.4,
  // green 1 / (8/3) * 255 = 95.6. Column 1 mirrors it with blue.
  const squashed = resizeRgb(src, { size: 2 });
  assert.deepEqual([...squashed.subarray(0, 6)], [159, 96, 0, 0, 96, 159]);

  const cropped = resizeRgb(src, { size: 2, fit: "center_crop" });
  assert.deepEqual([...cropped], [0, 255, 0, 0, 255, 0, 0, 255, 0, 0, 255, 0]);
});

Deno.test("resizeRgb - downscaling a photo agrees with ImageMagick's triangle filter", () => {
  const photo = decodeImage(
    Deno.readFileSync(new URL("images/progressive.jpg", FIXTURES)),
  );
  for (const size of [160, 32]) {
    const reference = decodeImage(
      Deno.readFileSync(
        new URL(`resize/progressive_${size}_triangle.png`, FIXTURES),
      ),
    );
    const out = resizeRgb(photo, { size });
    let total = 0;
    let worst = 0;
    for (let i = 0; i < out.length; i++) {
      const d = Math.abs(out[i]! - reference.data[i]!);
      total += d;
      worst = Math.max(worst, d);
    }
    const mean = total / out.length;
    assert.ok(mean < 0.6, `size ${size}: mean difference ${mean}`);
    assert.ok(worst <= 4, `size ${size}: worst difference ${worst}`);
  }
});

Deno.test("resizeRgb - rejects inconsistent images and sizes", () => {
  const bad = { width: 2, height: 2, data: new Uint8Array(5) };
  assert.throws(() => resizeRgb(bad, { size: 2 }), {
    name: "RangeError",
    message: /data must hold width \* height \* 3 = 12 bytes, received 5/,
  });
  const ok = image(2, 2, () => [0, 0, 0]);
  assert.throws(() => resizeRgb(ok, { size: 0 }), {
    name: "RangeError",
    message: /size must be an integer >= 1, received 0/,
  });
});
