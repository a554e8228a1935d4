/**
 * Progress events of `loadImageFolder`, and their one-line text form for
 * CLIs (library code never prints).
 *
 * @module
 */

import type { FolderLayout } from "./_list_images.ts";

/** Progress and outcome events of `loadImageFolder`. */
export type ImageFolderEvent =
  | {
    kind: "listed";
    root: string;
    layout: FolderLayout;
    classes: string[];
    trainFiles: number;
    valFiles: number;
  }
  | { kind: "cache_hit"; path: string; readMs: number }
  | { kind: "cache_invalid"; path: string; reason: string }
  | { kind: "decode_start"; files: number; threads: number }
  | { kind: "decode_progress"; done: number; total: number; elapsedMs: number }
  | { kind: "skipped"; file: string; reason: string }
  | { kind: "cache_written"; path: string; bytes: number; writeMs: number }
  | {
    kind: "loaded";
    train: number;
    val: number;
    skipped: number;
    fromCache: boolean;
    totalMs: number;
  };

/**
 * One line of text for an event, for CLIs that print progress.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatImageFolderEvent } from "./image_folder_events.ts";
 *
 * const line = formatImageFolderEvent({
 *   kind: "decode_progress",
 *   done: 850,
 *   total: 1700,
 *   elapsedMs: 4200,
 * });
 * assert.ok(line.includes("850/1700"));
 * ```
 */
export function formatImageFolderEvent(event: ImageFolderEvent): string {
  switch (event.kind) {
    case "listed":
      return `data: ${event.root}: ${event.classes.length} classes ` +
        `[${event.classes.join(", ")}], ${event.trainFiles} train + ` +
        `${event.valFiles} val files (${event.layout})`;
    case "cache_hit":
      return `data: cache hit ${event.path} (${event.readMs.toFixed(0)} ms)`;
    case "cache_invalid":
      return `data: ignoring damaged cache ${event.path}: ${event.reason}`;
    case "decode_start":
      return `data: decoding ${event.files} images on ${event.threads} ` +
        `thread(s)`;
    case "decode_progress": {
      const rate = event.done / Math.max(event.elapsedMs / 1000, 1e-3);
      return `data: decoded ${event.done}/${event.total} ` +
        `(${rate.toFixed(0)} images/s)`;
    }
    case "skipped":
      return `data: skipped ${event.file}: ${event.reason}`;
    case "cache_written":
      return `data: cached ${(event.bytes / 2 ** 20).toFixed(1)} MiB to ` +
        `${event.path} (${event.writeMs.toFixed(0)} ms)`;
    case "loaded":
      return `data: loaded ${event.train} train + ${event.val} val images` +
        (event.skipped > 0 ? `, ${event.skipped} skipped` : "") +
        ` in ${(event.totalMs / 1000).toFixed(2)} s` +
        (event.fromCache ? " (cached)" : "");
  }
}
