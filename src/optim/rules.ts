/**
 * Multiplier rules, freeze lists and decay exclusions, resolved once per
 * variable by name. keras-adamw semantics by default: a key matches when it
 * is a substring of the variable's original name, the first matching rule in
 * written order wins, no match means 1.0.
 *
 * @module
 */
import { OptimizerStateError } from "./errors.ts";
import { powInt } from "./schedule.ts";
import type {
  LayerDecayConfig,
  MatchRule,
  MultiplierRule,
  OptimizerConfig,
  VariableSpec,
} from "./types.ts";

/** Where a multiplier rule came from. */
export type RuleSource = "multipliers" | "layerDecay";

/** A multiplier rule with its place in the resolution order. */
export interface PlacedRule extends MultiplierRule {
  /**
   * List the rule comes from: written `multipliers` or generated `layerDecay`.
   */
  source: RuleSource;
  /** Index within its source list. */
  index: number;
}

/** How one variable is treated, resolved once by name. */
export interface VariablePlan {
  /** Original variable name the rules matched against. */
  name: string;
  /** Variable shape; `[]` for a scalar. */
  shape: number[];
  /** Element count. */
  size: number;
  /** Learning-rate multiplier from `rule`; 1.0 when none matched. */
  multiplier: number;
  /** The rule that gave the multiplier, or null (1.0 by default). */
  rule: PlacedRule | null;
  /** Later rules that also match and lose to `rule`. */
  shadowed: PlacedRule[];
  /** Frozen variables are never updated and have no moments. */
  frozen: boolean;
  /** Why the variable is frozen, or null. */
  frozenBy: string | null;
  /** True when decoupled weight decay applies to the variable. */
  decayed: boolean;
  /** Why the variable is not decayed, or null when it is. */
  decayExcludedBy: string | null;
}

/** A doubtful rule, found when rules meet the actual variable names. */
export interface RuleWarning {
  /**
   * What is doubtful: the rule matches nothing, never wins, shares variables
   * with other rules, or its key runs into a longer number.
   */
  kind: "unused-rule" | "shadowed-rule" | "overlap" | "digit-boundary";
  /** One readable sentence naming the rule(s) and some variables. */
  message: string;
  /** The rule keys involved. */
  rules: string[];
  /** Some of the variables involved. */
  variables: string[];
}

/** Compiles a rule into a name predicate (regexes compiled once). */
export function ruleMatcher(rule: MatchRule): (name: string) => boolean {
  const { key } = rule;
  switch (rule.match) {
    case "substring":
      return (name) => name.includes(key);
    case "prefix":
      return (name) => name.startsWith(key);
    case "exact":
      return (name) => name === key;
    case "regex": {
      const pattern = new RegExp(key);
      return (name) => pattern.test(name);
    }
  }
}

/** Human label of a rule, e.g. `multipliers[3] "block_4_"`. */
export function ruleLabel(rule: PlacedRule): string {
  const mode = rule.match === "substring" ? "" : ` (${rule.match})`;
  return `${rule.source}[${rule.index}] "${rule.key}"${mode}`;
}

/**
 * Layer-wise decay rules for MobileNetV2 by depth: `block_i` gets
 * `decay^(depthMax - i)`, block 0 (`expanded_conv_`) `decay^depthMax`, the
 * stem (`Conv1`, `bn_Conv1`) `decay^(depthMax + 1)` (lowest), the top
 * convolution (`Conv_1`, `Conv_1_bn`) 1.0; the head matches nothing and
 * keeps 1.0. Prefix rules, so `block_1_` never catches `block_10_`.
 */
export function mobileNetV2LayerDecay(
  options: LayerDecayConfig,
): MultiplierRule[] {
  const { decay, depthMax } = options;
  const rule = (key: string, depth: number): MultiplierRule => ({
    key,
    multiplier: powInt(decay, depthMax - depth),
    match: "prefix",
  });

  const blocks: MultiplierRule[] = [];
  for (let i = depthMax; i >= 1; i--) blocks.push(rule(`block_${i}_`, i));
  return [
    rule("Conv_1/", depthMax),
    rule("Conv_1_bn/", depthMax),
    ...blocks,
    rule("expanded_conv_", 0),
    rule("Conv1/", -1),
    rule("bn_Conv1/", -1),
  ];
}

/**
 * Freeze rules for MobileNetV2's three fine-tuning modes: `"backbone"`
 * freezes everything but the head; a block number k freezes the stem and
 * blocks 0..k (k = -1 freezes nothing).
 */
