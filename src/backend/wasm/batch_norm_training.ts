/**
 * Training-mode batch normalisation as two wasm kernels, for tfjs-layers'
 * `BatchNormalization` (see `layer_fusion.ts` for where they are used).
 *
 * tfjs-layers normalises a training batch with `tf.moments` (mean, sub,
 * square, mean) and `tf.batchNorm`, and the tape differentiates each of
 * them: about 25 full passes over every activation per layer, forward and
 * backward, each bound by memory bandwidth. Here the forward pass is one
 * read for the moments and one SIMD pass to normalise, and the backward
 * pass is the closed form
 *
 *   dx = g r (dy - mean(dy) - xhat mean(dy xhat)),  xhat = (x - mu) r,
 *   r = 1 / sqrt(var + eps),  dgamma = sum(dy xhat),  dbeta = sum(dy)
 *
 * in two passes (the sums, then dx). Biased variance, as in tfjs-layers.
 *
 * @module
 */
import type {
  GradConfig,
  KernelConfig,
  KernelFunc,
  Tensor,
  TensorInfo,
} from "@tensorflow/tfjs-core";
import * as tf from "@tensorflow/tfjs-core";
import { channelLayout, fold, HeapArena, tile } from "./channel_layout.ts";
import {
  heapOffset,
  type KernelArgs,
  type WasmBackendInternals,
  wasmInternals,
} from "./internals.ts";
import { simdKernelsFor } from "./simd_kernels.ts";

/**
 * Kernel: {x, scale, offset, movingMean, movingVariance} ->
 * [y, mean, variance, newMovingMean, newMovingVariance],
 * attrs {epsilon, momentum}. The moving averages follow tfjs-layers'
 * float32 op sequence m - (m - batch) * (1 - momentum) exactly, without
 * six tiny kernel calls per layer.
 */
export const BATCH_NORM_TRAIN = "DptrainBatchNormTrain";

/**
 * Kernel: {x, dy, mean, variance, scale} -> [dx, dscale, doffset],
 * attrs {epsilon}.
 */
export const BATCH_NORM_TRAIN_GRAD = "DptrainBatchNormTrainGrad";

function writeVector(
  backend: WasmBackendInternals,
  values: Float32Array,
): TensorInfo {
  const out = backend.makeOutput([values.length], "float32");
  backend.wasm.HEAPF32.set(values, heapOffset(backend, out) >>> 2);
  return out;
}

function readVector(
  backend: WasmBackendInternals,
  tensor: TensorInfo,
): Float32Array {
  const start = heapOffset(backend, tensor) >>> 2;
  const length = tensor.shape.reduce((a, b) => a * b, 1);
  return backend.wasm.HEAPF32.slice(start, start + length);
}

/** Tensors and epsilon of a batch normalisation over the last axis. */
export interface NormalizeInputs {
  x: TensorInfo;
  mean: Float32Array;
  variance: Float32Array;
  scale: Float32Array | null;
  offset: Float32Array | null;
  epsilon: number;
}

/**
 * y = (x - mean) * scale / sqrt(variance + eps) + offset over the last
 * axis, one SIMD pass (tfjs-wasm's FusedBatchNorm is about 3x slower).
 */
export function normalize(
  backend: WasmBackendInternals,
  inputs: NormalizeInputs,
): TensorInfo {
  const { x, mean, variance, scale, offset, epsilon } = inputs;
  const layout = channelLayout(x.shape);
  const { channels, group } = layout;
  const factors = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    factors[c] = (scale === null ? 1 : scale[c]) /
      Math.sqrt(variance[c] + epsilon);
  }
  const shift = offset ?? new Float32Array(channels);

  const y = backend.makeOutput(x.shape, "float32");
  const arena = new HeapArena(backend, 3 * layout.width);
  try {
    simdKernelsFor(backend).channelAffine(
      heapOffset(backend, x),
      arena.put(tile(mean, group)),
      arena.put(tile(factors, group)),
      arena.put(tile(shift, group)),
      heapOffset(backend, y),
      layout.rows,
      layout.width,
    );
  } finally {
    arena.free();
  }
  return y;
}

/**
 * Batch mean and biased variance per channel in one pass over x: sums of
 * x and of (x - s)^2 around a shift s = the first row of x, then
 * var = mean((x - s)^2) - (mean - s)^2. A sample of the channel lies
 * within a few standard deviations of its mean, so the subtraction loses
 * at most a digit or two of float32, unlike plain sums of squares.
 */
function batchMoments(
  backend: WasmBackendInternals,
  x: TensorInfo,
): { mean: Float32Array; variance: Float32Array } {
  const layout = channelLayout(x.shape);
  const { channels, group, width } = layout;
  const count = layout.rows * group;
  const start = heapOffset(backend, x) >>> 2;
  const shift = backend.wasm.HEAPF32.slice(start, start + channels);
  const arena = new HeapArena(backend, 5 * width);
  try {
    const shiftAt = arena.put(tile(shift, group));
    const sums = arena.reserve(width);
    const squares = arena.reserve(width);
    const acc = arena.reserve(2 * width);
    simdKernelsFor(backend).channelMoments(
      heapOffset(backend, x),
      shiftAt,
      sums,
      squares,
      acc,
      layout.rows,
      width,
    );
    const mean = fold(arena.read(sums, width), channels).map((v) => v / count);
    const shifted = fold(arena.read(squares, width), channels);
    const variance = shifted.map((v, c) => {
      const offset = mean[c] - shift[c];
      return Math.max(0, v / count - offset * offset);
    });
    return { mean, variance };
  } finally {
    arena.free();
  }
}

