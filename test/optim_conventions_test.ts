/**
 * The two decoupled weight-decay conventions, checked against values worked
 * out from the formulas in issue 3 (by hand in comments, and by a few lines
 * of float64 arithmetic written here, independent of src/optim).
 */
import assert from "node:assert/strict";
import { FlatAdamW, parseOptimizerConfig } from "../src/optim/mod.ts";

/** |a - b| <= atol + rtol * |b|, with NaN and infinities never equal. */
function assertClose(
  actual: number,
  expected: number,
  options: { rtol?: number; atol?: number; what?: string } = {},
) {
  const { rtol = 1e-6, atol = 1e-9, what = "value" } = options;
  assert.ok(Number.isFinite(actual), `${what}: ${actual} is not finite`);
  assert.ok(Number.isFinite(expected), `${what}: expected is not finite`);
  assert.ok(
    Math.abs(actual - expected) <= atol + rtol * Math.abs(expected),
    `${what}: ${actual} differs from ${expected}`,
  );
}

function oneVariable(raw: unknown, options: { totalSteps?: number } = {}) {
  return new FlatAdamW({
    variables: [{ name: "dense/kernel", shape: [2, 2] }],
    config: parseOptimizerConfig(raw),
    workers: 1,
    stepsPerEpoch: 10,
    totalSteps: options.totalSteps ?? 100,
  });
}

Deno.test("pytorch convention - two steps match the hand computation", () => {
  // lr 0.1, wd 0.01, b1 0.9, b2 0.999, eps 1e-8; w0 = 1; g1 = 0.5, g2 = -1.
  // t=1: w <- 1 * (1 - 0.1*0.01) = 0.999; m1 = 0.05, v1 = 0.00025;
  //      mHat = 0.05/0.1 = 0.5, vHat = 0.00025/0.001 = 0.25 (bias corrected)
  //      w1 = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.899000002
  // t=2: m2 = 0.9*0.05 + 0.1*(-1) = -0.055, mHat = -0.055/0.19 = -0.2894737
  //      v2 = 0.999*0.00025 + 0.001 = 0.00124975, vHat = v2/0.001999
  //         = 0.6251876, sqrt = 0.7906881
  //      w2 = 0.899000002 * 0.999 + 0.1 * 0.2894737 / 0.7906881 = 0.9347113
  const optimizer = oneVariable({
    convention: "pytorch",
    weightDecay: 0.01,
    decayExcludeVectors: false,
    schedule: { kind: "constant", value: 0.1 },
  });
  const weights = [new Float32Array([1, 1, 1, 1])];

  optimizer.step({ weights, grads: [new Float32Array(4).fill(0.5)], step: 0 });
  assertClose(weights[0]![0]!, 0.899000002, { what: "w1" });

  optimizer.step({ weights, grads: [new Float32Array(4).fill(-1)], step: 1 });
  assertClose(weights[0]![0]!, 0.9347113, { rtol: 2e-7, what: "w2" });
});

/** The pytorch formula in float64, straight from the issue. */
function pytorchReference(
  w: number[],
  grads: number[][],
  p: { lr: number; wd: number; b1: number; b2: number; eps: number },
): number[] {
  const m = w.map(() => 0);
  const v = w.map(() => 0);
  const out = [...w];
  grads.forEach((g, step) => {
    const t = step + 1;
    for (let j = 0; j < out.length; j++) {
      m[j] = p.b1 * m[j]! + (1 - p.b1) * g[j]!;
      v[j] = p.b2 * v[j]! + (1 - p.b2) * g[j]! ** 2;
      const mHat = m[j]! / (1 - p.b1 ** t);
      const vHat = v[j]! / (1 - p.b2 ** t);
      out[j] = out[j]! * (1 - p.lr * p.wd);
      out[j] = out[j]! - p.lr * mHat / (Math.sqrt(vHat) + p.eps);
    }
  });
  return out;
}

