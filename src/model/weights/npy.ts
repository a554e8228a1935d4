/**
 * A reader for NumPy `.npy` files holding one little-endian float32
 * array in C order: format versions 1.0 and 2.0, descr `<f4`. That is
 * what the TF-slim checkpoint export bundled with dptrain uses; anything
 * else is refused rather than guessed at.
 *
 * @module
 */
import { WeightsFormatError } from "./errors.ts";
import {
  float32FromBytes,
  sizeOfShape,
  type WeightTensor,
} from "./weight_map.ts";

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

/**
 * Parses a `.npy` file's bytes. `file` names it in errors.
 *
 * @throws {WeightsFormatError} for a bad magic, version, header, dtype,
 *   Fortran order or data size.
 */
export function parseNpy(bytes: Uint8Array, file: string): WeightTensor {
  const fail = (field: string, message: string): never => {
    throw new WeightsFormatError({ file, field, message });
  };
  if (bytes.byteLength < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    fail("magic", "not a NumPy .npy file");
  }

  const major = bytes[6];
  if (major !== 1 && major !== 2) {
    fail("version", `expected format 1.0 or 2.0, got ${major}.${bytes[7]}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerStart = major === 1 ? 10 : 12;
  const headerBytes = major === 1
    ? view.getUint16(8, true)
    : view.getUint32(8, true);
  const dataStart = headerStart + headerBytes;
  if (dataStart > bytes.byteLength) {
    fail("header", `header of ${headerBytes} bytes runs past the file end`);
  }
  const header = new TextDecoder("latin1").decode(
    bytes.subarray(headerStart, dataStart),
  );

  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  if (descr !== "<f4") {
    fail("descr", `expected '<f4' (little-endian float32), got ${descr}`);
  }
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  if (fortran !== "False") {
    fail("fortran_order", `expected False (C order), got ${fortran}`);
  }
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (shapeText === undefined) return fail("shape", "missing in the header");
  const shape = shapeText.split(",").map((s) => s.trim()).filter((s) =>
    s !== ""
  ).map(Number);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail("shape", `expected non-negative integers, got (${shapeText})`);
  }

  const byteLength = 4 * sizeOfShape(shape);
  if (bytes.byteLength - dataStart !== byteLength) {
    fail(
      "data",
      `shape (${shape}) needs ${byteLength} bytes, file has ` +
        `${bytes.byteLength - dataStart}`,
    );
  }
  return {
    shape,
    values: float32FromBytes(bytes, { offset: dataStart, byteLength }),
  };
}
