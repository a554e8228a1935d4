/**
 * Calls another kernel of the wasm backend directly, as tfjs's own
 * backends do inside composite kernels: the result is a bare TensorInfo
 * that the caller disposes with `backend.disposeData` unless returned.
 *
 * @module
 */
import {
  getKernel,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
} from "@tensorflow/tfjs-core";

/** Raised when a kernel that a composite relies on is not registered. */
export class MissingKernelError extends Error {
  /** The kernel name. */
  readonly kernel: string;

  constructor(kernel: string) {
    super(`Cannot run kernel '${kernel}' on wasm: it is not registered`);
    this.name = "MissingKernelError";
    this.kernel = kernel;
  }
}

/** Runs wasm kernel `name` on `inputs` and returns its single output. */
export function runWasmKernel(
  name: string,
  call: {
    inputs: NamedTensorInfoMap;
    attrs?: NamedAttrMap;
    backend: object;
  },
): TensorInfo {
  const config = getKernel(name, "wasm");
  if (config === undefined) throw new MissingKernelError(name);
  const result = config.kernelFunc(
    {
      inputs: call.inputs,
      attrs: call.attrs ?? {},
      backend: call.backend,
    } as Parameters<typeof config.kernelFunc>[0],
  );
  return Array.isArray(result) ? result[0] : result;
}

/** A view of `tensor` with another shape of the same size (no copy). */
export function reshaped(tensor: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: tensor.dataId, shape, dtype: tensor.dtype };
}
