/**
 * The {@linkcode Transport} over a real NATS server, through the npm `nats`
 * client.
 *
 * @module
 */

import { connect, type NatsConnection, type Status } from "nats";
import { checkSubject } from "./subjects.ts";
import {
  describeNatsAccess,
  type NatsAccess,
  natsConnectOptions,
} from "./nats_auth.ts";
import { explainConnectError } from "./_nats_connect_error.ts";
import { dropOrphanSocketErrors, watchTlsAlerts } from "./_socket_errors.ts";
import {
  type HandlerErrorCallback,
  type MessageHandler,
  reportHandlerError,
  type Subscription,
  type Transport,
  TransportError,
  type TransportLog,
  type TransportLogLevel,
} from "./transport.ts";

/** Defaults of {@linkcode ConnectNatsOptions}. */
export const NATS_DEFAULTS = {
  /** How long the first connection may take. */
  timeoutMs: 5_000,
  /** Reconnection attempts per server before giving up; -1 for ever. */
  maxReconnectAttempts: 10,
  /** The wait between two reconnection attempts to one server. */
  reconnectTimeWaitMs: 2_000,
} as const;

/** Options of {@linkcode connectNats}. */
export interface ConnectNatsOptions {
  /** The server, such as `nats://127.0.0.1:4222`. */
  url: string;
  /** The connection's name, shown by the server (`ps`, `worker-1`). */
  name?: string;
  /**
   * Credentials and TLS settings (see `loadNatsAccess`).
   * @default no credentials; TLS only if the server requires it
   */
  access?: NatsAccess;
  /** Receives connect, disconnect and reconnect events. */
  log?: TransportLog;
  /** Receives errors thrown by handlers. @default reportHandlerError */
  onHandlerError?: HandlerErrorCallback;
  /**
   * How long the first connection may take, in ms.
   * @default NATS_DEFAULTS.timeoutMs
   */
  timeoutMs?: number;
  /**
   * Reconnection attempts per server before `closed` settles; -1 for ever.
   * @default NATS_DEFAULTS.maxReconnectAttempts
   */
  maxReconnectAttempts?: number;
  /**
   * The wait between two attempts on one server, in ms.
   * @default NATS_DEFAULTS.reconnectTimeWaitMs
   */
  reconnectTimeWaitMs?: number;
}

/**
 * Connects to a NATS server. `maxPayloadBytes` is the server's
 * `max_payload`, from the INFO it sent on connect.
 *
 * While disconnected, the client buffers publishes and retries every
 * `reconnectTimeWaitMs`, logging each transition; when the attempts run
 * out, `closed` settles with the error.
 *
 * A publish or subscription the server forbids this connection's user is
 * not an exception (core NATS reports it later, asynchronously): the
 * server drops the message or ends the subscription, and the connection
 * logs an `error` entry naming the operation and the subject.
 *
 * The first call also stops two errors Deno's node:net raises on
 * sockets the client has let go of from ending the process (see
 * _socket_errors.ts): a late `ECONNRESET` read error and a late TLS alert.
 *
 * @throws {TransportError} `connect_failed`, naming the URL, the
 *   credentials presented (never their secrets) and why: authorization
 *   violation, untrusted TLS certificate, no TLS on the server, refused,
 *   timed out.
 *
 * @example
 * ```ts ignore
 * const transport = await connectNats({
 *   url: "nats://127.0.0.1:4222",
 *   name: "ps",
 *   log: ({ level, message }) => console.error(level, message),
 * });
 * ```
 */
