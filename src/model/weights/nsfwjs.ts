/**
 * The MobileNetV2 that the npm package nsfwjs ships (Keras 2.2.4,
 * alpha 1.0, 224 px, ImageNet then fine-tuned on 5 classes, uint8
 * quantised), read offline from the package's files. The package wraps
 * model.json and each weight shard in a browserify module
 * (`model.min.js`, `group1-shard1of1.min.js`); they are parsed as data,
 * never run. Its backbone variables carry the Keras names; its head is
 * `dense_1` (256, relu), `dense_2` (128, relu), `dense_3` (5, softmax)
 * after a 7x7 average pool and a flatten, with dropout in between.
 *
 * @module
 */
import { WeightsFormatError, WeightsSourceError } from "./errors.ts";
import { parseBundledExport } from "./js_literal.ts";
import {
  concatBytes,
  decodeWeightsGroup,
  mergeInto,
  parseWeightsManifest,
} from "./tfjs_manifest.ts";
import type { WeightMap } from "./weight_map.ts";

/** The nsfwjs model's class names, in output order. */
export const NSFWJS_CLASSES = [
  "Drawing",
  "Hentai",
  "Neutral",
  "Porn",
  "Sexy",
] as const;

/** The nsfwjs model as tfjs would load it, plus its decoded weights. */
export interface NsfwjsModelFiles {
  /** Folder the files were read from. */
  dir: string;
  /** model.json's content: `modelTopology` and `weightsManifest`. */
  modelJson: Record<string, unknown>;
  /** All shards' bytes, concatenated in manifest order (quantised). */
  weightData: Uint8Array;
  /** Dequantised float32 tensors by Keras name, head included. */
  weights: WeightMap;
}

/**
 * The folder of nsfwjs's MobileNetV2 files, found through the project's
 * node_modules (Deno's `nodeModulesDir`).
 *
 * @throws {WeightsSourceError} if the package is not installed there.
 */
export async function locateNsfwjsModelDir(): Promise<string> {
  const candidates: URL[] = [];
  try {
    const entry = import.meta.resolve("nsfwjs");
    if (entry.startsWith("file:")) {
      candidates.push(new URL("../models/mobilenet_v2/", entry));
    }
  } catch {
    // Not in the import map: only the project-relative path remains.
  }
  candidates.push(
    new URL(
      "../../../node_modules/nsfwjs/dist/models/mobilenet_v2/",
      import.meta.url,
    ),
  );

  for (const url of candidates) {
    if (await isFile(new URL("model.min.js", url))) {
      return decodeURIComponent(url.pathname).replace(/\/$/, "");
    }
  }
  throw new WeightsSourceError({
    source: "nsfwjs",
    message: "the npm package nsfwjs is not installed in node_modules " +
      `(looked in ${candidates.map((u) => u.pathname).join(", ")}); ` +
      'run `deno install` with "nodeModulesDir" set in deno.json',
  });
}

async function isFile(url: URL): Promise<boolean> {
  try {
    return (await Deno.stat(url)).isFile;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Reads and decodes the nsfwjs MobileNetV2 files in `dir` (default: the
 * installed package's folder).
 *
 * @throws {WeightsFormatError} naming the file that does not parse.
 */
export async function readNsfwjsModel(
  options: { dir?: string } = {},
): Promise<NsfwjsModelFiles> {
  const dir = options.dir ?? await locateNsfwjsModelDir();
  const modelFile = `${dir}/model.min.js`;
  const modelJson = parseBundledExport(
    await Deno.readTextFile(modelFile),
    modelFile,
  );
  if (
    typeof modelJson !== "object" || modelJson === null ||
    Array.isArray(modelJson) || !("modelTopology" in modelJson)
  ) {
    throw new WeightsFormatError({
      file: modelFile,
      field: "modelTopology",
      message: "the bundled object is not a tfjs model.json",
    });
  }

  const groups = parseWeightsManifest(modelJson.weightsManifest, modelFile);
  const weights: WeightMap = new Map();
  const allShards: Uint8Array[] = [];
  for (const group of groups) {
    const files = group.paths.map((p) => `${dir}/${p}.min.js`);
    const shards = await Promise.all(files.map(readBundledShard));
    allShards.push(...shards);
    const decoded = decodeWeightsGroup(group, {
      bytes: concatBytes(shards),
      file: files.join(", "),
    });
    mergeInto(weights, decoded, modelFile);
  }

  return {
    dir,
    modelJson: modelJson as Record<string, unknown>,
    weightData: concatBytes(allShards),
    weights,
  };
}

/** A shard module exports its bytes as one base64 string. */
async function readBundledShard(file: string): Promise<Uint8Array> {
  const base64 = parseBundledExport(await Deno.readTextFile(file), file);
  if (typeof base64 !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) {
    throw new WeightsFormatError({
      file,
      field: "exports",
      message: "expected a base64 string",
    });
  }
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
