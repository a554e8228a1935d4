import assert from "node:assert/strict";
import {
  type AssembledStream,
  chunkFloat32,
  type DecodeExpectations,
  decodeMessage,
  encodeMessage,
  encodeTensorStream,
  StreamAssembler,
  type TensorChunkMessage,
  WireError,
  type WireErrorReason,
} from "../src/wire/mod.ts";

const RUN = "chunks";
const EXPECT: DecodeExpectations<"tensor_chunk"> = {
  run: RUN,
  workers: 2,
  kinds: ["tensor_chunk"],
};

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

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

function assertWireError(action: () => unknown, reason: WireErrorReason) {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof WireError, String(error));
    assert.equal(error.reason, reason, error.message);
    return true;
  });
}

function gradsChunks(
  data: Float32Array,
  options: { maxPayloadBytes: number; meta?: Record<string, number> },
): TensorChunkMessage[] {
  return encodeTensorStream({
    run: RUN,
    step: 4,
    stream: "grads",
    rank: 1,
    data,
    meta: options.meta ?? { examples: 8 },
    maxPayloadBytes: options.maxPayloadBytes,
  }).map((bytes) => decodeMessage(bytes, EXPECT));
}

Deno.test("chunkFloat32 - splits uniformly into views within the payload budget", () => {
  const data = Float32Array.from({ length: 1001 }, (_, i) => i);
  const chunks = chunkFloat32(data, {
    maxPayloadBytes: 1000,
    headroomBytes: 200,
  });

  // (1000 - 200) / 4 = 200 floats per chunk: 5 full chunks and 1 of 1.
  assert.deepEqual(chunks.map((c) => c.data.length), [
    200,
    200,
    200,
    200,
    200,
    1,
  ]);
  assert.deepEqual(chunks.map((c) => c.offset), [0, 200, 400, 600, 800, 1000]);
  assert.ok(
    chunks.every((c) => c.count === 6 && c.data.buffer === data.buffer),
  );
  assert.deepEqual(
    chunkFloat32(new Float32Array(0), {
      maxPayloadBytes: 100,
      headroomBytes: 0,
    }).map((c) => [c.index, c.count, c.data.length]),
    [[0, 1, 0]],
  );
  assert.throws(
    () => chunkFloat32(data, { maxPayloadBytes: 100, headroomBytes: 97 }),
    RangeError,
  );
});

Deno.test("encodeTensorStream - every message fits max_payload, chunk 0's meta included", () => {
  const data = new Float32Array(10_000).fill(0.25);
  const maxPayloadBytes = 4096;
  const meta = Object.fromEntries(
    Array.from({ length: 60 }, (_, i) => [`position_${i}`, i * 1e6]),
  );
  const messages = encodeTensorStream({
    run: RUN,
    step: 0,
    stream: "weights",
    rank: -1,
    data,
    meta,
    maxPayloadBytes,
  });

  assert.ok(messages.every((bytes) => bytes.length <= maxPayloadBytes));
  assert.ok(messages.length > 10);
  assert.throws(
    () =>
      encodeTensorStream({
        run: RUN,
        step: 0,
        stream: "weights",
        rank: -1,
        data,
        meta: { blob: "x".repeat(4000) },
        maxPayloadBytes,
      }),
    RangeError,
  );
});

Deno.test("StreamAssembler - 3.5M floats in 64 KiB chunks reassemble bit-exactly shuffled", () => {
  const random = seededRandom(11);
  const length = 3_500_000;
  const data = new Float32Array(length);
  const bits = new Uint32Array(data.buffer);
  for (let i = 0; i < length; i++) {
    // Random bits with bit 30 clear: the exponent stays below 128, so the
    // values are finite (never NaN or infinity) with random sign and mantissa.
    bits[i] = ((random() * 0xffffffff) >>> 0) & ~(1 << 30);
  }
  data[0] = -0;
  data[1] = 1e-45;

  const maxPayloadBytes = 64 * 1024;
  const messages = encodeTensorStream({
    run: RUN,
    step: 4,
    stream: "grads",
    rank: 1,
    data,
    meta: { examples: 8, lossSum: 2.5 },
    maxPayloadBytes,
  });
  assert.ok(messages.every((bytes) => bytes.length <= maxPayloadBytes));

  const assembler = new StreamAssembler({
    stream: "grads",
    step: 4,
    rank: 1,
    expectedLength: length,
  });
  const results: AssembledStream[] = [];
  for (const bytes of shuffle([...messages], random)) {
    const done = assembler.add(decodeMessage(bytes, EXPECT));
    if (done !== undefined) results.push(done);
  }

  assert.equal(results.length, 1);
  assert.equal(assembler.expectedChunks, messages.length);
  assert.deepEqual(results[0].meta, { examples: 8, lossSum: 2.5 });
  assert.deepEqual(new Uint32Array(results[0].data.buffer), bits);
});

