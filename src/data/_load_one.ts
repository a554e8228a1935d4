/**
 * Read, decode and resize one image file: the unit of work of the image
 * folder loader, run on the main thread or in a decode worker.
 *
 * @module
 */

import { decodeImage, ImageDecodeError } from "./decode_image.ts";
import { type ResizeFit, resizeRgb } from "./resize.ts";

/** What every decode of one load shares. */
export interface LoadOneSettings {
  /** Output side length in pixels. */
  imageSize: number;
  /** Squash or centre-crop. */
  fit: ResizeFit;
  /** Largest image accepted, in megapixels. */
  maxMegapixels: number;
  /** Most memory jpeg-js may allocate, in MiB. */
  maxMemoryMiB: number;
}

/**
 * Reads `path` and returns its pixels resized to `imageSize` squared.
 *
 * @throws {ImageDecodeError} When the file cannot be read or decoded; a read
 * failure (permissions, file gone) is reported the same way, since the
 * caller's choice (fail or skip) is the same.
 */
export function loadResizedImage(
  path: string,
  settings: LoadOneSettings,
): Uint8Array<ArrayBuffer> {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(path);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new ImageDecodeError(path, `cannot read the file: ${detail}`, {
      cause: error,
    });
  }

  const image = decodeImage(bytes, {
    file: path,
    maxMegapixels: settings.maxMegapixels,
    maxMemoryMiB: settings.maxMemoryMiB,
  });
  return resizeRgb(image, { size: settings.imageSize, fit: settings.fit });
}
