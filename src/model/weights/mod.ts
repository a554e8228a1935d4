/**
 * Pretrained MobileNetV2 weights: sources (bundled, nsfwjs, imagenet, a
 * path, none), the dptrain weight format, and the readers behind them.
 * Most callers need only {@linkcode loadPretrainedWeights}. See
 * docs/weights.md.
 *
 * @module
 */
export {
  BUNDLED_ALPHAS,
  bundledWeightsPath,
  inputScalingOf,
  type LoadedWeights,
  loadPretrainedWeights,
  type LoadWeightsOptions,
  readWeightsSource,
  type ResolvedWeights,
  type WeightsSource,
} from "./load.ts";
export {
  INPUT_SCALINGS,
  type InputScaling,
  inputScalingRange,
  isInputScaling,
} from "./input_scaling.ts";
export {
  type ShapeMismatch,
  WeightsFetchError,
  WeightsFormatError,
  WeightsMismatchError,
  WeightsSourceError,
} from "./errors.ts";
export {
  assignWeights,
  isBackboneWeightName,
  planWeights,
  readModelWeights,
  type WeightsPlan,
} from "./apply.ts";
export {
  type DptrainTensorEntry,
  type DptrainWeightsInfo,
  type DptrainWeightsManifest,
  encodeDptrainWeights,
  readDptrainWeights,
  writeDptrainWeights,
} from "./dptrain_format.ts";
export {
  DEFAULT_WEIGHTS_CACHE_DIR,
  fetchImagenetWeights,
  IMAGENET_BASE_URL,
  imagenetFolderName,
} from "./imagenet.ts";
export { NSFWJS_CLASSES, readNsfwjsModel } from "./nsfwjs.ts";
export {
  concatSortedBytes,
  sha256Hex,
  type WeightMap,
  type WeightTensor,
} from "./weight_map.ts";
