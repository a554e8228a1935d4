/**
 * Who takes part: workers announce themselves with `hello`; the parameter
 * server accepts a rank whose config fingerprint equals its own and refuses
 * any other with a reason the worker prints.
 *
 * @module
 */
import {
  decodeMessage,
  encodeMessage,
  type HelloMessage,
  type RejectionCounter,
  WireError,
} from "../wire/mod.ts";
import type { RunSubjects, Subscription, Transport } from "../transport/mod.ts";
import type { Logger } from "../log.ts";

/** A worker that joined. */
export interface Member {
  rank: number;
  backend: string;
  device: string | null;
  pid: number;
  host: string;
}

/** Options of {@linkcode Membership}. */
export interface MembershipOptions {
  runId: string;
  workers: number;
  fingerprint: string;
  transport: Transport;
  subjects: RunSubjects;
  rejections: RejectionCounter;
  log: Logger;
  /** The step a joining worker starts at. */
  startStep: () => number;
}

/** Raised when ranks have not joined within the abort threshold. */
export class JoinTimeoutError extends Error {
  readonly missingRanks: number[];

  constructor(missingRanks: number[], seconds: number) {
    super(
      `rank(s) ${missingRanks.join(", ")} did not join within ${seconds} s; ` +
        "start them with the same --run-id and --nats URL",
    );
    this.name = "JoinTimeoutError";
    this.missingRanks = missingRanks;
  }
}

/** Tracks joined ranks and answers every `hello`. */
export class Membership {
  readonly #options: MembershipOptions;
  readonly #members = new Map<number, Member>();
  readonly #subscription: Subscription;
  #waiters: (() => void)[] = [];
  /** Refusals so far, by rank, for the summary. */
  readonly refused: { rank: number; reason: string }[] = [];

  constructor(options: MembershipOptions) {
    this.#options = options;
    this.#subscription = options.transport.subscribe(
      options.subjects.hello,
      (data, subject) => this.#onHello(data, subject),
    );
  }

  /** Members by rank, in rank order. */
  get members(): Member[] {
    return [...this.#members.values()].sort((a, b) => a.rank - b.rank);
  }

  /** Ranks not joined yet. */
  missing(): number[] {
    const out: number[] = [];
    for (let r = 0; r < this.#options.workers; r++) {
      if (!this.#members.has(r)) out.push(r);
    }
    return out;
  }

  /**
   * Resolves when every rank has joined; logs who is missing every
   * `warnSeconds` and rejects after `abortSeconds`.
   */
  async waitForAll(
    limits: { warnSeconds: number; abortSeconds: number },
  ): Promise<void> {
    const started = Date.now();
    const { log } = this.#options;

    while (this.missing().length > 0) {
      const waited = (Date.now() - started) / 1000;
      if (waited >= limits.abortSeconds) {
        throw new JoinTimeoutError(this.missing(), limits.abortSeconds);
      }

      const wake = new Promise<void>((resolve) => this.#waiters.push(resolve));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const tick = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, limits.warnSeconds * 1000);
      });
      const woke = await Promise.race([
        wake.then(() => true),
        tick.then(() => false),
      ]);
      clearTimeout(timer);
      if (!woke) {
        log.info(
          `waiting for ranks ${this.missing().join(", ")} to join ` +
            `(${Math.round(waited + limits.warnSeconds)} s)`,
        );
      }
    }
  }

  /** Stops answering `hello`. */
  close(): void {
    this.#subscription.unsubscribe();
  }

  #onHello(data: Uint8Array, subject: string): void {
    const { runId, workers, fingerprint, log } = this.#options;
    let hello: HelloMessage;

    try {
      hello = decodeMessage(data, { run: runId, workers, kinds: ["hello"] });
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      this.#options.rejections.record(error, { subject });
      return;
    }

    if (hello.fingerprint !== fingerprint) {
      const reason = `config fingerprint ${hello.fingerprint.slice(0, 16)} ` +
        `differs from the parameter server's ${fingerprint.slice(0, 16)}: ` +
        "start every process with the same config file and the same " +
        "--alpha, --image-size, --weights, --batch-norm, --workers, " +
        "--batch, --seed and data folder";
      if (!this.refused.some((r) => r.rank === hello.rank)) {
        log.warn(`refused rank ${hello.rank} (pid ${hello.pid}): ${reason}`);
        this.refused.push({ rank: hello.rank, reason });
      }
      this.#welcome(hello.rank, { accepted: false, reason });
      return;
    }

    const known = this.#members.get(hello.rank);
    if (known && known.pid !== hello.pid) {
      log.warn(
        `rank ${hello.rank} joined again from pid ${hello.pid} on ` +
          `${hello.host} (was pid ${known.pid}); it replaces the old one`,
      );
    }
    if (!known || known.pid !== hello.pid) {
      this.#members.set(hello.rank, {
        rank: hello.rank,
        backend: hello.backend,
        device: hello.device,
        pid: hello.pid,
        host: hello.host,
      });
      log.info(
        `rank ${hello.rank} joined: backend ${hello.backend}` +
          `${hello.device ? ` on ${hello.device}` : ""}, pid ${hello.pid} ` +
          `on ${hello.host}`,
      );
    }

    this.#welcome(hello.rank, { accepted: true, reason: "" });
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  #welcome(rank: number, answer: { accepted: boolean; reason: string }) {
    const { transport, subjects, runId } = this.#options;
    const startStep = this.#options.startStep();
    transport.publish(
      subjects.welcome(rank),
      encodeMessage({
        kind: "welcome",
        run: runId,
        step: startStep,
        rank,
        startStep,
        ...answer,
      }),
    );
  }
}
