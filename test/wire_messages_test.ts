import assert from "node:assert/strict";
import { Packr, unpack } from "msgpackr";
import {
  type DecodeExpectations,
  decodeMessage,
  encodeMessage,
  type HelloMessage,
  type OutgoingMessage,
  WIRE_VERSION,
  WireError,
  type WireErrorReason,
} from "../src/wire/mod.ts";
import {
  float32ToLittleEndianBytes,
  littleEndianBytesToFloat32,
} from "../src/wire/_float32_bytes.ts";

const RUN = "run-7";
const EXPECT: DecodeExpectations = { run: RUN, workers: 4 };
const rawPackr = new Packr({ useRecords: false });

// Bit-at-a-time CRC-32 from the definition, independent of the codec's.
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

// Little-endian float32 bytes written one value at a time with a DataView.
function leBytes(values: number[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  values.forEach((value, i) => view.setFloat32(i * 4, value, true));
  return bytes;
}

/** A valid grads chunk 1 of 3 (chunk size 2) as a raw wire record. */
function chunkRecord(
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const payload = leBytes([1.5, -2.25]);
  return {
    v: WIRE_VERSION,
    kind: "tensor_chunk",
    run: RUN,
    step: 12,
    stream: "grads",
    rank: 2,
    attempt: 0,
    index: 1,
    count: 3,
    offset: 2,
    total: 5,
    crc32: referenceCrc32(payload),
    payload,
    ...overrides,
  };
}

function helloRecord(
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    v: WIRE_VERSION,
    kind: "hello",
    run: RUN,
    step: 0,
    rank: 1,
    fingerprint: "0123456789abcdef",
    backend: "cpu",
    device: null,
    pid: 4242,
    host: "node-a",
    ...overrides,
  };
}

function pack(record: Record<string, unknown>): Uint8Array {
  return rawPackr.pack(record);
}

function assertRejected(
  bytes: Uint8Array,
  expected: { reason: WireErrorReason; field?: string },
  expect: DecodeExpectations = EXPECT,
): WireError {
  let caught: unknown;
  try {
    decodeMessage(bytes, expect);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof WireError, `expected a WireError: ${caught}`);
  assert.equal(caught.reason, expected.reason, caught.message);
  if (expected.field !== undefined) {
    assert.equal(caught.field, expected.field, caught.message);
  }
  return caught;
}

const HELLO: HelloMessage = {
  kind: "hello",
  run: RUN,
  step: 0,
  rank: 3,
  fingerprint: "deadbeef00112233",
  backend: "wasm",
  device: null,
  pid: 999,
  host: "worker-host",
  state: "waiting",
  attempt: 0,
  missing: [1, 5],
  stepSeconds: 0.5,
};

const ROUND_TRIPS: OutgoingMessage[] = [
  HELLO,
  { ...HELLO, device: "NVIDIA H200" },
  {
    kind: "welcome",
    run: RUN,
    step: 3,
    rank: 0,
    accepted: true,
    reason: "",
    startStep: 3,
    session: "ps0a1b2c3d",
  },
  {
    kind: "welcome",
    run: RUN,
    step: 0,
    rank: 2,
    accepted: false,
    reason: "fingerprint mismatch: expected 00ff00ff, received 11ee11ee",
    startStep: 0,
    session: "ps0a1b2c3d",
  },
  { kind: "control", run: RUN, step: 40, command: "stop", reason: "done" },
  { kind: "control", run: RUN, step: 41, command: "abort", reason: "" },
];

Deno.test("wire messages - hello, welcome and control round-trip", () => {
  for (const message of ROUND_TRIPS) {
    assert.deepEqual(decodeMessage(encodeMessage(message), EXPECT), message);
  }
});

