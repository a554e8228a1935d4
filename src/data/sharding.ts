/**
 * Per-epoch shuffling and the split of each global batch over ranks.
 *
 * Invariants (DESIGN.md, "Data"):
 *
 * 1. Epoch `e` visits the examples in the order `permutation(seed, e, n)`,
 *    a Fisher-Yates shuffle whose every swap is drawn from the counter RNG
 *    keyed by (seed, "shuffle", e, i): any process computes the same order
 *    without talking to the others.
 * 2. Global step `t` takes positions `[t*B, (t+1)*B)` of that order, with
 *    `B = workers * b`. Rank `r` takes `[t*B + r*b, t*B + (r+1)*b)`, so the
 *    union over ranks, in rank order, is exactly the batch one process with
 *    batch size `B` would take.
 * 3. Last partial batch (`n % B = m > 0`), policy `"partial"` (the default):
 *    the step runs with the `m` remaining positions, split into contiguous
 *    runs in rank order, as evenly as possible: rank `r` gets
 *    `floor(m / N) + (r < m % N ? 1 : 0)` examples. A rank may get 0 (when
 *    `m < N`); it still takes part in the step with a count of 0. The PS
 *    divides the gradient sum by the total real count, so the mean stays
 *    weighted by examples. Policy `"drop"`: the `m` examples are skipped
 *    this epoch (a different `m` next epoch, since the order changes).
 *
 * @module
 */

import { CounterRng } from "./rng.ts";

/** What happens to the last `n % B` examples of an epoch. */
export type LastBatchPolicy = "partial" | "drop";

/** The RNG purpose tag of the epoch shuffle. */
export const SHUFFLE_TAG = "shuffle";

/** Options for {@linkcode permutation}. */
export interface PermutationOptions {
  /** Run seed, a safe integer >= 0. */
  seed: number;
  /** Epoch number, >= 0. */
  epoch: number;
  /** Number of examples. */
  n: number;
}

/** Options for {@linkcode stepsPerEpoch}. */
export interface StepsPerEpochOptions {
  /** Number of examples. */
  n: number;
  /** Examples per global step over all ranks (`workers * perRankBatch`). */
  globalBatch: number;
  /** Last-batch policy. @default "partial" */
  lastBatch?: LastBatchPolicy;
}

/** Options for {@linkcode rankBatchPositions} and related functions. */
export interface RankBatchOptions {
  /** Number of examples. */
  n: number;
  /** Run seed. */
  seed: number;
  /** Epoch number, >= 0. */
  epoch: number;
  /** Global step within the epoch, from 0. */
  step: number;
  /** This rank, in [0, workers). */
  rank: number;
  /** Number of ranks taking part in the step. */
  workers: number;
  /** Examples per rank in a full step (`b`). */
  perRankBatch: number;
  /** Last-batch policy. @default "partial" */
  lastBatch?: LastBatchPolicy;
}

/** Options for {@linkcode globalBatchIndices}. */
export interface GlobalBatchOptions {
  /** Number of examples. */
  n: number;
  /** Run seed. */
  seed: number;
  /** Epoch number, >= 0. */
  epoch: number;
  /** Global step within the epoch, from 0. */
  step: number;
  /** Examples per global step (`B`). */
  globalBatch: number;
  /** Last-batch policy. @default "partial" */
  lastBatch?: LastBatchPolicy;
}

/** A half-open range `[start, end)` of positions in the epoch order. */
export interface PositionRange {
  /** First position. */
  start: number;
  /** One past the last position. */
  end: number;
}

function checkCount(value: number, rule: { what: string; min: number }): void {
  const { what, min } = rule;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(
      `Cannot shard the dataset: ${what} must be an integer >= ${min}, ` +
        `received ${value}`,
    );
  }
}

/**
 * The order in which epoch `epoch` visits examples `0 .. n-1`.
 *
 * @param options Seed, epoch and example count.
 * @returns A permutation of `0 .. n-1` (position -> dataset index).
 * @throws {RangeError} When an argument is not a non-negative integer.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { permutation } from "./sharding.ts";
 *
 * const order = permutation({ seed: 7, epoch: 0, n: 5 });
 * assert.ok([...order].sort().join() === "0,1,2,3,4");
 * ```
 */
export function permutation(options: PermutationOptions): Int32Array {
  const { seed, epoch, n } = options;
  checkCount(epoch, { what: "epoch", min: 0 });
  checkCount(n, { what: "n", min: 0 });
  if (n > 0x7fffffff) {
    throw new RangeError(`Cannot shuffle: n must be < 2^31, received ${n}`);
  }

  const rng = new CounterRng({ seed, tag: SHUFFLE_TAG });
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1, [epoch, i]);
    const swap = order[i]!;
    order[i] = order[j]!;
    order[j] = swap;
  }
  return order;
}

