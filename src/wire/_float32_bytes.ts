/**
 * Float32 payloads as raw little-endian bytes, and back into a fresh,
 * aligned `Float32Array`. Private to the wire codec.
 *
 * @module
 */

/** Whether this machine stores a float32 least significant byte first. */
export const HOST_LITTLE_ENDIAN =
  new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Options of the byte-order helpers; only tests override them. */
export interface ByteOrderOptions {
  /** Pretend the host has this byte order. @default HOST_LITTLE_ENDIAN */
  hostLittleEndian?: boolean;
}

/**
 * Returns the little-endian bytes of `data`: a view on a little-endian host
 * (no copy), a byte-swapped copy on a big-endian one.
 */
export function float32ToLittleEndianBytes(
  data: Float32Array,
  options: ByteOrderOptions = {},
): Uint8Array {
  const { hostLittleEndian = HOST_LITTLE_ENDIAN } = options;

  if (hostLittleEndian) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  const bytes = new Uint8Array(data.byteLength);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < data.length; i++) {
    view.setFloat32(i * 4, data[i], true);
  }
  return bytes;
}

/**
 * Copies little-endian float32 bytes into a fresh `Float32Array`.
 *
 * The copy is the point: `bytes` may sit at any offset of a network buffer,
 * and a `Float32Array` view at an offset that is not a multiple of 4 throws
 * (or, through a copy of the wrong span, silently reads shifted values).
 *
 * @param bytes A whole number of float32 values (length multiple of 4).
 */
export function littleEndianBytesToFloat32(
  bytes: Uint8Array,
  options: ByteOrderOptions = {},
): Float32Array {
  const { hostLittleEndian = HOST_LITTLE_ENDIAN } = options;
  const data = new Float32Array(bytes.length / 4);

  if (hostLittleEndian) {
    new Uint8Array(data.buffer).set(bytes);
    return data;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let i = 0; i < data.length; i++) {
    data[i] = view.getFloat32(i * 4, true);
  }
  return data;
}

/** Returns the index of the first NaN or infinity in `data`, or -1. */
export function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) {
    const value = data[i];
    // NaN - NaN and Inf - Inf are NaN; every finite value gives 0.
    if (value - value !== 0) return i;
  }
  return -1;
}
