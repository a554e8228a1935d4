/**
 * Collects the workers' gradient streams for the current step. Chunks may
 * arrive in any order, twice, or not at all; bad ones are dropped with a
 * counted reason and never reach the aggregate. A step is complete when
 * every rank's stream is whole and its meta checks out.
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
}

/** Raised when ranks stay silent past the abort threshold. */
export class StallError extends Error {
  readonly step: number;
  readonly missingRanks: number[];

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

/** What is still missing for the current step, for the stall warning. */
export interface PendingRank {
  rank: number;
  /** Chunks received of the expected count (unknown before any arrives). */
  received: number;
  expected: number | undefined;
  /** Up to 8 missing chunk indices. */
  missingChunks: number[];
}

/** See the module doc. */
export class GradientCollector {
  readonly #o: GradientCollectorOptions;
  readonly #subscription: Subscription;
  #step = -1;
  #assemblers = new Map<number, StreamAssembler>();
  #results = new Map<number, RankResult>();
  #wake: (() => void) | null = null;

  constructor(options: GradientCollectorOptions) {
    this.#o = options;
    this.#subscription = options.transport.subscribe(
      options.subjects.grads,
      (data, subject) => this.#onChunk(data, subject),
    );
  }

  /** Starts collecting for `step`; anything older is ignored from now on. */
  begin(step: number): void {
    this.#step = step;
    this.#assemblers = new Map();
    this.#results = new Map();
  }

  /** Ranks whose result for the current step is not complete. */
  missing(): number[] {
    const out: number[] = [];
    for (let r = 0; r < this.#o.workers; r++) {
      if (!this.#results.has(r)) out.push(r);
    }
    return out;
  }

  /** Progress of the missing ranks' streams. */
  pending(): PendingRank[] {
    return this.missing().map((rank) => {
      const a = this.#assemblers.get(rank);
      return {
        rank,
        received: a?.receivedChunks ?? 0,
        expected: a?.expectedChunks,
        missingChunks: a?.missingChunks(8) ?? [],
      };
    });
  }

  /**
   * Resolves with every rank's result, in rank order, once all are in.
   * Calls `onStall` every `warnSeconds` while waiting (the PS re-sends the
   * weights and logs who is missing), and rejects with
   * {@linkcode StallError} after `abortSeconds`.
   */
  async collect(limits: {
    warnSeconds: number;
    abortSeconds: number;
    onStall: (pending: PendingRank[], waitedSeconds: number) => void;
  }): Promise<RankResult[]> {
    const step = this.#step;
    const started = Date.now();

    while (this.missing().length > 0) {
      const waited = (Date.now() - started) / 1000;
      if (waited >= limits.abortSeconds) {
        throw new StallError(step, this.missing(), limits.abortSeconds);
      }

      let timer: ReturnType<typeof setTimeout> | undefined;
      const woke = await Promise.race([
        new Promise<boolean>((resolve) => {
          this.#wake = () => resolve(true);
        }),
        new Promise<boolean>((resolve) => {
          const untilAbort = limits.abortSeconds - waited;
          const wait = Math.min(limits.warnSeconds, untilAbort);
          timer = setTimeout(() => resolve(false), wait * 1000);
        }),
      ]);
      clearTimeout(timer);
      this.#wake = null;

      const now = (Date.now() - started) / 1000;
      if (!woke && this.missing().length > 0 && now < limits.abortSeconds) {
        limits.onStall(this.pending(), now);
      }
    }

    return [...this.#results.values()].sort((a, b) => a.rank - b.rank);
  }

  /** Stops listening. */
  close(): void {
    this.#subscription.unsubscribe();
  }

  #onChunk(data: Uint8Array, subject: string): void {
    const { runId, workers, rejections } = this.#o;
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
      // Older steps' chunks are re-sends of finished work: nothing to do.
      if (chunk.step < this.#step || this.#results.has(chunk.rank)) return;
      this.#add(chunk);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      rejections.record(error, { subject });
    }
  }

  #add(chunk: TensorChunkMessage): void {
    const { rank } = chunk;
    let assembler = this.#assemblers.get(rank);
    if (!assembler) {
      assembler = new StreamAssembler({
        stream: "grads",
        step: this.#step,
        rank,
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
    this.#wake?.();
  }
}
