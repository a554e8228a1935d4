/**
 * `ps` and `worker` NATS access flags as a user meets them, run as
 * subprocesses against a real nats-server that admits one run's users:
 * the login reaches the server from a file or the environment, a wrong one
 * fails with a clear message that shows no secret, and misused flags are
 * usage errors (exit code 2).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  generateRunCredentials,
  runAuthorization,
  subjects,
} from "../src/transport/mod.ts";
import { startNatsServer } from "./_nats_server.ts";

const MAIN = new URL("../cluster/main.ts", import.meta.url).pathname;
const REPO = new URL("..", import.meta.url).pathname;

function dptrain(args: string[], env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd: REPO,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

async function run(args: string[], env: Record<string, string> = {}) {
  const output = await dptrain(args, env).output();
  return {
    code: output.code,
    stderr: new TextDecoder().decode(output.stderr),
  };
}

Deno.test("worker cli - a wrong password fails naming the user, showing no secret", async () => {
  const credentials = generateRunCredentials("r1", { workers: 1 });
  const server = await startNatsServer({
    authorization: runAuthorization(credentials, subjects("dptrain", "r1")),
  });
  const wrong = `${credentials.workers[0]!.password}-wrong`;

  try {
    const { code, stderr } = await run([
      "worker",
      "--nats",
      server.url,
      "--run-id",
      "r1",
      "--rank",
      "0",
      "--backend",
      "cpu",
    ], {
      DPTRAIN_NATS_USER: credentials.workers[0]!.user,
      DPTRAIN_NATS_PASSWORD: wrong,
    });

    assert.equal(code, 1, stderr);
    assert.match(
      stderr,
      new RegExp(
        "worker: TransportError: Cannot connect to NATS at \\S+ with user " +
          '"r1-worker-0" with a password: authorization violation: the ' +
          'server refused user "r1-worker-0" with a password\n',
      ),
    );
    assert.ok(!stderr.includes(wrong), "the password was printed");
  } finally {
    await server.stop();
  }
});

Deno.test("worker cli - logs in with a password file", async () => {
  const credentials = generateRunCredentials("r1", { workers: 1 });
  const server = await startNatsServer({
    authorization: runAuthorization(credentials, subjects("dptrain", "r1")),
  });
  const dir = await Deno.makeTempDir({ prefix: "dptrain-cli-test-" });
  const passwordFile = join(dir, "worker-0.password");
  await Deno.writeTextFile(
    passwordFile,
    `${credentials.workers[0]!.password}\n`,
    { mode: 0o600 },
  );
  const worker = dptrain([
    "worker",
    "--nats",
    server.url,
    "--run-id",
    "r1",
    "--rank",
    "0",
    "--backend",
    "cpu",
    "--nats-user",
    credentials.workers[0]!.user,
    "--nats-password-file",
    passwordFile,
  ]).spawn();

  // Connected is enough: with no PS, the worker would wait for one.
  const reader = worker.stderr.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    const deadline = Date.now() + 30_000;
    while (!/ connected to nats:/.test(text) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }

    assert.match(text, /nats access: user "r1-worker-0" with a password/);
    assert.match(text, /nats dptrain-r1-worker-0 connected to nats:/);
  } finally {
    worker.kill("SIGKILL");
    await worker.status;
    await reader.cancel();
    await worker.stdout.cancel();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ps, worker, cluster cli - misused access flags are usage errors", async (t) => {
  await t.step("a missing password file", async () => {
    const { code, stderr } = await run([
      "ps",
      "--nats",
      "nats://127.0.0.1:1",
      "--run-id",
      "r1",
      "--backend",
      "cpu",
      "--nats-user",
      "r1-ps",
      "--nats-password-file",
      "/nonexistent/ps.password",
    ]);
    assert.equal(code, 2);
    assert.match(
      stderr,
      /ps: NatsAccessError: Cannot read --nats-password-file \/nonexistent\/ps\.password: /,
    );
  });

  await t.step("access flags on cluster", async () => {
    const { code, stderr } = await run(["cluster", "--nats-user", "x"]);
    assert.equal(code, 2);
    assert.match(stderr, /the --nats-\* access flags are for ps and worker/);
  });

  await t.step("--no-auth on worker", async () => {
    const { code, stderr } = await run([
      "worker",
      "--nats",
      "nats://127.0.0.1:1",
      "--run-id",
      "r1",
      "--rank",
      "0",
      "--no-auth",
    ]);
    assert.equal(code, 2);
    assert.match(stderr, /--no-auth is for cluster and demo/);
  });
});
