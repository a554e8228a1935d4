/**
 * A walk over a JPEG's marker segments that finds its end-of-image marker.
 *
 * jpeg-js decodes some cut-off files without complaint and fills the missing
 * rows with grey. Training on those is worse than failing, so a JPEG counts as
 * whole only if its segments chain, through every entropy-coded scan, to an
 * EOI (0xFFD9). A plain search for the bytes FF D9 would not do: an EXIF
 * thumbnail inside APP1 ends with its own EOI, which survives when the main
 * image is truncated.
 *
 * @module
 */

/** Outcome of {@linkcode checkJpegStructure}. */
export type JpegStructure =
  | { ok: true; endOffset: number }
  | { ok: false; reason: string };

function isStandalone(marker: number): boolean {
  // TEM, RSTn and SOI carry no length field.
  return marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8);
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function truncated(detail: string): JpegStructure {
  return { ok: false, reason: `truncated JPEG: ${detail}` };
}

/** Skips entropy-coded data; returns the offset of the next real marker. */
function skipScanData(bytes: Uint8Array, start: number): number {
  let pos = start;
  while (pos + 1 < bytes.length) {
    if (bytes[pos] === 0xff) {
      const next = bytes[pos + 1]!;
      // FF 00 is a stuffed data byte and FF D0..D7 a restart marker; both
      // belong to the scan. Anything else ends it.
      if (next !== 0x00 && !(next >= 0xd0 && next <= 0xd7)) return pos;
    }
    pos++;
  }
  return bytes.length;
}

/**
 * Follows the marker segments of a JPEG from SOI to EOI.
 *
 * Bytes after the EOI are allowed (some cameras append data). Stray bytes
 * between segments are skipped, as decoders do.
 *
 * @param bytes The whole file.
 * @returns Where the image ends, or why no end was found.
 */
export function checkJpegStructure(bytes: Uint8Array): JpegStructure {
  const n = bytes.length;
  if (n < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) {
    return { ok: false, reason: "no JPEG start-of-image marker" };
  }

  let pos = 2;
  while (pos < n) {
    if (bytes[pos] !== 0xff) {
      pos++;
      continue;
    }
    while (pos < n && bytes[pos] === 0xff) pos++;
    if (pos >= n) break;
    const marker = bytes[pos]!;
    const markerOffset = pos - 1;
    pos++;

    if (marker === 0xd9) return { ok: true, endOffset: pos };
    if (marker === 0x00 || isStandalone(marker)) continue;

    if (pos + 2 > n) {
      return truncated(
        `segment ${hex(marker)} at ${markerOffset} has no length`,
      );
    }
    const length = (bytes[pos]! << 8) | bytes[pos + 1]!;
    if (length < 2) {
      return {
        ok: false,
        reason: `corrupt JPEG: segment ${hex(marker)} at offset ` +
          `${markerOffset} has length ${length}`,
      };
    }
    if (pos + length > n) {
      return truncated(
        `segment ${hex(marker)} at offset ${markerOffset} needs ${length} ` +
          `bytes, ${n - pos} remain`,
      );
    }
    pos += length;

    if (marker === 0xda) pos = skipScanData(bytes, pos);
  }

  return truncated(`no end-of-image marker (0xFFD9) in ${n} bytes`);
}
