/**
 * `meta`: the small map a tensor stream carries on its chunk 0 (step
 * metadata from the parameter server, contribution counts from a worker),
 * its validation and typed reads.
 *
 * @module
 */

import { describeValue, isPlainRecord } from "./_fields.ts";
import { WireError, type WireErrorContext } from "./errors.ts";

/** One value of a {@linkcode WireMeta} map. */
export type WireMetaValue =
  | number
  | string
  | boolean
  | null
  | WireMetaValue[]
  | WireMeta;

/**
 * A msgpack map of finite numbers, strings, booleans, nil, arrays and
 * nested maps. The wire layer checks its shape; the meaning of its keys
 * belongs to the sender and receiver (see docs/wire.md).
 */
export interface WireMeta {
  /** One metadata entry. */
  [key: string]: WireMetaValue;
}

/** Bounds on a `meta` map, so a hostile one costs little to reject. */
export const META_LIMITS = {
  /** Deepest nesting of arrays and maps below `meta` itself (which is 0). */
  depth: 4,
  /** Most keys in one map. */
  keys: 64,
  /** Most values in the whole tree (array items and map values). */
  values: 65_536,
  /** Longest string, in characters. */
  stringChars: 4_096,
} as const;

/** Where a `meta` map being validated came from, for error messages. */
export interface MetaSource extends WireErrorContext {
  /** What the caller is doing: "decode" or "encode". */
  action: "decode" | "encode";
}

/**
 * Checks that `value` is a {@linkcode WireMeta} within
 * {@linkcode META_LIMITS}.
 *
 * @throws {WireError} `non_finite` for a NaN or infinity, `oversized` past
 *   a limit, `bad_field` for any other type; `field` is the path, such as
 *   `"meta.positions.1"`.
 */
export function validateMeta(value: unknown, source: MetaSource): WireMeta {
  const budget = { values: META_LIMITS.values };

  if (!isPlainRecord(value)) {
    failMeta(source, {
      reason: "bad_field",
      path: "meta",
      detail: `must be a map, received ${describeValue(value)}`,
    });
  }
  checkMetaValue(value, { path: "meta", depth: 0, budget, source });
  return value as WireMeta;
}

interface MetaWalk {
  path: string;
  depth: number;
  budget: { values: number };
  source: MetaSource;
}

function checkMetaValue(value: unknown, walk: MetaWalk): void {
  const { path, depth, budget, source } = walk;

  if (--budget.values < 0) {
    failMeta(source, {
      reason: "oversized",
      path,
      detail: `exceeds ${META_LIMITS.values} values in meta`,
    });
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      failMeta(source, {
        reason: "non_finite",
        path,
        detail: `must be finite, received ${value}`,
      });
    }
    return;
  }
  if (typeof value === "string") {
    if (value.length > META_LIMITS.stringChars) {
      failMeta(source, {
        reason: "oversized",
        path,
        detail: `must be at most ${META_LIMITS.stringChars} characters, ` +
          `received ${value.length}`,
      });
    }
    return;
  }
  if (typeof value === "boolean" || value === null) return;

  let children: [string, unknown][];
  if (Array.isArray(value) && value.length > budget.values) {
    failMeta(source, {
      reason: "oversized",
      path,
      detail: `exceeds ${META_LIMITS.values} values in meta`,
    });
  }
  if (Array.isArray(value)) {
    children = value.map((child, index) => [String(index), child]);
  } else if (isPlainRecord(value)) {
    children = Object.entries(value);
  } else {
    failMeta(source, {
      reason: "bad_field",
      path,
      detail: `must be a number, string, boolean, nil, array or map, ` +
        `received ${describeValue(value)}`,
    });
  }

  if (depth > META_LIMITS.depth) {
    failMeta(source, {
      reason: "oversized",
      path,
      detail: `nests deeper than ${META_LIMITS.depth} levels`,
    });
  }
  if (!Array.isArray(value) && children.length > META_LIMITS.keys) {
    failMeta(source, {
      reason: "oversized",
      path,
      detail: `must have at most ${META_LIMITS.keys} keys`,
    });
  }

  for (const [key, child] of children) {
    checkMetaValue(child, {
      path: `${path}.${key}`,
      depth: depth + 1,
      budget,
      source,
    });
  }
}

