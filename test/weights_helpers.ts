/**
 * Shared pieces of the weight tests: real flower photos as model input,
 * pooled features, and temporary folders.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import * as tfl from "@tensorflow/tfjs-layers";
import jpeg from "jpeg-js";
import { fileURLToPath } from "node:url";
import {
  type InputScaling,
  inputScalingRange,
} from "../src/model/weights/input_scaling.ts";

/** The project root, with a trailing slash. */
export const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Flower photos used as fixed inputs: two classes, two photos each. */
export const PHOTOS = {
  daisy: [
    "assets/data/flowers5/val/daisy/10437929963_bc13eebe0c.jpg",
    "assets/data/flowers5/val/daisy/11124324295_503f3a0804.jpg",
  ],
  sunflowers: [
    "assets/data/flowers5/val/sunflowers/10386525005_fd0b7d6c55_n.jpg",
    "assets/data/flowers5/val/sunflowers/12282924083_fb80aa17d4_n.jpg",
  ],
};

/**
 * Decodes JPEG photos, resizes them bilinearly to `size` and scales the
 * pixels as `scaling` says: a [n, size, size, 3] batch.
 */
export function photoBatch(
  paths: string[],
  options: { size: number; scaling: InputScaling },
): tf.Tensor4D {
  const { min, max } = inputScalingRange(options.scaling);
  return tf.tidy(() => {
    const images = paths.map((path) => {
      const decoded = jpeg.decode(Deno.readFileSync(`${ROOT}${path}`), {
        useTArray: true,
        formatAsRGBA: false,
      });
      const rgb = tf.tensor3d(
        decoded.data,
        [decoded.height, decoded.width, 3],
        "float32",
      );
      return tf.image.resizeBilinear(rgb, [options.size, options.size]);
    });
    const batch = tf.stack(images);
    return tf.add(tf.mul(tf.div(batch, 255), max - min), min) as tf.Tensor4D;
  });
}

/**
 * The outputs of the named layers for a batch, from one forward pass: per
 * layer, one flattened row per example.
 */
export function layerOutputs(
  model: tfl.LayersModel,
  options: { layerNames: string[]; input: tf.Tensor },
): Float32Array[][] {
  const truncated = tfl.model({
    inputs: model.inputs,
    outputs: options.layerNames.map((name) =>
      model.getLayer(name).output as tfl.SymbolicTensor
    ),
  });
  const perLayer = tf.tidy(() => {
    const outputs = [truncated.predict(options.input)].flat() as tf.Tensor[];
    return outputs.map((output) =>
      tf.reshape(output, [output.shape[0], -1]).arraySync() as number[][]
    );
  });
  return perLayer.map((rows) => rows.map((row) => Float32Array.from(row)));
}

/** The output of the model's layer `layerName` for a batch. */
export function layerOutput(
  model: tfl.LayersModel,
  options: { layerName: string; input: tf.Tensor },
): Float32Array[] {
  return layerOutputs(model, {
    layerNames: [options.layerName],
    input: options.input,
  })[0];
}

/** Largest absolute difference of two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) {
    throw new RangeError(`lengths differ: ${a.length} and ${b.length}`);
  }
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** A fresh temporary folder, removed by the returned dispose function. */
export async function tempDir(): Promise<
  { path: string; [Symbol.asyncDispose]: () => Promise<void> }
> {
  const path = await Deno.makeTempDir({ prefix: "dptrain_weights_" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}
