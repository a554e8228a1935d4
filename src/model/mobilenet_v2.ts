/**
 * MobileNetV2 with the layer names of the Keras application
 * (`keras.applications.MobileNetV2`), so that pretrained Keras weights load
 * by name and per-layer learning-rate rules written for Keras apply as is.
 *
 * Stride-2 depthwise convolutions use `same` padding instead of Keras's
 * explicit `ZeroPadding2D` + `valid`: for a 3x3 kernel and stride 2 both pad
 * (0, 1) on even sizes and (1, 1) on odd sizes, so the outputs are identical
 * and the weights are the same tensors; one pad op per block is saved.
 *
 * @module
 */
import * as tfl from "@tensorflow/tfjs-layers";
import type { LayersModel } from "../_tfjs_types.ts";

/** Width multipliers with published Keras ImageNet weights. */
export const ALPHAS = [0.35, 0.5, 0.75, 1.0] as const;

/** The width multipliers this builder accepts. */
export type Alpha = typeof ALPHAS[number];

/** Options of {@linkcode buildMobileNetV2}. */
export interface MobileNetV2Options {
  /** Width multiplier. @default 1.0 */
  alpha?: Alpha;
  /** Side of the square input in pixels, 32 to 224. @default 224 */
  imageSize?: number;
  /** Classes of the softmax head. @default 5 */
  numClasses?: number;
  /** Units of the hidden head layer `flower_dense`. @default 16 */
  headUnits?: number;
  /** Seed of the initialisers; each layer derives its own from it. @default 0 */
  seed?: number;
  /** Build only the backbone (up to `out_relu`), without pooling and head. */
  backboneOnly?: boolean;
}

/** Raised for an alpha, image size or class count the model cannot take. */
export class ModelConfigError extends RangeError {
  /** The option at fault. */
  readonly field: string;

  /** Makes the error for option `field`, with what is wrong with it. */
  constructor(field: string, message: string) {
    super(`Invalid model option "${field}": ${message}`);
    this.name = "ModelConfigError";
    this.field = field;
  }
}

/** The Keras rule that rounds channel counts to a multiple of `divisor`. */
export function makeDivisible(value: number, divisor = 8): number {
  const rounded = Math.max(
    divisor,
    Math.floor((value + divisor / 2) / divisor) * divisor,
  );

  // Rounding down must not remove more than 10% of the channels.
  return rounded < 0.9 * value ? rounded + divisor : rounded;
}

/** One inverted residual block: output filters, stride, expansion factor. */
interface BlockSpec {
  filters: number;
  stride: 1 | 2;
  expansion: number;
}

/** The 17 inverted residual blocks of MobileNetV2, block 0 first. */
export const BLOCKS: readonly BlockSpec[] = [
  { filters: 16, stride: 1, expansion: 1 },
  { filters: 24, stride: 2, expansion: 6 },
  { filters: 24, stride: 1, expansion: 6 },
  { filters: 32, stride: 2, expansion: 6 },
  { filters: 32, stride: 1, expansion: 6 },
  { filters: 32, stride: 1, expansion: 6 },
  { filters: 64, stride: 2, expansion: 6 },
  { filters: 64, stride: 1, expansion: 6 },
  { filters: 64, stride: 1, expansion: 6 },
  { filters: 64, stride: 1, expansion: 6 },
  { filters: 96, stride: 1, expansion: 6 },
  { filters: 96, stride: 1, expansion: 6 },
  { filters: 96, stride: 1, expansion: 6 },
  { filters: 160, stride: 2, expansion: 6 },
  { filters: 160, stride: 1, expansion: 6 },
  { filters: 160, stride: 1, expansion: 6 },
  { filters: 320, stride: 1, expansion: 6 },
];

/** Keras's BatchNormalization settings in MobileNetV2. */
const BN_ARGS = { axis: -1, epsilon: 1e-3, momentum: 0.999 } as const;

/** A 31-bit seed for one layer, a pure function of the run seed and name. */
export function layerSeed(seed: number, layerName: string): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < layerName.length; i++) {
    h = Math.imul(h ^ layerName.charCodeAt(i), 0x01000193) >>> 0;
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) & 0x7fffffff;
}

function checkOptions(
  options: MobileNetV2Options,
): Required<Omit<MobileNetV2Options, "backboneOnly">> {
  const {
    alpha = 1.0,
    imageSize = 224,
    numClasses = 5,
    headUnits = 16,
    seed = 0,
  } = options;

  if (!ALPHAS.includes(alpha)) {
    throw new ModelConfigError(
      "alpha",
      `expected one of ${ALPHAS.join(", ")}, got ${alpha}`,
    );
  }
  if (!Number.isInteger(imageSize) || imageSize < 32 || imageSize > 224) {
    throw new ModelConfigError(
      "imageSize",
      `expected an integer from 32 to 224, got ${imageSize}`,
    );
  }
  if (!Number.isInteger(numClasses) || numClasses < 2) {
    throw new ModelConfigError(
      "numClasses",
      `expected an integer >= 2, got ${numClasses}`,
    );
  }
  if (!Number.isInteger(headUnits) || headUnits < 1) {
    throw new ModelConfigError(
      "headUnits",
      `expected a positive integer, got ${headUnits}`,
    );
  }
  if (!Number.isInteger(seed) || seed < 0) {
    throw new ModelConfigError(
      "seed",
      `expected a non-negative integer, got ${seed}`,
    );
  }
  return { alpha, imageSize, numClasses, headUnits, seed };
}

