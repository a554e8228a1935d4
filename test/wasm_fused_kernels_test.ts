/**
 * The fused wasm kernels (training batch norm, relu6/clip gradients,
 * inference batch norm, zero-copy Identity) and the layer routing that
 * uses them agree with tfjs's own ops on the cpu backend.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import "@tensorflow/tfjs-backend-cpu";
import { initWasmBackend } from "../src/backend/wasm_init.ts";
import { BATCH_NORM_TRAIN } from "../src/backend/wasm/batch_norm_training.ts";
import { layerFusionInstalled } from "../src/backend/wasm/layer_fusion.ts";
import {
  registerWasmTrainingKernels,
  unregisterWasmTrainingKernels,
} from "../src/backend/wasm/register.ts";
import { hostTensor, relativeError } from "./wasm_helpers.ts";

const TOLERANCE = 1e-4;

await initWasmBackend();

type Values = Float32Array[];

/** Runs `body` on `backend` and checks that it leaves no tensor behind. */
async function on(backend: string, body: () => tf.Tensor[]): Promise<Values> {
  await tf.setBackend(backend);
  const before = tf.memory().numTensors;
  const outputs = tf.tidy(body);
  const values: Values = [];
  for (const output of outputs) {
    values.push(await output.data() as Float32Array);
  }
  tf.dispose(outputs);
  assert.equal(tf.memory().numTensors, before, `tensors leaked on ${backend}`);
  return values;
}

function assertClose(actual: Values, expected: Values, labels: string[]) {
  for (const [i, label] of labels.entries()) {
    const error = relativeError(actual[i], expected[i]);
    assert.ok(error <= TOLERANCE, `${label}: relative error ${error}`);
  }
}

// The last case puts every channel's mean far from zero (1000 + spread 3):
// the moments must not lose the variance to cancellation.
const BN_CASES = [
  { shape: [4, 6, 6, 24], offset: 0 },
  { shape: [1, 5, 3, 7], offset: 0 },
  { shape: [3, 9, 10], offset: 0 },
  { shape: [2, 5, 5, 6], offset: 1000 },
];
for (const { shape, offset } of BN_CASES) {
  const name = "wasm fused kernels - training batch norm and its gradient " +
    `match tf.moments + tf.batchNorm on cpu (${shape}, offset ${offset})`;
  Deno.test(name, async () => {
    const channels = shape[shape.length - 1];
    const axes = shape.slice(0, -1).map((_, i) => i);
    const x = hostTensor(shape, 21);
    const dy = hostTensor(shape, 22);
    const gamma = hostTensor([channels], 23);
    const beta = hostTensor([channels], 24);
    const epsilon = 1e-3;
    // Shift x so that mean and spread differ per channel.
    x.values.forEach((v, i) =>
      x.values[i] = 3 * v + (i % channels) * 0.5 + offset
    );

    const make = () =>
      [x, dy, gamma, beta].map((h) => tf.tensor(h.values, h.shape));

    const expected = await on("cpu", () => {
      const [xt, dyt, g, b] = make();
      const forward = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) => {
        const { mean, variance } = tf.moments(xi, axes);
        return tf.batchNorm(xi, mean, variance, bi, gi, epsilon);
      };
      const { mean, variance } = tf.moments(xt, axes);
      const y = forward(xt, g, b);
      const grads = tf.grads((xi, gi, bi) =>
        tf.sum(tf.mul(forward(xi, gi, bi), dyt))
      )([xt, g, b]);
      // tfjs-layers' moving-average update, from 0 and 1, momentum 0.99.
      const decay = 1 - 0.99;
      const movingMean = tf.sub(0, tf.mul(tf.sub(0, mean), decay));
      const movingVariance = tf.sub(1, tf.mul(tf.sub(1, variance), decay));
      const out = [y, mean, variance, movingMean, movingVariance, ...grads];
      tf.dispose([xt, dyt, g, b]);
      return out;
    });

    const actual = await on("wasm", () => {
      const [xt, dyt, g, b] = make();
      const forward = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor) =>
        tf.engine().runKernel(BATCH_NORM_TRAIN, {
          x: xi,
          scale: gi,
          offset: bi,
          movingMean: tf.zeros([channels]),
          movingVariance: tf.ones([channels]),
        }, { epsilon, momentum: 0.99 }) as tf.Tensor[];
      const outputs = forward(xt, g, b);
      const grads = tf.grads((xi, gi, bi) =>
        tf.sum(tf.mul(forward(xi, gi, bi)[0], dyt))
      )([xt, g, b]);
      const out = [...outputs, ...grads];
      tf.dispose([xt, dyt, g, b]);
      return out;
    });

    assertClose(actual, expected, [
      "y",
      "mean",
      "variance",
      "moving mean",
      "moving variance",
      "dx",
      "dgamma",
      "dbeta",
    ]);
  });
}

Deno.test(
  "wasm fused kernels - relu6 and clipByValue gradients keep tfjs's boundary rules",
  async () => {
    const values = new Float32Array([
      -1,
      0,
      1e-7,
      0.5,
      3,
      5.99,
      6,
      6.01,
      7,
      -0.2,
      2.5,
      -3,
      0.25,
    ]);
    const dyValues = hostTensor([values.length], 31).values;
    const run = () => {
      const x = tf.tensor1d(values);
      const dy = tf.tensor1d(dyValues);
      const relu6Grad = tf.grad((t) => tf.mul(tf.relu6(t), dy))(x);
      const clipGrad = tf.grad((t) => tf.mul(tf.clipByValue(t, -0.2, 2.5), dy))(
        x,
      );
      const forward = tf.relu6(x);
      tf.dispose([x, dy]);
      return [relu6Grad, clipGrad, forward];
    };
    const expected = await on("cpu", run);
    const actual = await on("wasm", run);
    assert.deepEqual(actual, expected);
  },
);