/** The keras-adamw formula in float64, straight from the issue. */
function kerasReference(
  w: number[],
  grads: number[][],
  p: {
    lr: (step: number) => number;
    wdNorm: number;
    eta: (step: number) => number;
    b1: number;
    b2: number;
    eps: number;
  },
): number[] {
  const m = w.map(() => 0);
  const v = w.map(() => 0);
  const out = [...w];
  grads.forEach((g, step) => {
    const t = step + 1;
    const lrT = p.lr(step) * Math.sqrt(1 - p.b2 ** t) / (1 - p.b1 ** t);
    for (let j = 0; j < out.length; j++) {
      m[j] = p.b1 * m[j]! + (1 - p.b1) * g[j]!;
      v[j] = p.b2 * v[j]! + (1 - p.b2) * g[j]! ** 2;
      const old = out[j]!;
      out[j] = old - lrT * m[j]! / (Math.sqrt(v[j]!) + p.eps) -
        p.eta(step) * p.wdNorm * old;
    }
  });
  return out;
}

const W0 = [0.5, -0.25, 1.5, -2];
const GRADS = [
  [0.1, -0.2, 0.3, 0.05],
  [-0.3, 0.1, 0.2, -0.4],
  [0.02, 0.5, -0.1, 0.3],
  [0.2, -0.05, 0.15, -0.1],
];

Deno.test("pytorch convention - four steps match the float64 formula", () => {
  const optimizer = oneVariable({
    convention: "pytorch",
    weightDecay: 0.1,
    decayExcludeVectors: false,
    schedule: { kind: "constant", value: 0.01 },
  });
  const weights = [new Float32Array(W0)];
  GRADS.forEach((g, step) =>
    optimizer.step({ weights, grads: [new Float32Array(g)], step })
  );

  const expected = pytorchReference(W0, GRADS, {
    lr: 0.01,
    wd: 0.1,
    b1: 0.9,
    b2: 0.999,
    eps: 1e-8,
  });
  expected.forEach((e, j) =>
    assertClose(weights[0]![j]!, e, { rtol: 1e-6, what: `w[${j}]` })
  );
});

Deno.test("keras convention - two steps match the hand computation", () => {
  // lr 0.1, b1 0.9, b2 0.999, eps 1e-7 (keras default), wd 0.01, eta 1.
  // t=1: lr_t = 0.1 * sqrt(0.001) / 0.1 = 0.0316227766; m1 = 0.05,
  //      v1 = 0.00025, sqrt(v1) = 0.0158113883
  //      w1 = 1 - 0.0316227766 * 0.05 / (0.0158113883 + 1e-7) - 0.01 * 1
  //         = 1 - 0.0999993675 - 0.01 = 0.8900006325
  // t=2: lr_t = 0.1 * sqrt(1 - 0.999^2) / (1 - 0.81) = 0.0235316725;
  //      m2 = -0.055, v2 = 0.00124975, sqrt = 0.0353518033
  //      w2 = w1 + 0.0235316725 * 0.055 / (0.0353518033 + 1e-7) - 0.01 * w1
  //         = 0.8900006325 + 0.0366102491 - 0.0089000063 = 0.9177108753
  const optimizer = oneVariable({
    convention: "keras",
    weightDecay: 0.01,
    schedule: { kind: "constant", value: 0.1 },
  });
  const weights = [new Float32Array([1, 1, 1, 1])];

  optimizer.step({ weights, grads: [new Float32Array(4).fill(0.5)], step: 0 });
  assertClose(weights[0]![0]!, 0.8900006325, { rtol: 2e-7, what: "w1" });

  optimizer.step({ weights, grads: [new Float32Array(4).fill(-1)], step: 1 });
  assertClose(weights[0]![0]!, 0.9177108753, { rtol: 2e-7, what: "w2" });
});

Deno.test("keras convention - normalised decay and schedule eta", () => {
  // wd_n = wd * sqrt(1 / totalSteps); eta = schedule(step) / peak.
  const totalSteps = 16;
  const schedule = { kind: "warmup_steps", start: 0.001, peak: 0.01 };
  const optimizer = oneVariable({
    convention: "keras",
    weightDecay: 0.4,
    normalizeDecay: true,
    decayEta: "schedule",
    schedule: { ...schedule, warmupSteps: 3 },
  }, { totalSteps });
  const weights = [new Float32Array(W0)];
  GRADS.forEach((g, step) =>
    optimizer.step({ weights, grads: [new Float32Array(g)], step })
  );

  const rate = (s: number) => s >= 3 ? 0.01 : 0.001 + (0.01 - 0.001) * s / 3;
  const expected = kerasReference(W0, GRADS, {
    lr: rate,
    wdNorm: 0.4 * Math.sqrt(1 / totalSteps),
    eta: (s) => rate(s) / 0.01,
    b1: 0.9,
    b2: 0.999,
    eps: 1e-7,
  });
  expected.forEach((e, j) =>
    assertClose(weights[0]![j]!, e, { rtol: 1e-6, what: `w[${j}]` })
  );
});

