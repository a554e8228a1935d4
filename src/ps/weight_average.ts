/**
 * An exponential moving average of the weights, kept by the parameter
 * server beside the trained weights and used for validation and the saved
 * model when `train.emaDecay` is above 0. Averaging the last few hundred
 * steps smooths out the noise of small per-rank batches, the way
 * `tf.train.ExponentialMovingAverage` with `num_updates` or timm's
 * `ModelEma` do.
 *
 * The decay ramps up with the number of updates, `min(decay, (1 + t) /
 * (10 + t))`, so that early averages are not dominated by the pretrained
 * starting point. Every update is a fixed sequence of float32 operations in
 * index order: deterministic on every machine.
 *
 * @module
 */

/** See the module doc. */
export class WeightAverage {
  readonly decay: number;
  readonly average: Float32Array;
  #updates: number;

  /**
   * @param decay In (0, 1).
   * @param start The weights to start from (copied).
   * @param state A checkpointed average and its update count.
   */
  constructor(
    decay: number,
    start: Float32Array,
    state?: { average: Float32Array; updates: number },
  ) {
    if (!(decay > 0 && decay < 1)) {
      throw new RangeError(`EMA decay must be in (0, 1), received ${decay}`);
    }
    if (state && state.average.length !== start.length) {
      throw new RangeError(
        `Checkpointed EMA holds ${state.average.length} values, the ` +
          `weights ${start.length}`,
      );
    }
    this.decay = decay;
    this.average = new Float32Array(state?.average ?? start);
    this.#updates = state?.updates ?? 0;
  }

  /** Updates applied so far. */
  get updates(): number {
    return this.#updates;
  }

  /** Folds `weights` into the average. */
  update(weights: Float32Array): void {
    const t = this.#updates;
    const keep = Math.fround(Math.min(this.decay, (1 + t) / (10 + t)));
    const take = Math.fround(1 - keep);
    const avg = this.average;
    for (let i = 0; i < avg.length; i++) {
      avg[i] = Math.fround(keep * avg[i]) + Math.fround(take * weights[i]);
    }
    this.#updates = t + 1;
  }
}
