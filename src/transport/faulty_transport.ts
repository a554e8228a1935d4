/**
 * A test-only fault hook: wraps a {@linkcode Transport} and loses or
 * delays some of what it publishes, the way a congested network or a
 * restarting server does to core NATS (at most once delivery). The
 * losses are drawn from a seeded generator, so a failing test replays.
 *
 * @module
 */
import type { MessageHandler, Subscription, Transport } from "./transport.ts";

/** Options of {@linkcode FaultyTransport}. */
export interface FaultOptions {
  /** Share of matching publishes silently dropped, in [0, 1). @default 0 */
  dropFraction?: number;
  /** Seed of the drop draws. @default 1 */
  seed?: number;
  /** Which messages the faults apply to. @default every message */
  affects?: (subject: string, data: Uint8Array) => boolean;
  /** Holds matching publishes back this long, in ms. @default 0 */
  delayMs?: number;
}

/** What the hook did, for assertions. */
export interface FaultCounts {
  /** Every `publish` call, affected or not. */
  published: number;
  /** Publishes silently dropped. */
  dropped: number;
  /** Publishes held back by `delayMs`. */
  delayed: number;
}

/** See the module doc. */
export class FaultyTransport implements Transport {
  readonly #inner: Transport;
  readonly #options: FaultOptions;
  #state: number;
  /** Running totals of what the hook did. */
  readonly counts: FaultCounts = { published: 0, dropped: 0, delayed: 0 };
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();

  /**
   * Wraps `inner`; subscriptions and flushes pass through unchanged.
   *
   * @throws {RangeError} when `dropFraction` is outside [0, 1).
   */
  constructor(inner: Transport, options: FaultOptions) {
    const drop = options.dropFraction ?? 0;
    if (!(drop >= 0 && drop < 1)) {
      throw new RangeError(
        `FaultyTransport: dropFraction must be in [0, 1), received ${drop}`,
      );
    }
    this.#inner = inner;
    this.#options = options;
    this.#state = (options.seed ?? 1) >>> 0;
  }

  get maxPayloadBytes(): number {
    return this.#inner.maxPayloadBytes;
  }

  get closed(): Promise<Error | undefined> {
    return this.#inner.closed;
  }

  publish(subject: string, data: Uint8Array): void {
    this.counts.published++;
    const affected = this.#options.affects?.(subject, data) ?? true;
    if (!affected) {
      this.#inner.publish(subject, data);
      return;
    }

    if (this.#next() < (this.#options.dropFraction ?? 0)) {
      this.counts.dropped++;
      return;
    }
    const delay = this.#options.delayMs ?? 0;
    if (delay <= 0) {
      this.#inner.publish(subject, data);
      return;
    }
    this.counts.delayed++;
    const copy = data.slice();
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#inner.publish(subject, copy);
    }, delay);
    this.#timers.add(timer);
  }

  subscribe(subject: string, handler: MessageHandler): Subscription {
    return this.#inner.subscribe(subject, handler);
  }

  flush(): Promise<void> {
    return this.#inner.flush();
  }

  async close(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await this.#inner.close();
  }

  // mulberry32: small, seeded, good enough to pick messages to lose.
  #next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
}
