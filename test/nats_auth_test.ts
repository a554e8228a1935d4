/**
 * NATS access with a real nats-server on a free loopback port: per-run
 * users and their subject permissions (a worker publishes only its own
 * `hello` and `grads`, never `weights` or `control`), clients without or
 * with wrong credentials refused with a clear error, token and NKey
 * logins, and the server's config file (0600, gone once it listens).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { nkeys } from "nats";
import {
  connectNats,
  generateRunCredentials,
  loadNatsAccess,
  type NatsAccess,
  runAuthorization,
  type RunSubjects,
  subjects,
  type Transport,
  TransportError,
  type TransportLogEntry,
} from "../src/transport/mod.ts";
import { type NatsServer, startNatsServer } from "./_nats_server.ts";
import { makeOperatorSetup } from "./_nats_jwt.ts";

const RUN = "r1";

/** Resolves when `predicate` holds, polling every 10 ms; fails after `ms`. */
async function waitFor(predicate: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A connection that records its log and every message it receives. */
interface Client {
  transport: Transport;
  log: TransportLogEntry[];
  received: string[];
  /** Subscribes, recording `<subject>` for each message. */
  listen(subject: string): void;
  violations(): string[];
}

async function client(url: string, access: NatsAccess): Promise<Client> {
  const log: TransportLogEntry[] = [];
  const received: string[] = [];
  const transport = await connectNats({
    url,
    access,
    log: (entry) => log.push(entry),
    maxReconnectAttempts: 0,
  });
  return {
    transport,
    log,
    received,
    listen(subject) {
      transport.subscribe(subject, (_data, on) => received.push(on));
    },
    violations() {
      return log.filter((e) =>
        e.level === "error" && /permissions violation/.test(e.message)
      ).map((e) => e.message);
    },
  };
}

/** A server admitting run `RUN`'s PS and 2 workers, and their logins. */
async function runServer(): Promise<{
  server: NatsServer;
  run: RunSubjects;
  ps: NatsAccess;
  worker: (rank: number) => NatsAccess;
}> {
  const run = subjects("dptrain", RUN);
  const credentials = generateRunCredentials(RUN, { workers: 2 });
  const server = await startNatsServer({
    authorization: runAuthorization(credentials, run),
  });
  const login = (user: { user: string; password: string }): NatsAccess => ({
    auth: { method: "password", ...user },
  });
  return {
    server,
    run,
    ps: login(credentials.ps),
    worker: (rank) => login(credentials.workers[rank]!),
  };
}

const payload = new Uint8Array([1, 2, 3]);

Deno.test("nats auth - a client without credentials cannot connect", async () => {
  const { server } = await runServer();

  try {
    await assert.rejects(
      connectNats({ url: server.url, maxReconnectAttempts: 0 }),
      (error: unknown) => {
        assert.ok(error instanceof TransportError);
        assert.equal(error.code, "connect_failed");
        assert.equal(
          error.message,
          `Cannot connect to NATS at ${server.url} with no credentials: ` +
            "authorization violation: the server requires credentials and " +
            "none were given",
        );
        return true;
      },
    );
  } finally {
    await server.stop();
  }
});

Deno.test("nats auth - a wrong password or another run's login is refused", async () => {
  const { server, worker } = await runServer();
  const other = generateRunCredentials("r2", { workers: 1 }).workers[0]!;
  const right = worker(0).auth as { user: string; password: string };

  try {
    for (
      const auth of [
        { user: right.user, password: `${right.password}x` },
        { user: other.user, password: other.password },
      ]
    ) {
      await assert.rejects(
        connectNats({
          url: server.url,
          access: { auth: { method: "password", ...auth } },
          maxReconnectAttempts: 0,
        }),
        (error: unknown) => {
          assert.ok(error instanceof TransportError);
          assert.equal(error.code, "connect_failed");
          assert.match(
            error.message,
            new RegExp(
              `authorization violation: the server refused user ` +
                `"${auth.user}" with a password$`,
            ),
          );
          assert.doesNotMatch(error.message, new RegExp(auth.password));
          return true;
        },
      );
    }
  } finally {
    await server.stop();
  }
});

Deno.test("nats auth - a worker cannot publish weights, control, others' subjects", async () => {
  const { server, run, ps, worker } = await runServer();
  const psClient = await client(server.url, ps);
  const w1 = await client(server.url, worker(1));

  try {
    psClient.listen(run.all);
    await psClient.transport.flush();

    const forbidden = [
      run.weights,
      run.control,
      run.grads(0),
      run.hello(0),
      run.welcome(1),
      run.resend(1),
      subjects("dptrain", "r2").grads(1),
    ];
    for (const subject of forbidden) w1.transport.publish(subject, payload);
    // Published after the forbidden ones on the same connection, so their
    // arrival at the PS proves the earlier ones were dropped, not late.
    w1.transport.publish(run.hello(1), payload);
    w1.transport.publish(run.grads(1), payload);
    await w1.transport.flush();
    await waitFor(() => psClient.received.length >= 2, 5_000);
    await waitFor(() => w1.violations().length >= forbidden.length, 5_000);
    await psClient.transport.flush();

    assert.deepEqual(psClient.received, [run.hello(1), run.grads(1)]);
    assert.deepEqual(
      w1.violations(),
      forbidden.map((subject) =>
        `nats ${server.url} error: permissions violation: the server ` +
        `refused this user's publish on ${subject} and dropped the message`
      ),
    );
  } finally {
    await Promise.all([psClient.transport.close(), w1.transport.close()]);
    await server.stop();
  }
});

Deno.test("nats auth - a worker receives only its own and broadcast subjects", async () => {
  const { server, run, ps, worker } = await runServer();
  const psClient = await client(server.url, ps);
  const w1 = await client(server.url, worker(1));

  try {
    for (
      const subject of [
        run.welcome(1),
        run.resend(1),
        run.weights,
        run.control,
        run.welcome(0),
        run.gradsAll,
        run.all,
      ]
    ) {
      w1.listen(subject);
    }
    await w1.transport.flush();
    await waitFor(() => w1.violations().length >= 3, 5_000);

    const sent = [
      run.welcome(0),
      run.resend(0),
      run.grads(0),
      run.welcome(1),
      run.resend(1),
      run.weights,
      run.control,
    ];
    for (const subject of sent) psClient.transport.publish(subject, payload);
    await psClient.transport.flush();
    await waitFor(() => w1.received.length >= 4, 5_000);
    await w1.transport.flush();

    assert.deepEqual(w1.received, [
      run.welcome(1),
      run.resend(1),
      run.weights,
      run.control,
    ]);
    assert.deepEqual(
      w1.violations().map((m) =>
        m.replace(/^.*subscription to (\S+) and ended it$/, "$1")
      ),
      [run.welcome(0), run.gradsAll, run.all],
    );
    assert.deepEqual(psClient.violations(), []);
  } finally {
    await Promise.all([psClient.transport.close(), w1.transport.close()]);
    await server.stop();
  }
});

Deno.test("nats auth - the PS can do everything in its run and nothing outside it", async () => {
  const { server, run, ps, worker } = await runServer();
  const psClient = await client(server.url, ps);
  const w0 = await client(server.url, worker(0));
  const other = subjects("dptrain", "r2");

  try {
    psClient.listen(run.helloAll);
    psClient.listen(run.gradsAll);
    psClient.listen(other.all);
    w0.listen(run.weights);
    w0.listen(run.welcome(0));
    await Promise.all([psClient.transport.flush(), w0.transport.flush()]);

    w0.transport.publish(run.hello(0), payload);
    w0.transport.publish(run.grads(0), payload);
    psClient.transport.publish(other.weights, payload);
    psClient.transport.publish(run.welcome(0), payload);
    psClient.transport.publish(run.weights, payload);
    await Promise.all([psClient.transport.flush(), w0.transport.flush()]);
    await waitFor(
      () => psClient.received.length >= 2 && w0.received.length >= 2,
      5_000,
    );
    await waitFor(() => psClient.violations().length >= 2, 5_000);

    assert.deepEqual(psClient.received, [run.hello(0), run.grads(0)]);
    assert.deepEqual(w0.received, [run.welcome(0), run.weights]);
    assert.equal(psClient.violations().length, 2);
    assert.match(
      psClient.violations().join("\n"),
      /subscription to dptrain\.r2\.> and ended it/,
    );
    assert.match(
      psClient.violations().join("\n"),
      /publish on dptrain\.r2\.weights/,
    );
  } finally {
    await Promise.all([psClient.transport.close(), w0.transport.close()]);
    await server.stop();
  }
});

Deno.test("nats auth - token and NKey logins", async (t) => {
  await t.step("token", async () => {
    const server = await startNatsServer({
      authorization: { token: "t0ken-of-the-run" },
    });
    try {
      const ok = await connectNats({
        url: server.url,
        access: { auth: { method: "token", token: "t0ken-of-the-run" } },
      });
      await ok.flush();
      await ok.close();
      await assert.rejects(
        connectNats({
          url: server.url,
          access: { auth: { method: "token", token: "wrong" } },
          maxReconnectAttempts: 0,
        }),
        /with a token: authorization violation: the server refused a token$/,
      );
    } finally {
      await server.stop();
    }
  });

  await t.step("nkey", async () => {
    const user = nkeys.createUser();
    const stranger = nkeys.createUser();
    const run = subjects("dptrain", RUN);
    const server = await startNatsServer({
      authorization: {
        users: [{
          nkey: user.getPublicKey(),
          permissions: { publish: [run.grads(0)], subscribe: [run.weights] },
        }],
      },
    });
    try {
      const ok = await client(server.url, {
        auth: { method: "nkey", seed: user.getSeed() },
      });
      ok.transport.publish(run.weights, payload);
      await ok.transport.flush();
      await waitFor(() => ok.violations().length === 1, 5_000);
      await ok.transport.close();
      await assert.rejects(
        connectNats({
          url: server.url,
          access: { auth: { method: "nkey", seed: stranger.getSeed() } },
          maxReconnectAttempts: 0,
        }),
        new RegExp(
          `authorization violation: the server refused NKey ` +
            `${stranger.getPublicKey()}$`,
        ),
      );
    } finally {
      await server.stop();
    }
  });
});

Deno.test("nats auth - a creds file logs in, and its JWT's permissions apply", async () => {
  const run = subjects("dptrain", RUN);
  const setup = makeOperatorSetup({
    publish: [run.grads(0)],
    subscribe: [run.weights],
  });
  const server = await startNatsServer({ operator: setup.operator });
  const dir = await Deno.makeTempDir({ prefix: "dptrain-auth-test-" });
  const credsFile = join(dir, "worker-0.creds");
  await Deno.writeTextFile(credsFile, setup.creds, { mode: 0o600 });

  try {
    const access = await loadNatsAccess({ credsFile }, { env: {} });
    const psClient = await client(server.url, access);
    psClient.listen(run.weights);
    await psClient.transport.flush();
    psClient.transport.publish(run.weights, payload);
    psClient.transport.publish(run.grads(0), payload);
    await psClient.transport.flush();
    await waitFor(() => psClient.violations().length === 1, 5_000);
    await psClient.transport.close();

    assert.deepEqual(psClient.received, []);
    assert.match(psClient.violations()[0]!, /publish on dptrain\.r1\.weights/);
    await assert.rejects(
      connectNats({ url: server.url, maxReconnectAttempts: 0 }),
      /with no credentials: authorization violation/,
    );
  } finally {
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("nats auth - many refused logins leave no uncaught socket error", async () => {
  // Deno's node:net sometimes reports the server's reset of a refused
  // connection on a socket the nats client has dropped (about 1 in 100);
  // uncaught, it would fail this test or end a worker.
  const { server } = await runServer();
  try {
    for (let i = 0; i < 200; i++) {
      await assert.rejects(
        connectNats({ url: server.url, maxReconnectAttempts: 0 }),
        /authorization violation/,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  } finally {
    await server.stop();
  }
});

Deno.test("nats auth - credentials in the URL are refused before connecting", async () => {
  await assert.rejects(
    connectNats({ url: "nats://ps:secret@127.0.0.1:4222" }),
    (error: unknown) => {
      assert.ok(error instanceof TransportError);
      assert.equal(error.code, "connect_failed");
      assert.match(error.message, /credentials in the URL are not supported/);
      assert.doesNotMatch(error.message, /secret/);
      return true;
    },
  );
});

Deno.test("startNatsServer - its config file is 0600 and gone once it listens", async () => {
  const scratch = await Deno.makeTempDir({ prefix: "dptrain-auth-test-" });
  // A wrapper that records what the real server is given, then becomes it.
  const wrapper = join(scratch, "nats-server");
  await Deno.writeTextFile(
    wrapper,
    `#!/bin/sh
prev=""
for arg in "$@"; do
  if [ "$prev" = "--config" ]; then
    stat -c %a "$arg" > "${scratch}/mode"
    cp "$arg" "${scratch}/copy"
  fi
  prev="$arg"
done
exec nats-server "$@"
`,
    { mode: 0o700 },
  );
  const credentials = generateRunCredentials(RUN, { workers: 1 });
  const server = await startNatsServer({
    binaryPath: wrapper,
    authorization: runAuthorization(credentials, subjects("dptrain", RUN)),
  });

  try {
    assert.equal(
      (await Deno.readTextFile(join(scratch, "mode"))).trim(),
      "600",
    );
    const copy = await Deno.readTextFile(join(scratch, "copy"));
    assert.ok(copy.includes(credentials.workers[0]!.password));
    assert.equal((await Deno.stat(server.dir)).mode! & 0o777, 0o700);
    const left = [];
    for await (const entry of Deno.readDir(server.dir)) left.push(entry.name);
    assert.deepEqual(left.filter((name) => name.endsWith(".conf")), []);
  } finally {
    await server.stop();
    await Deno.remove(scratch, { recursive: true });
  }
  await assert.rejects(Deno.stat(server.dir), Deno.errors.NotFound);
});

Deno.test("generateRunCredentials - distinct random 256-bit passwords per user", () => {
  const a = generateRunCredentials(RUN, { workers: 3 });
  const b = generateRunCredentials(RUN, { workers: 3 });
  const passwords = [a.ps, ...a.workers, b.ps, ...b.workers].map((u) =>
    u.password
  );

  assert.deepEqual(
    [a.ps, ...a.workers].map((u) => u.user),
    ["r1-ps", "r1-worker-0", "r1-worker-1", "r1-worker-2"],
  );
  assert.equal(new Set(passwords).size, passwords.length);
  for (const password of passwords) {
    assert.match(password, /^[A-Za-z0-9_-]{43}$/);
  }
  assert.throws(
    () => generateRunCredentials(RUN, { workers: -1 }),
    RangeError,
  );
  assert.throws(
    () => runAuthorization(a, subjects("dptrain", "r2")),
    /credentials are run r1's/,
  );
});
