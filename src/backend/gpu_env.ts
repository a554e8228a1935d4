/**
 * Environment for a worker process bound to one GPU.
 *
 * @module
 */

/** Backends (or `auto`) a device can be assigned for. */
export type DeviceBackend = "auto" | "tensorflow" | "webgpu" | "wasm" | "cpu";

/**
 * Environment variables that bind a child process to GPU `gpuId` (an
 * index as `nvidia-smi` lists it, or a UUID).
 *
 * - `tensorflow`, and `auto` (which tries tfjs-node-gpu first):
 *   `CUDA_VISIBLE_DEVICES=<gpuId>`; inside the process the GPU is then
 *   device 0. Harmless if `auto` lands on another backend.
 * - `webgpu`: nothing can be set portably: Deno exposes one adapter chosen
 *   by power preference and no adapter index (see docs/gpu.md). Returns
 *   `{}`; run one worker per machine or accept that workers share it.
 * - `wasm`, `cpu`: no device; returns `{}`.
 *
 * @example
 * ```ts
 * const env = deviceEnvForGpu("tensorflow", "1");
 * // { CUDA_VISIBLE_DEVICES: "1" }
 * ```
 */
export function deviceEnvForGpu(
  backend: DeviceBackend,
  gpuId: string | number,
): Record<string, string> {
  const id = String(gpuId).trim();
  if (!/^[A-Za-z0-9-]+$/.test(id)) {
    throw new RangeError(
      `Cannot bind a worker to GPU '${gpuId}': expected an index or a UUID`,
    );
  }
  if (backend === "tensorflow" || backend === "auto") {
    return { CUDA_VISIBLE_DEVICES: id };
  }
  return {};
}
