/**
 * The variable layout: the fixed order in which a model's variables travel
 * as one flat float32 vector between the parameter server and the workers.
 *
 * Trainable variables come first, in the model's order, then the BatchNorm
 * moving statistics. A weights message carries values for all of them; a
 * gradient message carries gradients for the trainable part and the rank's
 * updated moving statistics for the rest, so both have the same length.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type * as tfl from "@tensorflow/tfjs-layers";
import type { LayersModel } from "../_tfjs_types.ts";

/** What part of the state a variable is. */
export type VariableRole = "trainable" | "bn_stat";

/** One variable's place in the flat vector. */
export interface LayoutEntry {
  /** Original (Keras) name, e.g. `block_1_expand/kernel`. */
  name: string;
  /** Variable shape; `[]` for a scalar. */
  shape: number[];
  /** Number of values. */
  size: number;
  /** Offset in floats from the start of the flat vector. */
  offset: number;
  /**
   * `trainable` (sent as gradients) or `bn_stat` (a BatchNorm moving
   * statistic).
   */
  role: VariableRole;
}

/** A model's variables in transport order. */
export interface VariableLayout {
  /** Every variable, trainable ones first, in flat-vector order. */
  entries: LayoutEntry[];
  /** Length of the flat vector in floats. */
  totalSize: number;
  /** Floats in the trainable part, which starts at offset 0. */
  trainableSize: number;
}

/** A layout that does not fit the model or vector it is used with. */
export class LayoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LayoutError";
  }
}

/** Variables whose values come from the forward pass, not from gradients. */
function isMovingStatistic(name: string): boolean {
  return name.endsWith("/moving_mean") || name.endsWith("/moving_variance");
}

/** The layout of a model's variables. */
export function layoutOf(model: LayersModel): VariableLayout {
  const trainable = model.weights.filter((w) =>
    !isMovingStatistic(w.originalName)
  );
  const stats = model.weights.filter((w) => isMovingStatistic(w.originalName));
  const entries: LayoutEntry[] = [];
  let offset = 0;

  for (const [role, list] of [["trainable", trainable], ["bn_stat", stats]]) {
    for (const w of list as tfl.LayerVariable[]) {
      const shape = w.shape as number[];
      const size = shape.reduce((a, b) => a * b, 1);
      entries.push(
        { name: w.originalName, shape, size, offset, role } as LayoutEntry,
      );
      offset += size;
    }
  }

  const seen = new Set<string>();
  for (const e of entries) {
    if (seen.has(e.name)) {
      throw new LayoutError(`variable name ${e.name} appears twice`);
    }
    seen.add(e.name);
  }

  const trainableSize = entries
    .filter((e) => e.role === "trainable")
    .reduce((sum, e) => sum + e.size, 0);
  return { entries, totalSize: offset, trainableSize };
}

/** `name:shape` lines, the layout part of a job fingerprint. */
export function describeLayout(layout: VariableLayout): string[] {
  return layout.entries.map((e) => `${e.name}:${e.shape.join("x")}`);
}

function variablesByName(
  model: LayersModel,
): Map<string, tfl.LayerVariable> {
  return new Map(model.weights.map((w) => [w.originalName, w]));
}

/** Copies a model's current variable values into one flat vector. */
export function readFlat(
  model: LayersModel,
  layout: VariableLayout,
): Float32Array {
  const flat = new Float32Array(layout.totalSize);
  const byName = variablesByName(model);

  for (const e of layout.entries) {
    const v = byName.get(e.name);
    if (!v) throw new LayoutError(`model has no variable ${e.name}`);
    flat.set(v.read().dataSync() as Float32Array, e.offset);
  }
  return flat;
}

/** Assigns a flat vector's values to a model's variables. */
export function writeFlat(
  model: LayersModel,
  layout: VariableLayout,
  flat: Float32Array,
): void {
  if (flat.length !== layout.totalSize) {
    throw new LayoutError(
      `flat vector has ${flat.length} values, layout needs ${layout.totalSize}`,
    );
  }
  const byName = variablesByName(model);

  for (const e of layout.entries) {
    const v = byName.get(e.name);
    if (!v) throw new LayoutError(`model has no variable ${e.name}`);
    const values = flat.subarray(e.offset, e.offset + e.size);
    tf.tidy(() => {
      v.write(tf.tensor(values, e.shape, "float32"));
    });
  }
}

/** The views of a flat vector, one per layout entry (no copies). */
export function splitFlat(
  layout: VariableLayout,
  flat: Float32Array,
  role?: VariableRole,
): Float32Array[] {
  return layout.entries
    .filter((e) => role === undefined || e.role === role)
    .map((e) => flat.subarray(e.offset, e.offset + e.size));
}