Deno.test(
  "wasm fused kernels - inference batch norm matches cpu with and without scale/offset",
  async () => {
    const shape = [2, 5, 5, 12];
    const x = hostTensor(shape, 41);
    const params = [42, 43, 44, 45].map((seed) => hostTensor([12], seed));
    params[1].values.forEach((v, i) => params[1].values[i] = v * v + 0.1);
    const run = () => {
      const [mean, variance, scale, offset] = params.map((p) =>
        tf.tensor1d(p.values)
      );
      const xt = tf.tensor(x.values, shape);
      const out = [
        tf.batchNorm(xt, mean, variance, offset, scale, 1e-3),
        tf.batchNorm(xt, mean, variance, undefined, undefined, 1e-3),
      ];
      tf.dispose([mean, variance, scale, offset, xt]);
      return out;
    };
    assertClose(await on("wasm", run), await on("cpu", run), ["full", "bare"]);
  },
);

Deno.test("wasm fused kernels - Identity shares data and disposes cleanly", async () => {
  await tf.setBackend("wasm");
  const before = tf.memory().numTensors;
  const a = tf.tensor1d([1, 2, 3]);
  const b = tf.engine().runKernel("Identity", { x: a }) as tf.Tensor;
  a.dispose();
  assert.deepEqual(Array.from(await b.data()), [1, 2, 3]);
  b.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test(
  "wasm fused kernels - BatchNormalization + ReLU(6) layers train like unfused ones on cpu",
  async () => {
    const x = hostTensor([3, 6, 6, 5], 51);
    const dy = hostTensor([3, 6, 6, 8], 52);
    const build = () => {
      const model = tfl.sequential({
        layers: [
          tfl.layers.conv2d({
            inputShape: [6, 6, 5],
            filters: 8,
            kernelSize: 1,
            useBias: false,
            kernelInitializer: tfl.initializers.glorotUniform({ seed: 7 }),
          }),
          tfl.layers.batchNormalization({ epsilon: 1e-3, momentum: 0.9 }),
          tfl.layers.reLU({ maxValue: 6 }),
        ],
      });
      return model;
    };
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const model = build();
      const before = tf.memory().numTensors;
      const xt = tf.tensor(x.values, x.shape);
      const dyt = tf.tensor(dy.values, dy.shape);
      const { value, grads } = tf.variableGrads(() =>
        tf.sum(
          tf.mul(model.apply(xt, { training: true }) as tf.Tensor, dyt),
        ) as tf.Scalar
      );
      const out: Float32Array[] = [await value.data() as Float32Array];
      for (const name of Object.keys(grads).sort()) {
        out.push(await grads[name].data() as Float32Array);
      }
      for (const w of model.layers[1].getWeights()) {
        out.push(await w.data() as Float32Array);
      }
      const profile = await tf.profile(() => {
        tf.dispose(model.apply(xt, { training: true }) as tf.Tensor);
      });
      const fused = profile.kernelNames.includes(BATCH_NORM_TRAIN);
      assert.equal(fused, backend === "wasm", `fused batch norm on ${backend}`);
      // On wasm the bias-free conv runs unfused, so that its input
      // gradient stays lazy.
      assert.equal(
        profile.kernelNames.includes("FusedConv2D"),
        backend !== "wasm",
      );
      tf.dispose([value, xt, dyt, ...Object.values(grads)]);
      assert.equal(tf.memory().numTensors, before);
      model.dispose();
      return out;
    };
    const expected = await run("cpu");
    const actual = await run("wasm");
    const labels = [
      "loss",
      "grad 1",
      "grad 2",
      "grad 3",
      "gamma",
      "beta",
      "moving mean",
      "moving variance",
    ];
    assertClose(actual, expected, labels);
  },
);

Deno.test(
  "wasm fused kernels - unregistering restores stock tfjs-wasm, registering again reinstalls",
  async () => {
    const fusedRelu6Grad = tf.getGradient("Relu6");
    unregisterWasmTrainingKernels();
    try {
      assert.equal(tf.getKernel("Conv2DBackpropFilter", "wasm"), undefined);
      assert.equal(tf.getKernel(BATCH_NORM_TRAIN, "wasm"), undefined);
      assert.notEqual(tf.getGradient("Relu6"), fusedRelu6Grad);
      assert.equal(layerFusionInstalled(), false);
    } finally {
      registerWasmTrainingKernels();
    }
    assert.notEqual(tf.getKernel("Conv2DBackpropFilter", "wasm"), undefined);
    assert.equal(layerFusionInstalled(), true);
    await tf.setBackend("wasm");
    const before = tf.memory().numTensors;
    const x = tf.tensor1d([-1, 3, 7]);
    const grad = tf.grad((t: tf.Tensor) => tf.sum(tf.relu6(t)))(x);
    assert.deepEqual(Array.from(await grad.data()), [0, 1, 0]);
    tf.dispose([x, grad]);
    assert.equal(tf.memory().numTensors, before);
  },
);
