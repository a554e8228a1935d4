import assert from "node:assert/strict";
import {
  globalBatchIndices,
  type LastBatchPolicy,
  permutation,
  rankBatchPositions,
  rankPositionRange,
  stepsPerEpoch,
} from "../src/data/sharding.ts";

function isPermutation(order: Int32Array, n: number): boolean {
  const seen = new Uint8Array(n);
  for (const v of order) {
    if (v < 0 || v >= n || seen[v]) return false;
    seen[v] = 1;
  }
  return order.length === n;
}

Deno.test("permutation - is a permutation of 0..n-1 for any n", () => {
  for (const n of [0, 1, 2, 7, 100, 1400]) {
    assert.ok(
      isPermutation(permutation({ seed: 5, epoch: 2, n }), n),
      `n=${n}`,
    );
  }
});

Deno.test("permutation - same (seed, epoch) gives the same order", () => {
  const a = permutation({ seed: 11, epoch: 3, n: 500 });
  const b = permutation({ seed: 11, epoch: 3, n: 500 });
  assert.deepEqual(a, b);
});

Deno.test("permutation - differs across epochs and seeds", () => {
  const base = permutation({ seed: 11, epoch: 3, n: 500 });
  assert.notDeepEqual(permutation({ seed: 11, epoch: 4, n: 500 }), base);
  assert.notDeepEqual(permutation({ seed: 12, epoch: 3, n: 500 }), base);
  const identity = Int32Array.from({ length: 500 }, (_, i) => i);
  assert.notDeepEqual(base, identity);
});

Deno.test("permutation - all 6 orders of 3 items are about equally likely", () => {
  const counts = new Map<string, number>();
  const trials = 12_000;
  for (let seed = 0; seed < trials; seed++) {
    const key = permutation({ seed, epoch: 0, n: 3 }).join();
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  assert.equal(counts.size, 6);
  const expected = trials / 6;
  let chiSquare = 0;
  for (const c of counts.values()) chiSquare += (c - expected) ** 2 / expected;
  // 5 degrees of freedom: P(chi2 > 20.5) = 0.001.
  assert.ok(chiSquare < 20.5, `chi-square ${chiSquare}`);
});

Deno.test("stepsPerEpoch - ceil for partial, floor for drop", () => {
  assert.equal(stepsPerEpoch({ n: 1400, globalBatch: 16 }), 88);
  assert.equal(
    stepsPerEpoch({ n: 1400, globalBatch: 16, lastBatch: "drop" }),
    87,
  );
  assert.equal(
    stepsPerEpoch({ n: 1408, globalBatch: 16, lastBatch: "drop" }),
    88,
  );
  assert.equal(stepsPerEpoch({ n: 3, globalBatch: 16 }), 1);
  assert.equal(stepsPerEpoch({ n: 3, globalBatch: 16, lastBatch: "drop" }), 0);
  assert.equal(stepsPerEpoch({ n: 0, globalBatch: 4 }), 0);
  assert.throws(() => stepsPerEpoch({ n: 10, globalBatch: 0 }), {
    name: "RangeError",
    message: /globalBatch must be an integer >= 1, received 0/,
  });
});

Deno.test("sharding - union over ranks equals the single-process batch", () => {
  const seed = 21;
  const policies: LastBatchPolicy[] = ["partial", "drop"];
  for (const lastBatch of policies) {
    for (const n of [1, 5, 37, 100, 301]) {
      for (let workers = 1; workers <= 4; workers++) {
        for (const perRankBatch of [1, 3, 8]) {
          const B = workers * perRankBatch;
          for (const epoch of [0, 1]) {
            const order = permutation({ seed, epoch, n });
            const steps = lastBatch === "drop"
              ? Math.floor(n / B)
              : Math.ceil(n / B);
            assert.equal(
              stepsPerEpoch({ n, globalBatch: B, lastBatch }),
              steps,
            );
            const visited: number[] = [];
            for (let step = 0; step < steps; step++) {
              const union: number[] = [];
              for (let rank = 0; rank < workers; rank++) {
                const part = rankBatchPositions({
                  n,
                  seed,
                  epoch,
                  step,
                  rank,
                  workers,
                  perRankBatch,
                  lastBatch,
                });
                union.push(...part);
              }
              // Single process, batch B: positions [t*B, min((t+1)*B, n)).
              const single = [
                ...order.slice(step * B, Math.min((step + 1) * B, n)),
              ];
              const label =
                `${lastBatch} n=${n} N=${workers} b=${perRankBatch} t=${step}`;
              assert.deepEqual(union, single, label);
              assert.deepEqual(
                [...globalBatchIndices({
                  n,
                  seed,
                  epoch,
                  step,
                  globalBatch: B,
                  lastBatch,
                })],
                single,
                label,
              );
              visited.push(...union);
            }
            const expectedVisits = lastBatch === "drop" ? steps * B : n;
            assert.equal(new Set(visited).size, expectedVisits);
            assert.equal(visited.length, expectedVisits);
          }
        }
      }
    }
  }
});

Deno.test("sharding - full steps give rank r positions [tB + rb, tB + (r+1)b)", () => {
  const common = { n: 100, step: 3, workers: 4, perRankBatch: 5 };
  for (let rank = 0; rank < 4; rank++) {
    assert.deepEqual(rankPositionRange({ ...common, rank }), {
      start: 60 + rank * 5,
      end: 65 + rank * 5,
    });
  }
});

Deno.test("sharding - the last partial batch is split as evenly as possible", () => {
  // n = 70, N = 4, b = 8: B = 32, last step (t = 2) has m = 6 examples,
  // split 2, 2, 1, 1 in rank order over positions 64..69.
  const common = { n: 70, step: 2, workers: 4, perRankBatch: 8 };
  const ranges = [0, 1, 2, 3].map((rank) =>
    rankPositionRange({ ...common, rank })
  );
  assert.deepEqual(ranges, [
    { start: 64, end: 66 },
    { start: 66, end: 68 },
    { start: 68, end: 69 },
    { start: 69, end: 70 },
  ]);

  // m = 2 < N = 4: ranks 2 and 3 take part with no examples.
  const tiny = { n: 34, step: 1, workers: 4, perRankBatch: 8 };
  const sizes = [0, 1, 2, 3].map((rank) => {
    const r = rankPositionRange({ ...tiny, rank });
    return r.end - r.start;
  });
  assert.deepEqual(sizes, [1, 1, 0, 0]);
  const empty = rankBatchPositions({ ...tiny, rank: 3, seed: 0, epoch: 0 });
  assert.equal(empty.length, 0);
});

Deno.test("sharding - rejects a step past the epoch and a rank past workers", () => {
  const common = { n: 70, seed: 0, epoch: 0, workers: 4, perRankBatch: 8 };
  assert.throws(() => rankBatchPositions({ ...common, step: 3, rank: 0 }), {
    name: "RangeError",
    message: /step must be < 3 .* received 3/,
  });
  assert.throws(
    () =>
      rankBatchPositions({ ...common, step: 2, rank: 0, lastBatch: "drop" }),
    { name: "RangeError", message: /step must be < 2/ },
  );
  assert.throws(() => rankBatchPositions({ ...common, step: 0, rank: 4 }), {
    name: "RangeError",
    message: /rank must be < workers \(4\), received 4/,
  });
});
