/**
 * Multiplier rules: the reference preset's map, keras-adamw's first-match
 * semantics, match modes, layer-wise decay, freezing and the warnings.
 */
import assert from "node:assert/strict";
import {
  FlatAdamW,
  mobileNetV2FreezeRules,
  OptimizerConfigError,
  parseOptimizerConfig,
  PRESETS,
  resolveVariables,
  ruleWarnings,
  type VariableSpec,
} from "../src/optim/mod.ts";

const spec = (name: string, shape: number[] = [4]): VariableSpec => ({
  name,
  shape,
});

Deno.test("reference preset - multipliers of representative variables", () => {
  // The book's table, substring keys in written order; expected by hand:
  const expected: Array<[string, number, string | null]> = [
    ["block_1_expand/kernel", 0.008, "block_1_"],
    ["block_11_expand/kernel", 0.1, "block_11_"], // not "block_1_"
    ["block_16_project_BN/beta", 0.36, "block_16_"],
    ["bn_Conv1/gamma", 0.2, "Conv"], // "Conv" inside bn_Conv1
    ["Conv1/kernel", 0.2, "Conv"],
    ["Conv_1/kernel", 0.2, "Conv"],
    ["Conv_1_bn/gamma", 0.2, "Conv"],
    ["expanded_conv_project/kernel", 0.2, "conv"], // block 0
    ["flower_dense/kernel", 1.0, null],
    ["flower_prob/bias", 1.0, null],
  ];
  const plans = resolveVariables(
    expected.map(([name]) => spec(name)),
    PRESETS.reference,
  );

  plans.forEach((plan, i) => {
    const [name, multiplier, key] = expected[i]!;
    assert.equal(plan.name, name);
    assert.equal(plan.multiplier, multiplier, name);
    assert.equal(plan.rule?.key ?? null, key, name);
  });
});

Deno.test("reference preset - recipe facts", () => {
  const config = PRESETS.reference;
  assert.equal(config.convention, "keras");
  assert.equal(config.weightDecay, 0);
  assert.equal(config.epsilon, 1e-7);
  assert.equal(config.multipliers.length, 18);
  assert.ok(Object.isFrozen(config.multipliers));
});

Deno.test("rules - first match in written order wins", () => {
  const config = parseOptimizerConfig({
    multipliers: [["dense", 0.5], ["dense_1", 0.25], ["kernel", 2]],
  });
  const [a, b, c] = resolveVariables(
    [spec("dense_1/kernel"), spec("other/kernel"), spec("other/bias")],
    config,
  );
  assert.equal(a!.multiplier, 0.5);
  assert.deepEqual(a!.shadowed.map((r) => r.key), ["dense_1", "kernel"]);
  assert.equal(b!.multiplier, 2);
  assert.equal(c!.multiplier, 1);
  assert.equal(c!.rule, null);
});

Deno.test("rules - object form keeps written order of non-integer keys", () => {
  const config = parseOptimizerConfig({
    multipliers: { "b_": 0.5, "a_": 0.25 },
  });
  assert.deepEqual(config.multipliers.map((r) => r.key), ["b_", "a_"]);
});

Deno.test("rules - object form rejects integer-like keys", () => {
  // {"b": 1, "10": 2} iterates as "10", "b" in JS: the order would be lost.
  assert.throws(
    () => parseOptimizerConfig({ multipliers: { b: 1, "10": 2 } }),
    (error: unknown) => {
      assert.ok(error instanceof OptimizerConfigError);
      assert.equal(error.field, "optimizer.multipliers.10");
      assert.match(error.message, /integer-like key/);
      assert.match(error.message, /\[key, multiplier\] pairs/);
      return true;
    },
  );
});

Deno.test("rules - prefix, exact and regex match modes", () => {
  const config = parseOptimizerConfig({
    multipliers: [
      { key: "head/kernel", multiplier: 3, match: "exact" },
      { key: "head", multiplier: 2, match: "prefix" },
      { key: "^block_(1[0-6])_", multiplier: 0.5, match: "regex" },
      ["block_1", 0.1],
    ],
  });
  const multipliers = resolveVariables(
    [
      spec("head/kernel"),
      spec("head/bias"),
      spec("my_head/bias"),
      spec("block_12_expand/kernel"),
      spec("block_1_expand/kernel"),
    ],
    config,
  ).map((p) => p.multiplier);
  assert.deepEqual(multipliers, [3, 2, 1, 0.5, 0.1]);
});

Deno.test("rules - invalid regex is a config error naming the rule", () => {
  assert.throws(
    () =>
      parseOptimizerConfig({
        multipliers: [{ key: "block_(", multiplier: 1, match: "regex" }],
      }),
    (error: unknown) =>
      error instanceof OptimizerConfigError &&
      error.field === "optimizer.multipliers[0].key",
  );
});

Deno.test("layer decay - MobileNetV2 depth rule", () => {
  // block_i gets 0.5^(16 - i); block 0 0.5^16; stem 0.5^17; top and head 1.
  const config = parseOptimizerConfig({ layerDecay: { decay: 0.5 } });
  const names = [
    "Conv1/kernel",
    "bn_Conv1/gamma",
    "expanded_conv_depthwise/depthwise_kernel",
    "block_1_expand/kernel",
    "block_10_expand/kernel",
    "block_16_project/kernel",
    "Conv_1/kernel",
    "Conv_1_bn/beta",
    "flower_prob/kernel",
  ];
  const expected = [
    0.5 ** 17,
    0.5 ** 17,
    0.5 ** 16,
    0.5 ** 15,
    0.5 ** 6,
    1,
    1,
    1,
    1,
  ];
  const plans = resolveVariables(names.map((n) => spec(n)), config);
  assert.deepEqual(plans.map((p) => p.multiplier), expected);
  assert.equal(plans[4]!.rule?.key, "block_10_");
  assert.equal(plans[8]!.rule, null);
});

