/**
 * dptrain's own weight format: a `weights.json` manifest next to one
 * `weights.bin` of little-endian float32 values. The manifest says where
 * each tensor lies in the bin, where the values came from, which input
 * scaling they expect and the bin's SHA-256. See docs/weights.md.
 *
 * @module
 */
import { WeightsFormatError } from "./errors.ts";
import { type InputScaling, isInputScaling } from "./input_scaling.ts";
import {
  concatSortedBytes,
  float32FromBytes,
  sha256Hex,
  sizeOfShape,
  sortedNames,
  type WeightMap,
} from "./weight_map.ts";

/** The `format` value of every dptrain weights manifest. */
export const DPTRAIN_WEIGHTS_FORMAT = "dptrain-weights";

/** The manifest version this module reads and writes. */
export const DPTRAIN_WEIGHTS_VERSION = 1;

/** One tensor's entry in the manifest. */
export interface DptrainTensorEntry {
  /** Keras variable name, e.g. `block_1_expand/kernel`. */
  name: string;
  /** Dimensions, outermost first. */
  shape: number[];
  /** Always `float32` in version 1. */
  dtype: "float32";
  /** Byte offset in the bin, a multiple of 4. */
  offset: number;
  /** Byte length: 4 times the product of `shape`. */
  byteLength: number;
}

/** The contents of `weights.json`. */
export interface DptrainWeightsManifest {
  format: typeof DPTRAIN_WEIGHTS_FORMAT;
  version: typeof DPTRAIN_WEIGHTS_VERSION;
  /** MobileNetV2 width multiplier the tensors belong to. */
  alpha: number;
  /** Square input size the weights were trained at, in pixels. */
  trainedImageSize: number;
  /** Input scaling the weights expect. */
  inputScaling: InputScaling;
  /** What these weights are, in one sentence. */
  description: string;
  /** Where they came from: repository, commit, paths, checksums. */
  origin: string;
  /** Licence of the values. */
  license: string;
  /** File name of the bin, in the manifest's folder. */
  weightsFile: string;
  /** Size of the bin in bytes. */
  weightsBytes: number;
  /** Lower-case hex SHA-256 of the bin. */
  sha256: string;
  /** Tensors in bin order (writers sort them by name). */
  tensors: DptrainTensorEntry[];
}

/** Everything of a manifest but what the writer computes. */
export type DptrainWeightsInfo = Omit<
  DptrainWeightsManifest,
  "format" | "version" | "weightsFile" | "weightsBytes" | "sha256" | "tensors"
>;

/**
 * Lays out a weight map in the dptrain format: tensors sorted by name,
 * packed without gaps. Returns the manifest and the bin's bytes.
 */
export async function encodeDptrainWeights(
  weights: WeightMap,
  info: DptrainWeightsInfo,
): Promise<{ manifest: DptrainWeightsManifest; bin: Uint8Array }> {
  const bin = concatSortedBytes(weights);
  const tensors: DptrainTensorEntry[] = [];
  let offset = 0;

  for (const name of sortedNames(weights)) {
    const { shape, values } = weights.get(name)!;
    tensors.push({
      name,
      shape: [...shape],
      dtype: "float32",
      offset,
      byteLength: values.byteLength,
    });
    offset += values.byteLength;
  }

  const manifest: DptrainWeightsManifest = {
    format: DPTRAIN_WEIGHTS_FORMAT,
    version: DPTRAIN_WEIGHTS_VERSION,
    ...info,
    weightsFile: "weights.bin",
    weightsBytes: bin.byteLength,
    sha256: await sha256Hex(bin),
    tensors,
  };
  return { manifest, bin };
}

/**
 * Writes `weights.json` and `weights.bin` into `dir` (created if needed).
 * Each file is written to a temporary name and renamed, so a reader never
 * sees half a file.
 */
export async function writeDptrainWeights(
  dir: string,
  options: { weights: WeightMap; info: DptrainWeightsInfo },
): Promise<DptrainWeightsManifest> {
  const { manifest, bin } = await encodeDptrainWeights(
    options.weights,
    options.info,
  );
  await Deno.mkdir(dir, { recursive: true });

  await writeAtomically(`${dir}/${manifest.weightsFile}`, bin);
  await writeAtomically(
    `${dir}/weights.json`,
    new TextEncoder().encode(formatManifest(manifest)),
  );
  return manifest;
}

