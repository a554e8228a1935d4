/**
 * Validation: predictions over a labelled set, the confusion matrix and the
 * figures derived from it.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type * as tfl from "@tensorflow/tfjs-layers";
import type { Batch } from "./local_step.ts";

/** What {@linkcode evaluate} reports. */
export interface Evaluation {
  /** Examples evaluated. */
  count: number;
  /** Share of examples whose arg-max prediction is the label, in [0, 1]. */
  accuracy: number;
  /** Unweighted mean of the per-class F1 scores. */
  macroF1: number;
  /** Mean cross-entropy. */
  loss: number;
  /** `confusionMatrix[true][predicted]` counts. */
  confusionMatrix: number[][];
}

/** Options of {@linkcode evaluate}. */
export interface EvaluateOptions {
  count: number;
  imageSize: number;
  numClasses: number;
  /** Builds the batch of examples `[start, end)`, scaled for the model. */
  batchAt: (start: number, end: number) => Batch;
  /** Examples per forward pass. @default 32 */
  batchSize?: number;
}

/** Runs the model in inference mode over a whole set. */
export function evaluate(
  model: tfl.LayersModel,
  options: EvaluateOptions,
): Evaluation {
  const { count, imageSize, numClasses, batchAt, batchSize = 32 } = options;
  const confusion = Array.from(
    { length: numClasses },
    () => new Array<number>(numClasses).fill(0),
  );
  let lossSum = 0;

  for (let start = 0; start < count; start += batchSize) {
    const batch = batchAt(start, Math.min(count, start + batchSize));
    const probs = tf.tidy(() => {
      const x = tf.tensor4d(batch.x, [batch.count, imageSize, imageSize, 3]);
      return model.predict(x) as tf.Tensor2D;
    });
    const values = probs.dataSync();
    probs.dispose();

    for (let i = 0; i < batch.count; i++) {
      const row = values.subarray(i * numClasses, (i + 1) * numClasses);
      let best = 0;
      for (let c = 1; c < numClasses; c++) if (row[c] > row[best]) best = c;
      const label = batch.labels[i];
      confusion[label][best]++;
      lossSum -= Math.log(Math.min(Math.max(row[label], 1e-7), 1 - 1e-7));
    }
  }

  return { count, loss: count ? lossSum / count : 0, ...scores(confusion) };
}

/** Accuracy and macro F1 of a confusion matrix. */
export function scores(
  confusionMatrix: number[][],
): { accuracy: number; macroF1: number; confusionMatrix: number[][] } {
  const k = confusionMatrix.length;
  let total = 0;
  let hits = 0;
  let f1Sum = 0;

  for (let c = 0; c < k; c++) {
    const truePositives = confusionMatrix[c][c];
    let actual = 0;
    let predicted = 0;
    for (let j = 0; j < k; j++) {
      actual += confusionMatrix[c][j];
      predicted += confusionMatrix[j][c];
    }
    total += actual;
    hits += truePositives;

    // An empty class with no predictions has no F1 worth averaging in as 0.
    const denominator = actual + predicted;
    f1Sum += denominator === 0 ? 1 : (2 * truePositives) / denominator;
  }

  return {
    accuracy: total ? hits / total : 0,
    macroF1: k ? f1Sum / k : 0,
    confusionMatrix,
  };
}
