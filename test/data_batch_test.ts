import assert from "node:assert/strict";
import { type ImageSet, makeBatch, randomFlip } from "../src/data/batch.ts";
import { rankBatchPositions, stepsPerEpoch } from "../src/data/sharding.ts";

const SIZE = 3;

/** Channel c of pixel (y, x) of image (or batch slot) k. */
interface Pixel {
  k: number;
  y: number;
  x: number;
  c: number;
}

/** Image k: pixel (y, x, c) = (k * 7 + y * 31 + x * 11 + c) mod 256. */
function pixelValue({ k, y, x, c }: Pixel): number {
  return (k * 7 + y * 31 + x * 11 + c) % 256;
}

function syntheticSet(count: number): ImageSet {
  const images = new Uint8Array(count * SIZE * SIZE * 3);
  let p = 0;
  for (let k = 0; k < count; k++) {
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        for (let c = 0; c < 3; c++) images[p++] = pixelValue({ k, y, x, c });
      }
    }
  }
  const labels = Int32Array.from({ length: count }, (_, k) => k % 5);
  return { images, labels, imageSize: SIZE, count };
}

function at(x: Float32Array, where: Pixel): number {
  const { k: slot, y, x: xPix, c } = where;
  return x[((slot * SIZE + y) * SIZE + xPix) * 3 + c]!;
}

Deno.test("makeBatch - gathers images and labels in index order", () => {
  const set = syntheticSet(10);
  const batch = makeBatch(set, [7, 2, 7], { scaling: "zero_to_one" });
  assert.equal(batch.count, 3);
  assert.equal(batch.x.length, 3 * SIZE * SIZE * 3);
  assert.deepEqual([...batch.labels], [2, 2, 2]);
  assert.deepEqual([...batch.indices], [7, 2, 7]);
  for (const [slot, k] of [[0, 7], [1, 2], [2, 7]] as const) {
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        for (let c = 0; c < 3; c++) {
          assert.equal(
            at(batch.x, { k: slot, y, x, c }),
            Math.fround(pixelValue({ k, y, x, c }) / 255),
          );
        }
      }
    }
  }
});

Deno.test("makeBatch - minus_one_to_one is x / 127.5 - 1", () => {
  const set: ImageSet = {
    images: new Uint8Array([0, 1, 127, 128, 254, 255]),
    labels: new Int32Array([0, 1]),
    imageSize: 1,
    count: 2,
  };
  const batch = makeBatch(set, [0, 1], { scaling: "minus_one_to_one" });
  const expected = [0, 1, 127, 128, 254, 255].map((v) =>
    Math.fround(v / 127.5 - 1)
  );
  assert.deepEqual([...batch.x], expected);
  assert.equal(batch.x[0], -1);
  assert.equal(batch.x[5], 1);
});

Deno.test("makeBatch - a flipped example is mirrored left to right", () => {
  const set = syntheticSet(4);
  const batch = makeBatch(set, [0, 1, 2, 3], {
    scaling: "zero_to_one",
    flip: (index) => index % 2 === 1,
  });
  assert.deepEqual([...batch.flipped], [0, 1, 0, 1]);
  for (let slot = 0; slot < 4; slot++) {
    const mirrored = slot % 2 === 1;
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const from = mirrored ? SIZE - 1 - x : x;
        assert.equal(
          at(batch.x, { k: slot, y, x, c: 0 }),
          Math.fround(pixelValue({ k: slot, y, x: from, c: 0 }) / 255),
        );
      }
    }
  }
});

Deno.test("makeBatch - random flips are a pure function of (seed, epoch, index)", () => {
  const set = syntheticSet(50);
  const seed = 4;
  const epoch = 2;
  const perExample = new Map<number, number>();
  // The same epoch sharded over 2 and over 3 workers: every example lands
  // on some rank and step, and must get the same flip in both runs.
  for (const workers of [2, 3]) {
    const perRankBatch = 4;
    const steps = stepsPerEpoch({
      n: set.count,
      globalBatch: workers * perRankBatch,
    });
    for (let step = 0; step < steps; step++) {
      for (let rank = 0; rank < workers; rank++) {
        const indices = rankBatchPositions({
          n: set.count,
          seed,
          epoch,
          step,
          rank,
          workers,
          perRankBatch,
        });
        const batch = makeBatch(set, indices, {
          scaling: "zero_to_one",
          flip: { seed, epoch },
        });
        batch.indices.forEach((index, slot) => {
          const flipped = batch.flipped[slot]!;
          const seen = perExample.get(index);
          if (seen !== undefined) {
            assert.equal(flipped, seen, `example ${index}`);
          }
          perExample.set(index, flipped);
          assert.equal(flipped === 1, randomFlip({ seed, epoch, index }));
        });
      }
    }
  }
  assert.equal(perExample.size, 50);
});

Deno.test("randomFlip - flips about half the examples, differently per epoch", () => {
  let flips = 0;
  let changed = 0;
  for (let index = 0; index < 10_000; index++) {
    const a = randomFlip({ seed: 1, epoch: 0, index });
    const b = randomFlip({ seed: 1, epoch: 1, index });
    if (a) flips++;
    if (a !== b) changed++;
  }
  // Binomial(10000, 0.5): sd 50, so +-300 is 6 sd.
  assert.ok(Math.abs(flips - 5000) < 300, `flips ${flips}`);
  assert.ok(Math.abs(changed - 5000) < 300, `changed ${changed}`);
});

Deno.test("makeBatch - an empty index list gives an empty batch", () => {
  const batch = makeBatch(syntheticSet(3), [], { scaling: "zero_to_one" });
  assert.equal(batch.count, 0);
  assert.equal(batch.x.length, 0);
});

Deno.test("makeBatch - rejects an index outside the set", () => {
  assert.throws(
    () => makeBatch(syntheticSet(3), [0, 3], { scaling: "zero_to_one" }),
    {
      name: "RangeError",
      message: /index must be in \[0, 3\), received 3 at batch position 1/,
    },
  );
});
