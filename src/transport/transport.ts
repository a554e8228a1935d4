/**
 * The message bus as the parameter server and workers see it: publish
 * bytes to a subject, subscribe to a subject. NATS and an in-process hub
 * implement it with the same semantics.
 *
 * @module
 */

/**
 * Receives one message. `data` is the message's bytes as delivered: a
 * view that may sit at any offset of a larger buffer, valid only during
 * the call unless copied (the wire decoder copies what it keeps).
 */
export type MessageHandler = (data: Uint8Array, subject: string) => void;

/** An active subscription. */
export interface Subscription {
  /** Stops delivery to its handler; messages not yet delivered are dropped. */
  unsubscribe(): void;
}

/**
 * A connection to the message bus.
 *
 * Semantics both implementations keep: delivery is asynchronous (never
 * inside `publish`), in publish order per publisher and subject, at most
 * once; every subscriber gets its own bytes; messages published before a
 * subscription exists are not delivered to it; a handler that throws is
 * reported to `onHandlerError` and does not stop delivery.
 */
export interface Transport {
  /**
   * The largest message the bus carries, in bytes: NATS's `max_payload`,
   * read from the server (it may change after a reconnect).
   */
  readonly maxPayloadBytes: number;

  /**
   * Settles when the connection is closed: with `undefined` after
   * `close()`, with the error when the bus closed it (reconnects exhausted).
   */
  readonly closed: Promise<Error | undefined>;

  /**
   * Sends `data` to every subscriber of `subject`. Returns at once; the
   * bytes may still be read until `flush()` resolves, so do not mutate them.
   *
   * @throws {TypeError} For a subject that is not a valid literal subject.
   * @throws {TransportError} `max_payload_exceeded` above
   *   `maxPayloadBytes`; `closed` after `close()`.
   */
  publish(subject: string, data: Uint8Array): void;

  /**
   * Delivers every message published on `subject` (NATS wildcards `*` and
   * `>` allowed) to `handler`, from now until unsubscribed or closed.
   *
   * @throws {TypeError} For an invalid subject.
   * @throws {TransportError} `closed` after `close()`.
   */
  subscribe(subject: string, handler: MessageHandler): Subscription;

  /**
   * Resolves when everything published so far has reached the bus (NATS:
   * the server answered a ping; in-process: every queued delivery ran).
   */
  flush(): Promise<void>;

  /**
   * Delivers what is pending, then closes the connection and every
   * subscription. Safe to call twice.
   */
  close(): Promise<void>;
}

/** Why a transport operation failed. */
export type TransportErrorCode =
  | "max_payload_exceeded"
  | "closed"
  | "connect_failed";

/** Options of the {@linkcode TransportError} constructor. */
export interface TransportErrorOptions {
  /** Why it failed. */
  code: TransportErrorCode;
  /** The sentence to show. */
  message: string;
  /** The subject involved, if any. */
  subject?: string;
  /** The lower-level error, if any. */
  cause?: unknown;
}

/**
 * A transport operation failed for a reason the caller can act on: shrink
 * the message, stop using a closed connection, retry the connection.
 */
export class TransportError extends Error {
  /** Always `"TransportError"`. */
  override readonly name = "TransportError";
  /** Why it failed. */
  readonly code: TransportErrorCode;
  /** The subject involved, if any. */
  readonly subject: string | undefined;

  /** Builds the error from its code and message. */
  constructor(options: TransportErrorOptions) {
    super(options.message, { cause: options.cause });
    this.code = options.code;
    this.subject = options.subject;
  }
}

/** The severity of a {@linkcode TransportLogEntry}. */
export type TransportLogLevel = "debug" | "info" | "warn" | "error";

/** One event of a transport's life: connect, disconnect, reconnect. */
export interface TransportLogEntry {
  /** How much it matters. */
  level: TransportLogLevel;
  /** A sentence naming the connection and the event. */
  message: string;
}

/** Receives a transport's log entries; the process decides where they go. */
export type TransportLog = (entry: TransportLogEntry) => void;

/**
 * Receives an error thrown by a message handler. The default passes it to
 * `reportError`, which ends a Deno process as an uncaught error would: a
 * throwing handler is a bug, not bad input (bad input is a `WireError` the
 * handler counts itself).
 */
export type HandlerErrorCallback = (error: unknown, subject: string) => void;

/** The default {@linkcode HandlerErrorCallback}. */
export function reportHandlerError(error: unknown): void {
  globalThis.reportError(error);
}
