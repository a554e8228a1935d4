/**
 * The flat AdamW's inner loops as a WebAssembly SIMD module, assembled here
 * from a readable instruction list (no binary blob to trust). Two functions:
 *
 * - `adamw(w, g, m, v, groups, beta1, oneMinusBeta1, beta2, oneMinusBeta2,
 *   epsilon, decay, stepSize, denomScale, gradScale)` updates `groups`
 *   groups of 4 float32 values at byte offsets w, g, m, v, in this order of
 *   float32 operations (each rounded, as IEEE single precision):
 *     grad   = g * gradScale
 *     first  = m * beta1 + grad * oneMinusBeta1
 *     second = v * beta2 + (grad * grad) * oneMinusBeta2
 *     den    = sqrt(second) * denomScale + epsilon
 *     w      = w - ((first / den) * stepSize + w * decay)
 *   The tfjs AdamW runs the same operations in the same order, so on the
 *   cpu backend both forms give identical bits.
 * - `sumsq(g, groups)` returns the sum of squares of 4 * groups float32
 *   values in float64 (two 2-lane accumulators, summed in a fixed order).
 *
 * Why WebAssembly: a scalar JS loop computes in float64, and on this
 * project's 2-core machine the float64 sqrt + divide of every element took
 * ~25 ms per 3.5 M parameters; 4-lane float32 SIMD cuts that well below the
 * memory traffic. WebAssembly float arithmetic is IEEE and fused nowhere, so
 * the results are the same on every machine.
 *
 * @module
 */

const I32 = 0x7f;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;

/** Opcodes used, from the WebAssembly 2.0 spec (SIMD ones after 0xfd). */
const OP = {
  block: 0x02,
  loop: 0x03,
  br: 0x0c,
  brIf: 0x0d,
  end: 0x0b,
  localGet: 0x20,
  localSet: 0x21,
  i32Const: 0x41,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  i32Shl: 0x74,
  f64Add: 0xa0,
  voidBlock: 0x40,
} as const;
const SIMD = {
  v128Load: 0x00,
  v128Store: 0x0b,
  i8x16Shuffle: 0x0d,
  f32x4Splat: 0x13,
  f64x2ExtractLane: 0x21,
  f64x2PromoteLowF32x4: 0x5f,
  f32x4Sqrt: 0xe3,
  f32x4Add: 0xe4,
  f32x4Sub: 0xe5,
  f32x4Mul: 0xe6,
  f32x4Div: 0xe7,
  f64x2Add: 0xf0,
  f64x2Mul: 0xf2,
} as const;

function uleb(value: number): number[] {
  const bytes: number[] = [];
  let rest = value >>> 0;
  do {
    const low = rest & 0x7f;
    rest >>>= 7;
    bytes.push(rest === 0 ? low : low | 0x80);
  } while (rest !== 0);
  return bytes;
}

function sleb(value: number): number[] {
  const bytes: number[] = [];
  let rest = value | 0;
  while (true) {
    const low = rest & 0x7f;
    rest >>= 7;
    const done = (rest === 0 && (low & 0x40) === 0) ||
      (rest === -1 && (low & 0x40) !== 0);
    bytes.push(done ? low : low | 0x80);
    if (done) return bytes;
  }
}

function name(text: string): number[] {
  const utf8 = [...new TextEncoder().encode(text)];
  return [...uleb(utf8.length), ...utf8];
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, content: number[]): number[] {
  return [id, ...uleb(content.length), ...content];
}

/** A function with named parameters and locals, written in stack form. */
interface FunctionSpec {
  params: Array<[string, number]>;
  results: number[];
  locals: Array<[string, number]>;
  body: (a: Assembler) => number[];
}

/** Instruction helpers that resolve local names to indices. */
class Assembler {
  #index: Map<string, number>;

  constructor(names: string[]) {
    this.#index = new Map(names.map((n, i) => [n, i]));
  }

