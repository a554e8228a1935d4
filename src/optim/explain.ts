/**
 * "Which rule gave this variable its rate": one row per variable, the same
 * rows `deno task lr --json` prints.
 *
 * @module
 */
import { decayFraction } from "./coefficients.ts";
import type { RuleSource, VariablePlan } from "./rules.ts";
import type { Schedule } from "./schedule.ts";
import type { MatchMode, OptimizerConfig } from "./types.ts";

/** One variable's rate, and why. */
export interface RateRow {
  /** Original variable name, e.g. `block_1_expand/kernel`. */
  name: string;
  /** Variable shape; `[]` for a scalar. */
  shape: number[];
  /** Element count. */
  params: number;
  /** Key of the rule that matched, or null (multiplier 1.0). */
  rule: string | null;
  /** `multipliers` (written) or `layerDecay` (generated), or null. */
  ruleSource: RuleSource | null;
  /** Index of the rule within its source list, or null. */
  ruleIndex: number | null;
  /** Match mode of the rule, or null. */
  match: MatchMode | null;
  /** Keys of later rules that also match and lose. */
  alsoMatched: string[];
  /** Learning-rate multiplier the rules give it (1.0 when none matched). */
  multiplier: number;
  /** True when the variable is never updated. */
  frozen: boolean;
  /** Why it is frozen, or null. */
  frozenBy: string | null;
  /** True when decoupled weight decay applies to it. */
  decayed: boolean;
  /** Why it is not decayed, or null. */
  decayExcludedBy: string | null;
  /** Effective rate `schedule(step) * multiplier` (0 when frozen). */
  lr: number;
  /** Fraction of the weight the decoupled decay removes at this step. */
  decayPerStep: number;
}

/** Inputs of {@linkcode explainRates}. */
export interface ExplainOptions {
  /** Resolved variables (`resolveVariables`), one row each. */
  plans: readonly VariablePlan[];
  /** The parsed optimizer config the plans came from. */
  config: OptimizerConfig;
  /** Learning-rate schedule evaluated at `step`. */
  schedule: Schedule;
  /** Optimizer steps in the run (keras decay normalisation uses it). */
  totalSteps: number;
  /** 0-based global step to evaluate at. */
  step: number;
}

/** Builds the explain rows at a step. */
export function explainRates(options: ExplainOptions): RateRow[] {
  const { plans, config, schedule, totalSteps, step } = options;
  const rate = schedule.at(step);

  return plans.map((plan) => ({
    name: plan.name,
    shape: [...plan.shape],
    params: plan.size,
    rule: plan.rule?.key ?? null,
    ruleSource: plan.rule?.source ?? null,
    ruleIndex: plan.rule?.index ?? null,
    match: plan.rule?.match ?? null,
    alsoMatched: plan.shadowed.map((r) => r.key),
    multiplier: plan.multiplier,
    frozen: plan.frozen,
    frozenBy: plan.frozenBy,
    decayed: plan.decayed,
    decayExcludedBy: plan.decayExcludedBy,
    lr: plan.frozen ? 0 : rate * plan.multiplier,
    decayPerStep: plan.frozen ? 0 : decayFraction({
      config,
      rate,
      peak: schedule.peak,
      multiplier: plan.multiplier,
      decayed: plan.decayed,
      totalSteps,
    }),
  }));
}
