/**
 * Private helpers of `FlatAdamW`: reading a saved state, recognising the
 * kernel's own views, describing a bad argument.
 *
 * @module
 */
import { OptimizerStateError } from "./errors.ts";
import type { OptimizerState } from "./types.ts";

/** One variable's saved moments and update count. */
export interface SavedEntry {
  m: Float32Array;
  v: Float32Array;
  count: number;
}

/** Groups a state's moments by variable and checks their form. */
export function readState(
  state: OptimizerState,
): Map<string, SavedEntry> {
  const fail = (variable: string, message: string): never => {
    throw new OptimizerStateError(
      `Cannot restore optimizer state: ${message}`,
      { variable },
    );
  };
  if (typeof state !== "object" || state === null) {
    fail("state", "expected an object");
  }
  if (!Number.isInteger(state.step) || state.step < 0) {
    fail("step", `"step" must be an integer >= 0, received ${state.step}`);
  }

  const halves = new Map<string, { m?: Float32Array; v?: Float32Array }>();
  for (const [key, value] of Object.entries(state.moments ?? {})) {
    const match = /^(.+)\/([mv])$/.exec(key);
    if (match === null) {
      fail(key, `moment key "${key}" must end in "/m" or "/v"`);
    }
    if (!(value instanceof Float32Array)) {
      fail(key, `"${key}" must be a Float32Array`);
    }
    const [, name, which] = match!;
    const entry = halves.get(name!) ?? {};
    entry[which as "m" | "v"] = value;
    halves.set(name!, entry);
  }

  const restored = new Map<string, SavedEntry>();
  for (const [name, { m, v }] of halves) {
    if (m === undefined || v === undefined) {
      fail(name, `"${name}" has only one of "/m" and "/v"`);
    }
    if (m!.length !== v!.length) {
      fail(name, `"${name}/m" and "${name}/v" differ in length`);
    }
    const count = state.counts?.[name] ?? state.step;
    if (!Number.isInteger(count) || count < 0) {
      fail(name, `counts["${name}"] must be an integer >= 0`);
    }
    restored.set(name, { m: m!, v: v!, count });
  }
  return restored;
}

/** Whether `array` is exactly `view` (same memory, offset and length). */
export function isSameView(array: Float32Array, view: Float32Array): boolean {
  return array.buffer === view.buffer &&
    array.byteOffset === view.byteOffset && array.length === view.length;
}

export function describeArray(value: unknown): string {
  if (value instanceof Float32Array) return `${value.length} values`;
  if (value === undefined) return "nothing";
  return (value as object)?.constructor?.name ?? typeof value;
}
