/**
 * Errors of the optimizer package, typed by what the caller does next:
 * fix the config file, or refuse a checkpoint / gradient list.
 *
 * @module
 */

/** Options of {@linkcode OptimizerConfigError}. */
export interface OptimizerConfigErrorOptions extends ErrorOptions {
  /** Dotted path of the field at fault, e.g. `optimizer.schedule.decay`. */
  field: string;
  /** The config file, when the config came from one. */
  file?: string | undefined;
}

/**
 * Raised by `parseOptimizerConfig` for a config the optimizer cannot run:
 * the caller fixes the file and starts again.
 */
export class OptimizerConfigError extends Error {
  /** Dotted path of the field at fault. */
  readonly field: string;
  /** The config file, if known. */
  readonly file: string | undefined;

  /** Makes the error; the message names the file (if any) and the field. */
  constructor(message: string, options: OptimizerConfigErrorOptions) {
    const where = options.file === undefined ? "" : ` in ${options.file}`;
    super(`Invalid optimizer config${where}: "${options.field}" ${message}`, {
      cause: options.cause,
    });
    this.name = "OptimizerConfigError";
    this.field = options.field;
    this.file = options.file;
  }
}

/** Options of {@linkcode OptimizerStateError}. */
export interface OptimizerStateErrorOptions extends ErrorOptions {
  /** The variable or state key at fault. */
  variable: string;
}

/**
 * Raised when weights, gradients or a saved state do not fit the variables
 * the optimizer was built for (wrong count, length or shape). Nothing has
 * been changed when it is thrown.
 */
export class OptimizerStateError extends Error {
  /** The variable or state key at fault. */
  readonly variable: string;

  constructor(message: string, options: OptimizerStateErrorOptions) {
    super(message, { cause: options.cause });
    this.name = "OptimizerStateError";
    this.variable = options.variable;
  }
}