Deno.test("layer decay - written rules take precedence over generated ones", () => {
  const config = parseOptimizerConfig({
    layerDecay: 0.5,
    multipliers: [["block_16_", 0.01]],
  });
  const [plan] = resolveVariables([spec("block_16_add/x")], config);
  assert.equal(plan!.multiplier, 0.01);
  assert.equal(plan!.rule?.source, "multipliers");
});

Deno.test("freeze - multiplier 0 and freeze list freeze; no moments, no cost", () => {
  const optimizer = new FlatAdamW({
    variables: [spec("a/kernel"), spec("b/kernel"), spec("c/kernel")],
    config: parseOptimizerConfig({
      multipliers: [["a/", 0]],
      freeze: ["b/"],
      schedule: { kind: "constant", value: 0.1 },
    }),
    workers: 1,
    stepsPerEpoch: 1,
    totalSteps: 1,
  });
  const rows = optimizer.explain({ step: 0 });
  assert.deepEqual(rows.map((r) => r.frozen), [true, true, false]);
  assert.deepEqual(rows.map((r) => r.lr), [0, 0, 0.1]);
  assert.match(rows[0]!.frozenBy!, /multiplier 0/);
  assert.equal(rows[1]!.frozenBy, 'freeze[0] "b/"');
  assert.equal(optimizer.trainableParams, 4);

  // Frozen gradients may be left empty; frozen weights stay as they are.
  const weights = [1, 2, 3].map((v) => new Float32Array(4).fill(v));
  optimizer.step({
    weights,
    grads: [new Float32Array(0), new Float32Array(0), new Float32Array(4)],
    step: 0,
  });
  assert.deepEqual([...weights[0]!], [1, 1, 1, 1]);
  assert.deepEqual([...weights[1]!], [2, 2, 2, 2]);
  assert.deepEqual(Object.keys(optimizer.getState().moments).sort(), [
    "c/kernel/m",
    "c/kernel/v",
  ]);
});

Deno.test("freeze - MobileNetV2 modes: first k blocks, whole backbone", () => {
  const names = [
    "Conv1/kernel",
    "expanded_conv_project/kernel",
    "block_2_expand/kernel",
    "block_3_expand/kernel",
    "block_12_expand/kernel",
    "Conv_1/kernel",
    "flower_dense/kernel",
  ];
  const frozen = (freeze: unknown) =>
    resolveVariables(
      names.map((n) => spec(n)),
      parseOptimizerConfig({ freeze }),
    ).map((p) => p.frozen);

  assert.deepEqual(frozen(mobileNetV2FreezeRules(2)), [
    true,
    true,
    true,
    false,
    false,
    false,
    false,
  ]);
  assert.deepEqual(frozen(mobileNetV2FreezeRules("backbone")), [
    true,
    true,
    true,
    true,
    true,
    true,
    false,
  ]);
});

Deno.test("warnings - key running into longer numbers, overlaps, unused", () => {
  const variables = [1, 2, 10, 11].map((i) => spec(`block_${i}_expand/kernel`));
  const config = parseOptimizerConfig({
    multipliers: [["block_1", 0.1], ["block_10_", 0.5], ["nothing", 2]],
    freeze: ["also_nothing"],
  });
  const warnings = ruleWarnings(resolveVariables(variables, config), config);
  const byKind = (kind: string) => warnings.filter((w) => w.kind === kind);

  const runOn = byKind("digit-boundary");
  assert.equal(runOn.length, 1);
  assert.match(runOn[0]!.message, /"block_1" also catches block_10, block_11/);
  assert.deepEqual(runOn[0]!.variables, [
    "block_10_expand/kernel",
    "block_11_expand/kernel",
  ]);

  const overlap = byKind("overlap");
  assert.equal(overlap.length, 1);
  assert.deepEqual(overlap[0]!.rules, ["block_1", "block_10_"]);
  assert.deepEqual(overlap[0]!.variables, ["block_10_expand/kernel"]);

  assert.deepEqual(byKind("shadowed-rule").map((w) => w.rules), [[
    "block_10_",
  ]]);
  assert.deepEqual(byKind("unused-rule").map((w) => w.rules), [
    ["nothing"],
    ["also_nothing"],
  ]);
});

Deno.test("warnings - the reference preset on MobileNetV2 names has none", () => {
  const names = [
    "Conv1/kernel",
    "bn_Conv1/gamma",
    "expanded_conv_project/kernel",
    ...Array.from({ length: 16 }, (_, i) => `block_${i + 1}_expand/kernel`),
    "Conv_1/kernel",
    "flower_prob/bias",
  ];
  const plans = resolveVariables(names.map((n) => spec(n)), PRESETS.reference);
  assert.deepEqual(ruleWarnings(plans, PRESETS.reference), []);
});

Deno.test("variables - duplicate names are refused", () => {
  assert.throws(
    () => resolveVariables([spec("a"), spec("a")], PRESETS.reference),
    /"a" appears twice/,
  );
});
