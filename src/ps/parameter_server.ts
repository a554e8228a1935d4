/**
 * The parameter server: the authoritative copy of the weights, the
 * optimizer's moments, the step counter, the epoch plan and membership. It
 * runs the synchronous step of DESIGN.md, elastically:
 *
 * 1. Plan the step over the live ranks (`EpochPlan`) and publish weights
 *    version `v` with its metadata (epoch, schedule rate, input scaling,
 *    the dataset indices of every rank; idle ranks get none).
 * 2. Collect every assigned rank's gradients (`collectStep`): lost chunks
 *    are asked for again, a dead rank (no heartbeat) or, with
 *    `stragglerPolicy: "drop"`, a late one leaves the step and its examples
 *    go back to the plan; if no rank is left the step is planned again.
 *    Ranks silent past `stallAbortSeconds` stop the run, checkpointed.
 * 3. Sum the gradients in rank order, divide by the example count, apply
 *    AdamW at the schedule position of the examples consumed, average the
 *    BatchNorm statistics, and go to `v + 1`. Checkpoint at each epoch end
 *    and every `checkpointEverySteps`.
 *
 * The result of a step depends only on version `v` and the set of
 * contributions, never on arrival order, re-sends or the transport; a run
 * that loses no rank equals a static one bit for bit.
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
import { makeBatch } from "../data/mod.ts";
import type { InputScaling } from "../data/mod.ts";
import type { Logger } from "../log.ts";
import type { JobSetup } from "../train/job.ts";
import { splitFlat, writeFlat } from "../train/layout.ts";
import { evaluate, type Evaluation } from "../train/evaluate.ts";
import {
  type Checkpoint,
  CheckpointWriteError,
  writeCheckpoint,
} from "../train/checkpoint.ts";
import { MetricsLog } from "../train/metrics_log.ts";
import { aggregate } from "./aggregate.ts";
import { GradientCollector } from "./collector.ts";
import { collectStep, type LostRank } from "./collect_step.ts";
import {
  type Assignment,
  EpochPlan,
  type EpochPlanState,
} from "./epoch_plan.ts";
import { Membership } from "./membership.ts";
import { encodeStepMeta } from "../protocol/step_meta.ts";
import { float32Sha256 } from "./weights_hash.ts";
import { WeightAverage } from "./weight_average.ts";

/** A progress line at most this often within an epoch. */
const PROGRESS_EVERY_MS = 15_000;

/** Options of {@linkcode runParameterServer}. */
export interface ParameterServerOptions {
  /** Data, model, layout and fingerprint of the job (`setupJob`). */
  setup: JobSetup;
  /** Run id: one token of letters, digits, `_` and `-`. */
  runId: string;
  /** Connection to the message bus (NATS or in-process). */
  transport: Transport;
  /** The initial flat weights (pretrained backbone, seeded head). */
  initialWeights: Float32Array;
  /** Pixel scaling the weights expect; validation batches use it. */
  inputScaling: InputScaling;
  /** Receives progress, warnings and rejected messages. */
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
  /** Final flat weights: the moving average when `train.emaDecay` > 0. */
  weights: Float32Array;
  /** Hex SHA-256 of `weights` as little-endian float32 bytes. */
  weightsSha256: string;
  /** Steps done (weights versions published), skipped ones included. */
  steps: number;
  /** Steps whose update was skipped for a non-finite gradient or value. */
  skippedSteps: number;
  /** Epochs done: whole epochs plus the share of the current one. */
  epochs: number;
  /** The last validation result; null when the run ended unevaluated. */
  evaluation: Evaluation | null;
  /** Every rank that ever joined, with its tfjs backend and device. */
  members: { rank: number; backend: string; device: string | null }[];
  /** Messages rejected, by reason (every reason, zeros included). */
  rejections: Record<string, number>;
  /** Wall-clock seconds of training, including those before a resume. */
  wallSeconds: number;
  /** Training images per second since this process started or resumed. */
  imagesPerSecond: number;
}

