/**
 * Learning-rate schedules: the value `schedule(step)` that every variable's
 * multiplier scales. Pure functions of the step, so a resumed run, the PS and
 * the explain CLI all see the same numbers.
 *
 * Only IEEE basic operations are used where the exponent is an integer
 * (`powInt`), so those values are reproducible bit for bit in any language;
 * fractional epochs (`per: "step"`) and the cosine use `Math.pow` and
 * `Math.cos`, which are deterministic for one V8 build.
 *
 * @module
 */
import type { ScheduleConfig } from "./types.ts";

/** The run facts a schedule needs. */
export interface ScheduleContext {
  /** Data-parallel workers (replicas); scales the peak when asked. */
  workers: number;
  /** Optimizer steps in one epoch. */
  stepsPerEpoch: number;
  /** Optimizer steps in the whole run. */
  totalSteps: number;
}

/** A schedule bound to a run. */
export interface Schedule {
  /** The rate at a 0-based global step. */
  at(step: number): number;
  /** The highest rate the schedule is written to reach (after scaling). */
  readonly peak: number;
  /** The epoch the rate is evaluated at for a step (fractional if per step). */
  epochOf(step: number): number;
}

/**
 * `base^exponent` for a non-negative integer exponent by repeated squaring:
 * only multiplications, so the result is the same on every IEEE machine.
 */
export function powInt(base: number, exponent: number): number {
  let result = 1;
  let factor = base;
  let rest = exponent;
  while (rest > 0) {
    if (rest % 2 === 1) result *= factor;
    factor *= factor;
    rest = Math.floor(rest / 2);
  }
  return result;
}

/** Checks the run facts; throws RangeError naming the option. */
export function checkScheduleContext(context: ScheduleContext): void {
  const { workers, stepsPerEpoch, totalSteps } = context;
  if (!Number.isInteger(workers) || workers < 1) {
    throw new RangeError(
      `Cannot build the schedule: 'workers' must be an integer >= 1, ` +
        `received ${workers}`,
    );
  }
  if (!Number.isInteger(stepsPerEpoch) || stepsPerEpoch < 1) {
    throw new RangeError(
      `Cannot build the schedule: 'stepsPerEpoch' must be an integer >= 1, ` +
        `received ${stepsPerEpoch}`,
    );
  }
  if (!Number.isInteger(totalSteps) || totalSteps < 0) {
    throw new RangeError(
      `Cannot build the schedule: 'totalSteps' must be an integer >= 0, ` +
        `received ${totalSteps}`,
    );
  }
}

/**
 * Binds a schedule config to a run.
 *
 * @example
 * ```ts
 * import { makeSchedule } from "./schedule.ts";
 * import { PRESETS } from "./presets.ts";
 *
 * const s = makeSchedule(PRESETS.reference.schedule, {
 *   workers: 1, stepsPerEpoch: 175, totalSteps: 13 * 175,
 * });
 * console.assert(s.at(3 * 175) === 1e-4);
 * ```
 */
export function makeSchedule(
  config: ScheduleConfig,
  context: ScheduleContext,
): Schedule {
  checkScheduleContext(context);
  const { workers, stepsPerEpoch, totalSteps } = context;
  const scale = config.scaleWithWorkers ? workers : 1;
  const checkStep = (step: number) => {
    if (!Number.isInteger(step) || step < 0) {
      throw new RangeError(
        `Cannot evaluate the schedule: 'step' must be an integer >= 0, ` +
          `received ${step}`,
      );
    }
  };
  const epochOf = (step: number) =>
    config.kind === "reference" && config.per === "epoch"
      ? Math.floor(step / stepsPerEpoch)
      : step / stepsPerEpoch;

  switch (config.kind) {
    case "reference": {
      const max = config.max * scale;
      return {
        peak: max,
        epochOf,
        at(step) {
          checkStep(step);
          return referenceRate({ ...config, max }, epochOf(step));
        },
      };
    }
    case "warmup_steps": {
      const peak = config.peak * scale;
      return {
        peak,
        epochOf,
        at(step) {
          checkStep(step);
          if (step >= config.warmupSteps) return peak;
          return config.start +
            (peak - config.start) * step / config.warmupSteps;
        },
      };
    }
    case "cosine": {
      const peak = config.peak * scale;
      const decaySteps = config.decaySteps ?? totalSteps;
      return {
        peak,
        epochOf,
        at(step) {
          checkStep(step);
          return cosineRate({ ...config, peak, decaySteps }, step);
        },
      };
    }
    case "constant": {
      const value = config.value * scale;
      return {
        peak: value,
        epochOf,
        at(step) {
          checkStep(step);
          return value;
        },
      };
    }
  }
}

/** The reference recipe's `lrfn(epoch)`, in the book's operation order. */
function referenceRate(
  s: {
    start: number;
    max: number;
    min: number;
    rampEpochs: number;
    sustainEpochs: number;
    decay: number;
  },
  epoch: number,
): number {
  if (epoch < s.rampEpochs) {
    return (s.max - s.start) / s.rampEpochs * epoch + s.start;
  }
  if (epoch < s.rampEpochs + s.sustainEpochs) return s.max;

  const decayEpochs = epoch - s.rampEpochs - s.sustainEpochs;
  const decayFactor = Number.isInteger(decayEpochs)
    ? powInt(s.decay, decayEpochs)
    : Math.pow(s.decay, decayEpochs);
  return (s.max - s.min) * decayFactor + s.min;
}

/** optax's warm-up + cosine decay; held at `min` after `decaySteps`. */
function cosineRate(
  s: {
    start: number;
    peak: number;
    min: number;
    warmupSteps: number;
    decaySteps: number;
  },
  step: number,
): number {
  if (step < s.warmupSteps) {
    return s.start + (s.peak - s.start) * step / s.warmupSteps;
  }

  const decayLength = s.decaySteps - s.warmupSteps;
  if (decayLength <= 0) return s.min;
  const progress = Math.min(step - s.warmupSteps, decayLength) / decayLength;
  const cosineFactor = 0.5 * (1 + Math.cos(Math.PI * progress));
  return s.min + (s.peak - s.min) * cosineFactor;
}
