/**
 * Parses and validates the `optimizer` section of a job config. Every error
 * names the dotted field at fault (`optimizer.schedule.decay`), so the user
 * can go straight to the line.
 *
 * @module
 */
import { PRESET_SECTIONS, type PresetName } from "./_preset_sections.ts";
import { describe, Fields, type Raw } from "./_fields.ts";
import type {
  DecayConvention,
  LayerDecayConfig,
  MatchMode,
  MatchRule,
  MultiplierRule,
  OptimizerConfig,
  ScheduleConfig,
} from "./types.ts";

/** Defaults that depend on the convention (PyTorch AdamW / keras-adamw). */
export const CONVENTION_DEFAULTS = {
  pytorch: {
    beta1: 0.9,
    beta2: 0.999,
    epsilon: 1e-8,
    weightDecay: 0.01,
    decayExcludeVectors: true,
  },
  keras: {
    beta1: 0.9,
    beta2: 0.999,
    epsilon: 1e-7,
    weightDecay: 0,
    decayExcludeVectors: false,
  },
} as const;

/** Defaults that do not depend on the convention. */
export const DEFAULTS = {
  convention: "pytorch",
  match: "substring",
  normalizeDecay: false,
  decayEta: "one",
  clipGlobalNorm: null,
  layerDecayDepthMax: 16,
  schedule: { kind: "constant", value: 1e-3, scaleWithWorkers: false },
} as const;

const CONVENTIONS: readonly DecayConvention[] = ["pytorch", "keras"];
const MATCH_MODES: readonly MatchMode[] = [
  "substring",
  "prefix",
  "exact",
  "regex",
];
const TOP_KEYS = [
  "preset",
  "convention",
  "beta1",
  "beta2",
  "epsilon",
  "weightDecay",
  "normalizeDecay",
  "decayEta",
  "decayExclude",
  "decayExcludeVectors",
  "clipGlobalNorm",
  "match",
  "multipliers",
  "layerDecay",
  "freeze",
  "schedule",
] as const;
const SCHEDULE_KEYS = {
  reference: [
    "kind",
    "start",
    "max",
    "min",
    "rampEpochs",
    "sustainEpochs",
    "decay",
    "per",
    "scaleWithWorkers",
  ],
  warmup_steps: ["kind", "start", "peak", "warmupSteps", "scaleWithWorkers"],
  cosine: [
    "kind",
    "start",
    "peak",
    "min",
    "warmupSteps",
    "decaySteps",
    "scaleWithWorkers",
  ],
  constant: ["kind", "value", "scaleWithWorkers"],
} as const;

/**
 * Parses the `optimizer` section of a job config, fills every default and
 * validates it. A `preset` key stands for the whole recipe; other keys
 * override the preset's (a `schedule` without `kind`, or with the preset's
 * kind, is merged into the preset's schedule).
 *
 * @param raw The section as parsed from JSON.
 * @param path The config file, named in error messages.
 * @returns A fully defaulted config; printing it as JSON gives a valid
 *   section that parses to an equal value (when it has rules or layer decay).
 * @throws {OptimizerConfigError} naming the field at fault.
 *
 * @example
 * ```ts
 * import { parseOptimizerConfig } from "./config.ts";
 *
 * const config = parseOptimizerConfig({ preset: "reference" });
 * console.assert(config.schedule.kind === "reference");
 * ```
 */
