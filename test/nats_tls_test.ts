/**
 * NATS over TLS with a real TLS-only nats-server on a free loopback port
 * and a throwaway CA made with openssl: the client connects when it trusts
 * the CA (and presents a client certificate to a server that verifies
 * clients), and fails with an error saying why when it does not.
 */
import assert from "node:assert/strict";
import {
  connectNats,
  generateRunCredentials,
  loadNatsAccess,
  type NatsAccess,
  runAuthorization,
  subjects,
  TransportError,
} from "../src/transport/mod.ts";
import { type NatsServer, startNatsServer } from "./_nats_server.ts";
import { makeTestPki, type TestPki } from "./_openssl_pki.ts";

async function withPki(body: (pki: TestPki) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dptrain-tls-test-" });
  try {
    await body(await makeTestPki(dir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function tlsServer(pki: TestPki, verifyClients: boolean): Promise<NatsServer> {
  return startNatsServer({
    tls: {
      certFile: pki.serverCertFile,
      keyFile: pki.serverKeyFile,
      caFile: pki.caFile,
      verifyClients,
    },
  });
}

/** Publishes one message to itself and waits for it. */
async function roundTrip(url: string, access: NatsAccess): Promise<void> {
  const transport = await connectNats({ url, access });
  try {
    const received = new Promise<Uint8Array>((resolve) =>
      transport.subscribe("tls.check", (data) => resolve(Uint8Array.from(data)))
    );
    await transport.flush();
    transport.publish("tls.check", new Uint8Array([7, 8, 9]));
    assert.deepEqual(await received, new Uint8Array([7, 8, 9]));
  } finally {
    await transport.close();
  }
}

async function connectError(
  url: string,
  access: NatsAccess,
  timeoutMs?: number,
): Promise<TransportError> {
  const error = await connectNats({
    url,
    access,
    maxReconnectAttempts: 0,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  }).then(
    async (transport) => {
      await transport.close();
      return undefined;
    },
    (error: unknown) => error,
  );
  assert.ok(error instanceof TransportError, `connected: ${error}`);
  assert.equal(error.code, "connect_failed");
  return error;
}

Deno.test("nats tls - connects with the CA and a client certificate from files", async () => {
  await withPki(async (pki) => {
    const server = await tlsServer(pki, true);
    try {
      const access = await loadNatsAccess({
        tlsCaFile: pki.caFile,
        tlsCertFile: pki.clientCertFile,
        tlsKeyFile: pki.clientKeyFile,
      }, { env: {} });

      await roundTrip(server.url, access);
      await roundTrip(`nats://localhost:${server.port}`, access);
    } finally {
      await server.stop();
    }
  });
});

Deno.test("nats tls - refuses a server certificate without the CA or with another CA", async () => {
  await withPki(async (pki) => {
    const server = await tlsServer(pki, false);
    const untrusted = new RegExp(
      ": TLS: the server's certificate is not signed by a trusted CA " +
        "\\(.+\\); give the CA that signed it$",
    );
    try {
      // No TLS options: the client upgrades because the server requires
      // TLS, and trusts only the system's roots.
      const none = await connectError(server.url, {});
      assert.match(none.message, untrusted);

      const other = await connectError(server.url, {
        tls: { ca: await Deno.readTextFile(pki.otherCaFile) },
      });
      assert.match(
        other.message,
        /with no credentials, TLS required \(a given CA\): TLS: /,
      );
      assert.match(other.message, untrusted);

      await roundTrip(server.url, {
        tls: { ca: await Deno.readTextFile(pki.caFile) },
      });
    } finally {
      await server.stop();
    }
  });
});

Deno.test("nats tls - a server verifying clients refuses a missing or foreign cert", async () => {
  await withPki(async (pki) => {
    const server = await tlsServer(pki, true);
    const ca = await Deno.readTextFile(pki.caFile);
    try {
      // The server's alert reaches the client or is lost in Deno's
      // node:tls, depending on timing; either way the error says why.
      const none = await connectError(server.url, { tls: { ca } }, 1_000);
      assert.match(
        none.message,
        oneOf(
          "TLS: the server requires a client certificate and none was " +
            "given \\(received fatal alert: \\w+\\)",
          `${TIMED_OUT} one without a client certificate, and none was given`,
        ),
      );

      const wrong = await withOtherClientCert(
        (cert, key) =>
          connectError(server.url, { tls: { ca, cert, key } }, 1_000),
      );
      assert.match(
        wrong.message,
        oneOf(
          "TLS: the server refused this client's certificate " +
            "\\(received fatal alert: \\w+\\)",
          `${TIMED_OUT} one whose certificate no CA it trusts signed`,
        ),
      );
    } finally {
      await server.stop();
    }
  });
});

const TIMED_OUT = "timed out after 1000 ms; a TLS server that verifies " +
  "clients also turns away in this way";

/** Matches a message ending with `: ` and one of `endings` (regexps). */
function oneOf(...endings: string[]): RegExp {
  return new RegExp(`: (${endings.join("|")})$`);
}

/** Runs `body` with a client certificate from another, unrelated CA. */
async function withOtherClientCert<T>(
  body: (cert: string, key: string) => Promise<T>,
): Promise<T> {
  const otherPki = await Deno.makeTempDir({ prefix: "dptrain-tls-test-" });
  try {
    const other = await makeTestPki(otherPki);
    return await body(
      await Deno.readTextFile(other.clientCertFile),
      await Deno.readTextFile(other.clientKeyFile),
    );
  } finally {
    await Deno.remove(otherPki, { recursive: true });
  }
}

Deno.test("nats tls - a client that requires TLS refuses a plain server", async () => {
  const server = await startNatsServer();
  try {
    const error = await connectError(server.url, { tls: {} });
    assert.match(
      error.message,
      new RegExp(
        "TLS required \\(system CAs\\): TLS is required by this client but " +
          "the server does not offer it$",
      ),
    );
  } finally {
    await server.stop();
  }
});

Deno.test("nats tls - TLS and per-run credentials together", async () => {
  await withPki(async (pki) => {
    const run = subjects("dptrain", "tls1");
    const credentials = generateRunCredentials("tls1", { workers: 1 });
    const server = await startNatsServer({
      authorization: runAuthorization(credentials, run),
      tls: { certFile: pki.serverCertFile, keyFile: pki.serverKeyFile },
    });
    const tls = { ca: await Deno.readTextFile(pki.caFile) };
    try {
      const error = await connectError(server.url, { tls });
      assert.match(error.message, /authorization violation/);

      const worker = await connectNats({
        url: server.url,
        access: {
          auth: { method: "password", ...credentials.workers[0]! },
          tls,
        },
      });
      worker.publish(run.grads(0), new Uint8Array([1]));
      await worker.flush();
      await worker.close();
    } finally {
      await server.stop();
    }
  });
});
