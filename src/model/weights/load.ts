/**
 * The one entry point that puts pretrained weights into a MobileNetV2:
 * {@linkcode loadPretrainedWeights}. It resolves a weight source to
 * tensors keyed by Keras name, checks them against the model's variables
 * and writes them in, and reports the input scaling the weights expect.
 *
 * @module
 */
import type { LayersModel } from "../../_tfjs_types.ts";
import { fileURLToPath } from "node:url";
import { assignWeights, planWeights } from "./apply.ts";
import { readDptrainWeights } from "./dptrain_format.ts";
import { WeightsFormatError, WeightsSourceError } from "./errors.ts";
import { fetchImagenetWeights } from "./imagenet.ts";
import { type InputScaling, isInputScaling } from "./input_scaling.ts";
import { readNsfwjsModel } from "./nsfwjs.ts";
import { parseModelJson, readTfjsModel } from "./tfjs_manifest.ts";
import type { WeightMap } from "./weight_map.ts";

/**
 * Where pretrained weights come from:
 * - `bundled`: the ImageNet sets shipped in assets/weights/ (alpha 0.35
 *   and 1.0), offline;
 * - `nsfwjs`: the npm package nsfwjs's MobileNetV2 (alpha 1.0), offline;
 * - `imagenet`: the Keras ImageNet weights for any alpha, downloaded once
 *   and cached;
 * - `none`: keep the seeded random initialisation;
 * - anything else: a path to a tfjs layers `model.json`, a dptrain
 *   `weights.json`, or a folder holding one.
 */
export type WeightsSource =
  | "bundled"
  | "nsfwjs"
  | "imagenet"
  | "none"
  | (string & Record<never, never>);

/** Width multipliers with a bundled weight set. */
export const BUNDLED_ALPHAS = [0.35, 1.0] as const;

/** Options of {@linkcode loadPretrainedWeights}. */
export interface LoadWeightsOptions {
  /** Where the weights come from. */
  source: WeightsSource;
  /** Width multiplier of the model. */
  alpha: number;
  /** Input size of the model in pixels (picks the imagenet download). */
  imageSize: number;
  /** Cache of downloaded weights. @default ".cache/dptrain/weights" */
  cacheDir?: string;
  /** Bucket URL of the imagenet source (tests point it at loopback). */
  imagenetBaseUrl?: string;
  /**
   * Also load the head from the source: the model's non-backbone
   * variables must then match the source's exactly. @default false
   */
  includeHead?: boolean;
  /**
   * Input scaling of a tfjs model.json that does not declare one in
   * `userDefinedMetadata.inputScaling`. @default "minus_one_to_one"
   */
  inputScaling?: InputScaling;
  /** Progress lines. */
  log?: (message: string) => void;
}

/** What {@linkcode loadPretrainedWeights} did. */
export interface LoadedWeights {
  /** The source as given. */
  source: string;
  /** How input pixels must be scaled for these weights. */
  inputScaling: InputScaling;
  /** Variables written. */
  loaded: number;
  /** Source tensors left out (its head, unless `includeHead`). */
  ignored: string[];
  /** One line on what was loaded and from where. */
  description: string;
  /** Wall time of reading, checking and writing, in ms. */
  loadMs: number;
}

/**
 * Loads pretrained weights into `model` by Keras variable name. Backbone
 * variables (`Conv1` ... `Conv_1_bn`) must all be found with the right
 * shapes; the head keeps its seeded values unless `includeHead` is set.
 * Nothing is written when anything fails to match.
 *
 * @throws {WeightsMismatchError} listing missing, unexpected and
 *   differently shaped tensors.
 * @throws {WeightsSourceError} for an unknown source or an alpha the
 *   source does not have.
 * @throws {WeightsFormatError} for a malformed or corrupted file.
 * @throws {WeightsFetchError} when the imagenet download fails.
 *
 * @example
 * ```ts
 * const model = buildMobileNetV2({ alpha: 0.35, imageSize: 160 });
 * const { inputScaling } = await loadPretrainedWeights(model, {
 *   source: "bundled",
 *   alpha: 0.35,
 *   imageSize: 160,
 * });
 * ```
 */
