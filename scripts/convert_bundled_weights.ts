/**
 * Converts the two ImageNet MobileNetV2 weight sets in ../shared/weights
 * into dptrain's weight format under assets/weights/ (run once; the output
 * is committed). See ../shared/weights/SOURCES.md for their origin and
 * docs/weights.md for the format and name mapping.
 *
 * - alpha 0.35: a Teachable Machine tfjs export; its 260 backbone tensors
 *   are kept and its 2-layer head (`dense_Dense1`, `dense_Dense2`) dropped.
 * - alpha 1.0: the TF-slim checkpoint as one .npy per tensor, renamed to
 *   the Keras names.
 *
 * Every input file is checked against its folder's SHA256SUMS, and each
 * set against the names and shapes of `buildMobileNetV2({ alpha,
 * backboneOnly: true })`.
 *
 * Usage: deno run -A scripts/convert_bundled_weights.ts [--tm-dir DIR]
 *          [--npy-dir DIR] [--out-dir DIR]
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { buildMobileNetV2 } from "../src/model/mobilenet_v2.ts";
import {
  concatSortedBytes,
  type DptrainWeightsInfo,
  isBackboneWeightName,
  planWeights,
  readDptrainWeights,
  sha256Hex,
  type WeightMap,
  writeDptrainWeights,
} from "../src/model/weights/mod.ts";
import { parseNpy } from "../src/model/weights/npy.ts";
import { readTfjsModel } from "../src/model/weights/tfjs_manifest.ts";
import { tfSlimToKerasName } from "../src/model/weights/tfslim_names.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * SHA-256 of the 260 backbone tensors sorted by name and concatenated,
 * identical in five Teachable Machine exports (SOURCES.md).
 */
const TM_BACKBONE_SHA256 =
  "ee5b607dd0e96d06e0583fad110737beab97a838a7e42e85b3af7ed1a05ff0d6";

/** The Teachable Machine head, trained on someone's own photos. */
const TM_HEAD_LAYERS = ["dense_Dense1", "dense_Dense2"];

const BACKBONE_TENSORS = 260;

const HELP = `Convert the bundled ImageNet MobileNetV2 weights.

Usage: deno run -A scripts/convert_bundled_weights.ts [options]

Options:
  --tm-dir DIR   Teachable Machine export, alpha 0.35
                 (default ../shared/weights/tm-mobilenet_v2_0.35_224-...)
  --npy-dir DIR  TF-slim .npy tensors, alpha 1.0
                 (default ../shared/weights/tfslim-mobilenet_v2_1.0_224-...)
  --out-dir DIR  output root (default assets/weights)
  --help         show this text
`;

const LICENSE = "Apache-2.0 (Google's MobileNetV2 ImageNet weights, " +
  "released with tensorflow/models; see NOTICE)";

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      "tm-dir": {
        type: "string",
        default: `${ROOT}../shared/weights/` +
          "tm-mobilenet_v2_0.35_224-imagenet-backbone-tfjs-layers",
      },
      "npy-dir": {
        type: "string",
        default: `${ROOT}../shared/weights/` +
          "tfslim-mobilenet_v2_1.0_224-imagenet-no_top-npy",
      },
      "out-dir": { type: "string", default: `${ROOT}assets/weights` },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  await tf.setBackend("cpu");

  const tmDir = values["tm-dir"];
  const tmSums = await verifySha256Sums(tmDir);
  const tm = await convertTeachableMachine(tmDir);
  await checkAndWrite(tm, {
    alpha: 0.35,
    outDir: `${values["out-dir"]}/mobilenet_v2_0.35`,
    info: {
      alpha: 0.35,
      trainedImageSize: 224,
      inputScaling: "minus_one_to_one",
      description: "Keras MobileNetV2 alpha 0.35 ImageNet no-top backbone " +
        "(keras.applications weights at 224 px, the Teachable Machine " +
        "base), taken from a Teachable Machine export whose 2-layer head " +
        "was dropped",
      origin: "GitHub Elyas-Yar/TM @ 253df4e85b6f45662ea228846d6e42c1c647e6b6" +
        ", tm-my-image-model/model.json (sha256 " +
        `${tmSums.get("model.json")}) and weights.bin (sha256 ` +
        `${tmSums.get("weights.bin")}); dense_Dense1/* and dense_Dense2/* ` +
        "dropped; the backbone bytes are identical in five independent " +
        "Teachable Machine exports (sorted-name sha256 " +
        `${TM_BACKBONE_SHA256}), whose base is https://storage.` +
        "googleapis.com/teachable-machine-models/mobilenet_v2_weights_tf_" +
        "dim_ordering_tf_kernels_0.35_224_no_top/model.json",
      license: LICENSE,
    },
  });

  const npyDir = values["npy-dir"];
  const npySums = await verifySha256Sums(npyDir);
  const slim = await convertTfSlim(npyDir, [...npySums.keys()]);
  const listSha256 = await sha256Hex(
    await Deno.readFile(`${npyDir}/SHA256SUMS`),
  );
  await checkAndWrite(slim, {
    alpha: 1.0,
    outDir: `${values["out-dir"]}/mobilenet_v2_1.0`,
    info: {
      alpha: 1.0,
      trainedImageSize: 224,
      inputScaling: "minus_one_to_one",
      description: "MobileNetV2 alpha 1.0 ImageNet no-top backbone from " +
        "the TF-slim checkpoint mobilenet_v2_1.0_224.ckpt, renamed to " +
        "Keras names; the same network and training as Keras's 1.0 " +
        "release, not byte-identical to it",
      origin: "GitHub JonathanCMitchell/mobilenet_v2_keras @ " +
        "8ab6f54432a37061766a94cf0388908e72cb12cb, weights/*.npy " +
        `(260 files; sha256 of their SHA256SUMS list ${listSha256})`,
      license: LICENSE,
    },
  });
}

