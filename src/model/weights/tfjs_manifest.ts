/**
 * Reads the weights of a TensorFlow.js layers model (`model.json` with a
 * `weightsManifest` and its binary shards), without tfjs: plain float32
 * tensors and the converter's quantised ones (uint8/uint16 with `scale`
 * and `min`, float16) come out as float32 values keyed by their manifest
 * names. Nested models (a Teachable Machine export is a Sequential holding
 * a Sequential holding the Keras model) need nothing special: the
 * manifest lists every weight by its Keras name.
 *
 * @module
 */
import { WeightsFormatError } from "./errors.ts";
import { float32FromBytes, sizeOfShape, type WeightMap } from "./weight_map.ts";

/** How a quantised tensor is stored. */
export interface TfjsQuantization {
  dtype: "uint8" | "uint16" | "float16";
  /** Step of uint8/uint16 values: value = q * scale + min. */
  scale?: number;
  /** Offset of uint8/uint16 values. */
  min?: number;
}

/** One tensor of a weights manifest group. */
export interface TfjsWeightSpec {
  name: string;
  shape: number[];
  dtype: "float32";
  quantization?: TfjsQuantization;
}

/** One group of a weights manifest: shards read in order, then tensors. */
export interface TfjsWeightsGroup {
  /** Shard paths relative to model.json. */
  paths: string[];
  weights: TfjsWeightSpec[];
}

const VALUE_BYTES = { float32: 4, uint8: 1, uint16: 2, float16: 2 } as const;

/** Bytes a tensor takes in its shard. */
export function specByteLength(spec: TfjsWeightSpec): number {
  const stored = spec.quantization?.dtype ?? spec.dtype;
  return sizeOfShape(spec.shape) * VALUE_BYTES[stored];
}

/** Bytes all of a group's tensors take: the sum of its shards' sizes. */
export function groupByteLength(group: TfjsWeightsGroup): number {
  return group.weights.reduce((sum, spec) => sum + specByteLength(spec), 0);
}

/**
 * Checks a model.json's `weightsManifest` field. `file` names it in
 * errors.
 *
 * @throws {WeightsFormatError} for the first malformed entry.
 */
export function parseWeightsManifest(
  manifest: unknown,
  file: string,
): TfjsWeightsGroup[] {
  const fail = (field: string, message: string): never => {
    throw new WeightsFormatError({ file, field, message });
  };
  if (!Array.isArray(manifest)) {
    return fail("weightsManifest", "expected an array of groups");
  }

  return manifest.map((group: unknown, g) => {
    const where = `weightsManifest[${g}]`;
    if (typeof group !== "object" || group === null) {
      return fail(where, "expected an object");
    }
    const { paths, weights } = group as Record<string, unknown>;
    if (
      !Array.isArray(paths) || !paths.every((p) => isRelativeShardPath(p))
    ) {
      fail(
        `${where}.paths`,
        "expected relative shard paths without '..' segments",
      );
    }
    if (!Array.isArray(weights)) fail(`${where}.weights`, "expected an array");
    return {
      paths: paths as string[],
      weights: (weights as unknown[]).map((spec, i) =>
        checkSpec(spec, { file, field: `${where}.weights[${i}]` })
      ),
    };
  });
}

/** A shard path that stays inside model.json's folder. */
export function isRelativeShardPath(path: unknown): path is string {
  return typeof path === "string" &&
    /^[\w.-]+(\/[\w.-]+)*$/.test(path) &&
    !path.split("/").some((segment) => segment === ".." || segment === ".");
}

function checkSpec(
  spec: unknown,
  where: { file: string; field: string },
): TfjsWeightSpec {
  const fail = (field: string, message: string): never => {
    throw new WeightsFormatError({
      file: where.file,
      field: where.field + field,
      message,
    });
  };
  if (typeof spec !== "object" || spec === null) {
    return fail("", "expected an object");
  }
  const { name, shape, dtype, quantization } = spec as Record<
    string,
    unknown
  >;

  if (typeof name !== "string" || name === "") {
    fail(".name", "expected a non-empty string");
  }
  if (
    !Array.isArray(shape) ||
    !shape.every((d) => Number.isSafeInteger(d) && d >= 0)
  ) {
    fail(".shape", "expected an array of dimensions");
  }
  if (dtype !== "float32") {
    fail(".dtype", `expected "float32", got ${JSON.stringify(dtype)}`);
  }
  const checked: TfjsWeightSpec = {
    name: name as string,
    shape: shape as number[],
    dtype: "float32",
  };
  if (quantization === undefined) return checked;

  const q = quantization as Record<string, unknown>;
  if (q.dtype === "float16") {
    return { ...checked, quantization: { dtype: "float16" } };
  }
  if (q.dtype !== "uint8" && q.dtype !== "uint16") {
    fail(
      ".quantization.dtype",
      `expected uint8, uint16 or float16, got ${JSON.stringify(q.dtype)}`,
    );
  }
  if (!Number.isFinite(q.scale) || !Number.isFinite(q.min)) {
    fail(".quantization", "expected finite numbers `scale` and `min`");
  }
  return {
    ...checked,
    quantization: {
      dtype: q.dtype as "uint8" | "uint16",
      scale: q.scale as number,
      min: q.min as number,
    },
  };
}