export async function loadPretrainedWeights(
  model: LayersModel,
  options: LoadWeightsOptions,
): Promise<LoadedWeights> {
  const startMs = performance.now();
  const { source, includeHead = false, log = () => {} } = options;
  if (source === "none") {
    return {
      source,
      inputScaling: "minus_one_to_one",
      loaded: 0,
      ignored: [],
      description: "seeded random initialisation (no pretrained weights)",
      loadMs: 0,
    };
  }

  const resolved = await readWeightsSource(options);
  const plan = planWeights(model, resolved.weights, { source, includeHead });
  assignWeights(plan);
  if (plan.ignored.length > 0) {
    log(
      `weights ${source}: left out ${plan.ignored.length} head tensors ` +
        `(${plan.ignored.join(", ")})`,
    );
  }
  return {
    source,
    inputScaling: resolved.inputScaling,
    loaded: plan.assignments.length,
    ignored: plan.ignored,
    description: resolved.description,
    loadMs: performance.now() - startMs,
  };
}

/** A source resolved to tensors, before they meet a model. */
export interface ResolvedWeights {
  /** Tensors by Keras name. */
  weights: WeightMap;
  /** How input pixels must be scaled for these weights. */
  inputScaling: InputScaling;
  /** One line on what the weights are and where they were read. */
  description: string;
}

/**
 * Reads a source's tensors without touching a model (`none` has none).
 *
 * @throws as {@linkcode loadPretrainedWeights}, less the mismatch.
 */
export async function readWeightsSource(
  options: LoadWeightsOptions,
): Promise<ResolvedWeights> {
  const { source, alpha } = options;
  switch (source) {
    case "none":
      return {
        weights: new Map(),
        inputScaling: "minus_one_to_one",
        description: "seeded random initialisation (no pretrained weights)",
      };
    case "bundled":
      return await readDptrainSource(bundledWeightsPath(alpha), {
        source,
        alpha,
      });
    case "nsfwjs":
      return await readNsfwjsSource(alpha);
    case "imagenet":
      return await readImagenetSource(options);
    default:
      return await readPathSource(options);
  }
}

/**
 * The manifest of the bundled set for an alpha.
 *
 * @throws {WeightsSourceError} for an alpha without a bundled set.
 */
export function bundledWeightsPath(alpha: number): string {
  if (!(BUNDLED_ALPHAS as readonly number[]).includes(alpha)) {
    throw new WeightsSourceError({
      source: "bundled",
      message:
        `bundled weights exist for alpha ${
          BUNDLED_ALPHAS.join(" and ")
        } only, got ${alpha}; use "imagenet" to download the Keras ` +
        `ImageNet weights for alpha ${alpha}, or "none"`,
    });
  }
  const folder = `mobilenet_v2_${alpha === 1 ? "1.0" : String(alpha)}`;
  return fileURLToPath(
    new URL(
      `../../../assets/weights/${folder}/weights.json`,
      import.meta.url,
    ),
  );
}

async function readDptrainSource(
  manifestPath: string,
  options: { source: string; alpha: number },
): Promise<ResolvedWeights> {
  const { manifest, weights } = await readDptrainWeights(manifestPath);
  if (manifest.alpha !== options.alpha) {
    throw new WeightsSourceError({
      source: options.source,
      message: `${manifestPath} holds alpha ${manifest.alpha} weights, ` +
        `the model has alpha ${options.alpha}`,
    });
  }
  return {
    weights,
    inputScaling: manifest.inputScaling,
    description: `${manifest.description} (${manifestPath})`,
  };
}

async function readNsfwjsSource(alpha: number): Promise<ResolvedWeights> {
  if (alpha !== 1) {
    throw new WeightsSourceError({
      source: "nsfwjs",
      message: `the nsfwjs MobileNetV2 has alpha 1.0, the model ${alpha}`,
    });
  }
  const { dir, weights } = await readNsfwjsModel();
  return {
    weights,
    inputScaling: "zero_to_one",
    description: "nsfwjs MobileNetV2 alpha 1.0 (Keras ImageNet weights " +
      `fine-tuned on 5 NSFW classes, uint8-quantised) from ${dir}`,
  };
}

