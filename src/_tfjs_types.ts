/**
 * Local names for the tfjs types that appear in dptrain's public signatures.
 *
 * `deno doc --lint` reports every type from an npm package as a private type
 * (denoland/deno#27364), and re-exporting tfjs's own types would make it lint
 * tfjs's declarations too. Signatures name these aliases instead; the
 * `@internal` tag tells the linter that they are not dptrain's to document.
 *
 * @module
 */
import type * as tf from "@tensorflow/tfjs-core";
import type * as tfl from "@tensorflow/tfjs-layers";

/**
 * A tfjs-layers model (`@tensorflow/tfjs-layers` `LayersModel`).
 *
 * @internal
 */
export type LayersModel = tfl.LayersModel;

/**
 * A tfjs tensor (`@tensorflow/tfjs-core` `Tensor`).
 *
 * @internal
 */
export type Tensor = tf.Tensor;

/**
 * Gradients or weights keyed by variable name (`tf.NamedTensorMap`).
 *
 * @internal
 */
export type NamedTensorMap = tf.NamedTensorMap;

/**
 * The JSON-like object tfjs serializes a class's config to
 * (`tf.serialization.ConfigDict`).
 *
 * @internal
 */
export type ConfigDict = tf.serialization.ConfigDict;
