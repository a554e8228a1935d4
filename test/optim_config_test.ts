/**
 * Config parsing: defaults per convention, presets, and errors that name
 * the field at fault.
 */
import assert from "node:assert/strict";
import {
  CONVENTION_DEFAULTS,
  OptimizerConfigError,
  parseOptimizerConfig,
  PRESETS,
} from "../src/optim/mod.ts";

function assertFieldError(raw: unknown, field: string, pattern: RegExp) {
  assert.throws(
    () => parseOptimizerConfig(raw, "job.json"),
    (error: unknown) => {
      assert.ok(error instanceof OptimizerConfigError, String(error));
      assert.equal(error.name, "OptimizerConfigError");
      assert.equal(error.field, field);
      assert.equal(error.file, "job.json");
      assert.match(error.message, /^Invalid optimizer config in job\.json: /);
      assert.ok(error.message.includes(`"${field}"`), error.message);
      assert.match(error.message, pattern);
      return true;
    },
  );
}

Deno.test("config - conventions bring their defaults", () => {
  const pytorch = parseOptimizerConfig({});
  assert.equal(pytorch.convention, "pytorch");
  assert.equal(pytorch.epsilon, 1e-8);
  assert.equal(pytorch.weightDecay, 0.01);
  assert.equal(pytorch.decayExcludeVectors, true);
  assert.deepEqual(pytorch.schedule, {
    kind: "constant",
    value: 1e-3,
    scaleWithWorkers: false,
  });

  const keras = parseOptimizerConfig({ convention: "keras" });
  assert.equal(keras.epsilon, 1e-7);
  assert.equal(keras.weightDecay, 0);
  assert.equal(keras.decayExcludeVectors, false);
  assert.equal(keras.decayEta, "one");
  assert.equal(CONVENTION_DEFAULTS.keras.epsilon, keras.epsilon);
});

Deno.test("config - preset keys are overridden key by key", () => {
  const config = parseOptimizerConfig({
    preset: "reference",
    weightDecay: 1e-4,
    schedule: { rampEpochs: 2 },
  });
  assert.equal(config.preset, "reference");
  assert.equal(config.weightDecay, 1e-4);
  assert.equal(config.schedule.kind, "reference");
  assert.equal(
    config.schedule.kind === "reference" && config.schedule.rampEpochs,
    2,
  );
  assert.deepEqual(config.multipliers, PRESETS.reference.multipliers);

  const replaced = parseOptimizerConfig({
    preset: "reference",
    schedule: { kind: "constant", value: 0.5 },
  });
  assert.deepEqual(replaced.schedule, {
    kind: "constant",
    value: 0.5,
    scaleWithWorkers: false,
  });
});

Deno.test("config - a parsed config re-parses to itself", () => {
  for (const raw of [{ preset: "reference" }, { layerDecay: 0.7 }]) {
    const config = parseOptimizerConfig(raw);
    const again = parseOptimizerConfig(JSON.parse(JSON.stringify(config)));
    assert.deepEqual(again, config);
  }
});

Deno.test("config - configs/reference_optimizer.json is the reference preset", async () => {
  const text = await Deno.readTextFile(
    new URL("../configs/reference_optimizer.json", import.meta.url),
  );
  const config = parseOptimizerConfig(JSON.parse(text).optimizer);
  assert.deepEqual({ ...config, preset: "reference" }, PRESETS.reference);
});

Deno.test("config - unknown keys name the field", () => {
  assertFieldError({ lr: 1 }, "optimizer.lr", /not a known key/);
  assertFieldError(
    {
      schedule: {
        kind: "reference",
        max: 1,
        min: 0,
        start: 0,
        decay: 0.5,
        foo: 1,
      },
    },
    "optimizer.schedule.foo",
    /expected one of kind, start, max/,
  );
  assertFieldError(
    { multipliers: [{ key: "a", multiplier: 1, mode: "prefix" }] },
    "optimizer.multipliers[0].mode",
    /not a known key/,
  );
});

Deno.test("config - negative and NaN rates are refused", () => {
  assertFieldError(
    { schedule: { kind: "constant", value: -0.1 } },
    "optimizer.schedule.value",
    /must be a finite number >= 0, received -0.1/,
  );
  assertFieldError(
    { preset: "reference", schedule: { max: Number.NaN } },
    "optimizer.schedule.max",
    /received NaN/,
  );
  assertFieldError(
    { multipliers: [["block_1_", -1]] },
    "optimizer.multipliers[0][1]",
    /received -1/,
  );
  assertFieldError(
    { multipliers: [["block_1_", Number.NaN]] },
    "optimizer.multipliers[0][1]",
    /received NaN/,
  );
  assertFieldError({ weightDecay: -1 }, "optimizer.weightDecay", />= 0/);
});

Deno.test("config - decay outside (0, 1] is refused", () => {
  for (const decay of [0, 1.5, -0.2]) {
    assertFieldError(
      { preset: "reference", schedule: { decay } },
      "optimizer.schedule.decay",
      /must be a finite number in \(0, 1\]/,
    );
    assertFieldError(
      { layerDecay: { decay } },
      "optimizer.layerDecay.decay",
      /in \(0, 1\]/,
    );
  }
  assert.equal(
    parseOptimizerConfig({ layerDecay: { decay: 1 } }).layerDecay?.decay,
    1,
  );
});

Deno.test("config - empty rule set with layer decay off is refused", () => {
  assertFieldError(
    { multipliers: [] },
    "optimizer.multipliers",
    /empty rule set and layer decay is off/,
  );
  assertFieldError({ multipliers: {} }, "optimizer.multipliers", /empty/);
  assert.equal(
    parseOptimizerConfig({ multipliers: [], layerDecay: 0.8 }).layerDecay
      ?.decay,
    0.8,
  );
});

Deno.test("config - keras-only keys under pytorch, bad kinds and presets", () => {
  assertFieldError(
    { normalizeDecay: true },
    "optimizer.normalizeDecay",
    /only applies to convention "keras"/,
  );
  assertFieldError({ preset: "book" }, "optimizer.preset", /"reference"/);
  assertFieldError(
    { schedule: { kind: "linear" } },
    "optimizer.schedule.kind",
    /"reference", "warmup_steps", "cosine", "constant"/,
  );
  assertFieldError(
    { schedule: { kind: "warmup_steps", peak: 1 } },
    "optimizer.schedule.warmupSteps",
    /received nothing/,
  );
  assertFieldError(
    { schedule: { kind: "cosine", peak: 1, warmupSteps: 10, decaySteps: 5 } },
    "optimizer.schedule.decaySteps",
    /> 10/,
  );
  assertFieldError({ beta2: 1 }, "optimizer.beta2", /in \[0, 1\)/);
  assertFieldError({ epsilon: 0 }, "optimizer.epsilon", /> 0/);
  assertFieldError({ clipGlobalNorm: 0 }, "optimizer.clipGlobalNorm", /> 0/);
  assertFieldError([], "optimizer", /must be an object, received an array/);
});
