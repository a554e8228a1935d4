/**
 * Children die with their launcher, even when it is SIGKILLed: a child
 * watching its launcher pipe (launcher_pipe.ts) exits when the pipe
 * closes, and nats-server started with `exitWithParent` gets SIGTERM from
 * the kernel (Linux, through setpriv).
 */
import assert from "node:assert/strict";
import { watchLauncherPipe } from "../cluster/launcher_pipe.ts";

const PIPE_MODULE = new URL("../cluster/launcher_pipe.ts", import.meta.url);
const SERVER_MODULE = new URL(
  "../src/transport/nats_server.ts",
  import.meta.url,
);

// The child: says it is ready, and says "gone" when its pipe closes.
const CHILD = `
import { watchLauncherPipe } from "${PIPE_MODULE}";
watchLauncherPipe((why) => {
  console.log("gone: " + why);
  Deno.exit(0);
});
console.log("ready");
setInterval(() => {}, 1_000);
`;

// A stand-in launcher: a nats-server and one child, their pids, then idle.
const LAUNCHER = `
import { startNatsServer } from "${SERVER_MODULE}";
const server = await startNatsServer({ exitWithParent: true });
const child = new Deno.Command(Deno.execPath(), {
  args: ["eval", ${JSON.stringify(CHILD)}],
  stdin: "piped",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();
console.log(JSON.stringify({
  server: server.pid,
  serverDir: server.dir,
  serverDies: server.exitsWithParent,
  child: child.pid,
}));
setInterval(() => {}, 1_000);
`;

/** Reads `stream` line by line; `undefined` at its end. */
function lineReader(
  stream: ReadableStream<Uint8Array>,
): () => Promise<string | undefined> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  return async () => {
    while (!buffered.includes("\n")) {
      const { value, done } = await withTimeout(reader.read(), 10_000);
      if (done) return buffered === "" ? undefined : buffered;
      buffered += value;
    }
    const end = buffered.indexOf("\n");
    const line = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    return line;
  };
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no output in ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether `pid` is running (a zombie counts as gone). */
async function isRunning(pid: number): Promise<boolean> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The state follows the parenthesised command name.
    return !/\) Z /.test(stat);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function waitUntilGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!await isRunning(pid)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

Deno.test("watchLauncherPipe - reports the end of its input once", async () => {
  const chunks = [new Uint8Array([1, 2]), new Uint8Array([3])];
  const reasons: string[] = [];
  const gone = new Promise<void>((resolve) =>
    watchLauncherPipe((why) => {
      reasons.push(why);
      resolve();
    }, {
      read(buffer) {
        const chunk = chunks.shift();
        if (chunk === undefined) return Promise.resolve(null);
        buffer.set(chunk);
        return Promise.resolve(chunk.length);
      },
    })
  );

  await gone;
  assert.deepEqual(reasons, ["its pipe on stdin closed"]);
});

Deno.test({
  name: "launcher SIGKILLed - its child and its nats-server exit too",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const launcher = new Deno.Command(Deno.execPath(), {
      args: ["eval", LAUNCHER],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const next = lineReader(launcher.stdout);

    let pids: {
      server: number;
      serverDir: string;
      serverDies: boolean;
      child: number;
    };
    try {
      pids = JSON.parse(await next() ?? "null");
      assert.equal(await next(), "ready");
      assert.ok(await isRunning(pids.child));
      assert.ok(await isRunning(pids.server));
      assert.equal(pids.serverDies, true, "setpriv missing");
    } finally {
      launcher.kill("SIGKILL");
      await launcher.status;
    }

    try {
      assert.equal(await next(), "gone: its pipe on stdin closed");
      assert.ok(await waitUntilGone(pids.child, 5_000), "the child lives");
      assert.ok(await waitUntilGone(pids.server, 5_000), "the server lives");
      // The child held the stdout pipe too; it ends now.
      assert.equal(await next(), undefined);
    } finally {
      // When the test fails, leave no process behind.
      for (const pid of [pids.child, pids.server]) {
        if (await isRunning(pid)) Deno.kill(pid, "SIGKILL");
      }
      // The killed launcher could not remove its server's folder.
      await Deno.remove(pids.serverDir, { recursive: true });
    }
  },
});