Deno.test("wire messages - tensor chunks round-trip with meta on chunk 0", () => {
  const first = new Float32Array([0.5, -0, 3.4028234663852886e38]);
  const meta = { epoch: 2, lr: 1.25e-4, positions: [[0, 8], [8, 16]] };
  const chunk0 = {
    kind: "tensor_chunk" as const,
    run: RUN,
    step: 9,
    stream: "weights" as const,
    rank: -1,
    attempt: 0,
    index: 0,
    count: 2,
    offset: 0,
    total: 5,
    payload: first,
    meta,
  };
  const chunk1 = {
    ...chunk0,
    index: 1,
    offset: 3,
    payload: new Float32Array([1e-45, -7]),
    meta: undefined,
  };

  const decoded0 = decodeMessage(encodeMessage(chunk0), EXPECT);
  const decoded1 = decodeMessage(encodeMessage(chunk1), EXPECT);

  assert.deepEqual(decoded0, {
    ...chunk0,
    crc32: referenceCrc32(leBytes([...first])),
  });
  const { meta: _, ...chunk1Fields } = chunk1;
  assert.deepEqual(decoded1, {
    ...chunk1Fields,
    crc32: referenceCrc32(leBytes([1e-45, -7])),
  });
  assert.ok(
    Object.is(decoded0.kind === "tensor_chunk" && decoded0.payload[1], -0),
  );
});

Deno.test("wire messages - the encoding is a plain msgpack map with raw float32 bytes", () => {
  const bytes = encodeMessage({
    kind: "tensor_chunk",
    run: RUN,
    step: 1,
    stream: "grads",
    rank: 0,
    index: 0,
    count: 1,
    offset: 0,
    total: 2,
    payload: new Float32Array([1, -2]),
    meta: { examples: 8 },
  });
  const record = unpack(bytes) as Record<string, unknown>;

  assert.equal(record.v, 1);
  assert.equal(record.kind, "tensor_chunk");
  assert.deepEqual(record.meta, { examples: 8 });
  assert.deepEqual(
    [...(record.payload as Uint8Array)],
    [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0],
  );
  assert.equal(record.crc32, referenceCrc32(leBytes([1, -2])));
});

Deno.test("wire messages - a payload at an odd byte offset decodes aligned", () => {
  const values = [1, 2, 3, 4, 5, 6, 7];
  const bytes = encodeMessage({
    kind: "tensor_chunk",
    run: RUN,
    step: 0,
    stream: "grads",
    rank: 1,
    index: 0,
    count: 1,
    offset: 0,
    total: 7,
    payload: new Float32Array(values),
    meta: {},
  });

  for (const shift of [1, 2, 3, 5]) {
    const buffer = new Uint8Array(bytes.length + shift);
    buffer.set(bytes, shift);
    const message = decodeMessage(buffer.subarray(shift), {
      ...EXPECT,
      kinds: ["tensor_chunk"],
    });

    assert.equal(message.payload.byteOffset % 4, 0);
    assert.equal(message.payload.buffer.byteLength, 7 * 4);
    assert.notEqual(message.payload.buffer, buffer.buffer);
    assert.deepEqual([...message.payload], values);
  }
});

Deno.test("wire messages - decoding rejects input that is not one msgpack map", () => {
  const valid = pack(chunkRecord());

  assertRejected(valid.subarray(0, valid.length - 1), { reason: "truncated" });
  assertRejected(new Uint8Array(0), { reason: "truncated" });
  assertRejected(new Uint8Array([0xc1]), { reason: "garbage" });
  assertRejected(rawPackr.pack([1, 2, 3]), { reason: "garbage" });
  assertRejected(rawPackr.pack("hello"), { reason: "garbage" });
  assertRejected(new Uint8Array([...valid, 0x00]), { reason: "garbage" });
});

Deno.test("wire messages - decoding rejects an oversized message before parsing it", () => {
  const bytes = pack(chunkRecord());

  assertRejected(bytes, { reason: "oversized" }, {
    ...EXPECT,
    maxMessageBytes: bytes.length - 1,
  });
  assert.equal(
    decodeMessage(bytes, { ...EXPECT, maxMessageBytes: bytes.length }).kind,
    "tensor_chunk",
  );
  assertRejected(pack(helloRecord({ host: "h".repeat(257) })), {
    reason: "oversized",
    field: "host",
  });
});

