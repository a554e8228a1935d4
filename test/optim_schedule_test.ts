/**
 * Learning-rate schedules, against values computed here from their
 * definitions (the book's `lrfn`, optax's warm-up cosine).
 */
import assert from "node:assert/strict";
import {
  makeSchedule,
  parseOptimizerConfig,
  powInt,
  PRESETS,
} from "../src/optim/mod.ts";

function assertClose(actual: number, expected: number, what: string) {
  assert.ok(Number.isFinite(actual), `${what}: ${actual} is not finite`);
  assert.ok(
    Math.abs(actual - expected) <= 1e-12 * Math.abs(expected) + 1e-20,
    `${what}: ${actual} differs from ${expected}`,
  );
}

/** The book's lrfn(epoch), transcribed. */
function lrfn(epoch: number, replicas = 1): number {
  const start = 1e-5, min = 1e-5, ramp = 3, sustain = 0, decay = 0.8;
  const max = 1e-4 * replicas;
  if (epoch < ramp) return (max - start) / ramp * epoch + start;
  if (epoch < ramp + sustain) return max;
  return (max - min) * decay ** (epoch - ramp - sustain) + min;
}

const STEPS_PER_EPOCH = 175;

Deno.test("reference schedule - epochs 0..12 as the book's lrfn", () => {
  const schedule = makeSchedule(PRESETS.reference.schedule, {
    workers: 1,
    stepsPerEpoch: STEPS_PER_EPOCH,
    totalSteps: 13 * STEPS_PER_EPOCH,
  });
  const byEpoch = Array.from(
    { length: 13 },
    (_, e) => schedule.at(e * STEPS_PER_EPOCH),
  );

  // By hand: ramp 1e-5 + 3e-5 * e, then 9e-5 * 0.8^k + 1e-5.
  const byHand = [1e-5, 4e-5, 7e-5, 1e-4, 8.2e-5, 6.76e-5, 5.608e-5];
  byHand.forEach((value, e) => assertClose(byEpoch[e]!, value, `epoch ${e}`));
  byEpoch.forEach((value, e) => assertClose(value, lrfn(e), `epoch ${e}`));
});

Deno.test("reference schedule - per epoch holds within an epoch", () => {
  const schedule = makeSchedule(PRESETS.reference.schedule, {
    workers: 1,
    stepsPerEpoch: STEPS_PER_EPOCH,
    totalSteps: 13 * STEPS_PER_EPOCH,
  });
  assertClose(schedule.at(STEPS_PER_EPOCH - 1), 1e-5, "last step of epoch 0");
  assertClose(schedule.at(STEPS_PER_EPOCH), 4e-5, "first step of epoch 1");
});

Deno.test("reference schedule - per step uses fractional epochs", () => {
  const config = parseOptimizerConfig({
    preset: "reference",
    schedule: { per: "step" },
  });
  const schedule = makeSchedule(config.schedule, {
    workers: 1,
    stepsPerEpoch: 4,
    totalSteps: 52,
  });
  assertClose(schedule.at(2), lrfn(0.5), "epoch 0.5");
  assertClose(schedule.at(14), lrfn(3.5), "epoch 3.5");
});

Deno.test("reference schedule - max scales with workers, start and min do not", () => {
  const schedule = makeSchedule(PRESETS.reference.schedule, {
    workers: 4,
    stepsPerEpoch: 10,
    totalSteps: 130,
  });
  assertClose(schedule.at(0), 1e-5, "epoch 0");
  assertClose(schedule.at(10), lrfn(1, 4), "epoch 1"); // 1.4e-4
  assertClose(schedule.at(30), 4e-4, "epoch 3");
  assert.equal(schedule.peak, 4e-4);

  const unscaled = parseOptimizerConfig({
    preset: "reference",
    schedule: { scaleWithWorkers: false },
  });
  const plain = makeSchedule(unscaled.schedule, {
    workers: 4,
    stepsPerEpoch: 10,
    totalSteps: 130,
  });
  assertClose(plain.at(30), 1e-4, "unscaled epoch 3");
});

Deno.test("warmup_steps - linear from start to peak, then peak", () => {
  const config = parseOptimizerConfig({
    schedule: { kind: "warmup_steps", peak: 0.1, warmupSteps: 4 },
  });
  const schedule = makeSchedule(config.schedule, {
    workers: 1,
    stepsPerEpoch: 10,
    totalSteps: 100,
  });
  const values = [0, 1, 2, 3, 4, 50].map((s) => schedule.at(s));
  [0, 0.025, 0.05, 0.075, 0.1, 0.1].forEach((v, i) =>
    assertClose(values[i]!, v, `step ${i}`)
  );
});

Deno.test("cosine - optax warm-up cosine decay", () => {
  // warm-up 0 -> 1 over 10 steps, cosine 1 -> 0.1 from step 10 to 110.
  const config = parseOptimizerConfig({
    schedule: { kind: "cosine", peak: 1, min: 0.1, warmupSteps: 10 },
  });
  const schedule = makeSchedule(config.schedule, {
    workers: 1,
    stepsPerEpoch: 10,
    totalSteps: 110,
  });
  const cosine = (s: number) =>
    0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * (s - 10) / 100));
  assertClose(schedule.at(5), 0.5, "warm-up midpoint");
  assertClose(schedule.at(10), 1, "peak");
  assertClose(schedule.at(60), 0.55, "half way down"); // cos(pi/2) = 0
  assertClose(schedule.at(37), cosine(37), "step 37");
  assertClose(schedule.at(110), 0.1, "end");
  assertClose(schedule.at(500), 0.1, "held after the end");
});

Deno.test("constant - one value, scaled with workers when asked", () => {
  const config = parseOptimizerConfig({
    schedule: { kind: "constant", value: 0.01, scaleWithWorkers: true },
  });
  const schedule = makeSchedule(config.schedule, {
    workers: 3,
    stepsPerEpoch: 1,
    totalSteps: 1,
  });
  assertClose(schedule.at(0), 0.03, "step 0");
  assertClose(schedule.at(1000), 0.03, "step 1000");
});

Deno.test("schedule - bad step and run facts are RangeErrors naming them", () => {
  const context = { workers: 1, stepsPerEpoch: 10, totalSteps: 100 };
  const schedule = makeSchedule(PRESETS.reference.schedule, context);
  assert.throws(() => schedule.at(-1), RangeError);
  assert.throws(() => schedule.at(1.5), /'step' must be an integer/);
  assert.throws(
    () =>
      makeSchedule(PRESETS.reference.schedule, {
        ...context,
        stepsPerEpoch: 0,
      }),
    /'stepsPerEpoch' must be an integer >= 1, received 0/,
  );
});

Deno.test("powInt - repeated squaring equals the product", () => {
  let product = 1;
  for (let k = 0; k < 40; k++) {
    assertClose(powInt(0.8, k), product, `0.8^${k}`);
    product *= 0.8;
  }
});
