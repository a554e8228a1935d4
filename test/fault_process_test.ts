/**
 * Faults injected for real into a cluster of processes over a real
 * nats-server: a worker killed with SIGKILL, the PS killed with SIGKILL
 * and restarted with `--resume`, nats-server killed and restarted on the
 * same port. Each run must finish; where no rank left a step, the final
 * weights must equal those of an uninterrupted run bit for bit.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import type { JobConfig } from "../src/config.ts";
import { startNatsServer } from "./_nats_server.ts";
import {
  createTinyDataset,
  type TinyDataset,
  tinyJobConfig,
  trainTiny,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

const MAIN = new URL("../cluster/main.ts", import.meta.url).pathname;
const REPO = new URL("..", import.meta.url).pathname;

/** A role process whose output is kept for the assertions. */
interface Role {
  name: string;
  child: Deno.ChildProcess;
  output: Promise<string>;
  status: Promise<Deno.CommandStatus>;
}

function spawnRole(name: string, args: string[]): Role {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd: REPO,
    env: { DPTRAIN_LOG: "debug" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    let text = "";
    for await (const part of stream.pipeThrough(new TextDecoderStream())) {
      text += part;
    }
    return text;
  };
  const output = Promise.all([collect(child.stdout), collect(child.stderr)])
    .then(([out, err]) => out + err);
  return { name, child, output, status: child.status };
}

