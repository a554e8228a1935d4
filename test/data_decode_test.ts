import assert from "node:assert/strict";
import {
  decodeImage,
  ImageDecodeError,
  sniffImageFormat,
} from "../src/data/decode_image.ts";
import { checkJpegStructure } from "../src/data/_jpeg_structure.ts";

const FIXTURES = new URL("./fixtures/images/", import.meta.url);
const FLOWER = new URL(
  "../assets/data/flowers5/train/daisy/10172567486_2748826a8b.jpg",
  import.meta.url,
);

function fixture(name: string): Uint8Array {
  return Deno.readFileSync(new URL(name, FIXTURES));
}

/** Means of a 4x4 grid of 84x56 boxes of a 336x224 image, per channel. */
function gridMeans(data: Uint8Array): number[] {
  const means: number[] = [];
  for (let gy = 0; gy < 4; gy++) {
    for (let gx = 0; gx < 4; gx++) {
      const sums = [0, 0, 0];
      for (let y = gy * 56; y < (gy + 1) * 56; y++) {
        for (let x = gx * 84; x < (gx + 1) * 84; x++) {
          for (let c = 0; c < 3; c++) sums[c]! += data[(y * 336 + x) * 3 + c]!;
        }
      }
      means.push(...sums.map((s) => s / (56 * 84)));
    }
  }
  return means;
}

function assertClose(actual: number[], expected: number[], tol: number) {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, i) => {
    assert.ok(
      Math.abs(a - expected[i]!) <= tol,
      `grid value ${i}: ${a.toFixed(2)} vs ${expected[i]} (tolerance ${tol})`,
    );
  });
}

function hasMarker(bytes: Uint8Array, marker: number): boolean {
  for (let i = 0; i + 1 < bytes.length; i++) {
    if (bytes[i] === 0xff && bytes[i + 1] === marker) return true;
  }
  return false;
}

function assertDecodeError(bytes: Uint8Array, file: string, reason: RegExp) {
  assert.throws(
    () => decodeImage(bytes, { file }),
    (error: unknown) => {
      assert.ok(error instanceof ImageDecodeError);
      assert.equal(error.name, "ImageDecodeError");
      assert.equal(error.file, file);
      assert.match(error.reason, reason);
      assert.ok(error.message.includes(`'${file}'`), error.message);
      return true;
    },
  );
}

// Expected grids: ImageMagick 6.9.11 `convert F -alpha off -depth 8 rgb:-`,
// averaged over 4x4 boxes with numpy (computed outside this code).
const GRAYSCALE_GRID = [
  59.96,
  62.38,
  60.83,
  60.43,
  72.76,
  33.49,
  14.02,
  56.15,
  94.42,
  45.23,
  51.63,
  59.20,
  83.54,
  53.68,
  51.28,
  56.66,
].flatMap((v) => [v, v, v]);
const PROGRESSIVE_GRID = [
  68.05,
  53.51,
  99.89,
  66.67,
  56.27,
  110.28,
  67.29,
  54.79,
  101.76,
  65.50,
  54.34,
  105.51,
  87.78,
  65.86,
  96.92,
  40.32,
  27.91,
  68.37,
  18.44,
  10.30,
  37.01,
  63.37,
  50.51,
  90.46,
  101.61,
  91.15,
  105.64,
  55.33,
  39.94,
  67.80,
  56.88,
  47.75,
  73.96,
  69.95,
  52.91,
  90.24,
  90.01,
  79.92,
  100.18,
  61.13,
  49.51,
  72.69,
  56.64,
  47.02,
  77.18,
  64.81,
  52.05,
  78.66,
];
const PNG_RGB_GRID = [
  68.07,
  53.53,
  99.91,
  66.66,
  56.26,
  110.27,
  67.30,
  54.80,
  101.77,
  65.50,
  54.34,
  105.51,
  87.78,
  65.87,
  96.93,
  40.31,
  27.89,
  68.36,
  18.44,
  10.31,
  37.02,
  63.36,
  50.50,
  90.44,
  101.61,
  91.15,
  105.65,
  55.31,
  39.92,
  67.79,
  56.88,
  47.76,
  73.97,
  69.95,
  52.91,
  90.24,
  90.01,
  79.91,
  100.17,
  61.14,
  49.52,
  72.70,
  56.66,
  47.03,
  77.19,
  64.79,
  52.04,
  78.65,
];

Deno.test("decodeImage - grayscale JPEG is replicated to 3 equal channels", () => {
  const bytes = fixture("grayscale.jpg");
  const image = decodeImage(bytes, { file: "grayscale.jpg" });
  assert.equal(image.format, "jpeg");
  assert.deepEqual([image.width, image.height], [336, 224]);
  assert.equal(image.data.length, 336 * 224 * 3);
  for (let p = 0; p < image.data.length; p += 3) {
    assert.equal(image.data[p], image.data[p + 1]);
    assert.equal(image.data[p], image.data[p + 2]);
  }
  assertClose(gridMeans(image.data), GRAYSCALE_GRID, 1);
});

Deno.test("decodeImage - progressive JPEG decodes like a baseline one", () => {
  const bytes = fixture("progressive.jpg");
  assert.ok(hasMarker(bytes, 0xc2), "fixture must hold an SOF2 marker");
  const image = decodeImage(bytes);
  assert.deepEqual([image.width, image.height], [336, 224]);
  assertClose(gridMeans(image.data), PROGRESSIVE_GRID, 1);
});

