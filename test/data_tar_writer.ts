/**
 * A minimal tar writer for tests, written from the POSIX ustar layout
 * independently of `src/data/tar.ts`, plus gzip through CompressionStream.
 *
 * @module
 */

/** One archive entry. */
export interface TarEntry {
  /** Path inside the archive. */
  name: string;
  /** "0" file (default), "5" folder, "2" symlink, "L" GNU long name, "x" pax. */
  type?: string;
  /** File content (files, L and x records). */
  data?: Uint8Array | string;
  /** Symlink target. */
  linkName?: string;
  /** Put the part of `name` before the last `/` in the ustar prefix field. */
  usePrefix?: boolean;
}

function writeString(block: Uint8Array, offset: number, text: string) {
  block.set(new TextEncoder().encode(text), offset);
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

function header(entry: TarEntry, size: number): Uint8Array {
  const block = new Uint8Array(512);
  let name = entry.name;
  if (entry.usePrefix) {
    const cut = name.lastIndexOf("/");
    writeString(block, 345, name.slice(0, cut));
    name = name.slice(cut + 1);
  }
  writeString(block, 0, name.slice(0, 100));
  writeString(block, 100, octal(0o644, 8));
  writeString(block, 108, octal(0, 8));
  writeString(block, 116, octal(0, 8));
  writeString(block, 124, octal(size, 12));
  writeString(block, 136, octal(1_700_000_000, 12));
  writeString(block, 156, entry.type ?? "0");
  writeString(block, 157, entry.linkName ?? "");
  writeString(block, 257, "ustar\u000000");
  // The checksum is computed with its own field read as 8 spaces.
  block.fill(0x20, 148, 156);
  const sum = block.reduce((a, b) => a + b, 0);
  writeString(block, 148, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

function bytesOf(data: Uint8Array | string | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  return typeof data === "string" ? new TextEncoder().encode(data) : data;
}

/** A pax extended-header record "<len> path=<value>\n". */
export function paxPathRecord(path: string): string {
  const body = ` path=${path}\n`;
  let length = body.length + 1;
  while (`${length}${body}`.length !== length) length++;
  return `${length}${body}`;
}

/** Builds an uncompressed tar archive, ending with two zero blocks. */
export function buildTar(entries: TarEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    const data = bytesOf(entry.data);
    parts.push(header(entry, data.length));
    parts.push(data);
    const padding = (512 - (data.length % 512)) % 512;
    parts.push(new Uint8Array(padding));
  }
  parts.push(new Uint8Array(1024));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Gzips bytes with the platform's CompressionStream. */
export async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
