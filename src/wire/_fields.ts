/**
 * Typed reads of one decoded msgpack map, each failing with a `WireError`
 * that names the field, the limit and the value received. Private to the
 * wire codec.
 *
 * @module
 */

import {
  WireError,
  type WireErrorContext,
  type WireErrorReason,
} from "./errors.ts";

/** Options of {@linkcode FieldReader.string}. */
export interface StringFieldOptions {
  /** Fewest characters allowed. @default 0 */
  minChars?: number;
  /** Most characters allowed; longer is `oversized`. */
  maxChars: number;
  /** A pattern the whole string must match. */
  pattern?: RegExp;
}

/** Options of {@linkcode FieldReader.integer}. */
export interface IntegerFieldOptions {
  /** Smallest value allowed. */
  min: number;
  /** Largest value allowed. */
  max: number;
  /** The reason when the value is out of range. @default "bad_field" */
  rangeReason?: WireErrorReason;
}

/** Whether `value` is a map decoded as a plain object (not a Date, Map...). */
export function isPlainRecord(
  value: unknown,
): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** Renders a received value for an error message, short and unambiguous. */
export function describeValue(value: unknown): string {
  if (typeof value === "string") {
    const shown = value.length > 40 ? `${value.slice(0, 40)}...` : value;
    return JSON.stringify(shown);
  }
  if (typeof value === "number" || typeof value === "boolean") {
    return String(value);
  }
  if (typeof value === "bigint") return `${value}n`;
  if (value === null || value === undefined) return String(value);
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return `a ${value.constructor?.name ?? "null-prototype object"}`;
}

/**
 * Reads the fields of one message, accumulating what it learns (kind, run,
 * step, rank) so that every error carries it.
 */
export class FieldReader {
  /** Known facts about the message so far, copied into every error. */
  readonly context: WireErrorContext = {};
  readonly #record: Record<string, unknown>;
  readonly #action: string;

  /**
   * @param record The decoded map.
   * @param action What the caller is doing, for messages: "decode" or
   *   "encode".
   */
  constructor(record: Record<string, unknown>, action: "decode" | "encode") {
    this.#record = record;
    this.#action = action;
  }

  /** Throws a `WireError` for `field` with the context gathered so far. */
  fail(
    reason: WireErrorReason,
    options: { field?: string; detail: string; cause?: unknown },
  ): never {
    const what = this.context.kind ?? "message";
    const where = options.field === undefined
      ? ""
      : `: field "${options.field}"`;
    throw new WireError({
      reason,
      field: options.field,
      message: `Cannot ${this.#action} ${what}${where} ${options.detail}` +
        this.#describeContext(),
      cause: options.cause,
      ...this.context,
    });
  }

  /**
   * Copies the claimed `run`, `step` and `rank` into the context before
   * they are validated, when their types fit, so that an error about any
   * field names who sent the message.
   */
  peekContext(): void {
    const { run, step, rank } = this.#record;

    if (typeof run === "string") this.context.run = run.slice(0, 64);
    if (Number.isSafeInteger(step)) this.context.step = step as number;
    if (Number.isSafeInteger(rank)) this.context.rank = rank as number;
  }

