/**
 * Float32 streams as chunks below the server's `max_payload`, and their
 * reassembly from chunks that arrive in any order, duplicated or not.
 *
 * @module
 */

import { WireError, type WireErrorReason } from "./errors.ts";
import {
  chunkFloatsOf,
  encodeMessage,
  type TensorChunkMessage,
  type TensorStream,
} from "./messages.ts";
import type { WireMeta } from "./meta.ts";

// How much larger a chunk header can grow than the one measured with
// one-byte integers: index, count, offset and total up to 9 bytes each
// (+32), crc32 up to 5 (+4), a bin32 length prefix instead of bin8 (+3).
const HEADER_GROWTH_BYTES = 64;

/** Options of {@linkcode chunkFloat32}. */
export interface ChunkOptions {
  /** The largest message the transport carries (NATS `max_payload`). */
  maxPayloadBytes: number;
  /** Bytes kept free in each message for the header and `meta`. */
  headroomBytes: number;
}

/** One piece of a split `Float32Array`. */
export interface Float32Chunk {
  /** Position in the stream, in `[0, count)`. */
  index: number;
  /** How many chunks the stream has. */
  count: number;
  /** Where the piece starts, in floats. */
  offset: number;
  /** The piece: a view on the input, not a copy. */
  data: Float32Array;
}

/**
 * Splits `data` uniformly into views of at most
 * `floor((maxPayloadBytes - headroomBytes) / 4)` floats: every chunk but the
 * last has that size. An empty array gives one empty chunk.
 *
 * @throws {RangeError} When the headroom leaves no room for one float.
 *
 * @example 10 floats in chunks of 4
 * ```ts
 * import { chunkFloat32 } from "./chunking.ts";
 *
 * const chunks = chunkFloat32(new Float32Array(10), {
 *   maxPayloadBytes: 116,
 *   headroomBytes: 100,
 * });
 * console.assert(chunks.map((c) => c.data.length).join() === "4,4,2");
 * ```
 */
export function chunkFloat32(
  data: Float32Array,
  options: ChunkOptions,
): Float32Chunk[] {
  const { maxPayloadBytes, headroomBytes } = options;
  const chunkFloats = Math.floor((maxPayloadBytes - headroomBytes) / 4);

  if (!Number.isInteger(maxPayloadBytes) || !Number.isInteger(headroomBytes)) {
    throw new TypeError(
      "Cannot chunk stream: maxPayloadBytes and headroomBytes must be " +
        `integers, received ${maxPayloadBytes} and ${headroomBytes}`,
    );
  }
  if (chunkFloats < 1) {
    throw new RangeError(
      `Cannot chunk stream: maxPayloadBytes ${maxPayloadBytes} minus ` +
        `headroomBytes ${headroomBytes} leaves no room for one float32`,
    );
  }

  const count = Math.max(1, Math.ceil(data.length / chunkFloats));
  return Array.from({ length: count }, (_, index) => {
    const offset = index * chunkFloats;
    const end = Math.min(offset + chunkFloats, data.length);
    return { index, count, offset, data: data.subarray(offset, end) };
  });
}

/** Options of {@linkcode encodeTensorStream}. */
export interface TensorStreamOptions {
  /** The run id. */
  run: string;
  /** The step (weights version) the stream belongs to. */
  step: number;
  /** `weights` or `grads`. */
  stream: TensorStream;
  /** The sender: `PS_RANK` for weights, the worker rank for grads. */
  rank: number;
  /** The step's attempt (see `TensorChunkMessage.attempt`). @default 0 */
  attempt?: number;
  /** The values, in the variable layout's fixed order. */
  data: Float32Array;
  /** Carried on chunk 0. @default {} */
  meta?: WireMeta;
  /** The transport's `maxPayloadBytes`. */
  maxPayloadBytes: number;
  /**
   * Bytes kept free per message. @default the encoded size of chunk 0's
   * header and `meta`, plus room for its integers to grow
   */
  headroomBytes?: number;
}

/**
 * Encodes a whole float32 stream as `tensor_chunk` messages, each at most
 * `maxPayloadBytes` long, ready to publish in order.
 *
 * @throws {WireError} As {@linkcode encodeMessage} (`non_finite`, ...).
 * @throws {RangeError} When `meta` leaves no room for the payload.
 */
