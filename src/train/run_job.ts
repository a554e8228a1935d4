/**
 * The two roles of a job as functions of a config and a transport: the
 * parameter server (load pretrained weights, train, write the results) and
 * a worker. The CLI runs one per process over NATS; `trainInProcess` runs
 * them all in one process over the in-process transport.
 *
 * @module
 */
import type { JobConfig } from "../config.ts";
import { InProcessHub, type Transport } from "../transport/mod.ts";
import { formatImageFolderEvent } from "../data/mod.ts";
import { loadPretrainedWeights } from "../model/weights/mod.ts";
import type { Logger } from "../log.ts";
import { createLogger } from "../log.ts";
import { runParameterServer } from "../ps/parameter_server.ts";
import { runWorker, type WorkerResult } from "../worker/worker.ts";
import { type JobSetup, setupJob } from "./job.ts";
import { readFlat, writeFlat } from "./layout.ts";
import { type Checkpoint, CheckpointError } from "./checkpoint.ts";
import { saveLayersModel } from "./save_model.ts";
import { type RunSummary, summarize, writeSummary } from "./summary.ts";

/** Options of {@linkcode runPsRole}. */
export interface PsRoleOptions {
  /** The job's config; every process must agree on its fingerprint. */
  config: JobConfig;
  /** Run id: one token of letters, digits, `_` and `-`, shared by all roles. */
  runId: string;
  /** Connection to the message bus (NATS or in-process). */
  transport: Transport;
  /** Receives progress and warnings. */
  log: Logger;
  /** Results folder (created): metrics, checkpoint, summary and model. */
  outDir: string;
  /** Backend name for the summary. */
  backend: string;
  /** Checkpoint to resume from (same fingerprint and variable layout). */
  resume?: Checkpoint;
  /** Already prepared setup (in-process runs share nothing else). */
  setup?: JobSetup;
}

/** Loads data and weights, trains, writes metrics, summary and model. */
export async function runPsRole(options: PsRoleOptions): Promise<RunSummary> {
  const { config, log, outDir } = options;
  await Deno.mkdir(outDir, { recursive: true });

  const setup = options.setup ?? await setupJob(config, {
    onData: (event) => log.info(formatImageFolderEvent(event)),
  });
  try {
    return await trainAndSave(options, setup);
  } finally {
    // A setup made here is ours: free its model's tensors (a caller's stays).
    if (options.setup === undefined) setup.model.dispose();
  }
}

async function trainAndSave(
  options: PsRoleOptions,
  setup: JobSetup,
): Promise<RunSummary> {
  const { config, runId, transport, log, outDir } = options;
  log.info(
    `data: ${setup.dataset.train.count} train / ${setup.dataset.val.count} ` +
      `val images, classes ${setup.classes.join(", ")}`,
  );

  const loaded = await loadPretrainedWeights(setup.model, {
    source: config.model.weights,
    alpha: config.model.alpha,
    imageSize: config.model.imageSize,
    log: (m) => log.info(m),
  });
  log.info(`weights: ${loaded.description}`);
  const initialWeights = readFlat(setup.model, setup.layout);

  if (options.resume) checkResume(options.resume, setup);

  const result = await runParameterServer({
    setup,
    runId,
    transport,
    initialWeights,
    inputScaling: loaded.inputScaling,
    log,
    outDir,
    resume: options.resume,
  });

  writeFlat(setup.model, setup.layout, result.weights);
  // Whoever loads the model later reads how to scale its inputs from here.
  setup.model.setUserDefinedMetadata({ inputScaling: loaded.inputScaling });
  await saveLayersModel(setup.model, `${outDir}/model`);
  const summary = summarize({
    runId,
    setup,
    result,
    backend: options.backend,
    inputScaling: loaded.inputScaling,
  });
  await writeSummary(`${outDir}/summary.json`, summary);
  return summary;
}

