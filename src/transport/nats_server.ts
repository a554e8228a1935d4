/**
 * Starts a local `nats-server` on a free loopback port: for tests, and for
 * the launcher's single-machine runs.
 *
 * @module
 */

import { join } from "node:path";
import {
  type NatsServerAuthorization,
  type NatsServerOperator,
  type NatsServerTls,
  renderNatsServerConfig,
} from "./nats_server_config.ts";

/** Defaults of {@linkcode NatsServerOptions}. */
export const NATS_SERVER_DEFAULTS = {
  /** The address the server listens on. */
  host: "127.0.0.1",
  /** How long the server may take to write its ports file. */
  startTimeoutMs: 5_000,
  /** How long `stop()` waits after SIGTERM before SIGKILL. */
  stopTimeoutMs: 5_000,
} as const;

// The last bytes of the server's log kept for error messages.
const STDERR_TAIL_BYTES = 16 * 1024;
const POLL_INTERVAL_MS = 20;

/** Options of {@linkcode startNatsServer}. */
export interface NatsServerOptions {
  /**
   * The server's `max_payload`, written to a config file. NATS refuses
   * values above its `max_pending` (64 MiB). @default the server's (1 MiB)
   */
  maxPayloadBytes?: number;
  /** The `nats-server` executable. @default the first one on PATH */
  binaryPath?: string;
  /** The address to listen on. @default NATS_SERVER_DEFAULTS.host */
  host?: string;
  /**
   * The client port; a fixed one lets a restarted server take over its
   * predecessor's clients. @default -1 (the kernel picks a free port)
   */
  port?: number;
  /**
   * How long to wait for the ports file, in ms.
   * @default NATS_SERVER_DEFAULTS.startTimeoutMs
   */
  startTimeoutMs?: number;
  /**
   * Who may connect and what each user may publish and subscribe to.
   * @default none: any client may connect and do anything
   */
  authorization?: NatsServerAuthorization;
  /** TLS on the client port; plain TCP is then refused. @default none */
  tls?: NatsServerTls;
  /**
   * Operator mode: users log in with creds files (JWT and seed) that an
   * account of this operator signed. Excludes `authorization`.
   * @default none
   */
  operator?: NatsServerOperator;
  /**
   * Whether the server should die with this process, even when this
   * process is killed with SIGKILL and cannot stop it. Linux only: the
   * server is started through `setpriv --pdeathsig TERM` when `setpriv`
   * is on PATH, and without it otherwise (`NatsServer.exitsWithParent`
   * tells which).
   * @default false
   */
  exitWithParent?: boolean;
}

/** A running server. */
export interface NatsServer {
  /** The client URL, such as `nats://127.0.0.1:41234`. */
  readonly url: string;
  /** The port the server chose. */
  readonly port: number;
  /** The server's process id. */
  readonly pid: number;
  /**
   * The server's private folder (mode 0700): its ports file, and its
   * config file until the server listens. Removed by `stop()`.
   */
  readonly dir: string;
  /** Whether the server dies with this process (`exitWithParent`). */
  readonly exitsWithParent: boolean;
  /** Stops the server (SIGTERM, then SIGKILL) and removes its files. */
  stop(): Promise<void>;
}

/** The server could not be started; carries the end of its log. */
export class NatsServerError extends Error {
  /** Always `"NatsServerError"`. */
  override readonly name = "NatsServerError";
  /** The last bytes the server wrote to stderr. */
  readonly stderr: string;
  /** The server's exit code, when it exited. */
  readonly exitCode: number | undefined;

  /** Builds the error from its message and the server's log. */
  constructor(
    message: string,
    options: { stderr: string; exitCode?: number; cause?: unknown },
  ) {
    super(message, { cause: options.cause });
    this.stderr = options.stderr;
    this.exitCode = options.exitCode;
  }
}

/**
 * Spawns `nats-server` on `host` with port -1 (the kernel picks a free
 * one) unless told otherwise, and reads the real port from the server's
 * ports file, polling until `startTimeoutMs` while watching for an early
 * exit.
 *
 * Options that need a config file (`maxPayloadBytes`, `authorization`,
 * `tls`, `operator`) go to one written with mode 0600 in the server's
 * private 0700 folder; it is removed as soon as the server listens (the
 * server reads it once, at start), so passwords lie on disk for well under
 * a second.
 *
 * @throws {NatsServerError} When the binary is missing, exits early or
 *   writes no ports file in time; the message includes its stderr.
 * @throws {RangeError} For an option that cannot be written to the
 *   config file, naming it.
 *
 * @example
 * ```ts ignore
 * const server = await startNatsServer({ maxPayloadBytes: 64 * 1024 });
 * try {
 *   console.log(server.url);
 * } finally {
 *   await server.stop();
 * }
 * ```
 */
