/**
 * dptrain's command line: `demo`, `cluster`, `ps` and `worker`.
 *
 * - `demo`: the reference fine-tuning of MobileNetV2 on the bundled flower
 *   photos, by a parameter server and 2 workers over a local nats-server.
 * - `cluster`: the same launcher for any config and worker count.
 * - `ps`, `worker`: one role against a given NATS URL, for jobs that span
 *   machines.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import {
  applyOverrides,
  type JobConfig,
  loadJobConfig,
  parseJobConfig,
} from "../src/config.ts";
import { createLogger, type Logger } from "../src/log.ts";
import { formatImageFolderEvent, loadImageFolder } from "../src/data/mod.ts";
import {
  connectNats,
  describeNatsAccess,
  loadNatsAccess,
  type NatsAccess,
  NatsAccessError,
} from "../src/transport/mod.ts";
import { type BackendChoice, selectBackend } from "../src/backend/mod.ts";
import { readCheckpoint } from "../src/train/checkpoint.ts";
import { runPsRole, runWorkerRole } from "../src/train/run_job.ts";
import { writeFileAtomic } from "../src/train/atomic_file.ts";
import {
  type CommandLine,
  COMMON_FLAGS,
  hasNatsAccessFlags,
  NATS_ACCESS_FLAGS,
  parseCommandLine,
  UsageError,
} from "./args.ts";
import { launchLocalCluster } from "./launcher.ts";
import { LAUNCHER_PIPE_ENV, watchLauncherPipe } from "./launcher_pipe.ts";
import { writeNatsUsers } from "./nats_users.ts";

const USAGE: Record<string, string> = {
  demo: `deno task demo [flags]

Fine-tunes an ImageNet MobileNetV2 on the bundled flower photos
(assets/data/flowers5) with the reference recipe: all layers trainable,
per-layer learning-rate multipliers, warm-up then exponential decay. Starts
nats-server on a free loopback port, the parameter server and 2 workers,
prints per-epoch progress, and writes metrics.jsonl, summary.json and the
model (tfjs LayersModel format) under --out.`,
  cluster: `deno task cluster [flags] [--gpus 0,1,...] [--resume CHECKPOINT]

Starts nats-server, the parameter server and --workers workers on this
machine for any config. --gpus starts one worker per listed device.
nats-server admits only this run's PS and workers, each with a fresh
password and only its own subjects; --no-auth turns that off (debugging).`,
  ps: `deno task ps --nats URL --run-id ID [flags] [--resume CHECKPOINT]

Runs the parameter server of a job against an existing NATS server. Start
the workers (deno task worker) with the same config, flags and run id.`,
  worker: `deno task worker --nats URL --run-id ID --rank R [flags]

Runs worker R of a job against an existing NATS server. The parameter
server refuses a worker whose config differs from its own.`,
  "nats-users":
    `deno run -A cluster/main.ts nats-users --run-id ID --workers N --out DIR

Writes NATS logins for a job that spans machines: DIR/nats-users.conf, an
authorization block for the server's config (include it), and one password
file per role (DIR/ps.password, DIR/worker-R.password), all mode 0600. Each
worker's user may publish only its own hello and grads subjects. Prints the
flags each role then needs. See docs/security.md.`,
};

function usage(command: string): string {
  if (command === "nats-users") return USAGE[command]!;
  const text =
    `${
      USAGE[command]
    }\n\n${COMMON_FLAGS}\n  --nats URL           NATS server (ps, worker)\n` +
    `  --rank R             worker rank (worker)\n` +
    `  --gpus LIST          one worker per device id (cluster)\n` +
    `  --resume FILE        continue from a checkpoint.msgpack (ps, cluster)\n` +
    `  --no-auth            nats-server without authorization (cluster)`;
  return command === "ps" || command === "worker"
    ? `${text}\n\n${NATS_ACCESS_FLAGS}`
    : text;
}

function newRunId(): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(
    /\..*/,
    "",
  ).replace("T", "-");
  return `${stamp}-${crypto.randomUUID().slice(0, 4)}`;
}

async function resolveConfig(cli: CommandLine): Promise<JobConfig> {
  const base = cli.config === null
    ? parseJobConfig({})
    : await loadJobConfig(cli.config);
  return applyOverrides(base, cli.overrides);
}

function requireFlag<T>(value: T | null, flag: string, command: string): T {
  if (value === null) {
    throw new UsageError(`${command} needs ${flag} (see --help)`);
  }
  return value;
}

