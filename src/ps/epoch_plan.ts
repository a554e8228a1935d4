/**
 * Which examples each live rank takes at each step of an epoch, when ranks
 * can leave and join mid-run.
 *
 * An epoch walks `permutation(seed, epoch)` with a cursor. A step takes up
 * to `live * perRankBatch` positions: first any positions handed back by
 * ranks that dropped out of an earlier step (in ascending order), then the
 * next ones from the cursor. With every rank live and nothing handed back,
 * this is exactly the sharding of DESIGN.md (rank `r` of step `t` takes
 * positions `[t*B + r*b, t*B + (r+1)*b)`, the last partial batch split
 * evenly), so an elastic run that loses no one equals a static one bit for
 * bit. Every position of an epoch is trained on exactly once.
 *
 * @module
 */
import { permutation } from "../data/mod.ts";

/** The plan's state, as a checkpoint stores it. */
export interface EpochPlanState {
  /** The epoch being walked. */
  epoch: number;
  /** The next position of the permutation not yet handed out. */
  cursor: number;
  /** Positions handed back by ranks that dropped out, ascending. */
  requeued: number[];
}

/** One step's assignment. */
export interface Assignment {
  /** The epoch the step's examples come from. */
  epoch: number;
  /** Positions per rank, `positions[rank]`; empty for idle ranks. */
  positions: number[][];
  /** Dataset indices per rank (the permutation at those positions). */
  indices: number[][];
  /**
   * The schedule position: the step a static run would be at after the
   * examples consumed so far, `epoch * stepsPerEpoch + done / B`.
   */
  scheduleStep: number;
}

/** Options of {@linkcode EpochPlan}. */
export interface EpochPlanOptions {
  /** Training examples. */
  n: number;
  seed: number;
  /** Ranks of the job (`train.workers`). */
  workers: number;
  perRankBatch: number;
  stepsPerEpoch: number;
  /** Resume from this state. */
  state?: EpochPlanState;
}

/** See the module doc. */
export class EpochPlan {
  readonly #o: EpochPlanOptions;
  #epoch: number;
  #cursor: number;
  #requeued: number[];
  #order: Int32Array;

  /**
   * Starts at `options.state`, or at epoch 0 with nothing handed out.
   *
   * @throws {RangeError} for a state that does not fit `n` examples.
   */
  constructor(options: EpochPlanOptions) {
    this.#o = options;
    const state = options.state ?? { epoch: 0, cursor: 0, requeued: [] };
    checkState(state, options.n);
    this.#epoch = state.epoch;
    this.#cursor = state.cursor;
    this.#requeued = [...state.requeued];
    this.#order = this.#permutation(this.#epoch);
  }

  /** The epoch the next step belongs to. */
  get epoch(): number {
    return this.#epoch;
  }

  /** Whether every position of the current epoch has been handed out. */
  get epochDone(): boolean {
    return this.#cursor >= this.#o.n && this.#requeued.length === 0;
  }

  /** A copy of the state, for a checkpoint. */
  state(): EpochPlanState {
    return {
      epoch: this.#epoch,
      cursor: this.#cursor,
      requeued: [...this.#requeued],
    };
  }

  /** Moves to the next epoch; the current one must be done. */
  nextEpoch(): void {
    if (!this.epochDone) {
      throw new Error(
        `Cannot start epoch ${this.#epoch + 1}: epoch ${this.#epoch} still ` +
          `has ${this.#o.n - this.#cursor + this.#requeued.length} examples`,
      );
    }
    this.#epoch++;
    this.#cursor = 0;
    this.#order = this.#permutation(this.#epoch);
  }

  /**
   * Hands out the next step's positions to `live` ranks (ascending rank
   * order) and advances. Call {@linkcode requeue} for the positions of a
   * rank whose contribution is then lost.
   *
   * @throws {RangeError} With no live rank, or when the epoch is done.
   */
  take(live: readonly number[]): Assignment {
    const { workers, perRankBatch, n, stepsPerEpoch } = this.#o;
    if (live.length === 0) {
      throw new RangeError("Cannot plan a step without a live rank");
    }
    if (this.epochDone) {
      throw new RangeError(`Cannot plan a step: epoch ${this.#epoch} is done`);
    }

    const done = this.#cursor - this.#requeued.length;
    const scheduleStep = this.#epoch * stepsPerEpoch +
      Math.floor(done / (workers * perRankBatch));

    const capacity = live.length * perRankBatch;
    const pool = this.#requeued.splice(0, capacity);
    const fresh = Math.min(capacity - pool.length, n - this.#cursor);
    for (let i = 0; i < fresh; i++) pool.push(this.#cursor + i);
    this.#cursor += fresh;

    const positions: number[][] = Array.from({ length: workers }, () => []);
    const sizes = splitSizes(pool.length, live.length, perRankBatch);
    let next = 0;
    live.forEach((rank, i) => {
      positions[rank] = pool.slice(next, next + sizes[i]);
      next += sizes[i];
    });

    return {
      epoch: this.#epoch,
      positions,
      indices: positions.map((list) => list.map((p) => this.#order[p])),
      scheduleStep,
    };
  }

  /** Gives positions of a lost contribution back to the next steps. */
  requeue(positions: readonly number[]): void {
    for (const p of positions) {
      if (!Number.isInteger(p) || p < 0 || p >= this.#cursor) {
        throw new RangeError(
          `Cannot requeue position ${p}: not handed out in epoch ${this.#epoch}`,
        );
      }
    }
    this.#requeued = [...new Set([...this.#requeued, ...positions])]
      .sort((a, b) => a - b);
  }

  #permutation(epoch: number): Int32Array {
    return permutation({ seed: this.#o.seed, epoch, n: this.#o.n });
  }
}

/**
 * How many of `size` positions each of `ranks` live ranks takes: a full
 * batch each when there are enough, otherwise an even split with the
 * first ranks taking one more (the sharding module's last-batch rule).
 */
function splitSizes(size: number, ranks: number, perRank: number): number[] {
  if (size === ranks * perRank) return Array(ranks).fill(perRank);

  const base = Math.floor(size / ranks);
  const extra = size % ranks;
  return Array.from({ length: ranks }, (_, r) => base + (r < extra ? 1 : 0));
}

function checkState(state: EpochPlanState, n: number): void {
  const ok = Number.isInteger(state.epoch) && state.epoch >= 0 &&
    Number.isInteger(state.cursor) && state.cursor >= 0 &&
    state.cursor <= n && Array.isArray(state.requeued) &&
    state.requeued.every((p) =>
      Number.isInteger(p) && p >= 0 && p < state.cursor
    );
  if (!ok) {
    throw new RangeError(
      `Invalid epoch plan state ${JSON.stringify(state)} for ${n} examples`,
    );
  }
}
