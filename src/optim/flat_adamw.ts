/**
 * AdamW over flat `Float32Array`s for the parameter server: a fixed
 * variable order, no tfjs backend, bit-deterministic.
 *
 * Precision: float32 throughout the element loop. The per-variable scalars
 * (rate, bias corrections, decay) are computed once per step in float64 and
 * rounded to float32; every element operation is an IEEE single-precision
 * operation (see `_wasm_kernel.ts` for their order). The tfjs `AdamW` runs
 * the same operations in the same order, so the two forms agree bit for bit
 * on the cpu backend and to float32 rounding elsewhere. The gradient norm is
 * summed in float64.
 *
 * Memory: the moments, a gradient region and a weight region live in the
 * kernel's WebAssembly memory (16 bytes per trained parameter, padded to
 * groups of 4). The caller may keep its own arrays: gradients are then
 * copied in, and weights pass through a small staging buffer in chunks. Or
 * it may use the views `buffers()` hands out, and nothing is copied.
 *
 * @module
 */
import { describeArray, isSameView, readState } from "./_flat_state.ts";
import { instantiateKernel, type Kernel } from "./_wasm_kernel.ts";
import { stepCoefficients } from "./coefficients.ts";
import { OptimizerStateError } from "./errors.ts";
import { explainRates, type RateRow } from "./explain.ts";
import {
  resolveVariables,
  type RuleWarning,
  ruleWarnings,
  type VariablePlan,
} from "./rules.ts";
import { makeSchedule, type Schedule } from "./schedule.ts";
import type { OptimizerConfig, OptimizerState, VariableSpec } from "./types.ts";

/** Options of {@linkcode FlatAdamW}. */
export interface FlatAdamWOptions {
  /** Trainable variables, in the order of the weight and gradient arrays. */
  variables: VariableSpec[];
  /** A parsed config (`parseOptimizerConfig`). */
  config: OptimizerConfig;
  /** Data-parallel workers; scales the schedule's peak when asked. */
  workers: number;
  /** Optimizer steps per epoch. */
  stepsPerEpoch: number;
  /** Optimizer steps in the run. */
  totalSteps: number;
}

/** Arguments of {@linkcode FlatAdamW.step}. */
export interface StepArgs {
  /** One array per variable, same order as `variables`; updated in place. */
  weights: Float32Array[];
  /**
   * One array per variable, already averaged over the examples. A frozen
   * variable's entry may be empty; it is never read.
   */
  grads: Float32Array[];
  /** 0-based global step, the schedule's position. */
  step: number;
}

/** What one call of {@linkcode FlatAdamW.step} did. */
export interface StepOutcome {
  /** False when the step was skipped; weights and moments are untouched. */
  applied: boolean;
  /** Why the step was skipped. */
  reason?: string;
  /** `schedule(step)`, before multipliers. */
  lr: number;
  /** Global L2 norm of the trainable gradients, before clipping. */
  gradNorm: number;
  /** Whether global-norm clipping scaled the gradients. */
  clipped: boolean;
}

/** Float32 values the weights are copied through, per kernel call. */
const CHUNK_VALUES = 8192;

interface Slot {
  plan: VariablePlan;
  /** Position in the weight and gradient arrays. */
  index: number;
  /** Groups of 4 values (the last one zero-padded). */
  groups: number;
  /** Byte offsets of the variable's regions in kernel memory. */
  gradOffset: number;
  firstOffset: number;
  secondOffset: number;
  weightOffset: number;
  /** Views of the regions in kernel memory. */
  firstMoment: Float32Array;
  secondMoment: Float32Array;
  gradView: Float32Array;
  weightView: Float32Array;
  count: number;
}

/**
 * AdamW with per-variable rates over flat arrays.
 *
 * @example
 * ```ts
 * import { FlatAdamW } from "./flat_adamw.ts";
 * import { parseOptimizerConfig } from "./config.ts";
 *
 * const opt = new FlatAdamW({
 *   variables: [{ name: "dense/kernel", shape: [2, 2] }],
 *   config: parseOptimizerConfig({ preset: "reference" }),
 *   workers: 1, stepsPerEpoch: 175, totalSteps: 2275,
 * });
 * const weights = [new Float32Array(4)];
 * opt.step({ weights, grads: [new Float32Array([1, 2, 3, 4])], step: 0 });
 * ```
 */