Deno.test("decodeImage - a PNG named .jpg is decoded by content", () => {
  const bytes = fixture("png-named-as.jpg");
  assert.equal(sniffImageFormat(bytes), "png");
  const image = decodeImage(bytes, { file: "png-named-as.jpg" });
  assert.equal(image.format, "png");
  assertClose(gridMeans(image.data), PNG_RGB_GRID, 0.06);
});

Deno.test("decodeImage - RGBA PNG keeps its colour channels, alpha dropped", () => {
  const bytes = fixture("rgba.png");
  // Colour type 6 (RGBA) in IHDR, byte 25.
  assert.equal(bytes[25], 6, "fixture must be an RGBA PNG");
  const image = decodeImage(bytes);
  assert.equal(image.data.length, 336 * 224 * 3);
  // Compositing the half-transparent pixels over black would halve these.
  assertClose(gridMeans(image.data), PNG_RGB_GRID, 0.06);
});

Deno.test("decodeImage - a 1x1 JPEG decodes to one pixel", () => {
  const image = decodeImage(fixture("tiny-1x1.jpg"));
  assert.deepEqual([image.width, image.height], [1, 1]);
  // ImageMagick decodes this pixel as (64, 50, 85).
  assertClose([...image.data], [64, 50, 85], 1);
});

Deno.test("decodeImage - truncated, empty and text files name the file", () => {
  assertDecodeError(fixture("truncated.jpg"), "x/truncated.jpg", /truncated/);
  assertDecodeError(fixture("empty.jpg"), "x/empty.jpg", /empty \(0 bytes\)/);
  assertDecodeError(
    fixture("text-named-as.jpg"),
    "x/text-named-as.jpg",
    /not an image: the file holds text \("not an i/,
  );
});

Deno.test("decodeImage - a JPEG cut at any point is refused, never greyed", () => {
  const whole = Deno.readFileSync(FLOWER);
  for (let k = 1; k < 40; k++) {
    const cut = Math.floor((whole.length * k) / 40);
    assertDecodeError(
      whole.subarray(0, cut),
      `cut-${cut}.jpg`,
      /truncated JPEG/,
    );
  }
  // Removing only the final EOI marker is still a truncation.
  assertDecodeError(
    whole.subarray(0, whole.length - 2),
    "no-eoi.jpg",
    /0xFFD9/,
  );
});

Deno.test("decodeImage - a complete thumbnail EOI does not hide a truncation", () => {
  const whole = Deno.readFileSync(FLOWER);
  // An APP1 segment whose payload ends in FF D9, as EXIF thumbnails do.
  const payload = new Uint8Array([
    0x45,
    0x78,
    0x69,
    0x66,
    0,
    0,
    0xff,
    0xd8,
    1,
    2,
    3,
    0xff,
    0xd9,
  ]);
  const app1 = new Uint8Array([0xff, 0xe1, 0, payload.length + 2, ...payload]);
  const withThumb = new Uint8Array([
    ...whole.subarray(0, 2),
    ...app1,
    ...whole.subarray(2),
  ]);
  assert.ok(decodeImage(withThumb).width > 0);

  const cut = withThumb.subarray(0, Math.floor(withThumb.length * 0.6));
  assert.ok(hasMarker(cut, 0xd9), "a naive search would find an EOI");
  assertDecodeError(cut, "thumb.jpg", /truncated/);
});

Deno.test("decodeImage - bytes after the EOI marker are accepted", () => {
  const whole = Deno.readFileSync(FLOWER);
  const padded = new Uint8Array([...whole, 0, 0, 0x41, 0x42]);
  const structure = checkJpegStructure(padded);
  assert.deepEqual(structure, { ok: true, endOffset: whole.length });
  assert.deepEqual(decodeImage(padded).data, decodeImage(whole).data);
});

Deno.test("decodeImage - oversized images are refused before decoding", () => {
  const jpeg = Deno.readFileSync(FLOWER).slice();
  // Patch the SOF0 frame header to 60000 x 60000 (3,600 MP).
  let sof = -1;
  for (let i = 0; i + 1 < jpeg.length; i++) {
    if (jpeg[i] === 0xff && jpeg[i + 1] === 0xc0) {
      sof = i;
      break;
    }
  }
  assert.ok(sof > 0);
  jpeg.set([0xea, 0x60, 0xea, 0x60], sof + 5);
  assertDecodeError(jpeg, "huge.jpg", /maxResolutionInMP/);

  const png = fixture("rgba.png").slice();
  new DataView(png.buffer).setUint32(16, 100_000);
  new DataView(png.buffer).setUint32(20, 100_000);
  assertDecodeError(png, "huge.png", /too large: 100000x100000/);
});

Deno.test("decodeImage - other formats and broken PNGs get a reason", () => {
  const gif = new TextEncoder().encode("GIF89a\u0001\u0000\u0001\u0000");
  assertDecodeError(gif, "a.gif", /GIF images are not supported/);
  const binary = new Uint8Array([0, 1, 2, 3, 250, 251, 252, 253]);
  assertDecodeError(binary, "a.bin", /unknown image format \(first bytes: 00/);
  const png = fixture("rgba.png");
  assertDecodeError(png.subarray(0, png.length / 2), "half.png", /corrupt PNG/);
});
