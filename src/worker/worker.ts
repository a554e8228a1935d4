/**
 * A worker: joins the run with its config fingerprint, then for each
 * weights version `v` the parameter server publishes, computes gradients on
 * the batch the PS assigned to its rank and publishes them for step `v`.
 *
 * The worker keeps its last result: when the PS re-sends version `v`
 * (because some chunk was lost), the worker re-sends the same bytes instead
 * of computing again, so a retry never changes a step's result.
 *
 * @module
 */
import {
  decodeMessage,
  encodeMessage,
  encodeTensorStream,
  RejectionCounter,
  type RejectionEvent,
  StreamAssembler,
  type TensorChunkMessage,
  type WelcomeMessage,
  WireError,
} from "../wire/mod.ts";
import {
  subjects,
  type Subscription,
  type Transport,
} from "../transport/mod.ts";
import { makeBatch } from "../data/mod.ts";
import type { Logger } from "../log.ts";
import type { JobSetup } from "../train/job.ts";
import { writeFlat } from "../train/layout.ts";
import { computeLocalStep } from "../train/local_step.ts";
import {
  decodeStepMeta,
  encodeResultMeta,
  type StepMeta,
} from "../protocol/step_meta.ts";

/** Options of {@linkcode runWorker}. */
export interface WorkerOptions {
  setup: JobSetup;
  runId: string;
  rank: number;
  transport: Transport;
  log: Logger;
  /** The backend the worker computes on, reported to the PS. */
  backend: string;
  /** The accelerator, if any, reported to the PS. */
  device?: string | null;
  /** Subject prefix. @default "dptrain" */
  subjectPrefix?: string;
  /** Seconds between `hello`s until the PS answers. @default 1 */
  helloIntervalSeconds?: number;
  /** Give up joining after this long. @default train.stallAbortSeconds */
  joinTimeoutSeconds?: number;
}

/** The PS refused this worker (e.g. a different config). */
export class WorkerRefusedError extends Error {
  readonly rank: number;

  constructor(rank: number, reason: string) {
    super(`the parameter server refused rank ${rank}: ${reason}`);
    this.name = "WorkerRefusedError";
    this.rank = rank;
  }
}

/** The PS stopped the run with `abort`. */
export class RunAbortedError extends Error {
  constructor(reason: string) {
    super(`the parameter server aborted the run: ${reason}`);
    this.name = "RunAbortedError";
  }
}

/** The worker's connection closed before the run ended. */
export class WorkerDisconnectedError extends Error {
  readonly rank: number;

  constructor(rank: number, cause: Error | undefined) {
    super(
      `rank ${rank}: the connection to the message bus closed before the ` +
        `run ended${cause ? `: ${cause.message}` : ""}`,
      { cause },
    );
    this.name = "WorkerDisconnectedError";
    this.rank = rank;
  }
}

/** What the worker did, for its exit log. */
export interface WorkerResult {
  steps: number;
  rejections: Record<string, number>;
}

