/**
 * Names of the TF-slim MobileNetV2 checkpoint (as per-tensor .npy file
 * stems, `expanded_conv_3_expand_BatchNorm_gamma`) mapped to the Keras
 * application's variable names (`block_3_expand_BN/gamma`). Keras
 * numbers the blocks as TF-slim does; only the layer and weight names
 * differ. Table in docs/weights.md.
 *
 * @module
 */

const BN_WEIGHTS = ["gamma", "beta", "moving_mean", "moving_variance"];

/**
 * The Keras variable name for a TF-slim tensor name, or undefined for a
 * name outside the no-top backbone (e.g. the logits layer).
 *
 * @example
 * ```ts
 * tfSlimToKerasName("Conv_weights"); // "Conv1/kernel"
 * tfSlimToKerasName("expanded_conv_5_depthwise_depthwise_weights");
 * // "block_5_depthwise/depthwise_kernel"
 * ```
 */
export function tfSlimToKerasName(slimName: string): string | undefined {
  const bn = /^(.*)_BatchNorm_(gamma|beta|moving_mean|moving_variance)$/
    .exec(slimName);
  if (bn !== null) {
    const layer = kerasBatchNormLayer(bn[1]);
    return layer === undefined ? undefined : `${layer}/${bn[2]}`;
  }

  const depthwise = /^(.*)_depthwise_weights$/.exec(slimName);
  if (depthwise !== null && depthwise[1].endsWith("_depthwise")) {
    const layer = kerasConvLayer(depthwise[1]);
    return layer === undefined ? undefined : `${layer}/depthwise_kernel`;
  }

  const conv = /^(.*)_weights$/.exec(slimName);
  if (conv !== null && !conv[1].endsWith("_depthwise")) {
    const layer = kerasConvLayer(conv[1]);
    return layer === undefined ? undefined : `${layer}/kernel`;
  }
  return undefined;
}

/** Keras conv layer for a TF-slim conv scope (`expanded_conv_2_expand`). */
function kerasConvLayer(scope: string): string | undefined {
  if (scope === "Conv") return "Conv1";
  if (scope === "Conv_1") return "Conv_1";
  if (
    scope === "expanded_conv_depthwise" || scope === "expanded_conv_project"
  ) {
    return scope;
  }
  const block = /^expanded_conv_(\d+)_(expand|depthwise|project)$/.exec(scope);
  if (block === null) return undefined;
  const id = Number(block[1]);
  return id >= 1 && id <= 16 ? `block_${id}_${block[2]}` : undefined;
}

/** Keras BatchNormalization layer that follows a TF-slim conv scope. */
function kerasBatchNormLayer(scope: string): string | undefined {
  if (scope === "Conv") return "bn_Conv1";
  if (scope === "Conv_1") return "Conv_1_bn";
  const conv = kerasConvLayer(scope);
  return conv === undefined ? undefined : `${conv}_BN`;
}

/** The TF-slim names of the 260 no-top backbone tensors, in block order. */
export function tfSlimBackboneNames(): string[] {
  const names: string[] = [];
  const conv = (scope: string, depthwise = false) => {
    names.push(
      depthwise ? `${scope}_depthwise_weights` : `${scope}_weights`,
      ...BN_WEIGHTS.map((w) => `${scope}_BatchNorm_${w}`),
    );
  };

  conv("Conv");
  conv("expanded_conv_depthwise", true);
  conv("expanded_conv_project");
  for (let id = 1; id <= 16; id++) {
    conv(`expanded_conv_${id}_expand`);
    conv(`expanded_conv_${id}_depthwise`, true);
    conv(`expanded_conv_${id}_project`);
  }
  conv("Conv_1");
  return names;
}