/** Pretty JSON with one line per tensor, so diffs stay readable. */
export function formatManifest(manifest: DptrainWeightsManifest): string {
  const { tensors, ...header } = manifest;
  const head = JSON.stringify(header, null, 2).slice(0, -2);
  const lines = tensors.map((t) => `    ${JSON.stringify(t)}`);
  return `${head},\n  "tensors": [\n${lines.join(",\n")}\n  ]\n}\n`;
}

async function writeAtomically(path: string, bytes: Uint8Array) {
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, path);
}

/**
 * Reads a dptrain `weights.json` and the bin it names (same folder),
 * checking every field, the bin's size and its SHA-256.
 *
 * @throws {WeightsFormatError} naming the file and field at fault.
 */
export async function readDptrainWeights(
  manifestPath: string,
): Promise<{ manifest: DptrainWeightsManifest; weights: WeightMap }> {
  const manifestText = await Deno.readTextFile(manifestPath);
  const manifest = parseDptrainManifest(manifestText, manifestPath);
  const slash = manifestPath.lastIndexOf("/");
  const dir = slash >= 0 ? manifestPath.slice(0, slash) : ".";
  const binPath = `${dir}/${manifest.weightsFile}`;
  const bin = await Deno.readFile(binPath);
  const weights = await decodeDptrainBin(manifest, { bin, binPath });
  return { manifest, weights };
}

/**
 * Parses and checks a manifest's JSON text. `file` names it in errors.
 *
 * @throws {WeightsFormatError} for the first field that is wrong.
 */
export function parseDptrainManifest(
  text: string,
  file: string,
): DptrainWeightsManifest {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new WeightsFormatError(
      { file, field: "(json)", message: "not valid JSON" },
      { cause },
    );
  }
  const fail = (field: string, message: string): never => {
    throw new WeightsFormatError({ file, field, message });
  };
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return fail("(root)", "expected a JSON object");
  }
  const m = json as Record<string, unknown>;

  if (m.format !== DPTRAIN_WEIGHTS_FORMAT) {
    fail(
      "format",
      `expected "${DPTRAIN_WEIGHTS_FORMAT}", got ${show(m.format)}`,
    );
  }
  if (m.version !== DPTRAIN_WEIGHTS_VERSION) {
    fail(
      "version",
      `expected ${DPTRAIN_WEIGHTS_VERSION}, got ${show(m.version)}`,
    );
  }
  if (typeof m.alpha !== "number" || !(m.alpha > 0)) {
    fail("alpha", `expected a positive number, got ${show(m.alpha)}`);
  }
  if (!isPositiveInteger(m.trainedImageSize)) {
    fail(
      "trainedImageSize",
      `expected a positive integer, got ${show(m.trainedImageSize)}`,
    );
  }
  if (!isInputScaling(m.inputScaling)) {
    fail(
      "inputScaling",
      `expected one of minus_one_to_one, zero_to_one, got ${
        show(m.inputScaling)
      }`,
    );
  }
  for (const field of ["description", "origin", "license"]) {
    if (typeof m[field] !== "string") fail(field, "expected a string");
  }
  if (
    typeof m.weightsFile !== "string" || !/^[\w.-]+$/.test(m.weightsFile) ||
    m.weightsFile.startsWith(".")
  ) {
    fail(
      "weightsFile",
      `expected a plain file name in the same folder, got ${
        show(m.weightsFile)
      }`,
    );
  }
  if (!isNonNegativeInteger(m.weightsBytes)) {
    fail("weightsBytes", `expected a byte count, got ${show(m.weightsBytes)}`);
  }
  if (typeof m.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(m.sha256)) {
    fail("sha256", `expected 64 lower-case hex digits, got ${show(m.sha256)}`);
  }
  if (!Array.isArray(m.tensors)) fail("tensors", "expected an array");

  const tensors = (m.tensors as unknown[]).map((entry, i) =>
    checkTensorEntry(entry, { file, field: `tensors[${i}]` })
  );
  checkLayout(tensors, { file, weightsBytes: m.weightsBytes as number });
  return { ...(m as unknown as DptrainWeightsManifest), tensors };
}

