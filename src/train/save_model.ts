/**
 * Saves a model in the standard tfjs LayersModel format (`model.json` plus
 * one `weights.bin`), which `tf.loadLayersModel` opens in the browser or in
 * Node, written atomically so a crash never leaves half a model.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { LayersModel } from "../_tfjs_types.ts";
import { writeFileAtomic } from "./atomic_file.ts";

/** Writes `dir/model.json` and `dir/weights.bin`. */
export async function saveLayersModel(
  model: LayersModel,
  dir: string,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });

  await model.save(tf.io.withSaveHandler(async (artifacts) => {
    const weightData = artifacts.weightData === undefined
      ? new ArrayBuffer(0)
      : tf.io.CompositeArrayBuffer.join(artifacts.weightData);
    const manifest = {
      format: "layers-model",
      generatedBy: `TensorFlow.js tfjs-layers v${tf.version_core}`,
      convertedBy: "dptrain",
      modelTopology: artifacts.modelTopology,
      // Set by the caller (e.g. the input scaling); loadLayersModel reads it.
      ...(artifacts.userDefinedMetadata === undefined
        ? {}
        : { userDefinedMetadata: artifacts.userDefinedMetadata }),
      weightsManifest: [{
        paths: ["weights.bin"],
        weights: artifacts.weightSpecs ?? [],
      }],
    };

    await writeFileAtomic(`${dir}/weights.bin`, new Uint8Array(weightData));
    await writeFileAtomic(
      `${dir}/model.json`,
      new TextEncoder().encode(JSON.stringify(manifest)),
    );
    return {
      modelArtifactsInfo: {
        dateSaved: new Date(),
        modelTopologyType: "JSON",
        weightDataBytes: weightData.byteLength,
      },
    };
  }));
}
