/**
 * `nats-users`: the files it writes are private, are not overwritten, and
 * work: a real nats-server parses the users file through `include`, and
 * the logins it describes get in with their password files.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { writeNatsUsers } from "../cluster/nats_users.ts";
import { connectNats, loadNatsAccess } from "../src/transport/mod.ts";
import { startNatsServer } from "./_nats_server.ts";

Deno.test("writeNatsUsers - private files that nats-server includes and that log in", async () => {
  const dir = await Deno.makeTempDir({ prefix: "dptrain-users-test-" });
  const outDir = join(dir, "secrets");

  try {
    const written = await writeNatsUsers({ runId: "exp1", workers: 2, outDir });

    assert.deepEqual(Object.keys(written.passwordFiles), [
      "ps",
      "worker-0",
      "worker-1",
    ]);
    assert.equal((await Deno.stat(outDir)).mode! & 0o777, 0o700);
    for (
      const file of [written.usersFile, ...Object.values(written.passwordFiles)]
    ) {
      assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, file);
    }
    assert.match(
      written.instructions,
      new RegExp(
        "deno task worker --rank 1 --nats URL --run-id exp1 --nats-user " +
          "exp1-worker-1 --nats-password-file \\S+worker-1\\.password",
      ),
    );

    // nats-server resolves `include` relative to its config file.
    await Deno.writeTextFile(
      join(outDir, "server.conf"),
      "port: -1\ninclude nats-users.conf\n",
    );
    const check = await new Deno.Command("nats-server", {
      args: ["-t", "-c", join(outDir, "server.conf")],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(check.code, 0, new TextDecoder().decode(check.stderr));

    const server = await startNatsServer({
      authorization: written.authorization,
    });
    try {
      const access = await loadNatsAccess({
        user: "exp1-worker-1",
        passwordFile: written.passwordFiles["worker-1"],
      }, { env: {} });
      const transport = await connectNats({ url: server.url, access });
      await transport.flush();
      await transport.close();
    } finally {
      await server.stop();
    }

    await assert.rejects(
      writeNatsUsers({ runId: "exp1", workers: 2, outDir }),
      /nats-users\.conf already exists; remove it or choose another --out/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
