/**
 * FlatAdamW state: keyed by name, resumable bit for bit, robust to variables
 * being added, removed, reordered or frozen between runs; non-finite
 * gradients never reach the weights or the moments.
 */
import assert from "node:assert/strict";
import {
  FlatAdamW,
  type OptimizerState,
  OptimizerStateError,
  parseOptimizerConfig,
  type VariableSpec,
} from "../src/optim/mod.ts";

const CONFIG = parseOptimizerConfig({
  convention: "pytorch",
  weightDecay: 0.01,
  multipliers: [["b/", 0.5]],
  schedule: { kind: "cosine", peak: 0.05, warmupSteps: 2 },
});

function make(variables: VariableSpec[], raw?: unknown): FlatAdamW {
  return new FlatAdamW({
    variables,
    config: raw === undefined ? CONFIG : parseOptimizerConfig(raw),
    workers: 1,
    stepsPerEpoch: 5,
    totalSteps: 20,
  });
}

const A = { name: "a/kernel", shape: [3, 2] };
const B = { name: "b/bias", shape: [5] };
const C = { name: "c/kernel", shape: [7] };

/** A deterministic gradient for a variable at a step. */
function gradFor(spec: VariableSpec, step: number): Float32Array {
  const size = spec.shape.reduce((x, y) => x * y, 1);
  return new Float32Array(size).map((_, j) =>
    Math.sin(step * 1.7 + j * 0.9 + spec.name.length)
  );
}

function initial(spec: VariableSpec): Float32Array {
  const size = spec.shape.reduce((x, y) => x * y, 1);
  return new Float32Array(size).map((_, j) => Math.cos(j + 0.5));
}

function run(
  optimizer: FlatAdamW,
  options: {
    specs: VariableSpec[];
    weights: Float32Array[];
    from: number;
    to: number;
  },
): void {
  const { specs, weights, from, to } = options;
  for (let step = from; step < to; step++) {
    const grads = specs.map((s) => gradFor(s, step));
    assert.equal(optimizer.step({ weights, grads, step }).applied, true);
  }
}

Deno.test("state - a resumed run equals an uninterrupted one, bit for bit", () => {
  const specs = [A, B];
  const straight = specs.map(initial);
  run(make(specs), { specs, weights: straight, from: 0, to: 10 });

  const first = make(specs);
  const resumed = specs.map(initial);
  run(first, { specs, weights: resumed, from: 0, to: 4 });
  const state = structuredClone(first.getState());
  assert.equal(state.step, 4);
  assert.deepEqual(Object.keys(state.moments).sort(), [
    "a/kernel/m",
    "a/kernel/v",
    "b/bias/m",
    "b/bias/v",
  ]);

  const second = make(specs);
  second.setState(state);
  run(second, { specs, weights: resumed, from: 4, to: 10 });
  assert.deepEqual(resumed, straight);
  assert.equal(second.appliedSteps, 10);
});

Deno.test("state - moments stay on their variables when the set changes", () => {
  // Run 1 trains A, B. Run 2 lists C, B, A (C new, order changed) and
  // freezes A. Run 3 unfreezes A again: A's moments from run 1 come back.
  const first = make([A, B]);
  run(first, { specs: [A, B], weights: [A, B].map(initial), from: 0, to: 3 });
  const saved = first.getState();

  const second = make([C, B, A], {
    convention: "pytorch",
    freeze: ["a/"],
  });
  second.setState(saved);
  const middle = second.getState();
  assert.deepEqual(middle.moments["b/bias/m"], saved.moments["b/bias/m"]);
  assert.deepEqual(middle.moments["c/kernel/m"], new Float32Array(7));
  assert.equal(middle.counts["c/kernel"], 0);
  assert.equal(middle.counts["b/bias"], 3);
  // Frozen A keeps its saved moments aside, untouched.
  assert.deepEqual(middle.moments["a/kernel/v"], saved.moments["a/kernel/v"]);

  const third = make([A, C]);
  third.setState(middle);
  const last = third.getState();
  assert.deepEqual(last.moments["a/kernel/m"], saved.moments["a/kernel/m"]);
  assert.equal(last.counts["a/kernel"], 3);
  // B is no longer listed: its moments are carried along, not dropped.
  assert.deepEqual(last.moments["b/bias/v"], saved.moments["b/bias/v"]);
});

Deno.test("state - a moment of the wrong length is refused, nothing changed", () => {
  const optimizer = make([A]);
  run(optimizer, { specs: [A], weights: [initial(A)], from: 0, to: 1 });
  const before = optimizer.getState();
  const bad: OptimizerState = {
    step: 9,
    moments: {
      "a/kernel/m": new Float32Array(5),
      "a/kernel/v": new Float32Array(5),
    },
    counts: {},
  };
  assert.throws(
    () => optimizer.setState(bad),
    (error: unknown) =>
      error instanceof OptimizerStateError && error.variable === "a/kernel" &&
      /has 5 values, and variable "a\/kernel" has 6/.test(error.message),
  );
  assert.deepEqual(optimizer.getState(), before);

  assert.throws(
    () =>
      optimizer.setState({
        step: 1,
        moments: { "a/kernel/m": new Float32Array(6) },
        counts: {},
      }),
    /only one of "\/m" and "\/v"/,
  );
});

Deno.test("non-finite gradients - step skipped, reported, nothing touched", () => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
    const optimizer = make([A, B]);
    const weights = [A, B].map(initial);
    run(optimizer, { specs: [A, B], weights, from: 0, to: 2 });
    const weightsBefore = weights.map((w) => w.slice());
    const stateBefore = optimizer.getState();

    const grads = [gradFor(A, 2), gradFor(B, 2)];
    grads[1]![3] = bad;
    const outcome = optimizer.step({ weights, grads, step: 2 });

    assert.equal(outcome.applied, false);
    assert.ok(!Number.isFinite(outcome.gradNorm));
    assert.match(outcome.reason!, /non-finite gradient in "b\/bias"\[3\]/);
    assert.deepEqual(weights, weightsBefore);
    assert.deepEqual(optimizer.getState(), stateBefore);
    assert.equal(optimizer.appliedSteps, 2);
  }
});

Deno.test("step - arrays that do not fit the variables are refused", () => {
  const optimizer = make([A, B]);
  const weights = [A, B].map(initial);
  assert.throws(
    () => optimizer.step({ weights, grads: [gradFor(A, 0)], step: 0 }),
    /expected 2 grads arrays, received 1/,
  );
  assert.throws(
    () =>
      optimizer.step({
        weights,
        grads: [gradFor(A, 0), new Float32Array(4)],
        step: 0,
      }),
    (error: unknown) =>
      error instanceof OptimizerStateError && error.variable === "b/bias",
  );
  assert.deepEqual(weights, [A, B].map(initial));
});

Deno.test("step - the same inputs give the same bits", () => {
  const results = [0, 1].map(() => {
    const optimizer = make([A, B, C]);
    const weights = [A, B, C].map(initial);
    run(optimizer, { specs: [A, B, C], weights, from: 0, to: 7 });
    return weights;
  });
  assert.deepEqual(results[0], results[1]);
});