  #local(local: string): number[] {
    const index = this.#index.get(local);
    if (index === undefined) {
      throw new RangeError(`Cannot assemble the kernel: no local "${local}"`);
    }
    return uleb(index);
  }

  get(local: string): number[] {
    return [OP.localGet, ...this.#local(local)];
  }

  set(local: string): number[] {
    return [OP.localSet, ...this.#local(local)];
  }

  simd(op: number, ...immediates: number[]): number[] {
    return [0xfd, ...uleb(op), ...immediates];
  }

  /** `v128.load` at `base + i`, 16-byte aligned. */
  load(base: string): number[] {
    return [
      ...this.get(base),
      ...this.get("i"),
      OP.i32Add,
      ...this.simd(SIMD.v128Load, 4, 0),
    ];
  }

  /** `v128.store` of `value` at `base + i`. */
  store(base: string, value: number[]): number[] {
    return [
      ...this.get(base),
      ...this.get("i"),
      OP.i32Add,
      ...value,
      ...this.simd(SIMD.v128Store, 4, 0),
    ];
  }

  /** `for (i = 0; i < groups * 16; i += 16) body`, byte offsets. */
  loopOverGroups(body: number[]): number[] {
    return [
      ...this.get("groups"),
      OP.i32Const,
      ...sleb(4),
      OP.i32Shl,
      ...this.set("end"),
      OP.block,
      OP.voidBlock,
      OP.loop,
      OP.voidBlock,
      ...this.get("i"),
      ...this.get("end"),
      OP.i32GeU,
      OP.brIf,
      1,
      ...body,
      ...this.get("i"),
      OP.i32Const,
      ...sleb(16),
      OP.i32Add,
      ...this.set("i"),
      OP.br,
      0,
      OP.end,
      OP.end,
    ];
  }
}

function f32x4(a: Assembler, op: keyof typeof SIMD): number[] {
  return a.simd(SIMD[op]);
}

const SPLATS: Array<[string, string]> = [
  ["beta1", "B1"],
  ["oneMinusBeta1", "C1"],
  ["beta2", "B2"],
  ["oneMinusBeta2", "C2"],
  ["epsilon", "EPS"],
  ["decay", "DECAY"],
  ["stepSize", "SS"],
  ["denomScale", "DS"],
  ["gradScale", "GS"],
];

const ADAMW: FunctionSpec = {
  params: [
    ["w", I32],
    ["g", I32],
    ["m", I32],
    ["v", I32],
    ["groups", I32],
    ...SPLATS.map(([scalar]): [string, number] => [scalar, F32]),
  ],
  results: [],
  locals: [
    ["i", I32],
    ["end", I32],
    ...SPLATS.map(([, lanes]): [string, number] => [lanes, V128]),
    ["grad", V128],
    ["first", V128],
    ["second", V128],
    ["den", V128],
  ],
  body: (a) => [
    ...SPLATS.flatMap(([scalar, lanes]) => [
      ...a.get(scalar),
      ...f32x4(a, "f32x4Splat"),
      ...a.set(lanes),
    ]),
    ...a.loopOverGroups([
      // grad = g * gradScale
      ...a.load("g"),
      ...a.get("GS"),
      ...f32x4(a, "f32x4Mul"),
      ...a.set("grad"),
      // first = m * beta1 + grad * (1 - beta1)
      ...a.load("m"),
      ...a.get("B1"),
      ...f32x4(a, "f32x4Mul"),
      ...a.get("grad"),
      ...a.get("C1"),
      ...f32x4(a, "f32x4Mul"),
      ...f32x4(a, "f32x4Add"),
      ...a.set("first"),
      // second = v * beta2 + (grad * grad) * (1 - beta2)
      ...a.load("v"),
      ...a.get("B2"),
      ...f32x4(a, "f32x4Mul"),
      ...a.get("grad"),
      ...a.get("grad"),
      ...f32x4(a, "f32x4Mul"),
      ...a.get("C2"),
      ...f32x4(a, "f32x4Mul"),
      ...f32x4(a, "f32x4Add"),
      ...a.set("second"),
      ...a.store("m", a.get("first")),
      ...a.store("v", a.get("second")),
      // den = sqrt(second) * denomScale + epsilon
      ...a.get("second"),
      ...f32x4(a, "f32x4Sqrt"),
      ...a.get("DS"),
      ...f32x4(a, "f32x4Mul"),
      ...a.get("EPS"),
      ...f32x4(a, "f32x4Add"),
      ...a.set("den"),
      // w = w - ((first / den) * stepSize + w * decay)
      ...a.store("w", [
        ...a.load("w"),
        ...a.get("first"),
        ...a.get("den"),
        ...f32x4(a, "f32x4Div"),
        ...a.get("SS"),
        ...f32x4(a, "f32x4Mul"),
        ...a.load("w"),
        ...a.get("DECAY"),
        ...f32x4(a, "f32x4Mul"),
        ...f32x4(a, "f32x4Add"),
        ...f32x4(a, "f32x4Sub"),
      ]),
    ]),
  ],
};

/** Moves the upper two float32 lanes of x down, for the second promote. */
const HIGH_HALF_LANES = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];

