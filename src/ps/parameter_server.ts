/**
 * The parameter server: the authoritative copy of the weights, the
 * optimizer's moments and the step counter. It runs the synchronous step of
 * DESIGN.md:
 *
 * 1. Publish weights version `v` with the step's metadata (epoch, schedule
 *    rate, input scaling, the dataset indices of every rank).
 * 2. Wait for every rank's gradient stream for `v`. A silent rank gets the
 *    weights again every `stallWarnSeconds` (NATS core delivers at most
 *    once) and a warning naming it; after `stallAbortSeconds` the run stops
 *    with a checkpoint instead of hanging or training on a partial batch.
 * 3. Sum the gradients in rank order, divide by the example count, apply
 *    AdamW, average the BatchNorm statistics, and go to `v + 1`.
 *
 * The result of a step depends only on version `v` and the set of
 * contributions, never on arrival order or the transport.
 *
 * @module
 */
import {
  encodeMessage,
  encodeTensorStream,
  PS_RANK,
  RejectionCounter,
  type RejectionEvent,
} from "../wire/mod.ts";
import { subjects, type Transport } from "../transport/mod.ts";
import { FlatAdamW, parseOptimizerConfig } from "../optim/mod.ts";
import { makeBatch, rankBatchPositions } from "../data/mod.ts";
import type { InputScaling } from "../data/mod.ts";
import type { Logger } from "../log.ts";
import type { JobSetup } from "../train/job.ts";
import { splitFlat, writeFlat } from "../train/layout.ts";
import { evaluate, type Evaluation } from "../train/evaluate.ts";
import { type Checkpoint, writeCheckpoint } from "../train/checkpoint.ts";
import { MetricsLog } from "../train/metrics_log.ts";
import { aggregate } from "./aggregate.ts";
import { GradientCollector, type PendingRank } from "./collector.ts";
import { Membership } from "./membership.ts";
import { encodeStepMeta } from "../protocol/step_meta.ts";
import { float32Sha256 } from "./weights_hash.ts";

/** A progress line at most this often within an epoch. */
const PROGRESS_EVERY_MS = 15_000;

/** Options of {@linkcode runParameterServer}. */
export interface ParameterServerOptions {
  setup: JobSetup;
  runId: string;
  transport: Transport;
  /** The initial flat weights (pretrained backbone, seeded head). */
  initialWeights: Float32Array;
  inputScaling: InputScaling;
  log: Logger;
  /** Results folder: metrics.jsonl, checkpoint.msgpack. */
  outDir: string;
  /** Subject prefix. @default "dptrain" */
  subjectPrefix?: string;
  /** Continue from this checkpoint. */
  resume?: Checkpoint;
  /** Evaluate on the validation split at each epoch end. @default true */
  evaluateEachEpoch?: boolean;
}

/** How the run ended, for `summary.json`. */
export interface PsResult {
  weights: Float32Array;
  weightsSha256: string;
  steps: number;
  skippedSteps: number;
  epochs: number;
  evaluation: Evaluation | null;
  members: { rank: number; backend: string; device: string | null }[];
  rejections: Record<string, number>;
  wallSeconds: number;
  imagesPerSecond: number;
}

