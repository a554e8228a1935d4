/**
 * Downloader for TensorFlow's full flower photos archive (tf_flowers: 3,670
 * JPEGs in 5 class folders), cached on disk and checked by SHA-256.
 *
 * Steps, each skipped when its result is already cached:
 * 1. download `url` to `<cacheDir>/flower_photos.tgz.part`, hashing while
 *    writing; a hash other than `sha256` deletes the file and throws;
 * 2. rename it to `<cacheDir>/flower_photos.tgz`;
 * 3. extract it (gzip, then the tar reader of `tar.ts`) into a temporary
 *    folder and rename its `flower_photos/` to `<cacheDir>/flower_photos/`;
 * 4. write `<cacheDir>/flower_photos.complete` holding the hash.
 *
 * A second call with the same hash finds the marker and sends no request.
 * `loadImageFolder(result.root, { valFraction, seed })` then reads it with a
 * seeded split (the archive has no train/val folders).
 *
 * @module
 */

import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { extractTarGz } from "./tar.ts";

/** Public URL of the archive. */
export const TF_FLOWERS_URL =
  "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz";

/**
 * SHA-256 of `flower_photos.tgz` as pinned by TensorFlow Datasets
 * (`tensorflow_datasets/url_checksums/tf_flowers.txt`, which also gives its
 * size, {@linkcode TF_FLOWERS_BYTES}). Not verified against a download here:
 * the machine this was written on has no internet access.
 */
export const TF_FLOWERS_SHA256 =
  "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c";

/** Size of the archive in bytes, from the same TFDS checksum file. */
export const TF_FLOWERS_BYTES = 228_813_984;

/** The folder the archive unpacks to. */
const TOP_FOLDER = "flower_photos";

/** Thrown when the server does not deliver the archive. */
export class DownloadError extends Error {
  /** The URL requested. */
  readonly url: string;
  /** HTTP status, or null when no response arrived. */
  readonly status: number | null;

  /**
   * @param message What went wrong.
   * @param options URL, status and standard error options.
   */
  constructor(
    message: string,
    options: { url: string; status: number | null } & ErrorOptions,
  ) {
    super(message, options);
    this.name = "DownloadError";
    this.url = options.url;
    this.status = options.status;
  }
}

/** Thrown when downloaded bytes do not hash to the expected SHA-256. */
export class ChecksumMismatchError extends Error {
  /** Where the bytes came from. */
  readonly url: string;
  /** The hash asked for (hex). */
  readonly expected: string;
  /** The hash of what arrived (hex). */
  readonly actual: string;

  /**
   * @param options URL and both hashes.
   */
  constructor(options: { url: string; expected: string; actual: string }) {
    super(
      `Cannot use download from '${options.url}': SHA-256 mismatch, ` +
        `expected ${options.expected}, received ${options.actual}`,
    );
    this.name = "ChecksumMismatchError";
    this.url = options.url;
    this.expected = options.expected;
    this.actual = options.actual;
  }
}

/** Progress events of {@linkcode downloadTfFlowers}. */
export type TfFlowersEvent =
  | { kind: "cached"; root: string }
  | { kind: "download_start"; url: string; totalBytes: number | null }
  | { kind: "download_progress"; bytes: number; totalBytes: number | null }
  | { kind: "verified"; sha256: string; bytes: number }
  | { kind: "extracted"; root: string; files: number; ms: number };

/** Options for {@linkcode downloadTfFlowers}. */
export interface DownloadTfFlowersOptions {
  /** Where to download from. @default TF_FLOWERS_URL */
  url?: string;
  /** Expected SHA-256 of the archive, hex. @default TF_FLOWERS_SHA256 */
  sha256?: string;
  /** Cache folder. @default `<project>/.cache/dptrain/tf_flowers` */
  cacheDir?: string;
  /** Aborts the download. */
  signal?: AbortSignal;
  /** Receives progress events. */
  log?: (event: TfFlowersEvent) => void;
}

/** Where the photos are, and what this call had to do. */
export interface TfFlowersDownload {
  /** `<cacheDir>/flower_photos`, holding one folder per class. */
  root: string;
  /** The verified archive. */
  archivePath: string;
  /** Its SHA-256 (hex). */
  sha256: string;
  /** Whether this call downloaded the archive. */
  downloaded: boolean;
  /** Whether this call extracted it. */
  extracted: boolean;
}

function defaultCacheDir(): string {
  const projectCache = new URL(
    "../../.cache/dptrain/tf_flowers",
    import.meta.url,
  );
  if (projectCache.protocol === "file:") return fileURLToPath(projectCache);
  return join(Deno.cwd(), ".cache", "dptrain", "tf_flowers");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path, { read: true });
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

