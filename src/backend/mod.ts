/**
 * Backend selection for dptrain: `auto | tensorflow | webgpu | wasm | cpu`.
 *
 * `auto` tries, in order: tfjs-node-gpu, tfjs-node (native TensorFlow),
 * WebGPU on a hardware adapter, wasm (with the training kernels of
 * ./wasm/), cpu. Every backend not used is reported with the reason, and
 * the chosen one with a one-line detail, so that processes can log and
 * report it.
 *
 * @example
 * ```ts
 * const report = await selectBackend("auto", { log: console.log });
 * // report.name === "wasm" on a machine without a GPU
 * ```
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
// tfjs-core's Node bundle registers no gradients; tfjs-layers' bundle
// registers all of them (into tfjs's global registry) when loaded.
import "@tensorflow/tfjs-layers";
import {
  BackendUnavailableError,
  describeError,
  type SkippedBackend,
} from "./errors.ts";
import { tryTensorflow } from "./tensorflow_backend.ts";
import { initWebGpuBackend, probeWebGpu } from "./webgpu_backend.ts";

export {
  BackendStartError,
  BackendUnavailableError,
  type SkippedBackend,
} from "./errors.ts";
export { WasmOutOfMemoryError } from "./wasm/internals.ts";
export {
  registerWasmTrainingKernels,
  unregisterWasmTrainingKernels,
  type WasmTrainingOptions,
} from "./wasm/register.ts";
export { type DeviceBackend, deviceEnvForGpu } from "./gpu_env.ts";

/** What the user asked for. */
export type BackendChoice = "auto" | "tensorflow" | "webgpu" | "wasm" | "cpu";

/** The choices, for CLI validation. */
export const BACKEND_CHOICES: readonly BackendChoice[] = [
  "auto",
  "tensorflow",
  "webgpu",
  "wasm",
  "cpu",
];

/** The backend in use and why the others were not used. */
export interface BackendReport {
  /** The tfjs backend now active (`tf.getBackend()`). */
  name: "tensorflow" | "webgpu" | "wasm" | "cpu";
  /** One line: package, adapter or build. */
  detail: string;
  /** Backends tried before this one, in order, with the reason. */
  skipped: { backend: string; reason: string }[];
  /** Threads the backend computes with, where known. */
  threads?: number;
  /** The device (GPU binding or adapter), where there is one. */
  device?: string;
}

/** Options of {@linkcode selectBackend}. */
export interface SelectBackendOptions {
  /** Receives one line per backend tried and the final choice. */
  log?: (message: string) => void;
  /**
   * GPU to bind for `tensorflow` (sets CUDA_VISIBLE_DEVICES unless the
   * environment sets it). Ignored by the other backends.
   */
  gpu?: string;
}

type Attempt = Omit<BackendReport, "skipped"> | { reason: string };

async function attemptTensorflow(gpu?: string): Promise<Attempt[]> {
  const results: Attempt[] = [];
  for (const pkg of ["tfjs-node-gpu", "tfjs-node"] as const) {
    const result = await tryTensorflow(pkg, { gpu });
    if (result.ok) {
      results.push({
        name: "tensorflow",
        detail: result.detail,
        device: result.device,
      });
      return results;
    }
    results.push({ reason: result.reason });
  }
  return results;
}

async function attemptWebGpu(allowFallback: boolean): Promise<Attempt> {
  const probe = await probeWebGpu();
  if (!probe.ok) return { reason: probe.reason };
  if (probe.isFallbackAdapter && !allowFallback) {
    return {
      reason: `only a fallback (software) adapter: ${probe.description}; ` +
        `wasm is faster on the CPU (pass --backend webgpu to use it anyway)`,
    };
  }
  try {
    await initWebGpuBackend();
  } catch (error) {
    return { reason: describeError(error) };
  }
  const kind = probe.isFallbackAdapter ? "software adapter" : "adapter";
  return {
    name: "webgpu",
    detail: `Deno WebGPU, ${kind}: ${probe.description}`,
    device: probe.description,
  };
}

async function attemptWasm(): Promise<Attempt> {
  try {
    const { initWasmBackend } = await import("./wasm_init.ts");
    const info = await initWasmBackend();
    const build = info.simd ? "SIMD" : "scalar";
    return {
      name: "wasm",
      detail: `tfjs-backend-wasm ${build} build, ${info.threads} thread, ` +
        `dptrain training kernels`,
      threads: info.threads,
    };
  } catch (error) {
    return { reason: describeError(error) };
  }
}

async function attemptCpu(): Promise<Attempt> {
  try {
    await import("@tensorflow/tfjs-backend-cpu");
    if (!await tf.setBackend("cpu")) return { reason: "failed to start" };
    await tf.ready();
    return { name: "cpu", detail: "tfjs-backend-cpu (plain JS)", threads: 1 };
  } catch (error) {
    return { reason: describeError(error) };
  }
}

function backendLabel(step: string, index: number): string {
  if (step !== "tensorflow") return step;
  return index === 0 ? "tensorflow (tfjs-node-gpu)" : "tensorflow (tfjs-node)";
}

/**
 * Activates a tfjs backend and reports it. For `wasm` (and `auto` when it
 * lands there) the training kernels are registered first.
 *
 * @throws {BackendUnavailableError} when the chosen backend, or for
 * `auto` every candidate, cannot start.
 */
export async function selectBackend(
  choice: BackendChoice,
  options: SelectBackendOptions = {},
): Promise<BackendReport> {
  const { log = () => {}, gpu } = options;
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new RangeError(
      `Cannot select backend '${choice}': expected one of ` +
        BACKEND_CHOICES.join(", "),
    );
  }

  const order: Exclude<BackendChoice, "auto">[] = choice === "auto"
    ? ["tensorflow", "webgpu", "wasm", "cpu"]
    : [choice];
  const skipped: SkippedBackend[] = [];

  for (const step of order) {
    const attempts: Attempt[] = step === "tensorflow"
      ? await attemptTensorflow(gpu)
      : step === "webgpu"
      ? [await attemptWebGpu(choice === "webgpu")]
      : step === "wasm"
      ? [await attemptWasm()]
      : [await attemptCpu()];

    for (const [index, attempt] of attempts.entries()) {
      if ("reason" in attempt) {
        const backend = backendLabel(step, index);
        skipped.push({ backend, reason: attempt.reason });
        log(`backend ${backend} skipped: ${attempt.reason}`);
        continue;
      }
      const report: BackendReport = { ...attempt, skipped };
      log(`backend ${report.name}: ${report.detail}`);
      return report;
    }
  }
  throw new BackendUnavailableError(choice, skipped);
}