async function readImagenetSource(
  options: LoadWeightsOptions,
): Promise<ResolvedWeights> {
  const found = await fetchImagenetWeights({
    alpha: options.alpha,
    imageSize: options.imageSize,
    baseUrl: options.imagenetBaseUrl,
    cacheDir: options.cacheDir,
    log: options.log,
  });
  return {
    weights: found.weights,
    inputScaling: "minus_one_to_one",
    description: `Keras ImageNet MobileNetV2 alpha ${options.alpha} ` +
      `trained at ${found.trainedImageSize} px from ${found.url}` +
      (found.fromCache ? ` (cached at ${found.cachedPath})` : ""),
  };
}

async function readPathSource(
  options: LoadWeightsOptions,
): Promise<ResolvedWeights> {
  const { source, alpha } = options;
  const file = resolveWeightsFile(source);
  const json = parseModelJson(await Deno.readTextFile(file), file);

  if (json.format === "dptrain-weights") {
    return await readDptrainSource(file, { source, alpha });
  }
  if (!("weightsManifest" in json)) {
    throw new WeightsFormatError({
      file,
      field: "weightsManifest",
      message: "neither a tfjs layers model.json nor a dptrain weights.json",
    });
  }
  const { weights } = await readTfjsModel(file);
  const declared = declaredScaling(json);
  if (declared === undefined && options.inputScaling === undefined) {
    options.log?.(
      `weights ${file}: no userDefinedMetadata.inputScaling, ` +
        "assuming minus_one_to_one",
    );
  }
  return {
    weights,
    inputScaling: declared ?? options.inputScaling ?? "minus_one_to_one",
    description: `tfjs layers model ${file}`,
  };
}

/** The manifest file a path source names (itself, or inside a folder). */
function resolveWeightsFile(source: string): string {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(source);
  } catch (cause) {
    if (!(cause instanceof Deno.errors.NotFound)) throw cause;
    throw new WeightsSourceError({
      source,
      message: "expected bundled, nsfwjs, imagenet, none, or a path to a " +
        "model.json or weights.json, and no such file exists",
    }, { cause });
  }
  if (info.isFile) return source;

  for (const name of ["weights.json", "model.json"]) {
    const candidate = `${source.replace(/\/+$/, "")}/${name}`;
    try {
      if (Deno.statSync(candidate).isFile) return candidate;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  throw new WeightsSourceError({
    source,
    message: "the folder holds neither weights.json nor model.json",
  });
}

function declaredScaling(
  json: Record<string, unknown>,
): InputScaling | undefined {
  const meta = json.userDefinedMetadata;
  if (typeof meta !== "object" || meta === null) return undefined;
  const scaling = (meta as Record<string, unknown>).inputScaling;
  return isInputScaling(scaling) ? scaling : undefined;
}

/**
 * The input scaling a source's weights expect, known without loading
 * tensors: fixed for the named sources; for a path, read from its
 * manifest (`inputScaling` of a weights.json, `userDefinedMetadata
 * .inputScaling` of a model.json, else minus_one_to_one).
 *
 * @throws {WeightsSourceError} for a path that does not exist.
 */
export function inputScalingOf(source: WeightsSource): InputScaling {
  if (source === "nsfwjs") return "zero_to_one";
  if (source === "bundled" || source === "imagenet" || source === "none") {
    return "minus_one_to_one";
  }
  const file = resolveWeightsFile(source);
  const json = parseModelJson(Deno.readTextFileSync(file), file);
  if (json.format === "dptrain-weights") {
    if (!isInputScaling(json.inputScaling)) {
      throw new WeightsFormatError({
        file,
        field: "inputScaling",
        message: "expected minus_one_to_one or zero_to_one",
      });
    }
    return json.inputScaling;
  }
  return declaredScaling(json) ?? "minus_one_to_one";
}
