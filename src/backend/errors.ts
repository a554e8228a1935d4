/**
 * Errors of backend selection.
 *
 * @module
 */

/** One backend that was tried and not used, with the reason. */
export interface SkippedBackend {
  backend: string;
  reason: string;
}

/** Raised when the requested backend (or, for `auto`, every one) fails. */
export class BackendUnavailableError extends Error {
  /** The choice that could not be honoured. */
  readonly choice: string;
  /** Every backend tried, in order, with why it was not used. */
  readonly skipped: SkippedBackend[];

  constructor(
    choice: string,
    skipped: SkippedBackend[],
    options?: ErrorOptions,
  ) {
    const reasons = skipped.map((s) => `${s.backend}: ${s.reason}`).join("; ");
    super(`Cannot start backend '${choice}': ${reasons}`, options);
    this.name = "BackendUnavailableError";
    this.choice = choice;
    this.skipped = skipped;
  }
}

/** Raised when tfjs reports that a registered backend failed to start. */
export class BackendStartError extends Error {
  /** The tfjs backend name. */
  readonly backend: string;

  constructor(backend: string, detail: string) {
    super(`Cannot start the ${backend} backend: ${detail}`);
    this.name = "BackendStartError";
    this.backend = backend;
  }
}

/** The message of an unknown thrown value. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    return error.message.split("\n")[0].trim();
  }
  return String(error);
}
