/**
 * Field-by-field validation helpers of the config parser: each check names
 * the dotted field and the value received.
 *
 * @module
 */
import { OptimizerConfigError } from "./errors.ts";
import type { MatchMode } from "./types.ts";

/** A JSON object being parsed. */
export type Raw = Record<string, unknown>;

/** Carries the file name through the parse and fails naming the field. */
export class Fields {
  readonly file: string | undefined;

  constructor(file: string | undefined) {
    this.file = file;
  }

  fail(field: string, message: string, cause?: unknown): never {
    throw new OptimizerConfigError(message, { field, file: this.file, cause });
  }

  object(value: unknown, field: string): Raw {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      this.fail(field, `must be an object, received ${describe(value)}`);
    }
    return value as Raw;
  }

  knownKeys(raw: Raw, field: string, allowed: readonly string[]): void {
    for (const key of Object.keys(raw)) {
      if (!allowed.includes(key)) {
        this.fail(
          `${field}.${key}`,
          `is not a known key; expected one of ${allowed.join(", ")}`,
        );
      }
    }
  }

  number(
    value: unknown,
    field: string,
    range: {
      min?: number;
      minOpen?: boolean;
      max?: number;
      maxOpen?: boolean;
      integer?: boolean;
    },
  ): number {
    const { min, minOpen = false, max, maxOpen = false, integer = false } =
      range;
    const lower = min === undefined ? "" : `${minOpen ? "(" : "["}${min}`;
    const upper = max === undefined ? "" : `${max}${maxOpen ? ")" : "]"}`;
    const wanted = integer ? "an integer" : "a finite number";
    const expect = min !== undefined && max !== undefined
      ? `must be ${wanted} in ${lower}, ${upper}`
      : min !== undefined
      ? `must be ${wanted} ${minOpen ? ">" : ">="} ${min}`
      : `must be ${wanted}`;
    const bad = typeof value !== "number" || !Number.isFinite(value) ||
      (integer && !Number.isInteger(value)) ||
      (min !== undefined && (minOpen ? value <= min : value < min)) ||
      (max !== undefined && (maxOpen ? value >= max : value > max));
    if (bad) this.fail(field, `${expect}, received ${describe(value)}`);
    return value as number;
  }

  boolean(value: unknown, field: string): boolean {
    if (typeof value !== "boolean") {
      this.fail(field, `must be true or false, received ${describe(value)}`);
    }
    return value;
  }

  oneOf<T extends string>(
    value: unknown,
    field: string,
    allowed: readonly T[],
  ): T {
    if (typeof value !== "string" || !allowed.includes(value as T)) {
      this.fail(
        field,
        `must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, ` +
          `received ${describe(value)}`,
      );
    }
    return value as T;
  }

  key(value: unknown, field: string, match: MatchMode): string {
    if (typeof value !== "string" || value.length === 0) {
      this.fail(
        field,
        `must be a non-empty string, received ${describe(value)}`,
      );
    }
    if (match === "regex") {
      try {
        new RegExp(value);
      } catch (error) {
        this.fail(field, `is not a valid regular expression: ${value}`, error);
      }
    }
    return value;
  }
}

/** A short description of a received value for error messages. */
export function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "number") return String(value);
  if (Array.isArray(value)) return "an array";
  return JSON.stringify(value) ?? String(value);
}