/**
 * Decodes one group's tensors from its shards' bytes, concatenated in
 * `paths` order. Quantised values are dequantised the way tfjs does it
 * (`q * scale + min`, rounded once to float32), so a model loaded here
 * equals the same model loaded by `tf.loadLayersModel`.
 *
 * @throws {WeightsFormatError} if the bytes are not exactly the group's
 *   size; `file` should name the shards.
 */
export function decodeWeightsGroup(
  group: TfjsWeightsGroup,
  options: { bytes: Uint8Array; file: string },
): WeightMap {
  const { bytes, file } = options;
  const expectedBytes = groupByteLength(group);
  if (bytes.byteLength !== expectedBytes) {
    throw new WeightsFormatError({
      file,
      field: "byteLength",
      message: `shards hold ${bytes.byteLength} bytes, the manifest's ` +
        `${group.weights.length} tensors need ${expectedBytes}` +
        (bytes.byteLength < expectedBytes ? " (truncated?)" : ""),
    });
  }

  const weights: WeightMap = new Map();
  let offset = 0;
  for (const spec of group.weights) {
    const byteLength = specByteLength(spec);
    weights.set(spec.name, {
      shape: [...spec.shape],
      values: decodeValues(spec, { bytes, offset, byteLength }),
    });
    offset += byteLength;
  }
  return weights;
}

function decodeValues(
  spec: TfjsWeightSpec,
  range: { bytes: Uint8Array; offset: number; byteLength: number },
): Float32Array {
  const { bytes, offset, byteLength } = range;
  const q = spec.quantization;
  if (q === undefined) return float32FromBytes(bytes, { offset, byteLength });

  const raw = bytes.slice(offset, offset + byteLength);
  if (q.dtype === "float16") {
    return Float32Array.from(new Uint16Array(raw.buffer), halfToFloat);
  }
  const quantized = q.dtype === "uint8" ? raw : new Uint16Array(raw.buffer);
  const values = new Float32Array(quantized.length);
  for (let i = 0; i < quantized.length; i++) {
    values[i] = quantized[i] * q.scale! + q.min!;
  }
  return values;
}

/** IEEE 754 half-precision bits to a number. */
function halfToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** A model.json read from disk with its decoded weights. */
export interface TfjsModelFiles {
  /** The parsed model.json (topology, manifest, metadata). */
  modelJson: Record<string, unknown>;
  /** Every tensor of every group, by manifest name. */
  weights: WeightMap;
  /** Shard files read, in order. */
  shardPaths: string[];
}

/**
 * Reads a tfjs layers `model.json` and its shards from disk.
 *
 * @throws {WeightsFormatError} for bad JSON, a bad manifest, a duplicate
 *   tensor name or a shard of the wrong size.
 */
export async function readTfjsModel(
  modelJsonPath: string,
): Promise<TfjsModelFiles> {
  const modelJson = parseModelJson(
    await Deno.readTextFile(modelJsonPath),
    modelJsonPath,
  );
  const groups = parseWeightsManifest(
    modelJson.weightsManifest,
    modelJsonPath,
  );
  const slash = modelJsonPath.lastIndexOf("/");
  const dir = slash >= 0 ? modelJsonPath.slice(0, slash) : ".";
  const weights: WeightMap = new Map();
  const shardPaths: string[] = [];

  for (const group of groups) {
    const paths = group.paths.map((p) => `${dir}/${p}`);
    const shards = await Promise.all(paths.map((p) => Deno.readFile(p)));
    shardPaths.push(...paths);
    const decoded = decodeWeightsGroup(group, {
      bytes: concatBytes(shards),
      file: paths.join(", "),
    });
    mergeInto(weights, decoded, modelJsonPath);
  }
  return { modelJson, weights, shardPaths };
}

/**
 * Parses model.json text into an object with a `weightsManifest`.
 *
 * @throws {WeightsFormatError} naming `file`.
 */
export function parseModelJson(
  text: string,
  file: string,
): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new WeightsFormatError(
      { file, field: "(json)", message: "not valid JSON" },
      { cause },
    );
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new WeightsFormatError({
      file,
      field: "(root)",
      message: "expected a JSON object",
    });
  }
  return json as Record<string, unknown>;
}

/** Adds `from` to `into`; a name in both is an error naming `file`. */
export function mergeInto(
  into: WeightMap,
  from: WeightMap,
  file: string,
): void {
  for (const [name, tensor] of from) {
    if (into.has(name)) {
      throw new WeightsFormatError({
        file,
        field: "weightsManifest",
        message: `tensor "${name}" is listed twice`,
      });
    }
    into.set(name, tensor);
  }
}

/** Concatenates byte arrays into one fresh array. */
export function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
