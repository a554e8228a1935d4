/**
 * One worker's share of a synchronous step: forward and backward on the
 * rank's batch, returning the gradient SUM over its examples (the parameter
 * server divides by the global example count, so ranks with unequal batches
 * are weighted by what they really saw) and the updated BatchNorm moving
 * statistics.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { LayersModel } from "../_tfjs_types.ts";
import type { VariableLayout } from "./layout.ts";
import { installFrozenBatchNormGradient } from "./batch_norm_grad.ts";

/** Keras clips probabilities by this before the log in cross-entropy. */
const PROB_EPSILON = 1e-7;

/** A batch in the model's input layout. */
export interface Batch {
  /** Images, NHWC, already scaled as the weights expect. */
  x: Float32Array;
  /** Class index per example. */
  labels: Int32Array;
  /** Number of examples (may be 0 for a rank with no data this step). */
  count: number;
}

/** Options of {@linkcode computeLocalStep}. */
export interface LocalStepOptions {
  /** Side of the square input in pixels. */
  imageSize: number;
  /** Classes of the head, for the one-hot labels. */
  numClasses: number;
  /** `train` normalises with batch statistics and updates the moving ones. */
  batchNorm: "train" | "frozen";
}

/** What a rank sends back for one step. */
export interface LocalStepResult {
  /**
   * The layout's flat vector: summed gradients in the trainable part, the
   * moving statistics after this step's forward pass in the rest.
   */
  flat: Float32Array;
  /** Examples the sums cover (the batch's count). */
  count: number;
  /** Sum of the examples' cross-entropy. */
  lossSum: number;
  /** Examples whose arg-max prediction equals the label. */
  correct: number;
  /** Index of the first non-finite value in `flat`, or -1. */
  firstNonFinite: number;
}

/** Summed categorical cross-entropy of softmax outputs. */
function crossEntropySum(probs: tf.Tensor2D, oneHot: tf.Tensor2D): tf.Scalar {
  const clipped = tf.clipByValue(probs, PROB_EPSILON, 1 - PROB_EPSILON);
  return tf.neg(tf.sum(tf.mul(oneHot, tf.log(clipped))));
}

/** Runs forward and backward on one batch; see the module doc. */
export function computeLocalStep(
  model: LayersModel,
  layout: VariableLayout,
  batch: Batch,
  options: LocalStepOptions,
): LocalStepResult {
  const { imageSize, numClasses } = options;
  installFrozenBatchNormGradient();
  const byName = new Map(model.weights.map((w) => [w.originalName, w]));
  const flat = new Float32Array(layout.totalSize);
  let lossSum = 0;
  let correct = 0;

  if (batch.count > 0) {
    const trainable = layout.entries
      .filter((e) => e.role === "trainable")
      .map((e) => byName.get(e.name)!);
    const variables = trainable.map((w) => w.read() as tf.Variable);

    const result = tf.tidy(() => {
      const x = tf.tensor4d(batch.x, [batch.count, imageSize, imageSize, 3]);
      const oneHot = tf.cast(
        tf.oneHot(tf.tensor1d(batch.labels, "int32"), numClasses),
        "float32",
      ) as tf.Tensor2D;
      let predicted: tf.Tensor1D | null = null;

      const { value, grads } = tf.variableGrads(() => {
        const probs = model.apply(x, {
          training: options.batchNorm === "train",
        }) as tf.Tensor2D;
        predicted = tf.keep(tf.argMax(probs, 1) as tf.Tensor1D);
        return crossEntropySum(probs, oneHot);
      }, variables);

      return { value, grads, predicted: predicted! };
    });

    lossSum = result.value.dataSync()[0];
    const predicted = result.predicted.dataSync();
    for (let i = 0; i < batch.count; i++) {
      if (predicted[i] === batch.labels[i]) correct++;
    }

    for (let i = 0; i < trainable.length; i++) {
      const entry = layout.entries[i];
      const grad = result.grads[variables[i].name];
      flat.set(grad.dataSync() as Float32Array, entry.offset);
    }
    tf.dispose([
      result.value,
      result.predicted,
      ...Object.values(result.grads),
    ]);
  }

  for (const e of layout.entries) {
    if (e.role !== "bn_stat") continue;
    const values = byName.get(e.name)!.read().dataSync() as Float32Array;
    flat.set(values, e.offset);
  }

  return {
    flat,
    count: batch.count,
    lossSum,
    correct,
    firstNonFinite: firstNonFinite(flat),
  };
}

/** Index of the first NaN or infinity, or -1. */
export function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) return i;
  }
  return -1;
}