Deno.test("wire messages - decoding rejects a wrong version, kind, run or step", () => {
  assertRejected(pack(chunkRecord({ v: 2 })), {
    reason: "bad_version",
    field: "v",
  });
  assertRejected(pack(chunkRecord({ v: undefined })), {
    reason: "bad_version",
  });
  assertRejected(pack(chunkRecord({ kind: "gradient" })), {
    reason: "unknown_kind",
    field: "kind",
  });
  assertRejected(pack(chunkRecord()), { reason: "wrong_kind" }, {
    ...EXPECT,
    kinds: ["hello"],
  });
  assertRejected(pack(chunkRecord({ run: "run-8" })), {
    reason: "wrong_run",
    field: "run",
  });
  assertRejected(pack(chunkRecord({ step: 11 })), {
    reason: "wrong_step",
    field: "step",
  }, { ...EXPECT, steps: { min: 12, max: 13 } });
  assertRejected(pack(chunkRecord({ step: 14 })), {
    reason: "wrong_step",
  }, { ...EXPECT, steps: { min: 12, max: 13 } });
});

Deno.test("wire messages - decoding rejects ranks outside the job", () => {
  assertRejected(pack(helloRecord({ rank: 4 })), {
    reason: "bad_rank",
    field: "rank",
  });
  assertRejected(pack(helloRecord({ rank: -1 })), { reason: "bad_rank" });
  assertRejected(pack(chunkRecord({ rank: -1 })), { reason: "bad_rank" });
  assertRejected(pack(chunkRecord({ stream: "weights", rank: 0 })), {
    reason: "bad_rank",
  });
});

Deno.test("wire messages - decoding rejects missing, unknown and mistyped fields", () => {
  const cases: [Record<string, unknown>, string][] = [
    [chunkRecord({ crc32: undefined }), "crc32"],
    [chunkRecord({ extra: 1 }), "extra"],
    // msgpackr renames a "__proto__" key rather than setting a prototype.
    [chunkRecord(JSON.parse('{"__proto__": 1}')), "__proto_"],
    [chunkRecord({ step: 1.5 }), "step"],
    [chunkRecord({ step: -1 }), "step"],
    [chunkRecord({ stream: "moments" }), "stream"],
    [chunkRecord({ index: 3 }), "index"],
    [chunkRecord({ count: 0 }), "count"],
    [chunkRecord({ payload: [1, 2] }), "payload"],
    [chunkRecord({ payload: "abcdefgh" }), "payload"],
    [chunkRecord({ meta: {} }), "meta"],
    [chunkRecord({ index: 0, offset: 0, count: 3 }), "meta"],
    [chunkRecord({ offset: 3 }), "offset"],
    [chunkRecord({ index: 2, offset: 2, count: 3 }), "offset"],
    [helloRecord({ fingerprint: "NOT-HEX" }), "fingerprint"],
    [helloRecord({ device: 5 }), "device"],
    [helloRecord({ pid: "42" }), "pid"],
    [helloRecord({ rank: 2n }), "rank"],
    [helloRecord({ run: "a.b" }), "run"],
    [
      {
        v: 1,
        kind: "control",
        run: RUN,
        step: 1,
        command: "pause",
        reason: "",
      },
      "command",
    ],
    [{
      v: 1,
      kind: "welcome",
      run: RUN,
      step: 0,
      rank: 0,
      accepted: false,
      reason: "",
      startStep: 0,
      session: "ps0a1b2c3d",
    }, "reason"],
  ];

  for (const [record, field] of cases) {
    assertRejected(pack(record), { reason: "bad_field", field });
  }
});

Deno.test("wire messages - decoding rejects payloads of the wrong length", () => {
  const fiveBytes = new Uint8Array([1, 2, 3, 4, 5]);
  assertRejected(
    pack(chunkRecord({ payload: fiveBytes, crc32: referenceCrc32(fiveBytes) })),
    { reason: "wrong_length", field: "payload" },
  );

  const threeFloats = leBytes([1, 2, 3]);
  assertRejected(
    pack(chunkRecord({
      index: 2,
      offset: 4,
      payload: threeFloats,
      crc32: referenceCrc32(threeFloats),
    })),
    { reason: "wrong_length", field: "payload" },
  );
});

