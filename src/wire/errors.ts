/**
 * The one error type of the wire codec: every reason a message can be
 * refused, as a stable machine-readable code.
 *
 * @module
 */

/**
 * Every reason a message or chunk can be rejected. The strings are stable:
 * counters, logs and tests key on them.
 *
 * - `truncated`: the bytes end before the msgpack value does.
 * - `garbage`: the bytes are not one msgpack map (bad token, trailing bytes,
 *   nesting too deep, a scalar or array at the top level).
 * - `oversized`: the message or one of its strings is above its limit.
 * - `bad_version`: `v` is missing or is not {@linkcode WIRE_VERSION}.
 * - `unknown_kind`: `kind` names no message kind.
 * - `wrong_kind`: a known kind where the caller expects another one.
 * - `wrong_run`: `run` is not the expected run id.
 * - `wrong_step`: `step` is outside the expected window, or the step or
 *   `attempt` differs from the stream being assembled.
 * - `bad_rank`: `rank` is outside `[0, workers)` (or is not `-1` for the
 *   parameter server's weights), or differs from the rank of the per-rank
 *   subject the message arrived on.
 * - `bad_field`: a field is missing, unexpected, of the wrong type, or out of
 *   its range; `field` names it.
 * - `wrong_length`: the payload's byte length is not a multiple of 4, runs
 *   past the stream's total, or the total is not the expected layout size.
 * - `bad_checksum`: the payload's CRC-32 differs from the `crc32` field.
 * - `non_finite`: a NaN or an infinity in the payload or in `meta`.
 * - `conflicting_duplicate`: a chunk index arrived twice with different
 *   contents, or a chunk disagrees with the stream's earlier chunks.
 */
export const WIRE_ERROR_REASONS = [
  "truncated",
  "garbage",
  "oversized",
  "bad_version",
  "unknown_kind",
  "wrong_kind",
  "wrong_run",
  "wrong_step",
  "bad_rank",
  "bad_field",
  "wrong_length",
  "bad_checksum",
  "non_finite",
  "conflicting_duplicate",
] as const;

/** One of {@linkcode WIRE_ERROR_REASONS}. */
export type WireErrorReason = typeof WIRE_ERROR_REASONS[number];

/**
 * What is known about the message at fault when it is rejected. Fields are
 * absent when decoding failed before reaching them.
 */
export interface WireErrorContext {
  /** The message kind, when it was read. */
  kind?: string;
  /** The run id the message claims, when it was read. */
  run?: string;
  /** The step the message claims, when it was read. */
  step?: number;
  /** The sender rank the message claims, when it was read. */
  rank?: number;
}

/** Options of the {@linkcode WireError} constructor. */
export interface WireErrorOptions extends WireErrorContext {
  /** Why the message is rejected. */
  reason: WireErrorReason;
  /** The wire field at fault (`"crc32"`, `"meta.lr"`), if one is. */
  field?: string;
  /** A sentence naming the message, the field, expected and received. */
  message: string;
  /** The lower-level error, such as msgpackr's, if any. */
  cause?: unknown;
}

/**
 * A message or chunk was refused. The caller drops it and counts
 * `reason` (see `RejectionCounter`); it never reaches the weights.
 *
 * @example Branch on the reason
 * ```ts
 * import { WireError } from "./errors.ts";
 *
 * const error = new WireError({
 *   reason: "bad_checksum",
 *   field: "crc32",
 *   message: "Cannot decode tensor_chunk: bad crc32",
 * });
 * console.assert(error.reason === "bad_checksum");
 * ```
 */
export class WireError extends Error {
  /** Always `"WireError"`. */
  override readonly name = "WireError";
  /** Why the message is rejected. */
  readonly reason: WireErrorReason;
  /** The wire field at fault, if one is. */
  readonly field: string | undefined;
  /** The message kind, when it was read. */
  readonly kind: string | undefined;
  /** The run id the message claims, when it was read. */
  readonly run: string | undefined;
  /** The step the message claims, when it was read. */
  readonly step: number | undefined;
  /** The sender rank the message claims, when it was read. */
  readonly rank: number | undefined;

  /** Builds the error from its reason, message and context. */
  constructor(options: WireErrorOptions) {
    super(options.message, { cause: options.cause });
    this.reason = options.reason;
    this.field = options.field;
    this.kind = options.kind;
    this.run = options.run;
    this.step = options.step;
    this.rank = options.rank;
  }
}
