/**
 * An image-folder dataset: every image decoded once, resized to a square,
 * packed into one byte array per split, and cached on disk.
 *
 * See `_list_images.ts` for the folder layouts and `docs/data.md` for the
 * policies (resize, alpha, corrupt files, cache).
 *
 * @module
 */

import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import {
  DECODE_DEFAULTS,
  DECODER_VERSION,
  ImageDecodeError,
} from "./decode_image.ts";
import { RESIZE_VERSION, type ResizeFit } from "./resize.ts";
import { type CorruptPolicy, decodeListing } from "./_decode_listing.ts";
import type { ImageFolderEvent } from "./image_folder_events.ts";
import {
  type FolderLayout,
  type FolderListing,
  ImageFolderError,
  listImageFolder,
} from "./_list_images.ts";
import {
  type CacheHeader,
  readImageCache,
  writeImageCache,
} from "./_image_cache.ts";
import type { ImageSet } from "./batch.ts";

export { ImageFolderError };
export type { CorruptPolicy, FolderLayout, ImageFolderEvent };
export { formatImageFolderEvent } from "./image_folder_events.ts";
export { DecodeWorkerError } from "./_decode_pool.ts";

/** Bumped when the cache file layout or key recipe changes. */
const CACHE_FORMAT = 1;

/** Defaults of {@linkcode LoadImageFolderOptions}. */
export const IMAGE_FOLDER_DEFAULTS = {
  imageSize: 224,
  fit: "squash",
  valFraction: 0.2,
  seed: 0,
  onCorrupt: "error",
  cache: true,
  maxMegapixels: DECODE_DEFAULTS.maxMegapixels,
  maxMemoryMiB: DECODE_DEFAULTS.maxMemoryMiB,
} as const;

/** A file left out of the dataset and why. */
export interface SkippedImage {
  /** The file (root joined with its relative path). */
  file: string;
  /** Why it could not be decoded. */
  reason: string;
}

/** Options for {@linkcode loadImageFolder}. */
export interface LoadImageFolderOptions {
  /** Side length images are resized to, in pixels. @default 224 */
  imageSize?: number;
  /** Squash the whole image or crop its centre square. @default "squash" */
  fit?: ResizeFit;
  /**
   * Fraction of each class held out for val when the root has no `train/`
   * and `val/` folders, in [0, 1). @default 0.2
   */
  valFraction?: number;
  /** Seed of that split. @default 0 */
  seed?: number;
  /**
   * `"error"`: throw an {@linkcode ImageDecodeError} naming the first bad
   * file. `"skip"`: leave bad files out and list them in `skipped`.
   * @default "error"
   */
  onCorrupt?: CorruptPolicy;
  /** Read and write the on-disk cache. @default true */
  cache?: boolean;
  /**
   * Cache folder. @default `<project>/.cache/dptrain/images`, where
   * `<project>` is the folder holding `src/` (the working directory when
   * the module is not loaded from a file)
   */
  cacheDir?: string;
  /**
   * Decode threads (Web Workers); 1 decodes on the calling thread.
   * @default navigator.hardwareConcurrency, at most 8
   */
  decodeThreads?: number;
  /** Largest image accepted, in megapixels. @default 50 */
  maxMegapixels?: number;
  /** Most memory jpeg-js may allocate for one image, in MiB. @default 512 */
  maxMemoryMiB?: number;
  /** Receives progress events; see `formatImageFolderEvent`. */
  log?: (event: ImageFolderEvent) => void;
}

/** One split of a loaded image folder. */
export interface ImageSplit extends ImageSet {
  /** File of each image, relative to the root, `/`-separated. */
  files: string[];
}

/** A loaded image folder. */
export interface ImageFolderDataset {
  /** Absolute path of the root folder. */
  root: string;
  /** Layout found. */
  layout: FolderLayout;
  /** Class names in label order (sorted). */
  classes: string[];
  /** Side length of every image. */
  imageSize: number;
  /** Training split. */
  train: ImageSplit;
  /** Validation split (may be empty with `valFraction: 0`). */
  val: ImageSplit;
  /** Files left out with `onCorrupt: "skip"`. */
  skipped: SkippedImage[];
  /** Where the cache is and whether this load used it. */
  cache: { key: string; path: string | null; hit: boolean };
  /** Wall time of the load, in ms. */
  loadMs: number;
}

