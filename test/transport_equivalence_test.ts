import assert from "node:assert/strict";
import { Packr } from "msgpackr";
import {
  connectNats,
  InProcessHub,
  subjects,
  type Transport,
} from "../src/transport/mod.ts";
import {
  type AssembledStream,
  encodeMessage,
  encodeTensorStream,
  RejectionCounter,
  StreamAssembler,
  type WireErrorReason,
} from "../src/wire/mod.ts";
import { startNatsServer } from "./_nats_server.ts";

const RUN = "equiv";
const WORKERS = 2;
const LENGTH = 300_000;
const MAX_PAYLOAD_BYTES = 64 * 1024;

interface ScenarioResult {
  weightsByRank: Float32Array[];
  gradsByRank: AssembledStream[];
  rejections: Record<WireErrorReason, number>;
}

/**
 * One step of the protocol: the PS broadcasts weights, each worker answers
 * with gradients derived from them (and one bad message of each kind), the
 * PS assembles every rank's gradients.
 */
async function runScenario(
  connect: (name: string) => Promise<Transport>,
): Promise<ScenarioResult> {
  const run = subjects("dptrain", RUN);
  const ps = await connect("ps");
  const workers = [await connect("worker-0"), await connect("worker-1")];
  const rejections = new RejectionCounter();
  const weightsByRank: Float32Array[] = [];
  const gradsByRank: AssembledStream[] = [];
  let resolveDone = () => {};
  let rejectDone = (_: Error) => {};
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });

  const gradAssemblers = workers.map((_, rank) =>
    new StreamAssembler({
      stream: "grads",
      step: 0,
      rank,
      expectedLength: LENGTH,
    })
  );
  ps.subscribe(run.gradsAll, (bytes, subject) => {
    const chunk = rejections.decode(bytes, {
      expect: { run: RUN, workers: WORKERS, kinds: ["tensor_chunk"] },
      subject,
    });
    if (chunk === undefined) return;
    const result = rejections.attempt(
      () => gradAssemblers[chunk.rank].add(chunk),
      { subject },
    );
    if (result === undefined) return;
    gradsByRank[chunk.rank] = result;
    if (gradsByRank.filter(Boolean).length === WORKERS) resolveDone();
  });

  workers.forEach((worker, rank) => {
    const assembler = new StreamAssembler({
      stream: "weights",
      step: 0,
      rank: -1,
      expectedLength: LENGTH,
    });
    worker.subscribe(run.weights, (bytes) => {
      const chunk = rejections.decode(bytes, {
        expect: { run: RUN, workers: WORKERS, kinds: ["tensor_chunk"] },
      });
      const weights = chunk && assembler.add(chunk);
      if (weights === undefined) return;
      weightsByRank[rank] = weights.data;
      publishBadMessages(worker, { subject: run.grads(rank), rank });
      const grads = weights.data.map((w) => w * (rank + 1) - rank);
      for (
        const message of encodeTensorStream({
          run: RUN,
          step: 0,
          stream: "grads",
          rank,
          data: grads,
          meta: { examples: 8 + rank, lossSum: 1.5 * rank, backend: "cpu" },
          maxPayloadBytes: worker.maxPayloadBytes,
        })
      ) {
        worker.publish(run.grads(rank), message);
      }
    });
  });
  await Promise.all([ps, ...workers].map((t) => t.flush()));

  const weights = Float32Array.from({ length: LENGTH }, (_, i) => i * 0.001);
  for (
    const message of encodeTensorStream({
      run: RUN,
      step: 0,
      stream: "weights",
      rank: -1,
      data: weights,
      meta: { epoch: 0, lr: 1e-5 },
      maxPayloadBytes: ps.maxPayloadBytes,
    })
  ) {
    ps.publish(run.weights, message);
  }

  const timeout = setTimeout(
    () => rejectDone(new Error("the step did not complete in 20 s")),
    20_000,
  );
  try {
    await done;
  } finally {
    clearTimeout(timeout);
  }
  await Promise.all([ps, ...workers].map((t) => t.close()));
  return { weightsByRank, gradsByRank, rejections: rejections.counts() };
}

/** Publishes a garbage, a truncated, a wrong-run and a NaN-carrying chunk. */
function publishBadMessages(
  transport: Transport,
  options: { subject: string; rank: number },
): void {
  const { subject, rank } = options;
  const valid = encodeMessage({
    kind: "tensor_chunk",
    run: "other-run",
    step: 0,
    stream: "grads",
    rank,
    index: 0,
    count: 1,
    offset: 0,
    total: 1,
    payload: new Float32Array([1]),
    meta: {},
  });
  const nanPayload = new Uint8Array(new Float32Array([NaN]).buffer);
  const nanChunk = new Packr({ useRecords: false }).pack({
    v: 1,
    kind: "tensor_chunk",
    run: RUN,
    step: 0,
    stream: "grads",
    rank,
    attempt: 0,
    index: 0,
    count: 1,
    offset: 0,
    total: 1,
    crc32: crc32Of(nanPayload),
    meta: {},
    payload: nanPayload,
  });

  transport.publish(subject, new Uint8Array([0xc1, 0x00, 0x17]));
  transport.publish(subject, valid.subarray(0, valid.length - 3));
  transport.publish(subject, valid);
  transport.publish(subject, nanChunk);
}

// Bit-at-a-time CRC-32, so the NaN chunk fails on its value, not its checksum.
function crc32Of(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
    }
  }
  return (crc ^ 0xffffffff) >>> 0;
}

Deno.test("transports - NATS and in-process give the same bytes and rejections", async () => {
  const hub = new InProcessHub({ maxPayloadBytes: MAX_PAYLOAD_BYTES });
  const inProcess = await runScenario(() => Promise.resolve(hub.connect()));

  const server = await startNatsServer({ maxPayloadBytes: MAX_PAYLOAD_BYTES });
  let overNats: ScenarioResult;
  try {
    overNats = await runScenario((name) =>
      connectNats({ url: server.url, name })
    );
  } finally {
    await server.stop();
  }

  for (const result of [inProcess, overNats]) {
    assert.equal(result.gradsByRank.length, WORKERS);
    for (let rank = 0; rank < WORKERS; rank++) {
      const expectedGrads = Float32Array.from(
        { length: LENGTH },
        (_, i) => Math.fround(i * 0.001) * (rank + 1) - rank,
      );
      assert.deepEqual(result.gradsByRank[rank].data, expectedGrads);
      assert.deepEqual(result.gradsByRank[rank].meta, {
        examples: 8 + rank,
        lossSum: 1.5 * rank,
        backend: "cpu",
      });
    }
    assert.deepEqual(
      Object.entries(result.rejections).filter(([, count]) => count > 0),
      [
        ["truncated", WORKERS],
        ["garbage", WORKERS],
        ["wrong_run", WORKERS],
        ["non_finite", WORKERS],
      ],
    );
  }
  assert.deepEqual(overNats.weightsByRank, inProcess.weightsByRank);
  assert.deepEqual(
    overNats.gradsByRank.map((g) => new Uint8Array(g.data.buffer)),
    inProcess.gradsByRank.map((g) => new Uint8Array(g.data.buffer)),
  );
});
