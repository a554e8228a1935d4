/**
 * Raw optimizer sections of the named presets, written as a user would
 * write them in a config file. Kept apart from `presets.ts` so that the
 * parser can expand `preset: "reference"` without an import cycle.
 *
 * @module
 */

/**
 * The reference recipe's multipliers (Practical ML for Computer Vision,
 * ch. 3, MobileNetV2 on five flowers, keras-adamw `lr_multipliers`), in
 * written order. The trailing underscore keeps `block_1_` off `block_10_`.
 * `conv` catches `expanded_conv_*` (block 0) and `Conv` catches the stem
 * (`Conv1`, `bn_Conv1`) and the top (`Conv_1`, `Conv_1_bn`); the head
 * (`flower_*`) matches nothing and keeps 1.0.
 */
export const REFERENCE_MULTIPLIERS: ReadonlyArray<readonly [string, number]> = [
  ["block_1_", 0.008],
  ["block_2_", 0.01],
  ["block_3_", 0.02],
  ["block_4_", 0.03],
  ["block_5_", 0.04],
  ["block_6_", 0.05],
  ["block_7_", 0.06],
  ["block_8_", 0.07],
  ["block_9_", 0.08],
  ["block_10_", 0.09],
  ["block_11_", 0.1],
  ["block_12_", 0.12],
  ["block_13_", 0.14],
  ["block_14_", 0.16],
  ["block_15_", 0.2],
  ["block_16_", 0.36],
  ["conv", 0.2],
  ["Conv", 0.2],
];

/**
 * The reference recipe: keras-adamw convention with no weight decay (the
 * reference run passed no `weight_decays`, so keras-adamw applied none),
 * the multipliers above, and the epoch schedule with `max` scaled by the
 * number of replicas.
 */
export const REFERENCE_SECTION = {
  convention: "keras",
  weightDecay: 0,
  match: "substring",
  multipliers: REFERENCE_MULTIPLIERS.map(([key, multiplier]) => [
    key,
    multiplier,
  ]),
  schedule: {
    kind: "reference",
    start: 1e-5,
    max: 1e-4,
    min: 1e-5,
    rampEpochs: 3,
    sustainEpochs: 0,
    decay: 0.8,
    per: "epoch",
    scaleWithWorkers: true,
  },
} as const;

/** Raw sections by preset name. */
export const PRESET_SECTIONS = { reference: REFERENCE_SECTION } as const;

/** The preset names `parseOptimizerConfig` accepts. */
export type PresetName = keyof typeof PRESET_SECTIONS;
