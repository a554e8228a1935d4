/**
 * Image decoding by content: JPEG (baseline, progressive, grayscale) through
 * jpeg-js and PNG through pngjs, always to 8-bit RGB.
 *
 * The format comes from the first bytes, never from the file name, so a PNG
 * saved as `.jpg` decodes and a text file saved as `.jpg` is refused with a
 * reason. PNG alpha is dropped (the colour channels are kept as stored), as
 * TensorFlow's `decode_image(channels=3)` and PIL's `convert("RGB")` do, so
 * Keras-trained models see the same pixels.
 *
 * @module
 */

import jpeg from "jpeg-js";
import { PNG as untypedPng } from "pngjs";
import { Buffer } from "node:buffer";
import { checkJpegStructure } from "./_jpeg_structure.ts";

/** The one pngjs entry point used here; the package ships no types. */
interface PngSyncReader {
  sync: { read(buffer: Buffer): { data: Uint8Array } };
}
const PNG: PngSyncReader = untypedPng;

/**
 * Identifies this decoder's output. Part of the image cache key: change it
 * whenever decoded pixels could change (library upgrade, alpha policy).
 */
export const DECODER_VERSION = "jpeg-js@0.4.4+pngjs@7.0.0+rgb-drop-alpha/1";

/** Limits that keep a hostile or huge file from exhausting memory. */
export const DECODE_DEFAULTS = {
  /** Largest image accepted, in megapixels (width * height / 1e6). */
  maxMegapixels: 50,
  /** Most memory jpeg-js may allocate for one image, in MiB. */
  maxMemoryMiB: 512,
} as const;

/** An 8-bit RGB image, row-major, 3 bytes per pixel. */
export interface RgbImage {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** `width * height * 3` bytes, RGB interleaved. */
  data: Uint8Array;
}

/** A decoded image and the format it was stored in. */
export interface DecodedImage extends RgbImage {
  /** The format found in the file's first bytes. */
  format: "jpeg" | "png";
}

/** Options for {@linkcode decodeImage}. */
export interface DecodeImageOptions {
  /** File name used in error messages. @default "<memory>" */
  file?: string;
  /** Largest image accepted, in megapixels. @default 50 */
  maxMegapixels?: number;
  /** Most memory jpeg-js may allocate, in MiB. @default 512 */
  maxMemoryMiB?: number;
}

/** Formats recognised by their magic bytes. */
export type SniffedFormat =
  | "jpeg"
  | "png"
  | "gif"
  | "webp"
  | "bmp"
  | "tiff"
  | "heif";

/**
 * Thrown when a file is not an image this pipeline can read: empty,
 * truncated, another format, or corrupt.
 */
export class ImageDecodeError extends Error {
  /** The file at fault. */
  readonly file: string;
  /** Why it could not be decoded. */
  readonly reason: string;

  /**
   * Makes the error; the message names the file and the reason.
   *
   * @param file The file at fault.
   * @param reason Why it could not be decoded.
   * @param options Standard error options (`cause`).
   */
  constructor(file: string, reason: string, options?: ErrorOptions) {
    super(`Cannot decode image '${file}': ${reason}`, options);
    this.name = "ImageDecodeError";
    this.file = file;
    this.reason = reason;
  }
}

function startsWith(bytes: Uint8Array, prefix: readonly number[]): boolean {
  return prefix.every((b, i) => bytes[i] === b);
}

function ascii(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

/**
 * The image format named by a file's first bytes, or null.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sniffImageFormat } from "./decode_image.ts";
 *
 * const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10]);
 * assert.equal(sniffImageFormat(png), "png");
 * ```
 */
export function sniffImageFormat(bytes: Uint8Array): SniffedFormat | null {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return "jpeg";
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) {
    return "png";
  }
  if (ascii(bytes.subarray(0, 4)) === "GIF8") return "gif";
  if (
    ascii(bytes.subarray(0, 4)) === "RIFF" &&
    ascii(bytes.subarray(8, 12)) === "WEBP"
  ) {
    return "webp";
  }
  if (ascii(bytes.subarray(0, 2)) === "BM") return "bmp";
  if (
    ascii(bytes.subarray(0, 4)) === "II*\0" ||
    ascii(bytes.subarray(0, 4)) === "MM\0*"
  ) {
    return "tiff";
  }
  if (ascii(bytes.subarray(4, 8)) === "ftyp") return "heif";
  return null;
}

function looksLikeText(bytes: Uint8Array): boolean {
  const head = bytes.subarray(0, 256);
  return head.every((b) => b === 9 || b === 10 || b === 13 || b >= 32);
}

