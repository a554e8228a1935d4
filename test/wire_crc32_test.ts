import assert from "node:assert/strict";
import { crc32 } from "../src/wire/crc32.ts";

// Bit-at-a-time CRC-32 straight from the definition (reflected polynomial
// 0xEDB88320, initial value and final xor 0xFFFFFFFF).
function referenceCrc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
    }
  }
  return (crc ^ 0xffffffff) >>> 0;
}

Deno.test("crc32 - gives the standard check value for 123456789", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
});

Deno.test("crc32 - matches the bitwise definition at any offset and length", () => {
  const buffer = new Uint8Array(4099);
  for (let i = 0; i < buffer.length; i++) buffer[i] = (i * 131 + 7) & 0xff;

  for (const offset of [0, 1, 2, 3, 5]) {
    for (const length of [0, 1, 3, 7, 8, 9, 63, 64, 65, 4093]) {
      const bytes = buffer.subarray(offset, offset + length);
      assert.equal(crc32(bytes), referenceCrc32(bytes), `${offset}+${length}`);
    }
  }
});
