import assert from "node:assert/strict";
import {
  connectNats,
  subjects,
  type Transport,
  TransportError,
  type TransportLogEntry,
} from "../src/transport/mod.ts";
import {
  type AssembledStream,
  decodeMessage,
  encodeMessage,
  encodeTensorStream,
  StreamAssembler,
} from "../src/wire/mod.ts";
import { NatsServerError, startNatsServer } from "./_nats_server.ts";

const KIB = 1024;

/** Resolves when `predicate` holds, polling every 10 ms; fails after `ms`. */
async function waitFor(predicate: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function canConnect(port: number): Promise<boolean> {
  try {
    const connection = await Deno.connect({ hostname: "127.0.0.1", port });
    connection.close();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.ConnectionRefused) return false;
    throw error;
  }
}

Deno.test("startNatsServer - listens on a free loopback port until stopped", async () => {
  const server = await startNatsServer();

  assert.match(server.url, /^nats:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(server.port > 0);
  assert.ok(await canConnect(server.port));

  await server.stop();
  assert.equal(await canConnect(server.port), false);
  await server.stop();
});

Deno.test("startNatsServer - an early exit fails with the server's stderr", async () => {
  // nats-server refuses a max_payload above its max_pending (64 MiB).
  const error = await startNatsServer({ maxPayloadBytes: 128 * KIB * KIB })
    .then(() => undefined, (error: unknown) => error);

  assert.ok(error instanceof NatsServerError, String(error));
  assert.equal(error.exitCode, 1);
  assert.match(error.stderr, /max_payload/);
  assert.match(error.message, /exited with code 1.*\n.*max_payload/s);

  await assert.rejects(
    startNatsServer({ binaryPath: "/nonexistent/nats-server" }),
    NatsServerError,
  );
});

Deno.test("connectNats - reads max_payload from the server", async () => {
  const small = await startNatsServer({ maxPayloadBytes: 64 * KIB });
  const standard = await startNatsServer();
  const a = await connectNats({ url: small.url, name: "small" });
  const b = await connectNats({ url: standard.url, name: "standard" });

  try {
    assert.equal(a.maxPayloadBytes, 64 * KIB);
    assert.equal(b.maxPayloadBytes, 1024 * KIB);
    assert.throws(
      () => a.publish("t.a", new Uint8Array(64 * KIB + 1)),
      (error: unknown) =>
        error instanceof TransportError &&
        error.code === "max_payload_exceeded",
    );
  } finally {
    await Promise.all([a.close(), b.close()]);
    await Promise.all([small.stop(), standard.stop()]);
  }
});

Deno.test("connectNats - carries a 6 MB stream under a 64 KiB max_payload", async () => {
  const server = await startNatsServer({ maxPayloadBytes: 64 * KIB });
  const ps = await connectNats({ url: server.url, name: "ps" });
  const worker = await connectNats({ url: server.url, name: "worker" });
  const run = subjects("dptrain", "big");

  try {
    const length = 1_500_000; // 6 MB
    const data = Float32Array.from({ length }, (_, i) => Math.sin(i) * i);
    const assembler = new StreamAssembler({
      stream: "weights",
      step: 7,
      rank: -1,
      expectedLength: length,
    });
    let result: AssembledStream | undefined;
    worker.subscribe(run.weights, (bytes) => {
      const chunk = decodeMessage(bytes, {
        run: "big",
        workers: 2,
        kinds: ["tensor_chunk"],
      });
      result = assembler.add(chunk) ?? result;
    });
    await worker.flush();

    const messages = encodeTensorStream({
      run: "big",
      step: 7,
      stream: "weights",
      rank: -1,
      data,
      meta: { epoch: 1, lr: 1e-4 },
      maxPayloadBytes: ps.maxPayloadBytes,
    });
    for (const bytes of messages) ps.publish(run.weights, bytes);
    await ps.flush();
    await waitFor(() => result !== undefined, 10_000);

    assert.ok(messages.length >= 6_000_000 / (64 * KIB));
    assert.deepEqual(result?.meta, { epoch: 1, lr: 1e-4 });
    assert.deepEqual(
      new Uint32Array(result!.data.buffer),
      new Uint32Array(data.buffer),
    );
  } finally {
    await Promise.all([ps.close(), worker.close()]);
    await server.stop();
  }
});

Deno.test("connectNats - two run ids on one server never see each other's messages", async () => {
  const server = await startNatsServer();
  const connections: Transport[] = [];
  const connect = async (name: string) => {
    const transport = await connectNats({ url: server.url, name });
    connections.push(transport);
    return transport;
  };

  try {
    const seen: Record<string, string[]> = { a: [], b: [] };
    const publishers: Record<string, Transport> = {};
    const receivers: Transport[] = [];
    for (const runId of ["a", "b"]) {
      const receiver = await connect(`receiver-${runId}`);
      receiver.subscribe(subjects("dptrain", runId).all, (bytes, subject) => {
        const message = decodeMessage(bytes, { run: runId, workers: 2 });
        seen[runId].push(`${subject} ${message.kind} ${message.step}`);
      });
      await receiver.flush();
      receivers.push(receiver);
      publishers[runId] = await connect(`ps-${runId}`);
    }

    for (const runId of ["a", "b"]) {
      const run = subjects("dptrain", runId);
      for (const subject of [run.control, run.welcome(1), run.grads(1)]) {
        publishers[runId].publish(
          subject,
          encodeMessage({
            kind: "control",
            run: runId,
            step: 3,
            command: "stop",
            reason: "",
          }),
        );
      }
    }
    // Publishers' flushes mean the server has routed every message; each
    // receiver's flush then returns after the messages queued before it.
    await Promise.all(Object.values(publishers).map((p) => p.flush()));
    await Promise.all(receivers.map((r) => r.flush()));

    for (const runId of ["a", "b"]) {
      assert.deepEqual(seen[runId], [
        `dptrain.${runId}.control control 3`,
        `dptrain.${runId}.welcome.1 control 3`,
        `dptrain.${runId}.grads.1 control 3`,
      ]);
    }
  } finally {
    await Promise.all(connections.map((c) => c.close()));
    await server.stop();
  }
});

Deno.test("connectNats - logs a disconnect and a reconnect to a restarted server", async () => {
  const first = await startNatsServer();
  const entries: TransportLogEntry[] = [];
  const transport = await connectNats({
    url: first.url,
    name: "worker-0",
    log: (entry) => entries.push(entry),
    reconnectTimeWaitMs: 50,
    maxReconnectAttempts: -1,
  });
  const has = (level: string, pattern: RegExp) =>
    entries.some((e) => e.level === level && pattern.test(e.message));
  let second: Awaited<ReturnType<typeof startNatsServer>> | undefined;

  try {
    assert.ok(has("info", /worker-0 connected to .*max_payload 1048576/));

    await first.stop();
    await waitFor(() => has("warn", /worker-0 disconnect/), 5_000);

    second = await startNatsServer({ port: first.port });
    await waitFor(() => has("info", /worker-0 reconnect:/), 10_000);

    const received: number[] = [];
    transport.subscribe("t.after", (data) => received.push(data[0]));
    transport.publish("t.after", new Uint8Array([5]));
    await transport.flush();
    await waitFor(() => received.length === 1, 5_000);
  } finally {
    await transport.close();
    await second?.stop();
  }
  assert.ok(has("info", /worker-0 closed/));
});

Deno.test("connectNats - closed settles with an error when reconnects run out", async () => {
  const server = await startNatsServer();
  const transport = await connectNats({
    url: server.url,
    reconnectTimeWaitMs: 20,
    maxReconnectAttempts: 1,
  });

  await server.stop();
  const error = await transport.closed;

  assert.ok(error instanceof Error);
  assert.throws(
    () => transport.publish("t.a", new Uint8Array(1)),
    (error: unknown) =>
      error instanceof TransportError && error.code === "closed",
  );
  await transport.close();
});

Deno.test("connectNats - a refused connection names the URL", async () => {
  const server = await startNatsServer();
  const url = server.url;
  await server.stop();

  await assert.rejects(
    connectNats({ url, timeoutMs: 1_000 }),
    (error: unknown) =>
      error instanceof TransportError && error.code === "connect_failed" &&
      error.message.includes(url),
  );
});

Deno.test("connectNats - a throwing handler is reported and delivery goes on", async () => {
  const server = await startNatsServer();
  const errors: string[] = [];
  const transport = await connectNats({
    url: server.url,
    onHandlerError: (error, subject) =>
      errors.push(`${subject}: ${(error as Error).message}`),
  });
  const received: number[] = [];

  try {
    transport.subscribe("t.a", (data) => {
      if (data[0] === 1) throw new Error("handler bug");
      received.push(data[0]);
    });
    transport.publish("t.a", new Uint8Array([1]));
    transport.publish("t.a", new Uint8Array([2]));
    await transport.flush();
    await waitFor(() => received.length === 1, 5_000);

    assert.deepEqual(errors, ["t.a: handler bug"]);
    assert.deepEqual(received, [2]);
  } finally {
    await transport.close();
    await server.stop();
  }
});
