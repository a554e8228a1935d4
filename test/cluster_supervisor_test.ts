/**
 * The launcher's child policy with real processes (`sh`): a worker dying
 * does not end the run, the PS's exit does (with its code), late workers
 * are stopped after a grace period, and an abort stops everything.
 */
import assert from "node:assert/strict";
import { createLogger } from "../src/log.ts";
import { superviseRun } from "../cluster/supervisor.ts";

function sh(script: string): Deno.ChildProcess {
  return new Deno.Command("sh", {
    args: ["-c", script],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

function capture(): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const log = createLogger({ runId: "t", role: "launcher" }, {
    level: "info",
    sink: (line) => lines.push(line),
  });
  return { lines, log };
}

Deno.test("superviseRun - a failing worker is logged; the run ends with the PS", async () => {
  const { lines, log } = capture();
  const ps = sh("sleep 0.6; exit 3");
  const steady = sh("exit 0");
  const crashing = sh("sleep 0.3; exit 7");

  const started = Date.now();
  const code = await superviseRun({
    ps,
    workers: [{ rank: 0, process: crashing }, { rank: 1, process: steady }],
    log,
  });

  assert.equal(code, 3);
  assert.ok(Date.now() - started >= 500, "returned before the PS ended");
  const text = lines.join("\n");
  assert.match(
    text,
    new RegExp(
      `WARN .*worker 0 \\(pid ${crashing.pid}\\) exited with code 7; ` +
        "the run goes on without it",
    ),
  );
  assert.match(text, new RegExp(`worker 1 \\(pid ${steady.pid}\\) finished`));
  assert.match(text, /no worker is running; the run goes on until the PS/);
  assert.match(text, new RegExp(`ps \\(pid ${ps.pid}\\) exited with code 3`));
  assert.doesNotMatch(text, /stopping the cluster/);
});

Deno.test("superviseRun - a run whose children all succeed logs no warning", async () => {
  const { lines, log } = capture();
  const code = await superviseRun({
    ps: sh("sleep 0.2"),
    workers: [{ rank: 0, process: sh("exit 0") }],
    log,
  });

  assert.equal(code, 0);
  assert.doesNotMatch(lines.join("\n"), /WARN|ERROR/);
});

Deno.test("superviseRun - a worker killed by a signal is named with the signal", async () => {
  const { lines, log } = capture();
  const ps = sh("sleep 0.5");
  const worker = sh("sleep 30");
  setTimeout(() => worker.kill("SIGKILL"), 100);

  const code = await superviseRun({
    ps,
    workers: [{ rank: 4, process: worker }],
    log,
  });

  assert.equal(code, 0);
  assert.match(
    lines.join("\n"),
    new RegExp(
      `worker 4 \\(pid ${worker.pid}\\) exited with code 137 \\(SIGKILL\\)`,
    ),
  );
});

Deno.test("superviseRun - workers still running after the PS ends are stopped", async () => {
  const { lines, log } = capture();
  const ps = sh("exit 0");
  const lingering = sh("exec sleep 30");

  const started = Date.now();
  const code = await superviseRun({
    ps,
    workers: [{ rank: 0, process: lingering }],
    log,
    workerGraceMs: 200,
  });

  assert.equal(code, 0);
  assert.ok(Date.now() - started < 5_000);
  assert.equal((await lingering.status).signal, "SIGTERM");
  assert.match(
    lines.join("\n"),
    /stopping the cluster: workers still running after the PS ended/,
  );
});

Deno.test("superviseRun - an abort stops every child, SIGKILL for the stubborn", async () => {
  const { lines, log } = capture();
  const ps = sh("exec sleep 30");
  // Ignores SIGTERM; each sleep is short so that nothing outlives the test.
  const stubborn = sh('trap "" TERM; while :; do sleep 0.05; done');
  const abort = new AbortController();
  setTimeout(() => abort.abort(), 200);

  const code = await superviseRun({
    ps,
    workers: [{ rank: 0, process: stubborn }],
    log,
    signal: abort.signal,
    killAfterMs: 300,
  });

  assert.equal(code, 143);
  assert.equal((await ps.status).signal, "SIGTERM");
  assert.equal((await stubborn.status).signal, "SIGKILL");
  const text = lines.join("\n");
  assert.match(text, /stopping the cluster: interrupted by a signal/);
  assert.doesNotMatch(text, /WARN/);
  // Let the last orphaned `sleep 0.05` finish.
  await new Promise((resolve) => setTimeout(resolve, 100));
});
