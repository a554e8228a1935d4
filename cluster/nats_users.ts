/**
 * `nats-users`: per-run NATS logins for a job that spans machines, written
 * as files an operator copies out: an `authorization` block to include in
 * the server's config, and one password file per role.
 *
 * @module
 */
import { join, resolve } from "node:path";
import {
  DEFAULT_SUBJECT_PREFIX,
  generateRunCredentials,
  type NatsServerAuthorization,
  renderNatsServerConfig,
  runAuthorization,
  subjects,
} from "../src/transport/mod.ts";

/** Options of {@linkcode writeNatsUsers}. */
export interface WriteNatsUsersOptions {
  /** The run the logins are for. */
  runId: string;
  /** Worker ranks `0 .. workers - 1` get a login. */
  workers: number;
  /** The folder to write to; created with mode 0700 if missing. */
  outDir: string;
  /** The subject prefix. @default DEFAULT_SUBJECT_PREFIX */
  prefix?: string;
}

/** What {@linkcode writeNatsUsers} wrote. */
export interface WrittenNatsUsers {
  /** The `authorization` block's file, `<outDir>/nats-users.conf`. */
  usersFile: string;
  /** The password file of each role: `ps`, `worker-0`, ... */
  passwordFiles: Record<string, string>;
  /** The authorization the users file holds. */
  authorization: NatsServerAuthorization;
  /** What to do with the files, for the operator. */
  instructions: string;
}

/**
 * Generates the logins of a run and writes them under `outDir`, every file
 * with mode 0600; refuses to overwrite an existing file, so that logins in
 * use are not replaced by accident.
 *
 * @throws {Deno.errors.AlreadyExists} When a file is already there; the
 *   message names it.
 */
export async function writeNatsUsers(
  options: WriteNatsUsersOptions,
): Promise<WrittenNatsUsers> {
  const { runId, workers, outDir, prefix = DEFAULT_SUBJECT_PREFIX } = options;
  const credentials = generateRunCredentials(runId, { workers });
  const authorization = runAuthorization(
    credentials,
    subjects(prefix, runId),
  );

  await Deno.mkdir(outDir, { recursive: true, mode: 0o700 });
  const usersFile = join(outDir, "nats-users.conf");
  await writeNew(
    usersFile,
    `# NATS logins of dptrain run ${runId}; include from the server config\n` +
      renderNatsServerConfig({ authorization }),
  );
  const passwordFiles: Record<string, string> = {};
  const logins = [
    { role: "ps", login: credentials.ps },
    ...credentials.workers.map((login, rank) => ({
      role: `worker-${rank}`,
      login,
    })),
  ];
  for (const { role, login } of logins) {
    passwordFiles[role] = join(outDir, `${role}.password`);
    await writeNew(passwordFiles[role], `${login.password}\n`);
  }

  const roleLine = (command: string, role: string, user: string) =>
    `  ${command} --nats URL --run-id ${runId} --nats-user ${user} ` +
    `--nats-password-file ${passwordFiles[role]}`;
  const instructions = [
    `Wrote ${usersFile} and ${logins.length} password files (mode 0600).`,
    "On the NATS server's machine, copy nats-users.conf next to the " +
    "server's config file and add the line",
    "  include nats-users.conf",
    "to it (nats-server resolves includes relative to its config file), " +
    "then restart or reload the server. Run the roles with:",
    roleLine("deno task ps", "ps", credentials.ps.user),
    ...credentials.workers.map((worker, rank) =>
      roleLine(
        `deno task worker --rank ${rank}`,
        `worker-${rank}`,
        worker.user,
      )
    ),
    "Copy each password file only to the machine that runs that role, " +
    "and use TLS between machines (see docs/security.md).",
  ].join("\n");

  return {
    usersFile: resolve(usersFile),
    passwordFiles,
    authorization,
    instructions,
  };
}

async function writeNew(path: string, text: string): Promise<void> {
  try {
    await Deno.writeTextFile(path, text, { mode: 0o600, createNew: true });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new Deno.errors.AlreadyExists(
        `Cannot write NATS logins: ${path} already exists; remove it or ` +
          "choose another --out",
      );
    }
    throw error;
  }
}
