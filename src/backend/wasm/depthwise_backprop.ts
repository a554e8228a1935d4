/**
 * `DepthwiseConv2dNativeBackpropFilter` and `...BackpropInput` for the
 * wasm backend, as single passes of the SIMD loops in `simd/kernels.wat`
 * over the backend's heap.
 *
 * The filter gradient is the case that op compositions handle worst: per
 * channel it is a correlation of x with dy summed over the batch, which no
 * XNNPACK kernel expresses (nine slice-multiply-sum passes cost about 25x
 * a forward depthwise convolution here). The loop walks dy once and, per
 * tap, adds x * dy into a per-row accumulator of kh * kw * C floats that
 * stays in L1. The input gradient scatters f * dy into dx the same way,
 * which covers every stride, padding and dilation without building the
 * zero-upsampled dy that a convolution formulation needs at stride 2; at
 * stride 1 XNNPACK's depthwise convolution with the flipped filter is a
 * little faster and is used instead.
 *
 * Channel multipliers above 1 run the same loops on C * M channels (x
 * repeated M times, or dx summed over M afterwards).
 *
 * @module
 */
import {
  backend_util,
  DepthwiseConv2dNativeBackpropFilter,
  type DepthwiseConv2dNativeBackpropFilterAttrs,
  DepthwiseConv2dNativeBackpropInput,
  type DepthwiseConv2dNativeBackpropInputAttrs,
  type KernelConfig,
  type TensorInfo,
} from "@tensorflow/tfjs-core";
import { convGeometry, loopArgs } from "./conv_geometry.ts";
import { runWasmKernel } from "./delegate.ts";
import {
  heapOffset,
  type KernelArgs,
  type WasmBackendInternals,
  wasmInternals,
  withScratch,
} from "./internals.ts";
import { simdKernelsFor } from "./simd_kernels.ts";

/** x [N, H, W, C] -> [N, H, W, C * M], each channel repeated M times. */
function repeatChannels(
  backend: WasmBackendInternals,
  x: TensorInfo,
  multiplier: number,
): TensorInfo {
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const out = backend.makeOutput([n, h, w, c * multiplier], "float32");
  const heap = backend.wasm.HEAPF32;
  const src = heapOffset(backend, x) >>> 2;
  const dst = heapOffset(backend, out) >>> 2;
  for (let p = 0; p < n * h * w * c; p++) {
    heap.fill(heap[src + p], dst + p * multiplier, dst + (p + 1) * multiplier);
  }
  return out;
}

/** [P, C * M] -> [P, C], summing each group of M adjacent channels. */
function sumChannelGroups(
  backend: WasmBackendInternals,
  wide: TensorInfo,
  shape: number[],
  multiplier: number,
): TensorInfo {
  const out = backend.makeOutput(shape, "float32");
  const heap = backend.wasm.HEAPF32;
  const src = heapOffset(backend, wide) >>> 2;
  const dst = heapOffset(backend, out) >>> 2;
  const size = shape.reduce((a, b) => a * b, 1);
  for (let p = 0; p < size; p++) {
    let total = 0;
    for (let m = 0; m < multiplier; m++) {
      total += heap[src + p * multiplier + m];
    }
    heap[dst + p] = total;
  }
  return out;
}

function depthwiseBackpropFilter(args: KernelArgs): TensorInfo {
  const backend = wasmInternals(args.backend);
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args
    .attrs as unknown as DepthwiseConv2dNativeBackpropFilterAttrs;
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    attrs.dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    true,
  );
  const g = convGeometry(info);
  const multiplier = g.outChannels / g.inChannels;

  const wideX = multiplier === 1 ? x : repeatChannels(backend, x, multiplier);
  const out = backend.makeOutput(info.filterShape, "float32");
  const taps = g.filterHeight * g.filterWidth;
  withScratch(backend, taps * g.outChannels, (acc) => {
    simdKernelsFor(backend).dwFilterGrad(
      heapOffset(backend, wideX),
      heapOffset(backend, dy),
      heapOffset(backend, out),
      acc,
      g.batch,
      g.inHeight,
      g.inWidth,
      g.outChannels,
      ...loopArgs(g),
    );
  });

  if (wideX !== x) backend.disposeData(wideX.dataId);
  return out;
}