export function parseOptimizerConfig(
  raw: unknown,
  path?: string,
): OptimizerConfig {
  const f = new Fields(path);
  const section = f.object(raw ?? {}, "optimizer");
  f.knownKeys(section, "optimizer", TOP_KEYS);

  const preset = section.preset === undefined || section.preset === null
    ? null
    : f.oneOf(
      section.preset,
      "optimizer.preset",
      Object.keys(PRESET_SECTIONS) as PresetName[],
    );
  const merged = mergePreset(f, section, preset);

  const convention = merged.convention === undefined
    ? DEFAULTS.convention
    : f.oneOf(merged.convention, "optimizer.convention", CONVENTIONS);
  const base = CONVENTION_DEFAULTS[convention];
  const pick = <T>(key: string, fallback: T, parse: (v: unknown) => T): T =>
    merged[key] === undefined ? fallback : parse(merged[key]);

  if (convention === "pytorch") {
    // Their inert values are allowed, so that a parsed config re-parses.
    const inert: Record<string, unknown> = {
      normalizeDecay: DEFAULTS.normalizeDecay,
      decayEta: DEFAULTS.decayEta,
    };
    for (const key of ["normalizeDecay", "decayEta"]) {
      if (merged[key] !== undefined && merged[key] !== inert[key]) {
        f.fail(
          `optimizer.${key}`,
          `only applies to convention "keras", and convention is "pytorch"`,
        );
      }
    }
  }

  const match = pick(
    "match",
    DEFAULTS.match as MatchMode,
    (v) => f.oneOf(v, "optimizer.match", MATCH_MODES),
  );
  const layerDecay = parseLayerDecay(f, merged.layerDecay);
  const multipliers = parseMultipliers(f, merged.multipliers, match);
  if (
    merged.multipliers !== undefined && multipliers.length === 0 &&
    layerDecay === null
  ) {
    f.fail(
      "optimizer.multipliers",
      "is an empty rule set and layer decay is off; give at least one rule, " +
        "set optimizer.layerDecay, or leave the key out for a uniform rate",
    );
  }

  return {
    preset,
    convention,
    beta1: pick(
      "beta1",
      base.beta1,
      (v) => f.number(v, "optimizer.beta1", { min: 0, max: 1, maxOpen: true }),
    ),
    beta2: pick(
      "beta2",
      base.beta2,
      (v) => f.number(v, "optimizer.beta2", { min: 0, max: 1, maxOpen: true }),
    ),
    epsilon: pick(
      "epsilon",
      base.epsilon,
      (v) => f.number(v, "optimizer.epsilon", { min: 0, minOpen: true }),
    ),
    weightDecay: pick(
      "weightDecay",
      base.weightDecay,
      (v) => f.number(v, "optimizer.weightDecay", { min: 0 }),
    ),
    normalizeDecay: pick(
      "normalizeDecay",
      DEFAULTS.normalizeDecay as boolean,
      (v) => f.boolean(v, "optimizer.normalizeDecay"),
    ),
    decayEta: pick(
      "decayEta",
      DEFAULTS.decayEta,
      (v) => f.oneOf(v, "optimizer.decayEta", ["one", "schedule"] as const),
    ),
    decayExclude: parseMatchList(f, merged.decayExclude, {
      field: "optimizer.decayExclude",
      match,
    }),
    decayExcludeVectors: pick(
      "decayExcludeVectors",
      base.decayExcludeVectors as boolean,
      (v) => f.boolean(v, "optimizer.decayExcludeVectors"),
    ),
    clipGlobalNorm: merged.clipGlobalNorm === undefined ||
        merged.clipGlobalNorm === null
      ? DEFAULTS.clipGlobalNorm
      : f.number(merged.clipGlobalNorm, "optimizer.clipGlobalNorm", {
        min: 0,
        minOpen: true,
      }),
    match,
    multipliers,
    layerDecay,
    freeze: parseMatchList(f, merged.freeze, {
      field: "optimizer.freeze",
      match,
    }),
    schedule: parseSchedule(f, merged.schedule),
  };
}

function mergePreset(
  f: Fields,
  section: Raw,
  preset: PresetName | null,
): Raw {
  const { preset: _ignored, ...own } = section;
  if (preset === null) return own;

  const base: Raw = structuredClone(PRESET_SECTIONS[preset]) as Raw;
  const merged: Raw = { ...base, ...own };
  if (own.schedule !== undefined && own.schedule !== null) {
    const ownSchedule = f.object(own.schedule, "optimizer.schedule");
    const baseSchedule = base.schedule as Raw;
    if (
      ownSchedule.kind === undefined || ownSchedule.kind === baseSchedule.kind
    ) {
      merged.schedule = { ...baseSchedule, ...ownSchedule };
    }
  }
  return merged;
}

/** Canonical array-index keys, which a JS object moves ahead of the rest. */
function isIntegerLike(key: string): boolean {
  return /^(0|[1-9][0-9]*)$/.test(key) && Number(key) < 2 ** 32 - 1;
}

function parseMultipliers(
  f: Fields,
  raw: unknown,
  match: MatchMode,
): MultiplierRule[] {
  const field = "optimizer.multipliers";
  if (raw === undefined || raw === null) return [];

  if (Array.isArray(raw)) {
    return raw.map((entry, i) => parseRule(f, entry, `${field}[${i}]`, match));
  }

  const object = f.object(raw, field);
  return Object.entries(object).map(([key, multiplier]) => {
    if (isIntegerLike(key)) {
      f.fail(
        `${field}.${key}`,
        "is an integer-like key, which a JS object moves ahead of the other " +
          "keys, so the written order (first match wins) would be lost; " +
          "write the rules as an array of [key, multiplier] pairs",
      );
    }
    return {
      key: f.key(key, `${field}.${key}`, match),
      multiplier: f.number(multiplier, `${field}.${key}`, { min: 0 }),
      match,
    };
  });
}

