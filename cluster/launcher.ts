/**
 * Starts a job on this machine: a nats-server on a free loopback port, the
 * parameter server and N workers as child processes of this one. Children
 * inherit stdout/stderr, so their tagged log lines interleave in one
 * terminal.
 *
 * Access: unless `noAuth`, the server admits only this run's users, with
 * fresh random passwords (see `generateRunCredentials`): the PS may use
 * every subject of the run, worker r only its own. Each child gets its
 * login in `DPTRAIN_NATS_USER` and `DPTRAIN_NATS_PASSWORD`, never on its
 * command line; the server reads them from a 0600 file that is removed as
 * soon as it listens.
 *
 * Lifetime (see supervisor.ts): the run ends when the PS exits, with its
 * code; a worker that dies is logged and the run goes on; Ctrl-C or
 * SIGTERM stops everything. Children exit on their own when this process
 * dies, even by SIGKILL: each reads a pipe on its stdin that closes with
 * this process (launcher_pipe.ts), and on Linux the server gets a
 * parent-death signal.
 *
 * @module
 */
import {
  DEFAULT_SUBJECT_PREFIX,
  generateRunCredentials,
  NATS_ACCESS_ENV,
  runAuthorization,
  type RunCredentials,
  type RunUser,
  startNatsServer,
  subjects,
} from "../src/transport/mod.ts";
import { deviceEnvForGpu } from "../src/backend/mod.ts";
import type { Logger } from "../src/log.ts";
import { LAUNCHER_PIPE_ENV } from "./launcher_pipe.ts";
import { type SupervisedWorker, superviseRun } from "./supervisor.ts";

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
  /**
   * Run nats-server without authorization: any process that can reach
   * its loopback port may join the run or disrupt it. For debugging.
   */
  noAuth: boolean;
  log: Logger;
}

const MAIN = new URL("./main.ts", import.meta.url).pathname;

// Variables of this process that must not reach a child: a login the user
// exported for `ps`/`worker` would clash with the one given here.
const NATS_ENV_NAMES: readonly string[] = Object.values(NATS_ACCESS_ENV);

function spawnRole(
  args: string[],
  options: { env: Record<string, string>; login: RunUser | undefined },
): Deno.ChildProcess {
  const inherited = Object.entries(Deno.env.toObject()).filter(
    ([name]) => !NATS_ENV_NAMES.includes(name),
  );
  const login: Record<string, string> = options.login === undefined ? {} : {
    [NATS_ACCESS_ENV.user]: options.login.user,
    [NATS_ACCESS_ENV.password]: options.login.password,
  };
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", MAIN, ...args],
    clearEnv: true,
    env: {
      ...Object.fromEntries(inherited),
      ...options.env,
      ...login,
      [LAUNCHER_PIPE_ENV]: "1",
    },
    stdin: "piped",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
}

/** Runs the job to its end; resolves with the PS's exit code. */
export async function launchLocalCluster(
  options: LaunchOptions,
): Promise<number> {
  const { runId, configPath, workers, log } = options;
  const credentials = options.noAuth
    ? undefined
    : generateRunCredentials(runId, { workers });
  const server = await startNatsServer({
    exitWithParent: true,
    ...(credentials === undefined ? {} : {
      authorization: runAuthorization(
        credentials,
        subjects(DEFAULT_SUBJECT_PREFIX, runId),
      ),
    }),
  });
  log.info(
    `nats-server pid ${server.pid} listening on ${server.url}, ` +
      (credentials === undefined
        ? "without authorization (--no-auth): any local process may join " +
          "or disrupt the run"
        : `admitting only this run's PS and ${workers} worker user(s)`),
  );
  if (!server.exitsWithParent) {
    log.debug("no setpriv on PATH: nats-server outlives a SIGKILLed launcher");
  }

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
  const children: Deno.ChildProcess[] = [];
  const interrupt = new AbortController();
  const onSignal = () => interrupt.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  try {
    const { ps, workers: workerProcesses } = spawnChildren(children, {
      ...options,
      common,
      credentials,
    });
    return await superviseRun({
      ps,
      workers: workerProcesses,
      log,
      signal: interrupt.signal,
    });
  } catch (error) {
    // Spawning failed part way: stop the children already started.
    children.forEach((child) => kill(child, "SIGTERM"));
    throw error;
  } finally {
    await Promise.allSettled(children.map((child) => child.status));
    await Promise.allSettled(children.map((child) => child.stdin.close()));
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await server.stop();
    log.info("nats-server stopped");
  }
}

/** Starts the PS and the workers, adding each to `children` at once. */
function spawnChildren(
  children: Deno.ChildProcess[],
  options: LaunchOptions & {
    common: string[];
    credentials: RunCredentials | undefined;
  },
): { ps: Deno.ChildProcess; workers: SupervisedWorker[] } {
  const { common, credentials, log } = options;
  const ps = spawnRole([
    "ps",
    ...common,
    "--out",
    options.outDir,
    ...(options.resume ? ["--resume", options.resume] : []),
  ], { env: {}, login: credentials?.ps });
  children.push(ps);

  const workers: SupervisedWorker[] = [];
  for (let rank = 0; rank < options.workers; rank++) {
    const gpu = options.gpus?.[rank];
    const env = gpu === undefined
      ? {}
      : deviceEnvForGpu(options.backend as "tensorflow", gpu);
    if (gpu !== undefined) {
      log.info(`worker ${rank} gets GPU ${gpu} (${JSON.stringify(env)})`);
    }
    const process = spawnRole([
      "worker",
      ...common,
      "--rank",
      String(rank),
      ...(gpu === undefined ? [] : ["--gpus", gpu]),
    ], { env, login: credentials?.workers[rank] });
    children.push(process);
    workers.push({ rank, process });
  }
  return { ps, workers };
}

function kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch (error) {
    // A child that has already exited cannot be signalled.
    if (!(error instanceof TypeError)) throw error;
  }
}
