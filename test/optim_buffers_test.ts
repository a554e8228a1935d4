/**
 * FlatAdamW's zero-copy buffers: the views it hands out give the same bits
 * as the caller's own arrays, and mixing the two per variable works.
 */
import assert from "node:assert/strict";
import {
  FlatAdamW,
  parseOptimizerConfig,
  type VariableSpec,
} from "../src/optim/mod.ts";

const VARIABLES: VariableSpec[] = [
  { name: "a/kernel", shape: [3, 3] }, // 9: a partial last group of 4
  { name: "frozen/kernel", shape: [4] },
  { name: "b/bias", shape: [10_000] }, // more than one staging chunk
];

function make(): FlatAdamW {
  return new FlatAdamW({
    variables: VARIABLES,
    config: parseOptimizerConfig({
      convention: "keras",
      weightDecay: 0.01,
      clipGlobalNorm: 5,
      freeze: ["frozen/"],
      schedule: { kind: "constant", value: 0.01 },
    }),
    workers: 1,
    stepsPerEpoch: 1,
    totalSteps: 10,
  });
}

function fillWeights(weights: Float32Array[]): void {
  weights.forEach((w, i) => w.forEach((_, j) => w[j] = Math.cos(i + j)));
}

function fillGrads(grads: Float32Array[], step: number): void {
  grads.forEach((g, i) => g.forEach((_, j) => g[j] = Math.sin(step + i * j)));
}

Deno.test("buffers - views give the same bits as the caller's arrays", () => {
  const copying = make();
  const own = {
    weights: VARIABLES.map((v) =>
      new Float32Array(v.shape[0]! * (v.shape[1] ?? 1))
    ),
    grads: VARIABLES.map((v) =>
      new Float32Array(v.shape[0]! * (v.shape[1] ?? 1))
    ),
  };
  const viewing = make();
  const views = viewing.buffers();
  assert.strictEqual(viewing.buffers().weights[0], views.weights[0]);

  fillWeights(own.weights);
  fillWeights(views.weights);
  for (let step = 0; step < 6; step++) {
    fillGrads(own.grads, step);
    fillGrads(views.grads, step);
    const a = copying.step({ ...own, step });
    const b = viewing.step({ ...views, step });
    assert.deepEqual(a, b);
  }

  own.weights.forEach((w, i) => assert.deepEqual(views.weights[i], w));
  assert.deepEqual(copying.getState(), viewing.getState());
  // The frozen variable's array is an ordinary one, left as it was.
  assert.equal(views.weights[1]!.buffer.byteLength, 16);
  assert.deepEqual(views.weights[1], own.weights[1]);
});

Deno.test("buffers - views and own arrays mix per variable", () => {
  const reference = make();
  const mixed = make();
  const views = mixed.buffers();
  const own = VARIABLES.map((v) =>
    new Float32Array(v.shape[0]! * (v.shape[1] ?? 1))
  );
  const weights = [views.weights[0]!, own[1]!, own[2]!];
  const grads = [own[0]!.slice(), views.grads[1]!, views.grads[2]!];
  const plain = {
    weights: own.map((w) => w.slice()),
    grads: own.map((w) => w.slice()),
  };

  fillWeights(weights);
  fillWeights(plain.weights);
  for (let step = 0; step < 3; step++) {
    fillGrads(grads, step);
    fillGrads(plain.grads, step);
    mixed.step({ weights, grads, step });
    reference.step({ ...plain, step });
  }
  weights.forEach((w, i) => assert.deepEqual(w, plain.weights[i]));
});
