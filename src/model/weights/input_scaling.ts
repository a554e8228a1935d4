/**
 * How pixel values must be scaled before they enter a pretrained network.
 * The Keras ImageNet MobileNetV2 expects [-1, 1]
 * (`keras.applications.mobilenet_v2.preprocess_input`); the nsfwjs model
 * was trained on [0, 1] (it divides by 255 and nothing else).
 *
 * @module
 */

/** Input scalings a weight source can declare. */
export const INPUT_SCALINGS = ["minus_one_to_one", "zero_to_one"] as const;

/**
 * An input scaling: the range 8-bit pixel values map to, linearly.
 * `"minus_one_to_one"` is `x / 127.5 - 1` (Keras MobileNetV2
 * `preprocess_input`), `"zero_to_one"` is `x / 255`.
 */
export type InputScaling = typeof INPUT_SCALINGS[number];

/** True when `value` names an input scaling. */
export function isInputScaling(value: unknown): value is InputScaling {
  return INPUT_SCALINGS.includes(value as InputScaling);
}

/**
 * The range a scaling maps pixel 0 and pixel 255 to: a pixel `p` becomes
 * `min + p / 255 * (max - min)`.
 *
 * @example
 * ```ts
 * inputScalingRange("minus_one_to_one"); // { min: -1, max: 1 }
 * ```
 */
export function inputScalingRange(
  scaling: InputScaling,
): { min: number; max: number } {
  return scaling === "minus_one_to_one"
    ? { min: -1, max: 1 }
    : { min: 0, max: 1 };
}
