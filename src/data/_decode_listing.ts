/**
 * Decodes the files of a folder listing and packs the survivors, in list
 * order, into one byte array: the slow half of `loadImageFolder`.
 *
 * @module
 */

import { ImageDecodeError } from "./decode_image.ts";
import type { ResizeFit } from "./resize.ts";
import { decodeAll, plannedThreads } from "./_decode_pool.ts";
import type { CacheHeader } from "./_image_cache.ts";
import {
  type FolderListing,
  ImageFolderError,
  type ListedImage,
} from "./_list_images.ts";
import type { ImageFolderEvent } from "./image_folder_events.ts";

/** What to do with a file that cannot be decoded. */
export type CorruptPolicy = "error" | "skip";

/** Decodes every listed file and packs the survivors in list order. */
export async function decodeListing(options: {
  listing: FolderListing;
  imageSize: number;
  fit: ResizeFit;
  onCorrupt: CorruptPolicy;
  decodeThreads: number;
  maxMegapixels: number;
  maxMemoryMiB: number;
  log: (event: ImageFolderEvent) => void;
}): Promise<{ header: Omit<CacheHeader, "key">; pixels: Uint8Array }> {
  const { listing, imageSize, onCorrupt, log } = options;
  const files = listing.files;
  const imageBytes = imageSize * imageSize * 3;
  const pixels = new Uint8Array(files.length * imageBytes);
  const failures = new Map<number, string>();
  const started = performance.now();
  const progressEvery = Math.max(1, Math.floor(files.length / 20));

  log({
    kind: "decode_start",
    files: files.length,
    threads: plannedThreads(files.length, options.decodeThreads),
  });
  await decodeAll(files.map((f) => f.path), {
    settings: {
      imageSize,
      fit: options.fit,
      maxMegapixels: options.maxMegapixels,
      maxMemoryMiB: options.maxMemoryMiB,
    },
    threads: options.decodeThreads,
    stopAtFirstFailure: onCorrupt === "error",
    onDecoded: (id, image) => pixels.set(image, id * imageBytes),
    onFailed: (id, reason) => failures.set(id, reason),
    onProgress: (done) => {
      if (done % progressEvery !== 0 && done !== files.length) return;
      const elapsedMs = performance.now() - started;
      log({ kind: "decode_progress", done, total: files.length, elapsedMs });
    },
  });

  const failedIds = [...failures.keys()].sort((a, b) => a - b);
  if (onCorrupt === "error" && failedIds.length > 0) {
    const first = failedIds[0]!;
    throw new ImageDecodeError(files[first]!.path, failures.get(first)!);
  }
  checkNoFolderLost(files, failures);

  // Compact in place: survivors keep their list order.
  const kept: ListedImage[] = [];
  const skipped: { file: string; reason: string }[] = [];
  for (const [id, file] of files.entries()) {
    const reason = failures.get(id);
    if (reason !== undefined) {
      skipped.push({ file: file.relPath, reason });
      log({ kind: "skipped", file: file.path, reason });
      continue;
    }
    const target = kept.length * imageBytes;
    if (target !== id * imageBytes) {
      pixels.copyWithin(target, id * imageBytes, (id + 1) * imageBytes);
    }
    kept.push(file);
  }

  const pick = (split: "train" | "val") => {
    const chosen = kept.filter((f) => f.split === split);
    return {
      files: chosen.map((f) => f.relPath),
      labels: chosen.map((f) => f.label),
    };
  };
  return {
    header: {
      imageSize,
      classes: listing.classes,
      train: pick("train"),
      val: pick("val"),
      skipped,
      pixelBytes: kept.length * imageBytes,
    },
    pixels: pixels.subarray(0, kept.length * imageBytes),
  };
}

function checkNoFolderLost(
  files: readonly ListedImage[],
  failures: ReadonlyMap<number, string>,
): void {
  const perFolder = new Map<string, { total: number; failed: number }>();
  for (const [id, file] of files.entries()) {
    const counts = perFolder.get(file.folder) ?? { total: 0, failed: 0 };
    counts.total++;
    if (failures.has(id)) counts.failed++;
    perFolder.set(file.folder, counts);
  }
  for (const [folder, { total, failed }] of perFolder) {
    if (failed === total) {
      throw new ImageFolderError(
        folder,
        `none of its ${total} images could be decoded`,
      );
    }
  }
}
