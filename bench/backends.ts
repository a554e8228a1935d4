/**
 * Measures MobileNetV2 forward passes and training steps on one tfjs
 * backend: images per second, and whether tensors leak across steps.
 *
 * A training step is what a worker computes: forward pass in training
 * mode (batch norm on batch statistics, moving averages updated),
 * categorical cross-entropy of the softmax output, gradients of every
 * trainable variable (tf.variableGrads), all read back to the host.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import process from "node:process";
import { type Alpha, buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";

/** Forward only, or a full training step. */
export type BenchMode = "forward" | "train";

/** One configuration to time. */
export interface BenchCase {
  backend: string;
  mode: BenchMode;
  alpha: Alpha;
  imageSize: number;
  batch: number;
  /** Timed repetitions after one untimed warm-up. */
  iterations: number;
}

/** One measurement, as `--json` prints it. */
export interface BenchResult extends BenchCase {
  /** Median wall time of one step or forward pass. */
  msPerStep: number;
  /**
   * Median CPU time of this process per step (all its threads): less
   * sensitive than wall time to other processes sharing the cores.
   */
  cpuMsPerStep: number;
  imagesPerSecond: number;
  /** numTensors after the last step minus after the warm-up. */
  tensorsLeaked: number;
}

function crossEntropy(labels: tf.Tensor, probs: tf.Tensor): tf.Scalar {
  const clipped = tf.clipByValue(probs, 1e-7, 1 - 1e-7);
  return tf.neg(tf.mean(tf.sum(tf.mul(labels, tf.log(clipped)), -1)));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? sorted[mid]
    : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Times one case on the currently active backend named in `c`. */
export async function runCase(c: BenchCase): Promise<BenchResult> {
  await tf.setBackend(c.backend);
  const model = buildMobileNetV2({ alpha: c.alpha, imageSize: c.imageSize });
  const x = tf.randomUniform([c.batch, c.imageSize, c.imageSize, 3], -1, 1);
  const labels = tf.oneHot(
    tf.tensor1d(Array.from({ length: c.batch }, (_, i) => i % 5), "int32"),
    5,
  );

  const once = async () => {
    if (c.mode === "forward") {
      const y = model.apply(x, { training: false }) as tf.Tensor;
      await y.data();
      y.dispose();
      return;
    }
    const { value, grads } = tf.variableGrads(() =>
      crossEntropy(labels, model.apply(x, { training: true }) as tf.Tensor)
    );
    await value.data();
    for (const grad of Object.values(grads)) await grad.data();
    tf.dispose([value, ...Object.values(grads)]);
  };

  await once();
  const tensorsAfterWarmup = tf.memory().numTensors;
  const times: number[] = [];
  const cpuTimes: number[] = [];
  for (let i = 0; i < c.iterations; i++) {
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    await once();
    times.push(performance.now() - start);
    const cpu = process.cpuUsage(cpuStart);
    cpuTimes.push((cpu.user + cpu.system) / 1000);
  }
  const tensorsLeaked = tf.memory().numTensors - tensorsAfterWarmup;

  tf.dispose([x, labels]);
  model.dispose();
  const msPerStep = median(times);
  return {
    ...c,
    msPerStep,
    cpuMsPerStep: median(cpuTimes),
    imagesPerSecond: c.batch / (msPerStep / 1000),
    tensorsLeaked,
  };
}

/** One formulation of one gradient, timed on fresh inputs. */
export interface KernelFigure {
  name: string;
  /** Median CPU time of this process per call. */
  cpuMs: number;
  /** Median wall time per call. */
  wallMs: number;
}

async function timeFresh(
  name: string,
  make: () => tf.Tensor[],
  run: (inputs: tf.Tensor[]) => tf.Tensor,
  repetitions = 5,
): Promise<KernelFigure> {
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i <= repetitions; i++) {
    // Fresh tensors each time, as in a training step: no operator or
    // packed-weight cache of XNNPACK is reused.
    const inputs = make();
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    const out = run(inputs);
    await out.data();
    const elapsed = performance.now() - start;
    const used = process.cpuUsage(cpuStart);
    tf.dispose([out, ...inputs]);
    if (i === 0) continue;
    wall.push(elapsed);
    cpu.push((used.user + used.system) / 1000);
  }
  return { name, cpuMs: median(cpu), wallMs: median(wall) };
}

/**
 * The gradient formulations compared while building the wasm kernels, on
 * the shapes of /work/shared/notes/wasm-measurements.md: x [8, 48, 48,
 * 144], a 1x1 convolution 144 -> 24 and a 3x3 depthwise convolution.
 * Requires the wasm backend to be active.
 */
