/**
 * Assembly of a training or evaluation batch from decoded images: gather,
 * optional horizontal flip, scale to floats.
 *
 * Flips are a pure function of (seed, epoch, dataset index): the same example
 * gets the same flip whichever rank or step takes it, and a restarted worker
 * flips as the first one did.
 *
 * @module
 */

import type { InputScaling } from "../model/weights/input_scaling.ts";
import { CounterRng } from "./rng.ts";

/** The RNG purpose tag of random horizontal flips. */
export const FLIP_TAG = "flip";

// The weights' declaration, re-exported, so that the public API has one
// `InputScaling` type.
export type { InputScaling };

/** Decoded, resized images of one split (see `loadImageFolder`). */
export interface ImageSet {
  /** `count * imageSize * imageSize * 3` bytes, NHWC RGB. */
  images: Uint8Array;
  /** Class index per image. */
  labels: Int32Array;
  /** Side length of every image in pixels. */
  imageSize: number;
  /** Number of images. */
  count: number;
}

/** Random flips drawn from the counter RNG for one epoch. */
export interface RandomFlip {
  /** Run seed. */
  seed: number;
  /** Epoch number. */
  epoch: number;
}

/**
 * Which examples to mirror left-right: a predicate on the dataset index, or
 * a seed and epoch for random flips with probability 1/2.
 */
export type FlipPolicy = ((index: number) => boolean) | RandomFlip;

/** Tag of the crop draws, so they never reuse the flip draws. */
export const CROP_TAG = "crop";

/**
 * Random crops for training ("random resized crop"): each example shows a
 * box covering `minArea` to all of the image, aspect ratio 3:4 to 4:3,
 * stretched back to the full size with bilinear sampling. The box is a pure
 * function of (seed, epoch, dataset index), like the flips.
 */
export interface RandomCrop {
  /** Run seed. */
  seed: number;
  /** Epoch number. */
  epoch: number;
  /** Smallest share of the image's area a crop keeps, in (0, 1]. */
  minArea: number;
}