export async function connectNats(
  options: ConnectNatsOptions,
): Promise<Transport> {
  const {
    url,
    name,
    access = {},
    log = () => {},
    onHandlerError = reportHandlerError,
    timeoutMs = NATS_DEFAULTS.timeoutMs,
    maxReconnectAttempts = NATS_DEFAULTS.maxReconnectAttempts,
    reconnectTimeWaitMs = NATS_DEFAULTS.reconnectTimeWaitMs,
  } = options;

  // TODO(#2): a PS receiving many workers' gradients at once can pass the
  // server's max_pending (64 MiB) and be cut off as a slow consumer; pace
  // the workers or raise max_pending before scaling past ~4 workers of
  // MobileNetV2 alpha 1.0.
  checkNoUserInfo(url);
  dropOrphanSocketErrors();
  const tlsAlerts = watchTlsAlerts();
  let nc: NatsConnection;
  try {
    const attempt = connect({
      servers: url,
      name,
      timeout: timeoutMs,
      maxReconnectAttempts,
      reconnectTimeWait: reconnectTimeWaitMs,
      ...natsConnectOptions(access),
    });
    const alerted = tlsAlerts.alert.then((alert): never => {
      // The attempt would only time out now; its outcome is moot.
      attempt.then((late) => late.close(), () => {});
      throw Object.assign(new Error(`received fatal alert: ${alert}`), {
        code: "TLS_ALERT",
      });
    });
    nc = await Promise.race([attempt, alerted]);
  } catch (error) {
    throw new TransportError({
      code: "connect_failed",
      message: `Cannot connect to NATS at ${url} with ` +
        `${describeNatsAccess(access)}: ` +
        explainConnectError(error, { access, timeoutMs }),
      cause: error,
    });
  } finally {
    tlsAlerts.stop();
  }

  const label = name ?? url;
  const transport = new NatsTransport({ nc, label, log, onHandlerError });
  log({
    level: "info",
    message: `nats ${label} connected to ${url} ` +
      `(server ${nc.info?.server_id ?? "?"}, max_payload ` +
      `${transport.maxPayloadBytes})`,
  });
  return transport;
}

// The nats client ignores credentials in the URL; refusing them beats
// connecting without them and failing with a puzzling authorization error.
function checkNoUserInfo(url: string): void {
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch (error) {
    // Not a URL (a bare host:port): the client reports it on connect.
    if (error instanceof TypeError) return;
    throw error;
  }
  if (parsed.username !== "" || parsed.password !== "") {
    throw new TransportError({
      code: "connect_failed",
      message: `Cannot connect to NATS at ${parsed.host}: credentials in ` +
        "the URL are not supported (and would show in process lists); " +
        "give them as options.access",
    });
  }
}

// How long `close()` lets the client deliver what is pending.
const CLOSE_DRAIN_MS = 5_000;

const STATUS_LEVELS: Record<string, TransportLogLevel> = {
  disconnect: "warn",
  reconnect: "info",
  reconnecting: "debug",
  update: "debug",
  ldm: "warn",
  error: "error",
  pingTimer: "debug",
  staleConnection: "warn",
};

class NatsTransport implements Transport {
  readonly closed: Promise<Error | undefined>;
  readonly #nc: NatsConnection;
  readonly #onHandlerError: HandlerErrorCallback;
  readonly #log: TransportLog;
  readonly #label: string;
  readonly #connectMaxPayloadBytes: number;
  readonly #statusLoop: Promise<void>;
  #closing: Promise<void> | undefined;

  constructor(options: {
    nc: NatsConnection;
    label: string;
    log: TransportLog;
    onHandlerError: HandlerErrorCallback;
  }) {
    const { nc, label, log } = options;
    this.#nc = nc;
    this.#onHandlerError = options.onHandlerError;
    this.#log = log;
    this.#label = label;
    this.#connectMaxPayloadBytes = nc.info?.max_payload ?? 0;
    const statuses = nc.status();
    this.#statusLoop = watchStatus(statuses, { label, log });
    this.closed = nc.closed().then((error) => {
      stopStatusIterator(statuses);
      log({
        level: error ? "error" : "info",
        message: `nats ${label} closed` +
          (error ? `: ${errorText(error)}` : ""),
      });
      return error ?? undefined;
    });
  }

  get maxPayloadBytes(): number {
    return this.#nc.info?.max_payload ?? this.#connectMaxPayloadBytes;
  }

  publish(subject: string, data: Uint8Array): void {
    this.#checkOpen(subject);
    checkSubject(subject, { wildcards: false });

    const limit = this.maxPayloadBytes;
    if (data.length > limit) {
      throw new TransportError({
        code: "max_payload_exceeded",
        subject,
        message: `Cannot publish on ${subject}: ${data.length} bytes is ` +
          `above the server's max_payload ${limit}`,
      });
    }
    try {
      this.#nc.publish(subject, data);
    } catch (error) {
      throw this.#translate(error, subject);
    }
  }

