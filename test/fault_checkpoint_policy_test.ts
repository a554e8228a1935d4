/**
 * A checkpoint write that fails mid-run because the results folder is full
 * (a real tmpfs, too small for two checkpoints at once): with
 * `onCheckpointError: "stop"` the run stops with a CheckpointWriteError
 * and the previous checkpoint stays intact and loadable; with `continue`
 * the run trains on and ends with the weights of an untroubled run.
 * Needs root and mount(8); skipped with the reason otherwise.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { readCheckpoint } from "../src/train/checkpoint.ts";
import { trainInProcess } from "../src/train/run_job.ts";
import {
  captureLogger,
  createTinyDataset,
  tinyJobConfig,
  trainTiny,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

async function run(cmd: string, args: string[]): Promise<Deno.CommandOutput> {
  return await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" })
    .output();
}

/** Why a tmpfs cannot be mounted here, or null when it can. */
async function mountUnavailable(): Promise<string | null> {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not root";
  const dir = await Deno.makeTempDir();
  try {
    const out = await run("mount", ["-t", "tmpfs", "-o", "size=64k", "t", dir]);
    if (!out.success) return new TextDecoder().decode(out.stderr).trim();
    await run("umount", [dir]);
    return null;
  } catch (error) {
    return String(error);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

const unavailable = await mountUnavailable();
if (unavailable) {
  console.warn(`checkpoint policy test skipped: ${unavailable}`);
}

Deno.test({
  name: "checkpoint - a full disk mid-run: 'stop' keeps the last one intact, " +
    "'continue' trains on",
  ignore: unavailable !== null,
  fn: async () => {
    const dataset = await createTinyDataset();
    const train = { maxSteps: 3, checkpointEverySteps: 1 };
    const mountPoints: string[] = [];

    // A folder with room for the checkpoint of step 1 and the final model,
    // but not for a second checkpoint beside the first.
    const smallFolder = async (bytes: number) => {
      const dir = await Deno.makeTempDir({ dir: join(dataset.root, "..") });
      const size = Math.ceil(bytes / 4096) * 4096;
      const out = await run("mount", [
        "-t",
        "tmpfs",
        "-o",
        `size=${size}`,
        "dptrain-full",
        dir,
      ]);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      mountPoints.push(dir);
      return dir;
    };

    try {
      const clean = await trainTiny(tinyJobConfig(dataset, { train }), {
        runId: "roomy",
      });
      const checkpointBytes =
        (await Deno.stat(join(clean.outDir, "checkpoint.msgpack"))).size;
      const room = Math.floor(checkpointBytes * 1.6);

      const stopDir = await smallFolder(room);
      const stopLog = captureLogger("full-stop");
      const stopped = await trainInProcess({
        config: tinyJobConfig(dataset, {
          train: { ...train, onCheckpointError: "stop" },
        }),
        runId: "full-stop",
        outDir: stopDir,
        backend: "cpu",
        log: stopLog.log,
      }).then(() => null, (error: unknown) => error);

      // The PS stops on the CheckpointWriteError; the workers are told
      // with an abort carrying its message (whichever settles first).
      assert.ok(stopped instanceof Error, String(stopped));
      assert.match(
        stopped.message,
        /Cannot write the checkpoint of step 2 .*ENOSPC.*the previous checkpoint \(step 1\) is intact/,
      );
      assert.ok(
        stopLog.lines.some((l) =>
          /ERROR .*ps.*stopping the run: Cannot write the checkpoint/.test(l)
        ),
        stopLog.lines.join("\n"),
      );
      const kept = await readCheckpoint(join(stopDir, "checkpoint.msgpack"));
      assert.equal(kept.step, 1);
      const names = [...Deno.readDirSync(stopDir)].map((e) => e.name);
      assert.ok(!names.some((n) => n.endsWith(".tmp")), names.join(", "));

      const goDir = await smallFolder(room);
      const goLog = captureLogger("full-continue");
      const summary = await trainInProcess({
        config: tinyJobConfig(dataset, {
          train: { ...train, onCheckpointError: "continue" },
        }),
        runId: "full-continue",
        outDir: goDir,
        backend: "cpu",
        log: goLog.log,
      });
      assert.equal(summary.steps, 3);
      assert.equal(summary.weightsSha256, clean.summary.weightsSha256);
      assert.ok(
        goLog.lines.some((l) =>
          /ERROR .*Cannot write the checkpoint of step 2 .*ENOSPC.*training on/
            .test(l)
        ),
        goLog.lines.join("\n"),
      );
      const last = await readCheckpoint(join(goDir, "checkpoint.msgpack"));
      assert.equal(last.step, 1);
    } finally {
      for (const dir of mountPoints) {
        const out = await run("umount", [dir]);
        if (!out.success) await run("umount", ["-l", dir]);
      }
      await dataset.remove();
    }
  },
});