async function download(options: {
  url: string;
  expected: string;
  archivePath: string;
  signal: AbortSignal | undefined;
  log: (event: TfFlowersEvent) => void;
}): Promise<void> {
  const { url, expected, archivePath, signal, log } = options;
  let response: Response;
  try {
    response = await fetch(url, signal ? { signal } : {});
  } catch (error) {
    throw new DownloadError(`Cannot download '${url}': ${String(error)}`, {
      url,
      status: null,
      cause: error,
    });
  }
  if (!response.ok || response.body === null) {
    await response.body?.cancel();
    throw new DownloadError(
      `Cannot download '${url}': HTTP ${response.status} ` +
        `${response.statusText}`,
      { url, status: response.status },
    );
  }

  const lengthHeader = response.headers.get("content-length");
  const totalBytes = lengthHeader === null ? null : Number(lengthHeader);
  log({ kind: "download_start", url, totalBytes });

  const partPath = `${archivePath}.part`;
  const hash = createHash("sha256");
  const file = await Deno.open(partPath, {
    write: true,
    create: true,
    truncate: true,
  });
  let bytes = 0;
  let nextReport = 0;
  try {
    for await (const chunk of response.body) {
      hash.update(chunk);
      let written = 0;
      while (written < chunk.length) {
        written += await file.write(chunk.subarray(written));
      }
      bytes += chunk.length;
      if (bytes >= nextReport) {
        log({ kind: "download_progress", bytes, totalBytes });
        nextReport = bytes + 8 * 2 ** 20;
      }
    }
    await file.sync();
  } finally {
    file.close();
  }

  const actual = hash.digest("hex");
  if (actual !== expected) {
    await Deno.remove(partPath);
    throw new ChecksumMismatchError({ url, expected, actual });
  }
  log({ kind: "verified", sha256: actual, bytes });
  await Deno.rename(partPath, archivePath);
}

/**
 * Downloads, verifies and extracts the tf_flowers archive, or finds it in
 * the cache.
 *
 * @param options URL, expected hash, cache folder, abort signal, progress.
 * @returns The extracted folder and what was done.
 * @throws {DownloadError} When the request fails or is not HTTP 2xx.
 * @throws {ChecksumMismatchError} When the bytes hash to another SHA-256
 * (the partial file is deleted).
 * @throws {TarError} When the archive is malformed or has unsafe paths.
 *
 * @example
 * ```ts ignore
 * import { downloadTfFlowers } from "./tf_flowers.ts";
 * import { loadImageFolder } from "./image_folder.ts";
 *
 * const { root } = await downloadTfFlowers();
 * const data = await loadImageFolder(root, { valFraction: 0.2, seed: 1 });
 * ```
 */
export async function downloadTfFlowers(
  options: DownloadTfFlowersOptions = {},
): Promise<TfFlowersDownload> {
  const {
    url = TF_FLOWERS_URL,
    sha256 = TF_FLOWERS_SHA256,
    cacheDir = defaultCacheDir(),
    signal,
    log = () => {},
  } = options;
  if (!/^[0-9a-f]{64}$/.test(sha256)) {
    throw new RangeError(
      `Cannot download tf_flowers: sha256 must be 64 lowercase hex ` +
        `digits, received '${sha256}'`,
    );
  }

  const dir = resolve(cacheDir);
  const root = join(dir, TOP_FOLDER);
  const archivePath = join(dir, `${TOP_FOLDER}.tgz`);
  const markerPath = join(dir, `${TOP_FOLDER}.complete`);
  await Deno.mkdir(dir, { recursive: true });

  const marker = await Deno.readTextFile(markerPath).catch((error) => {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  });
  if (marker?.trim() === sha256 && await exists(root)) {
    log({ kind: "cached", root });
    return { root, archivePath, sha256, downloaded: false, extracted: false };
  }

  let downloaded = false;
  const haveArchive = await exists(archivePath) &&
    (await sha256OfFile(archivePath)) === sha256;
  if (!haveArchive) {
    await download({ url, expected: sha256, archivePath, signal, log });
    downloaded = true;
  }

  const started = performance.now();
  const staging = join(dir, `.extract-${crypto.randomUUID()}`);
  try {
    const result = await extractTarGz(archivePath, { destDir: staging });
    if (!(await exists(join(staging, TOP_FOLDER)))) {
      throw new DownloadError(
        `Cannot use archive '${archivePath}': it has no ${TOP_FOLDER}/ folder`,
        { url, status: null },
      );
    }
    await Deno.remove(markerPath).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    if (await exists(root)) await Deno.remove(root, { recursive: true });
    await Deno.rename(join(staging, TOP_FOLDER), root);
    await Deno.writeTextFile(markerPath, `${sha256}\n`);
    log({
      kind: "extracted",
      root,
      files: result.files.length,
      ms: performance.now() - started,
    });
  } finally {
    await Deno.remove(staging, { recursive: true }).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
  return { root, archivePath, sha256, downloaded, extracted: true };
}
