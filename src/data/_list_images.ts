/**
 * Finds the classes and image files of a dataset folder and assigns each file
 * to the train or val split.
 *
 * Layouts: `<root>/train/<class>/*` plus `<root>/val/<class>/*` when both
 * `train/` and `val/` exist (same class folders in both); otherwise
 * `<root>/<class>/*` with a seeded, stratified split. Class folders are the
 * non-hidden subdirectories, sorted by name (code-point order, as Python's
 * `sorted` and so Keras do). Images are the non-hidden files ending in
 * `.jpg`, `.jpeg` or `.png` (any case) directly inside a class folder; other
 * files and nested folders are ignored.
 *
 * @module
 */

import { join } from "node:path";
import { CounterRng, tagHash } from "./rng.ts";

/** The RNG purpose tag of the seeded train/val split. */
export const SPLIT_TAG = "split";

const IMAGE_EXTENSION = /\.(jpe?g|png)$/i;

/** Thrown when a dataset folder is missing, empty or malformed. */
export class ImageFolderError extends Error {
  /** The folder at fault. */
  readonly path: string;
  /** What is wrong with it. */
  readonly reason: string;

  /**
   * Makes the error; the message names the folder and the reason.
   *
   * @param path The folder at fault.
   * @param reason What is wrong with it.
   * @param options Standard error options (`cause`).
   */
  constructor(path: string, reason: string, options?: ErrorOptions) {
    super(`Cannot load image folder '${path}': ${reason}`, options);
    this.name = "ImageFolderError";
    this.path = path;
    this.reason = reason;
  }
}

/** Which layout a dataset folder has. */
export type FolderLayout = "split_folders" | "seeded_split";

/** One image file found by {@linkcode listImageFolder}. */
export interface ListedImage {
  /** Path relative to the root, with `/` separators. */
  relPath: string;
  /** Path to open (root joined with relPath). */
  path: string;
  /** The class folder the file sits in (for error messages). */
  folder: string;
  /** Class index. */
  label: number;
  /** Split it belongs to. */
  split: "train" | "val";
  /** File size in bytes (part of the cache key). */
  sizeBytes: number;
  /** Modification time in ms since the epoch, or 0 if unknown. */
  mtimeMs: number;
}

/** Result of {@linkcode listImageFolder}. */
export interface FolderListing {
  /** Class names in label order. */
  classes: string[];
  /** Layout found. */
  layout: FolderLayout;
  /** Train files (class, then name order), then val files (same order). */
  files: ListedImage[];
}

/** Options for {@linkcode listImageFolder}. */
export interface ListOptions {
  /** Fraction of each class put in val, seeded layout only. */
  valFraction: number;
  /** Seed of the split, seeded layout only. */
  seed: number;
}

function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function statDir(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new ImageFolderError(path, `cannot read it: ${String(error)}`, {
      cause: error,
    });
  }
}

async function subdirectories(path: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(path)) {
    if (entry.name.startsWith(".")) continue;
    // A symlinked class folder counts: datasets are often assembled so.
    const target = entry.isSymlink
      ? await statDir(join(path, entry.name))
      : null;
    if (entry.isDirectory || target?.isDirectory) names.push(entry.name);
  }
  return names.sort(byCodePoint);
}

async function imageNames(folder: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(folder)) {
    if (entry.name.startsWith(".") || entry.isDirectory) continue;
    if (IMAGE_EXTENSION.test(entry.name)) names.push(entry.name);
  }
  if (names.length === 0) {
    throw new ImageFolderError(
      folder,
      "the class folder holds no .jpg, .jpeg or .png files",
    );
  }
  return names.sort(byCodePoint);
}

async function describe(options: {
  root: string;
  relPath: string;
  folder: string;
  label: number;
  split: "train" | "val";
}): Promise<ListedImage> {
  const path = join(options.root, options.relPath);
  const info = await Deno.stat(path);
  return {
    ...options,
    path,
    sizeBytes: info.size,
    mtimeMs: info.mtime?.getTime() ?? 0,
  };
}

async function listSplitFolders(root: string): Promise<FolderListing> {
  const trainClasses = await subdirectories(join(root, "train"));
  const valClasses = await subdirectories(join(root, "val"));
  if (trainClasses.length === 0) {
    throw new ImageFolderError(join(root, "train"), "it has no class folders");
  }
  if (trainClasses.join("/") !== valClasses.join("/")) {
    throw new ImageFolderError(
      root,
      `train/ and val/ must hold the same class folders: train has ` +
        `[${trainClasses.join(", ")}], val has [${valClasses.join(", ")}]`,
    );
  }

  const pending: Promise<ListedImage>[] = [];
  for (const split of ["train", "val"] as const) {
    for (const [label, name] of trainClasses.entries()) {
      const folder = join(root, split, name);
      for (const file of await imageNames(folder)) {
        const relPath = `${split}/${name}/${file}`;
        pending.push(describe({ root, relPath, folder, label, split }));
      }
    }
  }
  return {
    classes: trainClasses,
    layout: "split_folders",
    files: await Promise.all(pending),
  };
}

/**
 * Puts `round(count * valFraction)` files of one class in val (at most
 * count - 1, so every class keeps a training image). Each file's rank is a
 * hash of (seed, its name), so adding or removing a file moves few others.
 */
function splitClass(
  names: string[],
  options: ListOptions,
): Map<string, "train" | "val"> {
  const rng = new CounterRng({ seed: options.seed, tag: SPLIT_TAG });
  const ranked = names
    .map((name) => ({ name, key: rng.uint32([tagHash(name)]) }))
    .sort((a, b) => a.key - b.key || byCodePoint(a.name, b.name));
  const valCount = Math.min(
    Math.round(names.length * options.valFraction),
    names.length - 1,
  );
  return new Map(
    ranked.map(({ name }, i) => [name, i < valCount ? "val" : "train"]),
  );
}

async function listSeeded(
  root: string,
  options: ListOptions,
): Promise<FolderListing> {
  const classes = await subdirectories(root);
  if (classes.length === 0) {
    throw new ImageFolderError(
      root,
      "it has no class folders (expected <root>/<class>/*.jpg, or " +
        "<root>/train/<class>/ and <root>/val/<class>/)",
    );
  }

  const bySplit = {
    train: [] as Promise<ListedImage>[],
    val: [] as Promise<ListedImage>[],
  };
  for (const [label, name] of classes.entries()) {
    const folder = join(root, name);
    const names = await imageNames(folder);
    const assignment = splitClass(names, options);
    for (const file of names) {
      const split = assignment.get(file)!;
      const relPath = `${name}/${file}`;
      bySplit[split].push(describe({ root, relPath, folder, label, split }));
    }
  }
  return {
    classes,
    layout: "seeded_split",
    files: await Promise.all([...bySplit.train, ...bySplit.val]),
  };
}

/**
 * Lists the classes and images of a dataset folder.
 *
 * @throws {ImageFolderError} When the root is missing or not a folder, has no
 * class folders, a class folder has no images, or train/ and val/ disagree.
 */
export async function listImageFolder(
  root: string,
  options: ListOptions,
): Promise<FolderListing> {
  const info = await statDir(root);
  if (info === null) throw new ImageFolderError(root, "no such folder");
  if (!info.isDirectory) throw new ImageFolderError(root, "not a folder");

  const train = await statDir(join(root, "train"));
  const val = await statDir(join(root, "val"));
  if (train?.isDirectory && val?.isDirectory) return listSplitFolders(root);
  return listSeeded(root, options);
}
