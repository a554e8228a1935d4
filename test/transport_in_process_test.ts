import assert from "node:assert/strict";
import { InProcessHub, TransportError } from "../src/transport/mod.ts";

Deno.test("InProcessHub - delivers after publish returns, in publish order", async () => {
  const hub = new InProcessHub();
  const sender = hub.connect();
  const receiver = hub.connect();
  const received: number[] = [];
  receiver.subscribe("t.a", (data) => received.push(data[0]));

  for (let i = 0; i < 5; i++) sender.publish("t.a", new Uint8Array([i]));
  assert.deepEqual(received, []);

  await sender.flush();
  assert.deepEqual(received, [0, 1, 2, 3, 4]);
  await Promise.all([sender.close(), receiver.close()]);
});

Deno.test("InProcessHub - each subscriber gets its own copy at an odd offset", async () => {
  const hub = new InProcessHub();
  const transport = hub.connect();
  const copies: Uint8Array[] = [];
  transport.subscribe("t.*", (data) => copies.push(data));
  transport.subscribe("t.>", (data) => {
    data[0] = 99;
    copies.push(data);
  });

  const published = new Uint8Array([1, 2, 3, 4]);
  transport.publish("t.x", published);
  published[1] = 42;
  await hub.flush();

  assert.equal(copies.length, 2);
  assert.deepEqual([...copies[0]], [1, 2, 3, 4]);
  assert.deepEqual([...copies[1]], [99, 2, 3, 4]);
  assert.ok(copies.every((data) => data.byteOffset % 2 === 1));
  await transport.close();
});

Deno.test("InProcessHub - matches wildcards and stops after unsubscribe", async () => {
  const hub = new InProcessHub();
  const transport = hub.connect();
  const seen: string[] = [];
  const all = transport.subscribe(
    "run.a.>",
    (_, subject) => seen.push(subject),
  );
  transport.subscribe("run.b.grads", (_, subject) => seen.push(subject));

  transport.publish("run.a.grads", new Uint8Array(1));
  transport.publish("run.a.welcome.3", new Uint8Array(1));
  transport.publish("run.b.grads", new Uint8Array(1));
  transport.publish("run.c.grads", new Uint8Array(1));
  all.unsubscribe();
  transport.publish("run.a.grads", new Uint8Array(1));
  await transport.flush();

  // Unsubscribing drops what was queued for the subscription too.
  assert.deepEqual(seen, ["run.b.grads"]);
  await transport.close();
});

Deno.test("InProcessHub - refuses messages above max_payload and use after close", async () => {
  const hub = new InProcessHub({ maxPayloadBytes: 16 });
  const transport = hub.connect();
  transport.publish("t.a", new Uint8Array(16));

  assert.equal(transport.maxPayloadBytes, 16);
  assert.throws(
    () => transport.publish("t.a", new Uint8Array(17)),
    (error: unknown) =>
      error instanceof TransportError &&
      error.code === "max_payload_exceeded" && error.subject === "t.a",
  );
  assert.throws(() => transport.publish("t.*", new Uint8Array(1)), TypeError);

  await transport.close();
  assert.equal(await transport.closed, undefined);
  assert.throws(
    () => transport.publish("t.a", new Uint8Array(1)),
    (error: unknown) =>
      error instanceof TransportError && error.code === "closed",
  );
  assert.throws(() => transport.subscribe("t.a", () => {}), TransportError);
  await transport.close();
});

Deno.test("InProcessHub - close delivers pending messages first", async () => {
  const hub = new InProcessHub();
  const transport = hub.connect();
  const received: number[] = [];
  transport.subscribe("t.a", (data) => received.push(data[0]));

  transport.publish("t.a", new Uint8Array([7]));
  await transport.close();

  assert.deepEqual(received, [7]);
});

Deno.test("InProcessHub - a throwing handler is reported and delivery goes on", async () => {
  const errors: [unknown, string][] = [];
  const hub = new InProcessHub();
  const transport = hub.connect({
    onHandlerError: (error, subject) => errors.push([error, subject]),
  });
  const received: number[] = [];
  transport.subscribe("t.a", (data) => {
    if (data[0] === 1) throw new Error("handler bug");
    received.push(data[0]);
  });
  // An async handler's rejection is reported the same way.
  transport.subscribe("t.b", async () => {
    await Promise.resolve();
    throw new Error("async handler bug");
  });

  transport.publish("t.a", new Uint8Array([1]));
  transport.publish("t.a", new Uint8Array([2]));
  transport.publish("t.b", new Uint8Array([3]));
  await transport.flush();
  await new Promise((resolve) => setTimeout(resolve, 0));

  assert.deepEqual(received, [2]);
  assert.deepEqual(
    errors.map(([error, subject]) => [(error as Error).message, subject]),
    [["handler bug", "t.a"], ["async handler bug", "t.b"]],
  );
  await transport.close();
});

Deno.test("InProcessHub - messages published by a handler are delivered by flush", async () => {
  const hub = new InProcessHub();
  const ps = hub.connect();
  const worker = hub.connect();
  const replies: number[] = [];
  worker.subscribe("r.weights", (data) => {
    worker.publish("r.grads", new Uint8Array([data[0] + 1]));
  });
  ps.subscribe("r.grads", (data) => replies.push(data[0]));

  ps.publish("r.weights", new Uint8Array([10]));
  await hub.flush();

  assert.deepEqual(replies, [11]);
  await Promise.all([ps.close(), worker.close()]);
});
