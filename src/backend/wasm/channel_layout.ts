/**
 * Row grouping for the per-channel SIMD loops, and a scratch arena for
 * their small per-channel vectors.
 *
 * The loops walk a [P, C] tensor row by row; with MobileNetV2's narrow
 * layers (C = 8 to 32 at alpha 0.35) a row is two to eight SIMD vectors
 * and the per-row bookkeeping dominates. A [P, C] tensor is also a
 * [P / R, R * C] tensor whose column j is channel j mod C, so the loops
 * run on R-row groups with per-channel vectors tiled R times, and sums
 * over the R * C columns are folded back to C at the end.
 *
 * @module
 */
import { heapAlloc, type WasmBackendInternals } from "./internals.ts";

/** Width, in floats, that a grouped row should reach. */
const TARGET_ROW_FLOATS = 256;

/** A [P, C] tensor viewed as [P / group, group * C]. */
export interface ChannelLayout {
  channels: number;
  group: number;
  rows: number;
  width: number;
}

/** The largest group R <= 256 / C dividing P (1 when none does). */
export function channelLayout(shape: number[]): ChannelLayout {
  const channels = shape[shape.length - 1];
  const total = shape.reduce((a, b) => a * b, 1);
  const rows = total / channels;
  let group = Math.max(1, Math.floor(TARGET_ROW_FLOATS / channels));
  while (rows % group !== 0) group--;
  return {
    channels,
    group,
    rows: rows / group,
    width: group * channels,
  };
}

/** `values` (C floats) repeated `group` times. */
export function tile(values: Float32Array, group: number): Float32Array {
  const out = new Float32Array(values.length * group);
  for (let r = 0; r < group; r++) out.set(values, r * values.length);
  return out;
}

/** Sums the `group` tiles of `values` back to C floats. */
export function fold(values: Float32Array, channels: number): Float32Array {
  const out = new Float32Array(channels);
  for (let k = 0; k < values.length; k++) out[k % channels] += values[k];
  return out;
}

/**
 * Scratch vectors on the wasm heap from one allocation, released by
 * `free`. Offsets are byte offsets, valid until `free`.
 */
export class HeapArena {
  readonly #backend: WasmBackendInternals;
  readonly #base: number;
  readonly #floats: number;
  #used = 0;

  constructor(backend: WasmBackendInternals, floats: number) {
    this.#backend = backend;
    this.#floats = floats;
    this.#base = heapAlloc(backend, Math.max(16, floats * 4));
  }

  /** Reserves `floats` zeroed floats; returns their byte offset. */
  reserve(floats: number): number {
    if (this.#used + floats > this.#floats) {
      throw new RangeError(
        `Cannot reserve ${floats} floats: arena of ${this.#floats} has ` +
          `${this.#floats - this.#used} left`,
      );
    }
    const offset = this.#base + this.#used * 4;
    this.#used += floats;
    this.#backend.wasm.HEAPF32.fill(0, offset >>> 2, (offset >>> 2) + floats);
    return offset;
  }

  /** Reserves and fills a vector; returns its byte offset. */
  put(values: Float32Array): number {
    const offset = this.reserve(values.length);
    this.#backend.wasm.HEAPF32.set(values, offset >>> 2);
    return offset;
  }

  /** A copy of `floats` floats at byte offset `offset`. */
  read(offset: number, floats: number): Float32Array {
    return this.#backend.wasm.HEAPF32.slice(
      offset >>> 2,
      (offset >>> 2) + floats,
    );
  }

  /** Returns the memory to the heap. */
  free(): void {
    this.#backend.wasm._free(this.#base);
  }
}