function defaultCacheDir(): string {
  const projectCache = new URL("../../.cache/dptrain/images", import.meta.url);
  if (projectCache.protocol === "file:") return fileURLToPath(projectCache);
  return join(Deno.cwd(), ".cache", "dptrain", "images");
}

function defaultThreads(): number {
  const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
  return Math.max(1, Math.min(cores, 8));
}

function checkOptions(options: {
  imageSize: number;
  valFraction: number;
  seed: number;
  decodeThreads: number;
  fit: string;
  onCorrupt: string;
}): void {
  const fail = (what: string, received: unknown) => {
    throw new RangeError(
      `Cannot load image folder: ${what}, received ${received}`,
    );
  };
  const { imageSize, valFraction, seed, decodeThreads, fit, onCorrupt } =
    options;
  if (!Number.isInteger(imageSize) || imageSize < 1 || imageSize > 4096) {
    fail("imageSize must be an integer in [1, 4096]", imageSize);
  }
  if (!(valFraction >= 0 && valFraction < 1)) {
    fail("valFraction must be in [0, 1)", valFraction);
  }
  if (!Number.isSafeInteger(seed) || seed < 0) {
    fail("seed must be a safe integer >= 0", seed);
  }
  if (!Number.isInteger(decodeThreads) || decodeThreads < 1) {
    fail("decodeThreads must be an integer >= 1", decodeThreads);
  }
  if (fit !== "squash" && fit !== "center_crop") {
    fail('fit must be "squash" or "center_crop"', fit);
  }
  if (onCorrupt !== "error" && onCorrupt !== "skip") {
    fail('onCorrupt must be "error" or "skip"', onCorrupt);
  }
}

function cacheKey(
  listing: FolderListing,
  settings: Record<string, unknown>,
): string {
  const files = listing.files.map((f) => [
    f.relPath,
    f.sizeBytes,
    f.mtimeMs,
    f.split,
    f.label,
  ]);
  const recipe = JSON.stringify({
    format: CACHE_FORMAT,
    decoder: DECODER_VERSION,
    resize: RESIZE_VERSION,
    ...settings,
    classes: listing.classes,
    files,
  });
  return createHash("sha256").update(recipe).digest("hex");
}

function splitOf(options: {
  entries: { files: string[]; labels: number[] };
  pixels: Uint8Array;
  imageSize: number;
}): ImageSplit {
  const { entries, pixels, imageSize } = options;
  return {
    images: pixels,
    labels: Int32Array.from(entries.labels),
    files: entries.files,
    imageSize,
    count: entries.files.length,
  };
}

function datasetFromHeader(options: {
  header: CacheHeader;
  pixels: Uint8Array;
  root: string;
  layout: FolderLayout;
}): Omit<ImageFolderDataset, "cache" | "loadMs"> {
  const { header, pixels, root, layout } = options;
  const imageBytes = header.imageSize * header.imageSize * 3;
  const trainBytes = header.train.files.length * imageBytes;
  const valBytes = header.val.files.length * imageBytes;
  return {
    root,
    layout,
    classes: header.classes,
    imageSize: header.imageSize,
    train: splitOf({
      entries: header.train,
      pixels: pixels.subarray(0, trainBytes),
      imageSize: header.imageSize,
    }),
    val: splitOf({
      entries: header.val,
      pixels: pixels.subarray(trainBytes, trainBytes + valBytes),
      imageSize: header.imageSize,
    }),
    skipped: header.skipped.map((s) => ({
      file: join(root, s.file),
      reason: s.reason,
    })),
  };
}

/**
 * Loads `<root>/<class>/*.jpg|jpeg|png` (seeded split) or
 * `<root>/{train,val}/<class>/*` into memory, resized to `imageSize`.
 *
 * The first load decodes every file (on `decodeThreads` workers) and writes
 * the pixels to the cache; later loads of the same files at the same size
 * read them back. The cache key is a SHA-256 of the decoder and resize
 * versions, the size and fit, and every file's relative path, byte size,
 * mtime, split and label: touching, adding or removing a file re-decodes.
 *
 * @param root The dataset folder.
 * @param options Size, split, corrupt-file policy, cache and logging.
 * @returns Both splits, NHWC RGB bytes with labels and file lists.
 * @throws {ImageFolderError} When the folder is missing, has no classes, a
 * class folder is empty, or every image of a class folder is unreadable.
 * @throws {ImageDecodeError} With `onCorrupt: "error"`, for the first file
 * (in class, then name order) that cannot be decoded.
 * @throws {RangeError} When an option is out of range.
 *
 * @example
 * ```ts ignore
 * import { loadImageFolder } from "./image_folder.ts";
 *
 * const data = await loadImageFolder("assets/data/flowers5", {
 *   imageSize: 160,
 *   log: (event) => console.log(event.kind),
 * });
 * console.log(data.classes, data.train.count, data.val.count);
 * ```
 */
