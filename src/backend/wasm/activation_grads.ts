/**
 * One-pass gradients of relu6 and clipByValue on wasm.
 *
 * tfjs-core builds them from elementwise ops: clipByValue's gradient is
 * greaterEqual, lessEqual, logicalAnd, zerosLike and where (about ten
 * passes over the activation), relu6's is lessEqual, step, mul, cast and
 * mul. The kernel below masks dy in one pass, with tfjs's boundary rules
 * (relu6: 0 < x <= 6; clip: lo <= x <= hi).
 *
 * Gradient configs are global in tfjs, so the replacements keep the
 * original gradient for every backend but wasm.
 *
 * @module
 */
import {
  ClipByValue,
  engine,
  type GradConfig,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  Relu6,
  type Tensor,
  type TensorInfo,
} from "@tensorflow/tfjs-core";
import { heapOffset, type KernelArgs, wasmInternals } from "./internals.ts";
import { simdKernelsFor } from "./simd_kernels.ts";

/** Kernel: {x, dy} -> dx, attrs {lo, hi, loInclusive}. */
export const CLIP_GRAD = "DptrainClipGrad";

interface ClipGradAttrs {
  lo: number;
  hi: number;
  loInclusive: boolean;
}

function clipGrad(args: KernelArgs): TensorInfo {
  const backend = wasmInternals(args.backend);
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const { lo, hi, loInclusive } = args.attrs as unknown as ClipGradAttrs;
  const dx = backend.makeOutput(x.shape, "float32");
  simdKernelsFor(backend).clipGrad(
    heapOffset(backend, x),
    heapOffset(backend, dy),
    heapOffset(backend, dx),
    x.shape.reduce((a, b) => a * b, 1),
    lo,
    hi,
    loInclusive ? 1 : 0,
  );
  return dx;
}

/** Kernel config of {@linkcode CLIP_GRAD} on wasm. */
export const clipGradConfig: KernelConfig = {
  kernelName: CLIP_GRAD,
  backendName: "wasm",
  kernelFunc: clipGrad as unknown as KernelFunc,
};

function maskedGradient(
  x: Tensor,
  dy: Tensor,
  attrs: ClipGradAttrs,
): Tensor {
  return engine().runKernel(
    CLIP_GRAD,
    { x, dy },
    attrs as unknown as NamedAttrMap,
  ) as Tensor;
}

/**
 * `original` with its gradient replaced by the one-pass kernel whenever
 * the active backend is wasm and the input is float32.
 */
export function fusedActivationGradient(original: GradConfig): GradConfig {
  const kernelName = original.kernelName;
  const originalGrad = original.gradFunc;
  return {
    ...original,
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const usable = engine().backendName === "wasm" &&
        x.dtype === "float32" && !Array.isArray(dy);
      if (!usable) return originalGrad(dy, saved, attrs);

      const bounds: ClipGradAttrs = kernelName === Relu6
        ? { lo: 0, hi: 6, loInclusive: false }
        : {
          lo: attrs.clipValueMin as number,
          hi: attrs.clipValueMax as number,
          loInclusive: true,
        };
      return { x: () => maskedGradient(x, dy as Tensor, bounds) };
    },
  };
}

/** The kernels whose gradients {@linkcode fusedActivationGradient} serves. */
export const FUSED_GRADIENT_KERNELS = [Relu6, ClipByValue] as const;
