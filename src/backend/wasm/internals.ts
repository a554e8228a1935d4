/**
 * The few internals of tfjs's wasm backend that the training kernels use:
 * the emscripten module (heap views, malloc, the exported linear memory)
 * and the map from tensor data ids to heap offsets. tfjs types them only
 * partly, so they are declared here once and checked at run time.
 *
 * @module
 */
import type {
  NamedAttrMap,
  NamedTensorInfoMap,
  TensorInfo,
} from "@tensorflow/tfjs-core";

/** The argument of a kernel function (tfjs types the backend as `{}`). */
export interface KernelArgs {
  inputs: NamedTensorInfoMap;
  backend: object;
  attrs?: NamedAttrMap;
}

/** The emscripten module behind tfjs's wasm backend. */
export interface WasmModuleInternals {
  HEAPF32: Float32Array;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  asm: { memory: WebAssembly.Memory };
}

/** What the kernels need from a `BackendWasm`. */
export interface WasmBackendInternals {
  wasm: WasmModuleInternals;
  dataIdMap: {
    get(dataId: object): { memoryOffset: number } | undefined;
  };
  makeOutput(shape: number[], dtype: "float32"): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  incRef(dataId: object): void;
}

/** Raised when the wasm backend does not look as this code expects. */
export class WasmInternalsError extends Error {
  /** The member that is missing or of the wrong kind. */
  readonly member: string;

  constructor(member: string) {
    super(
      `Cannot use the wasm training kernels: the wasm backend has no ` +
        `usable '${member}' (tfjs-backend-wasm 4.22 layout expected)`,
    );
    this.name = "WasmInternalsError";
    this.member = member;
  }
}

/**
 * Raised when the wasm heap cannot grow any further. tfjs-wasm addresses
 * its heap with signed 32-bit offsets, so in practice about 2 GiB of
 * tensors is the limit (MobileNetV2 alpha 1.0 at 224 px trains with batch
 * 16 in 2.6 GB; batch 32 does not fit).
 */
export class WasmOutOfMemoryError extends RangeError {
  /** Bytes that were asked for. */
  readonly bytes: number;

  constructor(bytes: number) {
    super(
      `Cannot allocate ${bytes} bytes on the wasm heap: it is full ` +
        `(reduce the batch size or the image size)`,
    );
    this.name = "WasmOutOfMemoryError";
    this.bytes = bytes;
  }
}

/**
 * Allocates `bytes` on the wasm heap; returns the unsigned byte offset.
 * emscripten's malloc returns 0 when the heap cannot grow.
 */
export function heapAlloc(
  backend: WasmBackendInternals,
  bytes: number,
): number {
  const pointer = backend.wasm._malloc(bytes) >>> 0;
  if (pointer === 0) throw new WasmOutOfMemoryError(bytes);
  return pointer;
}

/** Views a kernel's backend as the wasm backend's internals. */
export function wasmInternals(backend: object): WasmBackendInternals {
  const candidate = backend as unknown as Partial<WasmBackendInternals>;
  if (!(candidate.wasm?.asm?.memory instanceof WebAssembly.Memory)) {
    throw new WasmInternalsError("wasm.asm.memory");
  }
  if (typeof candidate.dataIdMap?.get !== "function") {
    throw new WasmInternalsError("dataIdMap");
  }
  return candidate as WasmBackendInternals;
}

/**
 * Byte offset of a tensor's data in the wasm heap (unsigned). Throws
 * {@linkcode WasmOutOfMemoryError} for a tensor whose allocation failed.
 */
export function heapOffset(
  backend: WasmBackendInternals,
  tensor: TensorInfo,
): number {
  const data = backend.dataIdMap.get(tensor.dataId);
  if (data === undefined) {
    throw new WasmInternalsError(`dataIdMap entry of a ${tensor.shape} tensor`);
  }
  // Offsets above 2 GiB arrive as negative int32s; heap indices are
  // unsigned, and the SIMD module's i32 parameters take the same bits.
  const offset = data.memoryOffset >>> 0;
  if (offset === 0 && tensor.shape.every((d) => d > 0)) {
    throw new WasmOutOfMemoryError(
      4 * tensor.shape.reduce((a, b) => a * b, 1),
    );
  }
  return offset;
}

/**
 * Runs `body` with `floats` float32 values of scratch memory on the wasm
 * heap, freed afterwards. The pointer is a byte offset.
 */
export function withScratch<T>(
  backend: WasmBackendInternals,
  floats: number,
  body: (pointer: number) => T,
): T {
  const pointer = heapAlloc(backend, Math.max(16, floats * 4));
  try {
    return body(pointer);
  } finally {
    backend.wasm._free(pointer);
  }
}