export function mobileNetV2FreezeRules(
  through: number | "backbone",
): MatchRule[] {
  if (through === "backbone") {
    return [{ key: "^(?!flower_)", match: "regex" }];
  }
  if (!Number.isInteger(through) || through < -1) {
    throw new RangeError(
      `Cannot build freeze rules: 'through' must be "backbone" or an ` +
        `integer >= -1, received ${through}`,
    );
  }
  if (through === -1) return [];

  const rules: MatchRule[] = [
    { key: "Conv1/", match: "prefix" },
    { key: "bn_Conv1/", match: "prefix" },
    { key: "expanded_conv_", match: "prefix" },
  ];
  for (let i = 1; i <= through; i++) {
    rules.push({ key: `block_${i}_`, match: "prefix" });
  }
  return rules;
}

/** All multiplier rules in resolution order: written, then generated. */
export function placedRules(config: OptimizerConfig): PlacedRule[] {
  const written = config.multipliers.map((rule, index) => ({
    ...rule,
    source: "multipliers" as const,
    index,
  }));
  const generated = config.layerDecay === null
    ? []
    : mobileNetV2LayerDecay(config.layerDecay).map((rule, index) => ({
      ...rule,
      source: "layerDecay" as const,
      index,
    }));
  return [...written, ...generated];
}

/**
 * Resolves every variable's multiplier, freezing and decay once, by name.
 *
 * @throws {OptimizerStateError} for a duplicate name or a bad shape.
 */
export function resolveVariables(
  variables: readonly VariableSpec[],
  config: OptimizerConfig,
): VariablePlan[] {
  checkVariables(variables);
  const rules = placedRules(config);
  const ruleTests = rules.map(ruleMatcher);
  const freezeTests = config.freeze.map(ruleMatcher);
  const excludeTests = config.decayExclude.map(ruleMatcher);

  return variables.map(({ name, shape }) => {
    const matched = rules.filter((_, i) => ruleTests[i]!(name));
    const rule = matched[0] ?? null;
    const multiplier = rule?.multiplier ?? 1;

    const freezeIndex = freezeTests.findIndex((test) => test(name));
    const frozenBy = freezeIndex >= 0
      ? `freeze[${freezeIndex}] "${config.freeze[freezeIndex]!.key}"`
      : multiplier === 0
      ? `multiplier 0 from ${ruleLabel(rule!)}`
      : null;

    const excludeIndex = excludeTests.findIndex((test) => test(name));
    const decayExcludedBy = frozenBy !== null
      ? "frozen"
      : config.weightDecay === 0
      ? "weightDecay is 0"
      : excludeIndex >= 0
      ? `decayExclude[${excludeIndex}] "${
        config.decayExclude[excludeIndex]!.key
      }"`
      : config.decayExcludeVectors && shape.length <= 1
      ? "rank <= 1 (decayExcludeVectors)"
      : null;

    return {
      name,
      shape: [...shape],
      size: shape.reduce((a, b) => a * b, 1),
      multiplier,
      rule,
      shadowed: matched.slice(1),
      frozen: frozenBy !== null,
      frozenBy,
      decayed: decayExcludedBy === null,
      decayExcludedBy,
    };
  });
}

function checkVariables(variables: readonly VariableSpec[]): void {
  const seen = new Set<string>();
  for (const { name, shape } of variables) {
    if (typeof name !== "string" || name.length === 0) {
      throw new OptimizerStateError(
        `Cannot resolve variables: every variable needs a name, received ` +
          `${JSON.stringify(name)}`,
        { variable: String(name) },
      );
    }
    if (seen.has(name)) {
      throw new OptimizerStateError(
        `Cannot resolve variables: "${name}" appears twice; moments are ` +
          `keyed by name, so names must be unique`,
        { variable: name },
      );
    }
    seen.add(name);
    if (
      !Array.isArray(shape) ||
      !shape.every((d) => Number.isInteger(d) && d >= 0)
    ) {
      throw new OptimizerStateError(
        `Cannot resolve variables: "${name}" has shape ` +
          `${JSON.stringify(shape)}; expected non-negative integers`,
        { variable: name },
      );
    }
  }
}

/**
 * Finds rules that match no variable, written rules that never win,
 * variables that several written rules match, and keys that run into a
 * longer number (`block_1` also catches `block_10`..`block_16`).
 */
