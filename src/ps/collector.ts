/**
 * Collects the workers' gradient streams for one attempt of one step.
 * Chunks may arrive in any order, twice, or not at all; bad ones are
 * dropped with a counted reason and never reach the aggregate. The PS
 * decides when to ask again and when to give up on a rank; this module only
 * assembles and reports what is in and what is missing.
 *
 * @module
 */
import {
  decodeMessage,
  type RejectionCounter,
  StreamAssembler,
  type TensorChunkMessage,
  WireError,
} from "../wire/mod.ts";
import type { RunSubjects, Subscription, Transport } from "../transport/mod.ts";
import { decodeResultMeta, type ResultMeta } from "../protocol/step_meta.ts";
import type { Contribution } from "./aggregate.ts";
import { checkSubjectRank } from "../protocol/subject_rank.ts";

/** A rank's stream with its checked meta. */
export interface RankResult extends Contribution {
  nonFinite: string;
}

/** Options of {@linkcode GradientCollector}. */
export interface GradientCollectorOptions {
  runId: string;
  workers: number;
  perRankBatch: number;
  /** Floats in a stream (the variable layout's size). */
  streamLength: number;
  transport: Transport;
  subjects: RunSubjects;
  rejections: RejectionCounter;
  /** Called for every well-formed chunk: a sign of life of its rank. */
  onChunk?: (rank: number) => void;
}

/** Raised when ranks stay silent past the abort threshold. */
export class StallError extends Error {
  /** The step that stalled. */
  readonly step: number;
  /** Ranks whose gradients never completed. */
  readonly missingRanks: number[];

  /**
   * Makes the error for `step`, after `seconds` of waiting on `missingRanks`.
   */
  constructor(step: number, missingRanks: number[], seconds: number) {
    super(
      `step ${step}: no complete gradients from rank(s) ` +
        `${missingRanks.join(", ")} after ${seconds} s; giving up on the step`,
    );
    this.name = "StallError";
    this.step = step;
    this.missingRanks = missingRanks;
  }
}

/** What is still missing of one rank's stream. */
export interface PendingRank {
  rank: number;
  /** Chunks received of the expected count (unknown before any arrives). */
  received: number;
  expected: number | undefined;
  /** Up to `limit` missing chunk indices. */
  missingChunks: number[];
  /** `performance.now()` of its last chunk, or of `begin`. */
  lastChunkAt: number;
}

/** See the module doc. */
export class GradientCollector {
  readonly #o: GradientCollectorOptions;
  readonly #subscription: Subscription;
  #step = -1;
  #attempt = 0;
  #expected = new Set<number>();
  #assemblers = new Map<number, StreamAssembler>();
  #lastChunkAt = new Map<number, number>();
  #results = new Map<number, RankResult>();
  #listeners: (() => void)[] = [];

