/**
 * The optimizer's view of a tfjs-layers model: its trainable variables by
 * original name, in the model's order.
 *
 * @module
 */
import type { VariableSpec } from "./types.ts";

/** The part of a tfjs-layers LayerVariable the optimizer reads. */
export interface LayerVariableLike {
  originalName: string;
  /** Concrete for variables; tfjs types it like a symbolic shape. */
  shape: readonly (number | null)[];
  trainable: boolean;
}

/**
 * Variable specs of a model's trainable weights, named by `originalName`
 * (never `name`, which tfjs suffixes `_1` for a second model in a process).
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import "@tensorflow/tfjs-backend-cpu";
 * import { buildMobileNetV2 } from "../model/mobilenet_v2.ts";
 * import { trainableVariableSpecs } from "./variables.ts";
 *
 * await tf.setBackend("cpu");
 * const model = buildMobileNetV2({ alpha: 0.35, imageSize: 96 });
 * const specs = trainableVariableSpecs(model.trainableWeights);
 * console.assert(specs[0]?.name === "Conv1/kernel");
 * model.dispose();
 * ```
 */
export function trainableVariableSpecs(
  weights: readonly LayerVariableLike[],
): VariableSpec[] {
  return weights
    .filter((w) => w.trainable)
    .map((w) => {
      const shape = w.shape.map((d) => {
        if (d === null) {
          throw new RangeError(
            `Cannot list variables: "${w.originalName}" has an unknown ` +
              `dimension in shape ${JSON.stringify(w.shape)}`,
          );
        }
        return d;
      });
      return { name: w.originalName, shape };
    });
}