/** Runs the job to its last step; see the module doc. */
export async function runParameterServer(
  options: ParameterServerOptions,
): Promise<PsResult> {
  const { setup, runId, transport, log } = options;
  const { config, layout, stepsPerEpoch } = setup;
  const { workers, perRankBatch, seed } = config.train;
  const train = config.train;
  const runSubjects = subjects(options.subjectPrefix ?? "dptrain", runId);
  const resume = options.resume;

  const weights = new Float32Array(resume?.weights ?? options.initialWeights);
  const optimizer = new FlatAdamW({
    variables: layout.entries
      .filter((e) => e.role === "trainable")
      .map((e) => ({ name: e.name, shape: e.shape })),
    config: parseOptimizerConfig(config.optimizer, "optimizer"),
    workers,
    stepsPerEpoch,
    totalSteps: stepsPerEpoch * config.train.epochs,
  });
  if (resume) optimizer.setState(resume.optimizer as never);
  const plan = new EpochPlan({
    n: setup.dataset.train.count,
    seed,
    workers,
    perRankBatch,
    stepsPerEpoch,
    state: resume?.plan ?? planStateAt(resume?.step ?? 0, setup),
  });

  // Validation and the saved model use the average when there is one.
  const ema = train.emaDecay > 0
    ? new WeightAverage(
      train.emaDecay,
      weights,
      resume?.ema === undefined ? undefined : resume.ema,
    )
    : null;
  const finalWeights = () => ema?.average ?? weights;

  // `step` counts the weights versions published: steps done so far.
  let step = resume?.step ?? 0;
  // Losing ranks makes epochs take more steps: only an explicit maxSteps
  // caps the step count; otherwise the run ends with its last epoch.
  const maxSteps = train.maxSteps > 0 ? train.maxSteps : Infinity;
  const finished = () => plan.epoch >= train.epochs || step >= maxSteps;
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
    heartbeatTimeoutSeconds: train.heartbeatTimeoutSeconds,
    session: crypto.randomUUID().replaceAll("-", "").slice(0, 16),
  });
  const collector = new GradientCollector({
    runId,
    workers,
    perRankBatch,
    streamLength: layout.totalSize,
    transport,
    subjects: runSubjects,
    rejections,
    onChunk: (rank) => membership.touch(rank),
  });
  const metrics = await MetricsLog.create(
    `${options.outDir}/metrics.jsonl`,
    resume ? { keepBeforeStep: resume.step } : {},
  );

  const started = performance.now();
  const priorSeconds = resume?.wallSeconds ?? 0;
  const wall = () => priorSeconds + (performance.now() - started) / 1000;
  let skippedSteps = 0;
  let evaluation: Evaluation | null = null;
  let imagesSeen = 0;
  let epochTotals = newEpochTotals();
  let lastProgress = performance.now();
  let membershipSeen = 0;

  // The plan as it stood before the current step was handed out: a run
  // stopped mid-step resumes by handing out the same examples again.
  let planAtStepStart = plan.state();
  const checkpoint = async () => {
    await writeCheckpoint(`${options.outDir}/checkpoint.msgpack`, {
      runId,
      fingerprint: setup.fingerprint,
      step,
      epoch: plan.epoch,
      layout: layout.entries.map((e) => e.name),
      weights,
      optimizer: optimizer.getState(),
      workers,
      wallSeconds: wall(),
      plan: planAtStepStart,
      live: membership.live(),
      ...(ema ? { ema: { average: ema.average, updates: ema.updates } } : {}),
    });
  };
  const guardedCheckpoint = async () => {
    try {
      await checkpoint();
    } catch (error) {
      if (train.onCheckpointError === "stop") throw error;
      log.error(
        `${(error as Error).message}; training on without it ` +
          `(train.onCheckpointError "continue")`,
        step,
      );
    }
  };

  // Ranks each step needs: all of them to start (or those live at the
  // checkpoint), then at least `minWorkers` (1 when 0: survivors go on).
  const minLive = Math.max(1, train.minWorkers);
  const waitForRanks = async (wanted: readonly number[], least: number) => {
    const startedWaiting = Date.now();
    await membership.waitUntil(
      () =>
        membership.missing(wanted).length === 0 ||
        (membership.live().length >= least &&
          (least >= wanted.length ||
            Date.now() - startedWaiting >= train.stallWarnSeconds * 1000)),
      {
        warnSeconds: train.stallWarnSeconds,
        abortSeconds: train.stallAbortSeconds,
        wanted: () => membership.missing(wanted),
        step,
      },
    );
  };

  try {
    const totalSteps = Math.min(maxSteps, setup.totalSteps);
    log.info(
      `waiting for ${workers} worker(s); ${totalSteps} steps of ` +
        `${workers * perRankBatch} examples, ${stepsPerEpoch} per epoch`,
    );
    const allRanks = Array.from({ length: workers }, (_, r) => r);
    const startRanks = resume?.live ?? allRanks;
    await waitForRanks(
      startRanks,
      train.minWorkers > 0 ? train.minWorkers : startRanks.length,
    );
    for (const m of membership.members) {
      log.info(
        `rank ${m.rank}: backend ${m.backend}, device ${m.device ?? "none"}`,
      );
    }

    while (!finished()) {
      planAtStepStart = plan.state();
      const stepStarted = performance.now();
      const resends = { weights: 0, grads: 0 };
      const lost: LostRank[] = [];
      let attempt = 0;
      let assignment: Assignment;
      let lr: number;

      // 1-2. Plan, publish version `step`, collect; re-plan the same step
      // when every assigned rank dropped out of it.
      for (;;) {
        membership.reapDead(step);
        if (membership.live().length < minLive) {
          log.warn(
            `${membership.live().length} live rank(s), ${minLive} needed; ` +
              "waiting for workers to join",
            step,
          );
          await waitForRanks(allRanks, minLive);
        }
        assignment = plan.take(membership.live());
        lr = optimizer.learningRate(assignment.scheduleStep);
        const expected = assignment.positions
          .map((list, rank) => list.length > 0 ? rank : -1)
          .filter((rank) => rank >= 0);
        const chunks = encodeTensorStream({
          run: runId,
          step,
          attempt,
          stream: "weights",
          rank: PS_RANK,
          data: weights,
          meta: encodeStepMeta({
            epoch: assignment.epoch,
            lr,
            scaling: options.inputScaling,
            indices: assignment.indices,
          }),
          maxPayloadBytes: transport.maxPayloadBytes,
        });
        collector.begin(step, attempt, expected);
        publishAll(transport, runSubjects.weights, chunks);

        const outcome = await collectStep({
          step,
          attempt,
          stepStartedAt: stepStarted,
          runId,
          weightsChunks: chunks,
          collector,
          membership,
          transport,
          subjects: runSubjects,
          train,
          log,
        });
        for (const { rank } of outcome.lost) {
          plan.requeue(assignment.positions[rank]);
        }
        lost.push(...outcome.lost);
        resends.weights += outcome.resends.weights;
        resends.grads += outcome.resends.grads;
        if (collector.results().length > 0) break;
        attempt++;
        log.warn(
          `no rank finished step ${step}; planning it again (attempt ` +
            `${attempt})`,
          step,
        );
      }
      const results = collector.results();
      const epoch = assignment.epoch;

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
          step: assignment.scheduleStep,
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
      if (applied) ema?.update(weights);

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
        ranks: results.map((r) => r.rank),
        lost,
        attempts: attempt + 1,
        resends,
        rejected: nonZero(rejections.counts()),
        wallSeconds: wall(),
      });
      log.debug(
        `loss ${(sum.lossSum / Math.max(1, sum.count)).toFixed(4)} ` +
          `in ${seconds.toFixed(2)} s from rank(s) ` +
          results.map((r) => r.rank).join(","),
        step,
      );
      step++;
      if (performance.now() - lastProgress >= PROGRESS_EVERY_MS) {
        lastProgress = performance.now();
        const n = Math.max(1, epochTotals.count);
        log.info(
          `step ${step} of ~${totalSteps} (epoch ${
            epoch + 1
          }/${train.epochs}, ` +
            `${epochTotals.count}/${setup.dataset.train.count} examples): ` +
            `loss ${(epochTotals.lossSum / n).toFixed(4)} acc ` +
            `${(epochTotals.correct / n).toFixed(3)} ` +
            `${(epochTotals.count / epochTotals.seconds).toFixed(1)} img/s`,
          step - 1,
        );
      }

      // Epoch end (or the last step): evaluate, report, checkpoint.
      const epochEnd = plan.epochDone;
      if (epochEnd) plan.nextEpoch();
      planAtStepStart = plan.state();
      const last = finished();
      if (epochEnd || last) {
        const evaluated = options.evaluateEachEpoch === false && !last
          ? null
          : evaluateWeights(setup, finalWeights(), options.inputScaling);
        if (evaluated) evaluation = evaluated;
        await metrics.append({
          type: "epoch",
          epoch,
          step: step - 1,
          loss: epochTotals.lossSum / Math.max(1, epochTotals.count),
          accuracy: epochTotals.correct / Math.max(1, epochTotals.count),
          lr,
          imagesPerSecond: epochTotals.count / epochTotals.seconds,
          valAccuracy: evaluated?.accuracy ?? null,
          valLoss: evaluated?.loss ?? null,
          valMacroF1: evaluated?.macroF1 ?? null,
          rejected: nonZero(rejections.counts()),
          membership: membership.events.slice(membershipSeen),
          wallSeconds: wall(),
        });
        membershipSeen = membership.events.length;
        log.info(
          describeEpoch({
            epoch,
            epochs: train.epochs,
            totals: epochTotals,
            lr,
            evaluation: evaluated,
          }),
          step - 1,
        );
        epochTotals = newEpochTotals();
        await guardedCheckpoint();
      } else if (
        train.checkpointEverySteps > 0 &&
        step % train.checkpointEverySteps === 0
      ) {
        await guardedCheckpoint();
      }
    }

    await stopWorkers({
      transport,
      membership,
      train,
      message: encodeMessage({
        kind: "control",
        run: runId,
        step,
        command: "stop",
        reason: `finished ${step} steps`,
      }),
      control: runSubjects.control,
    });
  } catch (error) {
    log.error(`stopping the run: ${(error as Error).message}`, step);
    if (!(error instanceof CheckpointWriteError)) {
      await checkpoint().catch((e) =>
        log.error(`could not write the checkpoint: ${e}`, step)
      );
    }
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
    await transport.flush().catch((e) =>
      log.warn(`could not flush the abort message: ${e}`, step)
    );
    throw error;
  } finally {
    membership.close();
    collector.close();
    await metrics.close();
  }

  return {
    weights: finalWeights(),
    weightsSha256: await float32Sha256(finalWeights()),
    steps: step,
    skippedSteps,
    // Whole epochs plus the share of the current one, in steps of a run
    // with every rank (2 of 4 steps: 0.5).
    epochs: plan.epoch + examplesDone(plan.state()) /
        (workers * perRankBatch) / stepsPerEpoch,
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

/**
 * The plan state after `step` steps of a run that lost no rank, for a
 * checkpoint written before plans were stored.
 */
function planStateAt(step: number, setup: JobSetup): EpochPlanState {
  const { stepsPerEpoch, config, dataset } = setup;
  const within = step % stepsPerEpoch;
  return {
    epoch: Math.floor(step / stepsPerEpoch),
    cursor: Math.min(
      dataset.train.count,
      within * config.train.workers * config.train.perRankBatch,
    ),
    requeued: [],
  };
}

/**
 * Publishes `stop`, and publishes it again while some worker still sends
 * heartbeats after it: core NATS may lose the first one, and a worker that
 * missed it would wait for weights that never come. Gives up after the
 * heartbeat timeout.
 */
async function stopWorkers(args: {
  transport: Transport;
  membership: Membership;
  train: JobSetup["config"]["train"];
  message: Uint8Array;
  control: string;
}): Promise<void> {
  const { transport, membership, train } = args;
  const beatMs = train.heartbeatSeconds * 1000;
  const started = performance.now();
  let sentAt = performance.now();

  transport.publish(args.control, args.message);
  await transport.flush();
  while (performance.now() - started < train.heartbeatTimeoutSeconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 2 * beatMs));
    const stillRunning = membership.members.some((m) =>
      m.alive && m.lastSeen > sentAt + beatMs / 2
    );
    if (!stillRunning) return;
    sentAt = performance.now();
    transport.publish(args.control, args.message);
    await transport.flush();
  }
}

function examplesDone(state: EpochPlanState): number {
  return state.cursor - state.requeued.length;
}

function nonZero(counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
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
