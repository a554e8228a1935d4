/**
 * Routes tfjs-layers' `BatchNormalization` (training mode),
 * `ReLU({maxValue: 6})` and bias-free `Conv2D` (training mode) to fused
 * wasm paths while the wasm backend is active.
 *
 * Why at the layer: tfjs-layers computes a training batch's statistics
 * with `tf.moments` and normalises with `tf.batchNorm`, so the tape holds
 * six elementwise ops per BatchNormalization layer whose gradients add up
 * to about 25 passes over the activation. Kernel-level gradients cannot
 * merge them (each op's gradient runs on its own); only the layer knows
 * that mean and variance are the batch's own. Likewise its ReLU layer
 * computes relu then clipByValue, two ops where relu6 is one. And its
 * Conv2D layer always takes tfjs's fused conv2d, whose gradient computes
 * the input gradient eagerly even where nothing needs it: for the stem
 * convolution on the image that is 5-10% of a MobileNetV2 step. A
 * bias-free, linear Conv2D in training mode runs the plain tf.conv2d
 * instead (the same XNNPACK kernel forward), whose input gradient tfjs
 * only computes when it reaches a variable.
 *
 * The replacement `call` methods reproduce the originals exactly (the same
 * normalisation, the same float32 moving-average arithmetic, the same
 * gradients up to float rounding) and defer to them whenever the
 * backend is not wasm, the layer is not in training mode, or the layer is
 * configured in a way the fused kernels do not cover (normalisation axis
 * other than the last, no centre/scale, non-float input). Installing is
 * idempotent and `uninstall` restores the original methods.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-layers";
import { BATCH_NORM_TRAIN } from "./batch_norm_training.ts";

type CallFn = (inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs) => unknown;

interface Kwargs {
  training?: boolean;
  [key: string]: unknown;
}

interface LayerVariableLike {
  read(): tf.Tensor;
  write(value: tf.Tensor): void;
}

interface BatchNormalizationLike {
  axis: number;
  center: boolean;
  scale: boolean;
  epsilon: number;
  momentum: number;
  gamma: LayerVariableLike | null;
  beta: LayerVariableLike | null;
  movingMean: LayerVariableLike;
  movingVariance: LayerVariableLike;
}

interface ReLULike {
  maxValue?: number;
}

interface ConvLike {
  rank: number;
  kernel: LayerVariableLike;
  bias?: LayerVariableLike | null;
  activation?: { getClassName(): string } | null;
  strides: number[];
  padding: string;
  dataFormat: string;
  dilationRate: number[];
}

interface Patch {
  prototype: { call: CallFn };
  original: CallFn;
  /** Whether `call` was the prototype's own (else inherited). */
  own: boolean;
}

const patches = new Map<string, Patch>();

/** Raised when a tfjs-layers class to patch is not registered. */
export class LayerClassError extends Error {
  /** The Keras class name looked up. */
  readonly className: string;

  constructor(className: string) {
    super(
      `Cannot fuse layer '${className}': tfjs-layers did not register it ` +
        `with tf.serialization`,
    );
    this.name = "LayerClassError";
    this.className = className;
  }
}

function layerPrototype(className: string): { call: CallFn } {
  const entry = tf.serialization.SerializationMap.getMap()
    .classNameMap[className];
  if (entry === undefined) throw new LayerClassError(className);
  return entry[0].prototype as unknown as { call: CallFn };
}

function singleTensor(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  return Array.isArray(inputs) ? inputs[0] : inputs;
}

function onWasm(): boolean {
  return tf.getBackend() === "wasm";
}

function batchNormCall(original: CallFn): CallFn {
  return function (
    this: BatchNormalizationLike,
    inputs: tf.Tensor | tf.Tensor[],
    kwargs: Kwargs,
  ): unknown {
    const x = singleTensor(inputs);
    const axis = this.axis >= 0 ? this.axis : this.axis + x.rank;
    const fusable = kwargs?.training === true && onWasm() &&
      axis === x.rank - 1 && x.dtype === "float32" &&
      this.gamma != null && this.beta != null;
    if (!fusable) return original.call(this, inputs, kwargs);

    const gamma = this.gamma as LayerVariableLike;
    const beta = this.beta as LayerVariableLike;
    return tf.tidy(() => {
      const [y, , , movingMean, movingVariance] = tf.engine().runKernel(
        BATCH_NORM_TRAIN,
        {
          x,
          scale: gamma.read(),
          offset: beta.read(),
          movingMean: this.movingMean.read(),
          movingVariance: this.movingVariance.read(),
        },
        { epsilon: this.epsilon, momentum: this.momentum },
      ) as tf.Tensor[];
      this.movingMean.write(movingMean);
      this.movingVariance.write(movingVariance);
      return y;
    });
  };
}

function reluCall(original: CallFn): CallFn {
  return function (
    this: ReLULike,
    inputs: tf.Tensor | tf.Tensor[],
    kwargs: Kwargs,
  ): unknown {
    const x = singleTensor(inputs);
    if (this.maxValue !== 6 || !onWasm() || x.dtype !== "float32") {
      return original.call(this, inputs, kwargs);
    }
    return tf.relu6(x);
  };
}

function convCall(original: CallFn): CallFn {
  return function (
    this: ConvLike,
    inputs: tf.Tensor | tf.Tensor[],
    kwargs: Kwargs,
  ): unknown {
    const x = singleTensor(inputs);
    const plain = kwargs?.training === true && onWasm() && this.rank === 2 &&
      x.rank === 4 && x.dtype === "float32" && this.bias == null &&
      this.activation?.getClassName() === "linear" &&
      this.dataFormat === "channelsLast" &&
      (this.padding === "same" || this.padding === "valid");
    if (!plain) return original.call(this, inputs, kwargs);
    return tf.conv2d(
      x as tf.Tensor4D,
      this.kernel.read() as tf.Tensor4D,
      this.strides as [number, number],
      this.padding as "same" | "valid",
      "NHWC",
      this.dilationRate as [number, number],
    );
  };
}

function install(className: string, wrap: (original: CallFn) => CallFn) {
  if (patches.has(className)) return;
  const prototype = layerPrototype(className);
  const own = Object.hasOwn(prototype, "call");
  const original = prototype.call;
  prototype.call = wrap(original);
  patches.set(className, { prototype, original, own });
}

/**
 * Routes BatchNormalization, ReLU(6) and bias-free linear Conv2D layers to
 * the wasm fast paths.
 */
export function installLayerFusion(): void {
  install("BatchNormalization", batchNormCall);
  install("ReLU", reluCall);
  install("Conv2D", convCall);
}

/** Restores tfjs-layers' own `call` methods. */
export function uninstallLayerFusion(): void {
  for (const { prototype, original, own } of patches.values()) {
    if (own) {
      prototype.call = original;
    } else {
      delete (prototype as { call?: CallFn }).call;
    }
  }
  patches.clear();
}

/** Whether {@linkcode installLayerFusion} is in effect. */
export function layerFusionInstalled(): boolean {
  return patches.size > 0;
}
