/**
 * The launcher's policy for its children, apart from how they are
 * started, so that it can be tested with any processes:
 *
 * 1. The run is the PS's: it ends when the PS exits, and the launcher
 *    exits with the PS's code.
 * 2. A worker that exits while the PS runs is logged (a warning naming its
 *    rank, pid and exit code when it failed) and the run goes on: the PS
 *    notices the missing heartbeats and finishes with the survivors.
 * 3. Workers still running when the PS has ended get `workerGraceMs` to
 *    finish on their own, then are stopped.
 * 4. An abort (the launcher wires Ctrl-C and SIGTERM to it) stops every
 *    child: SIGTERM, then SIGKILL after `killAfterMs`.
 *
 * @module
 */
import type { Logger } from "../src/log.ts";

/** Defaults of {@linkcode SuperviseOptions}. */
export const SUPERVISE_DEFAULTS = {
  /** How long workers may run on after the PS has exited. */
  workerGraceMs: 15_000,
  /** How long a child may take to exit after SIGTERM before SIGKILL. */
  killAfterMs: 10_000,
} as const;

/** A worker process and its rank. */
export interface SupervisedWorker {
  readonly rank: number;
  readonly process: Deno.ChildProcess;
}

/** Options of {@linkcode superviseRun}. */
export interface SuperviseOptions {
  /** The parameter server process. */
  ps: Deno.ChildProcess;
  /** The worker processes. */
  workers: readonly SupervisedWorker[];
  /** Receives the events of the children. */
  log: Logger;
  /** Aborting it stops every child (Ctrl-C, SIGTERM). */
  signal?: AbortSignal;
  /**
   * How long workers may run on after the PS has exited, in ms.
   * @default SUPERVISE_DEFAULTS.workerGraceMs
   */
  workerGraceMs?: number;
  /**
   * How long a child may take to exit after SIGTERM, in ms.
   * @default SUPERVISE_DEFAULTS.killAfterMs
   */
  killAfterMs?: number;
}

/**
 * Waits for the run to end by the rules in the module doc and returns the
 * PS's exit code. Every child has exited when it resolves.
 */
export async function superviseRun(
  options: SuperviseOptions,
): Promise<number> {
  const {
    ps,
    workers,
    log,
    signal,
    workerGraceMs = SUPERVISE_DEFAULTS.workerGraceMs,
    killAfterMs = SUPERVISE_DEFAULTS.killAfterMs,
  } = options;
  const all = [ps, ...workers.map((w) => w.process)];
  let stopping: Promise<void> | undefined;
  let psRunning = true;
  let workersRunning = workers.length;

  const stopAll = (why: string): Promise<void> => {
    stopping ??= (async () => {
      log.info(`stopping the cluster: ${why}`);
      all.forEach((child) => kill(child, "SIGTERM"));
      const timer = setTimeout(
        () => all.forEach((child) => kill(child, "SIGKILL")),
        killAfterMs,
      );
      await Promise.allSettled(all.map((child) => child.status));
      clearTimeout(timer);
    })();
    return stopping;
  };
  const onAbort = () => void stopAll("interrupted by a signal");
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();

  const workerExits = workers.map(async ({ rank, process }) => {
    const status = await process.status;
    workersRunning--;
    if (stopping !== undefined || !psRunning) return;

    if (status.success) {
      log.info(`worker ${rank} (pid ${process.pid}) finished`);
    } else {
      log.warn(
        `worker ${rank} (pid ${process.pid}) exited with code ` +
          `${status.code}${status.signal ? ` (${status.signal})` : ""}; ` +
          "the run goes on without it",
      );
    }
    // A worker that finished was told to stop: the PS is ending too.
    if (workersRunning === 0 && !status.success) {
      log.warn(
        `no worker is running; the run goes on until the PS (pid ` +
          `${ps.pid}) ends`,
      );
    }
  });

  try {
    const psStatus = await ps.status;
    psRunning = false;
    if (stopping === undefined) {
      const level = psStatus.success ? "info" : "error";
      log[level](
        `ps (pid ${ps.pid}) exited with code ${psStatus.code}` +
          (psStatus.signal ? ` (${psStatus.signal})` : ""),
      );
    }

    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    if (workersRunning > 0 && stopping === undefined) {
      graceTimer = setTimeout(
        () => void stopAll("workers still running after the PS ended"),
        workerGraceMs,
      );
    }
    await Promise.all(workerExits);
    clearTimeout(graceTimer);
    await stopping;
    return psStatus.code;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

function kill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch (error) {
    // A child that has already exited cannot be signalled.
    if (!(error instanceof TypeError)) throw error;
  }
}
