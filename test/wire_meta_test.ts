import assert from "node:assert/strict";
import {
  metaNumber,
  metaNumberArray,
  metaString,
  validateMeta,
  WireError,
  type WireErrorReason,
} from "../src/wire/mod.ts";

function assertWireError(
  action: () => unknown,
  expected: { reason: WireErrorReason; field: string },
) {
  assert.throws(action, (error: unknown) => {
    assert.ok(error instanceof WireError, String(error));
    assert.equal(error.reason, expected.reason, error.message);
    assert.equal(error.field, expected.field, error.message);
    return true;
  });
}

const validate = (value: unknown) =>
  validateMeta(value, { action: "decode", kind: "tensor_chunk" });

Deno.test("validateMeta - accepts finite numbers, strings, booleans, nil, arrays and maps", () => {
  const meta = {
    epoch: 3,
    lr: 2.5e-5,
    backend: "wasm",
    final: false,
    device: null,
    positions: [[0, 8], [8, 16]],
    nested: { a: { b: { c: [1] } } },
  };
  assert.equal(validate(meta), meta);
});

Deno.test("validateMeta - rejects non-finite values, other types and oversized trees", () => {
  assertWireError(() => validate({ lr: NaN }), {
    reason: "non_finite",
    field: "meta.lr",
  });
  assertWireError(() => validate({ ranks: [1, -Infinity] }), {
    reason: "non_finite",
    field: "meta.ranks.1",
  });
  assertWireError(() => validate({ at: new Date(0) }), {
    reason: "bad_field",
    field: "meta.at",
  });
  assertWireError(() => validate({ big: 1n }), {
    reason: "bad_field",
    field: "meta.big",
  });
  assertWireError(() => validate([1]), { reason: "bad_field", field: "meta" });
  assertWireError(() => validate({ a: { b: { c: { d: { e: [] } } } } }), {
    reason: "oversized",
    field: "meta.a.b.c.d.e",
  });
  assertWireError(
    () =>
      validate(Object.fromEntries(
        Array.from({ length: 65 }, (_, i) => [`k${i}`, i]),
      )),
    { reason: "oversized", field: "meta" },
  );
  assertWireError(() => validate({ s: "x".repeat(4097) }), {
    reason: "oversized",
    field: "meta.s",
  });
  assertWireError(() => validate({ a: new Array(70_000).fill(0) }), {
    reason: "oversized",
    field: "meta.a",
  });
});

Deno.test("meta readers - return typed values or name the key at fault", () => {
  const meta = { epoch: 2, lr: 1e-4, backend: "cpu", sizes: [8, 8, 7] };

  assert.equal(metaNumber(meta, "lr", { min: 0 }), 1e-4);
  assert.equal(metaNumber(meta, "epoch", { integer: true, max: 13 }), 2);
  assert.deepEqual(metaNumberArray(meta, "sizes", { integer: true }), [
    8,
    8,
    7,
  ]);
  assert.equal(metaString(meta, "backend"), "cpu");

  assertWireError(() => metaNumber(meta, "loss"), {
    reason: "bad_field",
    field: "meta.loss",
  });
  assertWireError(() => metaNumber(meta, "lr", { integer: true }), {
    reason: "bad_field",
    field: "meta.lr",
  });
  assertWireError(() => metaNumber(meta, "epoch", { max: 1 }), {
    reason: "bad_field",
    field: "meta.epoch",
  });
  assertWireError(() => metaNumberArray(meta, "sizes", { min: 8 }), {
    reason: "bad_field",
    field: "meta.sizes.2",
  });
  assertWireError(() => metaString(meta, "epoch"), {
    reason: "bad_field",
    field: "meta.epoch",
  });
  assertWireError(() => metaNumber(meta, "toString"), {
    reason: "bad_field",
    field: "meta.toString",
  });
});
