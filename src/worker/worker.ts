/**
 * A worker: joins the run with its config fingerprint, then for each
 * weights version `v` the parameter server publishes, computes gradients on
 * the batch the PS assigned to its rank and publishes them for step `v`.
 *
 * Its `hello` doubles as a heartbeat every `train.heartbeatSeconds`,
 * saying which step and attempt it is at and whether it is waiting for
 * weights (with the chunks it misses), computing or done, so that the PS
 * can tell a dead worker from a busy one and re-send what is missing. The
 * worker keeps its last result: when the PS asks for chunks of it again
 * (`resend`), it re-sends the same bytes instead of computing again, so a
 * retry never changes a step's result. A PS that restarts welcomes the
 * worker again; the worker then follows it back to its checkpoint's step.
 *
 * @module
 */
import {
  decodeMessage,
  encodeMessage,
  encodeTensorStream,
  MAX_LISTED_CHUNKS,
  RejectionCounter,
  type RejectionEvent,
  type ResendMessage,
  StreamAssembler,
  type TensorChunkMessage,
  type WelcomeMessage,
  WireError,
  type WorkerState,
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
import { checkSubjectRank } from "../protocol/subject_rank.ts";
import { computeLocalStep } from "../train/local_step.ts";
import {
  decodeStepMeta,
  encodeResultMeta,
  type StepMeta,
} from "../protocol/step_meta.ts";

/** Options of {@linkcode runWorker}. */
export interface WorkerOptions {
  /** Data, model, layout and fingerprint of the job (`setupJob`). */
  setup: JobSetup;
  /** Run id of the parameter server to join. */
  runId: string;
  /** This worker's rank, 0 to `train.workers - 1`. */
  rank: number;
  /** Connection to the message bus (NATS or in-process). */
  transport: Transport;
  /** Receives progress and warnings. */
  log: Logger;
  /** The backend the worker computes on, reported to the PS. */
  backend: string;
  /** The accelerator, if any, reported to the PS. */
  device?: string | null;
  /** Subject prefix. @default "dptrain" */
  subjectPrefix?: string;
  /** Seconds between heartbeats. @default train.heartbeatSeconds */
  heartbeatSeconds?: number;
  /** Give up joining after this long. @default train.stallAbortSeconds */
  joinTimeoutSeconds?: number;
}

/** The PS refused this worker (e.g. a different config). */
export class WorkerRefusedError extends Error {
  /** The rank that was refused. */
  readonly rank: number;

  /** Makes the error, with the reason the PS gave. */
  constructor(rank: number, reason: string) {
    super(`the parameter server refused rank ${rank}: ${reason}`);
    this.name = "WorkerRefusedError";
    this.rank = rank;
  }
}

/** The PS stopped the run with `abort`. */
export class RunAbortedError extends Error {
  /** Makes the error, with the reason the PS's `abort` message gave. */
  constructor(reason: string) {
    super(`the parameter server aborted the run: ${reason}`);
    this.name = "RunAbortedError";
  }
}

/** The worker's connection closed before the run ended. */
export class WorkerDisconnectedError extends Error {
  /** The rank whose connection closed. */
  readonly rank: number;

  /** Makes the error; `cause` is the transport's close error, if any. */
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
  /** Steps this rank computed and answered (idle steps not counted). */
  steps: number;
  /** Messages this worker rejected, by reason (zeros included). */
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
  let settled = false;
  done.then(() => settled = true, () => settled = true);
  // Without a connection no weights can arrive: end instead of waiting.
  transport.closed.then((cause) =>
    fail(new WorkerDisconnectedError(rank, cause))
  );
  const subscriptions: Subscription[] = [];
  let joined = false;
  let session = "";
  let steps = 0;

  // Where this worker stands, for its heartbeats. `version` is the step
  // and attempt of the newest weights seen; `last` the answered one.
  let state: WorkerState = "joining";
  let version = { step: 0, attempt: 0 };
  let assembler: StreamAssembler | null = null;
  let queued: Job | null = null;
  let wakeWorker: (() => void) | null = null;
  let last: { step: number; attempt: number; chunks: Uint8Array[] } | null =
    null;
  let stepSeconds = 0;
  let lastFromPs = Date.now();

  const heartbeat = () => {
    if (settled) return;
    const missing = state === "waiting" && assembler !== null
      ? assembler.missingChunks(MAX_LISTED_CHUNKS)
      : [];
    transport.publish(
      s.hello(rank),
      encodeMessage({
        kind: "hello",
        run: runId,
        step: version.step,
        rank,
        fingerprint: setup.fingerprint,
        backend: options.backend,
        device: options.device ?? null,
        pid: Deno.pid,
        host: Deno.hostname(),
        state,
        attempt: version.attempt,
        missing,
        stepSeconds,
      }),
    );
  };

  const onWelcome = (data: Uint8Array, subject: string) => {
    let welcome: WelcomeMessage;
    try {
      welcome = decodeMessage(data, {
        run: runId,
        workers,
        kinds: ["welcome"],
      });
      checkSubjectRank(s, subject, welcome);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      rejections.record(error, { subject });
      return;
    }
    lastFromPs = Date.now();
    if (!welcome.accepted) {
      fail(new WorkerRefusedError(rank, welcome.reason));
      return;
    }
    if (!joined) {
      joined = true;
      session = welcome.session;
      state = "waiting";
      log.info(`joined; the run is at step ${welcome.startStep}`);
      return;
    }
    // The same PS answering a repeated `hello` that crossed its welcome.
    if (welcome.session === session) return;

    // Welcomed by another PS session: a restarted PS that does not know us
    // yet. It resumes from its checkpoint, possibly before steps we already
    // answered.
    session = welcome.session;
    log.warn(
      `the parameter server welcomed this rank again (it restarted); ` +
        `continuing from its step ${welcome.startStep}`,
    );
    last = null;
    queued = null;
    assembler = null;
    version = { step: welcome.startStep, attempt: 0 };
    state = "waiting";
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
      lastFromPs = Date.now();
      onWeightsChunk(chunk);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      rejections.record(error, { subject });
    }
  };

  const onWeightsChunk = (chunk: TensorChunkMessage) => {
    // Versions only move forward within one PS's life (a restarted one
    // welcomes us first), so an older or answered one is a re-send.
    const order = compareVersion(chunk, version);
    if (order < 0) return;
    if (last && compareVersion(chunk, last) <= 0) return;
    // A newer version replaces the current one only once its first chunk
    // checks out: a bad chunk must not make the worker drop good work.
    const newer = order > 0 || assembler === null;
    const target = newer
      ? new StreamAssembler({
        stream: "weights",
        step: chunk.step,
        attempt: chunk.attempt,
        rank: chunk.rank,
        expectedLength: layout.totalSize,
      })
      : assembler!;
    if (target.complete) return;

    const whole = target.add(chunk);
    if (newer) {
      assembler = target;
      version = { step: chunk.step, attempt: chunk.attempt };
      queued = null;
      state = "waiting";
    }
    if (!whole) return;
    let meta: StepMeta;
    try {
      meta = decodeStepMeta(whole.meta, {
        workers,
        examples: setup.dataset.train.count,
        perRankBatch,
      });
    } catch (error) {
      // Start over, so that a re-sent stream can still complete.
      assembler = null;
      throw error;
    }
    queued = { ...version, data: whole.data, meta };
    wakeWorker?.();
  };

  const onResend = (data: Uint8Array, subject: string) => {
    let request: ResendMessage;
    try {
      request = decodeMessage(data, {
        run: runId,
        workers,
        kinds: ["resend"],
      });
      checkSubjectRank(s, subject, request);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      rejections.record(error, { subject });
      return;
    }
    lastFromPs = Date.now();
    if (!last) return;
    if (request.step !== last.step || request.attempt !== last.attempt) return;

    const wanted = request.chunks.length === 0
      ? last.chunks
      : request.chunks.filter((i) => i < last!.chunks.length)
        .map((i) => last!.chunks[i]);
    log.debug(`re-sending ${wanted.length} gradient chunk(s)`, last.step);
    publishAll(transport, s.grads(rank), wanted);
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
    transport.subscribe(s.resend(rank), onResend),
    transport.subscribe(s.weights, onWeights),
    transport.subscribe(s.control, onControl),
  );

  // Heartbeats from the start: before the welcome they are the join
  // request, after it they tell the PS where this rank stands.
  const heartbeatMs = (options.heartbeatSeconds ??
    config.train.heartbeatSeconds) * 1000;
  heartbeat();
  const heartbeatTimer = setInterval(heartbeat, heartbeatMs);

  const watchdog = async () => {
    const joinDeadline = Date.now() +
      (options.joinTimeoutSeconds ?? config.train.stallAbortSeconds) * 1000;
    // The PS gives up on a step after stallAbortSeconds; waiting twice as
    // long covers a PS restart from its checkpoint.
    const silenceLimit = 2 * config.train.stallAbortSeconds * 1000;
    let warned = Date.now();

    while (!settled) {
      await Promise.race([sleep(1000), done.then(noop, noop)]);
      if (settled) return;
      const now = Date.now();
      if (!joined && now > joinDeadline) {
        fail(
          new Error(
            `rank ${rank}: no answer from the parameter server on ` +
              `${s.hello(rank)} within the join timeout`,
          ),
        );
        return;
      }
      const silent = now - lastFromPs;
      if (joined && silent > silenceLimit) {
        fail(
          new Error(
            `rank ${rank}: the parameter server has been silent for ` +
              `${Math.round(silent / 1000)} s; giving up`,
          ),
        );
        return;
      }
      if (
        joined && silent > config.train.stallWarnSeconds * 1000 &&
        now - warned > config.train.stallWarnSeconds * 1000
      ) {
        warned = now;
        log.warn(
          `nothing from the parameter server for ${
            Math.round(silent / 1000)
          } s (at step ${version.step}); waiting for it`,
        );
      }
    }
  };

  const loop = async () => {
    while (!settled) {
      if (queued === null) {
        await Promise.race([
          new Promise<void>((resolve) => wakeWorker = resolve),
          done.then(noop, noop),
        ]);
        wakeWorker = null;
        continue;
      }
      const job = queued;
      queued = null;
      if (job.meta.indices[rank].length === 0) {
        // An idle rank this step (fewer examples left than ranks).
        last = { step: job.step, attempt: job.attempt, chunks: [] };
        state = "answered";
        continue;
      }
      state = "computing";
      heartbeat();
      // Out before tfjs blocks the event loop: otherwise the PS would think
      // the weights were lost and re-send them while this rank computes.
      await transport.flush();
      if (settled) break;
      const chunks = computeStep(job);
      last = { step: job.step, attempt: job.attempt, chunks };
      state = "answered";
      publishAll(transport, s.grads(rank), chunks);
      await transport.flush();
      heartbeat();
      steps++;
    }
  };

  const computeStep = (job: Job): Uint8Array[] => {
    try {
      return computeStepUnchecked(job);
    } catch (error) {
      // tfjs-wasm's heap ends at about 2 GiB; running out shows up as a
      // bare "memory access out of bounds".
      if (error instanceof WebAssembly.RuntimeError) {
        throw new Error(
          `rank ${rank} step ${job.step}: the ${options.backend} backend ` +
            `failed (${error.message}); the wasm heap holds about 2 GiB: ` +
            `with alpha 1.0 at 224 px keep --batch at 16 or below, or use ` +
            "a smaller --image-size or --alpha",
          { cause: error },
        );
      }
      throw error;
    }
  };

  const computeStepUnchecked = (job: Job): Uint8Array[] => {
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

    stepSeconds = (performance.now() - started) / 1000;
    log.debug(
      `${batch.count} examples, loss ${
        (result.lossSum / Math.max(1, batch.count)).toFixed(4)
      }, ${stepSeconds.toFixed(2)} s`,
      job.step,
    );
    return encodeTensorStream({
      run: runId,
      step: job.step,
      attempt: job.attempt,
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

  try {
    await Promise.race([loop().then(() => done), watchdog(), done]);
    return await done;
  } finally {
    settled = true;
    clearInterval(heartbeatTimer);
    for (const sub of subscriptions) sub.unsubscribe();
  }
}

/** A complete weights version, ready to compute on. */
interface Job {
  step: number;
  attempt: number;
  data: Float32Array;
  meta: StepMeta;
}

/** Orders (step, attempt) pairs. */
function compareVersion(
  a: { step: number; attempt: number },
  b: { step: number; attempt: number },
): number {
  return a.step !== b.step ? a.step - b.step : a.attempt - b.attempt;
}

function noop(): void {}

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
