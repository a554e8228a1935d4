/**
 * `Conv2DBackpropFilter` and a faster `Conv2DBackpropInput` for the wasm
 * backend.
 *
 * Filter gradient, 1x1 / stride 1 / no padding (all MobileNetV2 1x1
 * convolutions): dW = x^T dy over P = N*H*W rows. XNNPACK's plain matrix
 * product is fast but its transposed-operand path is about 3x slower, so
 * the smaller of x and dy is transposed explicitly and the product runs
 * untransposed (for Ci > Co as dW^T = dy^T x, then a tiny transpose).
 * Other filters (3x3 stem, strided, padded) run the direct SIMD loop of
 * `simd/kernels.wat`, one rank-1 update of dW per tap and input pixel.
 *
 * Input gradient, 1x1 / stride 1 / no padding: a forward 1x1 convolution
 * of dy with the transposed filter (XNNPACK) instead of tfjs-wasm's scalar
 * transposed convolution, which runs about 13x slower; other filters, a
 * direct SIMD loop (about 3x faster than tfjs-wasm's kernel on the stem).
 *
 * @module
 */
import {
  backend_util,
  Conv2DBackpropFilter,
  type Conv2DBackpropFilterAttrs,
  Conv2DBackpropInput,
  type Conv2DBackpropInputAttrs,
  type KernelConfig,
  type KernelFunc,
  type TensorInfo,
} from "@tensorflow/tfjs-core";
import {
  convGeometry,
  loopArgs,
  requireChannelsLast,
} from "./conv_geometry.ts";
import { reshaped, runWasmKernel } from "./delegate.ts";
import {
  heapOffset,
  type KernelArgs,
  wasmInternals,
  withScratch,
} from "./internals.ts";
import { simdKernelsFor } from "./simd_kernels.ts";

function isPointwise(info: backend_util.Conv2DInfo): boolean {
  const { padInfo } = info;
  return info.filterHeight === 1 && info.filterWidth === 1 &&
    info.strideHeight === 1 && info.strideWidth === 1 &&
    padInfo.top === 0 && padInfo.bottom === 0 &&
    padInfo.left === 0 && padInfo.right === 0;
}

function transpose2d(
  backend: object,
  matrix: TensorInfo,
): TensorInfo {
  return runWasmKernel("Transpose", {
    inputs: { x: matrix },
    attrs: { perm: [1, 0] },
    backend,
  });
}

function matMul(
  backend: object,
  a: TensorInfo,
  b: TensorInfo,
): TensorInfo {
  const [m, k] = a.shape;
  const n = b.shape[1];
  const product = runWasmKernel("BatchMatMul", {
    inputs: { a: reshaped(a, [1, m, k]), b: reshaped(b, [1, k, n]) },
    attrs: { transposeA: false, transposeB: false },
    backend,
  });
  return reshaped(product, [m, n]);
}

/**
 * Largest Ci * Co for which the pointwise filter gradient runs the SIMD
 * loop: its accumulator (4 bytes each) must stay in L1/L2. Above it, P is
 * small in practice (late, narrow layers) and XNNPACK's product wins.
 */
const SIMD_POINTWISE_MAX_FILTER = 16384;

/** dW [1, 1, Ci, Co] of a pointwise convolution. */
function pointwiseFilterGrad(
  backend: object,
  x: TensorInfo,
  dy: TensorInfo,
  info: backend_util.Conv2DInfo,
): TensorInfo {
  const rows = info.batchSize * info.inHeight * info.inWidth;
  const { inChannels, outChannels } = info;
  const wasm = wasmInternals(backend);

  if (inChannels * outChannels <= SIMD_POINTWISE_MAX_FILTER) {
    const out = wasm.makeOutput(info.filterShape, "float32");
    withScratch(wasm, inChannels * outChannels, (acc) => {
      simdKernelsFor(wasm).pwFilterGrad(
        heapOffset(wasm, x),
        heapOffset(wasm, dy),
        heapOffset(wasm, out),
        acc,
        rows,
        inChannels,
        outChannels,
      );
    });
    return out;
  }

  // XNNPACK packs the right-hand operand on every call: make it the
  // smaller of x and dy, and transpose the other.
  const x2d = reshaped(x, [rows, inChannels]);
  const dy2d = reshaped(dy, [rows, outChannels]);
  if (outChannels <= inChannels) {
    const xT = transpose2d(backend, x2d);
    const dW = matMul(backend, xT, dy2d);
    wasm.disposeData(xT.dataId);
    return reshaped(dW, info.filterShape);
  }

  const dyT = transpose2d(backend, dy2d);
  const dWT = matMul(backend, dyT, x2d);
  const dW = transpose2d(backend, dWT);
  wasm.disposeData(dyT.dataId);
  wasm.disposeData(dWT.dataId);
  return reshaped(dW, info.filterShape);
}

