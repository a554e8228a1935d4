/**
 * NATS subjects: one prefix per run, so two jobs on one server never see
 * each other's messages, plus the subject syntax both transports check.
 *
 * @module
 */

import { RUN_ID_PATTERN, WIRE_LIMITS } from "../wire/messages.ts";

/** The prefix of every dptrain subject unless configured otherwise. */
export const DEFAULT_SUBJECT_PREFIX = "dptrain";

// One prefix token as dptrain builds them (a strict subset of NATS's).
const TOKEN_PATTERN = RUN_ID_PATTERN;

// Any token NATS accepts in a literal subject: no whitespace, no dot.
const NATS_TOKEN_PATTERN = /^[^\s.*>]+$/;

/** The subjects of one run. */
export interface RunSubjects {
  /** Workers to PS: `hello` on join. */
  readonly hello: string;
  /** PS to one worker: `welcome` (accepted or refused). */
  welcome(rank: number): string;
  /** PS to all workers: weights `tensor_chunk`s. */
  readonly weights: string;
  /** Workers to PS: gradient `tensor_chunk`s of every rank. */
  readonly grads: string;
  /** PS to all: `control` (stop, abort). */
  readonly control: string;
  /** Every subject of the run, for tracing: `<prefix>.<run>.>`. */
  readonly all: string;
}

/**
 * Builds the subjects of run `runId` under `prefix`:
 * `<prefix>.<runId>.hello`, `.welcome.<rank>`, `.weights`, `.grads`,
 * `.control`.
 *
 * @param prefix Dot-separated tokens of letters, digits, `_` and `-`.
 * @param runId One token of letters, digits, `_` and `-`.
 * @throws {RangeError} For a prefix or run id outside those characters.
 *
 * @example
 * ```ts
 * import { subjects } from "./subjects.ts";
 *
 * const run = subjects("dptrain", "r1");
 * console.assert(run.welcome(3) === "dptrain.r1.welcome.3");
 * ```
 */
export function subjects(prefix: string, runId: string): RunSubjects {
  checkRunId(runId);
  if (prefix.split(".").some((token) => !TOKEN_PATTERN.test(token))) {
    throw new RangeError(
      "Cannot build subjects: prefix must be dot-separated tokens of " +
        `letters, digits, "_" and "-", received ${JSON.stringify(prefix)}`,
    );
  }

  const base = `${prefix}.${runId}`;
  return {
    hello: `${base}.hello`,
    welcome(rank: number): string {
      if (!Number.isInteger(rank) || rank < 0) {
        throw new RangeError(
          "Cannot build welcome subject: rank must be a non-negative " +
            `integer, received ${rank}`,
        );
      }
      return `${base}.welcome.${rank}`;
    },
    weights: `${base}.weights`,
    grads: `${base}.grads`,
    control: `${base}.control`,
    all: `${base}.>`,
  };
}

/**
 * Checks that `runId` is one subject token (letters, digits, `_`, `-`, at
 * most `WIRE_LIMITS.maxRunChars`), as the wire's `run` field requires.
 *
 * @throws {RangeError} Naming the run id received.
 */
export function checkRunId(runId: string): void {
  const { maxRunChars } = WIRE_LIMITS;

  if (!RUN_ID_PATTERN.test(runId) || runId.length > maxRunChars) {
    throw new RangeError(
      `Invalid run id: must be 1 to ${maxRunChars} letters, digits, "_" ` +
        `or "-", received ${JSON.stringify(runId)}`,
    );
  }
}

/**
 * Checks a subject's syntax as NATS does: non-empty dot-separated tokens
 * without whitespace; with `wildcards`, a token may be `*` and the last one
 * `>`.
 *
 * @throws {TypeError} Naming the subject.
 */
export function checkSubject(
  subject: string,
  options: { wildcards: boolean },
): void {
  const tokens = subject.split(".");
  const valid = tokens.every((token, index) =>
    NATS_TOKEN_PATTERN.test(token) ||
    (options.wildcards && token === "*") ||
    (options.wildcards && token === ">" && index === tokens.length - 1)
  );

  if (!valid) {
    const kind = options.wildcards ? "subscription" : "publish";
    throw new TypeError(
      `Invalid ${kind} subject: ${JSON.stringify(subject)}`,
    );
  }
}

/**
 * Whether `subject` matches `pattern` by NATS rules: `*` matches one
 * token, a final `>` one or more.
 */
export function subjectMatches(pattern: string, subject: string): boolean {
  const patternTokens = pattern.split(".");
  const subjectTokens = subject.split(".");

  for (let i = 0; i < patternTokens.length; i++) {
    const token = patternTokens[i];
    if (token === ">") return subjectTokens.length > i;
    if (i >= subjectTokens.length) return false;
    if (token !== "*" && token !== subjectTokens[i]) return false;
  }
  return patternTokens.length === subjectTokens.length;
}
