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

import { CounterRng } from "./rng.ts";

/** The RNG purpose tag of random horizontal flips. */
export const FLIP_TAG = "flip";

/**
 * How pixel bytes become model inputs:
 * `"minus_one_to_one"` is `x / 127.5 - 1` (Keras MobileNetV2
 * `preprocess_input`), `"zero_to_one"` is `x / 255`.
 */
export type InputScaling = "minus_one_to_one" | "zero_to_one";

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

/** Options for {@linkcode makeBatch}. */
export interface MakeBatchOptions {
  /** Pixel scaling, which the model's weights dictate. */
  scaling: InputScaling;
  /** Horizontal flips; none when absent (evaluation). */
  flip?: FlipPolicy;
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

/**
 * Gathers images `indices` of `set` into one float batch.
 *
 * @param set The decoded split.
 * @param indices Dataset indices, in batch order (for example from
 * `rankBatchPositions`).
 * @param options Scaling and flips.
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
  const { scaling, flip } = options;
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