export async function loadImageFolder(
  root: string,
  options: LoadImageFolderOptions = {},
): Promise<ImageFolderDataset> {
  const {
    imageSize = IMAGE_FOLDER_DEFAULTS.imageSize,
    fit = IMAGE_FOLDER_DEFAULTS.fit,
    valFraction = IMAGE_FOLDER_DEFAULTS.valFraction,
    seed = IMAGE_FOLDER_DEFAULTS.seed,
    onCorrupt = IMAGE_FOLDER_DEFAULTS.onCorrupt,
    cache = IMAGE_FOLDER_DEFAULTS.cache,
    cacheDir = defaultCacheDir(),
    decodeThreads = defaultThreads(),
    maxMegapixels = IMAGE_FOLDER_DEFAULTS.maxMegapixels,
    maxMemoryMiB = IMAGE_FOLDER_DEFAULTS.maxMemoryMiB,
    log = () => {},
  } = options;
  checkOptions({ imageSize, valFraction, seed, decodeThreads, fit, onCorrupt });

  const started = performance.now();
  const absoluteRoot = resolve(root);
  const listing = await listImageFolder(absoluteRoot, { valFraction, seed });
  log({
    kind: "listed",
    root: absoluteRoot,
    layout: listing.layout,
    classes: listing.classes,
    trainFiles: listing.files.filter((f) => f.split === "train").length,
    valFiles: listing.files.filter((f) => f.split === "val").length,
  });

  const key = cacheKey(listing, {
    imageSize,
    fit,
    maxMegapixels,
    maxMemoryMiB,
  });
  const cachePath = cache ? join(resolve(cacheDir), `${key}.dpimg`) : null;
  const finish = (
    loaded: Omit<ImageFolderDataset, "cache" | "loadMs">,
    hit: boolean,
  ): ImageFolderDataset => {
    const loadMs = performance.now() - started;
    log({
      kind: "loaded",
      train: loaded.train.count,
      val: loaded.val.count,
      skipped: loaded.skipped.length,
      fromCache: hit,
      totalMs: loadMs,
    });
    return { ...loaded, cache: { key, path: cachePath, hit }, loadMs };
  };

  if (cachePath !== null) {
    const readStarted = performance.now();
    const read = await readImageCache(cachePath, key);
    if (read.kind === "hit") {
      log({
        kind: "cache_hit",
        path: cachePath,
        readMs: performance.now() - readStarted,
      });
      const loaded = datasetFromHeader({
        ...read.entry,
        root: absoluteRoot,
        layout: listing.layout,
      });
      const firstBad = loaded.skipped[0];
      if (onCorrupt === "error" && firstBad !== undefined) {
        throw new ImageDecodeError(firstBad.file, firstBad.reason);
      }
      return finish(loaded, true);
    }
    if (read.kind === "invalid") {
      log({ kind: "cache_invalid", path: cachePath, reason: read.reason });
    }
  }

  const decoded = await decodeListing({
    listing,
    imageSize,
    fit,
    onCorrupt,
    decodeThreads,
    maxMegapixels,
    maxMemoryMiB,
    log,
  });
  const header: CacheHeader = { key, ...decoded.header };
  if (cachePath !== null) {
    const writeStarted = performance.now();
    const bytes = await writeImageCache(cachePath, {
      header,
      pixels: decoded.pixels,
    });
    log({
      kind: "cache_written",
      path: cachePath,
      bytes,
      writeMs: performance.now() - writeStarted,
    });
  }
  const loaded = datasetFromHeader({
    header,
    pixels: decoded.pixels,
    root: absoluteRoot,
    layout: listing.layout,
  });
  return finish(loaded, false);
}