function failMeta(
  source: MetaSource,
  options: {
    reason: "bad_field" | "non_finite" | "oversized";
    path: string;
    detail: string;
  },
): never {
  const { action, ...context } = source;
  throw new WireError({
    reason: options.reason,
    field: options.path,
    message: `Cannot ${action} ${context.kind ?? "message"}: ` +
      `field "${options.path}" ${options.detail}`,
    ...context,
  });
}

/** Options of {@linkcode metaNumber} and {@linkcode metaNumberArray}. */
export interface MetaNumberOptions {
  /** Require integers. @default false */
  integer?: boolean;
  /** Smallest value allowed. @default -Infinity */
  min?: number;
  /** Largest value allowed. @default Infinity */
  max?: number;
}

/**
 * Reads a number from a validated `meta` map.
 *
 * @throws {WireError} `bad_field` (field `meta.<key>`) when it is missing,
 *   not a number, not an integer when asked, or out of range.
 *
 * @example Step metadata on a weights stream
 * ```ts
 * import { metaNumber } from "./meta.ts";
 *
 * const meta = { epoch: 2, lr: 1e-4 };
 * console.assert(metaNumber(meta, "epoch", { integer: true, min: 0 }) === 2);
 * ```
 */
export function metaNumber(
  meta: WireMeta,
  key: string,
  options: MetaNumberOptions = {},
): number {
  const value = Object.hasOwn(meta, key) ? meta[key] : undefined;
  checkMetaNumber(value, `meta.${key}`, options);
  return value as number;
}

/**
 * Reads an array of numbers from a validated `meta` map.
 *
 * @throws {WireError} `bad_field` (field `meta.<key>` or `meta.<key>.<i>`)
 *   when it is missing, not an array, or holds a value out of bounds.
 */
export function metaNumberArray(
  meta: WireMeta,
  key: string,
  options: MetaNumberOptions = {},
): number[] {
  const value = Object.hasOwn(meta, key) ? meta[key] : undefined;

  if (!Array.isArray(value)) {
    throw metaReadError(
      `meta.${key}`,
      `must be an array, received ` +
        describeValue(value),
    );
  }
  value.forEach((item, index) => {
    checkMetaNumber(item, `meta.${key}.${index}`, options);
  });
  return value as number[];
}

/**
 * Reads a string from a validated `meta` map.
 *
 * @throws {WireError} `bad_field` (field `meta.<key>`) when it is missing or
 *   not a string.
 */
export function metaString(meta: WireMeta, key: string): string {
  const value = Object.hasOwn(meta, key) ? meta[key] : undefined;

  if (typeof value !== "string") {
    throw metaReadError(
      `meta.${key}`,
      `must be a string, received ` +
        describeValue(value),
    );
  }
  return value;
}

function checkMetaNumber(
  value: unknown,
  field: string,
  options: MetaNumberOptions,
): void {
  const { integer = false, min = -Infinity, max = Infinity } = options;

  if (typeof value !== "number" || (integer && !Number.isInteger(value))) {
    const expected = integer ? "an integer" : "a number";
    throw metaReadError(
      field,
      `must be ${expected}, received ` +
        describeValue(value),
    );
  }
  if (value < min || value > max) {
    throw metaReadError(
      field,
      `must be in [${min}, ${max}], received ${value}`,
    );
  }
}

function metaReadError(field: string, detail: string): WireError {
  return new WireError({
    reason: "bad_field",
    field,
    message: `Cannot read meta: field "${field}" ${detail}`,
  });
}