/** Joins the run and works until the PS says stop; see the module doc. */
export async function runWorker(options: WorkerOptions): Promise<WorkerResult> {
  const { setup, runId, rank, transport, log } = options;
  const { config, layout } = setup;
  const { workers, perRankBatch } = config.train;
  const s = subjects(options.subjectPrefix ?? "dptrain", runId);
  const rejections = new RejectionCounter({
    log: (event) => logRejection(log, event),
  });

  if (!Number.isInteger(rank) || rank < 0 || rank >= workers) {
    throw new RangeError(`rank ${rank} is outside [0, ${workers})`);
  }

  let finish!: (r: WorkerResult) => void;
  let fail!: (e: Error) => void;
  const done = new Promise<WorkerResult>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  // Without a connection no weights can arrive: end instead of waiting.
  transport.closed.then((cause) =>
    fail(new WorkerDisconnectedError(rank, cause))
  );
  const subscriptions: Subscription[] = [];
  let joined = false;
  let steps = 0;

  // Work runs one step at a time, outside the message handlers.
  let assembler: StreamAssembler | null = null;
  let assemblerStep = -1;
  let queued: { step: number; data: Float32Array; meta: StepMeta } | null =
    null;
  let wakeWorker: (() => void) | null = null;
  let last: { step: number; chunks: Uint8Array[] } | null = null;

  const onWelcome = (data: Uint8Array, subject: string) => {
    let welcome: WelcomeMessage;
    try {
      welcome = decodeMessage(data, {
        run: runId,
        workers,
        kinds: ["welcome"],
      });
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      rejections.record(error, { subject });
      return;
    }
    if (welcome.rank !== rank || joined) return;
    if (!welcome.accepted) {
      fail(new WorkerRefusedError(rank, welcome.reason));
      return;
    }
    joined = true;
    log.info(`joined; the run is at step ${welcome.startStep}`);
  };

  const onWeights = (data: Uint8Array, subject: string) => {
    try {
      const chunk: TensorChunkMessage = decodeMessage(data, {
        run: runId,
        workers,
        kinds: ["tensor_chunk"],
      });
      if (chunk.stream !== "weights") {
        throw new WireError({
          reason: "bad_field",
          field: "stream",
          message: `stream must be "weights" on ${subject}`,
          run: chunk.run,
          step: chunk.step,
        });
      }
      onWeightsChunk(chunk);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      rejections.record(error, { subject });
    }
  };

  const onWeightsChunk = (chunk: TensorChunkMessage) => {
    // A re-send of the step we answered: answer again with the same bytes.
    if (last && chunk.step === last.step) {
      if (chunk.index === 0) publishAll(transport, s.grads, last.chunks);
      return;
    }
    if (last && chunk.step < last.step) return;

    // Only the newest version matters; an older partial one is dropped.
    if (chunk.step < assemblerStep) return;
    if (chunk.step > assemblerStep || assembler === null) {
      assembler = new StreamAssembler({
        stream: "weights",
        step: chunk.step,
        rank: chunk.rank,
        expectedLength: layout.totalSize,
      });
      assemblerStep = chunk.step;
    }
    if (assembler.complete) return;

    const whole = assembler.add(chunk);
    if (!whole) return;
    const meta = decodeStepMeta(whole.meta, {
      workers,
      examples: setup.dataset.train.count,
      perRankBatch,
    });
    queued = { step: chunk.step, data: whole.data, meta };
    wakeWorker?.();
  };

  const onControl = (data: Uint8Array, subject: string) => {
    try {
      const control = decodeMessage(data, {
        run: runId,
        workers,
        kinds: ["control"],
      });
      if (control.command === "stop") {
        log.info(`stopping: ${control.reason}`);
        finish({ steps, rejections: rejections.counts() });
      } else {
        fail(new RunAbortedError(control.reason));
      }
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      rejections.record(error, { subject });
    }
  };

  subscriptions.push(
    transport.subscribe(s.welcome(rank), onWelcome),
    transport.subscribe(s.weights, onWeights),
    transport.subscribe(s.control, onControl),
  );

  const loop = async () => {
    const helloEvery = (options.helloIntervalSeconds ?? 1) * 1000;
    const joinDeadline = Date.now() +
      (options.joinTimeoutSeconds ?? config.train.stallAbortSeconds) * 1000;

    while (!joined) {
      transport.publish(
        s.hello,
        encodeMessage({
          kind: "hello",
          run: runId,
          step: 0,
          rank,
          fingerprint: setup.fingerprint,
          backend: options.backend,
          device: options.device ?? null,
          pid: Deno.pid,
          host: Deno.hostname(),
        }),
      );
      await transport.flush();
      if (Date.now() > joinDeadline) {
        throw new Error(`no answer from the parameter server on ${s.hello}`);
      }
      await Promise.race([sleep(helloEvery), done.then(() => {}, () => {})]);
      if (settled) return;
    }

    while (!settled) {
      if (queued === null) {
        await Promise.race([
          new Promise<void>((resolve) => wakeWorker = resolve),
          done.then(() => {}, () => {}),
        ]);
        wakeWorker = null;
        continue;
      }
      const job = queued;
      queued = null;
      last = { step: job.step, chunks: computeStep(job) };
      publishAll(transport, s.grads, last.chunks);
      await transport.flush();
      steps++;
    }
  };

  const computeStep = (
    job: { step: number; data: Float32Array; meta: StepMeta },
  ): Uint8Array[] => {
    const started = performance.now();
    writeFlat(setup.model, layout, job.data);

    const batch = makeBatch(setup.dataset.train, job.meta.indices[rank], {
      scaling: job.meta.scaling,
      ...(config.data.flip
        ? { flip: { seed: config.train.seed, epoch: job.meta.epoch } }
        : {}),
      ...(config.data.cropMinArea > 0
        ? {
          crop: {
            seed: config.train.seed,
            epoch: job.meta.epoch,
            minArea: config.data.cropMinArea,
          },
        }
        : {}),
    });
    const result = computeLocalStep(setup.model, layout, batch, {
      imageSize: config.model.imageSize,
      numClasses: setup.classes.length,
      batchNorm: config.model.batchNorm,
    });

    let nonFinite = "";
    let flat = result.flat;
    if (result.firstNonFinite >= 0) {
      const entry = layout.entries.find((e) =>
        result.firstNonFinite >= e.offset &&
        result.firstNonFinite < e.offset + e.size
      );
      nonFinite = entry?.name ?? `value ${result.firstNonFinite}`;
      log.error(
        `non-finite value in ${nonFinite}; sending zeros so the PS skips ` +
          "the update",
        job.step,
      );
      flat = new Float32Array(layout.totalSize);
      flat.set(job.data.subarray(layout.trainableSize), layout.trainableSize);
    }

    const seconds = (performance.now() - started) / 1000;
    log.debug(
      `${batch.count} examples, loss ${
        (result.lossSum / Math.max(1, batch.count)).toFixed(4)
      }, ${seconds.toFixed(2)} s`,
      job.step,
    );
    return encodeTensorStream({
      run: runId,
      step: job.step,
      stream: "grads",
      rank,
      data: flat,
      meta: encodeResultMeta({
        count: result.count,
        lossSum: result.lossSum,
        correct: result.correct,
        nonFinite,
      }),
      maxPayloadBytes: transport.maxPayloadBytes,
    });
  };

  let settled = false;
  done.then(() => settled = true, () => settled = true);

  try {
    await Promise.race([loop().then(() => done), done]);
    return await done;
  } finally {
    settled = true;
    for (const sub of subscriptions) sub.unsubscribe();
  }
}

function publishAll(
  transport: Transport,
  subject: string,
  chunks: Uint8Array[],
) {
  for (const chunk of chunks) transport.publish(subject, chunk);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function logRejection(log: Logger, event: RejectionEvent): void {
  log.warn(
    `dropped a message (${event.reason}, ${event.subject ?? "?"}): ` +
      event.message,
    event.step,
  );
}
