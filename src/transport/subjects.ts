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
  /**
   * One worker to the PS: `hello` on join and then as its heartbeat. One
   * subject per rank, so that NATS permissions can tie a rank's
   * credentials to its own subjects.
   */
  hello(rank: number): string;
  /** Every rank's `hello` subject (`hello.*`), for the PS. */
  readonly helloAll: string;
  /** PS to one worker: `welcome` (accepted or refused). */
  welcome(rank: number): string;
  /** PS to one worker: `resend` requests for missing gradient chunks. */
  resend(rank: number): string;
  /** PS to all workers: weights `tensor_chunk`s. */
  readonly weights: string;
  /** One worker to the PS: its gradient `tensor_chunk`s. */
  grads(rank: number): string;
  /** Every rank's gradient subject (`grads.*`), for the PS. */
  readonly gradsAll: string;
  /** PS to all: `control` (stop, abort). */
  readonly control: string;
  /** Every subject of the run, for tracing: `<prefix>.<run>.>`. */
  readonly all: string;
  /**
   * The rank a per-rank subject (`hello.3`, `grads.3`, ...) names, or
   * `null` for any other subject.
   */
  rankOf(subject: string): number | null;
}

/**
 * Builds the subjects of run `runId` under `prefix`:
 * `<prefix>.<runId>.hello.<rank>`, `.welcome.<rank>`, `.resend.<rank>`,
 * `.weights`, `.grads.<rank>`, `.control`.
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
 * console.assert(run.rankOf(run.grads(2)) === 2);
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
  const perRank = (name: string) => (rank: number): string => {
    if (!Number.isInteger(rank) || rank < 0) {
      throw new RangeError(
        `Cannot build ${name} subject: rank must be a non-negative ` +
          `integer, received ${rank}`,
      );
    }
    return `${base}.${name}.${rank}`;
  };
  const rankPattern = new RegExp(
    `^${
      escapeRegExp(base)
    }\\.(hello|welcome|resend|grads)\\.(0|[1-9][0-9]{0,8})$`,
  );

  return {
    hello: perRank("hello"),
    helloAll: `${base}.hello.*`,
    welcome: perRank("welcome"),
    resend: perRank("resend"),
    weights: `${base}.weights`,
    grads: perRank("grads"),
    gradsAll: `${base}.grads.*`,
    control: `${base}.control`,
    all: `${base}.>`,
    rankOf(subject: string): number | null {
      const match = rankPattern.exec(subject);
      return match ? Number(match[2]) : null;
    },
  };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
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