/**
 * Builds MobileNetV2 with the flower head (global average pooling,
 * `flower_dense` Dense(16, relu), `flower_prob` Dense(classes, softmax)).
 * Weights are freshly initialised from `seed`; load pretrained ones with
 * the weight loaders.
 *
 * @example
 * ```ts
 * const model = buildMobileNetV2({ alpha: 0.35, imageSize: 96 });
 * model.getLayer("block_16_project_BN");
 * ```
 */
export function buildMobileNetV2(
  options: MobileNetV2Options = {},
): LayersModel {
  const { alpha, imageSize, numClasses, headUnits, seed } = checkOptions(
    options,
  );
  const kernelInit = (name: string) =>
    tfl.initializers.glorotUniform({ seed: layerSeed(seed, name) });

  const input = tfl.input({
    shape: [imageSize, imageSize, 3],
    name: "input_1",
  });

  let x = tfl.layers.conv2d({
    filters: makeDivisible(32 * alpha),
    kernelSize: 3,
    strides: 2,
    padding: "same",
    useBias: false,
    kernelInitializer: kernelInit("Conv1"),
    name: "Conv1",
  }).apply(input) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ ...BN_ARGS, name: "bn_Conv1" })
    .apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.reLU({ maxValue: 6, name: "Conv1_relu" })
    .apply(x) as tfl.SymbolicTensor;

  BLOCKS.forEach((block, id) => {
    x = invertedResidual(x, { ...block, id, alpha, kernelInit });
  });

  // Keras keeps 1280 channels for alpha <= 1, the widths offered here.
  x = tfl.layers.conv2d({
    filters: 1280,
    kernelSize: 1,
    useBias: false,
    kernelInitializer: kernelInit("Conv_1"),
    name: "Conv_1",
  }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({ ...BN_ARGS, name: "Conv_1_bn" })
    .apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.reLU({ maxValue: 6, name: "out_relu" })
    .apply(x) as tfl.SymbolicTensor;

  if (options.backboneOnly) {
    return tfl.model({ inputs: input, outputs: x, name: "mobilenetv2" });
  }

  x = tfl.layers.globalAveragePooling2d({ name: "global_average_pooling2d" })
    .apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.dense({
    units: headUnits,
    activation: "relu",
    kernelInitializer: kernelInit("flower_dense"),
    name: "flower_dense",
  }).apply(x) as tfl.SymbolicTensor;
  const output = tfl.layers.dense({
    units: numClasses,
    activation: "softmax",
    kernelInitializer: kernelInit("flower_prob"),
    name: "flower_prob",
  }).apply(x) as tfl.SymbolicTensor;

  return tfl.model({ inputs: input, outputs: output, name: "mobilenetv2" });
}

interface BlockArgs extends BlockSpec {
  id: number;
  alpha: number;
  kernelInit: (
    name: string,
  ) => ReturnType<typeof tfl.initializers.glorotUniform>;
}

function invertedResidual(
  input: tfl.SymbolicTensor,
  args: BlockArgs,
): tfl.SymbolicTensor {
  const { id, alpha, filters, stride, expansion, kernelInit } = args;
  const inChannels = input.shape[input.shape.length - 1] as number;
  const outChannels = makeDivisible(Math.trunc(filters * alpha));
  const prefix = id === 0 ? "expanded_conv_" : `block_${id}_`;
  let x = input;

  if (id !== 0) {
    x = tfl.layers.conv2d({
      filters: expansion * inChannels,
      kernelSize: 1,
      padding: "same",
      useBias: false,
      kernelInitializer: kernelInit(`${prefix}expand`),
      name: `${prefix}expand`,
    }).apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.batchNormalization({
      ...BN_ARGS,
      name: `${prefix}expand_BN`,
    }).apply(x) as tfl.SymbolicTensor;
    x = tfl.layers.reLU({ maxValue: 6, name: `${prefix}expand_relu` })
      .apply(x) as tfl.SymbolicTensor;
  }

  x = tfl.layers.depthwiseConv2d({
    kernelSize: 3,
    strides: stride,
    padding: "same",
    useBias: false,
    depthwiseInitializer: kernelInit(`${prefix}depthwise`),
    name: `${prefix}depthwise`,
  }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({
    ...BN_ARGS,
    name: `${prefix}depthwise_BN`,
  }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.reLU({ maxValue: 6, name: `${prefix}depthwise_relu` })
    .apply(x) as tfl.SymbolicTensor;

  x = tfl.layers.conv2d({
    filters: outChannels,
    kernelSize: 1,
    padding: "same",
    useBias: false,
    kernelInitializer: kernelInit(`${prefix}project`),
    name: `${prefix}project`,
  }).apply(x) as tfl.SymbolicTensor;
  x = tfl.layers.batchNormalization({
    ...BN_ARGS,
    name: `${prefix}project_BN`,
  }).apply(x) as tfl.SymbolicTensor;

  if (inChannels === outChannels && stride === 1) {
    return tfl.layers.add({ name: `${prefix}add` })
      .apply([input, x]) as tfl.SymbolicTensor;
  }
  return x;
}

/** Parameter count of a model's variables, trainable or not. */
export function countParams(model: LayersModel): number {
  return model.weights.reduce(
    (sum, w) => sum + w.shape.reduce((a: number, b) => a * (b ?? 1), 1),
    0,
  );
}