  subscribe(subject: string, handler: MessageHandler): Subscription {
    this.#checkOpen(subject);
    checkSubject(subject, { wildcards: true });

    const subscription = this.#nc.subscribe(subject, {
      callback: (error, message) => {
        // The status loop logs a permissions violation, with its subject.
        if (error?.code === "PERMISSIONS_VIOLATION") return;
        if (error) {
          this.#log({
            level: "error",
            message: `nats ${this.#label} subscription ${subject} failed: ` +
              errorText(error),
          });
          return;
        }
        this.#deliver(handler, message);
      },
    });
    return {
      unsubscribe: () => {
        if (!subscription.isClosed()) subscription.unsubscribe();
      },
    };
  }

  async flush(): Promise<void> {
    this.#checkOpen();
    try {
      await this.#nc.flush();
    } catch (error) {
      // The connection dropped while the ping was out, and the client is
      // reconnecting: what was published may be lost, as core NATS may
      // lose anything; dptrain's re-requests recover it. Only a closed
      // connection is an error here.
      if (isDisconnect(error) && !this.#nc.isClosed()) {
        this.#log({
          level: "warn",
          message: `nats ${this.#label} flush interrupted by a disconnect; ` +
            "messages in flight may be lost and will be asked for again",
        });
        return;
      }
      throw this.#translate(error);
    }
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    // Draining waits for the server; while the client is reconnecting it
    // could wait for ever, and a process ending on an error would hang.
    if (!this.#nc.isClosed()) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const drained = await Promise.race([
        this.#nc.drain().then(() => true, () => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), CLOSE_DRAIN_MS);
        }),
      ]);
      clearTimeout(timer);
      if (!drained && !this.#nc.isClosed()) {
        this.#log({
          level: "warn",
          message: `nats ${this.#label} could not drain within ` +
            `${CLOSE_DRAIN_MS} ms; closing without it`,
        });
        await this.#nc.close();
      }
    }
    await this.closed;
    await this.#statusLoop;
  }

  #deliver(
    handler: MessageHandler,
    message: { data: Uint8Array; subject: string },
  ): void {
    try {
      const result: unknown = handler(message.data, message.subject);
      if (result instanceof Promise) {
        result.catch((error) => this.#onHandlerError(error, message.subject));
      }
    } catch (error) {
      this.#onHandlerError(error, message.subject);
    }
  }

  #checkOpen(subject?: string): void {
    if (this.#closing !== undefined || this.#nc.isClosed()) {
      throw new TransportError({
        code: "closed",
        subject,
        message: `Cannot use NATS connection ${this.#label}: it is closed`,
      });
    }
  }

  #translate(error: unknown, subject?: string): Error {
    const code = (error as { code?: unknown } | undefined)?.code;
    if (code === "MAX_PAYLOAD_EXCEEDED") {
      return new TransportError({
        code: "max_payload_exceeded",
        subject,
        message: `Cannot publish on ${subject}: above the server's ` +
          "max_payload",
        cause: error,
      });
    }
    if (code === "CONNECTION_CLOSED" || code === "CONNECTION_DRAINING") {
      return new TransportError({
        code: "closed",
        subject,
        message: `Cannot use NATS connection ${this.#label}: it is closed`,
        cause: error,
      });
    }
    return error instanceof Error ? error : new Error(String(error));
  }
}

async function watchStatus(
  statuses: AsyncIterable<Status>,
  options: { label: string; log: TransportLog },
): Promise<void> {
  const { label, log } = options;

  for await (const status of statuses) {
    log({
      level: STATUS_LEVELS[status.type] ?? "info",
      message: `nats ${label} ${status.type}: ${describeStatus(status)}`,
    });
  }
}

// nats.js (2.29) leaves status iterators open after the connection closes;
// its iterator has a stop() that ends the loop, which the public type hides.
function stopStatusIterator(statuses: AsyncIterable<Status>): void {
  const iterator = statuses as { stop?: () => void };
  iterator.stop?.();
}

function describeStatus(status: Status): string {
  const context = status.permissionContext;
  if (context !== undefined) {
    return context.operation === "publish"
      ? "permissions violation: the server refused this user's publish " +
        `on ${context.subject} and dropped the message`
      : "permissions violation: the server refused this user's " +
        `subscription to ${context.subject} and ended it`;
  }
  return typeof status.data === "object"
    ? JSON.stringify(status.data)
    : String(status.data);
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isDisconnect(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "DISCONNECT" || code === "CONNECTION_REFUSED" ||
    code === "TIMEOUT";
}
