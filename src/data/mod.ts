/**
 * dptrain's data pipeline: image decoding, image-folder datasets with an
 * on-disk cache, the counter-based RNG, per-epoch shuffling and rank
 * sharding, batch assembly, and the tf_flowers downloader.
 *
 * @example One worker's batch for one step
 * ```ts ignore
 * import {
 *   loadImageFolder,
 *   makeBatch,
 *   rankBatchPositions,
 *   stepsPerEpoch,
 * } from "./mod.ts";
 *
 * const data = await loadImageFolder("assets/data/flowers5", {
 *   imageSize: 160,
 * });
 * const [seed, workers, perRankBatch] = [1, 2, 8];
 * const steps = stepsPerEpoch({
 *   n: data.train.count,
 *   globalBatch: workers * perRankBatch,
 * });
 * for (let step = 0; step < steps; step++) {
 *   const indices = rankBatchPositions({
 *     n: data.train.count,
 *     seed,
 *     epoch: 0,
 *     step,
 *     rank: 0,
 *     workers,
 *     perRankBatch,
 *   });
 *   const batch = makeBatch(data.train, indices, {
 *     scaling: "minus_one_to_one",
 *     flip: { seed, epoch: 0 },
 *   });
 *   // tf.tensor4d(batch.x, [batch.count, 160, 160, 3]) ...
 * }
 * ```
 *
 * @module
 */

export {
  CounterRng,
  type CounterRngOptions,
  randomFloat,
  type RandomKey,
  randomUint32,
  tagHash,
} from "./rng.ts";
export {
  DECODE_DEFAULTS,
  type DecodedImage,
  decodeImage,
  type DecodeImageOptions,
  DECODER_VERSION,
  ImageDecodeError,
  type RgbImage,
  type SniffedFormat,
  sniffImageFormat,
} from "./decode_image.ts";
export {
  RESIZE_VERSION,
  type ResizeFit,
  type ResizeOptions,
  resizeRgb,
} from "./resize.ts";
export {
  type CorruptPolicy,
  DecodeWorkerError,
  type FolderLayout,
  formatImageFolderEvent,
  IMAGE_FOLDER_DEFAULTS,
  type ImageFolderDataset,
  ImageFolderError,
  type ImageFolderEvent,
  type ImageSplit,
  loadImageFolder,
  type LoadImageFolderOptions,
  type SkippedImage,
} from "./image_folder.ts";
export {
  globalBatchIndices,
  type GlobalBatchOptions,
  globalPositionRange,
  type LastBatchPolicy,
  permutation,
  type PermutationOptions,
  type PositionRange,
  type RankBatchOptions,
  rankBatchPositions,
  rankPositionRange,
  SHUFFLE_TAG,
  stepsPerEpoch,
  type StepsPerEpochOptions,
} from "./sharding.ts";
export {
  type Batch,
  CROP_TAG,
  type CropBox,
  FLIP_TAG,
  type FlipPolicy,
  type ImageSet,
  type InputScaling,
  makeBatch,
  type MakeBatchOptions,
  type RandomCrop,
  randomCropBox,
  type RandomFlip,
  randomFlip,
  type RandomFlipOptions,
} from "./batch.ts";
export {
  extractTar,
  extractTarGz,
  type ExtractTarOptions,
  type ExtractTarResult,
  TarError,
} from "./tar.ts";
export {
  ChecksumMismatchError,
  DownloadError,
  downloadTfFlowers,
  type DownloadTfFlowersOptions,
  TF_FLOWERS_BYTES,
  TF_FLOWERS_SHA256,
  TF_FLOWERS_URL,
  type TfFlowersDownload,
  type TfFlowersEvent,
} from "./tf_flowers.ts";
export { SPLIT_TAG } from "./_list_images.ts";
