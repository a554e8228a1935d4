/**
 * Bad gradient messages never reach the weights (DESIGN.md, "Wire"): each
 * is dropped with its reason counted and logged, the step it arrived in
 * completes with the real workers' contributions, and the run ends with the
 * same weights as a clean one.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { join } from "node:path";
import { Packr } from "msgpackr";
import { runPsRole, runWorkerRole } from "../src/train/run_job.ts";
import {
  InProcessHub,
  type MessageHandler,
  subjects,
  type Subscription,
  type Transport,
  TransportError,
} from "../src/transport/mod.ts";
import { crc32, decodeMessage } from "../src/wire/mod.ts";
import type { JobConfig } from "../src/config.ts";
import type { RunSummary } from "../src/train/summary.ts";
import {
  captureLogger,
  createTinyDataset,
  tinyJobConfig,
  trainTiny,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

/** The max_payload of the servers the PS and the workers connect to. */
const SMALL_MAX_PAYLOAD_BYTES = 256 * 1024;
/** The max_payload of the server the injector connects to. */
const LARGE_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/**
 * A connection to a server of a NATS cluster whose max_payload is smaller
 * than another server's: it refuses larger publishes from its own client,
 * as nats-server does, but a larger message published through the other
 * server is routed to it whole. The PS must reject that one as `oversized`.
 */
class SmallServerConnection implements Transport {
  readonly maxPayloadBytes = SMALL_MAX_PAYLOAD_BYTES;
  readonly #inner: Transport;

  constructor(inner: Transport) {
    this.#inner = inner;
  }

  get closed(): Promise<Error | undefined> {
    return this.#inner.closed;
  }

  publish(subject: string, data: Uint8Array): void {
    if (data.length > this.maxPayloadBytes) {
      throw new TransportError({
        code: "max_payload_exceeded",
        subject,
        message: `${data.length} bytes is above max_payload`,
      });
    }
    this.#inner.publish(subject, data);
  }

  subscribe(subject: string, handler: MessageHandler): Subscription {
    return this.#inner.subscribe(subject, handler);
  }

