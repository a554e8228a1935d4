/**
 * Loading NATS access for `ps` and `worker` (files, environment variables,
 * conflicts, malformed files) and writing nats-server config values that
 * cannot be written safely (quotes, `$`, bad NKeys).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { nkeys } from "nats";
import {
  connectNats,
  describeNatsAccess,
  loadNatsAccess,
  NatsAccessError,
  type NatsAccessSources,
  renderNatsServerConfig,
} from "../src/transport/mod.ts";
import { startNatsServer } from "./_nats_server.ts";

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "dptrain-access-test-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function write(
  dir: string,
  name: string,
  text: string,
  mode = 0o600,
): Promise<string> {
  const path = join(dir, name);
  await Deno.writeTextFile(path, text, { mode });
  await Deno.chmod(path, mode);
  return path;
}

async function accessError(
  sources: NatsAccessSources,
  env: Record<string, string> = {},
): Promise<NatsAccessError> {
  const error = await loadNatsAccess(sources, { env }).then(
    () => undefined,
    (error: unknown) => error,
  );
  assert.ok(error instanceof NatsAccessError, `no error: ${error}`);
  return error;
}

Deno.test("loadNatsAccess - nothing given means no credentials and no TLS", async () => {
  assert.deepEqual(await loadNatsAccess({}, { env: {} }), {});
});

Deno.test("loadNatsAccess - user and password from the environment or a file", async () => {
  await withDir(async (dir) => {
    const env = { DPTRAIN_NATS_USER: "u0", DPTRAIN_NATS_PASSWORD: "p-env" };
    assert.deepEqual(await loadNatsAccess({}, { env }), {
      auth: { method: "password", user: "u0", password: "p-env" },
    });

    // A flag replaces its variable; a file's trailing newline is dropped.
    const file = await write(dir, "pw", "p file\r\n");
    assert.deepEqual(
      await loadNatsAccess({ user: "u1", passwordFile: file }, { env }),
      { auth: { method: "password", user: "u1", password: "p file" } },
    );
  });
});

Deno.test("loadNatsAccess - a secret file other users can read is warned about", async () => {
  await withDir(async (dir) => {
    const warnings: string[] = [];
    const open = await write(dir, "token", "t0k\n", 0o644);
    const access = await loadNatsAccess({ tokenFile: open }, {
      env: {},
      warn: (message) => warnings.push(message),
    });

    assert.deepEqual(access, { auth: { method: "token", token: "t0k" } });
    assert.deepEqual(warnings, [
      `--nats-token-file ${open} is readable by other users (mode 644); ` +
      "chmod 600 it",
    ]);

    warnings.length = 0;
    const closed = await write(dir, "token2", "t0k\n", 0o600);
    await loadNatsAccess({ tokenFile: closed }, {
      env: {},
      warn: (message) => warnings.push(message),
    });
    assert.deepEqual(warnings, []);
  });
});

Deno.test("loadNatsAccess - an NKey seed from a file or the environment", async () => {
  await withDir(async (dir) => {
    const user = nkeys.createUser();
    const seed = new TextDecoder().decode(user.getSeed());
    const file = await write(dir, "user.nk", `${seed}\n`);

    for (
      const access of [
        await loadNatsAccess({ nkeyFile: file }, { env: {} }),
        await loadNatsAccess({}, { env: { DPTRAIN_NATS_NKEY_SEED: seed } }),
      ]
    ) {
      assert.equal(access.auth?.method, "nkey");
      assert.equal(describeNatsAccess(access), `NKey ${user.getPublicKey()}`);
    }

    const account = new TextDecoder().decode(nkeys.createAccount().getSeed());
    const error = await accessError({
      nkeyFile: await write(dir, "account.nk", account),
    });
    assert.equal(error.source, "--nats-nkey-file");
    assert.match(error.message, /is not an NKey user seed/);
    assert.doesNotMatch(error.message, new RegExp(account));
  });
});

Deno.test("loadNatsAccess - a creds file must hold a JWT and a seed", async () => {
  await withDir(async (dir) => {
    const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
    const creds = await write(
      dir,
      "user.creds",
      "-----BEGIN NATS USER JWT-----\neyJhbGciOi.eyJqdGkiOi.c2ln\n" +
        "------END NATS USER JWT------\n\n" +
        `-----BEGIN USER NKEY SEED-----\n${seed}\n` +
        "------END USER NKEY SEED------\n",
    );
    const access = await loadNatsAccess({ credsFile: creds }, { env: {} });
    assert.equal(access.auth?.method, "creds");

    const error = await accessError({
      credsFile: await write(dir, "bad.creds", "not creds\n"),
    });
    assert.equal(error.source, "--nats-creds-file");
    assert.match(error.message, /is not a creds file/);
  });
});

Deno.test("loadNatsAccess - two login methods, or half of one, are refused", async () => {
  await withDir(async (dir) => {
    const token = await write(dir, "token", "t");

    const both = await accessError({ user: "u", tokenFile: token }, {
      DPTRAIN_NATS_PASSWORD: "p",
    });
    assert.equal(
      both.message,
      "Cannot choose how to log in to NATS: --nats-user and " +
        "--nats-token-file give different methods; keep one",
    );

    const envBoth = await accessError({}, {
      DPTRAIN_NATS_TOKEN: "t",
      DPTRAIN_NATS_NKEY_SEED: "SU",
    });
    assert.equal(envBoth.source, "DPTRAIN_NATS_NKEY_SEED");

    const noUser = await accessError({}, { DPTRAIN_NATS_PASSWORD: "p" });
    assert.match(noUser.message, /needs a user name: --nats-user or/);

    const noPassword = await accessError({ user: "u" });
    assert.equal(noPassword.source, "--nats-user");
    assert.match(noPassword.message, /no password; give --nats-password-file/);
  });
});

Deno.test("loadNatsAccess - missing, empty and non-PEM files name their flag", async () => {
  await withDir(async (dir) => {
    const missing = await accessError({
      passwordFile: join(dir, "nope"),
      user: "u",
    });
    assert.equal(missing.source, "--nats-password-file");
    assert.match(missing.message, /^Cannot read --nats-password-file .*nope: /);

    const empty = await accessError({ tokenFile: await write(dir, "e", "\n") });
    assert.match(
      empty.message,
      /^Cannot use --nats-token-file .* it is empty$/,
    );

    const notPem = await accessError({
      tlsCaFile: await write(dir, "ca.txt", "hello"),
    });
    assert.equal(notPem.source, "--nats-tls-ca");
    assert.match(notPem.message, /is not a PEM file/);

    const halfPair = await accessError({
      tlsCertFile: await write(dir, "c.pem", "-----BEGIN CERTIFICATE-----"),
    });
    assert.equal(
      halfPair.message,
      "Cannot set up TLS for NATS: --nats-tls-cert needs --nats-tls-key too",
    );
  });
});

Deno.test("loadNatsAccess - --nats-tls alone requires TLS with the system's CAs", async () => {
  const access = await loadNatsAccess({ tls: true }, { env: {} });

  assert.deepEqual(access, { tls: {} });
  assert.equal(
    describeNatsAccess(access),
    "no credentials, TLS required (system CAs)",
  );
});

Deno.test("describeNatsAccess - never shows a secret", () => {
  const text = describeNatsAccess({
    auth: { method: "password", user: "w0", password: "hunter2" },
    tls: { ca: "CA PEM", cert: "CERT PEM", key: "KEY PEM" },
  });

  assert.equal(
    text,
    'user "w0" with a password, TLS required (a given CA, a client ' +
      "certificate)",
  );
});

Deno.test("renderNatsServerConfig - refuses values it cannot write as literals", () => {
  const user = (password: string) => ({
    authorization: { users: [{ user: "u", password }] },
  });

  for (const bad of ['a"b', "a$b", "a\\b", "a b", "a\nb", ""]) {
    assert.throws(
      () => renderNatsServerConfig(user(bad)),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message.includes("authorization.users[0].password") &&
        (bad === "" || !error.message.includes(bad)),
    );
  }
  assert.throws(
    () =>
      renderNatsServerConfig({
        authorization: { users: [{ nkey: "UABC" }] },
      }),
    /authorization\.users\[0\]\.nkey must be a public user NKey/,
  );
  assert.throws(
    () =>
      renderNatsServerConfig({
        tls: { certFile: "c", keyFile: "k", verifyClients: true },
      }),
    /tls\.verifyClients needs tls\.caFile/,
  );
  assert.throws(
    () => renderNatsServerConfig({ authorization: { users: [] } }),
    /authorization\.users is empty/,
  );
  assert.equal(renderNatsServerConfig({}), undefined);
});

Deno.test("renderNatsServerConfig - an empty allow list denies everything", async () => {
  const server = await startNatsServer({
    authorization: {
      users: [{
        user: "mute",
        password: "pw",
        permissions: { publish: [], subscribe: ["x"] },
      }],
    },
  });
  const log: string[] = [];
  const transport = await connectNats({
    url: server.url,
    access: { auth: { method: "password", user: "mute", password: "pw" } },
    log: (entry) => log.push(entry.message),
  });

  try {
    const received: string[] = [];
    transport.subscribe("x", (_data, subject) => received.push(subject));
    transport.publish("x", new Uint8Array([1]));
    await transport.flush();
    const deadline = Date.now() + 5_000;
    while (
      !log.some((m) => m.includes("publish on x")) && Date.now() < deadline
    ) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }

    assert.deepEqual(received, []);
    assert.ok(log.some((m) => m.includes("refused this user's publish on x")));
  } finally {
    await transport.close();
    await server.stop();
  }
});