export function encodeTensorStream(options: TensorStreamOptions): Uint8Array[] {
  const { data, meta = {}, maxPayloadBytes, ...key } = options;
  const headroomBytes = options.headroomBytes ?? measureHeadroom(options);
  const chunks = chunkFloat32(data, { maxPayloadBytes, headroomBytes });

  return chunks.map((chunk) => {
    const bytes = encodeMessage({
      kind: "tensor_chunk",
      run: key.run,
      step: key.step,
      stream: key.stream,
      rank: key.rank,
      attempt: key.attempt ?? 0,
      index: chunk.index,
      count: chunk.count,
      offset: chunk.offset,
      total: data.length,
      payload: chunk.data,
      ...(chunk.index === 0 ? { meta } : {}),
    });

    if (bytes.length > maxPayloadBytes) {
      throw new RangeError(
        `Cannot encode ${key.stream} stream: chunk ${chunk.index} is ` +
          `${bytes.length} bytes, above maxPayloadBytes ${maxPayloadBytes}; ` +
          `raise headroomBytes (${headroomBytes})`,
      );
    }
    return bytes;
  });
}

function measureHeadroom(options: TensorStreamOptions): number {
  const header = encodeMessage({
    kind: "tensor_chunk",
    run: options.run,
    step: options.step,
    stream: options.stream,
    rank: options.rank,
    index: 0,
    count: 1,
    offset: 0,
    total: 0,
    payload: new Float32Array(0),
    meta: options.meta ?? {},
  });
  return header.length + HEADER_GROWTH_BYTES;
}

/** Which stream an assembler collects. */
export interface StreamKey {
  /** `weights` or `grads`. */
  stream: TensorStream;
  /** The step (weights version). */
  step: number;
  /** The sender rank (`PS_RANK` for weights). */
  rank: number;
  /** The step's attempt. @default 0 */
  attempt?: number;
}

/** Options of the {@linkcode StreamAssembler} constructor. */
export interface StreamAssemblerOptions extends StreamKey {
  /**
   * The stream's length in floats, from the receiver's own variable layout;
   * a stream of another length is `wrong_length`.
   */
  expectedLength: number;
}

/** A completed stream. */
export interface AssembledStream {
  /** The values: a fresh array the caller owns. */
  data: Float32Array;
  /** Chunk 0's `meta`. */
  meta: WireMeta;
}

interface ChunkSignature {
  crc32: number;
  floats: number;
  meta: string;
}

/**
 * Collects the `tensor_chunk` messages of one (stream, step, rank) and
 * completes exactly once, whatever the arrival order.
 *
 * A repeated chunk identical to the first (same checksum, length and
 * `meta`) is ignored; one that differs is `conflicting_duplicate`. Chunks
 * after completion are checked the same way and never complete it again.
 *
 * @example Reassemble in any order
 * ```ts
 * import { decodeMessage, encodeTensorStream, StreamAssembler } from
 *   "./mod.ts";
 *
 * const data = Float32Array.from({ length: 1000 }, (_, i) => i);
 * const messages = encodeTensorStream({
 *   run: "r1", step: 0, stream: "grads", rank: 1, data,
 *   meta: { examples: 8 }, maxPayloadBytes: 1024,
 * });
 * const assembler = new StreamAssembler({
 *   stream: "grads", step: 0, rank: 1, expectedLength: 1000,
 * });
 * let done;
 * for (const bytes of messages.reverse()) {
 *   const chunk = decodeMessage(bytes, {
 *     run: "r1", workers: 2, kinds: ["tensor_chunk"],
 *   });
 *   done = assembler.add(chunk) ?? done;
 * }
 * console.assert(done?.data[999] === 999);
 * ```
 */
export class StreamAssembler {
  readonly #key: StreamKey;
  readonly #expectedLength: number;
  readonly #signatures = new Map<number, ChunkSignature>();
  #data: Float32Array | undefined;
  #meta: WireMeta | undefined;
  #count: number | undefined;
  #chunkFloats: number | undefined;
  #complete = false;
  #duplicates = 0;

  /** Starts collecting one stream. */
  constructor(options: StreamAssemblerOptions) {
    const { expectedLength, ...key } = options;

    if (!Number.isInteger(expectedLength) || expectedLength < 0) {
      throw new RangeError(
        "Cannot assemble stream: expectedLength must be a non-negative " +
          `integer, received ${expectedLength}`,
      );
    }
    this.#key = key;
    this.#expectedLength = expectedLength;
  }

  /** Whether the stream completed. */
  get complete(): boolean {
    return this.#complete;
  }

  /** Distinct chunks accepted so far. */
  get receivedChunks(): number {
    return this.#signatures.size;
  }

  /** The stream's chunk count, once a chunk has arrived. */
  get expectedChunks(): number | undefined {
    return this.#count;
  }

  /** Identical duplicates ignored so far. */
  get duplicates(): number {
    return this.#duplicates;
  }

