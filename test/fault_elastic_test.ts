/**
 * Faults the cluster survives, injected for real on the in-process bus:
 * a worker that dies mid-run, a worker that joins mid-run, a bus that
 * loses a share of every message, and a straggler past the step deadline.
 * Each run must finish, and every example of every epoch must be trained
 * on exactly once (read from the weights streams the PS published and the
 * ranks each step's metrics say contributed).
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { runPsRole, runWorkerRole } from "../src/train/run_job.ts";
import type { RunSummary } from "../src/train/summary.ts";
import {
  InProcessHub,
  subjects,
  type Transport,
} from "../src/transport/mod.ts";
import { FaultyTransport } from "../src/transport/faulty_transport.ts";
import { decodeMessage } from "../src/wire/mod.ts";
import { WorkerDisconnectedError } from "../src/worker/worker.ts";
import type { JobConfig } from "../src/config.ts";
import {
  captureLogger,
  createTinyDataset,
  type TinyDataset,
  tinyJobConfig,
  trainTiny,
} from "./_tiny_dataset.ts";

await tf.setBackend("cpu");

interface StepRecord {
  type: "step";
  epoch: number;
  step: number;
  examples: number;
  ranks: number[];
  lost: { rank: number; reason: string }[];
  attempts: number;
  resends: { weights: number; grads: number };
}

/** What a run left: its summary, step records, logs and assignments. */
interface FaultRun {
  summary: RunSummary;
  steps: StepRecord[];
  lines: string[];
  /** Dataset indices per rank, by `${step}/${attempt}`. */
  assigned: Map<string, number[][]>;
  workerErrors: unknown[];
}

/** A worker's bus, possibly wrapped, and when it starts. */
interface WorkerPlan {
  wrap?: (bus: Transport, runId: string) => Transport;
  /** Start once the PS has published this step's weights. */
  startAtStep?: number;
  /** Close the worker's bus once its gradients for this step are out. */
  dieAfterStep?: number;
}

async function runWithFaults(
  config: JobConfig,
  args: { runId: string; workers: WorkerPlan[]; psWrap?: WorkerPlan["wrap"] },
): Promise<FaultRun> {
  const { runId } = args;
  const hub = new InProcessHub({ maxPayloadBytes: 256 * 1024 });
  const { log, lines } = captureLogger(runId);
  const watcher = hub.connect();
  const s = subjects("dptrain", runId);
  const assigned = new Map<string, number[][]>();
  const startWaiters: { step: number; start: () => void }[] = [];
  const outDir = await Deno.makeTempDir({
    dir: `${config.data.root}/..`,
    prefix: `${runId}_`,
  });

  watcher.subscribe(s.weights, (data) => {
    const chunk = decodeMessage(data, {
      run: runId,
      workers: config.train.workers,
      kinds: ["tensor_chunk"],
    });
    if (chunk.index !== 0) return;
    const indices = (chunk.meta!.indices as number[][]).map((l) => [...l]);
    assigned.set(`${chunk.step}/${chunk.attempt}`, indices);
    for (const waiter of startWaiters.filter((w) => chunk.step >= w.step)) {
      startWaiters.splice(startWaiters.indexOf(waiter), 1);
      waiter.start();
    }
  });

  const buses: Transport[] = [watcher];
  const psBus = args.psWrap?.(hub.connect(), runId) ?? hub.connect();
  buses.push(psBus);
  const workerErrors: unknown[] = [];
  const workerRuns = args.workers.map(async (plan, rank) => {
    const plain = hub.connect();
    const bus = plan.wrap?.(plain, runId) ?? plain;
    buses.push(bus);
    if (plan.dieAfterStep !== undefined) {
      watcher.subscribe(s.grads(rank), (data) => {
        const chunk = decodeMessage(data, {
          run: runId,
          workers: config.train.workers,
        });
        if (chunk.step === plan.dieAfterStep) void plain.close();
      });
    }
    if (plan.startAtStep !== undefined) {
      await new Promise<void>((start) =>
        startWaiters.push({ step: plan.startAtStep!, start })
      );
    }
    try {
      await runWorkerRole({
        config,
        runId,
        rank,
        transport: bus,
        log: log.child(`worker ${rank}`),
        backend: "cpu",
      });
    } catch (error) {
      workerErrors.push(error);
    }
  });

  try {
    const summary = await runPsRole({
      config,
      runId,
      transport: psBus,
      log: log.child("ps"),
      outDir,
      backend: "cpu",
    }) as RunSummary;
    await Promise.all(workerRuns);
    const steps = (await Deno.readTextFile(`${outDir}/metrics.jsonl`))
      .trim().split("\n").map((line) => JSON.parse(line))
      .filter((r) => r.type === "step") as StepRecord[];
    return { summary, steps, lines, assigned, workerErrors };
  } finally {
    for (const bus of buses) await bus.close();
  }
}

