/**
 * Starts a job on this machine: a nats-server on a free loopback port, the
 * parameter server and N workers as child processes of this one. Children
 * inherit stdout/stderr, so their tagged log lines interleave in one
 * terminal. Ctrl-C, a failing child or the end of the run tears everything
 * down: workers, PS, then the server.
 *
 * @module
 */
import { startNatsServer } from "../src/transport/mod.ts";
import { deviceEnvForGpu } from "../src/backend/mod.ts";
import type { Logger } from "../src/log.ts";

/** Options of {@linkcode launchLocalCluster}. */
export interface LaunchOptions {
  runId: string;
  /** Resolved job config file every child reads. */
  configPath: string;
  workers: number;
  outDir: string;
  /** Backend flag for the children. */
  backend: string;
  /** One worker per listed GPU. */
  gpus: string[] | null;
  resume: string | null;
  verbose: boolean;
  log: Logger;
}

const MAIN = new URL("./main.ts", import.meta.url).pathname;

function spawnRole(args: string[], env: Record<string, string> = {}) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", MAIN, ...args],
    env,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
}

/** Runs the job to its end; resolves with the PS's exit code. */
export async function launchLocalCluster(
  options: LaunchOptions,
): Promise<number> {
  const { runId, configPath, workers, log } = options;
  const server = await startNatsServer();
  log.info(`nats-server pid ${server.pid} listening on ${server.url}`);

  const common = [
    "--config",
    configPath,
    "--nats",
    server.url,
    "--run-id",
    runId,
    "--backend",
    options.backend,
    ...(options.verbose ? ["--verbose"] : []),
  ];
  const children: { name: string; process: Deno.ChildProcess }[] = [];
  let stopping = false;

  const stopAll = async (why: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`stopping the cluster: ${why}`);
    for (const c of children) {
      try {
        c.process.kill("SIGTERM");
      } catch {
        // Already exited: nothing to stop.
      }
    }
    const killTimer = setTimeout(() => {
      for (const c of children) {
        try {
          c.process.kill("SIGKILL");
        } catch {
          // Already exited.
        }
      }
    }, 10_000);
    await Promise.allSettled(children.map((c) => c.process.status));
    clearTimeout(killTimer);
  };

  const onSignal = () => void stopAll("interrupted by a signal");
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  try {
    const ps = spawnRole([
      "ps",
      ...common,
      "--out",
      options.outDir,
      ...(options.resume ? ["--resume", options.resume] : []),
    ]);
    children.push({ name: "ps", process: ps });

    for (let rank = 0; rank < workers; rank++) {
      const gpu = options.gpus?.[rank];
      const env = gpu === undefined
        ? {}
        : deviceEnvForGpu(options.backend as "tensorflow", gpu);
      if (gpu !== undefined) {
        log.info(`worker ${rank} gets GPU ${gpu} (${JSON.stringify(env)})`);
      }
      const worker = spawnRole([
        "worker",
        ...common,
        "--rank",
        String(rank),
        ...(gpu === undefined ? [] : ["--gpus", gpu]),
      ], env);
      children.push({ name: `worker ${rank}`, process: worker });
    }

    // The run ends when the PS ends; a worker dying first ends it too.
    const exits = children.map((c) =>
      c.process.status.then((status) => ({ name: c.name, status }))
    );
    const first = await Promise.race(exits);
    if (first.name !== "ps" && !first.status.success && !stopping) {
      log.error(
        `${first.name} exited with code ${first.status.code}; ` +
          "stopping the run; the PS's last checkpoint (written at each " +
          "epoch end and every train.checkpointEverySteps) is in " +
          `${options.outDir}/checkpoint.msgpack if one was written yet`,
      );
      await stopAll(`${first.name} failed`);
      return first.status.code || 1;
    }

    const psStatus = await ps.status;
    const grace = setTimeout(
      () => void stopAll("workers still running after the PS ended"),
      15_000,
    );
    await Promise.allSettled(children.map((c) => c.process.status));
    clearTimeout(grace);
    return psStatus.code;
  } finally {
    await stopAll("run finished");
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await server.stop();
    log.info("nats-server stopped");
  }
}