/** A crop box in source pixels. */
export interface CropBox {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Options for {@linkcode makeBatch}. */
export interface MakeBatchOptions {
  /** Pixel scaling, which the model's weights dictate. */
  scaling: InputScaling;
  /** Horizontal flips; none when absent (evaluation). */
  flip?: FlipPolicy;
  /** Random crops; none when absent (evaluation). */
  crop?: RandomCrop;
}

/** One batch, ready to become an NHWC tensor. */
export interface Batch {
  /** `count * imageSize * imageSize * 3` floats, NHWC RGB. */
  x: Float32Array;
  /** Class index per example. */
  labels: Int32Array;
  /** Number of examples (may be 0 on the last step of an epoch). */
  count: number;
  /** Dataset index per example, in batch order. */
  indices: Int32Array;
  /** Which examples were mirrored. */
  flipped: Uint8Array;
}

/** Options for {@linkcode randomFlip}. */
export interface RandomFlipOptions extends RandomFlip {
  /** Dataset index of the example. */
  index: number;
}

/**
 * Whether example `index` is mirrored in `epoch`, with probability 1/2.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomFlip } from "./batch.ts";
 *
 * const a = randomFlip({ seed: 3, epoch: 1, index: 42 });
 * assert.ok(a === randomFlip({ seed: 3, epoch: 1, index: 42 }));
 * ```
 */
export function randomFlip(options: RandomFlipOptions): boolean {
  const { seed, epoch, index } = options;
  return new CounterRng({ seed, tag: FLIP_TAG }).uint32([epoch, index]) >=
    0x80000000;
}

function scaleTable(scaling: InputScaling): Float32Array {
  const table = new Float32Array(256);
  for (let v = 0; v < 256; v++) {
    table[v] = scaling === "minus_one_to_one" ? v / 127.5 - 1 : v / 255;
  }
  return table;
}

const SCALE_TABLES: Record<InputScaling, Float32Array> = {
  minus_one_to_one: scaleTable("minus_one_to_one"),
  zero_to_one: scaleTable("zero_to_one"),
};

function flipDecider(flip: FlipPolicy | undefined): (i: number) => boolean {
  if (flip === undefined) return () => false;
  if (typeof flip === "function") return flip;
  const rng = new CounterRng({ seed: flip.seed, tag: FLIP_TAG });
  return (index) => rng.uint32([flip.epoch, index]) >= 0x80000000;
}

/** The crop box of one example; see {@linkcode RandomCrop}. */
export function randomCropBox(
  crop: RandomCrop & { index: number; size: number },
): CropBox {
  const { seed, epoch, index, size, minArea } = crop;
  if (!(minArea > 0 && minArea <= 1)) {
    throw new RangeError(
      `Cannot crop: minArea must be in (0, 1], received ${minArea}`,
    );
  }
  const rng = new CounterRng({ seed, tag: CROP_TAG });

  const area = minArea + (1 - minArea) * rng.float([epoch, index, 0]);
  const logRatio = Math.log(3 / 4) +
    (Math.log(4 / 3) - Math.log(3 / 4)) * rng.float([epoch, index, 1]);
  const ratio = Math.exp(logRatio);
  const width = Math.min(size, size * Math.sqrt(area * ratio));
  const height = Math.min(size, size * Math.sqrt(area / ratio));

  return {
    x: (size - width) * rng.float([epoch, index, 2]),
    y: (size - height) * rng.float([epoch, index, 3]),
    width,
    height,
  };
}

/** Bilinear sampling of a crop box into a full-size, scaled image. */
function sampleCrop(args: {
  images: Uint8Array;
  src: number;
  size: number;
  box: CropBox;
  mirror: boolean;
  scaling: InputScaling;
  out: Float32Array;
  dst: number;
}): void {
  const { images, src, size, box, mirror, out, dst } = args;
  const [mul, add] = args.scaling === "minus_one_to_one"
    ? [1 / 127.5, -1]
    : [1 / 255, 0];
  const stepX = box.width / size;
  const stepY = box.height / size;
  const last = size - 1;

  for (let oy = 0; oy < size; oy++) {
    const sy = Math.min(last, Math.max(0, box.y + (oy + 0.5) * stepY - 0.5));
    const y0 = Math.floor(sy);
    const y1 = Math.min(last, y0 + 1);
    const fy = sy - y0;
    for (let ox = 0; ox < size; ox++) {
      const col = mirror ? last - ox : ox;
      const sx = Math.min(
        last,
        Math.max(0, box.x + (col + 0.5) * stepX - 0.5),
      );
      const x0 = Math.floor(sx);
      const x1 = Math.min(last, x0 + 1);
      const fx = sx - x0;
      const p00 = src + (y0 * size + x0) * 3;
      const p01 = src + (y0 * size + x1) * 3;
      const p10 = src + (y1 * size + x0) * 3;
      const p11 = src + (y1 * size + x1) * 3;
      const to = dst + (oy * size + ox) * 3;
      for (let c = 0; c < 3; c++) {
        const top = images[p00 + c]! +
          (images[p01 + c]! - images[p00 + c]!) * fx;
        const bottom = images[p10 + c]! +
          (images[p11 + c]! - images[p10 + c]!) * fx;
        out[to + c] = (top + (bottom - top) * fy) * mul + add;
      }
    }
  }
}

/**
 * Gathers images `indices` of `set` into one float batch.
 *
 * @param set The decoded split.
 * @param indices Dataset indices, in batch order (for example from
 * `rankBatchPositions`).
 * @param options Scaling, flips and crops.
 * @returns The batch; `x` holds `indices.length` images.
 * @throws {RangeError} When an index is outside `[0, set.count)` or the
 * scaling is unknown.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { makeBatch } from "./batch.ts";
 *
 * const set = {
 *   images: new Uint8Array([0, 255, 0, 255, 255, 255]),
 *   labels: new Int32Array([1, 0]),
 *   imageSize: 1,
 *   count: 2,
 * };
 * const batch = makeBatch(set, [1, 0], { scaling: "minus_one_to_one" });
 * assert.ok(batch.x[0] === 1 && batch.x[3] === -1);
 * assert.ok(batch.labels[0] === 0);
 * ```
 */
export function makeBatch(
  set: ImageSet,
  indices: ArrayLike<number>,
  options: MakeBatchOptions,
): Batch {
  const { scaling, flip, crop } = options;
  const table = SCALE_TABLES[scaling];
  if (table === undefined) {
    throw new RangeError(
      `Cannot make a batch: scaling must be "minus_one_to_one" or ` +
        `"zero_to_one", received ${scaling}`,
    );
  }

  const count = indices.length;
  const size = set.imageSize;
  const rowBytes = size * 3;
  const imageBytes = size * rowBytes;
  const shouldFlip = flipDecider(flip);
  const x = new Float32Array(count * imageBytes);
  const labels = new Int32Array(count);
  const batchIndices = new Int32Array(count);
  const flipped = new Uint8Array(count);

  for (let k = 0; k < count; k++) {
    const index = indices[k]!;
    if (!Number.isInteger(index) || index < 0 || index >= set.count) {
      throw new RangeError(
        `Cannot make a batch: index must be in [0, ${set.count}), ` +
          `received ${index} at batch position ${k}`,
      );
    }
    batchIndices[k] = index;
    labels[k] = set.labels[index]!;
    const mirror = shouldFlip(index);
    flipped[k] = mirror ? 1 : 0;

    const src = index * imageBytes;
    const dst = k * imageBytes;
    if (crop !== undefined) {
      const box = randomCropBox({ ...crop, index, size });
      sampleCrop({
        images: set.images,
        src,
        size,
        box,
        mirror,
        scaling,
        out: x,
        dst,
      });
      continue;
    }
    for (let y = 0; y < size; y++) {
      const rowSrc = src + y * rowBytes;
      const rowDst = dst + y * rowBytes;
      for (let xPix = 0; xPix < size; xPix++) {
        const from = rowSrc + (mirror ? size - 1 - xPix : xPix) * 3;
        const to = rowDst + xPix * 3;
        x[to] = table[set.images[from]!]!;
        x[to + 1] = table[set.images[from + 1]!]!;
        x[to + 2] = table[set.images[from + 2]!]!;
      }
    }
  }
  return { x, labels, count, indices: batchIndices, flipped };
}
