import assert from "node:assert/strict";
import { Packr } from "msgpackr";
import {
  type DecodeExpectations,
  decodeMessage,
  encodeMessage,
  WireError,
} from "../src/wire/mod.ts";

const RUN = "fuzz";
const EXPECT: DecodeExpectations = { run: RUN, workers: 3 };
const rawPackr = new Packr({ useRecords: false });

// mulberry32: a tiny seeded generator, so a failure replays exactly.
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Decodes; returns the WireError reason, or "ok". Anything else fails. */
function outcome(bytes: Uint8Array): string {
  try {
    decodeMessage(bytes, EXPECT);
    return "ok";
  } catch (error) {
    if (error instanceof WireError) return error.reason;
    throw new Error(
      `decode threw a non-WireError for ${bytes.length} bytes ` +
        `[${[...bytes.subarray(0, 32)].join(",")}]`,
      { cause: error },
    );
  }
}

function validMessages(): Uint8Array[] {
  return [
    encodeMessage({
      kind: "tensor_chunk",
      run: RUN,
      step: 5,
      stream: "grads",
      rank: 2,
      index: 0,
      count: 2,
      offset: 0,
      total: 7,
      payload: new Float32Array([1, 2, 3, 4]),
      meta: { examples: 8, lossSum: 3.25, backend: "cpu", ranks: [0, 1] },
    }),
    encodeMessage({
      kind: "hello",
      run: RUN,
      step: 0,
      rank: 1,
      fingerprint: "abcdef0123456789",
      backend: "cpu",
      device: null,
      pid: 77,
      host: "h",
      state: "joining",
      attempt: 0,
      missing: [],
      stepSeconds: 0,
    }),
    encodeMessage({
      kind: "welcome",
      run: RUN,
      step: 0,
      rank: 1,
      accepted: false,
      reason: "fingerprint mismatch",
      startStep: 0,
      session: "ps0a1b2c3d",
    }),
    encodeMessage({
      kind: "control",
      run: RUN,
      step: 9,
      command: "abort",
      reason: "x",
    }),
  ];
}

Deno.test("wire fuzz - random bytes only ever raise WireError", () => {
  const random = seededRandom(1);
  const reasons = new Map<string, number>();

  for (let sample = 0; sample < 20_000; sample++) {
    const bytes = new Uint8Array(Math.floor(random() * 200));
    for (let i = 0; i < bytes.length; i++) bytes[i] = random() * 256;
    // Half the samples start like a map, to get past the first byte.
    if (sample % 2 === 0 && bytes.length > 0) bytes[0] = 0x80 | (bytes[0] & 15);
    const reason = outcome(bytes);
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }

  assert.equal(reasons.get("ok"), undefined);
  assert.ok((reasons.get("truncated") ?? 0) > 0);
  assert.ok((reasons.get("garbage") ?? 0) > 0);
});

Deno.test("wire fuzz - every truncation of a valid message is truncated", () => {
  for (const bytes of validMessages()) {
    assert.equal(outcome(bytes), "ok");
    for (let end = 0; end < bytes.length; end++) {
      assert.equal(outcome(bytes.subarray(0, end)), "truncated", `at ${end}`);
    }
  }
});

Deno.test("wire fuzz - every single-byte corruption is decoded or rejected", () => {
  const random = seededRandom(2);

  for (const bytes of validMessages()) {
    for (let i = 0; i < bytes.length; i++) {
      for (const flip of [0x01, 0x80, 0xff, Math.floor(random() * 255) + 1]) {
        const corrupted = new Uint8Array(bytes);
        corrupted[i] ^= flip;
        outcome(corrupted);
      }
    }
  }
});

Deno.test("wire fuzz - every field given values of other types is rejected unless valid", () => {
  const wrongValues: unknown[] = [
    null,
    true,
    "x",
    "",
    1.5,
    -1,
    2 ** 40,
    2n ** 63n,
    NaN,
    -Infinity,
    [],
    [1, [2, [3]]],
    {},
    { a: { b: {} } },
    new Uint8Array(3),
    new Date(0),
    new Map([[1, 2]]),
    new Set([1]),
    new Float64Array(2),
  ];
  const structuredPackr = new Packr({
    useRecords: false,
    moreTypes: true,
    structuredClone: true,
  });

  const accepted: string[] = [];

  for (const bytes of validMessages()) {
    const record = structuredPackr.unpack(bytes) as Record<string, unknown>;
    for (const field of Object.keys(record)) {
      for (const value of wrongValues) {
        const mutated = structuredPackr.pack({ ...record, [field]: value });
        if (outcome(mutated) === "ok") {
          accepted.push(`${record.kind}.${field}=${describe(value)}`);
        }
      }
    }
  }

  // Exactly the replacements that are valid values of their field.
  assert.deepEqual(accepted.sort(), [
    'control.reason=""',
    'control.reason="x"',
    "control.step=1099511627776",
    'hello.backend="x"',
    'hello.device=""',
    'hello.device="x"',
    "hello.device=null",
    'hello.host="x"',
    // An empty list of missing chunks, and a step time.
    "hello.missing=",
    "hello.step=1099511627776",
    "hello.stepSeconds=1.5",
    // A msgpack map with an integer key, read as {"1": 2}.
    "tensor_chunk.meta=[object Map]",
    'tensor_chunk.meta={"a":{"b":{}}}',
    "tensor_chunk.meta={}",
    "tensor_chunk.step=1099511627776",
    "welcome.accepted=true",
    'welcome.reason="x"',
    'welcome.session="x"',
    "welcome.startStep=1099511627776",
    "welcome.step=1099511627776",
  ]);
});

function describe(value: unknown): string {
  return value === null || typeof value === "string" ||
      (typeof value === "number" && Number.isFinite(value)) ||
      Object.getPrototypeOf(value) === Object.prototype
    ? JSON.stringify(value)
    : String(value);
}

Deno.test("wire fuzz - random msgpack structures only ever raise WireError", () => {
  const random = seededRandom(3);
  const keys = ["v", "kind", "run", "step", "rank", "payload", "meta", "x"];
  const leaf = (): unknown => {
    const pick = Math.floor(random() * 8);
    if (pick === 0) return Math.floor(random() * 1000) - 10;
    if (pick === 1) return random() * 1e9;
    if (pick === 2) return ["tensor_chunk", "hello", RUN, "grads"][pick % 4];
    if (pick === 3) return null;
    if (pick === 4) return random() < 0.5;
    if (pick === 5) return new Uint8Array(Math.floor(random() * 12));
    if (pick === 6) return [leaf(), leaf()];
    return { [keys[Math.floor(random() * keys.length)]]: leaf() };
  };

  for (let sample = 0; sample < 5_000; sample++) {
    const record: Record<string, unknown> = { v: 1 };
    const size = Math.floor(random() * 12);
    for (let i = 0; i < size; i++) {
      record[keys[Math.floor(random() * keys.length)]] = leaf();
    }
    outcome(rawPackr.pack(record));
  }
});

Deno.test("wire fuzz - deeply nested input is garbage, not a stack overflow", () => {
  const depth = 200_000;
  const nested = new Uint8Array(depth + 1).fill(0x91);
  nested[depth] = 0x00;

  assert.equal(outcome(nested), "garbage");
  assert.equal(
    outcome(new Uint8Array([0x81, 0xa1, 0x76, ...nested])),
    "garbage",
  );
});