export async function runKernelComparison(): Promise<KernelFigure[]> {
  const [n, h, w, c, co] = [8, 48, 48, 144, 24];
  const engine = tf.engine();
  const x = () => tf.randomUniform([n, h, w, c]);
  const figures: KernelFigure[] = [];
  const add = async (
    name: string,
    make: () => tf.Tensor[],
    run: (inputs: tf.Tensor[]) => tf.Tensor,
  ) => figures.push(await timeFresh(name, make, run));

  const pointwise = () => [x(), tf.randomUniform([n, h, w, co])];
  await add(
    "1x1 forward conv2d",
    () => [x(), tf.randomUniform([1, 1, c, co])],
    ([a, f]) => tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, 1, "valid"),
  );
  await add(
    "1x1 filter grad: matMul transposeA",
    pointwise,
    ([a, d]) =>
      tf.matMul(tf.reshape(a, [-1, c]), tf.reshape(d, [-1, co]), true, false),
  );
  await add(
    "1x1 filter grad: transpose + matMul",
    pointwise,
    ([a, d]) =>
      tf.matMul(tf.transpose(tf.reshape(a, [-1, c])), tf.reshape(d, [-1, co])),
  );
  await add(
    "1x1 filter grad: dptrain kernel",
    pointwise,
    ([a, d]) =>
      engine.runKernel("Conv2DBackpropFilter", { x: a, dy: d }, {
        strides: 1,
        pad: "valid",
        dataFormat: "NHWC",
        filterShape: [1, 1, c, co],
      }) as tf.Tensor,
  );
  await add(
    "1x1 input grad: dptrain kernel",
    () => [tf.randomUniform([n, h, w, co]), tf.randomUniform([1, 1, c, co])],
    ([d, f]) =>
      engine.runKernel("Conv2DBackpropInput", { dy: d, filter: f }, {
        strides: 1,
        pad: "valid",
        dataFormat: "NHWC",
        inputShape: [n, h, w, c],
      }) as tf.Tensor,
  );

  const depthwise = () => [x(), tf.randomUniform([n, h, w, c])];
  await add(
    "3x3 depthwise forward",
    () => [x(), tf.randomUniform([3, 3, c, 1])],
    ([a, f]) =>
      tf.depthwiseConv2d(a as tf.Tensor4D, f as tf.Tensor4D, 1, "same"),
  );
  await add(
    "dw filter grad: 9 x (slice, multiply, sum)",
    depthwise,
    ([a, d]) =>
      tf.tidy(() => {
        const padded = tf.pad(a, [[0, 0], [1, 1], [1, 1], [0, 0]]);
        const taps: tf.Tensor[] = [];
        for (let i = 0; i < 3; i++) {
          for (let j = 0; j < 3; j++) {
            const view = tf.slice(padded, [0, i, j, 0], [n, h, w, c]);
            taps.push(tf.sum(tf.mul(view, d), [0, 1, 2]));
          }
        }
        return tf.reshape(tf.stack(taps), [3, 3, c, 1]);
      }),
  );
  await add(
    "dw filter grad: batch as channels, dy as a 48x48 filter",
    depthwise,
    ([a, d]) =>
      tf.tidy(() => {
        const input = tf.reshape(tf.transpose(a, [1, 2, 0, 3]), [
          1,
          h,
          w,
          n * c,
        ]);
        const filter = tf.reshape(tf.transpose(d, [1, 2, 0, 3]), [
          h,
          w,
          n * c,
          1,
        ]);
        const out = tf.depthwiseConv2d(
          input as tf.Tensor4D,
          filter as tf.Tensor4D,
          1,
          [[0, 0], [1, 1], [1, 1], [0, 0]],
        );
        return tf.reshape(tf.sum(tf.reshape(out, [3, 3, n, c]), 2), [
          3,
          3,
          c,
          1,
        ]);
      }),
  );
  await add(
    "dw filter grad: dptrain kernel",
    depthwise,
    ([a, d]) =>
      engine.runKernel("DepthwiseConv2dNativeBackpropFilter", { x: a, dy: d }, {
        strides: 1,
        pad: "same",
        dilations: 1,
        filterShape: [3, 3, c, 1],
      }) as tf.Tensor,
  );
  await add(
    "dw input grad: depthwise conv, flipped filter",
    () => [tf.randomUniform([n, h, w, c]), tf.randomUniform([3, 3, c, 1])],
    ([d, f]) =>
      tf.depthwiseConv2d(
        d as tf.Tensor4D,
        tf.reverse(f, [0, 1]) as tf.Tensor4D,
        1,
        "same",
      ),
  );
  await add(
    "dw input grad: dptrain kernel",
    () => [tf.randomUniform([n, h, w, c]), tf.randomUniform([3, 3, c, 1])],
    ([d, f]) =>
      engine.runKernel("DepthwiseConv2dNativeBackpropInput", {
        dy: d,
        filter: f,
      }, {
        strides: 1,
        pad: "same",
        dilations: 1,
        inputShape: [n, h, w, c],
      }) as tf.Tensor,
  );
  return figures;
}