function parseRule(
  f: Fields,
  entry: unknown,
  field: string,
  match: MatchMode,
): MultiplierRule {
  if (Array.isArray(entry)) {
    if (entry.length !== 2) {
      f.fail(
        field,
        `must be a [key, multiplier] pair, received ${entry.length} items`,
      );
    }
    return {
      key: f.key(entry[0], `${field}[0]`, match),
      multiplier: f.number(entry[1], `${field}[1]`, { min: 0 }),
      match,
    };
  }

  const rule = f.object(entry, field);
  f.knownKeys(rule, field, ["key", "multiplier", "match"]);
  const ruleMatch = rule.match === undefined
    ? match
    : f.oneOf(rule.match, `${field}.match`, MATCH_MODES);
  return {
    key: f.key(rule.key, `${field}.key`, ruleMatch),
    multiplier: f.number(rule.multiplier, `${field}.multiplier`, { min: 0 }),
    match: ruleMatch,
  };
}

function parseMatchList(
  f: Fields,
  raw: unknown,
  options: { field: string; match: MatchMode },
): MatchRule[] {
  const { field, match } = options;
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    f.fail(field, `must be an array of keys, received ${describe(raw)}`);
  }

  return raw.map((entry, i) => {
    if (typeof entry === "string") {
      return { key: f.key(entry, `${field}[${i}]`, match), match };
    }
    const rule = f.object(entry, `${field}[${i}]`);
    f.knownKeys(rule, `${field}[${i}]`, ["key", "match"]);
    const ruleMatch = rule.match === undefined
      ? match
      : f.oneOf(rule.match, `${field}[${i}].match`, MATCH_MODES);
    return {
      key: f.key(rule.key, `${field}[${i}].key`, ruleMatch),
      match: ruleMatch,
    };
  });
}

function parseLayerDecay(f: Fields, raw: unknown): LayerDecayConfig | null {
  const field = "optimizer.layerDecay";
  if (raw === undefined || raw === null || raw === false) return null;

  if (typeof raw === "number") {
    return {
      decay: f.number(raw, field, { min: 0, minOpen: true, max: 1 }),
      depthMax: DEFAULTS.layerDecayDepthMax,
    };
  }

  const object = f.object(raw, field);
  f.knownKeys(object, field, ["decay", "depthMax"]);
  return {
    decay: f.number(object.decay, `${field}.decay`, {
      min: 0,
      minOpen: true,
      max: 1,
    }),
    depthMax: object.depthMax === undefined
      ? DEFAULTS.layerDecayDepthMax
      : f.number(object.depthMax, `${field}.depthMax`, {
        min: 1,
        integer: true,
      }),
  };
}

function parseSchedule(f: Fields, raw: unknown): ScheduleConfig {
  const field = "optimizer.schedule";
  if (raw === undefined || raw === null) return { ...DEFAULTS.schedule };

  const s = f.object(raw, field);
  const kind = f.oneOf(
    s.kind,
    `${field}.kind`,
    Object.keys(SCHEDULE_KEYS) as ScheduleConfig["kind"][],
  );
  f.knownKeys(s, field, SCHEDULE_KEYS[kind]);

  const rate = (key: string, fallback?: number): number =>
    s[key] === undefined && fallback !== undefined
      ? fallback
      : f.number(s[key], `${field}.${key}`, { min: 0 });
  const steps = (key: string, fallback: number | undefined, min: number) =>
    s[key] === undefined && fallback !== undefined
      ? fallback
      : f.number(s[key], `${field}.${key}`, { min, integer: true });
  const scaleWithWorkers = s.scaleWithWorkers === undefined
    ? false
    : f.boolean(s.scaleWithWorkers, `${field}.scaleWithWorkers`);

  switch (kind) {
    case "reference":
      return {
        kind,
        start: rate("start"),
        max: rate("max"),
        min: rate("min"),
        rampEpochs: s.rampEpochs === undefined
          ? 0
          : f.number(s.rampEpochs, `${field}.rampEpochs`, { min: 0 }),
        sustainEpochs: s.sustainEpochs === undefined
          ? 0
          : f.number(s.sustainEpochs, `${field}.sustainEpochs`, { min: 0 }),
        decay: f.number(s.decay, `${field}.decay`, {
          min: 0,
          minOpen: true,
          max: 1,
        }),
        per: s.per === undefined
          ? "epoch"
          : f.oneOf(s.per, `${field}.per`, ["epoch", "step"] as const),
        scaleWithWorkers,
      };
    case "warmup_steps":
      return {
        kind,
        start: rate("start", 0),
        peak: rate("peak"),
        warmupSteps: steps("warmupSteps", undefined, 1),
        scaleWithWorkers,
      };
    case "cosine": {
      const warmupSteps = steps("warmupSteps", 0, 0);
      return {
        kind,
        start: rate("start", 0),
        peak: rate("peak"),
        min: rate("min", 0),
        warmupSteps,
        decaySteps: s.decaySteps === undefined || s.decaySteps === null
          ? null
          : f.number(s.decaySteps, `${field}.decaySteps`, {
            min: warmupSteps,
            minOpen: true,
            integer: true,
          }),
        scaleWithWorkers,
      };
    }
    case "constant":
      return { kind, value: rate("value"), scaleWithWorkers };
  }
}