function conv2dBackpropFilter(args: KernelArgs): TensorInfo {
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args.attrs as unknown as Conv2DBackpropFilterAttrs;
  requireChannelsLast(Conv2DBackpropFilter, attrs.dataFormat);
  const info = backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  if (isPointwise(info)) {
    return pointwiseFilterGrad(args.backend, x, dy, info);
  }

  // TODO(#4): wide k x k filters (Ci * Co in the thousands, absent from
  // MobileNetV2) outgrow this loop's L1 accumulator; k * k shifted-view
  // matrix products would suit them better.
  const backend = wasmInternals(args.backend);
  const g = convGeometry(info);
  const out = backend.makeOutput(info.filterShape, "float32");
  const filterSize = g.filterHeight * g.filterWidth * g.inChannels *
    g.outChannels;
  withScratch(backend, filterSize, (acc) => {
    simdKernelsFor(backend).convFilterGrad(
      heapOffset(backend, x),
      heapOffset(backend, dy),
      heapOffset(backend, out),
      acc,
      g.batch,
      g.inHeight,
      g.inWidth,
      g.inChannels,
      g.outChannels,
      ...loopArgs(g),
    );
  });
  return out;
}

/**
 * dx of a general convolution by the direct SIMD loop: per output pixel
 * and tap, dx[ci] += f[i, j, ci, :] . dy[:] (contiguous dot products).
 * It serves the strided 3x3 stem, whose dx tfjs computes although no
 * variable needs it (fused conv2d's gradient returns both at once).
 */
function directInputGrad(
  backend: object,
  dy: TensorInfo,
  filter: TensorInfo,
  info: backend_util.Conv2DInfo,
): TensorInfo {
  const wasm = wasmInternals(backend);
  const g = convGeometry(info);
  const dx = wasm.makeOutput(info.inShape, "float32");
  simdKernelsFor(wasm).convInputGrad(
    heapOffset(wasm, dy),
    heapOffset(wasm, filter),
    heapOffset(wasm, dx),
    g.batch,
    g.inHeight,
    g.inWidth,
    g.inChannels,
    g.outChannels,
    ...loopArgs(g),
  );
  return dx;
}

/**
 * A `Conv2DBackpropInput` kernel that takes the XNNPACK path for pointwise
 * convolutions and hands everything else to `native`, the wasm backend's
 * own kernel (whose setup function it keeps, so that it still runs when
 * the backend starts).
 */
export function conv2dBackpropInputConfig(native: KernelConfig): KernelConfig {
  const fallback = native.kernelFunc;
  const kernelFunc = (args: KernelArgs): TensorInfo => {
    const { dy, filter } = args.inputs as {
      dy: TensorInfo;
      filter: TensorInfo;
    };
    const attrs = args.attrs as unknown as Conv2DBackpropInputAttrs;
    const info = backend_util.computeConv2DInfo(
      attrs.inputShape,
      filter.shape as [number, number, number, number],
      attrs.strides,
      1,
      attrs.pad,
      attrs.dimRoundingMode,
    );
    if (attrs.dataFormat === "NCHW") return fallback(args) as TensorInfo;
    if (!isPointwise(info)) {
      return directInputGrad(args.backend, dy, filter, info);
    }

    const [, , inChannels, outChannels] = filter.shape;
    const filterT = transpose2d(
      args.backend,
      reshaped(filter, [inChannels, outChannels]),
    );
    const dx = runWasmKernel("Conv2D", {
      inputs: {
        x: dy,
        filter: reshaped(filterT, [1, 1, outChannels, inChannels]),
      },
      attrs: {
        strides: 1,
        pad: "valid",
        dataFormat: "NHWC",
        dilations: 1,
        ...(attrs.dimRoundingMode === undefined
          ? {}
          : { dimRoundingMode: attrs.dimRoundingMode }),
      },
      backend: args.backend,
    });
    wasmInternals(args.backend).disposeData(filterT.dataId);
    return dx;
  };
  return {
    kernelName: Conv2DBackpropInput,
    backendName: "wasm",
    setupFunc: native.setupFunc,
    kernelFunc: kernelFunc as unknown as KernelFunc,
  };
}

/** Kernel config of `Conv2DBackpropFilter` on wasm. */
export const conv2dBackpropFilterConfig: KernelConfig = {
  kernelName: Conv2DBackpropFilter,
  backendName: "wasm",
  kernelFunc: conv2dBackpropFilter as unknown as KernelFunc,
};