function describeUnknown(bytes: Uint8Array): string {
  if (looksLikeText(bytes)) {
    const preview = new TextDecoder().decode(bytes.subarray(0, 24))
      .replace(/\s+/g, " ").trim();
    return `not an image: the file holds text ("${preview}")`;
  }
  const head = [...bytes.subarray(0, 8)]
    .map((b) => b.toString(16).padStart(2, "0")).join(" ");
  return `unknown image format (first bytes: ${head}); ` +
    `only JPEG and PNG are supported`;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function decodeJpeg(
  bytes: Uint8Array,
  limits: Required<DecodeImageOptions>,
): DecodedImage {
  const { file } = limits;
  const structure = checkJpegStructure(bytes);
  if (!structure.ok) throw new ImageDecodeError(file, structure.reason);

  let decoded: { width: number; height: number; data: Uint8Array };
  try {
    decoded = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      maxResolutionInMP: limits.maxMegapixels,
      maxMemoryUsageInMB: limits.maxMemoryMiB,
    });
  } catch (error) {
    throw new ImageDecodeError(file, `corrupt JPEG: ${errorText(error)}`, {
      cause: error,
    });
  }

  const { width, height, data } = decoded;
  if (width < 1 || height < 1 || data.length !== width * height * 3) {
    throw new ImageDecodeError(
      file,
      `corrupt JPEG: decoder returned ${data.length} bytes for ` +
        `${width}x${height} pixels`,
    );
  }
  return { width, height, data, format: "jpeg" };
}

function pngHeaderSize(bytes: Uint8Array): { width: number; height: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 24 || ascii(bytes.subarray(12, 16)) !== "IHDR") {
    return { width: 0, height: 0 };
  }
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

function decodePng(
  bytes: Uint8Array,
  limits: Required<DecodeImageOptions>,
): DecodedImage {
  const { file } = limits;
  const header = pngHeaderSize(bytes);
  if (header.width < 1 || header.height < 1) {
    throw new ImageDecodeError(file, "corrupt PNG: missing or empty IHDR");
  }
  const megapixels = (header.width * header.height) / 1e6;
  if (megapixels > limits.maxMegapixels) {
    throw new ImageDecodeError(
      file,
      `image too large: ${header.width}x${header.height} is ` +
        `${megapixels.toFixed(1)} MP, limit ${limits.maxMegapixels} MP`,
    );
  }

  let rgba: Uint8Array;
  try {
    const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    rgba = PNG.sync.read(buffer).data;
  } catch (error) {
    throw new ImageDecodeError(file, `corrupt PNG: ${errorText(error)}`, {
      cause: error,
    });
  }

  const pixels = header.width * header.height;
  if (rgba.length !== pixels * 4) {
    throw new ImageDecodeError(
      file,
      `corrupt PNG: decoder returned ${rgba.length} bytes for ` +
        `${header.width}x${header.height} pixels`,
    );
  }
  const data = new Uint8Array(pixels * 3);
  for (let p = 0, q = 0; p < pixels; p++, q += 4) {
    data[p * 3] = rgba[q]!;
    data[p * 3 + 1] = rgba[q + 1]!;
    data[p * 3 + 2] = rgba[q + 2]!;
  }
  return { width: header.width, height: header.height, data, format: "png" };
}

/**
 * Decodes a JPEG or PNG file's bytes to 8-bit RGB.
 *
 * Grayscale images come back with the gray value in all three channels; PNG
 * alpha is dropped.
 *
 * @param bytes The whole file.
 * @param options File name for messages and size limits.
 * @returns The RGB image.
 * @throws {ImageDecodeError} When the bytes are empty, truncated, of another
 * format, too large or corrupt; `reason` says which.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeImage, ImageDecodeError } from "./decode_image.ts";
 *
 * assert.throws(
 *   () => decodeImage(new Uint8Array(0), { file: "empty.jpg" }),
 *   ImageDecodeError,
 * );
 * ```
 */
export function decodeImage(
  bytes: Uint8Array,
  options: DecodeImageOptions = {},
): DecodedImage {
  const {
    file = "<memory>",
    maxMegapixels = DECODE_DEFAULTS.maxMegapixels,
    maxMemoryMiB = DECODE_DEFAULTS.maxMemoryMiB,
  } = options;
  const limits = { file, maxMegapixels, maxMemoryMiB };

  if (bytes.length === 0) {
    throw new ImageDecodeError(file, "the file is empty (0 bytes)");
  }

  const format = sniffImageFormat(bytes);
  if (format === "jpeg") return decodeJpeg(bytes, limits);
  if (format === "png") return decodePng(bytes, limits);
  if (format !== null) {
    throw new ImageDecodeError(
      file,
      `${format.toUpperCase()} images are not supported (only JPEG and PNG)`,
    );
  }
  throw new ImageDecodeError(file, describeUnknown(bytes));
}
