/**
 * Parity of the wasm training kernels with tfjs's cpu backend, on seeded
 * random inputs over strides, paddings, multipliers, odd sizes and batch
 * 1. Dilation, which tfjs's cpu kernels ignore, is checked against the
 * equivalent undilated convolution with a zero-stuffed filter.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { initWasmBackend } from "../src/backend/wasm_init.ts";
import {
  type HostTensor,
  hostTensor,
  relativeError,
  runKernelOn,
} from "./wasm_helpers.ts";

const TOLERANCE = 1e-4;

await initWasmBackend();

type Pad = "same" | "valid" | number[][];

interface ConvCase {
  label: string;
  x: number[];
  filter: number[];
  strides: number;
  pad: Pad;
  dilations?: number;
}

function outShape(c: ConvCase, depthwise: boolean): number[] {
  const info = tf.backend_util.computeConv2DInfo(
    c.x as [number, number, number, number],
    c.filter as [number, number, number, number],
    c.strides,
    c.dilations ?? 1,
    c.pad as "same",
    undefined,
    depthwise,
  );
  return info.outShape;
}

async function compare(
  kernel: string,
  call: { inputs: Record<string, HostTensor>; attrs: object },
): Promise<number> {
  const [expected] = await runKernelOn("cpu", kernel, call);
  const [actual] = await runKernelOn("wasm", kernel, call);
  assert.deepEqual(actual.shape, expected.shape);
  return relativeError(actual.values, expected.values);
}

const DEPTHWISE_CASES: ConvCase[] = [
  {
    label: "3x3 s1 same",
    x: [2, 9, 9, 8],
    filter: [3, 3, 8, 1],
    strides: 1,
    pad: "same",
  },
  {
    label: "3x3 s2 same even",
    x: [2, 8, 8, 16],
    filter: [3, 3, 16, 1],
    strides: 2,
    pad: "same",
  },
  {
    label: "3x3 s2 same odd C=5",
    x: [1, 7, 7, 5],
    filter: [3, 3, 5, 1],
    strides: 2,
    pad: "same",
  },
  {
    label: "3x3 s1 valid",
    x: [1, 6, 7, 4],
    filter: [3, 3, 4, 1],
    strides: 1,
    pad: "valid",
  },
  {
    label: "3x3 s2 valid",
    x: [2, 9, 9, 12],
    filter: [3, 3, 12, 1],
    strides: 2,
    pad: "valid",
  },
  {
    label: "3x2 explicit pads",
    x: [2, 6, 7, 6],
    filter: [3, 2, 6, 1],
    strides: 1,
    pad: [[0, 0], [1, 0], [2, 1], [0, 0]],
  },
  {
    label: "multiplier 2",
    x: [1, 6, 6, 3],
    filter: [3, 3, 3, 2],
    strides: 1,
    pad: "same",
  },
  {
    label: "multiplier 3 s2",
    x: [2, 7, 8, 2],
    filter: [3, 3, 2, 3],
    strides: 2,
    pad: "same",
  },
  {
    label: "5x5 s1 same",
    x: [1, 9, 9, 7],
    filter: [5, 5, 7, 1],
    strides: 1,
    pad: "same",
  },
  {
    label: "batch 1 odd 5x11",
    x: [1, 5, 11, 7],
    filter: [3, 3, 7, 1],
    strides: 2,
    pad: "same",
  },
  {
    label: "MobileNetV2-like",
    x: [4, 16, 16, 48],
    filter: [3, 3, 48, 1],
    strides: 1,
    pad: "same",
  },
];

for (const c of DEPTHWISE_CASES) {
  Deno.test(`wasm kernels - depthwise filter gradient matches cpu (${c.label})`, async () => {
    const dy = hostTensor(outShape(c, true), 2);
    const error = await compare("DepthwiseConv2dNativeBackpropFilter", {
      inputs: { x: hostTensor(c.x, 1), dy },
      attrs: {
        strides: c.strides,
        pad: c.pad,
        dilations: 1,
        filterShape: c.filter,
      },
    });
    assert.ok(error <= TOLERANCE, `relative error ${error}`);
  });

  Deno.test(`wasm kernels - depthwise input gradient matches cpu (${c.label})`, async () => {
    const dy = hostTensor(outShape(c, true), 3);
    const error = await compare("DepthwiseConv2dNativeBackpropInput", {
      inputs: { dy, filter: hostTensor(c.filter, 4) },
      attrs: { strides: c.strides, pad: c.pad, dilations: 1, inputShape: c.x },
    });
    assert.ok(error <= TOLERANCE, `relative error ${error}`);
  });
}

/** [kh, kw, C, M] -> [(kh-1)d+1, (kw-1)d+1, C, M] with zeros between taps. */
function dilateFilter(filter: HostTensor, rate: number): HostTensor {
  const [kh, kw, c, m] = filter.shape;
  const eh = (kh - 1) * rate + 1;
  const ew = (kw - 1) * rate + 1;
  const values = new Float32Array(eh * ew * c * m);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const src = (i * kw + j) * c * m;
      const dst = (i * rate * ew + j * rate) * c * m;
      values.set(filter.values.subarray(src, src + c * m), dst);
    }
  }
  return { shape: [eh, ew, c, m], values };
}