export function ruleWarnings(
  plans: readonly VariablePlan[],
  config: OptimizerConfig,
): RuleWarning[] {
  const warnings: RuleWarning[] = [];
  const names = plans.map((p) => p.name);
  const rules = placedRules(config);

  for (const rule of rules) {
    const test = ruleMatcher(rule);
    const hits = names.filter(test);
    if (hits.length === 0) {
      warnings.push({
        kind: "unused-rule",
        message: `rule ${ruleLabel(rule)} matches no variable`,
        rules: [rule.key],
        variables: [],
      });
      continue;
    }

    const wins = plans.filter((p) =>
      p.rule?.source === rule.source && p.rule.index === rule.index
    ).length;
    if (rule.source === "multipliers" && wins === 0) {
      warnings.push({
        kind: "shadowed-rule",
        message: `rule ${ruleLabel(rule)} matches ${hits.length} ` +
          `variable(s) but earlier rules take all of them, so it never ` +
          `applies (e.g. ${listSome(hits)})`,
        rules: [rule.key],
        variables: hits,
      });
    }

    const runOn = digitRunOn(rule, hits);
    if (runOn.length > 0) {
      const caught = [
        ...new Set(runOn.map(({ token }) =>
          token
        )),
      ];
      warnings.push({
        kind: "digit-boundary",
        message: `rule ${ruleLabel(rule)} also catches ` +
          `${caught.join(", ")} (${runOn.length} variables), where the key ` +
          `runs into a longer number; end the key with "_" ` +
          `(e.g. "${rule.key}_") to stop at the number's end`,
        rules: [rule.key],
        variables: runOn.map(({ name }) => name),
      });
    }
  }

  for (const [label, group] of overlapGroups(plans)) {
    warnings.push({
      kind: "overlap",
      message: `${group.length} variable(s) match several rules, ${label}; ` +
        `the first wins: ${listSome(group.map((p) => p.name))}`,
      rules: [group[0]!.rule!, ...group[0]!.shadowed]
        .filter((r) => r.source === "multipliers")
        .map((r) => r.key),
      variables: group.map((p) => p.name),
    });
  }

  for (
    const [field, list] of [
      ["freeze", config.freeze],
      ["decayExclude", config.decayExclude],
    ] as const
  ) {
    list.forEach((rule, i) => {
      if (!names.some(ruleMatcher(rule))) {
        warnings.push({
          kind: "unused-rule",
          message: `rule ${field}[${i}] "${rule.key}" matches no variable`,
          rules: [rule.key],
          variables: [],
        });
      }
    });
  }
  return warnings;
}

/** Groups variables by the set of written rules that all match them. */
function overlapGroups(
  plans: readonly VariablePlan[],
): Map<string, VariablePlan[]> {
  const groups = new Map<string, VariablePlan[]>();
  for (const plan of plans) {
    if (plan.rule === null) continue;
    const written = [plan.rule, ...plan.shadowed].filter((r) =>
      r.source === "multipliers"
    );
    if (written.length < 2) continue;
    const label = written.map(ruleLabel).join(" and ");
    const group = groups.get(label) ?? [];
    group.push(plan);
    groups.set(label, group);
  }
  return groups;
}

/**
 * Names a substring/prefix key ending in a digit matches only by running
 * into a longer number (`block_1` in `block_10_expand`), each with the
 * longer token it caught (`block_10`).
 */
function digitRunOn(
  rule: PlacedRule,
  hits: string[],
): Array<{ name: string; token: string }> {
  if (rule.match !== "substring" && rule.match !== "prefix") return [];
  if (!/[0-9]$/.test(rule.key)) return [];

  const found: Array<{ name: string; token: string }> = [];
  for (const name of hits) {
    let token: string | null = null;
    for (
      let at = name.indexOf(rule.key);
      at >= 0;
      at = rule.match === "prefix" ? -1 : name.indexOf(rule.key, at + 1)
    ) {
      const rest = name.slice(at + rule.key.length);
      const digits = /^[0-9]+/.exec(rest);
      if (digits === null) {
        token = null;
        break;
      }
      token ??= rule.key + digits[0];
    }
    if (token !== null) found.push({ name, token });
  }
  return found;
}

function listSome(items: readonly string[], shown = 3): string {
  const head = items.slice(0, shown).join(", ");
  return items.length > shown
    ? `${head} and ${items.length - shown} more`
    : head;
}