export async function startNatsServer(
  options: NatsServerOptions = {},
): Promise<NatsServer> {
  const {
    maxPayloadBytes,
    binaryPath = findOnPath("nats-server"),
    host = NATS_SERVER_DEFAULTS.host,
    port = -1,
    startTimeoutMs = NATS_SERVER_DEFAULTS.startTimeoutMs,
    authorization,
    tls,
    operator,
    exitWithParent = false,
  } = options;

  if (
    maxPayloadBytes !== undefined &&
    (!Number.isInteger(maxPayloadBytes) || maxPayloadBytes < 1)
  ) {
    throw new RangeError(
      "Cannot start nats-server: maxPayloadBytes must be a positive " +
        `integer, received ${maxPayloadBytes}`,
    );
  }
  const configText = renderNatsServerConfig({
    maxPayloadBytes,
    authorization,
    tls,
    operator,
  });
  if (binaryPath === undefined) {
    throw new NatsServerError(
      "Cannot start nats-server: no nats-server on PATH " +
        `(${Deno.env.get("PATH") ?? ""}); install it with ` +
        "`apt-get install nats-server`",
      { stderr: "" },
    );
  }

  const dir = await Deno.makeTempDir({ prefix: "dptrain-nats-" });
  const args = [
    "--addr",
    host,
    "--port",
    String(port),
    "--ports_file_dir",
    dir,
  ];
  let configPath: string | undefined;
  if (configText !== undefined) {
    configPath = join(dir, "nats.conf");
    // createNew: the mode applies only to a file this call creates.
    await Deno.writeTextFile(configPath, configText, {
      mode: 0o600,
      createNew: true,
    });
    args.push("--config", configPath);
  }

  const setpriv = exitWithParent && Deno.build.os === "linux"
    ? findOnPath("setpriv")
    : undefined;
  let child: Deno.ChildProcess;
  try {
    // setpriv sets the parent-death signal and then execs the server, so
    // the pid stays the server's.
    child = new Deno.Command(setpriv ?? binaryPath, {
      args: setpriv ? ["--pdeathsig", "TERM", binaryPath, ...args] : args,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw new NatsServerError(
      `Cannot start nats-server: spawning ${binaryPath} failed`,
      { stderr: "", cause: error },
    );
  }

  const server = new RunningServer({ child, dir });
  try {
    const url = await server.waitForPortsFile(startTimeoutMs);
    if (configPath !== undefined) await Deno.remove(configPath);
    return {
      url,
      port: Number(new URL(url).port),
      pid: child.pid,
      dir,
      exitsWithParent: setpriv !== undefined,
      stop: () => server.stop(),
    };
  } catch (error) {
    await server.stop();
    throw error;
  }
}

class RunningServer {
  readonly #process: Deno.ChildProcess;
  readonly #dir: string;
  readonly #stderrPump: Promise<void>;
  #stderrTail = new Uint8Array(0);
  #exitCode: number | undefined;
  #stopping: Promise<void> | undefined;

  constructor(options: { child: Deno.ChildProcess; dir: string }) {
    this.#process = options.child;
    this.#dir = options.dir;
    this.#stderrPump = this.#pumpStderr();
    this.#process.status.then((status) => this.#exitCode = status.code);
  }

  get stderr(): string {
    return new TextDecoder().decode(this.#stderrTail);
  }

  async waitForPortsFile(startTimeoutMs: number): Promise<string> {
    const deadline = Date.now() + startTimeoutMs;

    while (Date.now() < deadline) {
      const url = await this.#readClientUrl();
      if (url !== undefined) return url;

      if (await this.#exitsWithin(POLL_INTERVAL_MS)) {
        await this.#stderrPump;
        throw new NatsServerError(
          `Cannot start nats-server: it exited with code ${this.#exitCode} ` +
            `before listening; stderr:\n${this.stderr}`,
          { stderr: this.stderr, exitCode: this.#exitCode },
        );
      }
    }
    throw new NatsServerError(
      `Cannot start nats-server: no ports file after ${startTimeoutMs} ms; ` +
        `stderr:\n${this.stderr}`,
      { stderr: this.stderr },
    );
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    if (this.#exitCode === undefined) {
      this.#signal("SIGTERM");
      const exited = await this.#exitsWithin(
        NATS_SERVER_DEFAULTS.stopTimeoutMs,
      );
      if (!exited) this.#signal("SIGKILL");
    }
    await this.#process.status;
    await this.#stderrPump;
    await Deno.remove(this.#dir, { recursive: true });
  }

  #signal(signal: Deno.Signal): void {
    try {
      this.#process.kill(signal);
    } catch (error) {
      // The process may exit between the check and the kill.
      if (!(error instanceof TypeError)) throw error;
    }
  }

  async #pumpStderr(): Promise<void> {
    for await (const bytes of this.#process.stderr) {
      const joined = new Uint8Array(this.#stderrTail.length + bytes.length);
      joined.set(this.#stderrTail);
      joined.set(bytes, this.#stderrTail.length);
      this.#stderrTail = joined.slice(-STDERR_TAIL_BYTES);
    }
  }

  /** Whether the process exits within `ms`; leaves no timer behind. */
  async #exitsWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });

    try {
      return await Promise.race([
        this.#process.status.then(() => true),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  // nats-server names the file <executable>_<pid>.ports.
  async #readClientUrl(): Promise<string | undefined> {
    let text: string | undefined;
    for await (const entry of Deno.readDir(this.#dir)) {
      if (entry.name.endsWith(`_${this.#process.pid}.ports`)) {
        text = await Deno.readTextFile(join(this.#dir, entry.name));
      }
    }
    if (text === undefined) return undefined;

    // The server may be halfway through writing the file: retry later.
    try {
      const ports = JSON.parse(text) as { nats?: unknown };
      const urls = ports.nats;
      return Array.isArray(urls) && typeof urls[0] === "string"
        ? urls[0]
        : undefined;
    } catch (error) {
      if (error instanceof SyntaxError) return undefined;
      throw error;
    }
  }
}

function findOnPath(name: string): string | undefined {
  const directories = (Deno.env.get("PATH") ?? "").split(":");

  for (const directory of directories.filter((entry) => entry !== "")) {
    const candidate = join(directory, name);
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) {
        return candidate;
      }
    } catch (error) {
      const missing = error instanceof Deno.errors.NotFound ||
        error instanceof Deno.errors.NotADirectory ||
        error instanceof Deno.errors.PermissionDenied;
      if (!missing) throw error;
    }
  }
  return undefined;
}