/** Runs the job to its last step; see the module doc. */
export async function runParameterServer(
  options: ParameterServerOptions,
): Promise<PsResult> {
  const { setup, runId, transport, log } = options;
  const { config, layout, stepsPerEpoch, totalSteps } = setup;
  const { workers, perRankBatch, seed } = config.train;
  const runSubjects = subjects(options.subjectPrefix ?? "dptrain", runId);

  const weights = new Float32Array(
    options.resume?.weights ?? options.initialWeights,
  );
  const optimizer = new FlatAdamW({
    variables: layout.entries
      .filter((e) => e.role === "trainable")
      .map((e) => ({ name: e.name, shape: e.shape })),
    config: parseOptimizerConfig(config.optimizer, "optimizer"),
    workers,
    stepsPerEpoch,
    totalSteps: stepsPerEpoch * config.train.epochs,
  });
  if (options.resume) optimizer.setState(options.resume.optimizer as never);

  let step = options.resume?.step ?? 0;
  const rejections = new RejectionCounter({
    log: (event) => logRejection(log, event),
  });
  const membership = new Membership({
    runId,
    workers,
    fingerprint: setup.fingerprint,
    transport,
    subjects: runSubjects,
    rejections,
    log,
    startStep: () => step,
  });
  const collector = new GradientCollector({
    runId,
    workers,
    perRankBatch,
    streamLength: layout.totalSize,
    transport,
    subjects: runSubjects,
    rejections,
  });
  const metrics = await MetricsLog.create(
    `${options.outDir}/metrics.jsonl`,
    options.resume ? { keepBeforeStep: options.resume.step } : {},
  );

  const started = performance.now();
  const priorSeconds = options.resume?.wallSeconds ?? 0;
  const wall = () => priorSeconds + (performance.now() - started) / 1000;
  let skippedSteps = 0;
  let evaluation: Evaluation | null = null;
  let imagesSeen = 0;
  let epochTotals = newEpochTotals();
  let lastProgress = performance.now();

  const checkpoint = async () => {
    await writeCheckpoint(`${options.outDir}/checkpoint.msgpack`, {
      runId,
      fingerprint: setup.fingerprint,
      step,
      epoch: Math.floor(step / stepsPerEpoch),
      layout: layout.entries.map((e) => e.name),
      weights,
      optimizer: optimizer.getState(),
      workers,
      wallSeconds: wall(),
    });
  };

  try {
    log.info(
      `waiting for ${workers} worker(s); ${totalSteps} steps of ` +
        `${workers * perRankBatch} examples, ${stepsPerEpoch} per epoch`,
    );
    await membership.waitForAll({
      warnSeconds: config.train.stallWarnSeconds,
      abortSeconds: config.train.stallAbortSeconds,
    });
    for (const m of membership.members) {
      log.info(
        `rank ${m.rank}: backend ${m.backend}, device ${m.device ?? "none"}`,
      );
    }

    for (; step < totalSteps; step++) {
      const epoch = Math.floor(step / stepsPerEpoch);
      const stepInEpoch = step % stepsPerEpoch;
      const stepStarted = performance.now();
      const lr = optimizer.learningRate(step);

      // 1. Version `step` of the weights, with every rank's batch.
      const indices = Array.from(
        { length: workers },
        (_, rank) =>
          Array.from(rankBatchPositions({
            n: setup.dataset.train.count,
            seed,
            epoch,
            step: stepInEpoch,
            rank,
            workers,
            perRankBatch,
          })),
      );
      const chunks = encodeTensorStream({
        run: runId,
        step,
        stream: "weights",
        rank: PS_RANK,
        data: weights,
        meta: encodeStepMeta({
          epoch,
          lr,
          scaling: options.inputScaling,
          indices,
        }),
        maxPayloadBytes: transport.maxPayloadBytes,
      });
      collector.begin(step);
      publishAll(transport, runSubjects.weights, chunks);

      // 2. Every rank's contribution, re-sending to the silent ones.
      const results = await collector.collect({
        warnSeconds: config.train.stallWarnSeconds,
        abortSeconds: config.train.stallAbortSeconds,
        onStall: (pending, waited) => {
          log.warn(describeStall(pending, waited), step);
          publishAll(transport, runSubjects.weights, chunks);
        },
      });

      // 3. Aggregate and apply, unless a rank saw a non-finite value.
      const sum = aggregate(layout, results);
      const bad = results.find((r) => r.nonFinite !== "");
      let applied = false;
      if (bad) {
        log.warn(
          `skipping the update: rank ${bad.rank} saw a non-finite value ` +
            `in ${bad.nonFinite}; the weights stay at version ${step}`,
          step,
        );
      } else {
        const outcome = optimizer.step({
          weights: splitFlat(layout, weights, "trainable"),
          grads: splitFlat(layout, sum.meanGradient, "trainable"),
          step,
        });
        applied = outcome.applied;
        if (!outcome.applied) {
          log.warn(`optimizer skipped the update: ${outcome.reason}`, step);
        } else if (
          sum.movingStats && config.model.batchNorm === "train"
        ) {
          weights.set(sum.movingStats, layout.trainableSize);
        }
      }
      if (!applied) skippedSteps++;

      const seconds = (performance.now() - stepStarted) / 1000;
      imagesSeen += sum.count;
      epochTotals = addToEpoch(epochTotals, sum, seconds);
      await metrics.append({
        type: "step",
        epoch,
        step,
        loss: sum.count ? sum.lossSum / sum.count : 0,
        accuracy: sum.count ? sum.correct / sum.count : 0,
        lr,
        imagesPerSecond: sum.count / seconds,
        examples: sum.count,
        applied,
        wallSeconds: wall(),
      });
      log.debug(
        `loss ${(sum.lossSum / Math.max(1, sum.count)).toFixed(4)} ` +
          `in ${seconds.toFixed(2)} s`,
        step,
      );
      if (performance.now() - lastProgress >= PROGRESS_EVERY_MS) {
        lastProgress = performance.now();
        const n = Math.max(1, epochTotals.count);
        log.info(
          `step ${step + 1}/${totalSteps} (epoch ${epoch + 1}, ` +
            `${stepInEpoch + 1}/${stepsPerEpoch}): loss ` +
            `${(epochTotals.lossSum / n).toFixed(4)} acc ` +
            `${(epochTotals.correct / n).toFixed(3)} ` +
            `${(epochTotals.count / epochTotals.seconds).toFixed(1)} img/s`,
          step,
        );
      }

      // Epoch end (or the last step): evaluate, report, checkpoint.
      const last = step + 1 === totalSteps;
      if (stepInEpoch + 1 === stepsPerEpoch || last) {
        const evaluated = options.evaluateEachEpoch === false && !last
          ? null
          : evaluateWeights(setup, weights, options.inputScaling);
        if (evaluated) evaluation = evaluated;
        await metrics.append({
          type: "epoch",
          epoch,
          step,
          loss: epochTotals.lossSum / Math.max(1, epochTotals.count),
          accuracy: epochTotals.correct / Math.max(1, epochTotals.count),
          lr,
          imagesPerSecond: epochTotals.count / epochTotals.seconds,
          valAccuracy: evaluated?.accuracy ?? null,
          valLoss: evaluated?.loss ?? null,
          valMacroF1: evaluated?.macroF1 ?? null,
          wallSeconds: wall(),
        });
        log.info(
          describeEpoch({
            epoch,
            epochs: Math.ceil(totalSteps / stepsPerEpoch),
            totals: epochTotals,
            lr,
            evaluation: evaluated,
          }),
          step,
        );
        epochTotals = newEpochTotals();
        step++;
        await checkpoint();
        step--;
      } else if (
        config.train.checkpointEverySteps > 0 &&
        (step + 1) % config.train.checkpointEverySteps === 0
      ) {
        step++;
        await checkpoint();
        step--;
      }
    }

    transport.publish(
      runSubjects.control,
      encodeMessage({
        kind: "control",
        run: runId,
        step,
        command: "stop",
        reason: `finished ${totalSteps} steps`,
      }),
    );
    await transport.flush();
  } catch (error) {
    log.error(`stopping the run: ${(error as Error).message}`, step);
    await checkpoint().catch((e) =>
      log.error(`could not write the checkpoint: ${e}`, step)
    );
    transport.publish(
      runSubjects.control,
      encodeMessage({
        kind: "control",
        run: runId,
        step,
        command: "abort",
        reason: (error as Error).message.slice(0, 4000),
      }),
    );
    await transport.flush().catch(() => {});
    throw error;
  } finally {
    membership.close();
    collector.close();
    await metrics.close();
  }

  return {
    weights,
    weightsSha256: await float32Sha256(weights),
    steps: step,
    skippedSteps,
    epochs: step / stepsPerEpoch,
    evaluation,
    members: membership.members.map((m) => ({
      rank: m.rank,
      backend: m.backend,
      device: m.device,
    })),
    rejections: rejections.counts(),
    wallSeconds: wall(),
    imagesPerSecond: imagesSeen / Math.max(1e-9, wall() - priorSeconds),
  };
}

