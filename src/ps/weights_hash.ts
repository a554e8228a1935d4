/**
 * The identity of a set of weights: SHA-256 of the flat vector's
 * little-endian float32 bytes in layout order.
 *
 * @module
 */
import { sha256Hex } from "../config.ts";

/** Hex SHA-256 of float32 values as little-endian bytes. */
export async function float32Sha256(values: Float32Array): Promise<string> {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) {
    view.setFloat32(i * 4, values[i], true);
  }
  return await sha256Hex(bytes);
}
