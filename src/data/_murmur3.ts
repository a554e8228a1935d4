/**
 * MurmurHash3, x86 32-bit variant (Austin Appleby, public domain), over
 * little-endian 32-bit words or bytes. The counter RNG is built on it because
 * it needs only 32-bit integer math (`Math.imul`), which every JS engine runs
 * bit-identically.
 *
 * @module
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function rotl32(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function mixBlock(hash: number, block: number): number {
  let k = Math.imul(block, C1);
  k = rotl32(k, 15);
  k = Math.imul(k, C2);

  let h = hash ^ k;
  h = rotl32(h, 13);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** The MurmurHash3 finaliser: full avalanche of a 32-bit state. */
export function fmix32(hash: number): number {
  let h = hash;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** MurmurHash3_x86_32 of a sequence of 32-bit words (4 bytes each, LE). */
export function murmur3Words(words: ArrayLike<number>, seed: number): number {
  let h = seed | 0;
  for (let i = 0; i < words.length; i++) {
    h = mixBlock(h, words[i]! | 0);
  }
  return fmix32(h ^ (words.length * 4));
}

/** MurmurHash3_x86_32 of a byte string. */
export function murmur3Bytes(bytes: Uint8Array, seed: number): number {
  const blockCount = bytes.length >>> 2;
  let h = seed | 0;
  for (let i = 0; i < blockCount; i++) {
    const o = i * 4;
    const block = bytes[o]! | (bytes[o + 1]! << 8) | (bytes[o + 2]! << 16) |
      (bytes[o + 3]! << 24);
    h = mixBlock(h, block);
  }

  const tailStart = blockCount * 4;
  const tailLength = bytes.length & 3;
  if (tailLength > 0) {
    let k = 0;
    if (tailLength === 3) k ^= bytes[tailStart + 2]! << 16;
    if (tailLength >= 2) k ^= bytes[tailStart + 1]! << 8;
    k ^= bytes[tailStart]!;
    k = Math.imul(k, C1);
    k = rotl32(k, 15);
    k = Math.imul(k, C2);
    h ^= k;
  }

  return fmix32(h ^ bytes.length);
}
