import assert from "node:assert/strict";
import { WeightsFormatError } from "../src/model/weights/errors.ts";
import {
  parseBundledExport,
  parseJsLiteral,
} from "../src/model/weights/js_literal.ts";
import { parseNpy } from "../src/model/weights/npy.ts";
import {
  decodeWeightsGroup,
  parseWeightsManifest,
} from "../src/model/weights/tfjs_manifest.ts";
import {
  tfSlimBackboneNames,
  tfSlimToKerasName,
} from "../src/model/weights/tfslim_names.ts";

/** A .npy file as NumPy 1.x writes it (header padded to 64 bytes). */
function npyBytes(
  header: string,
  values: number[],
  options: { major?: number } = {},
): Uint8Array {
  const major = options.major ?? 1;
  const prefix = major === 1 ? 10 : 12;
  let text = header;
  while ((prefix + text.length + 1) % 64 !== 0) text += " ";
  text += "\n";
  const out = new Uint8Array(prefix + text.length + 4 * values.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const view = new DataView(out.buffer);
  if (major === 1) view.setUint16(8, text.length, true);
  else view.setUint32(8, text.length, true);
  out.set(new TextEncoder().encode(text), prefix);
  values.forEach((v, i) =>
    view.setFloat32(prefix + text.length + 4 * i, v, true)
  );
  return out;
}

Deno.test("npy - reads a <f4 C-order array with its shape", () => {
  const bytes = npyBytes(
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
    [1, 2, 3, 4, 5, -6.5],
  );
  const { shape, values } = parseNpy(bytes, "x.npy");
  assert.deepEqual(shape, [2, 3]);
  assert.deepEqual([...values], [1, 2, 3, 4, 5, -6.5]);

  const v2 = npyBytes(
    "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
    [7, 8],
    { major: 2 },
  );
  assert.deepEqual([...parseNpy(v2, "y.npy").values], [7, 8]);
});

Deno.test("npy - refuses other dtypes, Fortran order and short data", () => {
  const cases: [string, Uint8Array][] = [
    [
      "descr",
      npyBytes("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", [
        0,
        0,
      ]),
    ],
    [
      "fortran_order",
      npyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", [0]),
    ],
    [
      "data",
      npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", [
        0,
        0,
      ]),
    ],
    ["magic", new TextEncoder().encode("PK\x03\x04 not numpy at all")],
  ];
  for (const [field, bytes] of cases) {
    assert.throws(() => parseNpy(bytes, "bad.npy"), (error: unknown) => {
      assert.ok(error instanceof WeightsFormatError);
      assert.equal(error.field, field);
      assert.equal(error.file, "bad.npy");
      return true;
    });
  }
});

Deno.test("tf-slim names - map to Keras names as SOURCES.md's table says", () => {
  const table: [string, string][] = [
    ["Conv_weights", "Conv1/kernel"],
    ["Conv_BatchNorm_gamma", "bn_Conv1/gamma"],
    [
      "expanded_conv_depthwise_depthwise_weights",
      "expanded_conv_depthwise/depthwise_kernel",
    ],
    [
      "expanded_conv_depthwise_BatchNorm_moving_mean",
      "expanded_conv_depthwise_BN/moving_mean",
    ],
    ["expanded_conv_project_weights", "expanded_conv_project/kernel"],
    ["expanded_conv_project_BatchNorm_beta", "expanded_conv_project_BN/beta"],
    ["expanded_conv_1_expand_weights", "block_1_expand/kernel"],
    [
      "expanded_conv_16_expand_BatchNorm_moving_variance",
      "block_16_expand_BN/moving_variance",
    ],
    [
      "expanded_conv_7_depthwise_depthwise_weights",
      "block_7_depthwise/depthwise_kernel",
    ],
    [
      "expanded_conv_7_depthwise_BatchNorm_gamma",
      "block_7_depthwise_BN/gamma",
    ],
    ["expanded_conv_12_project_weights", "block_12_project/kernel"],
    ["expanded_conv_12_project_BatchNorm_beta", "block_12_project_BN/beta"],
    ["Conv_1_weights", "Conv_1/kernel"],
    ["Conv_1_BatchNorm_moving_mean", "Conv_1_bn/moving_mean"],
  ];
  for (const [slim, keras] of table) {
    assert.equal(tfSlimToKerasName(slim), keras, slim);
  }
  for (
    const outside of [
      "Logits_Conv2d_1c_1x1_weights",
      "expanded_conv_17_expand_weights",
      "expanded_conv_0_expand_weights",
    ]
  ) {
    assert.equal(tfSlimToKerasName(outside), undefined, outside);
  }

  const mapped = tfSlimBackboneNames().map(tfSlimToKerasName);
  assert.equal(mapped.length, 260);
  assert.equal(new Set(mapped).size, 260);
  assert.ok(mapped.every((name) => name !== undefined));
});