function checkResume(checkpoint: Checkpoint, setup: JobSetup): void {
  const names = setup.layout.entries.map((e) => e.name);
  if (checkpoint.fingerprint !== setup.fingerprint) {
    throw new CheckpointError(
      "(resume)",
      `written for config fingerprint ${
        checkpoint.fingerprint.slice(0, 16)
      }, ` +
        `this job's is ${setup.fingerprint.slice(0, 16)}`,
    );
  }
  if (checkpoint.layout.join("\n") !== names.join("\n")) {
    throw new CheckpointError("(resume)", "variable layout differs");
  }
}

/** Options of {@linkcode runWorkerRole}. */
export interface WorkerRoleOptions {
  /** The job's config; its fingerprint must match the parameter server's. */
  config: JobConfig;
  /** Run id of the parameter server to join. */
  runId: string;
  /** This worker's rank, 0 to `train.workers - 1`. */
  rank: number;
  /** Connection to the message bus (NATS or in-process). */
  transport: Transport;
  /** Receives progress and warnings. */
  log: Logger;
  /** tfjs backend the worker computes on, reported to the parameter server. */
  backend: string;
  /** The accelerator, if any, reported to the parameter server. */
  device?: string | null;
  /** A prepared setup, the caller's to free; by default one is made here. */
  setup?: JobSetup;
}

/** Loads the data, joins the run and works until the PS stops it. */
export async function runWorkerRole(
  options: WorkerRoleOptions,
): Promise<WorkerResult> {
  const { config, log } = options;
  const setup = options.setup ?? await setupJob(config, {
    onData: (event) => log.debug(formatImageFolderEvent(event)),
  });
  try {
    return await runWorker({
      setup,
      runId: options.runId,
      rank: options.rank,
      transport: options.transport,
      log,
      backend: options.backend,
      device: options.device ?? null,
    });
  } finally {
    if (options.setup === undefined) setup.model.dispose();
  }
}

/** Options of {@linkcode trainInProcess}. */
export interface TrainInProcessOptions {
  /** The job's config; the PS and `train.workers` workers run from it. */
  config: JobConfig;
  /** Run id: one token of letters, digits, `_` and `-`. */
  runId: string;
  /** Results folder (created): metrics, checkpoint, summary and model. */
  outDir: string;
  /** Backend name for the summary (the caller selects it). */
  backend: string;
  /** Receives every role's lines. @default stderr, role `in-process` */
  log?: Logger;
  /** The in-process bus's message size limit. */
  maxPayloadBytes?: number;
  /**
   * Called once, after the roles start, with a connection of its own to the
   * bus: tests subscribe with it (e.g. to the weights, to act when a step
   * begins) and inject messages.
   */
  inject?: (transport: Transport) => void;
}

/**
 * Runs the parameter server and every worker in this process over the
 * in-process transport: the same code and the same bytes as over NATS,
 * for deterministic single-node tests.
 */
export async function trainInProcess(
  options: TrainInProcessOptions,
): Promise<RunSummary> {
  const { config, runId, outDir, backend } = options;
  const log = options.log ?? createLogger({ runId, role: "in-process" });
  const hub = new InProcessHub(
    options.maxPayloadBytes === undefined
      ? {}
      : { maxPayloadBytes: options.maxPayloadBytes },
  );
  const transports: Transport[] = [];
  const connect = () => {
    const t = hub.connect();
    transports.push(t);
    return t;
  };

  try {
    const workers = Array.from(
      { length: config.train.workers },
      (_, rank) =>
        runWorkerRole({
          config,
          runId,
          rank,
          transport: connect(),
          log: log.child(`worker ${rank}`),
          backend,
        }),
    );
    const ps = runPsRole({
      config,
      runId,
      transport: connect(),
      log: log.child("ps"),
      outDir,
      backend,
    });
    if (options.inject) options.inject(connect());

    const [summary] = await Promise.all([ps, ...workers]);
    return summary as RunSummary;
  } finally {
    for (const t of transports) await t.close();
  }
}
