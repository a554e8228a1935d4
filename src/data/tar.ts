/**
 * A small streaming tar (ustar/GNU/pax) extractor, enough to unpack dataset
 * archives such as `flower_photos.tgz`.
 *
 * Regular files and folders are written; links, devices and FIFOs are not
 * (they are listed in `ignored`). Entry paths are checked before anything
 * is written: an absolute path, a drive letter, a backslash or a `..`
 * segment rejects the whole archive with a {@linkcode TarError}, so an
 * archive can never write outside the destination folder. Long names come
 * from GNU `L` entries or pax `path` records.
 *
 * @module
 */

import { join } from "node:path";

const BLOCK = 512;
const CHUNK_BYTES = 1 << 20;

/** Thrown when an archive is malformed or tries to escape its folder. */
export class TarError extends Error {
  /** The entry at fault, when one is known. */
  readonly entry: string | null;
  /** Byte offset of that entry's header in the uncompressed stream. */
  readonly offset: number;

  /**
   * @param message What is wrong.
   * @param options The entry and offset, and standard error options.
   */
  constructor(
    message: string,
    options: { entry?: string | null; offset: number } & ErrorOptions,
  ) {
    super(message, options);
    this.name = "TarError";
    this.entry = options.entry ?? null;
    this.offset = options.offset;
  }
}

/** Options for {@linkcode extractTar}. */
export interface ExtractTarOptions {
  /** Folder to extract into; created if missing. */
  destDir: string;
}

/** What {@linkcode extractTar} wrote. */
export interface ExtractTarResult {
  /** Regular files written (relative paths). */
  files: string[];
  /** Folders created (relative paths). */
  dirs: string[];
  /** Entries not written (links, devices), with their type flag. */
  ignored: { entry: string; type: string }[];
}