/**
 * Stride 1, multiplier 1: dx is a depthwise convolution of dy with the
 * spatially flipped filter, padded by the complement of the forward
 * padding, which XNNPACK runs about 25% faster than the scatter loop.
 * Returns null when the complement padding would be negative.
 */
function flippedFilterInputGrad(
  backend: WasmBackendInternals,
  dy: TensorInfo,
  filter: TensorInfo,
  info: backend_util.Conv2DInfo,
): TensorInfo | null {
  const { padInfo } = info;
  const extraHeight = info.effectiveFilterHeight - 1;
  const extraWidth = info.effectiveFilterWidth - 1;
  const pads = [
    extraHeight - padInfo.top,
    extraHeight - padInfo.bottom,
    extraWidth - padInfo.left,
    extraWidth - padInfo.right,
  ];
  if (pads.some((p) => p < 0)) return null;

  const [kh, kw, channels] = filter.shape;
  const flipped = backend.makeOutput(filter.shape, "float32");
  const heap = backend.wasm.HEAPF32;
  const src = heapOffset(backend, filter) >>> 2;
  const dst = heapOffset(backend, flipped) >>> 2;
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const from = src + ((kh - 1 - i) * kw + (kw - 1 - j)) * channels;
      heap.copyWithin(dst + (i * kw + j) * channels, from, from + channels);
    }
  }
  const dx = runWasmKernel("DepthwiseConv2dNative", {
    inputs: { x: dy, filter: flipped },
    attrs: {
      strides: 1,
      pad: [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]], [0, 0]],
      dilations: [info.dilationHeight, info.dilationWidth],
    },
    backend,
  });
  backend.disposeData(flipped.dataId);
  return dx;
}

function depthwiseBackpropInput(args: KernelArgs): TensorInfo {
  const backend = wasmInternals(args.backend);
  const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
  const attrs = args
    .attrs as unknown as DepthwiseConv2dNativeBackpropInputAttrs;
  const info = backend_util.computeConv2DInfo(
    attrs.inputShape,
    filter.shape as [number, number, number, number],
    attrs.strides,
    attrs.dilations,
    attrs.pad,
    attrs.dimRoundingMode,
    true,
  );
  const g = convGeometry(info);
  const multiplier = g.outChannels / g.inChannels;
  if (multiplier === 1 && g.strideHeight === 1 && g.strideWidth === 1) {
    const dx = flippedFilterInputGrad(backend, dy, filter, info);
    if (dx !== null) return dx;
  }

  const wideShape = [g.batch, g.inHeight, g.inWidth, g.outChannels];
  const wide = backend.makeOutput(wideShape, "float32");
  simdKernelsFor(backend).dwInputGrad(
    heapOffset(backend, dy),
    heapOffset(backend, filter),
    heapOffset(backend, wide),
    g.batch,
    g.inHeight,
    g.inWidth,
    g.outChannels,
    ...loopArgs(g),
  );
  if (multiplier === 1) return wide;

  const dx = sumChannelGroups(backend, wide, info.inShape, multiplier);
  backend.disposeData(wide.dataId);
  return dx;
}

/** Kernel config of `DepthwiseConv2dNativeBackpropFilter` on wasm. */
export const depthwiseBackpropFilterConfig: KernelConfig = {
  kernelName: DepthwiseConv2dNativeBackpropFilter,
  backendName: "wasm",
  kernelFunc: depthwiseBackpropFilter,
};

/** Kernel config of `DepthwiseConv2dNativeBackpropInput` on wasm. */
export const depthwiseBackpropInputConfig: KernelConfig = {
  kernelName: DepthwiseConv2dNativeBackpropInput,
  backendName: "wasm",
  kernelFunc: depthwiseBackpropInput,
};
