/**
 * The Keras ImageNet MobileNetV2 no-top weights in tfjs layers format,
 * downloaded from the bucket Teachable Machine loads them from and cached
 * on disk. The folder name follows Keras's file names with alpha written
 * to 2 decimals, as `@teachablemachine/image` writes it:
 *
 *   <base>/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_<alpha>_<size>_no_top/model.json
 *
 * e.g. `..._0.35_224_no_top/model.json`. Public code references alpha
 * 0.35, 0.50, 0.75 and 1.00 at size 224; whether the other Keras sizes
 * (96, 128, 160, 192) exist there could not be checked offline, so a
 * smaller size is tried first and 224 is the fallback when the server
 * answers 404. Convolution weights do not depend on the input size; only
 * the BatchNorm statistics were fitted at the training size.
 *
 * @module
 */
import { WeightsFetchError, WeightsFormatError } from "./errors.ts";
import {
  concatBytes,
  decodeWeightsGroup,
  groupByteLength,
  mergeInto,
  parseModelJson,
  parseWeightsManifest,
  readTfjsModel,
  type TfjsWeightsGroup,
} from "./tfjs_manifest.ts";
import type { WeightMap } from "./weight_map.ts";

/** Where Teachable Machine loads its MobileNetV2 bases from. */
export const IMAGENET_BASE_URL =
  "https://storage.googleapis.com/teachable-machine-models";

/** Default cache folder, relative to the working directory. */
export const DEFAULT_WEIGHTS_CACHE_DIR = ".cache/dptrain/weights";

/** Input sizes Keras published MobileNetV2 ImageNet weights for. */
export const KERAS_IMAGENET_SIZES = [96, 128, 160, 192, 224] as const;

// TODO(#2): confirm online which folders exist; only 0.35_224 is known to
// be loaded by public code, and one app spells alpha 1 as "1.0", not "1.00".
/** The bucket folder of one alpha and training size. */
export function imagenetFolderName(
  options: { alpha: number; trainedImageSize: number },
): string {
  const { alpha, trainedImageSize } = options;
  return "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_" +
    `${alpha.toFixed(2)}_${trainedImageSize}_no_top`;
}

/**
 * Training sizes to try for an input size, best first: the input size
 * itself when Keras published it, then 224.
 */
export function imagenetCandidateSizes(imageSize: number): number[] {
  const exact = (KERAS_IMAGENET_SIZES as readonly number[]).includes(
    imageSize,
  );
  return exact && imageSize !== 224 ? [imageSize, 224] : [224];
}

/** Options of {@linkcode fetchImagenetWeights}. */
export interface FetchImagenetOptions {
  /** Width multiplier. */
  alpha: number;
  /** Input size of the model being loaded, in pixels. */
  imageSize: number;
  /** Bucket URL the folders sit under. @default IMAGENET_BASE_URL */
  baseUrl?: string;
  /** Cache folder. @default DEFAULT_WEIGHTS_CACHE_DIR */
  cacheDir?: string;
  /** Progress lines (download, cache hit, fallback). */
  log?: (message: string) => void;
}

/** What {@linkcode fetchImagenetWeights} found. */
export interface ImagenetWeights {
  /** The model.json URL the weights came from. */
  url: string;
  /** The cached model.json on disk. */
  cachedPath: string;
  /** True when no request was made. */
  fromCache: boolean;
  /** The training size of the folder used. */
  trainedImageSize: number;
  /** Tensors by Keras name. */
  weights: WeightMap;
}

/**
 * Returns the ImageNet weights for an alpha and input size, from the
 * cache when a valid copy is there, otherwise downloaded (model.json and
 * every shard, sizes checked against the manifest) and then cached.
 *
 * @throws {WeightsFetchError} for a network error, an HTTP error other
 *   than a 404 with a fallback left, or a truncated shard.
 * @throws {WeightsFormatError} for a malformed model.json.
 */
export async function fetchImagenetWeights(
  options: FetchImagenetOptions,
): Promise<ImagenetWeights> {
  const {
    alpha,
    imageSize,
    baseUrl = IMAGENET_BASE_URL,
    cacheDir = DEFAULT_WEIGHTS_CACHE_DIR,
    log = () => {},
  } = options;
  const sizes = imagenetCandidateSizes(imageSize);
  const folderOf = (size: number) =>
    imagenetFolderName({ alpha, trainedImageSize: size });
  const urlOf = (size: number) =>
    `${baseUrl.replace(/\/+$/, "")}/${folderOf(size)}/model.json`;
  const cachePathOf = (size: number) =>
    `${cacheDir}/imagenet/${folderOf(size)}/model.json`;

  for (const size of sizes) {
    const cached = await readCache(cachePathOf(size), log);
    if (cached === undefined) continue;
    log(`imagenet weights: cache hit ${cachePathOf(size)}`);
    return {
      url: urlOf(size),
      cachedPath: cachePathOf(size),
      fromCache: true,
      trainedImageSize: size,
      weights: cached,
    };
  }

  for (const [i, size] of sizes.entries()) {
    const url = urlOf(size);
    const isLast = i === sizes.length - 1;
    log(`imagenet weights: downloading ${url}`);
    const download = await downloadModel(url, { allowNotFound: !isLast });
    if (download === undefined) {
      log(`imagenet weights: ${url} not found, trying ${sizes[i + 1]} px`);
      continue;
    }
    await writeCache(cachePathOf(size), download);
    return {
      url,
      cachedPath: cachePathOf(size),
      fromCache: false,
      trainedImageSize: size,
      weights: download.weights,
    };
  }
  // Unreachable: the last size either returns or throws.
  throw new WeightsFetchError({ url: urlOf(224), message: "not found" });
}