/** Reads exact byte counts from a stream of chunks. */
class ByteReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #pending: Uint8Array = new Uint8Array(0);
  /** Bytes consumed so far. */
  offset = 0;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.getReader();
  }

  /** Exactly `n` bytes, or null at a clean end of stream. */
  async read(n: number): Promise<Uint8Array | null> {
    while (this.#pending.length < n) {
      const { done, value } = await this.#reader.read();
      if (done) {
        if (this.#pending.length === 0) return null;
        throw new TarError(
          `Cannot read tar archive: it ends inside a block ` +
            `(${this.#pending.length} of ${n} bytes at offset ${this.offset})`,
          { offset: this.offset },
        );
      }
      const joined = new Uint8Array(this.#pending.length + value.length);
      joined.set(this.#pending, 0);
      joined.set(value, this.#pending.length);
      this.#pending = joined;
    }
    const out = this.#pending.slice(0, n);
    this.#pending = this.#pending.subarray(n);
    this.offset += n;
    return out;
  }

  /** Exactly `n` bytes; the end of the stream here is an error. */
  async readRequired(n: number, what: string): Promise<Uint8Array> {
    const bytes = await this.read(n);
    if (bytes === null && n > 0) {
      throw new TarError(
        `Cannot read tar archive: it ends inside ${what} at offset ` +
          `${this.offset}`,
        { offset: this.offset },
      );
    }
    return bytes ?? new Uint8Array(0);
  }

  /** Reads to the end, so a gzip source checks its trailing CRC. */
  async drain(): Promise<void> {
    while (!(await this.#reader.read()).done) {
      // The zero blocks after the end-of-archive marker carry nothing.
    }
  }

  /** Stops reading; errors of an already failed source are not rethrown. */
  async cancel(): Promise<void> {
    // The caller is already handling the error that made it cancel.
    await this.#reader.cancel().catch(() => undefined);
  }
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

function parseNumber(field: Uint8Array): number {
  // GNU base-256: high bit of the first byte set, big-endian binary.
  if (field[0]! & 0x80) {
    let value = field[0]! & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + field[i]!;
    return value;
  }
  const text = cString(field).trim();
  return text === "" ? 0 : parseInt(text, 8);
}

function headerChecksumOk(header: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) {
    sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  }
  return sum === parseNumber(header.subarray(148, 156));
}

function parsePax(data: Uint8Array): Map<string, string> {
  const records = new Map<string, string>();
  const text = new TextDecoder().decode(data);
  let pos = 0;
  while (pos < text.length) {
    const space = text.indexOf(" ", pos);
    const length = parseInt(text.slice(pos, space), 10);
    if (space < 0 || !(length > 0)) break;
    const record = text.slice(space + 1, pos + length - 1);
    const eq = record.indexOf("=");
    if (eq > 0) records.set(record.slice(0, eq), record.slice(eq + 1));
    pos += length;
  }
  return records;
}

/**
 * Checks an entry path and returns it normalised (no `.` or empty segments).
 *
 * @throws {TarError} For absolute paths, drive letters, backslashes and `..`.
 */
export function safeEntryPath(name: string, offset: number): string {
  const reject = (why: string) => {
    throw new TarError(
      `Cannot extract tar entry '${name}': ${why}; refusing the archive`,
      { entry: name, offset },
    );
  };
  if (name.startsWith("/")) reject("absolute path");
  if (/^[A-Za-z]:/.test(name)) reject("drive-letter path");
  if (name.includes("\\")) reject("backslash in path");
  if (name.includes("\0")) reject("NUL in path");
  const segments = name.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) reject("'..' segment escapes the folder");
  return segments.join("/");
}

async function copyEntry(options: {
  reader: ByteReader;
  size: number;
  path: string;
}): Promise<void> {
  const { reader, size, path } = options;
  const file = await Deno.open(path, {
    write: true,
    create: true,
    truncate: true,
  });
  try {
    let remaining = size;
    while (remaining > 0) {
      const chunk = await reader.readRequired(
        Math.min(remaining, CHUNK_BYTES),
        "entry data",
      );
      let written = 0;
      while (written < chunk.length) {
        written += await file.write(chunk.subarray(written));
      }
      remaining -= chunk.length;
    }
  } finally {
    file.close();
  }
}

async function skipData(reader: ByteReader, size: number): Promise<void> {
  let remaining = size;
  while (remaining > 0) {
    const chunk = Math.min(remaining, CHUNK_BYTES);
    await reader.readRequired(chunk, "entry data");
    remaining -= chunk;
  }
}

async function skipPadding(reader: ByteReader, size: number): Promise<void> {
  const padding = (BLOCK - (size % BLOCK)) % BLOCK;
  await reader.readRequired(padding, "entry padding");
}

/**
 * Extracts an uncompressed tar stream into `destDir`.
 *
 * @param source The tar bytes (pipe a `.tgz` through
 * `DecompressionStream("gzip")` first).
 * @param options The destination folder.
 * @returns What was written and what was ignored.
 * @throws {TarError} On a bad header checksum, a truncated archive, or an
 * unsafe entry path (checked before the entry is written).
 *
 * @example
 * ```ts ignore
 * import { extractTar } from "./tar.ts";
 *
 * const file = await Deno.open("archive.tgz");
 * const tar = file.readable.pipeThrough(new DecompressionStream("gzip"));
 * const result = await extractTar(tar, { destDir: "out" });
 * console.log(result.files.length);
 * ```
 */
export async function extractTar(
  source: ReadableStream<Uint8Array>,
  options: ExtractTarOptions,
): Promise<ExtractTarResult> {
  const { destDir } = options;
  await Deno.mkdir(destDir, { recursive: true });
  const reader = new ByteReader(source);
  const result: ExtractTarResult = { files: [], dirs: [], ignored: [] };
  let longName: string | null = null;
  let paxPath: string | null = null;

  try {
    while (true) {
      const headerOffset = reader.offset;
      const header = await reader.read(BLOCK);
      if (header === null || header.every((b) => b === 0)) break;
      if (!headerChecksumOk(header)) {
        throw new TarError(
          `Cannot read tar archive: bad header checksum at offset ` +
            `${headerOffset}`,
          { offset: headerOffset },
        );
      }

      const size = parseNumber(header.subarray(124, 136));
      const type = String.fromCharCode(header[156]!);
      const isUstar = cString(header.subarray(257, 263)).startsWith("ustar");
      const prefix = isUstar ? cString(header.subarray(345, 500)) : "";
      const baseName = cString(header.subarray(0, 100));
      const headerName = prefix ? `${prefix}/${baseName}` : baseName;

      if (type === "L" || type === "x" || type === "g") {
        const data = await reader.readRequired(size, "a long-name record");
        await skipPadding(reader, size);
        if (type === "L") longName = cString(data);
        if (type === "x") paxPath = parsePax(data).get("path") ?? null;
        continue;
      }

      const name = paxPath ?? longName ?? headerName;
      paxPath = null;
      longName = null;
      const relPath = safeEntryPath(name, headerOffset);
      const target = join(destDir, relPath);

      if (type === "0" || type === "\0" || type === "7") {
        if (relPath === "") {
          throw new TarError(`Cannot extract tar entry: empty file name`, {
            entry: name,
            offset: headerOffset,
          });
        }
        await Deno.mkdir(join(target, ".."), { recursive: true });
        await copyEntry({ reader, size, path: target });
        await skipPadding(reader, size);
        result.files.push(relPath);
      } else if (type === "5") {
        await Deno.mkdir(target, { recursive: true });
        if (relPath !== "") result.dirs.push(relPath);
      } else {
        // Links could point outside destDir; devices make no sense here.
        result.ignored.push({ entry: relPath, type });
        await skipData(reader, size);
        await skipPadding(reader, size);
      }
    }
  } catch (error) {
    await reader.cancel();
    throw error;
  }
  await reader.drain();
  return result;
}

/**
 * Extracts a gzip-compressed tar file into `destDir`.
 *
 * @throws {TarError} As {@linkcode extractTar}.
 * @throws {TypeError} When the gzip stream is corrupt or truncated.
 */
export async function extractTarGz(
  archivePath: string,
  options: ExtractTarOptions,
): Promise<ExtractTarResult> {
  const file = await Deno.open(archivePath, { read: true });
  const tar = file.readable.pipeThrough(new DecompressionStream("gzip"));
  return await extractTar(tar, options);
}
