/**
 * Decodes many image files, on the main thread or on a pool of workers.
 *
 * jpeg-js needs about 10 ms for a 336x224 JPEG, so 1,700 files take 17 s on
 * one thread; the pool divides that by the core count. Results are the same
 * whichever thread decodes a file: decoding and resizing are pure.
 *
 * @module
 */

import { ImageDecodeError } from "./decode_image.ts";
import { type LoadOneSettings, loadResizedImage } from "./_load_one.ts";

/** Main thread -> worker. */
export interface DecodeRequest {
  /** Position of the file in the load's file list. */
  id: number;
  /** File to read. */
  path: string;
  /** Size, fit and limits. */
  settings: LoadOneSettings;
}

/** Worker -> main thread. */
export type DecodeResponse =
  | { id: number; ok: true; pixels: Uint8Array }
  | { id: number; ok: false; reason: string };

/** Options for {@linkcode decodeAll}. */
export interface DecodeAllOptions {
  /** Size, fit and limits. */
  settings: LoadOneSettings;
  /** Worker count; 1 decodes on the calling thread. */
  threads: number;
  /**
   * Stop handing out files after the first failure. Files before it in the
   * list are still decoded, so the first failing file is always found.
   */
  stopAtFirstFailure: boolean;
  /** Called once per decoded file. */
  onDecoded: (id: number, pixels: Uint8Array) => void;
  /** Called once per failed file. */
  onFailed: (id: number, reason: string) => void;
  /** Called after each finished file with the running count. */
  onProgress: (done: number) => void;
}

/**
 * Thrown when a decode worker dies (a bug or out of memory, never a bad file:
 * those come back as per-file failures).
 */
export class DecodeWorkerError extends Error {
  /**
   * @param message What the worker reported.
   * @param options Standard error options (`cause`).
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DecodeWorkerError";
  }
}

/** Fewer files than this are decoded inline: starting workers costs more. */
const MIN_FILES_PER_WORKER = 16;

/** Files in flight per worker, so a worker never idles between messages. */
const IN_FLIGHT_PER_WORKER = 2;

async function decodeInline(
  paths: readonly string[],
  options: DecodeAllOptions,
): Promise<void> {
  for (let id = 0; id < paths.length; id++) {
    try {
      options.onDecoded(id, loadResizedImage(paths[id]!, options.settings));
    } catch (error) {
      if (!(error instanceof ImageDecodeError)) throw error;
      options.onFailed(id, error.reason);
      if (options.stopAtFirstFailure) return;
    }
    options.onProgress(id + 1);

    // Let timers and signal handlers (Ctrl-C) run during a long load.
    if (id % 64 === 63) await new Promise((r) => setTimeout(r, 0));
  }
}

function decodeOnWorkers(
  paths: readonly string[],
  options: DecodeAllOptions,
): Promise<void> {
  const { threads } = options;
  const workerUrl = new URL("./_decode_worker.ts", import.meta.url).href;
  const workers = Array.from(
    { length: threads },
    () => new Worker(workerUrl, { type: "module" }),
  );

  let nextId = 0;
  let inFlight = 0;
  let done = 0;
  let stopped = false;

  const finished = new Promise<void>((resolve, reject) => {
    const dispatch = (worker: Worker) => {
      if (stopped || nextId >= paths.length) {
        if (inFlight === 0) resolve();
        return;
      }
      const id = nextId++;
      inFlight++;
      const request: DecodeRequest = {
        id,
        path: paths[id]!,
        settings: options.settings,
      };
      worker.postMessage(request);
    };

    for (const worker of workers) {
      worker.onmessage = (event: MessageEvent<DecodeResponse>) => {
        const response = event.data;
        inFlight--;
        done++;
        // The callbacks run caller code (the log); a throw there must fail
        // the load, not escape as an uncaught error in an event handler.
        try {
          if (response.ok) {
            options.onDecoded(response.id, response.pixels);
          } else {
            options.onFailed(response.id, response.reason);
            if (options.stopAtFirstFailure) stopped = true;
          }
          options.onProgress(done);
        } catch (error) {
          stopped = true;
          reject(error);
          return;
        }
        dispatch(worker);
      };
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault();
        stopped = true;
        reject(
          new DecodeWorkerError(
            `Cannot decode images: a decode worker failed: ${event.message}`,
          ),
        );
      };
      for (let k = 0; k < IN_FLIGHT_PER_WORKER; k++) dispatch(worker);
    }
  });

  return finished.finally(() => {
    for (const worker of workers) worker.terminate();
  });
}

/** How many threads {@linkcode decodeAll} uses for `files` files. */
export function plannedThreads(files: number, maxThreads: number): number {
  return Math.max(
    1,
    Math.min(maxThreads, Math.floor(files / MIN_FILES_PER_WORKER)),
  );
}

/**
 * Decodes and resizes every file in `paths`, reporting each result through
 * the callbacks (in completion order, which is not list order on workers).
 */
export async function decodeAll(
  paths: readonly string[],
  options: DecodeAllOptions,
): Promise<void> {
  const threads = plannedThreads(paths.length, options.threads);
  if (threads === 1) return await decodeInline(paths, options);
  return await decodeOnWorkers(paths, { ...options, threads });
}
