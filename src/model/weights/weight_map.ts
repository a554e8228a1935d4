/**
 * The in-memory form every weight reader produces: float32 values with
 * their shape, keyed by Keras variable name (`block_1_expand/kernel`).
 * It holds no tfjs tensors, so readers and converters need no backend.
 *
 * @module
 */

/** One tensor's values, row-major (C order), and its shape. */
export interface WeightTensor {
  /** Dimensions, outermost first. */
  shape: number[];
  /** Values; `values.length` equals the product of `shape`. */
  values: Float32Array;
}

/** Tensors keyed by Keras variable name (`layer/weight`). */
export type WeightMap = Map<string, WeightTensor>;

/** Number of elements of a shape (1 for a scalar). */
export function sizeOfShape(shape: readonly number[]): number {
  return shape.reduce((product, dim) => product * dim, 1);
}

/** Names of a weight map in code-unit order, the order files store. */
export function sortedNames(weights: WeightMap): string[] {
  return [...weights.keys()].sort();
}

/**
 * The tensors' bytes (little-endian float32) concatenated in name order.
 * Its SHA-256 identifies a weight set independently of file layout.
 */
export function concatSortedBytes(weights: WeightMap): Uint8Array {
  const names = sortedNames(weights);
  const totalBytes = names.reduce(
    (sum, name) => sum + weights.get(name)!.values.byteLength,
    0,
  );
  const out = new Uint8Array(totalBytes);
  let offset = 0;

  for (const name of names) {
    const { values } = weights.get(name)!;
    out.set(
      new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
      offset,
    );
    offset += values.byteLength;
  }
  assertLittleEndian();
  return out;
}

/** Lower-case hex SHA-256 of some bytes. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    bytes as Uint8Array<ArrayBuffer>,
  );
  return [...new Uint8Array(digest)]
    .map((byte) => byte.toString(16).padStart(2, "0"))
    .join("");
}

/**
 * Copies `byteLength` bytes at `offset` into a fresh, aligned
 * Float32Array; the source view may sit at any byte offset.
 */
export function float32FromBytes(
  bytes: Uint8Array,
  range: { offset: number; byteLength: number },
): Float32Array {
  assertLittleEndian();
  const copy = bytes.slice(range.offset, range.offset + range.byteLength);
  return new Float32Array(copy.buffer, 0, range.byteLength / 4);
}

const HOST_IS_LITTLE_ENDIAN =
  new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Weight files are little-endian; typed arrays use the host's order. */
function assertLittleEndian(): void {
  if (!HOST_IS_LITTLE_ENDIAN) {
    // TODO(#2): byte-swap on big-endian hosts if one ever runs dptrain.
    throw new RangeError(
      "Cannot read float32 weights: this host is big-endian",
    );
  }
}