/** Resolves once `metrics.jsonl` in `outDir` has a step record >= `step`. */
async function untilStep(outDir: string, step: number, roles: Role[]) {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const records = await readMetrics(outDir).catch(() => []);
    if (records.some((r) => r.type === "step" && r.step >= step)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const logs = await Promise.all(roles.map(async (r) => {
    r.child.kill("SIGKILL");
    return `--- ${r.name}\n${await r.output}`;
  }));
  throw new Error(`step ${step} never came:\n${logs.join("\n")}`);
}

// deno-lint-ignore no-explicit-any
async function readMetrics(outDir: string): Promise<any[]> {
  const text = await Deno.readTextFile(join(outDir, "metrics.jsonl"));
  return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

async function writeConfig(config: JobConfig, dir: string): Promise<string> {
  const path = join(dir, "job.json");
  await Deno.writeTextFile(path, JSON.stringify(config));
  return path;
}

/** The common flags of a role. */
function roleArgs(args: {
  url: string;
  runId: string;
  configPath: string;
}): string[] {
  return [
    "--nats",
    args.url,
    "--run-id",
    args.runId,
    "--config",
    args.configPath,
  ];
}

async function expectExit(role: Role, code: number): Promise<string> {
  const [status, output] = await Promise.all([role.status, role.output]);
  assert.equal(
    status.code,
    code,
    `${role.name} exited ${status.code}:\n${output}`,
  );
  return output;
}

async function withJob(
  test: (job: {
    dataset: TinyDataset;
    config: JobConfig;
    configPath: string;
    outDir: string;
  }) => Promise<void>,
  train: Record<string, unknown>,
) {
  const dataset = await createTinyDataset();
  try {
    const config = tinyJobConfig(dataset, { train });
    const outDir = await Deno.makeTempDir({ dir: join(dataset.root, "..") });
    const configPath = await writeConfig(config, outDir);
    await test({ dataset, config, configPath, outDir });
  } finally {
    await dataset.remove();
  }
}

Deno.test("processes - SIGKILL of a worker mid-run: the PS finishes with the survivor", async () => {
  await withJob(async ({ dataset, configPath, outDir }) => {
    const server = await startNatsServer({ maxPayloadBytes: 256 * 1024 });
    const common = roleArgs({ url: server.url, runId: "kill-w", configPath });
    try {
      const ps = spawnRole("ps", ["ps", ...common, "--out", outDir]);
      const workers = [0, 1].map((rank) =>
        spawnRole(`worker ${rank}`, ["worker", ...common, "--rank", `${rank}`])
      );
      await untilStep(outDir, 1, [ps, ...workers]);
      const killedAt = performance.now();
      workers[1].child.kill("SIGKILL");

      const psLog = await expectExit(ps, 0);
      await expectExit(workers[0], 0);
      assert.notEqual((await workers[1].status).code, 0);

      const steps = (await readMetrics(outDir)).filter((r) =>
        r.type === "step"
      );
      const lostAt = steps.find((r) => r.lost.length > 0);
      assert.ok(lostAt, psLog);
      assert.deepEqual(lostAt.lost, [{ rank: 1, reason: "dead" }]);
      // Each epoch still saw every example once (example counts add up;
      // fault_elastic_test.ts checks the very indices).
      for (const epoch of [0, 1]) {
        const seen = steps.filter((r) => r.epoch === epoch)
          .reduce((sum, r) => sum + r.examples, 0);
        assert.equal(seen, dataset.trainCount, `epoch ${epoch}`);
      }
      const dead = psLog.match(
        /rank 1 .* is dead: no heartbeat for ([\d.]+) s/,
      );
      assert.ok(dead, psLog);
      const summary = JSON.parse(
        await Deno.readTextFile(join(outDir, "summary.json")),
      );
      assert.equal(summary.epochs, 2);
      console.log(
        `worker killed; detected after ${dead[1]} s of silence; run ended ` +
          `${
            ((performance.now() - killedAt) / 1000).toFixed(1)
          } s after the kill`,
      );
    } finally {
      await server.stop();
    }
  }, { epochs: 2, maxSteps: 0, heartbeatTimeoutSeconds: 2 });
});

Deno.test("processes - SIGKILL of the PS, restart with --resume: same weights as never stopped", async () => {
  await withJob(async ({ config, configPath, outDir }) => {
    const whole = await trainTiny(config, {
      runId: "whole",
      maxPayloadBytes: 256 * 1024,
    });
    const server = await startNatsServer({ maxPayloadBytes: 256 * 1024 });
    const common = roleArgs({ url: server.url, runId: "kill-ps", configPath });
    try {
      const first = spawnRole("ps", ["ps", ...common, "--out", outDir]);
      const workers = [0, 1].map((rank) =>
        spawnRole(`worker ${rank}`, ["worker", ...common, "--rank", `${rank}`])
      );
      await untilStep(outDir, 2, [first, ...workers]);
      first.child.kill("SIGKILL");
      await first.status;
      const killedAt = performance.now();

      const second = spawnRole("ps", [
        "ps",
        ...common,
        "--out",
        outDir,
        "--resume",
        join(outDir, "checkpoint.msgpack"),
      ]);
      const psLog = await expectExit(second, 0);
      const workerLogs = await Promise.all(
        workers.map((w) => expectExit(w, 0)),
      );

      const summary = JSON.parse(
        await Deno.readTextFile(join(outDir, "summary.json")),
      );
      assert.equal(summary.steps, whole.summary.steps);
      assert.equal(summary.weightsSha256, whole.summary.weightsSha256);
      assert.match(psLog, /resuming from .* at step [1-9]/);
      for (const log of workerLogs) {
        assert.match(log, /welcomed this rank again \(it restarted\)/);
      }
      console.log(
        `PS restarted; run ended ${
          ((performance.now() - killedAt) / 1000).toFixed(1)
        } s after the restart`,
      );
    } finally {
      await server.stop();
    }
  }, { epochs: 2, maxSteps: 0, checkpointEverySteps: 1 });
});

Deno.test("processes - nats-server killed and restarted mid-run: same weights as never stopped", async () => {
  await withJob(async ({ config, configPath, outDir }) => {
    const whole = await trainTiny(config, {
      runId: "whole",
      maxPayloadBytes: 256 * 1024,
    });
    let server = await startNatsServer({ maxPayloadBytes: 256 * 1024 });
    const port = server.port;
    const common = roleArgs({ url: server.url, runId: "nats-rs", configPath });
    try {
      const ps = spawnRole("ps", ["ps", ...common, "--out", outDir]);
      const workers = [0, 1].map((rank) =>
        spawnRole(`worker ${rank}`, ["worker", ...common, "--rank", `${rank}`])
      );
      await untilStep(outDir, 1, [ps, ...workers]);
      Deno.kill(server.pid, "SIGKILL");
      await server.stop();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      server = await startNatsServer({ maxPayloadBytes: 256 * 1024, port });
      const restartedAt = performance.now();

      const psLog = await expectExit(ps, 0);
      await Promise.all(workers.map((w) => expectExit(w, 0)));
      const summary = JSON.parse(
        await Deno.readTextFile(join(outDir, "summary.json")),
      );
      assert.equal(summary.steps, whole.summary.steps);
      assert.equal(summary.weightsSha256, whole.summary.weightsSha256);
      assert.match(psLog, /nats \S+-ps reconnect: /);
      const steps = (await readMetrics(outDir)).filter((r) =>
        r.type === "step"
      );
      assert.ok(steps.every((r) => r.lost.length === 0 && r.attempts === 1));
      console.log(
        `nats-server down ~1.5 s; run ended ${
          ((performance.now() - restartedAt) / 1000).toFixed(1)
        } s after the restart; ${
          steps.reduce((n, r) => n + r.resends.weights + r.resends.grads, 0)
        } chunk re-sends; no step lost or repeated`,
      );
    } finally {
      await server.stop();
    }
  }, { epochs: 2, maxSteps: 0 });
});