Deno.test("js literal - parses minified data literals without evaluating", () => {
  const text = `{a:!0,b:!1,c:.5,d:-1e-3,"e":'it\\'s',f:[1,[2],{}],` +
    `g:null,h:"\\u0041\\n",i:-0,9:true}`;
  const { value, end } = parseJsLiteral(text, { file: "m.js" });
  assert.equal(end, text.length);
  assert.deepEqual({ ...(value as Record<string, unknown>) }, {
    a: true,
    b: false,
    c: 0.5,
    d: -0.001,
    e: "it's",
    f: [1, [2], {}],
    g: null,
    h: "A\n",
    i: -0,
    9: true,
  });

  const bundle = `!function(e){module.exports=e()}(function(){return ` +
    `{1:[function(e,a,n){a.exports={x:[1,2]}},{}]}});`;
  assert.deepEqual(
    { ...(parseBundledExport(bundle, "b.js") as Record<string, unknown>) },
    { x: [1, 2] },
  );
});

Deno.test("js literal - code in place of data is an error with its offset", () => {
  for (const text of ["{a:foo()}", "{a:1", "{a:!2}", "[1 2]", '{a:"x}']) {
    assert.throws(
      () => parseJsLiteral(text, { file: "m.js" }),
      (error: unknown) => {
        assert.ok(error instanceof WeightsFormatError, text);
        assert.match(error.field, /^offset \d+$/);
        return true;
      },
    );
  }
});

Deno.test("tfjs manifest - dequantises uint8/uint16 and decodes float16", () => {
  const [group] = parseWeightsManifest([{
    paths: ["shard"],
    weights: [
      {
        name: "q8/kernel",
        shape: [3],
        dtype: "float32",
        quantization: { dtype: "uint8", scale: 0.1, min: -1 },
      },
      {
        name: "q16/bias",
        shape: [2],
        dtype: "float32",
        quantization: { dtype: "uint16", scale: 0.5, min: 2 },
      },
      {
        name: "h/gamma",
        shape: [4],
        dtype: "float32",
        quantization: { dtype: "float16" },
      },
      { name: "f/beta", shape: [1], dtype: "float32" },
    ],
  }], "model.json");

  const bytes = new Uint8Array(3 + 4 + 8 + 4);
  const view = new DataView(bytes.buffer);
  bytes.set([0, 10, 255], 0);
  view.setUint16(3, 1, true);
  view.setUint16(5, 65535, true);
  // Half floats 1, -2, 65504 (largest) and 2^-24 (smallest subnormal).
  [0x3c00, 0xc000, 0x7bff, 0x0001].forEach((h, i) =>
    view.setUint16(7 + 2 * i, h, true)
  );
  view.setFloat32(15, 3.25, true);

  const weights = decodeWeightsGroup(group, { bytes, file: "shard" });
  assert.deepEqual(
    [...weights.get("q8/kernel")!.values],
    [-1, 10 * 0.1 - 1, 255 * 0.1 - 1].map(Math.fround),
  );
  assert.deepEqual([...weights.get("q16/bias")!.values], [2.5, 32769.5]);
  assert.deepEqual(
    [...weights.get("h/gamma")!.values],
    [1, -2, 65504, 2 ** -24].map(Math.fround),
  );
  assert.deepEqual([...weights.get("f/beta")!.values], [3.25]);
});

Deno.test("tfjs manifest - shards of the wrong size and escaping paths fail", () => {
  const [group] = parseWeightsManifest([{
    paths: ["s1"],
    weights: [{ name: "a/kernel", shape: [4], dtype: "float32" }],
  }], "model.json");
  assert.throws(
    () => decodeWeightsGroup(group, { bytes: new Uint8Array(12), file: "s1" }),
    /s1: byteLength: shards hold 12 bytes, .* need 16 \(truncated\?\)/,
  );

  for (const path of ["../etc/passwd", "/abs", "a/../../b", ""]) {
    assert.throws(
      () =>
        parseWeightsManifest(
          [{ paths: [path], weights: [] }],
          "model.json",
        ),
      /model\.json: weightsManifest\[0\]\.paths/,
      path,
    );
  }
});
