/**
 * Throughput of the wire codec and of NATS loopback for one 9 MiB float32
 * stream (2,359,296 floats, about MobileNetV2 alpha 1.0's trainable
 * weights), chunked under NATS's default 1 MiB max_payload.
 *
 * Run: deno bench -A test/wire_throughput_bench.ts
 * MB/s = 9.437 MB / (time per iteration).
 *
 * @module
 */

import { connectNats } from "../src/transport/mod.ts";
import {
  type AssembledStream,
  decodeMessage,
  encodeTensorStream,
  StreamAssembler,
  type TensorStreamOptions,
} from "../src/wire/mod.ts";
import { startNatsServer } from "./_nats_server.ts";

const LENGTH = (9 * 1024 * 1024) / 4;
const MAX_PAYLOAD_BYTES = 1024 * 1024;
const DATA = Float32Array.from({ length: LENGTH }, (_, i) => Math.sin(i));
const STREAM: TensorStreamOptions = {
  run: "bench",
  step: 1,
  stream: "weights",
  rank: -1,
  data: DATA,
  meta: { epoch: 0, lr: 1e-4 },
  maxPayloadBytes: MAX_PAYLOAD_BYTES,
};
const EXPECT = { run: "bench", workers: 2, kinds: ["tensor_chunk" as const] };
const ENCODED = encodeTensorStream(STREAM);

function assemble(messages: Uint8Array[]): AssembledStream {
  const assembler = new StreamAssembler({
    stream: "weights",
    step: 1,
    rank: -1,
    expectedLength: LENGTH,
  });
  let result: AssembledStream | undefined;
  for (const bytes of messages) {
    result = assembler.add(decodeMessage(bytes, EXPECT)) ?? result;
  }
  if (result === undefined) throw new Error("stream did not complete");
  return result;
}

Deno.bench({
  name: "wire - encode 9 MiB stream",
  group: "codec",
  n: 30,
  warmup: 5,
  fn() {
    encodeTensorStream(STREAM);
  },
});

Deno.bench({
  name: "wire - decode and assemble 9 MiB stream",
  group: "codec",
  n: 30,
  warmup: 5,
  fn() {
    assemble(ENCODED);
  },
});

Deno.bench({
  name: "wire - encode, decode and assemble 9 MiB stream",
  group: "codec",
  baseline: true,
  n: 30,
  warmup: 5,
  fn() {
    assemble(encodeTensorStream(STREAM));
  },
});

Deno.bench({
  name: "nats - 9 MiB stream over loopback (encode to assembled)",
  n: 10,
  warmup: 2,
  async fn(b) {
    const server = await startNatsServer();
    const ps = await connectNats({ url: server.url, name: "bench-ps" });
    const worker = await connectNats({ url: server.url, name: "bench-w" });
    const assembler = new StreamAssembler({
      stream: "weights",
      step: 1,
      rank: -1,
      expectedLength: LENGTH,
    });
    const complete = Promise.withResolvers<void>();
    worker.subscribe("dptrain.bench.weights", (bytes) => {
      if (assembler.add(decodeMessage(bytes, EXPECT))) complete.resolve();
    });
    await worker.flush();

    b.start();
    const messages = encodeTensorStream({
      ...STREAM,
      maxPayloadBytes: ps.maxPayloadBytes,
    });
    for (const bytes of messages) ps.publish("dptrain.bench.weights", bytes);
    await complete.promise;
    b.end();

    await Promise.all([ps.close(), worker.close()]);
    await server.stop();
  },
});