  /** Whether the map has `field` (even with a nil value). */
  has(field: string): boolean {
    return Object.hasOwn(this.#record, field);
  }

  /** The raw value of `field`; `undefined` when absent. */
  raw(field: string): unknown {
    return this.has(field) ? this.#record[field] : undefined;
  }

  /** Fails on the first key that is not in `allowed`. */
  rejectUnknown(allowed: ReadonlySet<string>): void {
    for (const key of Object.keys(this.#record)) {
      if (!allowed.has(key)) {
        this.fail("bad_field", { field: key, detail: "is not in the schema" });
      }
    }
  }

  /** Reads a required string. */
  string(field: string, options: StringFieldOptions): string {
    const { minChars = 0, maxChars, pattern } = options;
    const value = this.#required(field);

    if (typeof value !== "string") {
      this.fail("bad_field", {
        field,
        detail: `must be a string, received ${describeValue(value)}`,
      });
    }
    if (value.length > maxChars) {
      this.fail("oversized", {
        field,
        detail: `must be at most ${maxChars} characters, ` +
          `received ${value.length}`,
      });
    }
    if (value.length < minChars) {
      this.fail("bad_field", {
        field,
        detail: `must be at least ${minChars} characters, ` +
          `received ${describeValue(value)}`,
      });
    }
    if (pattern !== undefined && !pattern.test(value)) {
      this.fail("bad_field", {
        field,
        detail: `must match ${pattern}, received ${describeValue(value)}`,
      });
    }
    return value;
  }

  /** Reads a required string or nil. */
  nullableString(field: string, options: StringFieldOptions): string | null {
    return this.#required(field) === null ? null : this.string(field, options);
  }

  /** Reads a required string that must be one of `values`. */
  oneOf<T extends string>(field: string, values: readonly T[]): T {
    const value = this.#required(field);
    const match = values.find((candidate) => candidate === value);

    if (match === undefined) {
      this.fail("bad_field", {
        field,
        detail: `must be one of ${values.join(", ")}, ` +
          `received ${describeValue(value)}`,
      });
    }
    return match;
  }

  /** Reads a required integer within `[min, max]`. */
  integer(field: string, options: IntegerFieldOptions): number {
    const { min, max, rangeReason = "bad_field" } = options;
    const value = this.#required(field);

    if (typeof value !== "number" || !Number.isInteger(value)) {
      this.fail(
        typeof value === "number" && !Number.isFinite(value)
          ? "non_finite"
          : "bad_field",
        {
          field,
          detail: `must be an integer, received ${describeValue(value)}`,
        },
      );
    }
    if (value < min || value > max) {
      this.fail(rangeReason, {
        field,
        detail: `must be in [${min}, ${max}], received ${value}`,
      });
    }
    return value;
  }

  /**
   * Reads a required array of at most `maxItems` integers, each within
   * `[min, max]`.
   */
  integerArray(
    field: string,
    options: { min: number; max: number; maxItems: number },
  ): number[] {
    const value = this.#required(field);

    if (!Array.isArray(value)) {
      this.fail("bad_field", {
        field,
        detail: `must be an array, received ${describeValue(value)}`,
      });
    }
    if (value.length > options.maxItems) {
      this.fail("oversized", {
        field,
        detail: `holds ${value.length} items, above ${options.maxItems}`,
      });
    }
    for (const item of value) {
      const ok = typeof item === "number" && Number.isInteger(item) &&
        item >= options.min && item <= options.max;
      if (!ok) {
        this.fail("bad_field", {
          field,
          detail: `must hold integers in [${options.min}, ${options.max}], ` +
            `received ${describeValue(item)}`,
        });
      }
    }
    return [...value] as number[];
  }

  /** Reads a required finite number within `[min, max]`. */
  number(field: string, options: { min: number; max: number }): number {
    const value = this.#required(field);

    if (typeof value !== "number") {
      this.fail("bad_field", {
        field,
        detail: `must be a number, received ${describeValue(value)}`,
      });
    }
    if (!Number.isFinite(value)) {
      this.fail("non_finite", { field, detail: `is ${value}` });
    }
    if (value < options.min || value > options.max) {
      this.fail("bad_field", {
        field,
        detail: `must be in [${options.min}, ${options.max}], received ` +
          String(value),
      });
    }
    return value;
  }

  /** Reads a required boolean. */
  boolean(field: string): boolean {
    const value = this.#required(field);

    if (typeof value !== "boolean") {
      this.fail("bad_field", {
        field,
        detail: `must be a boolean, received ${describeValue(value)}`,
      });
    }
    return value;
  }

  /** Reads a required msgpack bin (any offset in its buffer). */
  bytes(field: string): Uint8Array {
    const value = this.#required(field);

    if (!(value instanceof Uint8Array)) {
      this.fail("bad_field", {
        field,
        detail: `must be binary, received ${describeValue(value)}`,
      });
    }
    return value;
  }

  #required(field: string): unknown {
    if (!this.has(field)) {
      this.fail("bad_field", { field, detail: "is missing" });
    }
    return this.#record[field];
  }

  #describeContext(): string {
    const { run, step, rank } = this.context;
    const parts = [
      run === undefined ? undefined : `run ${JSON.stringify(run)}`,
      step === undefined ? undefined : `step ${step}`,
      rank === undefined ? undefined : `rank ${rank}`,
    ].filter((part) => part !== undefined);
    return parts.length === 0 ? "" : ` (${parts.join(", ")})`;
  }
}
