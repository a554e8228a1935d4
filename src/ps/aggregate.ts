/**
 * Combines the ranks' contributions to one step. The result depends only on
 * the set of contributions, never on the order they arrived in: gradients
 * are summed in rank order, in float64, then divided by the total example
 * count, so a rank with fewer examples weighs exactly what it saw.
 *
 * @module
 */
import type { VariableLayout } from "../train/layout.ts";

/** One rank's contribution to a step, as decoded from the wire. */
export interface Contribution {
  rank: number;
  /** Gradient sums (trainable part) and moving statistics (the rest). */
  flat: Float32Array;
  count: number;
  lossSum: number;
  correct: number;
}

/** The combined step. */
export interface Aggregate {
  /** Mean gradient over all examples, trainable part of the layout. */
  meanGradient: Float32Array;
  /**
   * Example-weighted mean of the ranks' moving statistics, in the layout's
   * `bn_stat` part; `null` when no rank saw an example.
   */
  movingStats: Float32Array | null;
  count: number;
  lossSum: number;
  correct: number;
}

/** A contribution that cannot be combined. */
export class AggregateError extends Error {
  readonly rank: number;

  constructor(rank: number, message: string) {
    super(`rank ${rank}: ${message}`);
    this.name = "AggregateError";
    this.rank = rank;
  }
}

/** Combines contributions; see the module doc for the arithmetic. */
export function aggregate(
  layout: VariableLayout,
  contributions: readonly Contribution[],
): Aggregate {
  const ordered = [...contributions].sort((a, b) => a.rank - b.rank);
  const { trainableSize, totalSize } = layout;
  const statsSize = totalSize - trainableSize;
  const gradSum = new Float64Array(trainableSize);
  const statsSum = new Float64Array(statsSize);
  let count = 0;
  let lossSum = 0;
  let correct = 0;

  for (const c of ordered) {
    if (c.flat.length !== totalSize) {
      throw new AggregateError(
        c.rank,
        `sent ${c.flat.length} values, the layout has ${totalSize}`,
      );
    }
    if (ordered.filter((o) => o.rank === c.rank).length > 1) {
      throw new AggregateError(c.rank, "contributed twice to one step");
    }
    if (c.count === 0) continue;

    for (let i = 0; i < trainableSize; i++) gradSum[i] += c.flat[i];
    for (let i = 0; i < statsSize; i++) {
      statsSum[i] += c.count * c.flat[trainableSize + i];
    }
    count += c.count;
    lossSum += c.lossSum;
    correct += c.correct;
  }

  const meanGradient = new Float32Array(trainableSize);
  if (count > 0) {
    for (let i = 0; i < trainableSize; i++) {
      meanGradient[i] = gradSum[i] / count;
    }
  }

  let movingStats: Float32Array | null = null;
  if (count > 0) {
    movingStats = new Float32Array(statsSize);
    for (let i = 0; i < statsSize; i++) movingStats[i] = statsSum[i] / count;
  }

  return { meanGradient, movingStats, count, lossSum, correct };
}
