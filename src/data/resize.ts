/**
 * Resizing of 8-bit RGB images to a square S x S, with a triangle (bilinear)
 * filter that widens when shrinking, so downscaling averages every source
 * pixel instead of sampling a few (antialiasing).
 *
 * This is the separable scheme of PIL's `Image.resize(BILINEAR)` and of
 * `tf.image.resize(..., antialias=True)`: pixel centres at `i + 0.5`, filter
 * radius `max(1, scale)` source pixels, taps outside the image dropped and the
 * rest renormalised. When enlarging, it is plain bilinear interpolation with
 * edge clamping. A 1x1 image becomes a uniform S x S image.
 *
 * Fit: `squash` (the default, as Keras `image_dataset_from_directory` does
 * with `crop_to_aspect_ratio=False`) stretches the whole image to the square;
 * `center_crop` first cuts the largest centred square.
 *
 * @module
 */

import type { RgbImage } from "./decode_image.ts";

/**
 * Identifies this resampler's output. Part of the image cache key: change it
 * whenever resized pixels could change.
 */
export const RESIZE_VERSION = "triangle-antialias/1";

/** How a non-square image becomes square. */
export type ResizeFit = "squash" | "center_crop";

/** Options for {@linkcode resizeRgb}. */
export interface ResizeOptions {
  /** Output side length in pixels. */
  size: number;
  /** Squash the whole image, or crop its centre square. @default "squash" */
  fit?: ResizeFit;
}

/** For each output pixel: first source pixel, tap count and weights. */
interface AxisTaps {
  first: Int32Array;
  count: Int32Array;
  maxTaps: number;
  weights: Float32Array;
}

function axisTaps(options: {
  sourceStart: number;
  sourceLength: number;
  sourceLimit: number;
  outLength: number;
}): AxisTaps {
  const { sourceStart, sourceLength, sourceLimit, outLength } = options;
  const scale = sourceLength / outLength;
  const radius = Math.max(1, scale);
  const maxTaps = Math.ceil(radius) * 2 + 1;
  const first = new Int32Array(outLength);
  const count = new Int32Array(outLength);
  const weights = new Float32Array(outLength * maxTaps);

  for (let o = 0; o < outLength; o++) {
    const centre = sourceStart + (o + 0.5) * scale;
    const lo = Math.max(0, Math.floor(centre - radius));
    const hi = Math.min(sourceLimit - 1, Math.ceil(centre + radius));

    let taps = 0;
    let total = 0;
    let start = -1;
    for (let i = lo; i <= hi && taps < maxTaps; i++) {
      const w = 1 - Math.abs(i + 0.5 - centre) / radius;
      if (w <= 0) {
        if (start < 0) continue;
        break;
      }
      if (start < 0) start = i;
      weights[o * maxTaps + taps] = w;
      total += w;
      taps++;
    }

    // An output pixel always has at least one tap: its centre lies inside
    // the source window, so the nearest source pixel has weight > 0.
    for (let t = 0; t < taps; t++) weights[o * maxTaps + t]! /= total;
    first[o] = start;
    count[o] = taps;
  }
  return { first, count, maxTaps, weights };
}

function checkImage(image: RgbImage): void {
  const { width, height, data } = image;
  if (
    !Number.isInteger(width) || !Number.isInteger(height) || width < 1 ||
    height < 1
  ) {
    throw new RangeError(
      `Cannot resize image: width and height must be integers >= 1, ` +
        `received ${width}x${height}`,
    );
  }
  if (data.length !== width * height * 3) {
    throw new RangeError(
      `Cannot resize image: data must hold width * height * 3 = ` +
        `${width * height * 3} bytes, received ${data.length}`,
    );
  }
}

/**
 * Resizes an RGB image to `size` x `size` pixels.
 *
 * @param image The source image (RGB, 3 bytes per pixel).
 * @param options Output size and fit.
 * @returns `size * size * 3` bytes, RGB, row-major.
 * @throws {RangeError} When the image or size is invalid.
 *
 * @example Shrink a 4x2 image to 2x2
 * ```ts
 * import assert from "node:assert/strict";
 * import { resizeRgb } from "./resize.ts";
 *
 * const image = { width: 4, height: 2, data: new Uint8Array(4 * 2 * 3) };
 * const out = resizeRgb(image, { size: 2 });
 * assert.ok(out.length === 2 * 2 * 3);
 * ```
 */
export function resizeRgb(
  image: RgbImage,
  options: ResizeOptions,
): Uint8Array<ArrayBuffer> {
  const { size, fit = "squash" } = options;
  checkImage(image);
  if (!Number.isInteger(size) || size < 1) {
    throw new RangeError(
      `Cannot resize image: size must be an integer >= 1, received ${size}`,
    );
  }

  const { width, height, data } = image;
  const side = Math.min(width, height);
  const cropX = fit === "center_crop" ? Math.floor((width - side) / 2) : 0;
  const cropY = fit === "center_crop" ? Math.floor((height - side) / 2) : 0;
  const windowW = fit === "center_crop" ? side : width;
  const windowH = fit === "center_crop" ? side : height;
  const xTaps = axisTaps({
    sourceStart: cropX,
    sourceLength: windowW,
    sourceLimit: width,
    outLength: size,
  });
  const yTaps = axisTaps({
    sourceStart: cropY,
    sourceLength: windowH,
    sourceLimit: height,
    outLength: size,
  });

  // Horizontal pass on the source rows the vertical pass will read.
  const rowLo = yTaps.first[0]!;
  const rowHi = yTaps.first[size - 1]! + yTaps.count[size - 1]!;
  const rowStride = size * 3;
  const horizontal = new Float32Array((rowHi - rowLo) * rowStride);
  for (let y = rowLo; y < rowHi; y++) {
    const src = y * width * 3;
    const dst = (y - rowLo) * rowStride;
    for (let o = 0; o < size; o++) {
      const x0 = xTaps.first[o]!;
      const taps = xTaps.count[o]!;
      const wBase = o * xTaps.maxTaps;
      let r = 0;
      let g = 0;
      let b = 0;
      for (let t = 0; t < taps; t++) {
        const w = xTaps.weights[wBase + t]!;
        const p = src + (x0 + t) * 3;
        r += w * data[p]!;
        g += w * data[p + 1]!;
        b += w * data[p + 2]!;
      }
      horizontal[dst + o * 3] = r;
      horizontal[dst + o * 3 + 1] = g;
      horizontal[dst + o * 3 + 2] = b;
    }
  }

  // Uint8ClampedArray rounds (half to even) and clamps on assignment.
  const out = new Uint8ClampedArray(size * rowStride);
  const accumulator = new Float64Array(rowStride);
  for (let o = 0; o < size; o++) {
    const y0 = yTaps.first[o]! - rowLo;
    const taps = yTaps.count[o]!;
    const wBase = o * yTaps.maxTaps;
    accumulator.fill(0);
    for (let t = 0; t < taps; t++) {
      const w = yTaps.weights[wBase + t]!;
      const row = (y0 + t) * rowStride;
      for (let c = 0; c < rowStride; c++) {
        accumulator[c]! += w * horizontal[row + c]!;
      }
    }
    out.set(accumulator, o * rowStride);
  }
  return new Uint8Array(out.buffer);
}
