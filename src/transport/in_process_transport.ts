/**
 * A message bus inside one process, with NATS's delivery semantics, for
 * deterministic single-node runs and tests.
 *
 * @module
 */

import { checkSubject, subjectMatches } from "./subjects.ts";
import {
  type HandlerErrorCallback,
  type MessageHandler,
  reportHandlerError,
  type Subscription,
  type Transport,
  TransportError,
} from "./transport.ts";

/** NATS's default `max_payload`, used unless configured otherwise. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;

/** Options of the {@linkcode InProcessHub} constructor. */
export interface InProcessHubOptions {
  /**
   * The largest message accepted, as a NATS server's `max_payload`.
   * @default DEFAULT_MAX_PAYLOAD_BYTES (1 MiB)
   */
  maxPayloadBytes?: number;
}

/** Options of {@linkcode InProcessHub.connect}. */
export interface InProcessConnectOptions {
  /** Receives errors thrown by handlers. @default reportHandlerError */
  onHandlerError?: HandlerErrorCallback;
}

interface HubSubscription {
  pattern: string;
  handler: MessageHandler;
  onHandlerError: HandlerErrorCallback;
  active: boolean;
}

interface Delivery {
  subscription: HubSubscription;
  data: Uint8Array;
  subject: string;
}

/**
 * The bus that several {@linkcode Transport}s share. Deliveries run from a
 * FIFO queue in microtasks, never inside `publish`, so a run over the hub is
 * as deterministic as the code driving it.
 *
 * Each subscriber receives its own copy of the bytes, placed at an odd
 * offset of its buffer: like a NATS client's view into its read buffer,
 * it punishes any code that views payload bytes as a `Float32Array` in
 * place.
 *
 * @example Two connections on one hub
 * ```ts
 * import { InProcessHub } from "./in_process_transport.ts";
 *
 * const hub = new InProcessHub({ maxPayloadBytes: 64 * 1024 });
 * const ps = hub.connect();
 * const worker = hub.connect();
 * const received: number[] = [];
 * worker.subscribe("dptrain.r1.weights", (data) => received.push(data[0]));
 * ps.publish("dptrain.r1.weights", new Uint8Array([7]));
 * await hub.flush();
 * console.assert(received[0] === 7);
 * await Promise.all([ps.close(), worker.close()]);
 * ```
 */
export class InProcessHub {
  /** The largest message accepted, in bytes. */
  readonly maxPayloadBytes: number;
  readonly #subscriptions = new Set<HubSubscription>();
  #queue: Delivery[] = [];
  #scheduled = false;
  #idleWaiters: (() => void)[] = [];

  /** Creates an empty hub. */
  constructor(options: InProcessHubOptions = {}) {
    const { maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES } = options;

    if (!Number.isInteger(maxPayloadBytes) || maxPayloadBytes < 1) {
      throw new RangeError(
        "Cannot create hub: maxPayloadBytes must be a positive integer, " +
          `received ${maxPayloadBytes}`,
      );
    }
    this.maxPayloadBytes = maxPayloadBytes;
  }

  /** Opens a new connection to the hub. */
  connect(options: InProcessConnectOptions = {}): Transport {
    const { onHandlerError = reportHandlerError } = options;

    return new InProcessTransport({
      maxPayloadBytes: this.maxPayloadBytes,
      publish: (subject, data) => this.#publish(subject, data),
      subscribe: (pattern, handler) => {
        const subscription = {
          pattern,
          handler,
          onHandlerError,
          active: true,
        };
        this.#subscriptions.add(subscription);
        return () => {
          subscription.active = false;
          this.#subscriptions.delete(subscription);
        };
      },
      flush: () => this.flush(),
    });
  }

  /** Resolves once every queued delivery has run. */
  flush(): Promise<void> {
    if (this.#queue.length === 0 && !this.#scheduled) {
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #publish(subject: string, data: Uint8Array): void {
    for (const subscription of this.#subscriptions) {
      if (!subjectMatches(subscription.pattern, subject)) continue;
      this.#queue.push({ subscription, data: copyAtOddOffset(data), subject });
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#queue.length === 0) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#drainBatch());
  }

  // One batch per microtask: what handlers publish waits for the next one,
  // so promise continuations (a step awaiting a completed stream) interleave.
  #drainBatch(): void {
    const batch = this.#queue;
    this.#queue = [];

    for (const { subscription, data, subject } of batch) {
      if (subscription.active) deliver(subscription, { data, subject });
    }
    this.#scheduled = false;
    this.#schedule();

    if (!this.#scheduled) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}

function deliver(
  subscription: HubSubscription,
  message: { data: Uint8Array; subject: string },
): void {
  const { data, subject } = message;

  try {
    const result: unknown = subscription.handler(data, subject);
    if (result instanceof Promise) {
      result.catch((error) => subscription.onHandlerError(error, subject));
    }
  } catch (error) {
    subscription.onHandlerError(error, subject);
  }
}

function copyAtOddOffset(data: Uint8Array): Uint8Array {
  const buffer = new Uint8Array(data.length + 1);
  buffer.set(data, 1);
  return buffer.subarray(1);
}

/** What a connection needs from its hub. */
interface HubPort {
  maxPayloadBytes: number;
  publish(subject: string, data: Uint8Array): void;
  subscribe(pattern: string, handler: MessageHandler): () => void;
  flush(): Promise<void>;
}

class InProcessTransport implements Transport {
  readonly maxPayloadBytes: number;
  readonly closed: Promise<Error | undefined>;
  readonly #port: HubPort;
  readonly #unsubscribes = new Set<() => void>();
  #resolveClosed: (value: undefined) => void = () => {};
  #closing: Promise<void> | undefined;
  #isClosed = false;

  constructor(port: HubPort) {
    this.#port = port;
    this.maxPayloadBytes = port.maxPayloadBytes;
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
  }

  publish(subject: string, data: Uint8Array): void {
    this.#checkOpen(subject);
    checkSubject(subject, { wildcards: false });

    if (data.length > this.maxPayloadBytes) {
      throw new TransportError({
        code: "max_payload_exceeded",
        subject,
        message: `Cannot publish on ${subject}: ${data.length} bytes is ` +
          `above max_payload ${this.maxPayloadBytes}`,
      });
    }
    this.#port.publish(subject, data);
  }

  subscribe(subject: string, handler: MessageHandler): Subscription {
    this.#checkOpen(subject);
    checkSubject(subject, { wildcards: true });

    const remove = this.#port.subscribe(subject, handler);
    this.#unsubscribes.add(remove);
    return {
      unsubscribe: () => {
        remove();
        this.#unsubscribes.delete(remove);
      },
    };
  }

  async flush(): Promise<void> {
    this.#checkOpen();
    await this.#port.flush();
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    await this.#port.flush();

    this.#isClosed = true;
    for (const remove of this.#unsubscribes) remove();
    this.#unsubscribes.clear();
    this.#resolveClosed(undefined);
  }

  #checkOpen(subject?: string): void {
    if (this.#isClosed || this.#closing !== undefined) {
      throw new TransportError({
        code: "closed",
        subject,
        message: "Cannot use in-process connection: it is closed",
      });
    }
  }
}