Deno.test("StreamAssembler - ignores identical duplicates and completes exactly once", () => {
  const data = Float32Array.from({ length: 50 }, (_, i) => i / 7);
  const chunks = gradsChunks(data, { maxPayloadBytes: 200 });
  const assembler = new StreamAssembler({
    stream: "grads",
    step: 4,
    rank: 1,
    expectedLength: 50,
  });

  const last = chunks[chunks.length - 1];
  assert.equal(assembler.add(last), undefined);
  assert.equal(assembler.add(last), undefined);
  assert.deepEqual(assembler.missingChunks(3), [0, 1, 2]);

  let completions = 0;
  for (const chunk of [...chunks, ...chunks]) {
    if (assembler.add(chunk) !== undefined) completions++;
  }
  assert.equal(completions, 1);
  assert.equal(assembler.complete, true);
  // The early repeat, `last` in the first pass, and the whole second pass.
  assert.equal(assembler.duplicates, 1 + 1 + chunks.length);
  assert.deepEqual(assembler.missingChunks(), []);
});

Deno.test("StreamAssembler - rejects a conflicting duplicate and keeps the first", () => {
  const data = Float32Array.from({ length: 30 }, (_, i) => i);
  const chunks = gradsChunks(data, { maxPayloadBytes: 200 });
  const other = gradsChunks(data.map((x) => x + 1), { maxPayloadBytes: 200 });
  const otherMeta = gradsChunks(data, {
    maxPayloadBytes: 200,
    meta: { examples: 9 },
  });
  const assembler = new StreamAssembler({
    stream: "grads",
    step: 4,
    rank: 1,
    expectedLength: 30,
  });

  assembler.add(chunks[0]);
  assertWireError(() => assembler.add(other[0]), "conflicting_duplicate");
  assertWireError(() => assembler.add(otherMeta[0]), "conflicting_duplicate");

  let result: AssembledStream | undefined;
  for (const chunk of chunks.slice(1)) result = assembler.add(chunk) ?? result;
  assert.deepEqual(result?.data, data);
  assert.deepEqual(result?.meta, { examples: 8 });
  assertWireError(() => assembler.add(other[1]), "conflicting_duplicate");
});

Deno.test("StreamAssembler - rejects a stream of another shape, step, rank or split", () => {
  const chunks = gradsChunks(new Float32Array(40), { maxPayloadBytes: 200 });
  const assemblerFor = (options: { expectedLength?: number; step?: number }) =>
    new StreamAssembler({
      stream: "grads",
      step: options.step ?? 4,
      rank: 1,
      expectedLength: options.expectedLength ?? 40,
    });

  assertWireError(
    () => assemblerFor({ expectedLength: 41 }).add(chunks[0]),
    "wrong_length",
  );
  assertWireError(() => assemblerFor({ step: 5 }).add(chunks[0]), "wrong_step");
  assertWireError(
    () =>
      new StreamAssembler({
        stream: "grads",
        step: 4,
        rank: 0,
        expectedLength: 40,
      }).add(chunks[0]),
    "bad_rank",
  );
  assertWireError(
    () =>
      new StreamAssembler({
        stream: "weights",
        step: 4,
        rank: 1,
        expectedLength: 40,
      }).add(chunks[0]),
    "bad_field",
  );

  // The same 40 floats split in chunks of another size.
  const assembler = assemblerFor({});
  assembler.add(chunks[0]);
  const resplit = gradsChunks(new Float32Array(40), { maxPayloadBytes: 240 });
  assert.notEqual(resplit.length, chunks.length);
  assertWireError(() => assembler.add(resplit[1]), "conflicting_duplicate");
});

Deno.test("StreamAssembler - an empty stream completes with its single chunk", () => {
  const message = decodeMessage(
    encodeMessage({
      kind: "tensor_chunk",
      run: RUN,
      step: 0,
      stream: "weights",
      rank: -1,
      index: 0,
      count: 1,
      offset: 0,
      total: 0,
      payload: new Float32Array(0),
      meta: { epoch: 0 },
    }),
    EXPECT,
  );
  const assembler = new StreamAssembler({
    stream: "weights",
    step: 0,
    rank: -1,
    expectedLength: 0,
  });

  const done = assembler.add(message);
  assert.equal(done?.data.length, 0);
  assert.deepEqual(done?.meta, { epoch: 0 });
});