const SUMSQ: FunctionSpec = {
  params: [["g", I32], ["groups", I32]],
  results: [F64],
  locals: [
    ["i", I32],
    ["end", I32],
    ["x", V128],
    ["lo", V128],
    ["hi", V128],
  ],
  body: (a) => {
    const squareInto = (acc: string) => [
      ...a.get(acc),
      ...a.get("x"),
      ...f32x4(a, "f64x2PromoteLowF32x4"),
      ...a.get("x"),
      ...f32x4(a, "f64x2PromoteLowF32x4"),
      ...f32x4(a, "f64x2Mul"),
      ...f32x4(a, "f64x2Add"),
      ...a.set(acc),
    ];
    const lane = (acc: string, index: number) => [
      ...a.get(acc),
      ...a.simd(SIMD.f64x2ExtractLane, index),
    ];
    return [
      ...a.loopOverGroups([
        ...a.load("g"),
        ...a.set("x"),
        ...squareInto("lo"),
        ...a.get("x"),
        ...a.get("x"),
        ...a.simd(SIMD.i8x16Shuffle, ...HIGH_HALF_LANES),
        ...a.set("x"),
        ...squareInto("hi"),
      ]),
      ...lane("lo", 0),
      ...lane("lo", 1),
      OP.f64Add,
      ...lane("hi", 0),
      ...lane("hi", 1),
      OP.f64Add,
      OP.f64Add,
    ];
  },
};

function functionBody(spec: FunctionSpec): number[] {
  const names = [...spec.params, ...spec.locals].map(([n]) => n);
  const runs: number[][] = [];
  for (const [, type] of spec.locals) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last[1] === type) last[0]! += 1;
    else runs.push([1, type]);
  }
  const body = [
    ...vec(runs.map(([count, type]) => [...uleb(count!), type!])),
    ...spec.body(new Assembler(names)),
    OP.end,
  ];
  return [...uleb(body.length), ...body];
}

/** The module bytes: imports `env.memory`, exports `adamw` and `sumsq`. */
export function kernelModuleBytes(): Uint8Array<ArrayBuffer> {
  const functions = [ADAMW, SUMSQ];
  const types = functions.map((spec) => [
    0x60,
    ...vec(spec.params.map(([, type]) => [type])),
    ...vec(spec.results.map((type) => [type])),
  ]);
  const memoryImport = [...name("env"), ...name("memory"), 0x02, 0x00, 1];

  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(types)),
    ...section(2, vec([memoryImport])),
    ...section(3, vec(functions.map((_, i) => uleb(i)))),
    ...section(
      7,
      vec([
        [...name("adamw"), 0x00, ...uleb(0)],
        [...name("sumsq"), 0x00, ...uleb(1)],
      ]),
    ),
    ...section(10, vec(functions.map(functionBody))),
  ]);
}

/** The kernel's two functions, bound to one memory. */
export interface Kernel {
  memory: WebAssembly.Memory;
  adamw(
    w: number,
    g: number,
    m: number,
    v: number,
    groups: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    epsilon: number,
    decay: number,
    stepSize: number,
    denomScale: number,
    gradScale: number,
  ): void;
  sumsq(g: number, groups: number): number;
}

let compiled: WebAssembly.Module | undefined;

/** Instantiates the kernel over a fresh memory of `bytes` (rounded up). */
export function instantiateKernel(bytes: number): Kernel {
  compiled ??= new WebAssembly.Module(kernelModuleBytes());
  const pages = Math.max(1, Math.ceil(bytes / 65536));
  const memory = new WebAssembly.Memory({ initial: pages });
  const instance = new WebAssembly.Instance(compiled, { env: { memory } });
  const exports = instance.exports as unknown as Omit<Kernel, "memory">;
  return { memory, adamw: exports.adamw, sumsq: exports.sumsq };
}