Deno.test("wire messages - decoding rejects a payload whose checksum differs", () => {
  const record = chunkRecord();
  const payload = new Uint8Array(record.payload as Uint8Array);
  payload[5] ^= 0x01;

  const error = assertRejected(pack({ ...record, payload }), {
    reason: "bad_checksum",
    field: "crc32",
  });
  assert.equal(error.kind, "tensor_chunk");
  assert.equal(error.run, RUN);
  assert.equal(error.step, 12);
  assert.equal(error.rank, 2);
  assert.match(error.message, /tensor_chunk.*crc32.*run "run-7", step 12/);
});

Deno.test("wire messages - decoding rejects NaN and infinities in payload and meta", () => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    const payload = leBytes([0.5, bad]);
    const error = assertRejected(
      pack(chunkRecord({ payload, crc32: referenceCrc32(payload) })),
      { reason: "non_finite", field: "payload" },
    );
    assert.match(error.message, /float 3 of the stream/);

    const empty = new Uint8Array(0);
    assertRejected(
      pack(chunkRecord({
        index: 0,
        count: 1,
        offset: 0,
        total: 0,
        payload: empty,
        crc32: 0,
        meta: { loss: { sum: bad } },
      })),
      { reason: "non_finite", field: "meta.loss.sum" },
    );
  }
});

Deno.test("wire messages - encoding refuses what decoding would reject", () => {
  const chunk = {
    kind: "tensor_chunk" as const,
    run: RUN,
    step: 1,
    stream: "grads" as const,
    rank: 0,
    index: 0,
    count: 1,
    offset: 0,
    total: 2,
    meta: {},
  };

  assert.throws(
    () => encodeMessage({ ...chunk, payload: new Float32Array([1, NaN]) }),
    (error: unknown) =>
      error instanceof WireError && error.reason === "non_finite" &&
      /Cannot encode tensor_chunk: field "payload" holds NaN at float 1/
        .test(error.message),
  );
  assert.throws(
    () => encodeMessage({ ...HELLO, run: "bad run" }),
    (error: unknown) =>
      error instanceof WireError && error.reason === "bad_field" &&
      error.field === "run",
  );
  assert.throws(
    () => encodeMessage({ ...HELLO, extra: true } as HelloMessage),
    (error: unknown) => error instanceof WireError && error.field === "extra",
  );
});

Deno.test("wire messages - invalid expectations are a RangeError, not a rejection", () => {
  const bytes = pack(chunkRecord());

  assert.throws(
    () => decodeMessage(bytes, { run: RUN, workers: 0 }),
    RangeError,
  );
  assert.throws(
    () => decodeMessage(bytes, { run: "a.b", workers: 2 }),
    RangeError,
  );
  assert.throws(
    () => decodeMessage(bytes, { ...EXPECT, steps: { min: 3, max: 2 } }),
    RangeError,
  );
});

Deno.test("float32 bytes - the big-endian host path gives the same bytes and values", () => {
  const values = new Float32Array([1, -2.5, 3.4028234663852886e38, 1e-45, -0]);
  const bytes = float32ToLittleEndianBytes(values);
  const swapped = float32ToLittleEndianBytes(values, {
    hostLittleEndian: false,
  });

  assert.deepEqual([...swapped], [...bytes]);
  assert.deepEqual([...bytes.subarray(0, 8)], [
    0,
    0,
    0x80,
    0x3f,
    0,
    0,
    0x20,
    0xc0,
  ]);
  assert.deepEqual(
    littleEndianBytesToFloat32(bytes.subarray(0), { hostLittleEndian: false }),
    values,
  );
  assert.deepEqual(littleEndianBytesToFloat32(bytes), values);
});