function publishAll(
  transport: Transport,
  subject: string,
  chunks: Uint8Array[],
): void {
  for (const chunk of chunks) transport.publish(subject, chunk);
}

interface EpochTotals {
  count: number;
  lossSum: number;
  correct: number;
  seconds: number;
}

function newEpochTotals(): EpochTotals {
  return { count: 0, lossSum: 0, correct: 0, seconds: 0 };
}

function addToEpoch(
  totals: EpochTotals,
  step: { count: number; lossSum: number; correct: number },
  seconds: number,
): EpochTotals {
  return {
    count: totals.count + step.count,
    lossSum: totals.lossSum + step.lossSum,
    correct: totals.correct + step.correct,
    seconds: totals.seconds + seconds,
  };
}

/** Runs the PS's own model copy over the validation split. */
export function evaluateWeights(
  setup: JobSetup,
  weights: Float32Array,
  scaling: InputScaling,
): Evaluation | null {
  const { val } = setup.dataset;
  if (val.count === 0) return null;

  writeFlat(setup.model, setup.layout, weights);
  return evaluate(setup.model, {
    count: val.count,
    imageSize: setup.config.model.imageSize,
    numClasses: setup.classes.length,
    batchAt: (start, end) => {
      const indices = Array.from({ length: end - start }, (_, i) => start + i);
      return makeBatch(val, indices, { scaling });
    },
  });
}

