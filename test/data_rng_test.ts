import assert from "node:assert/strict";
import { murmur3Bytes, murmur3Words } from "../src/data/_murmur3.ts";
import {
  CounterRng,
  randomFloat,
  randomUint32,
  tagHash,
} from "../src/data/rng.ts";

const encode = (s: string) => new TextEncoder().encode(s);

Deno.test("murmur3 - matches the published MurmurHash3_x86_32 vectors", () => {
  // Test vectors from the SMHasher verification list as quoted on
  // Wikipedia's MurmurHash page.
  const vectors: [Uint8Array, number, number][] = [
    [encode(""), 0, 0],
    [encode(""), 1, 0x514e28b7],
    [encode(""), 0xffffffff, 0x81f16f39],
    [new Uint8Array(4), 0, 0x2362f9de],
    [encode("a"), 0x9747b28c, 0x7fa09ea6],
    [encode("aa"), 0x9747b28c, 0x5d211726],
    [encode("aaa"), 0x9747b28c, 0x283e0130],
    [encode("aaaa"), 0x9747b28c, 0x5a97808a],
    [encode("abc"), 0x9747b28c, 0xc84a62dd],
    [encode("Hello, world!"), 0x9747b28c, 0x24884cba],
    [
      encode("The quick brown fox jumps over the lazy dog"),
      0x9747b28c,
      0x2fa826cd,
    ],
  ];
  for (const [bytes, seed, expected] of vectors) {
    assert.equal(murmur3Bytes(bytes, seed), expected);
  }
});

Deno.test("murmur3 - word input equals the little-endian byte input", () => {
  const words = [0, 1, 0xdeadbeef, 0xffffffff, 123456789];
  const bytes = new Uint8Array(new Uint32Array(words).buffer);
  assert.equal(murmur3Words(words, 7), murmur3Bytes(bytes, 7));
});

Deno.test("CounterRng - a draw is murmur3 of [tag, seed, counters] words", () => {
  // The documented key layout, rebuilt by hand: 64-bit values as lo, hi.
  const seed = 2 ** 40 + 5;
  const words = [
    murmur3Bytes(encode("shuffle"), 0),
    5,
    2 ** 8,
    3,
    0,
    2 ** 33 % 2 ** 32,
    2,
  ];
  const rng = new CounterRng({ seed, tag: "shuffle" });
  assert.equal(rng.uint32([3, 2 ** 33]), murmur3Words(words, 0));
  assert.equal(tagHash("shuffle"), words[0]);
});

Deno.test("CounterRng - same key gives the same number, whatever came before", () => {
  const a = new CounterRng({ seed: 42, tag: "flip" });
  const first = a.uint32([3, 17]);
  for (let i = 0; i < 100; i++) a.uint32([i]);
  assert.equal(a.uint32([3, 17]), first);
  assert.equal(
    new CounterRng({ seed: 42, tag: "flip" }).uint32([3, 17]),
    first,
  );
  assert.equal(
    randomUint32({ seed: 42, tag: "flip", counters: [3, 17] }),
    first,
  );
});

Deno.test("CounterRng - seed, tag and every counter change the number", () => {
  const base = randomUint32({ seed: 1, tag: "t", counters: [2, 3] });
  const variants = [
    randomUint32({ seed: 2, tag: "t", counters: [2, 3] }),
    randomUint32({ seed: 1 + 2 ** 32, tag: "t", counters: [2, 3] }),
    randomUint32({ seed: 1, tag: "u", counters: [2, 3] }),
    randomUint32({ seed: 1, tag: "t", counters: [3, 2] }),
    randomUint32({ seed: 1, tag: "t", counters: [2, 3, 0] }),
    randomUint32({ seed: 1, tag: "t", counters: [2] }),
  ];
  for (const v of variants) assert.notEqual(v, base);
});

Deno.test("CounterRng - floats are in [0, 1) and roughly uniform", () => {
  const rng = new CounterRng({ seed: 9, tag: "uniform" });
  const buckets = new Array(16).fill(0);
  const draws = 64_000;
  for (let i = 0; i < draws; i++) {
    const x = rng.float([i]);
    assert.ok(x >= 0 && x < 1);
    buckets[Math.floor(x * 16)]++;
  }
  const expected = draws / 16;
  const chiSquare = buckets.reduce(
    (sum, count) => sum + (count - expected) ** 2 / expected,
    0,
  );
  // 15 degrees of freedom: P(chi2 > 37.7) = 0.001.
  assert.ok(chiSquare < 37.7, `chi-square ${chiSquare}`);
  assert.equal(
    randomFloat({ seed: 9, tag: "uniform", counters: [5] }),
    rng.float([5]),
  );
});

Deno.test("CounterRng - below(n) covers [0, n) and nothing else", () => {
  const rng = new CounterRng({ seed: 3, tag: "below" });
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const v = rng.below(7, [i]);
    assert.ok(Number.isInteger(v) && v >= 0 && v < 7);
    seen.add(v);
  }
  assert.equal(seen.size, 7);
  assert.equal(rng.below(1, [0]), 0);
});

Deno.test("CounterRng - rejects negative or fractional seeds and counters", () => {
  assert.throws(() => new CounterRng({ seed: -1, tag: "x" }), {
    name: "RangeError",
    message: /seed must be a safe integer >= 0, received -1/,
  });
  const rng = new CounterRng({ seed: 0, tag: "x" });
  assert.throws(() => rng.uint32([1, 0.5]), {
    name: "RangeError",
    message: /counter 1 must be a safe integer >= 0, received 0.5/,
  });
  assert.throws(() => rng.below(0, [1]), { name: "RangeError" });
});
