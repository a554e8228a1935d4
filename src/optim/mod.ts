/**
 * AdamW with per-layer learning rates and warm-up/decay schedules, exact and
 * explainable: a flat form for the parameter server, a tfjs form for
 * `model.fit`, the config parser, the presets and the explain rows.
 *
 * @module
 */
export type {
  ConstantSchedule,
  CosineSchedule,
  DecayConvention,
  DecayEta,
  LayerDecayConfig,
  MatchMode,
  MatchRule,
  MultiplierRule,
  OptimizerConfig,
  OptimizerState,
  ReferenceSchedule,
  ScheduleConfig,
  VariableSpec,
  WarmupStepsSchedule,
} from "./types.ts";
export {
  CONVENTION_DEFAULTS,
  DEFAULTS,
  parseOptimizerConfig,
} from "./config.ts";
export {
  OptimizerConfigError,
  type OptimizerConfigErrorOptions,
  OptimizerStateError,
  type OptimizerStateErrorOptions,
} from "./errors.ts";
export {
  FlatAdamW,
  type FlatAdamWOptions,
  type StepArgs,
  type StepOutcome,
} from "./flat_adamw.ts";
export {
  AdamW,
  type AdamWOptions,
  type NamedTensor,
  type NamedWeight,
} from "./tf_adamw.ts";
export { PRESET_SECTIONS, PRESETS, REFERENCE_MULTIPLIERS } from "./presets.ts";
export {
  checkScheduleContext,
  makeSchedule,
  powInt,
  type Schedule,
  type ScheduleContext,
} from "./schedule.ts";
export {
  mobileNetV2FreezeRules,
  mobileNetV2LayerDecay,
  type PlacedRule,
  placedRules,
  resolveVariables,
  ruleMatcher,
  type RuleSource,
  type RuleWarning,
  ruleWarnings,
  type VariablePlan,
} from "./rules.ts";
export { type ExplainOptions, explainRates, type RateRow } from "./explain.ts";
export {
  decayFraction,
  type StepCoefficients,
  stepCoefficients,
} from "./coefficients.ts";
export { type LayerVariableLike, trainableVariableSpecs } from "./variables.ts";
export {
  type LayerGroup,
  layerGroupOf,
  layerGroups,
  recipeSvg,
  type RecipeSvgOptions,
} from "./plot.ts";