export class FlatAdamW {
  /** The parsed optimizer config it was built with. */
  readonly config: OptimizerConfig;
  /** The learning-rate schedule bound to this run's workers and steps. */
  readonly schedule: Schedule;
  /** Every variable's resolved treatment, in order. */
  readonly plans: readonly VariablePlan[];
  /** Optimizer steps in the run, as given. */
  readonly totalSteps: number;
  #slots: Slot[];
  #slotByName: Map<string, Slot>;
  #kernel: Kernel;
  #memory: Float32Array;
  /** Saved moments of variables this run does not train, kept for later. */
  #dormant: OptimizerState = { step: 0, moments: {}, counts: {} };
  #frozenBuffers:
    | Array<{ weight: Float32Array; grad: Float32Array } | null>
    | undefined;
  #applied = 0;

  /**
   * Resolves every variable's rules and allocates zeroed moments.
   *
   * @throws {OptimizerStateError} for a duplicate variable name or bad shape.
   * @throws {RangeError} for a bad `workers`, `stepsPerEpoch` or
   * `totalSteps`, or when the moments exceed the 4 GiB of 32-bit WebAssembly
   * memory.
   */
  constructor(options: FlatAdamWOptions) {
    const { variables, config, workers, stepsPerEpoch, totalSteps } = options;
    if (config.normalizeDecay && config.weightDecay > 0 && totalSteps < 1) {
      throw new RangeError(
        "Cannot build FlatAdamW: normalizeDecay needs 'totalSteps' >= 1, " +
          `received ${totalSteps}`,
      );
    }

    this.config = config;
    this.totalSteps = totalSteps;
    this.schedule = makeSchedule(config.schedule, {
      workers,
      stepsPerEpoch,
      totalSteps,
    });
    this.plans = resolveVariables(variables, config);

    const trained = this.plans
      .map((plan, index) => ({ plan, index }))
      .filter(({ plan }) => !plan.frozen);
    const paddedValues = trained.reduce(
      (sum, { plan }) => sum + Math.ceil(plan.size / 4) * 4,
      0,
    );
    const stagingBytes = CHUNK_VALUES * 4;
    const regionBytes = paddedValues * 4;
    const totalBytes = stagingBytes + 4 * regionBytes;
    if (totalBytes > 2 ** 32 - 65536) {
      throw new RangeError(
        `Cannot build FlatAdamW: ${paddedValues} trained parameters need ` +
          `${totalBytes} bytes of kernel memory, over the 4 GiB of 32-bit ` +
          "WebAssembly; split the variables over several optimizers",
      );
    }
    this.#kernel = instantiateKernel(totalBytes);
    this.#memory = new Float32Array(this.#kernel.memory.buffer);

    let offset = stagingBytes;
    this.#slots = trained.map(({ plan, index }) => {
      const groups = Math.ceil(plan.size / 4);
      const gradOffset = offset;
      const firstOffset = offset + regionBytes;
      const secondOffset = offset + 2 * regionBytes;
      const weightOffset = offset + 3 * regionBytes;
      offset += groups * 16;
      return {
        plan,
        index,
        groups,
        gradOffset,
        firstOffset,
        secondOffset,
        weightOffset,
        firstMoment: this.#view(firstOffset, plan.size),
        secondMoment: this.#view(secondOffset, plan.size),
        gradView: this.#view(gradOffset, plan.size),
        weightView: this.#view(weightOffset, plan.size),
        count: 0,
      };
    });
    this.#slotByName = new Map(this.#slots.map((s) => [s.plan.name, s]));
  }

  #view(byteOffset: number, length: number): Float32Array {
    return new Float32Array(this.#kernel.memory.buffer, byteOffset, length);
  }

  /** Steps applied so far (skipped steps not counted). */
  get appliedSteps(): number {
    return this.#applied;
  }

  /** Parameters that are trained (frozen ones excluded). */
  get trainableParams(): number {
    return this.#slots.reduce((sum, s) => sum + s.plan.size, 0);
  }

  /**
   * Arrays to keep the weights and sum the gradients in, one per variable in
   * `variables` order. Those of trained variables are views of the kernel's
   * memory: passing them to `step` copies nothing (about 6 ms less per
   * 3.5 M parameters on a 2-core machine). Frozen variables get ordinary
   * arrays. The same arrays are returned on every call; they start zeroed.
   */
  buffers(): { weights: Float32Array[]; grads: Float32Array[] } {
    this.#frozenBuffers ??= this.plans.map((plan) =>
      plan.frozen
        ? {
          weight: new Float32Array(plan.size),
          grad: new Float32Array(plan.size),
        }
        : null
    );
    const frozen = this.#frozenBuffers;
    const slots = new Map(this.#slots.map((s) => [s.index, s]));
    return {
      weights: this.plans.map((_, i) =>
        slots.get(i)?.weightView ?? frozen[i]!.weight
      ),
      grads: this.plans.map((_, i) =>
        slots.get(i)?.gradView ?? frozen[i]!.grad
      ),
    };
  }

  /** `schedule(step)`, before multipliers. */
  learningRate(step: number): number {
    return this.schedule.at(step);
  }

  /** One row per variable: rule, multiplier, decay and rate at a step. */
  explain(at: { step: number }): RateRow[] {
    return explainRates({
      plans: this.plans,
      config: this.config,
      schedule: this.schedule,
      totalSteps: this.totalSteps,
      step: at.step,
    });
  }

  /** Doubtful rules: unused, never winning, overlapping, digit run-on. */
  warnings(): RuleWarning[] {
    return ruleWarnings(this.plans, this.config);
  }

  /**
   * Applies one AdamW step in place. Non-finite gradients are never applied:
   * the step is skipped, reported, and weights and moments stay untouched.
   *
   * @throws {OptimizerStateError} when the arrays do not fit the variables
   *   (nothing is changed then).
   */
  step(args: StepArgs): StepOutcome {
    const { weights, grads, step } = args;
    this.#checkArrays(weights, grads);
    const lr = this.schedule.at(step);

    const gradNorm = this.#globalNorm(grads);
    if (!Number.isFinite(gradNorm)) {
      return {
        applied: false,
        reason: this.#nonFiniteReason(grads),
        lr,
        gradNorm,
        clipped: false,
      };
    }

    // TODO(#3): when the PS is split by variable group, the global norm
    // must include the other groups' sums of squares (a step input).
    const clip = this.config.clipGlobalNorm;
    const clipped = clip !== null && gradNorm > clip;
    // tf.clip_by_global_norm's factor: clip / max(norm, clip).
    const gradScale = clipped ? clip / gradNorm : 1;

    for (const slot of this.#slots) {
      this.#updateVariable(slot, weights[slot.index]!, { lr, gradScale });
      slot.count += 1;
    }

    this.#applied += 1;
    return { applied: true, lr, gradNorm, clipped };
  }

  /** A copy of the state, keyed by variable name. */
  getState(): OptimizerState {
    const moments: Record<string, Float32Array> = {};
    const counts: Record<string, number> = {};
    for (const [key, value] of Object.entries(this.#dormant.moments)) {
      moments[key] = value.slice();
    }
    Object.assign(counts, this.#dormant.counts);

    for (const slot of this.#slots) {
      moments[`${slot.plan.name}/m`] = slot.firstMoment.slice();
      moments[`${slot.plan.name}/v`] = slot.secondMoment.slice();
      counts[slot.plan.name] = slot.count;
    }
    return { step: this.#applied, moments, counts };
  }

  /**
   * Restores a state by name. Trained variables missing from it start from
   * zero moments; saved moments of variables this run does not train
   * (removed or frozen) are kept aside and returned by `getState`, so each
   * moment stays on its own variable across runs.
   *
   * @throws {OptimizerStateError} for a malformed state or a length that does
   *   not fit (nothing is changed then).
   */
  setState(state: OptimizerState): void {
    const restored = readState(state);

    const dormant: OptimizerState = { step: 0, moments: {}, counts: {} };
    for (const [name, entry] of restored) {
      const slot = this.#slotByName.get(name);
      if (slot === undefined) {
        dormant.moments[`${name}/m`] = entry.m.slice();
        dormant.moments[`${name}/v`] = entry.v.slice();
        dormant.counts[name] = entry.count;
      } else if (entry.m.length !== slot.plan.size) {
        throw new OptimizerStateError(
          `Cannot restore optimizer state: "${name}/m" has ` +
            `${entry.m.length} values, and variable "${name}" has ` +
            `${slot.plan.size} (shape ${JSON.stringify(slot.plan.shape)})`,
          { variable: name },
        );
      }
    }

    for (const slot of this.#slots) {
      const entry = restored.get(slot.plan.name);
      slot.firstMoment.set(entry?.m ?? new Float32Array(slot.plan.size));
      slot.secondMoment.set(entry?.v ?? new Float32Array(slot.plan.size));
      slot.count = entry?.count ?? 0;
    }
    this.#dormant = dormant;
    this.#applied = state.step;
  }

  #checkArrays(weights: Float32Array[], grads: Float32Array[]): void {
    for (const [label, list] of [["weights", weights], ["grads", grads]]) {
      if (!Array.isArray(list) || list.length !== this.plans.length) {
        throw new OptimizerStateError(
          `Cannot step: expected ${this.plans.length} ${label} arrays, ` +
            `received ${Array.isArray(list) ? list.length : typeof list}`,
          { variable: label as string },
        );
      }
    }

    this.plans.forEach((plan, i) => {
      const weight = weights[i];
      const grad = grads[i];
      const gradOk = grad instanceof Float32Array &&
        (grad.length === plan.size || (plan.frozen && grad.length === 0));
      if (!(weight instanceof Float32Array) || weight.length !== plan.size) {
        throw new OptimizerStateError(
          `Cannot step: weights[${i}] for "${plan.name}" must be a ` +
            `Float32Array of ${plan.size} values, received ` +
            `${describeArray(weight)}`,
          { variable: plan.name },
        );
      }
      if (!gradOk) {
        throw new OptimizerStateError(
          `Cannot step: grads[${i}] for "${plan.name}" must be a ` +
            `Float32Array of ${plan.size} values, received ` +
            `${describeArray(grad)}`,
          { variable: plan.name },
        );
      }
    });
  }

  /**
   * Copies the trained gradients into kernel memory and returns their L2
   * norm, summed in float64 in a fixed order.
   */
  #globalNorm(grads: Float32Array[]): number {
    // Squares of float32 values cannot overflow a float64 sum, so the norm
    // is non-finite exactly when some gradient value is. The sum runs chunk
    // by chunk in the same order whether the gradient is copied in or
    // already there, so both paths give the same bits; a copied chunk is
    // summed while it is cache-hot.
    let sumOfSquares = 0;
    for (const slot of this.#slots) {
      const grad = grads[slot.index]!;
      const inPlace = isSameView(grad, slot.gradView);
      for (let start = 0; start < slot.plan.size; start += CHUNK_VALUES) {
        const length = Math.min(CHUNK_VALUES, slot.plan.size - start);
        const offset = slot.gradOffset + start * 4;
        if (!inPlace) {
          this.#memory.set(grad.subarray(start, start + length), offset / 4);
        }
        sumOfSquares += this.#kernel.sumsq(offset, Math.ceil(length / 4));
      }
    }
    return Math.sqrt(sumOfSquares);
  }

  /** Runs the kernel over one variable, its weights staged in chunks. */
  #updateVariable(
    slot: Slot,
    weight: Float32Array,
    at: { lr: number; gradScale: number },
  ): void {
    const c = stepCoefficients({
      config: this.config,
      rate: at.lr,
      peak: this.schedule.peak,
      multiplier: slot.plan.multiplier,
      decayed: slot.plan.decayed,
      t: slot.count + 1,
      totalSteps: this.totalSteps,
    });

    const scalars = [
      c.beta1,
      c.oneMinusBeta1,
      c.beta2,
      c.oneMinusBeta2,
      c.epsilon,
      c.decay,
      c.stepSize,
      c.denomScale,
      at.gradScale,
    ] as const;

    // A variable's last group is zero-padded in every region, so its spare
    // lanes stay exactly 0 (0 * anything + 0, 0 / (0 + eps)).
    if (isSameView(weight, slot.weightView)) {
      this.#kernel.adamw(
        slot.weightOffset,
        slot.gradOffset,
        slot.firstOffset,
        slot.secondOffset,
        slot.groups,
        ...scalars,
      );
      return;
    }

    // Otherwise the weights pass through the staging buffer at byte 0; the
    // spare lanes of a last partial group are never copied back.
    for (let start = 0; start < slot.plan.size; start += CHUNK_VALUES) {
      const length = Math.min(CHUNK_VALUES, slot.plan.size - start);
      this.#memory.set(weight.subarray(start, start + length), 0);
      this.#kernel.adamw(
        0,
        slot.gradOffset + start * 4,
        slot.firstOffset + start * 4,
        slot.secondOffset + start * 4,
        Math.ceil(length / 4),
        ...scalars,
      );
      weight.set(this.#memory.subarray(0, length), start);
    }
  }

  #nonFiniteReason(grads: Float32Array[]): string {
    const bad: string[] = [];
    for (const slot of this.#slots) {
      const grad = grads[slot.index]!;
      const at = grad.findIndex((g) => !Number.isFinite(g));
      if (at >= 0) bad.push(`"${slot.plan.name}"[${at}] = ${grad[at]}`);
    }
    const shown = bad.slice(0, 3).join(", ");
    const more = bad.length > 3 ? ` and ${bad.length - 3} more variables` : "";
    return `non-finite gradient in ${shown}${more}; step skipped`;
  }
}
