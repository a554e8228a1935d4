import assert from "node:assert/strict";
import {
  encodeMessage,
  RejectionCounter,
  type RejectionEvent,
  StreamAssembler,
  WireError,
} from "../src/wire/mod.ts";

const SUBJECT = "dptrain.r1.grads";

function chunkBytes(options: { run: string; payload: Float32Array }) {
  return encodeMessage({
    kind: "tensor_chunk",
    run: options.run,
    step: 3,
    stream: "grads",
    rank: 1,
    index: 0,
    count: 1,
    offset: 0,
    total: options.payload.length,
    payload: options.payload,
    meta: {},
  });
}

Deno.test("RejectionCounter - counts by reason and logs who sent what where", () => {
  const events: RejectionEvent[] = [];
  const rejections = new RejectionCounter({ log: (e) => events.push(e) });
  const expect = { run: "r1", workers: 2, kinds: ["tensor_chunk" as const] };

  const good = rejections.decode(
    chunkBytes({ run: "r1", payload: new Float32Array([1]) }),
    { expect, subject: SUBJECT },
  );
  const wrongRun = rejections.decode(
    chunkBytes({ run: "r2", payload: new Float32Array([1]) }),
    { expect, subject: SUBJECT },
  );
  const garbage = rejections.decode(new Uint8Array([1, 2, 3]), { expect });
  rejections.decode(new Uint8Array([0xc1]), { expect });

  assert.equal(good?.payload[0], 1);
  assert.equal(wrongRun, undefined);
  assert.equal(garbage, undefined);
  assert.equal(rejections.total, 3);
  assert.equal(rejections.count("wrong_run"), 1);
  assert.equal(rejections.count("garbage"), 2);
  assert.equal(rejections.counts().bad_checksum, 0);
  assert.equal(Object.keys(rejections.counts()).length, 14);
  assert.deepEqual(
    { ...events[0], message: undefined },
    {
      reason: "wrong_run",
      field: "run",
      message: undefined,
      kind: "tensor_chunk",
      run: "r2",
      step: 3,
      rank: 1,
      subject: SUBJECT,
    },
  );
  assert.match(events[0].message, /field "run" must be "r1"/);
});

Deno.test("RejectionCounter - attempt counts WireErrors and rethrows bugs", () => {
  const rejections = new RejectionCounter();
  const assembler = new StreamAssembler({
    stream: "grads",
    step: 3,
    rank: 1,
    expectedLength: 5,
  });
  const chunk = rejections.decode(
    chunkBytes({ run: "r1", payload: new Float32Array([1, 2]) }),
    { expect: { run: "r1", workers: 2, kinds: ["tensor_chunk"] } },
  );
  assert.ok(chunk !== undefined);

  assert.equal(rejections.attempt(() => assembler.add(chunk)), undefined);
  assert.equal(rejections.count("wrong_length"), 1);
  assert.equal(rejections.attempt(() => 42), 42);
  assert.throws(
    () =>
      rejections.attempt(() => {
        throw new TypeError("a bug");
      }),
    TypeError,
  );
  assert.equal(rejections.total, 1);
  assert.ok(
    rejections.attempt(() => {
      throw new WireError({ reason: "non_finite", message: "NaN" });
    }) === undefined,
  );
  assert.equal(rejections.count("non_finite"), 1);
});