/**
 * Checks every file listed in `dir/SHA256SUMS`; returns name -> hash.
 */
async function verifySha256Sums(dir: string): Promise<Map<string, string>> {
  const sums = new Map<string, string>();
  const text = await Deno.readTextFile(`${dir}/SHA256SUMS`);
  for (const line of text.split("\n").filter((l) => l.trim() !== "")) {
    const match = /^([0-9a-f]{64}) [ *]?(.+)$/.exec(line);
    if (match === null) {
      throw new Error(`${dir}/SHA256SUMS: cannot parse line "${line}"`);
    }
    const actual = await sha256Hex(await Deno.readFile(`${dir}/${match[2]}`));
    if (actual !== match[1]) {
      throw new Error(
        `${dir}/${match[2]}: sha256 ${actual}, SHA256SUMS says ${match[1]}`,
      );
    }
    sums.set(match[2], match[1]);
  }
  console.log(`verified ${sums.size} files against ${dir}/SHA256SUMS`);
  return sums;
}

async function convertTeachableMachine(dir: string): Promise<WeightMap> {
  const { weights } = await readTfjsModel(`${dir}/model.json`);
  const backbone: WeightMap = new Map();
  for (const [name, tensor] of weights) {
    const layer = name.slice(0, name.indexOf("/"));
    if (TM_HEAD_LAYERS.includes(layer)) continue;
    if (!isBackboneWeightName(name)) {
      throw new Error(`${dir}/model.json: unexpected tensor "${name}"`);
    }
    backbone.set(name, tensor);
  }

  const sha256 = await sha256Hex(concatSortedBytes(backbone));
  if (sha256 !== TM_BACKBONE_SHA256) {
    throw new Error(
      `${dir}: backbone hashes to ${sha256}, SOURCES.md says ` +
        TM_BACKBONE_SHA256,
    );
  }
  console.log(
    `alpha 0.35: ${backbone.size} of ${weights.size} tensors kept, ` +
      `backbone sha256 matches SOURCES.md`,
  );
  return backbone;
}

async function convertTfSlim(
  dir: string,
  listed: string[],
): Promise<WeightMap> {
  const weights: WeightMap = new Map();
  const files = listed.filter((f) => f.endsWith(".npy")).sort();
  for (const file of files) {
    const stem = file.slice(0, -".npy".length);
    const name = tfSlimToKerasName(stem);
    if (name === undefined) {
      throw new Error(`${dir}/${file}: no Keras name for "${stem}"`);
    }
    if (weights.has(name)) {
      throw new Error(`${dir}/${file}: "${name}" mapped twice`);
    }
    weights.set(name, parseNpy(await Deno.readFile(`${dir}/${file}`), file));
  }
  console.log(`alpha 1.0: ${weights.size} .npy files renamed`);
  return weights;
}

async function checkAndWrite(
  weights: WeightMap,
  options: { alpha: 0.35 | 1.0; outDir: string; info: DptrainWeightsInfo },
): Promise<void> {
  const { alpha, outDir, info } = options;
  const model = buildMobileNetV2({ alpha, backboneOnly: true });
  const plan = planWeights(model, weights, {
    source: `converted alpha ${alpha}`,
  });
  if (
    plan.assignments.length !== BACKBONE_TENSORS ||
    model.weights.length !== BACKBONE_TENSORS || plan.ignored.length > 0
  ) {
    throw new Error(
      `alpha ${alpha}: ${plan.assignments.length} tensors matched, ` +
        `${plan.ignored.length} left over, expected ${BACKBONE_TENSORS}`,
    );
  }
  model.dispose();

  const manifest = await writeDptrainWeights(outDir, { weights, info });
  const reread = await readDptrainWeights(`${outDir}/weights.json`);
  const same = await sha256Hex(concatSortedBytes(reread.weights)) ===
    await sha256Hex(concatSortedBytes(weights));
  if (!same) throw new Error(`${outDir}: re-read weights differ`);
  console.log(
    `wrote ${outDir}: ${manifest.tensors.length} tensors, ` +
      `${manifest.weightsBytes} bytes, sha256 ${manifest.sha256}`,
  );
}

if (import.meta.main) {
  await main();
}