async function chooseBackend(config: JobConfig, log: Logger, gpu?: string) {
  const report = await selectBackend(config.train.backend as BackendChoice, {
    log: (m) => log.debug(m),
    ...(gpu === undefined ? {} : { gpu }),
  });
  for (const s of report.skipped) {
    log.info(`backend ${s.backend} skipped: ${s.reason}`);
  }
  log.info(`backend ${report.name}: ${report.detail}`);
  return report;
}

async function runCluster(command: string, cli: CommandLine): Promise<number> {
  if (hasNatsAccessFlags(cli.natsAccess)) {
    throw new UsageError(
      `${command} starts its own nats-server with per-run logins; the ` +
        "--nats-* access flags are for ps and worker",
    );
  }
  const config = await resolveConfig(cli);
  const runId = cli.runId ?? newRunId();
  const outDir = config.train.out ?? `runs/${runId}`;
  const log = createLogger({ runId, role: "launcher" }, {
    level: cli.verbose ? "debug" : undefined,
  });
  await Deno.mkdir(outDir, { recursive: true });

  // Every child reads this file, so they cannot disagree on the config.
  const configPath = `${outDir}/job.json`;
  await writeFileAtomic(
    configPath,
    new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n"),
  );
  log.info(
    `${command}: ${config.train.workers} worker(s), MobileNetV2 alpha ` +
      `${config.model.alpha} at ${config.model.imageSize} px, weights ` +
      `${config.model.weights}, ${config.train.epochs} epochs, results in ` +
      outDir,
  );

  // Decode the images once here so the children all start from the cache.
  await loadImageFolder(config.data.root, {
    imageSize: config.model.imageSize,
    valFraction: config.data.valFraction,
    seed: config.train.seed,
    onCorrupt: config.data.onCorrupt,
    ...(config.data.cacheDir === null
      ? {}
      : { cacheDir: config.data.cacheDir }),
    log: (event) => log.info(formatImageFolderEvent(event)),
  });

  const gpus = cli.gpus;
  const workers = gpus ? gpus.length : config.train.workers;
  if (gpus && gpus.length !== config.train.workers) {
    throw new UsageError(
      `--gpus lists ${gpus.length} device(s) but the job has ` +
        `${config.train.workers} worker(s): pass --workers ${gpus.length}`,
    );
  }

  const code = await launchLocalCluster({
    runId,
    configPath,
    workers,
    outDir,
    backend: config.train.backend,
    gpus,
    resume: cli.resume,
    verbose: cli.verbose,
    noAuth: cli.noAuth,
    log,
  });
  if (code === 0) await printReport(outDir, log);
  return code;
}

async function printReport(outDir: string, log: Logger): Promise<void> {
  const summary = JSON.parse(await Deno.readTextFile(`${outDir}/summary.json`));
  const acc = summary.valAccuracy === null
    ? "n/a"
    : summary.valAccuracy.toFixed(3);
  const f1 = summary.macroF1 === null ? "n/a" : summary.macroF1.toFixed(3);
  log.info(
    `done: ${summary.steps} steps, ${summary.epochs.toFixed(2)} epochs in ` +
      `${summary.wallSeconds.toFixed(0)} s; validation accuracy ${acc}, ` +
      `macro-F1 ${f1}; weights sha256 ${summary.weightsSha256.slice(0, 16)}`,
  );
  log.info(
    `results: ${outDir}/summary.json, ${outDir}/metrics.jsonl, ` +
      `${outDir}/model/model.json`,
  );
}

async function runPs(cli: CommandLine): Promise<number> {
  const config = await resolveConfig(cli);
  const url = requireFlag(cli.nats, "--nats URL", "ps");
  const runId = requireFlag(cli.runId, "--run-id ID", "ps");
  const outDir = config.train.out ?? `runs/${runId}`;
  const log = createLogger({ runId, role: "ps" }, {
    level: cli.verbose ? "debug" : undefined,
  });

  followLauncher(log);
  const access = await roleAccess(cli, "ps", log);

  const backend = await chooseBackend(config, log);
  const resume = cli.resume ? await readCheckpoint(cli.resume) : undefined;
  if (resume) log.info(`resuming from ${cli.resume} at step ${resume.step}`);
  const transport = await connectNats({
    url,
    name: `dptrain-${runId}-ps`,
    access,
    log: (e) => log[e.level](e.message),
    // Keep trying while nats-server is down (a restart, a redeploy): the
    // run's own timeouts (heartbeats, stallAbortSeconds) decide when to
    // give up, not a count of reconnect attempts.
    maxReconnectAttempts: -1,
  });

  try {
    await runPsRole({
      config,
      runId,
      transport,
      log,
      outDir,
      backend: backend.name,
      resume,
    });
    return 0;
  } finally {
    await transport.close();
  }
}