/** tfjs-layers' m - (m - batch) * (1 - momentum), in float32 steps. */
function movingAverage(
  current: Float32Array,
  batch: Float32Array,
  momentum: number,
): Float32Array {
  const decay = Math.fround(1 - momentum);
  return current.map((value, c) =>
    value - Math.fround(Math.fround(value - batch[c]) * decay)
  );
}

function batchNormTrain(args: KernelArgs): TensorInfo[] {
  const backend = wasmInternals(args.backend);
  const { x, scale, offset, movingMean, movingVariance } = args.inputs as {
    x: TensorInfo;
    scale: TensorInfo;
    offset: TensorInfo;
    movingMean: TensorInfo;
    movingVariance: TensorInfo;
  };
  const { epsilon, momentum } = args.attrs as {
    epsilon: number;
    momentum: number;
  };

  const { mean, variance } = batchMoments(backend, x);
  const y = normalize(backend, {
    x,
    mean,
    variance,
    scale: readVector(backend, scale),
    offset: readVector(backend, offset),
    epsilon,
  });
  return [
    y,
    writeVector(backend, mean),
    writeVector(backend, variance),
    writeVector(
      backend,
      movingAverage(readVector(backend, movingMean), mean, momentum),
    ),
    writeVector(
      backend,
      movingAverage(readVector(backend, movingVariance), variance, momentum),
    ),
  ];
}

function batchNormTrainGrad(args: KernelArgs): TensorInfo[] {
  const backend = wasmInternals(args.backend);
  const { x, dy, mean, variance, scale } = args.inputs as {
    x: TensorInfo;
    dy: TensorInfo;
    mean: TensorInfo;
    variance: TensorInfo;
    scale: TensorInfo;
  };
  const { epsilon } = args.attrs as { epsilon: number };
  const layout = channelLayout(x.shape);
  const { channels, group, width } = layout;
  const count = layout.rows * group;
  const simd = simdKernelsFor(backend);

  const meanValues = readVector(backend, mean);
  const varianceValues = readVector(backend, variance);
  const gamma = readVector(backend, scale);
  const arena = new HeapArena(backend, 9 * width);
  try {
    const tiledMean = arena.put(tile(meanValues, group));
    const sumDyAt = arena.reserve(width);
    const sumDyXAt = arena.reserve(width);
    const acc = arena.reserve(2 * width);
    simd.bnGradSums(
      heapOffset(backend, x),
      heapOffset(backend, dy),
      tiledMean,
      sumDyAt,
      sumDyXAt,
      acc,
      layout.rows,
      width,
    );
    const sumDy = fold(arena.read(sumDyAt, width), channels);
    const sumDyX = fold(arena.read(sumDyXAt, width), channels);

    const dScale = new Float32Array(channels);
    const a = new Float32Array(channels);
    const b = new Float32Array(channels);
    const e = new Float32Array(channels);
    for (let c = 0; c < channels; c++) {
      const invStd = 1 / Math.sqrt(varianceValues[c] + epsilon);
      dScale[c] = sumDyX[c] * invStd;
      a[c] = gamma[c] * invStd;
      b[c] = sumDy[c] / count;
      e[c] = -gamma[c] * invStd * invStd * invStd * sumDyX[c] / count;
    }

    const dx = backend.makeOutput(x.shape, "float32");
    simd.bnGradInput(
      heapOffset(backend, x),
      heapOffset(backend, dy),
      arena.put(tile(a, group)),
      arena.put(tile(b, group)),
      arena.put(tile(e, group)),
      tiledMean,
      heapOffset(backend, dx),
      layout.rows,
      width,
    );
    return [dx, writeVector(backend, dScale), writeVector(backend, sumDy)];
  } finally {
    arena.free();
  }
}

/** Kernel config of {@linkcode BATCH_NORM_TRAIN} on wasm. */
export const batchNormTrainConfig: KernelConfig = {
  kernelName: BATCH_NORM_TRAIN,
  backendName: "wasm",
  kernelFunc: batchNormTrain as unknown as KernelFunc,
};

/** Kernel config of {@linkcode BATCH_NORM_TRAIN_GRAD} on wasm. */
export const batchNormTrainGradConfig: KernelConfig = {
  kernelName: BATCH_NORM_TRAIN_GRAD,
  backendName: "wasm",
  kernelFunc: batchNormTrainGrad as unknown as KernelFunc,
};

/**
 * Gradient of {@linkcode BATCH_NORM_TRAIN}: one fused backward kernel.
 * The mean, variance and moving-average outputs only feed the moving
 * averages, which are not differentiated, so their incoming gradients
 * (zeros) are ignored.
 */
export const batchNormTrainGradConfigEntry: GradConfig = {
  kernelName: BATCH_NORM_TRAIN,
  inputsToSave: ["x", "scale"],
  outputsToSave: [false, true, true, false, false],
  gradFunc: (dy, saved, attrs) => {
    const [dyOut] = dy as Tensor[];
    const [x, scale, mean, variance] = saved;
    const [dx, dScale, dOffset] = tf.engine().runKernel(
      BATCH_NORM_TRAIN_GRAD,
      { x, dy: dyOut, mean, variance, scale },
      attrs,
    ) as Tensor[];
    return { x: () => dx, scale: () => dScale, offset: () => dOffset };
  },
};
