/**
 * Starts tfjs's wasm backend under Deno: points it at the .wasm binaries
 * of the installed package (resolved from the module graph, so any working
 * directory works) and registers the training kernels.
 *
 * Threads: the threaded SIMD build does not start under Deno. Deno sets
 * `process.versions.node`, so tfjs reports IS_NODE and disables threads;
 * forcing WASM_HAS_MULTITHREAD_SUPPORT makes emscripten's pthread glue
 * spawn its workers through node:worker_threads from a blob: URL, which
 * Deno rejects (ERR_WORKER_PATH: "The worker script or module filename
 * must be an absolute path or a relative path starting with './' or
 * '../'"). The single-threaded SIMD build is used; a data-parallel
 * cluster gets its parallelism from one worker process per core instead.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BackendStartError } from "./errors.ts";
import {
  registerWasmTrainingKernels,
  type WasmTrainingOptions,
} from "./wasm/register.ts";

/** What {@linkcode initWasmBackend} set up. */
export interface WasmInfo {
  /** Whether the SIMD build runs. */
  simd: boolean;
  /** Threads of the wasm module (always 1 under Deno, see module doc). */
  threads: number;
  /** Folder the .wasm binaries were loaded from. */
  wasmDir: string;
}

/** Folder holding tfjs-backend-wasm's .wasm files, with a trailing `/`. */
export function wasmBinaryDir(): string {
  const entry = import.meta.resolve("@tensorflow/tfjs-backend-wasm");
  if (entry.startsWith("file:")) {
    return dirname(fileURLToPath(entry)) + "/";
  }
  // A non-file module URL: fall back to the project's node_modules.
  const projectRoot = fileURLToPath(new URL("../../", import.meta.url));
  return join(projectRoot, "node_modules/@tensorflow/tfjs-backend-wasm/dist/");
}

let pathsSet = false;

/**
 * Makes `wasm` the active tfjs backend with the training kernels
 * registered. Throws when the backend cannot start.
 */
export async function initWasmBackend(
  options: WasmTrainingOptions = {},
): Promise<WasmInfo> {
  const wasmDir = wasmBinaryDir();
  if (!pathsSet) {
    setWasmPaths(wasmDir);
    pathsSet = true;
  }
  registerWasmTrainingKernels(options);

  const ok = await tf.setBackend("wasm");
  if (!ok) {
    throw new BackendStartError(
      "wasm",
      `tfjs reported failure loading ${wasmDir}`,
    );
  }
  await tf.ready();

  const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT") as boolean;
  // TODO(#4): threads stay at 1 until tfjs-wasm's pthread workers can start
  // under Deno (see the module doc for the failure).
  return { simd, threads: 1, wasmDir };
}
