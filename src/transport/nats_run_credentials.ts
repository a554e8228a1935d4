/**
 * Per-run NATS users: one for the parameter server, one per worker rank,
 * each with a random password and subject permissions that confine it to
 * its role in its run. The local launcher starts nats-server with them;
 * `nats-users` writes them out for a server shared by several machines.
 *
 * A worker of rank r may publish only `hello.r` and `grads.r` and may
 * subscribe only to `welcome.r`, `resend.r`, `weights` and `control` of
 * its run. The PS may publish and subscribe to anything under its run.
 *
 * @module
 */

import type {
  NatsPermissions,
  NatsServerAuthorization,
} from "./nats_server_config.ts";
import type { RunSubjects } from "./subjects.ts";

/** One user's login. */
export interface RunUser {
  /** The user name, `<run>-ps` or `<run>-worker-<rank>`. */
  readonly user: string;
  /** Its random password (43 base64url characters, 256 bits). */
  readonly password: string;
}

/** The logins of one run. */
export interface RunCredentials {
  /** The run they belong to. */
  readonly runId: string;
  /** The parameter server's login. */
  readonly ps: RunUser;
  /** Each worker's login, indexed by rank. */
  readonly workers: readonly RunUser[];
}

const PASSWORD_BYTES = 32;

/**
 * Generates the logins of run `runId`: a PS user and users for ranks
 * `0 .. workers - 1`, each with a fresh random password.
 *
 * @throws {RangeError} When `workers` is not a non-negative integer.
 *
 * @example
 * ```ts
 * import { generateRunCredentials } from "./nats_run_credentials.ts";
 *
 * const credentials = generateRunCredentials("r1", { workers: 2 });
 * console.assert(credentials.workers[1].user === "r1-worker-1");
 * ```
 */
export function generateRunCredentials(
  runId: string,
  options: { workers: number },
): RunCredentials {
  const { workers } = options;

  if (!Number.isInteger(workers) || workers < 0) {
    throw new RangeError(
      "Cannot generate NATS users: workers must be a non-negative " +
        `integer, received ${workers}`,
    );
  }
  return {
    runId,
    ps: { user: `${runId}-ps`, password: randomPassword() },
    workers: Array.from({ length: workers }, (_, rank) => ({
      user: `${runId}-worker-${rank}`,
      password: randomPassword(),
    })),
  };
}

/** What the PS may do: anything under its run (`<prefix>.<run>.>`). */
export function psPermissions(run: RunSubjects): NatsPermissions {
  return { publish: [run.all], subscribe: [run.all] };
}

/**
 * What worker `rank` may do: publish its own `hello` (join, heartbeat) and
 * `grads`; receive its own `welcome` and `resend`, and the run's
 * `weights` and `control`.
 */
export function workerPermissions(
  run: RunSubjects,
  rank: number,
): NatsPermissions {
  return {
    publish: [run.hello(rank), run.grads(rank)],
    subscribe: [run.welcome(rank), run.resend(rank), run.weights, run.control],
  };
}

/**
 * The `authorization` a nats-server needs to admit `credentials`, each
 * user confined by {@linkcode psPermissions} or
 * {@linkcode workerPermissions} to `run`.
 *
 * @throws {RangeError} When `run` is not the credentials' run.
 */
export function runAuthorization(
  credentials: RunCredentials,
  run: RunSubjects,
): NatsServerAuthorization {
  if (!run.all.endsWith(`.${credentials.runId}.>`)) {
    throw new RangeError(
      `Cannot build NATS users: the credentials are run ` +
        `${credentials.runId}'s, the subjects ${run.all}`,
    );
  }
  return {
    users: [
      { ...credentials.ps, permissions: psPermissions(run) },
      ...credentials.workers.map((worker, rank) => ({
        ...worker,
        permissions: workerPermissions(run, rank),
      })),
    ],
  };
}

function randomPassword(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(PASSWORD_BYTES));
  const base64 = btoa(String.fromCharCode(...bytes));
  return base64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