/** A valid cached copy, or undefined (absent or damaged: refetch). */
async function readCache(
  modelJsonPath: string,
  log: (message: string) => void,
): Promise<WeightMap | undefined> {
  try {
    return (await readTfjsModel(modelJsonPath)).weights;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    if (error instanceof WeightsFormatError) {
      log(`imagenet weights: ignoring damaged cache: ${error.message}`);
      return undefined;
    }
    throw error;
  }
}

interface Download {
  modelJsonText: string;
  groups: TfjsWeightsGroup[];
  shards: Uint8Array[][];
  weights: WeightMap;
}

async function downloadModel(
  url: string,
  options: { allowNotFound: boolean },
): Promise<Download | undefined> {
  const response = await request(url);
  if (response.status === 404 && options.allowNotFound) {
    await response.body?.cancel();
    return undefined;
  }
  const modelJsonText = new TextDecoder().decode(
    await readBody(url, response),
  );
  const modelJson = parseModelJson(modelJsonText, url);
  const groups = parseWeightsManifest(modelJson.weightsManifest, url);
  const weights: WeightMap = new Map();
  const shards: Uint8Array[][] = [];

  for (const group of groups) {
    const urls = group.paths.map((p) => new URL(p, url).href);
    const groupShards: Uint8Array[] = [];
    for (const shardUrl of urls) {
      groupShards.push(await readBody(shardUrl, await request(shardUrl)));
    }
    const bytes = concatBytes(groupShards);
    const expected = groupByteLength(group);
    if (bytes.byteLength !== expected) {
      throw new WeightsFetchError({
        url: urls.join(", "),
        message: `shards hold ${bytes.byteLength} bytes, the manifest ` +
          `needs ${expected} (truncated or wrong file)`,
      });
    }
    mergeInto(weights, decodeWeightsGroup(group, { bytes, file: url }), url);
    shards.push(groupShards);
  }
  return { modelJsonText, groups, shards, weights };
}

async function request(url: string): Promise<Response> {
  try {
    return await fetch(url);
  } catch (cause) {
    throw new WeightsFetchError(
      { url, message: `request failed: ${(cause as Error).message}` },
      { cause },
    );
  }
}

async function readBody(url: string, response: Response): Promise<Uint8Array> {
  if (!response.ok) {
    await response.body?.cancel();
    throw new WeightsFetchError({
      url,
      status: response.status,
      message: `HTTP ${response.status} ${response.statusText}`.trim(),
    });
  }
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await response.arrayBuffer());
  } catch (cause) {
    throw new WeightsFetchError(
      { url, message: `body cut off: ${(cause as Error).message}` },
      { cause },
    );
  }
  const declared = response.headers.get("content-length");
  if (declared !== null && Number(declared) !== bytes.byteLength) {
    throw new WeightsFetchError({
      url,
      message: `got ${bytes.byteLength} bytes, Content-Length says ${declared}`,
    });
  }
  return bytes;
}

/**
 * Writes model.json and shards into a fresh folder, then renames it into
 * place: an interrupted download never leaves a half-written cache.
 */
async function writeCache(
  modelJsonPath: string,
  download: Download,
): Promise<void> {
  const dir = modelJsonPath.slice(0, modelJsonPath.lastIndexOf("/"));
  const tmp = `${dir}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(tmp, { recursive: true });

  try {
    for (const [g, group] of download.groups.entries()) {
      for (const [s, path] of group.paths.entries()) {
        const file = `${tmp}/${path}`;
        await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), {
          recursive: true,
        });
        await Deno.writeFile(file, download.shards[g][s]);
      }
    }
    await Deno.writeTextFile(`${tmp}/model.json`, download.modelJsonText);
    await Deno.remove(dir, { recursive: true }).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
    await Deno.rename(tmp, dir);
  } catch (error) {
    // The download's own error is the one to report; a leftover temporary
    // folder is harmless and never read.
    await Deno.remove(tmp, { recursive: true }).catch(() => undefined);
    throw error;
  }
}