function describeEpoch(args: {
  epoch: number;
  epochs: number;
  totals: EpochTotals;
  lr: number;
  evaluation: Evaluation | null;
}): string {
  const { epoch, epochs, totals, lr, evaluation } = args;
  const n = Math.max(1, totals.count);
  const val = evaluation
    ? ` | val acc ${evaluation.accuracy.toFixed(3)} loss ` +
      `${evaluation.loss.toFixed(4)} macro-F1 ${evaluation.macroF1.toFixed(3)}`
    : "";
  return `epoch ${epoch + 1}/${epochs}: loss ${
    (totals.lossSum / n).toFixed(4)
  } ` +
    `acc ${(totals.correct / n).toFixed(3)} lr ${lr.toExponential(2)} ` +
    `${(totals.count / totals.seconds).toFixed(1)} img/s${val}`;
}

function describeStall(pending: PendingRank[], waited: number): string {
  const parts = pending.map((p) => {
    const got = p.expected === undefined
      ? "nothing yet"
      : `${p.received}/${p.expected} chunks, missing ${
        p.missingChunks.join(",")
      }${p.expected - p.received > p.missingChunks.length ? ",..." : ""}`;
    return `rank ${p.rank} (${got})`;
  });
  return `waited ${waited.toFixed(0)} s for ${parts.join("; ")}; ` +
    "re-sending the weights";
}

function logRejection(log: Logger, event: RejectionEvent): void {
  const who = [
    event.kind,
    event.rank === undefined ? null : `rank ${event.rank}`,
    event.subject,
  ].filter((p) => p !== null && p !== undefined).join(", ");
  log.warn(
    `dropped a message (${event.reason}; ${who}): ${event.message}`,
    event.step,
  );
}