async function runWorkerCommand(cli: CommandLine): Promise<number> {
  const config = await resolveConfig(cli);
  const url = requireFlag(cli.nats, "--nats URL", "worker");
  const runId = requireFlag(cli.runId, "--run-id ID", "worker");
  const rank = requireFlag(cli.rank, "--rank R", "worker");
  const log = createLogger({ runId, role: `worker ${rank}` }, {
    level: cli.verbose ? "debug" : undefined,
  });

  followLauncher(log);
  const access = await roleAccess(cli, "worker", log);

  const backend = await chooseBackend(config, log, cli.gpus?.[0]);
  const transport = await connectNats({
    url,
    name: `dptrain-${runId}-worker-${rank}`,
    access,
    log: (e) => log[e.level](e.message),
    // Keep trying while nats-server is down (a restart, a redeploy): the
    // run's own timeouts (heartbeats, stallAbortSeconds) decide when to
    // give up, not a count of reconnect attempts.
    maxReconnectAttempts: -1,
  });

  try {
    const result = await runWorkerRole({
      config,
      runId,
      rank,
      transport,
      log,
      backend: backend.name,
      device: backend.device ?? null,
    });
    const rejected = Object.entries(result.rejections)
      .filter(([, n]) => n > 0)
      .map(([reason, n]) => `${reason} ${n}`);
    log.info(
      `worked ${result.steps} steps; dropped messages: ` +
        (rejected.length > 0 ? rejected.join(", ") : "none"),
    );
    return 0;
  } finally {
    await transport.close();
  }
}

/** Exits when the launcher that started this process is gone, if one did. */
function followLauncher(log: Logger): void {
  if (Deno.env.get(LAUNCHER_PIPE_ENV) !== "1") return;
  watchLauncherPipe((why) => {
    log.error(`the launcher is gone (${why}); exiting`);
    Deno.exit(1);
  });
}

/** The NATS access of `ps` or `worker`, from flags and `DPTRAIN_NATS_*`. */
async function roleAccess(
  cli: CommandLine,
  command: string,
  log: Logger,
): Promise<NatsAccess> {
  if (cli.noAuth) {
    throw new UsageError(
      `--no-auth is for cluster and demo; ${command} uses the access the ` +
        "server asks for",
    );
  }
  const access = await loadNatsAccess(cli.natsAccess, {
    warn: (message) => log.warn(message),
  });
  log.info(`nats access: ${describeNatsAccess(access)}`);
  return access;
}

async function runNatsUsers(cli: CommandLine): Promise<number> {
  const runId = requireFlag(cli.runId, "--run-id ID", "nats-users");
  const workers = requireFlag(
    cli.overrides.workers ?? null,
    "--workers N",
    "nats-users",
  );
  const outDir = requireFlag(
    cli.overrides.out ?? null,
    "--out DIR",
    "nats-users",
  );
  if (!Number.isInteger(workers) || workers < 1) {
    throw new UsageError(
      `nats-users: --workers must be a positive integer, received ${workers}`,
    );
  }
  const written = await writeNatsUsers({ runId, workers, outDir });
  console.log(written.instructions);
  return 0;
}

/** Runs one command; returns the process exit code. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (!command || !(command in USAGE) || command === "--help") {
    console.log(
      `usage: deno task demo | cluster | ps | worker [flags], or ` +
        `cluster/main.ts nats-users; ` +
        `add --help to any for details`,
    );
    return command === "--help" || command === "-h" ? 0 : 2;
  }

  let cli: CommandLine;
  try {
    cli = parseCommandLine(rest);
  } catch (error) {
    console.error(
      `${command}: ${(error as Error).message}\n\n${usage(command)}`,
    );
    return 2;
  }
  if (cli.help) {
    console.log(usage(command));
    return 0;
  }

  try {
    switch (command) {
      case "demo":
      case "cluster":
        return await runCluster(command, cli);
      case "ps":
        return await runPs(cli);
      case "nats-users":
        return await runNatsUsers(cli);
      default:
        return await runWorkerCommand(cli);
    }
  } catch (error) {
    const e = error as Error;
    console.error(`${command}: ${e.name}: ${e.message}`);
    if (Deno.env.get("DPTRAIN_LOG") === "debug" && e.stack) {
      console.error(e.stack);
    }
    const usage = error instanceof UsageError ||
      error instanceof NatsAccessError;
    return usage ? 2 : 1;
  }
}

if (import.meta.main) {
  // tfjs takes Deno for Node.js and prints a banner about tfjs-node; the
  // chosen backend is logged by us instead.
  tf.env().set("PROD", true);
  Deno.exit(await main(Deno.args));
}
