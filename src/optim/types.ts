/**
 * The parsed, fully defaulted optimizer configuration. Every field is
 * explicit, so a parsed config printed as JSON is itself a valid input of
 * `parseOptimizerConfig` and parses to an equal value.
 *
 * @module
 */

/** A trainable variable as the optimizer sees it. */
export interface VariableSpec {
  /** Original (unsuffixed) name, e.g. `block_1_expand/kernel`. */
  name: string;
  /** Its shape; `[]` for a scalar. */
  shape: number[];
}

/**
 * The two decoupled weight-decay conventions in use.
 *
 * - `pytorch` (also optax): `w <- w * (1 - lr_eff * wd)`, then the Adam step
 *   with bias-corrected moments; eps 1e-8.
 * - `keras` (keras-adamw): `lr_t = lr_eff * sqrt(1 - b2^t) / (1 - b1^t)`,
 *   `w <- w - lr_t * m / (sqrt(v) + eps) - eta * wd_n * w`; eps 1e-7.
 */
export type DecayConvention = "pytorch" | "keras";

/** How a rule key is compared with a variable name. */
export type MatchMode = "substring" | "prefix" | "exact" | "regex";

/** A key and how to match it, for freeze lists and decay exclusions. */
export interface MatchRule {
  /** Text compared with the variable's original name, as `match` says. */
  key: string;
  /** How `key` is compared; plain-key rules take the config's `match`. */
  match: MatchMode;
}

/** One learning-rate multiplier rule. */
export interface MultiplierRule extends MatchRule {
  /** Factor on the scheduled rate for the variables it wins; 0 freezes them. */
  multiplier: number;
}

/** Layer-wise decay by depth for MobileNetV2 (see `mobileNetV2LayerDecay`). */
export interface LayerDecayConfig {
  /** Ratio between the rates of consecutive blocks, in (0, 1]. */
  decay: number;
  /** Index of the deepest block, which gets `decay^0`. @default 16 */
  depthMax: number;
}

/**
 * The reference recipe's epoch schedule: a linear ramp from `start` to `max`
 * over `rampEpochs`, `sustainEpochs` at `max`, then
 * `(max - min) * decay^(epoch - rampEpochs - sustainEpochs) + min`.
 */
export interface ReferenceSchedule {
  /** Selects this schedule. */
  kind: "reference";
  /** Rate at epoch 0, where the ramp begins. */
  start: number;
  /**
   * Rate at the end of the ramp and through the sustain (before worker
   * scaling).
   */
  max: number;
  /** Floor the exponential decay approaches. */
  min: number;
  /** Epochs of the linear ramp from `start` to `max`. */
  rampEpochs: number;
  /** Epochs held at `max` after the ramp. */
  sustainEpochs: number;
  /** Per-epoch factor on `max - min` after the sustain. */
  decay: number;
  /**
   * `epoch`: whole epochs, as Keras's LearningRateScheduler does;
   * `step`: fractional epochs `step / stepsPerEpoch`.
   */
  per: "epoch" | "step";
  /** Multiply `max` by the number of workers. */
  scaleWithWorkers: boolean;
}

/** Linear warm-up from `start` to `peak` over `warmupSteps`, then `peak`. */
export interface WarmupStepsSchedule {
  /** Selects this schedule. */
  kind: "warmup_steps";
  /** Rate at step 0 (not scaled by workers). */
  start: number;
  /** Rate from step `warmupSteps` on (before worker scaling). */
  peak: number;
  /** Steps of the linear warm-up from `start` to `peak`. */
  warmupSteps: number;
  /** Multiply `peak` by the number of workers. */
  scaleWithWorkers: boolean;
}

/**
 * optax's `warmup_cosine_decay_schedule`: linear from `start` to `peak` over
 * `warmupSteps`, then a half cosine from `peak` down to `min`, reached at
 * step `decaySteps` (counted from step 0) and held after it.
 */
export interface CosineSchedule {
  /** Selects this schedule. */
  kind: "cosine";
  /** Rate at step 0 (not scaled by workers). */
  start: number;
  /** Rate at the end of the warm-up (before worker scaling). */
  peak: number;
  /** Rate at step `decaySteps` and after. */
  min: number;
  /** Steps of the linear warm-up from `start` to `peak`. */
  warmupSteps: number;
  /** Steps from 0 to the end of the decay; `null` means the run's total. */
  decaySteps: number | null;
  /** Multiply `peak` by the number of workers. */
  scaleWithWorkers: boolean;
}

/** The same rate at every step. */
export interface ConstantSchedule {
  /** Selects this schedule. */
  kind: "constant";
  /** The rate (before worker scaling). */
  value: number;
  /** Multiply `value` by the number of workers. */
  scaleWithWorkers: boolean;
}

/** Every schedule kind. */
export type ScheduleConfig =
  | ReferenceSchedule
  | WarmupStepsSchedule
  | CosineSchedule
  | ConstantSchedule;

/** What scales the keras-convention decay term. */
export type DecayEta = "one" | "schedule";

/** A parsed optimizer section; see docs/optimizer.md for every field. */
export interface OptimizerConfig {
  /** The preset the config started from, if any. */
  preset: "reference" | null;
  /** Decoupled-decay convention. @default "pytorch" */
  convention: DecayConvention;
  /** Decay rate of the first-moment average. @default 0.9 */
  beta1: number;
  /** Decay rate of the second-moment average. @default 0.999 */
  beta2: number;
  /**
   * Added to `sqrt(v)` in the denominator. @default 1e-8 (pytorch), 1e-7
   * (keras)
   */
  epsilon: number;
  /** Decoupled weight decay; 0 turns decay off. */
  weightDecay: number;
  /** keras only: multiply the decay by `sqrt(1 / totalSteps)`. */
  normalizeDecay: boolean;
  /**
   * keras only: eta is `one` (keras-adamw with the rate set by a callback)
   * or `schedule(step) / peak` (the paper's schedule multiplier).
   */
  decayEta: DecayEta;
  /** Variables whose name matches one of these keys are not decayed. */
  decayExclude: MatchRule[];
  /** Variables of rank <= 1 (biases, BatchNorm gamma/beta) are not decayed. */
  decayExcludeVectors: boolean;
  /** Global-norm gradient clipping threshold; `null` turns clipping off. */
  clipGlobalNorm: number | null;
  /** Default match mode of the rules written as plain keys. */
  match: MatchMode;
  /** Multiplier rules in written order; the first match wins. */
  multipliers: MultiplierRule[];
  /** Generated MobileNetV2 layer-wise decay, tried after `multipliers`. */
  layerDecay: LayerDecayConfig | null;
  /** Variables matching one of these are frozen (no update, no moments). */
  freeze: MatchRule[];
  /** Learning-rate schedule. @default constant 1e-3 */
  schedule: ScheduleConfig;
}

/**
 * Optimizer state keyed by variable name, never by position: moments under
 * `<var>/m` and `<var>/v`, each variable's update count (the `t` of its bias
 * correction) under `<var>`. Serialisable as is (Float32Arrays and numbers).
 */
export interface OptimizerState {
  /** Steps applied (skipped steps not counted). */
  step: number;
  /** `<var>/m` and `<var>/v` for every variable with moments. */
  moments: Record<string, Float32Array>;
  /** Updates applied to each variable's moments. */
  counts: Record<string, number>;
}
