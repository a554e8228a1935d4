/**
 * tfjs's `webgpu` backend on Deno's built-in WebGPU.
 *
 * Deno's `navigator.gpu.requestAdapter()` returns one adapter, chosen by
 * power preference; there is no way to enumerate adapters or pick the
 * N-th one from JavaScript (see docs/gpu.md for what the launcher can do).
 * A fallback adapter (software rasteriser such as Mesa's llvmpipe) runs
 * tfjs's shaders on the CPU, slower than the wasm backend, so `auto`
 * skips it; asking for `webgpu` explicitly still uses it.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { BackendStartError, describeError } from "./errors.ts";

/** What Deno's WebGPU offers on this machine. */
export type WebGpuProbe =
  | { ok: true; description: string; isFallbackAdapter: boolean }
  | { ok: false; reason: string };

interface AdapterLike {
  isFallbackAdapter?: boolean;
  info?: {
    vendor?: string;
    architecture?: string;
    device?: string;
    description?: string;
    isFallbackAdapter?: boolean;
  };
}

interface NavigatorGpuLike {
  gpu?: { requestAdapter(options?: object): Promise<AdapterLike | null> };
}

/** Looks for a WebGPU adapter without starting tfjs's backend. */
export async function probeWebGpu(): Promise<WebGpuProbe> {
  const nav = (globalThis as { navigator?: NavigatorGpuLike }).navigator;
  if (nav?.gpu === undefined) {
    return {
      ok: false,
      reason: "navigator.gpu is missing (run deno with --unstable-webgpu)",
    };
  }

  let adapter: AdapterLike | null;
  try {
    adapter = await nav.gpu.requestAdapter({
      powerPreference: "high-performance",
    });
  } catch (error) {
    return { ok: false, reason: `requestAdapter: ${describeError(error)}` };
  }
  if (adapter === null) {
    return {
      ok: false,
      reason: "no WebGPU adapter (no Vulkan/Metal/DX12 driver; on Debian " +
        "install mesa-vulkan-drivers for a software one)",
    };
  }

  const info = adapter.info ?? {};
  const parts = [info.vendor, info.architecture, info.device, info.description]
    .filter((part) => part !== undefined && part !== "");
  return {
    ok: true,
    description: parts.join(" ") || "unnamed adapter",
    isFallbackAdapter: adapter.isFallbackAdapter ??
      info.isFallbackAdapter ?? false,
  };
}

/** Registers and starts tfjs's webgpu backend; throws on failure. */
export async function initWebGpuBackend(): Promise<void> {
  await import("@tensorflow/tfjs-backend-webgpu");
  if (!await tf.setBackend("webgpu")) {
    throw new BackendStartError("webgpu", "tfjs reported failure");
  }
  await tf.ready();
}
