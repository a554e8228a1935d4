/**
 * Faster wasm kernels for three forward ops that training leans on:
 *
 * - `Identity`: the engine clones every tensor it saves for the backward
 *   pass through this kernel, and tfjs-wasm copies the data each time
 *   (about 1,000 copies per MobileNetV2 step). tfjs tensors are immutable,
 *   so a new reference to the same data is enough, as in tfjs's cpu
 *   backend.
 * - `FusedBatchNorm` (inference-mode batch norm) and `Relu6`: one SIMD
 *   pass each, 2-3x faster than tfjs-wasm's scalar loops; shapes they do
 *   not cover go to the backend's own kernel.
 *
 * @module
 */
import {
  FusedBatchNorm,
  type FusedBatchNormAttrs,
  Identity,
  type KernelConfig,
  type KernelFunc,
  Relu6,
  type TensorInfo,
} from "@tensorflow/tfjs-core";
import { normalize } from "./batch_norm_training.ts";
import { heapOffset, type KernelArgs, wasmInternals } from "./internals.ts";
import { simdKernelsFor } from "./simd_kernels.ts";

function size(tensor: TensorInfo): number {
  return tensor.shape.reduce((a, b) => a * b, 1);
}

function withFallback(
  native: KernelConfig,
  fast: (args: KernelArgs) => TensorInfo | null,
): KernelConfig {
  const kernelFunc = (args: KernelArgs) =>
    fast(args) ??
      native.kernelFunc(args as Parameters<KernelFunc>[0]) as TensorInfo;
  return {
    ...native,
    kernelFunc: kernelFunc as unknown as KernelFunc,
  };
}

/** Zero-copy `Identity`: same data, one more reference. */
export const identityConfig: KernelConfig = {
  kernelName: Identity,
  backendName: "wasm",
  kernelFunc: ((args: KernelArgs): TensorInfo => {
    const { x } = args.inputs as { x: TensorInfo };
    wasmInternals(args.backend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  }) as unknown as KernelFunc,
};

/** `FusedBatchNorm` over the last axis in one pass, else `native`. */
export function fusedBatchNormConfig(native: KernelConfig): KernelConfig {
  return withFallback(native, (args) => {
    const inputs = args.inputs as {
      x: TensorInfo;
      mean: TensorInfo;
      variance: TensorInfo;
      scale?: TensorInfo;
      offset?: TensorInfo;
    };
    const { x, mean, variance } = inputs;
    const channels = x.shape[x.shape.length - 1];
    const params = [mean, variance, inputs.scale, inputs.offset];
    const perChannel = params.every((t) =>
      t === undefined || (size(t) === channels && t.dtype === "float32")
    );
    if (x.dtype !== "float32" || x.shape.length === 0 || !perChannel) {
      return null;
    }
    const attrs = args.attrs as unknown as FusedBatchNormAttrs;
    const backend = wasmInternals(args.backend);
    const read = (t: TensorInfo | undefined) => {
      if (t === undefined) return null;
      const start = heapOffset(backend, t) >>> 2;
      return backend.wasm.HEAPF32.slice(start, start + channels);
    };
    return normalize(backend, {
      x,
      mean: read(mean) as Float32Array,
      variance: read(variance) as Float32Array,
      scale: read(inputs.scale),
      offset: read(inputs.offset),
      epsilon: attrs.varianceEpsilon,
    });
  });
}

/** `Relu6` on float32 as one SIMD clamp, else `native`. */
export function relu6Config(native: KernelConfig): KernelConfig {
  return withFallback(native, (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    if (x.dtype !== "float32") return null;
    const backend = wasmInternals(args.backend);
    const out = backend.makeOutput(x.shape, "float32");
    simdKernelsFor(backend).clamp(
      heapOffset(backend, x),
      heapOffset(backend, out),
      size(x),
      0,
      6,
    );
    return out;
  });
}

/** Replacements that wrap a native kernel, by kernel name. */
export const WRAPPED_FORWARD_KERNELS: Record<
  string,
  (native: KernelConfig) => KernelConfig
> = {
  [FusedBatchNorm]: fusedBatchNormConfig,
  [Relu6]: relu6Config,
};
