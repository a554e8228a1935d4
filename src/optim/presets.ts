/**
 * Named optimizer recipes, parsed and ready to use.
 *
 * @module
 */
import {
  PRESET_SECTIONS,
  REFERENCE_MULTIPLIERS,
  REFERENCE_SECTION,
} from "./_preset_sections.ts";
import { parseOptimizerConfig } from "./config.ts";
import type { OptimizerConfig } from "./types.ts";

export { PRESET_SECTIONS, REFERENCE_MULTIPLIERS, REFERENCE_SECTION };

/**
 * Parsed presets. `reference` is the book's flowers recipe: keras-adamw
 * convention, no weight decay, the `block_1_` 0.008 ... `block_16_` 0.36,
 * `conv`/`Conv` 0.2 multipliers (head 1.0), and the epoch schedule 1e-5 ->
 * 1e-4 over 3 epochs then `0.8^k` decay toward 1e-5, `max` times workers.
 */
export const PRESETS: { readonly reference: OptimizerConfig } = {
  reference: deepFreeze(parseOptimizerConfig({ preset: "reference" })),
};

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