  flush(): Promise<void> {
    return this.#inner.flush();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

// Plain msgpack maps, packed here rather than by the wire encoder, which
// refuses to produce most of these messages.
const packr = new Packr({ useRecords: false, variableMapSize: true });

interface ChunkFields {
  run: string;
  step: number;
  rank: number;
  index: number;
  count: number;
  offset: number;
  total: number;
  payload: Float32Array;
  meta?: Record<string, unknown>;
}

/** A gradient chunk as a worker would send it, with a correct checksum. */
function gradsChunk(fields: ChunkFields): Uint8Array {
  const { payload, meta, ...header } = fields;
  const bytes = new Uint8Array(payload.length * 4);
  const view = new DataView(bytes.buffer);
  payload.forEach((value, i) => view.setFloat32(i * 4, value, true));

  return packr.pack({
    v: 1,
    kind: "tensor_chunk",
    run: header.run,
    step: header.step,
    stream: "grads",
    rank: header.rank,
    attempt: 0,
    index: header.index,
    count: header.count,
    offset: header.offset,
    total: header.total,
    crc32: crc32(bytes),
    ...(meta === undefined ? {} : { meta }),
    payload: bytes,
  });
}

/**
 * One message per rejection reason, each claiming to be rank 0's gradients
 * for `step` and each, if it were accepted, enough to change the step's
 * result or to block it: they all take rank 0's place in the collector.
 */
function badMessages(
  args: { runId: string; step: number; total: number },
): Map<string, Uint8Array> {
  const { runId, step, total } = args;
  const floats = 16;
  const meta = { count: 2, lossSum: 3, correct: 0, nonFinite: "" };
  const piece = {
    run: runId,
    step,
    rank: 0,
    index: 0,
    count: Math.ceil(total / floats),
    offset: 0,
    total,
    payload: new Float32Array(floats).fill(0.5),
    meta,
  };
  const nan = new Float32Array(floats).fill(0.5);
  nan[3] = NaN;
  const longer = total + floats;

  return new Map([
    ["truncated", gradsChunk(piece).slice(0, 40)],
    [
      "oversized",
      gradsChunk({ ...piece, count: 1, payload: new Float32Array(total) }),
    ],
    ["wrong_run", gradsChunk({ ...piece, run: "another-run" })],
    ["wrong_step", gradsChunk({ ...piece, step: step + 97 })],
    [
      "wrong_length",
      gradsChunk({
        ...piece,
        total: longer,
        count: Math.ceil(longer / floats),
      }),
    ],
    ["non_finite", gradsChunk({ ...piece, payload: nan })],
  ]);
}

/**
 * Runs the PS and 2 workers on a bus where they see a 256 KiB
 * max_payload, and calls `inject` with a connection that may publish 4 MiB.
 */
async function runWithInjector(
  config: JobConfig,
  args: { runId: string; inject: (transport: Transport) => void },
): Promise<{ summary: RunSummary; lines: string[] }> {
  const { runId } = args;
  const hub = new InProcessHub({ maxPayloadBytes: LARGE_MAX_PAYLOAD_BYTES });
  const connections = [0, 1, 2].map(() => hub.connect());
  const injector = hub.connect();
  const [ps, ...workers] = connections.map((c) => new SmallServerConnection(c));
  const { log, lines } = captureLogger(runId);
  const outDir = await Deno.makeTempDir({
    dir: join(config.data.root, ".."),
    prefix: `${runId}_`,
  });

  try {
    args.inject(injector);
    const [summary] = await Promise.all([
      runPsRole({
        config,
        runId,
        transport: ps,
        log: log.child("ps"),
        outDir,
        backend: "cpu",
      }),
      ...workers.map((transport, rank) =>
        runWorkerRole({
          config,
          runId,
          rank,
          transport,
          log: log.child(`worker ${rank}`),
          backend: "cpu",
        })
      ),
    ]);
    return { summary: summary as RunSummary, lines };
  } finally {
    for (const c of [...connections, injector]) await c.close();
  }
}

Deno.test("rejections - bad grads are counted and dropped; the run ends as clean", async () => {
  const dataset = await createTinyDataset();
  // A rejected message that slipped through would stall the step: fail
  // then in seconds rather than after the default 300.
  const config = tinyJobConfig(dataset, {
    train: { stallWarnSeconds: 10, stallAbortSeconds: 40 },
  });
  const runId = "reject-run";
  const tensorsBefore = tf.memory().numTensors;
  const injected: string[] = [];

  try {
    const clean = await trainTiny(config, { runId: "clean-run" });
    const messages = badMessages({
      runId,
      step: 1,
      total: clean.weights.length,
    });
    assert.ok(messages.get("oversized")!.length > SMALL_MAX_PAYLOAD_BYTES);

    // Inject while the PS waits for step 1: when its weights go out.
    const { summary, lines } = await runWithInjector(config, {
      runId,
      inject: (transport) => {
        const s = subjects("dptrain", runId);
        transport.subscribe(s.weights, (data) => {
          const chunk = decodeMessage(data, {
            run: runId,
            workers: 2,
            kinds: ["tensor_chunk"],
          });
          if (chunk.step !== 1 || injected.length > 0) return;
          for (const [reason, bytes] of messages) {
            transport.publish(s.grads(0), bytes);
            injected.push(reason);
          }
        });
      },
    });

    assert.equal(injected.length, 6);
    assert.deepEqual(
      summary.rejectedMessages,
      Object.fromEntries(injected.sort().map((reason) => [reason, 1])),
    );
    for (const reason of injected) {
      assert.ok(
        lines.some((l) =>
          /WARN.*\[run=reject-run ps/.test(l) &&
          l.includes(`dropped a message (${reason};`)
        ),
        `no log line for ${reason}`,
      );
    }

    assert.equal(summary.steps, 2);
    assert.equal(summary.skippedSteps, 0);
    assert.equal(summary.weightsSha256, clean.summary.weightsSha256);
    assert.equal(tf.memory().numTensors, tensorsBefore);
  } finally {
    await dataset.remove();
  }
});
