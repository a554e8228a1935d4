/**
 * Counting and logging rejected messages: a bad message is dropped with a
 * reason, never thrown past the subscription that received it.
 *
 * @module
 */

import {
  WIRE_ERROR_REASONS,
  WireError,
  type WireErrorReason,
} from "./errors.ts";
import {
  type DecodeExpectations,
  decodeMessage,
  type MessageKind,
  type MessageOfKind,
} from "./messages.ts";

/** One rejection, as counted and logged. */
export interface RejectionEvent {
  /** Why it was rejected. */
  reason: WireErrorReason;
  /** The wire field at fault, if one is. */
  field: string | undefined;
  /** The error's message, naming field, expected and received values. */
  message: string;
  /** The message kind, when it could be read. */
  kind: string | undefined;
  /** The run id the message claimed, when it could be read. */
  run: string | undefined;
  /** The step the message claimed, when it could be read. */
  step: number | undefined;
  /** The rank the message claimed, when it could be read. */
  rank: number | undefined;
  /** The subject it arrived on, when the caller knows it. */
  subject: string | undefined;
}

/** Options of the {@linkcode RejectionCounter} constructor. */
export interface RejectionCounterOptions {
  /** Called once per rejection, for the process's log. */
  log?: (event: RejectionEvent) => void;
}

/** Where a rejected message arrived. */
export interface RejectionSource {
  /** The subject it arrived on. */
  subject?: string;
}

/**
 * Counts rejected messages by reason and reports each one to `log`.
 *
 * @example Drop a garbage message
 * ```ts
 * import { RejectionCounter } from "./rejections.ts";
 *
 * const rejections = new RejectionCounter();
 * const message = rejections.decode(new Uint8Array([0xc1]), {
 *   expect: { run: "r1", workers: 2 },
 *   subject: "dptrain.r1.grads",
 * });
 * console.assert(message === undefined);
 * console.assert(rejections.count("garbage") === 1);
 * ```
 */
export class RejectionCounter {
  readonly #counts = new Map<WireErrorReason, number>();
  readonly #log: ((event: RejectionEvent) => void) | undefined;
  #total = 0;

  /** Starts with every count at zero. */
  constructor(options: RejectionCounterOptions = {}) {
    this.#log = options.log;
  }

  /** All rejections so far. */
  get total(): number {
    return this.#total;
  }

  /** Rejections for one reason so far. */
  count(reason: WireErrorReason): number {
    return this.#counts.get(reason) ?? 0;
  }

  /** A snapshot of every reason's count, zeros included. */
  counts(): Record<WireErrorReason, number> {
    return Object.fromEntries(
      WIRE_ERROR_REASONS.map((reason) => [reason, this.count(reason)]),
    ) as Record<WireErrorReason, number>;
  }

  /** Counts `error` and logs it with what is known of its message. */
  record(error: WireError, source: RejectionSource = {}): RejectionEvent {
    const event: RejectionEvent = {
      reason: error.reason,
      field: error.field,
      message: error.message,
      kind: error.kind,
      run: error.run,
      step: error.step,
      rank: error.rank,
      subject: source.subject,
    };

    this.#counts.set(error.reason, this.count(error.reason) + 1);
    this.#total++;
    this.#log?.(event);
    return event;
  }

  /**
   * Runs `action`; a `WireError` it throws is counted, logged and turned
   * into `undefined`. Any other error propagates: it is a bug, not input.
   *
   * @example Assemble a chunk, dropping a conflicting one
   * ```ts ignore
   * const done = rejections.attempt(() => assembler.add(chunk), { subject });
   * ```
   */
  attempt<T>(action: () => T, source: RejectionSource = {}): T | undefined {
    try {
      return action();
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      this.record(error, source);
      return undefined;
    }
  }

  /**
   * Decodes `bytes` as `decodeMessage` does; an invalid message is
   * counted, logged and returned as `undefined`.
   */
  decode<K extends MessageKind = MessageKind>(
    bytes: Uint8Array,
    options: { expect: DecodeExpectations<K>; subject?: string },
  ): MessageOfKind<K> | undefined {
    return this.attempt(() => decodeMessage(bytes, options.expect), {
      subject: options.subject,
    });
  }
}