/**
 * Global steps in one epoch.
 *
 * @returns `ceil(n / B)` for `"partial"`, `floor(n / B)` for `"drop"` (0
 * when `n < B`: the caller decides whether that is an error).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stepsPerEpoch } from "./sharding.ts";
 *
 * assert.ok(stepsPerEpoch({ n: 1400, globalBatch: 16 }) === 88);
 * assert.ok(
 *   stepsPerEpoch({ n: 1400, globalBatch: 16, lastBatch: "drop" }) === 87,
 * );
 * ```
 */
export function stepsPerEpoch(options: StepsPerEpochOptions): number {
  const { n, globalBatch, lastBatch = "partial" } = options;
  checkCount(n, { what: "n", min: 0 });
  checkCount(globalBatch, { what: "globalBatch", min: 1 });

  return lastBatch === "drop"
    ? Math.floor(n / globalBatch)
    : Math.ceil(n / globalBatch);
}

/**
 * The positions (in the epoch order) that global step `step` covers.
 *
 * @throws {RangeError} When `step` is past the end of the epoch.
 */
export function globalPositionRange(
  options: Omit<GlobalBatchOptions, "seed" | "epoch">,
): PositionRange {
  const { n, step, globalBatch, lastBatch = "partial" } = options;
  const steps = stepsPerEpoch({ n, globalBatch, lastBatch });
  checkCount(step, { what: "step", min: 0 });
  if (step >= steps) {
    throw new RangeError(
      `Cannot shard the dataset: step must be < ${steps} (n=${n}, ` +
        `globalBatch=${globalBatch}, lastBatch=${lastBatch}), ` +
        `received ${step}`,
    );
  }

  const start = step * globalBatch;
  return { start, end: Math.min(start + globalBatch, n) };
}

/**
 * The positions (in the epoch order) that rank `rank` covers at `step`.
 * See the module doc for the last-batch split.
 *
 * @throws {RangeError} When rank, workers, batch or step are out of range.
 */
export function rankPositionRange(
  options: Omit<RankBatchOptions, "seed" | "epoch">,
): PositionRange {
  const { n, step, rank, workers, perRankBatch, lastBatch } = options;
  checkCount(workers, { what: "workers", min: 1 });
  checkCount(perRankBatch, { what: "perRankBatch", min: 1 });
  checkCount(rank, { what: "rank", min: 0 });
  if (rank >= workers) {
    throw new RangeError(
      `Cannot shard the dataset: rank must be < workers (${workers}), ` +
        `received ${rank}`,
    );
  }

  const globalBatch = workers * perRankBatch;
  const global = globalPositionRange({
    n,
    step,
    globalBatch,
    ...(lastBatch === undefined ? {} : { lastBatch }),
  });
  const size = global.end - global.start;
  if (size === globalBatch) {
    const start = global.start + rank * perRankBatch;
    return { start, end: start + perRankBatch };
  }

  const base = Math.floor(size / workers);
  const extra = size % workers;
  const start = global.start + rank * base + Math.min(rank, extra);
  return { start, end: start + base + (rank < extra ? 1 : 0) };
}

let memo: { seed: number; epoch: number; n: number; order: Int32Array } | null =
  null;

function cachedPermutation(options: PermutationOptions): Int32Array {
  const { seed, epoch, n } = options;
  // Every step of an epoch needs the same order; recomputing it is O(n).
  if (memo && memo.seed === seed && memo.epoch === epoch && memo.n === n) {
    return memo.order;
  }
  const order = permutation(options);
  memo = { seed, epoch, n, order };
  return order;
}

/**
 * The dataset indices rank `rank` takes at global step `step` of `epoch`:
 * positions `[t*B + r*b, t*B + (r+1)*b)` of `permutation(seed, epoch, n)`,
 * with the last partial batch split as the module doc says.
 *
 * @returns A fresh array of dataset indices, possibly empty.
 * @throws {RangeError} When an argument is out of range.
 *
 * @example Two ranks together take the single-process batch
 * ```ts
 * import assert from "node:assert/strict";
 * import { globalBatchIndices, rankBatchPositions } from "./sharding.ts";
 *
 * const common = { n: 10, seed: 1, epoch: 0, step: 0, workers: 2 };
 * const r0 = rankBatchPositions({ ...common, rank: 0, perRankBatch: 3 });
 * const r1 = rankBatchPositions({ ...common, rank: 1, perRankBatch: 3 });
 * const all = globalBatchIndices({ ...common, globalBatch: 6 });
 * assert.ok([...r0, ...r1].join() === [...all].join());
 * ```
 */
export function rankBatchPositions(options: RankBatchOptions): Int32Array {
  const { n, seed, epoch } = options;
  const { start, end } = rankPositionRange(options);
  return cachedPermutation({ seed, epoch, n }).slice(start, end);
}

/**
 * The dataset indices of global step `step`: what a single process with
 * batch size `globalBatch` takes.
 *
 * @throws {RangeError} When an argument is out of range.
 */
export function globalBatchIndices(options: GlobalBatchOptions): Int32Array {
  const { n, seed, epoch } = options;
  const { start, end } = globalPositionRange(options);
  return cachedPermutation({ seed, epoch, n }).slice(start, end);
}
