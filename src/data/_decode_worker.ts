/**
 * Decode worker: receives `DecodeRequest`s, answers `DecodeResponse`s.
 * Started by `_decode_pool.ts`; not part of the public API.
 *
 * @module
 */

import { ImageDecodeError } from "./decode_image.ts";
import { loadResizedImage } from "./_load_one.ts";
import type { DecodeRequest, DecodeResponse } from "./_decode_pool.ts";

/** The worker-side globals used here (the default lib types a window). */
interface WorkerScope {
  onmessage: ((event: MessageEvent<DecodeRequest>) => void) | null;
  postMessage(message: DecodeResponse, transfer: Transferable[]): void;
}

const scope = self as unknown as WorkerScope;

scope.onmessage = (event) => {
  const { id, path, settings } = event.data;
  try {
    const pixels = loadResizedImage(path, settings);
    scope.postMessage({ id, ok: true, pixels }, [pixels.buffer]);
  } catch (error) {
    if (error instanceof ImageDecodeError) {
      scope.postMessage({ id, ok: false, reason: error.reason }, []);
      return;
    }
    // Anything else is a bug here, not a bad file: let the pool fail loudly.
    throw error;
  }
};