  constructor(options: GradientCollectorOptions) {
    this.#o = options;
    this.#subscription = options.transport.subscribe(
      options.subjects.gradsAll,
      (data, subject) => this.#onChunk(data, subject),
    );
  }

  /**
   * Starts collecting attempt `attempt` of `step` from `ranks`; anything
   * else is ignored from now on.
   */
  begin(step: number, attempt: number, ranks: readonly number[]): void {
    this.#step = step;
    this.#attempt = attempt;
    this.#expected = new Set(ranks);
    this.#assemblers = new Map();
    this.#results = new Map();
    const now = performance.now();
    this.#lastChunkAt = new Map(ranks.map((r) => [r, now]));
  }

  /** Stops waiting for `rank` in this attempt (dead or late). */
  drop(rank: number): void {
    this.#expected.delete(rank);
    this.#notify();
  }

  /** Expected ranks whose result is not complete, ascending. */
  missing(): number[] {
    return [...this.#expected].filter((r) => !this.#results.has(r))
      .sort((a, b) => a - b);
  }

  /** Progress of the missing ranks' streams. */
  pending(limit = 8): PendingRank[] {
    return this.missing().map((rank) => {
      const a = this.#assemblers.get(rank);
      return {
        rank,
        received: a?.receivedChunks ?? 0,
        expected: a?.expectedChunks,
        missingChunks: a?.missingChunks(limit) ?? [],
        lastChunkAt: this.#lastChunkAt.get(rank) ?? 0,
      };
    });
  }

  /** The complete results of expected ranks, in rank order. */
  results(): RankResult[] {
    return [...this.#results.values()]
      .filter((r) => this.#expected.has(r.rank))
      .sort((a, b) => a.rank - b.rank);
  }

  /** Resolves on the next complete stream or drop, or after `ms`. */
  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#listeners.push(done);
    });
  }

  /** Stops listening. */
  close(): void {
    this.#subscription.unsubscribe();
    this.#notify();
  }

  #notify(): void {
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const listener of listeners) listener();
  }

  #onChunk(data: Uint8Array, subject: string): void {
    const { runId, workers, rejections, subjects } = this.#o;
    let chunk: TensorChunkMessage;

    try {
      chunk = decodeMessage(data, {
        run: runId,
        workers,
        kinds: ["tensor_chunk"],
        steps: { min: 0, max: Math.max(this.#step, 0) },
        // Nothing a worker sends on this bus is larger; a bigger message
        // (routed from a server with a larger max_payload) is `oversized`.
        maxMessageBytes: this.#o.transport.maxPayloadBytes,
      });
      if (chunk.stream !== "grads") {
        throw new WireError({
          reason: "bad_field",
          field: "stream",
          message: `stream must be "grads" on ${subject}, ` +
            `received "${chunk.stream}"`,
          run: chunk.run,
          step: chunk.step,
          rank: chunk.rank,
          kind: chunk.kind,
        });
      }
      checkSubjectRank(subjects, subject, chunk);
      this.#o.onChunk?.(chunk.rank);

      // Older steps' chunks are re-sends of finished work, and ranks not
      // in this attempt were dropped from it: nothing to do.
      if (chunk.step < this.#step) return;
      if (!this.#expected.has(chunk.rank)) return;
      if (this.#results.has(chunk.rank)) return;
      this.#add(chunk);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      rejections.record(error, { subject });
    }
  }

  #add(chunk: TensorChunkMessage): void {
    const { rank } = chunk;

    // A late stream of an abandoned attempt: not an error, not wanted. An
    // attempt not planned yet is.
    if (chunk.attempt > this.#attempt) {
      throw new WireError({
        reason: "wrong_step",
        field: "attempt",
        message: `rank ${rank} step ${this.#step}: attempt ${chunk.attempt} ` +
          `was never planned (the current one is ${this.#attempt})`,
        kind: "tensor_chunk",
        run: this.#o.runId,
        step: chunk.step,
        rank,
      });
    }
    if (chunk.attempt !== this.#attempt) return;
    this.#lastChunkAt.set(rank, performance.now());
    let assembler = this.#assemblers.get(rank);
    if (!assembler) {
      assembler = new StreamAssembler({
        stream: "grads",
        step: this.#step,
        rank,
        attempt: this.#attempt,
        expectedLength: this.#o.streamLength,
      });
      this.#assemblers.set(rank, assembler);
    }

    const whole = assembler.add(chunk);
    if (!whole) return;

    let meta: ResultMeta;
    try {
      meta = decodeResultMeta(whole.meta, {
        perRankBatch: this.#o.perRankBatch,
      });
    } catch (error) {
      // A fresh assembler lets the worker's re-send complete the step.
      this.#assemblers.delete(rank);
      if (!(error instanceof WireError)) throw error;
      throw new WireError({
        reason: error.reason,
        field: error.field,
        message: `rank ${rank} step ${this.#step}: ${error.message}`,
        kind: "tensor_chunk",
        run: this.#o.runId,
        step: this.#step,
        rank,
        cause: error,
      });
    }

    this.#results.set(rank, { rank, flat: whole.data, ...meta });
    this.#notify();
  }
}