  /**
   * The chunk indices still missing, for a stall report: at most `limit`,
   * in increasing order. Empty before the first chunk (count unknown).
   */
  missingChunks(limit = 16): number[] {
    const missing: number[] = [];

    for (let index = 0; index < (this.#count ?? 0); index++) {
      if (missing.length >= limit) break;
      if (!this.#signatures.has(index)) missing.push(index);
    }
    return missing;
  }

  /**
   * Adds one chunk returned by `decodeMessage` (whose geometry it checked).
   *
   * @returns The whole stream when this chunk completes it; `undefined`
   *   otherwise, and for every chunk after completion.
   * @throws {WireError} `bad_field`, `wrong_step` or `bad_rank` for a chunk
   *   of another stream; `wrong_length` when its total differs from
   *   `expectedLength`; `conflicting_duplicate` for a repeated index with
   *   other contents or a chunk that disagrees with earlier ones on the
   *   count or chunk size. The stream is unchanged by a rejected chunk.
   */
  add(chunk: TensorChunkMessage): AssembledStream | undefined {
    this.#checkKey(chunk);

    if (chunk.total !== this.#expectedLength) {
      this.#fail(chunk, "wrong_length", {
        field: "total",
        detail: `is ${chunk.total} floats, the layout has ` +
          this.#expectedLength,
      });
    }
    this.#checkGeometry(chunk);

    const signature: ChunkSignature = {
      crc32: chunk.crc32,
      floats: chunk.payload.length,
      meta: JSON.stringify(chunk.meta ?? null),
    };
    const earlier = this.#signatures.get(chunk.index);
    if (earlier !== undefined) {
      return this.#duplicate(chunk, { earlier, signature });
    }

    this.#count ??= chunk.count;
    this.#chunkFloats ??= chunkFloatsOf(chunk);
    const data = this.#data ?? new Float32Array(this.#expectedLength);
    data.set(chunk.payload, chunk.offset);
    this.#data = data;
    this.#signatures.set(chunk.index, signature);
    if (chunk.meta !== undefined) this.#meta = chunk.meta;

    if (this.#signatures.size < chunk.count) return undefined;

    // The caller owns the array now; keep only the signatures.
    this.#data = undefined;
    this.#complete = true;
    return { data, meta: this.#meta ?? {} };
  }

  #duplicate(
    chunk: TensorChunkMessage,
    signatures: { earlier: ChunkSignature; signature: ChunkSignature },
  ): undefined {
    const { earlier, signature } = signatures;
    const identical = earlier.crc32 === signature.crc32 &&
      earlier.floats === signature.floats && earlier.meta === signature.meta;

    if (!identical) {
      this.#fail(chunk, "conflicting_duplicate", {
        field: "payload",
        detail: `differs from the chunk ${chunk.index} already received ` +
          `(crc32 ${signature.crc32} vs ${earlier.crc32})`,
      });
    }
    this.#duplicates++;
    return undefined;
  }

  #checkKey(chunk: TensorChunkMessage): void {
    const { stream, step, rank } = this.#key;

    if (chunk.stream !== stream) {
      this.#fail(chunk, "bad_field", {
        field: "stream",
        detail: `is ${chunk.stream}, this assembler collects ${stream}`,
      });
    }
    if (chunk.step !== step) {
      this.#fail(chunk, "wrong_step", {
        field: "step",
        detail: `is ${chunk.step}, this assembler collects step ${step}`,
      });
    }
    if (chunk.rank !== rank) {
      this.#fail(chunk, "bad_rank", {
        field: "rank",
        detail: `is ${chunk.rank}, this assembler collects rank ${rank}`,
      });
    }
    const attempt = this.#key.attempt ?? 0;
    if (chunk.attempt !== attempt) {
      this.#fail(chunk, "wrong_step", {
        field: "attempt",
        detail: `is ${chunk.attempt}, this assembler collects attempt ` +
          String(attempt),
      });
    }
  }

  #checkGeometry(chunk: TensorChunkMessage): void {
    if (this.#count !== undefined && chunk.count !== this.#count) {
      this.#fail(chunk, "conflicting_duplicate", {
        field: "count",
        detail: `is ${chunk.count}, earlier chunks said ${this.#count}`,
      });
    }
    const chunkFloats = chunkFloatsOf(chunk);
    if (this.#chunkFloats !== undefined && chunkFloats !== this.#chunkFloats) {
      this.#fail(chunk, "conflicting_duplicate", {
        field: "offset",
        detail: `implies chunks of ${chunkFloats} floats, earlier chunks ` +
          `had ${this.#chunkFloats}`,
      });
    }
  }

  #fail(
    chunk: TensorChunkMessage,
    reason: WireErrorReason,
    options: { field: string; detail: string },
  ): never {
    const { stream, step, rank } = this.#key;
    throw new WireError({
      reason,
      field: options.field,
      message: `Cannot assemble ${stream} stream (step ${step}, rank ` +
        `${rank}): chunk ${chunk.index} field "${options.field}" ` +
        options.detail,
      kind: chunk.kind,
      run: chunk.run,
      step: chunk.step,
      rank: chunk.rank,
    });
  }
}
