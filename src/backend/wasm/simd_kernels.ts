/**
 * Instantiates the SIMD training kernels (`simd/kernels.wat`) against the
 * wasm backend's own linear memory, once per backend instance.
 *
 * @module
 */
import { KERNELS_WASM_BASE64 } from "./simd/kernels_wasm.ts";
import type { WasmBackendInternals } from "./internals.ts";

/** The exports of `simd/kernels.wat`; pointers are heap byte offsets. */
export interface SimdKernels {
  dwFilterGrad(
    x: number,
    dy: number,
    out: number,
    acc: number,
    ...dims: number[]
  ): void;
  dwInputGrad(dy: number, filter: number, dx: number, ...dims: number[]): void;
  convFilterGrad(
    x: number,
    dy: number,
    out: number,
    acc: number,
    ...dims: number[]
  ): void;
  convInputGrad(
    dy: number,
    filter: number,
    dx: number,
    ...dims: number[]
  ): void;
  pwFilterGrad(
    x: number,
    dy: number,
    out: number,
    acc: number,
    rows: number,
    inChannels: number,
    outChannels: number,
  ): void;
  channelMoments(
    x: number,
    mean: number,
    sum: number,
    sq: number,
    acc: number,
    rows: number,
    channels: number,
  ): void;
  bnGradSums(
    x: number,
    dy: number,
    mean: number,
    sumDy: number,
    sumDyX: number,
    acc: number,
    rows: number,
    channels: number,
  ): void;
  bnGradInput(
    x: number,
    dy: number,
    a: number,
    b: number,
    e: number,
    m: number,
    out: number,
    rows: number,
    channels: number,
  ): void;
  channelAffine(
    x: number,
    m: number,
    s: number,
    t: number,
    out: number,
    rows: number,
    channels: number,
  ): void;
  clamp(x: number, out: number, size: number, lo: number, hi: number): void;
  clipGrad(
    x: number,
    dy: number,
    dx: number,
    size: number,
    lo: number,
    hi: number,
    loInclusive: number,
  ): void;
}

let compiled: WebAssembly.Module | undefined;
const instances = new WeakMap<WebAssembly.Memory, SimdKernels>();

function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  const binary = atob(text);
  const bytes = new Uint8Array(new ArrayBuffer(binary.length));
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** The SIMD kernels bound to `backend`'s heap. */
export function simdKernelsFor(backend: WasmBackendInternals): SimdKernels {
  const memory = backend.wasm.asm.memory;
  const existing = instances.get(memory);
  if (existing !== undefined) return existing;

  compiled ??= new WebAssembly.Module(decodeBase64(KERNELS_WASM_BASE64));
  const instance = new WebAssembly.Instance(compiled, { env: { memory } });
  const kernels = instance.exports as unknown as SimdKernels;
  instances.set(memory, kernels);
  return kernels;
}