Deno.test("keras convention - decay ignores the multiplier, pytorch's uses it", () => {
  // With zero gradients only the decay moves w (m = v = 0, 0 / eps = 0).
  for (const convention of ["keras", "pytorch"] as const) {
    const optimizer = new FlatAdamW({
      variables: [{ name: "a/kernel", shape: [2] }],
      config: parseOptimizerConfig({
        convention,
        weightDecay: 0.1,
        decayExcludeVectors: false,
        multipliers: [["a/", 0.5]],
        schedule: { kind: "constant", value: 0.2 },
      }),
      workers: 1,
      stepsPerEpoch: 1,
      totalSteps: 1,
    });
    const weights = [new Float32Array([1, -2])];
    optimizer.step({ weights, grads: [new Float32Array(2)], step: 0 });

    // keras: w - 1 * 0.1 * w; pytorch: w - (0.2 * 0.5) * 0.1 * w.
    const fraction = convention === "keras" ? 0.1 : 0.2 * 0.5 * 0.1;
    assertClose(weights[0]![0]!, 1 - fraction, { what: convention });
    assertClose(weights[0]![1]!, -2 * (1 - fraction), { what: convention });
  }
});

Deno.test("decay exclusions - pytorch skips vectors by default, keras does not", () => {
  const variables = [
    { name: "dense/kernel", shape: [2, 2] },
    { name: "dense/bias", shape: [2] },
  ];
  const decayedOf = (raw: unknown) =>
    new FlatAdamW({
      variables,
      config: parseOptimizerConfig(raw),
      workers: 1,
      stepsPerEpoch: 1,
      totalSteps: 1,
    }).explain({ step: 0 }).map((r) => [r.decayed, r.decayExcludedBy]);

  assert.deepEqual(decayedOf({ convention: "pytorch" }), [
    [true, null],
    [false, "rank <= 1 (decayExcludeVectors)"],
  ]);
  assert.deepEqual(decayedOf({ convention: "keras", weightDecay: 0.01 }), [
    [true, null],
    [true, null],
  ]);
  assert.deepEqual(
    decayedOf({
      convention: "keras",
      weightDecay: 0.01,
      decayExclude: ["kernel"],
    }),
    [[false, 'decayExclude[0] "kernel"'], [true, null]],
  );
});

Deno.test("clipping - gradients scaled by clip / global norm", () => {
  // Global norm of (3, 4) and (12) is 13; clip 1.3 scales by 0.1.
  // At t=1 pytorch's step is lr * g / (|g| + eps), scale-free except eps,
  // so compare against an unclipped run on pre-scaled gradients.
  const variables = [
    { name: "a/kernel", shape: [2] },
    { name: "b/kernel", shape: [1] },
  ];
  const make = (clip: number | null) =>
    new FlatAdamW({
      variables,
      config: parseOptimizerConfig({
        convention: "pytorch",
        weightDecay: 0,
        epsilon: 0.5,
        clipGlobalNorm: clip,
        schedule: { kind: "constant", value: 0.1 },
      }),
      workers: 1,
      stepsPerEpoch: 1,
      totalSteps: 1,
    });

  const clipped = [new Float32Array([1, 1]), new Float32Array([1])];
  const outcome = make(1.3).step({
    weights: clipped,
    grads: [new Float32Array([3, 4]), new Float32Array([12])],
    step: 0,
  });
  assert.equal(outcome.clipped, true);
  assertClose(outcome.gradNorm, 13, { what: "gradNorm" });

  // Hand: g = 0.3 -> 1 - 0.1 * 0.3 / (0.3 + 0.5) = 0.9625
  assertClose(clipped[0]![0]!, 1 - 0.1 * 0.3 / 0.8, { what: "clipped w" });
  assertClose(clipped[1]![0]!, 1 - 0.1 * 1.2 / 1.7, { what: "clipped w" });

  const unclipped = make(100).step({
    weights: [new Float32Array([1, 1]), new Float32Array([1])],
    grads: [new Float32Array([3, 4]), new Float32Array([12])],
    step: 0,
  });
  assert.equal(unclipped.clipped, false);
});