/**
 * The dataset indices each epoch trained on, from the contributing ranks
 * of each step's last attempt.
 */
function trainedPerEpoch(run: FaultRun): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const record of run.steps) {
    const indices = run.assigned.get(`${record.step}/${record.attempts - 1}`);
    assert.ok(indices, `no weights seen for step ${record.step}`);
    const list = out.get(record.epoch) ?? [];
    for (const rank of record.ranks) list.push(...indices[rank]);
    out.set(record.epoch, list);
  }
  return out;
}

function assertEveryExampleOnce(run: FaultRun, dataset: TinyDataset) {
  const n = dataset.trainCount;
  const all = Array.from({ length: n }, (_, i) => i);
  for (const [epoch, list] of trainedPerEpoch(run)) {
    assert.deepEqual(
      [...list].sort((a, b) => a - b),
      all,
      `epoch ${epoch} trained on ${list.length} examples, not each of ${n}`,
    );
  }
}

Deno.test("elastic - a worker that dies mid-run is dropped; the survivors finish every example", async () => {
  const dataset = await createTinyDataset();
  const config = tinyJobConfig(dataset, {
    train: { epochs: 2, maxSteps: 0, heartbeatTimeoutSeconds: 1 },
  });
  const tensorsBefore = tf.memory().numTensors;

  try {
    const run = await runWithFaults(config, {
      runId: "dies",
      workers: [{}, { dieAfterStep: 1 }],
    });

    assert.equal(run.summary.epochs, 2);
    assertEveryExampleOnce(run, dataset);
    const lossStep = run.steps.find((r) => r.lost.length > 0)!;
    assert.equal(lossStep.step, 2);
    assert.deepEqual(lossStep.lost, [{ rank: 1, reason: "dead" }]);
    assert.deepEqual(lossStep.ranks, [0]);
    for (const record of run.steps.filter((r) => r.step > 2)) {
      assert.deepEqual(record.ranks, [0], `step ${record.step}`);
    }
    assert.ok(
      run.lines.some((l) =>
        /WARN .*ps step=2\] rank 1 .* is dead: no heartbeat for/.test(l)
      ),
      run.lines.join("\n"),
    );
    const silence = run.lines.join("\n").match(/no heartbeat for ([\d.]+) s/);
    console.log(
      `dead worker: declared dead after ${silence?.[1]} s of silence; ` +
        `${run.steps.length} steps, ${lossStep.attempts} attempt(s) at ` +
        `step ${lossStep.step}`,
    );
    assert.equal(run.workerErrors.length, 1);
    assert.ok(run.workerErrors[0] instanceof WorkerDisconnectedError);
    assert.equal(tf.memory().numTensors, tensorsBefore);
  } finally {
    await dataset.remove();
  }
});

