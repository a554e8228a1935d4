/**
 * The `meta` maps of the two tensor streams of a step, and their checks.
 *
 * - Weights (PS -> every worker): the epoch, the learning rate, the input
 *   scaling, and the dataset indices each rank must take this step.
 * - Gradients (worker -> PS): the example count, loss and hits behind the
 *   gradient sums, and whether the rank saw a non-finite value.
 *
 * @module
 */
import {
  metaNumber,
  metaNumberArray,
  metaString,
  WireError,
  type WireMeta,
} from "../wire/mod.ts";
import type { InputScaling } from "../data/mod.ts";

/** What the PS tells the workers with version `step` of the weights. */
export interface StepMeta {
  epoch: number;
  /** Schedule value at this step (multipliers apply on the PS). */
  lr: number;
  scaling: InputScaling;
  /** Dataset indices per rank, `indices[rank]`. */
  indices: number[][];
}

/** What a worker reports with its gradient sums. */
export interface ResultMeta {
  count: number;
  lossSum: number;
  correct: number;
  /**
   * Name of the first variable with a non-finite gradient or statistic;
   * empty when all were finite. Such a rank sends zeros, never the NaNs.
   */
  nonFinite: string;
}

const SCALINGS: readonly InputScaling[] = ["minus_one_to_one", "zero_to_one"];

/** The weights stream's meta map. */
export function encodeStepMeta(meta: StepMeta): WireMeta {
  return { ...meta };
}

/** Reads and checks a weights stream's meta for a job of `workers` ranks. */
export function decodeStepMeta(
  meta: WireMeta,
  limits: { workers: number; examples: number; perRankBatch: number },
): StepMeta {
  const scaling = metaString(meta, "scaling") as InputScaling;
  if (!SCALINGS.includes(scaling)) {
    throw new WireError({
      reason: "bad_field",
      field: "meta.scaling",
      message: `meta.scaling must be one of ${SCALINGS.join(", ")}`,
    });
  }

  const rows = Array.isArray(meta.indices) ? meta.indices : null;
  if (rows === null || rows.length !== limits.workers) {
    throw new WireError({
      reason: "bad_field",
      field: "meta.indices",
      message: `meta.indices must hold one list per rank (${limits.workers})`,
    });
  }
  const indices = rows.map((_, rank) =>
    metaNumberArray(meta.indices as unknown as WireMeta, String(rank), {
      integer: true,
      min: 0,
      max: limits.examples - 1,
    })
  );
  if (indices.some((list) => list.length > limits.perRankBatch)) {
    throw new WireError({
      reason: "bad_field",
      field: "meta.indices",
      message: `meta.indices holds more than ${limits.perRankBatch} per rank`,
    });
  }

  return {
    epoch: metaNumber(meta, "epoch", { integer: true, min: 0 }),
    lr: metaNumber(meta, "lr", { min: 0 }),
    scaling,
    indices,
  };
}

/** The gradient stream's meta map. */
export function encodeResultMeta(meta: ResultMeta): WireMeta {
  return { ...meta };
}

/** Reads and checks a gradient stream's meta. */
export function decodeResultMeta(
  meta: WireMeta,
  limits: { perRankBatch: number },
): ResultMeta {
  const count = metaNumber(meta, "count", {
    integer: true,
    min: 0,
    max: limits.perRankBatch,
  });
  return {
    count,
    lossSum: metaNumber(meta, "lossSum", { min: 0 }),
    correct: metaNumber(meta, "correct", { integer: true, min: 0, max: count }),
    nonFinite: metaString(meta, "nonFinite"),
  };
}
