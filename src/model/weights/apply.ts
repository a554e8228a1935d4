/**
 * Matches a weight map against a model's variables by their Keras names
 * (`LayerVariable.originalName`, e.g. `block_1_expand/kernel`; never
 * `.name`, which tfjs suffixes with `_1` for a second model in one
 * process) and writes the values in.
 *
 * The backbone is what pretrained sources provide: every variable of the
 * Keras MobileNetV2 layers (`Conv1` ... `Conv_1_bn`). Anything else is
 * head: the model's head (`flower_dense`, `flower_prob`) keeps its seeded
 * initialisation and the source's head (nsfwjs's `dense_*`, Teachable
 * Machine's `dense_Dense*`) is ignored, unless the caller asks to load
 * the head too, in which case both heads must match as well.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type * as tfl from "@tensorflow/tfjs-layers";
import {
  type ShapeMismatch,
  WeightsFormatError,
  WeightsMismatchError,
} from "./errors.ts";
import type { WeightMap, WeightTensor } from "./weight_map.ts";

const BACKBONE_LAYER = new RegExp(
  "^(Conv1|bn_Conv1|Conv_1|Conv_1_bn" +
    "|expanded_conv_(depthwise|project)(_BN)?" +
    "|block_\\d+_(expand|depthwise|project)(_BN)?)/",
);

/**
 * True for the variable names of Keras MobileNetV2's backbone layers
 * (everything up to `out_relu`).
 *
 * @example
 * ```ts
 * isBackboneWeightName("block_3_expand_BN/gamma"); // true
 * isBackboneWeightName("flower_dense/kernel"); // false
 * ```
 */
export function isBackboneWeightName(name: string): boolean {
  return BACKBONE_LAYER.test(name);
}

/** Options of {@linkcode planWeights}. */
export interface PlanWeightsOptions {
  /** The source's name for error messages (`bundled`, a path). */
  source: string;
  /** Also load the head: its variables must match too. @default false */
  includeHead?: boolean;
}

/** Which source tensor goes into which model variable. */
export interface WeightsPlan {
  /** Pairs to write, in the model's variable order. */
  assignments: { variable: tfl.LayerVariable; tensor: WeightTensor }[];
  /** Source tensors left out: its head, when the head is not loaded. */
  ignored: string[];
}

/**
 * Pairs a model's variables with a source's tensors by Keras name and
 * checks that nothing is missing, nothing unexpected and every shape
 * agrees. Writes nothing.
 *
 * @throws {WeightsMismatchError} listing every mismatch.
 * @throws {WeightsFormatError} for a tensor holding NaN or infinity.
 */
export function planWeights(
  model: tfl.LayersModel,
  weights: WeightMap,
  options: PlanWeightsOptions,
): WeightsPlan {
  const { source, includeHead = false } = options;
  const wanted = (name: string) => includeHead || isBackboneWeightName(name);
  const variables = new Map(
    model.weights.map((v) => [v.originalName, v] as const),
  );

  const missing = [...variables.keys()].filter((name) =>
    wanted(name) && !weights.has(name)
  );
  const unexpected = [...weights.keys()].filter((name) =>
    wanted(name) && !variables.has(name)
  );
  const ignored = [...weights.keys()].filter((name) => !wanted(name));
  const shapeMismatches: ShapeMismatch[] = [];
  const assignments: WeightsPlan["assignments"] = [];

  for (const [name, variable] of variables) {
    const tensor = weights.get(name);
    if (!wanted(name) || tensor === undefined) continue;
    // A variable's value always has a concrete shape; `.shape` may not.
    const shape = variable.read().shape;
    if (!sameShape(shape, tensor.shape)) {
      shapeMismatches.push({
        name,
        expected: [...shape],
        actual: [...tensor.shape],
      });
      continue;
    }
    assignments.push({ variable, tensor });
  }

  if (missing.length + unexpected.length + shapeMismatches.length > 0) {
    throw new WeightsMismatchError({
      source,
      missing,
      unexpected,
      shapeMismatches,
    });
  }
  for (const { variable, tensor } of assignments) {
    checkFinite(tensor, { source, name: variable.originalName });
  }
  return { assignments, ignored };
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((dim, i) => dim === b[i]);
}

function checkFinite(
  tensor: WeightTensor,
  where: { source: string; name: string },
): void {
  const bad = tensor.values.findIndex((v) => !Number.isFinite(v));
  if (bad !== -1) {
    throw new WeightsFormatError({
      file: where.source,
      field: where.name,
      message: `value ${bad} is ${tensor.values[bad]}, expected finite`,
    });
  }
}

/** Writes a plan's values into its variables. */
export function assignWeights(plan: WeightsPlan): void {
  for (const { variable, tensor } of plan.assignments) {
    tf.tidy(() => {
      variable.write(tf.tensor(tensor.values, tensor.shape, "float32"));
    });
  }
}

/**
 * A model's variable values by Keras name (copies), optionally only the
 * backbone's.
 */
export function readModelWeights(
  model: tfl.LayersModel,
  options: { backboneOnly?: boolean } = {},
): WeightMap {
  const weights: WeightMap = new Map();
  for (const variable of model.weights) {
    const name = variable.originalName;
    if (options.backboneOnly && !isBackboneWeightName(name)) continue;
    const value = variable.read();
    weights.set(name, {
      shape: [...value.shape],
      values: Float32Array.from(value.dataSync() as Float32Array),
    });
  }
  return weights;
}