Deno.test("elastic - a worker that joins mid-run takes part from the next step", async () => {
  const dataset = await createTinyDataset();
  // minWorkers 1: the PS starts with rank 0 after stallWarnSeconds.
  const config = tinyJobConfig(dataset, {
    train: { epochs: 2, maxSteps: 0, minWorkers: 1, stallWarnSeconds: 1 },
  });

  try {
    const run = await runWithFaults(config, {
      runId: "joins",
      workers: [{}, { startAtStep: 2 }],
    });

    assert.equal(run.summary.epochs, 2);
    assertEveryExampleOnce(run, dataset);
    assert.deepEqual(run.steps[0].ranks, [0]);
    const firstPair = run.steps.find((r) => r.ranks.length === 2)!;
    assert.ok(firstPair, "rank 1 never took part");
    assert.ok(firstPair.step >= 3, `rank 1 took part at ${firstPair.step}`);
    // From then on both ranks share every step that has an example for
    // each (an epoch's last step may hold a single one).
    for (const record of run.steps.filter((r) => r.step > firstPair.step)) {
      if (record.examples < 2) continue;
      assert.deepEqual(record.ranks, [0, 1], `step ${record.step}`);
    }
    assert.ok(
      run.lines.some((l) => /INFO .*ps.*\] rank 1 joined: backend cpu/.test(l)),
    );
    assert.deepEqual(run.workerErrors, []);
  } finally {
    await dataset.remove();
  }
});

Deno.test("elastic - a bus that loses 15% of all messages changes nothing in the result", async () => {
  const dataset = await createTinyDataset();
  const config = tinyJobConfig(dataset, { train: { maxSteps: 3 } });
  const lossy = (seed: number) => (bus: Transport) =>
    new FaultyTransport(bus, { dropFraction: 0.15, seed });

  try {
    const clean = await trainTiny(config, {
      runId: "clean",
      maxPayloadBytes: 256 * 1024,
    });
    const run = await runWithFaults(config, {
      runId: "lossy",
      psWrap: lossy(11),
      workers: [{ wrap: lossy(12) }, { wrap: lossy(13) }],
    });

    assert.equal(run.summary.steps, 3);
    assert.equal(run.summary.weightsSha256, clean.summary.weightsSha256);
    const resends = run.steps.reduce(
      (sum, r) => sum + r.resends.weights + r.resends.grads,
      0,
    );
    assert.ok(resends > 0, "nothing was lost, so nothing was tested");
    console.log(
      `15% loss: ${resends} chunk re-sends over ${run.steps.length} steps; ` +
        `wall ${run.summary.wallSeconds.toFixed(1)} s`,
    );
    assert.ok(run.steps.every((r) => r.lost.length === 0));
    assert.deepEqual(run.workerErrors, []);
  } finally {
    await dataset.remove();
  }
});

Deno.test("elastic - a straggler past the deadline: 'drop' moves its examples, 'wait' changes nothing", async () => {
  const dataset = await createTinyDataset();
  const slowGrads = (bus: Transport, runId: string) =>
    new FaultyTransport(bus, {
      delayMs: 2500,
      affects: (subject) => subject === subjects("dptrain", runId).grads(1),
    });
  const train = { epochs: 1, maxSteps: 0, stepDeadlineSeconds: 1 };

  try {
    const dropped = await runWithFaults(
      tinyJobConfig(dataset, { train: { ...train, stragglerPolicy: "drop" } }),
      { runId: "drop", workers: [{}, { wrap: slowGrads }] },
    );
    assertEveryExampleOnce(dropped, dataset);
    assert.ok(
      dropped.steps.some((r) =>
        r.lost.some((l) => l.rank === 1 && l.reason === "late")
      ),
    );
    assert.ok(
      dropped.lines.some((l) =>
        /step deadline of 1 s passed: dropping late rank\(s\) 1/.test(l)
      ),
    );

    const clean = await trainTiny(
      tinyJobConfig(dataset, { train: { ...train } }),
      { runId: "on-time", maxPayloadBytes: 256 * 1024 },
    );
    const waited = await runWithFaults(
      tinyJobConfig(dataset, { train: { ...train, stragglerPolicy: "wait" } }),
      { runId: "wait", workers: [{}, { wrap: slowGrads }] },
    );
    assert.equal(waited.summary.weightsSha256, clean.summary.weightsSha256);
    assert.ok(waited.steps.every((r) => r.ranks.length === 2));
    assert.ok(
      waited.lines.some((l) => /step deadline of 1 s passed; waiting/.test(l)),
    );
  } finally {
    await dataset.remove();
  }
});
