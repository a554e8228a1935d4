/**
 * Per-variable step coefficients shared by the flat and the tfjs AdamW, so
 * both forms run the same arithmetic. Each convention reduces to one update
 * with three scalars per variable and step:
 *
 *   m <- beta1 * m + (1 - beta1) * g
 *   v <- beta2 * v + (1 - beta2) * g^2
 *   w <- w - (stepSize * m / (sqrt(v) * denomScale + epsilon) + decay * w)
 *
 * `pytorch` (Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
 * ICLR 2019, as in torch.optim.AdamW and optax.adamw):
 *   decay = lrEff * wd, stepSize = lrEff / (1 - beta1^t),
 *   denomScale = 1 / sqrt(1 - beta2^t); this is
 *   `w * (1 - lrEff * wd) - lrEff * mHat / (sqrt(vHat) + eps)` with the
 *   bias-corrected moments mHat, vHat.
 *
 * `keras` (keras-adamw): decay = eta * wdNorm,
 *   stepSize = lrEff * sqrt(1 - beta2^t) / (1 - beta1^t), denomScale = 1;
 *   eps is added to the raw `sqrt(v)`, as Keras's Adam does.
 *
 * The decay is applied as a separate term rather than as a factor
 * `1 - decay` on w: in float32 a factor that close to 1 would round away
 * most of a small decay (1 - 1e-7 is 2 ulps below 1.0).
 *
 * @module
 */
import { powInt } from "./schedule.ts";
import type { OptimizerConfig } from "./types.ts";

/** The scalars of one variable's update at one step. */
export interface StepCoefficients {
  beta1: number;
  oneMinusBeta1: number;
  beta2: number;
  oneMinusBeta2: number;
  epsilon: number;
  /** Fraction of the old weight removed by the decoupled decay. */
  decay: number;
  /** Factor on `m / (sqrt(v) * denomScale + epsilon)`. */
  stepSize: number;
  /** Bias correction of the second moment inside the denominator. */
  denomScale: number;
}

/** What the coefficients of one variable depend on. */
export interface CoefficientInputs {
  config: OptimizerConfig;
  /** `schedule(step)`. */
  rate: number;
  /** The schedule's peak, for keras `decayEta: "schedule"`. */
  peak: number;
  /** The variable's multiplier. */
  multiplier: number;
  /** Whether the variable is decayed. */
  decayed: boolean;
  /** 1-based update count of this variable's moments (t). */
  t: number;
  /** Steps in the run, for keras `normalizeDecay`. */
  totalSteps: number;
}

/** The decoupled decay fraction removed from the weight at this step. */
export function decayFraction(inputs: Omit<CoefficientInputs, "t">): number {
  const { config, rate, peak, multiplier, decayed, totalSteps } = inputs;
  if (!decayed) return 0;

  if (config.convention === "pytorch") {
    const effectiveRate = rate * multiplier;
    return effectiveRate * config.weightDecay;
  }

  // keras-adamw: the decay ignores the rate and the multiplier; eta is 1
  // when a callback sets the rate, or the paper's schedule multiplier.
  const normalizedDecay = config.normalizeDecay
    ? config.weightDecay * Math.sqrt(1 / totalSteps)
    : config.weightDecay;
  const eta = config.decayEta === "one" ? 1 : peak === 0 ? 0 : rate / peak;
  return eta * normalizedDecay;
}

/** Computes one variable's coefficients in float64. */
export function stepCoefficients(inputs: CoefficientInputs): StepCoefficients {
  const { config, rate, multiplier, t } = inputs;
  const { beta1, beta2, epsilon } = config;
  const effectiveRate = rate * multiplier;
  const firstCorrection = 1 - powInt(beta1, t);
  const secondCorrection = 1 - powInt(beta2, t);
  const decay = decayFraction(inputs);

  const common = {
    beta1,
    oneMinusBeta1: 1 - beta1,
    beta2,
    oneMinusBeta2: 1 - beta2,
    epsilon,
    decay,
  };
  if (config.convention === "pytorch") {
    return {
      ...common,
      stepSize: effectiveRate / firstCorrection,
      denomScale: 1 / Math.sqrt(secondCorrection),
    };
  }
  return {
    ...common,
    stepSize: effectiveRate * Math.sqrt(secondCorrection) / firstCorrection,
    denomScale: 1,
  };
}