Deno.test(
  "wasm kernels - depthwise gradients with dilation 2 match the zero-stuffed filter",
  async () => {
    const rate = 2;
    const c: ConvCase = {
      label: "dilation",
      x: [2, 10, 9, 6],
      filter: [3, 3, 6, 1],
      strides: 1,
      pad: "same",
      dilations: rate,
    };
    const x = hostTensor(c.x, 5);
    const filter = hostTensor(c.filter, 6);
    const dy = hostTensor(outShape(c, true), 7);
    const wide = dilateFilter(filter, rate);

    const [dW] = await runKernelOn(
      "wasm",
      "DepthwiseConv2dNativeBackpropFilter",
      {
        inputs: { x, dy },
        attrs: {
          strides: 1,
          pad: "same",
          dilations: rate,
          filterShape: c.filter,
        },
      },
    );
    const [wideDW] = await runKernelOn(
      "cpu",
      "DepthwiseConv2dNativeBackpropFilter",
      {
        inputs: { x, dy },
        attrs: {
          strides: 1,
          pad: "same",
          dilations: 1,
          filterShape: wide.shape,
        },
      },
    );
    const picked = new Float32Array(dW.values.length);
    const [, ew, ch] = wide.shape;
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 3; j++) {
        const src = (i * rate * ew + j * rate) * ch;
        picked.set(wideDW.values.subarray(src, src + ch), (i * 3 + j) * ch);
      }
    }
    assert.ok(relativeError(dW.values, picked) <= TOLERANCE);

    const [dx] = await runKernelOn(
      "wasm",
      "DepthwiseConv2dNativeBackpropInput",
      {
        inputs: { dy, filter },
        attrs: { strides: 1, pad: "same", dilations: rate, inputShape: c.x },
      },
    );
    const [wideDx] = await runKernelOn(
      "cpu",
      "DepthwiseConv2dNativeBackpropInput",
      {
        inputs: { dy, filter: wide },
        attrs: { strides: 1, pad: "same", dilations: 1, inputShape: c.x },
      },
    );
    assert.ok(relativeError(dx.values, wideDx.values) <= TOLERANCE);
  },
);

const CONV_CASES: ConvCase[] = [
  {
    label: "1x1 SIMD, Co tail",
    x: [2, 5, 7, 12],
    filter: [1, 1, 12, 18],
    strides: 1,
    pad: "same",
  },
  {
    label: "1x1 SIMD, 99 rows",
    x: [1, 9, 11, 6],
    filter: [1, 1, 6, 10],
    strides: 1,
    pad: "valid",
  },
  {
    label: "1x1 SIMD, MobileNetV2 project",
    x: [4, 12, 12, 96],
    filter: [1, 1, 96, 24],
    strides: 1,
    pad: "same",
  },
  {
    label: "1x1 matmul, Ci > Co",
    x: [1, 3, 5, 160],
    filter: [1, 1, 160, 128],
    strides: 1,
    pad: "same",
  },
  {
    label: "1x1 matmul, Ci < Co",
    x: [2, 3, 3, 96],
    filter: [1, 1, 96, 200],
    strides: 1,
    pad: "valid",
  },
  {
    label: "3x3 s2 same, stem",
    x: [2, 9, 9, 3],
    filter: [3, 3, 3, 8],
    strides: 2,
    pad: "same",
  },
  {
    label: "3x3 s1 valid",
    x: [1, 7, 6, 5],
    filter: [3, 3, 5, 6],
    strides: 1,
    pad: "valid",
  },
  {
    label: "2x3 explicit pads",
    x: [2, 6, 5, 4],
    filter: [2, 3, 4, 5],
    strides: 1,
    pad: [[0, 0], [0, 1], [2, 1], [0, 0]],
  },
  {
    label: "1x1 s2",
    x: [1, 8, 7, 6],
    filter: [1, 1, 6, 9],
    strides: 2,
    pad: "valid",
  },
  {
    label: "3x3 s2 valid batch 1",
    x: [1, 11, 9, 4],
    filter: [3, 3, 4, 7],
    strides: 2,
    pad: "valid",
  },
];

for (const c of CONV_CASES) {
  Deno.test(`wasm kernels - conv2d filter gradient matches cpu (${c.label})`, async () => {
    const error = await compare("Conv2DBackpropFilter", {
      inputs: {
        x: hostTensor(c.x, 11),
        dy: hostTensor(outShape(c, false), 12),
      },
      attrs: {
        strides: c.strides,
        pad: c.pad,
        dataFormat: "NHWC",
        filterShape: c.filter,
      },
    });
    assert.ok(error <= TOLERANCE, `relative error ${error}`);
  });

  Deno.test(`wasm kernels - conv2d input gradient matches cpu (${c.label})`, async () => {
    const error = await compare("Conv2DBackpropInput", {
      inputs: {
        dy: hostTensor(outShape(c, false), 13),
        filter: hostTensor(c.filter, 14),
      },
      attrs: {
        strides: c.strides,
        pad: c.pad,
        dataFormat: "NHWC",
        inputShape: c.x,
      },
    });
    assert.ok(error <= TOLERANCE, `relative error ${error}`);
  });
}

Deno.test("wasm kernels - NCHW filter gradient fails with a clear error", async () => {
  await assert.rejects(
    runKernelOn("wasm", "Conv2DBackpropFilter", {
      inputs: {
        x: hostTensor([1, 3, 4, 4], 1),
        dy: hostTensor([1, 2, 4, 4], 2),
      },
      attrs: {
        strides: 1,
        pad: "same",
        dataFormat: "NCHW",
        filterShape: [1, 1, 3, 2],
      },
    }),
    { name: "UnsupportedConvError", message: /data format 'NCHW'/ },
  );
});
