/**
 * A counter-based random number generator: every draw is a pure function of
 * (seed, tag, counters), never of how many numbers a process drew before.
 *
 * DESIGN.md asks that a restarted process, or an example moved to another
 * rank, draw the same numbers. A stream generator cannot promise that; a hash
 * of "where the number is used" can. The tag names the purpose ("shuffle",
 * "flip", "split") so two uses with the same counters never share numbers, and
 * the counters say where (epoch, example index, layer, ...).
 *
 * The hash is MurmurHash3_x86_32 over the words
 * `[murmur3(tag), seedLo, seedHi, c0Lo, c0Hi, c1Lo, c1Hi, ...]`, computed with
 * 32-bit integer math only, so results are identical on every engine.
 *
 * @module
 */

import { fmix32, murmur3Bytes } from "./_murmur3.ts";

const TWO_POW_32 = 4294967296;

/** Identifies one random quantity: the run seed, a purpose and a place. */
export interface RandomKey {
  /** Run seed, a safe integer >= 0. */
  seed: number;
  /** What the number is for, for example "shuffle" or "flip". */
  tag: string;
  /** Where it is used, for example `[epoch, index]`; safe integers >= 0. */
  counters: readonly number[];
}

/** Options for {@linkcode CounterRng}. */
export interface CounterRngOptions {
  /** Run seed, a safe integer >= 0. */
  seed: number;
  /** What the numbers are for, for example "shuffle". */
  tag: string;
}

function checkWord(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot draw a random number: ${what} must be a safe integer >= 0, ` +
        `received ${value}`,
    );
  }
}

function mixWord(hash: number, word: number): number {
  // One MurmurHash3 block step, kept inline so a draw allocates nothing.
  let k = Math.imul(word | 0, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  let h = hash ^ k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** Hash of a tag string, the first word of every key. */
export function tagHash(tag: string): number {
  return murmur3Bytes(new TextEncoder().encode(tag), 0);
}

/**
 * A keyed, stateless generator: `uint32(counters)` always returns the same
 * value for the same seed, tag and counters.
 *
 * @example Draw the same number twice
 * ```ts
 * import assert from "node:assert/strict";
 * import { CounterRng } from "./rng.ts";
 *
 * const rng = new CounterRng({ seed: 42, tag: "flip" });
 * const a = rng.float([3, 17]); // epoch 3, example 17
 * const b = new CounterRng({ seed: 42, tag: "flip" }).float([3, 17]);
 * assert.ok(a === b && a >= 0 && a < 1);
 * ```
 */
export class CounterRng {
  /** The run seed. */
  readonly seed: number;
  /** The purpose tag. */
  readonly tag: string;
  #prefixState: number;

  /**
   * @param options The seed and purpose tag.
   * @throws {RangeError} When the seed is not a safe integer >= 0.
   */
  constructor(options: CounterRngOptions) {
    const { seed, tag } = options;
    checkWord(seed, "seed");

    this.seed = seed;
    this.tag = tag;
    let h = mixWord(0, tagHash(tag));
    h = mixWord(h, seed >>> 0);
    h = mixWord(h, Math.floor(seed / TWO_POW_32));
    this.#prefixState = h;
  }

  /**
   * A uniform 32-bit unsigned integer for these counters.
   *
   * @param counters Where the number is used; safe integers >= 0.
   * @returns An integer in [0, 2^32).
   * @throws {RangeError} When a counter is negative or not an integer.
   */
  uint32(counters: readonly number[]): number {
    let h = this.#prefixState;
    for (let i = 0; i < counters.length; i++) {
      const c = counters[i]!;
      checkWord(c, `counter ${i}`);
      h = mixWord(h, c >>> 0);
      h = mixWord(h, Math.floor(c / TWO_POW_32));
    }
    const wordCount = 3 + 2 * counters.length;
    return fmix32(h ^ (wordCount * 4));
  }

  /**
   * A float in [0, 1) with 32 bits of resolution.
   *
   * @param counters Where the number is used.
   */
  float(counters: readonly number[]): number {
    return this.uint32(counters) / TWO_POW_32;
  }

  /**
   * An integer in [0, n), as `floor(float * n)`. Its bias is below
   * n / 2^32 (3e-7 for n = 1,400), far under what shuffling can notice.
   *
   * @param n Exclusive upper bound, 1 <= n <= 2^32.
   * @param counters Where the number is used.
   * @throws {RangeError} When n is out of range.
   */
  below(n: number, counters: readonly number[]): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw new RangeError(
        `Cannot draw an integer below n: n must be an integer in [1, 2^32], ` +
          `received ${n}`,
      );
    }
    return Math.floor(this.float(counters) * n);
  }
}

/**
 * A uniform 32-bit unsigned integer for one key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomUint32 } from "./rng.ts";
 *
 * const u = randomUint32({ seed: 1, tag: "init", counters: [0, 5] });
 * assert.ok(Number.isInteger(u) && u >= 0 && u < 2 ** 32);
 * ```
 */
export function randomUint32(key: RandomKey): number {
  return new CounterRng(key).uint32(key.counters);
}

/**
 * A float in [0, 1) for one key.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { randomFloat } from "./rng.ts";
 *
 * const x = randomFloat({ seed: 1, tag: "dropout", counters: [7, 0, 3] });
 * assert.ok(x >= 0 && x < 1);
 * ```
 */
export function randomFloat(key: RandomKey): number {
  return new CounterRng(key).float(key.counters);
}