function checkTensorEntry(
  entry: unknown,
  where: { file: string; field: string },
): DptrainTensorEntry {
  const fail = (field: string, message: string): never => {
    throw new WeightsFormatError({
      file: where.file,
      field: `${where.field}${field}`,
      message,
    });
  };
  if (typeof entry !== "object" || entry === null) {
    return fail("", "expected an object");
  }
  const e = entry as Record<string, unknown>;

  if (typeof e.name !== "string" || e.name === "") {
    fail(".name", "expected a non-empty string");
  }
  if (!Array.isArray(e.shape) || !e.shape.every(isNonNegativeInteger)) {
    fail(".shape", `expected an array of dimensions, got ${show(e.shape)}`);
  }
  if (e.dtype !== "float32") {
    fail(".dtype", `expected "float32", got ${show(e.dtype)}`);
  }
  if (!isNonNegativeInteger(e.offset) || (e.offset as number) % 4 !== 0) {
    fail(".offset", `expected a multiple of 4, got ${show(e.offset)}`);
  }
  const expectedBytes = 4 * sizeOfShape(e.shape as number[]);
  if (e.byteLength !== expectedBytes) {
    fail(
      ".byteLength",
      `expected ${expectedBytes} for shape [${e.shape}], got ${
        show(e.byteLength)
      }`,
    );
  }
  return {
    name: e.name as string,
    shape: e.shape as number[],
    dtype: "float32",
    offset: e.offset as number,
    byteLength: e.byteLength as number,
  };
}

/** Names are unique; ranges do not overlap and cover the bin exactly. */
function checkLayout(
  tensors: DptrainTensorEntry[],
  where: { file: string; weightsBytes: number },
): void {
  const { file, weightsBytes } = where;
  const seen = new Set<string>();
  tensors.forEach((t, i) => {
    if (seen.has(t.name)) {
      throw new WeightsFormatError({
        file,
        field: `tensors[${i}].name`,
        message: `duplicate tensor name "${t.name}"`,
      });
    }
    seen.add(t.name);
  });

  const byOffset = tensors
    .map((t, i) => ({ t, i }))
    .sort((a, b) => a.t.offset - b.t.offset);
  let end = 0;

  for (const { t, i } of byOffset) {
    if (t.offset !== end) {
      throw new WeightsFormatError({
        file,
        field: `tensors[${i}].offset`,
        message: t.offset < end
          ? `"${t.name}" at ${t.offset} overlaps the tensor ending at ${end}`
          : `gap of ${t.offset - end} bytes before "${t.name}" at ${t.offset}`,
      });
    }
    end = t.offset + t.byteLength;
  }
  if (end !== weightsBytes) {
    throw new WeightsFormatError({
      file,
      field: "weightsBytes",
      message: `tensors cover ${end} bytes, manifest says ${weightsBytes}`,
    });
  }
}

/**
 * Checks a bin against its manifest (size, SHA-256) and slices it into a
 * weight map.
 *
 * @throws {WeightsFormatError} naming the bin and the field at fault.
 */
export async function decodeDptrainBin(
  manifest: DptrainWeightsManifest,
  options: { bin: Uint8Array; binPath: string },
): Promise<WeightMap> {
  const { bin, binPath } = options;
  if (bin.byteLength !== manifest.weightsBytes) {
    throw new WeightsFormatError({
      file: binPath,
      field: "weightsBytes",
      message:
        `file has ${bin.byteLength} bytes, manifest says ${manifest.weightsBytes}`,
    });
  }
  const actualSha256 = await sha256Hex(bin);
  if (actualSha256 !== manifest.sha256) {
    throw new WeightsFormatError({
      file: binPath,
      field: "sha256",
      message:
        `file hashes to ${actualSha256}, manifest says ${manifest.sha256}`,
    });
  }

  const weights: WeightMap = new Map();
  for (const t of manifest.tensors) {
    weights.set(t.name, {
      shape: [...t.shape],
      values: float32FromBytes(bin, t),
    });
  }
  return weights;
}

function isNonNegativeInteger(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isPositiveInteger(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

function show(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? String(value) : text.slice(0, 80);
}
