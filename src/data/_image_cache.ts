/**
 * On-disk cache of a decoded image folder: one file per key,
 * `<cacheDir>/<key>.dpimg`, holding a JSON header and the pixels of both
 * splits.
 *
 * Layout: 8 bytes magic `DPTIMG01`, u32 LE header length, header JSON (UTF-8),
 * zero padding to a multiple of 8, then `pixelBytes` bytes of NHWC RGB
 * pixels (train images, then val images). Files are written to a temporary
 * name, synced and renamed, so a crash never leaves a half file under the
 * real name; a file whose length disagrees with its header is a miss.
 *
 * TODO(#2): entries are never evicted; each (dataset, size) pair keeps its
 * file until the cache folder is deleted.
 *
 * @module
 */

const MAGIC = "DPTIMG01";

/** The header stored before the pixels. */
export interface CacheHeader {
  /** The cache key the file was written under. */
  key: string;
  /** Side length of every image. */
  imageSize: number;
  /** Class names in label order. */
  classes: string[];
  /** Per split: files (relative to the root) and labels, in pixel order. */
  train: { files: string[]; labels: number[] };
  /** As `train`. */
  val: { files: string[]; labels: number[] };
  /** Files that failed to decode (relative to the root) and why. */
  skipped: { file: string; reason: string }[];
  /** Bytes of pixels after the header. */
  pixelBytes: number;
}

/** A cache file read back. */
export interface CacheEntry {
  /** The header. */
  header: CacheHeader;
  /** Train then val pixels, `header.pixelBytes` bytes. */
  pixels: Uint8Array;
}

/** Outcome of {@linkcode readImageCache}. */
export type CacheRead =
  | { kind: "hit"; entry: CacheEntry }
  | { kind: "miss" }
  | { kind: "invalid"; reason: string };

function paddedLength(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** Reads a cache file; a missing file is a miss, a damaged one invalid. */
export async function readImageCache(
  path: string,
  key: string,
): Promise<CacheRead> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { kind: "miss" };
    throw error;
  }

  if (
    bytes.length < 12 ||
    new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC
  ) {
    return { kind: "invalid", reason: "bad magic" };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(8, true);
  const pixelStart = paddedLength(12 + headerLength);
  if (pixelStart > bytes.length) {
    return { kind: "invalid", reason: "header runs past the end" };
  }

  let header: CacheHeader;
  try {
    header = JSON.parse(
      new TextDecoder().decode(bytes.subarray(12, 12 + headerLength)),
    );
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    return { kind: "invalid", reason: `header is not JSON: ${detail}` };
  }
  if (header.key !== key) {
    return { kind: "invalid", reason: `written for key ${header.key}` };
  }
  if (bytes.length !== pixelStart + header.pixelBytes) {
    return {
      kind: "invalid",
      reason: `${bytes.length} bytes, header says ` +
        `${pixelStart + header.pixelBytes}`,
    };
  }
  return { kind: "hit", entry: { header, pixels: bytes.subarray(pixelStart) } };
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    offset += await file.write(bytes.subarray(offset));
  }
}

/**
 * Writes a cache file atomically (temporary name, fsync, rename).
 *
 * @returns The number of bytes written.
 */
export async function writeImageCache(
  path: string,
  entry: CacheEntry,
): Promise<number> {
  const headerBytes = new TextEncoder().encode(JSON.stringify(entry.header));
  const pixelStart = paddedLength(12 + headerBytes.length);
  const prefix = new Uint8Array(pixelStart);
  prefix.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(prefix.buffer).setUint32(8, headerBytes.length, true);
  prefix.set(headerBytes, 12);

  const dir = path.slice(0, path.lastIndexOf("/"));
  await Deno.mkdir(dir, { recursive: true });
  const suffix = crypto.randomUUID().slice(0, 8);
  const temporary = `${path}.tmp-${Deno.pid}-${suffix}`;
  const file = await Deno.open(temporary, { write: true, createNew: true });
  try {
    await writeAll(file, prefix);
    await writeAll(file, entry.pixels);
    await file.sync();
  } catch (error) {
    file.close();
    await Deno.remove(temporary).catch(() => undefined);
    throw error;
  }
  file.close();
  await Deno.rename(temporary, path);
  return pixelStart + entry.pixels.length;
}
