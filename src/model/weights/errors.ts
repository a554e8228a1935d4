/**
 * Errors of the pretrained-weight loaders, typed by what the caller does
 * next: fix or replace a file (format), pick another source or model
 * (mismatch), check the name or path given (source), retry or check the
 * network (fetch).
 *
 * @module
 */

/** A weight file is malformed: bad JSON, a wrong field, short bytes. */
export class WeightsFormatError extends Error {
  /** The file at fault (a path or URL). */
  readonly file: string;
  /** The field or part of the file at fault, e.g. `tensors[3].offset`. */
  readonly field: string;

  constructor(
    options: { file: string; field: string; message: string },
    errorOptions?: ErrorOptions,
  ) {
    super(
      `Cannot read weights from ${options.file}: ${options.field}: ` +
        options.message,
      errorOptions,
    );
    this.name = "WeightsFormatError";
    this.file = options.file;
    this.field = options.field;
  }
}

/** A tensor whose shape differs between the model and the source. */
export interface ShapeMismatch {
  /** The Keras variable name, e.g. `block_1_expand/kernel`. */
  name: string;
  /** Shape of the model's variable. */
  expected: number[];
  /** Shape the source holds. */
  actual: number[];
}

/** How many names of each list a mismatch message spells out. */
const LISTED_NAMES = 12;

function listNames(label: string, names: string[]): string | undefined {
  if (names.length === 0) return undefined;
  const shown = names.slice(0, LISTED_NAMES).join(", ");
  const more = names.length > LISTED_NAMES
    ? ` and ${names.length - LISTED_NAMES} more`
    : "";
  return `${names.length} ${label} (${shown}${more})`;
}

/**
 * The source's tensors do not fit the model: names the model needs are
 * missing, the source has names the model lacks, or shapes differ. Nothing
 * was written to the model.
 */
export class WeightsMismatchError extends Error {
  /** The weight source, as given to the loader. */
  readonly source: string;
  /** Model variables the source does not provide. */
  readonly missing: string[];
  /** Source tensors with no model variable of that name. */
  readonly unexpected: string[];
  /** Names present on both sides with different shapes. */
  readonly shapeMismatches: ShapeMismatch[];

  /** Makes the error; the message lists every mismatch by kind. */
  constructor(options: {
    source: string;
    missing: string[];
    unexpected: string[];
    shapeMismatches: ShapeMismatch[];
  }) {
    const { source, missing, unexpected, shapeMismatches } = options;
    const shapes = shapeMismatches.map((m) =>
      `${m.name} model [${m.expected}] source [${m.actual}]`
    );
    const parts = [
      listNames("missing", missing),
      listNames("unexpected", unexpected),
      listNames("with another shape", shapes),
    ].filter((part) => part !== undefined);
    super(
      `Cannot load weights from ${source}: they do not match the model: ` +
        parts.join("; "),
    );
    this.name = "WeightsMismatchError";
    this.source = source;
    this.missing = missing;
    this.unexpected = unexpected;
    this.shapeMismatches = shapeMismatches;
  }
}

/** The weight source cannot serve this request (unknown name, bad alpha). */
export class WeightsSourceError extends Error {
  /** The weight source, as given to the loader. */
  readonly source: string;

  constructor(
    options: { source: string; message: string },
    errorOptions?: ErrorOptions,
  ) {
    super(
      `Cannot use weights source "${options.source}": ${options.message}`,
      errorOptions,
    );
    this.name = "WeightsSourceError";
    this.source = options.source;
  }
}

/** Downloading weights failed: network error, HTTP status, short body. */
export class WeightsFetchError extends Error {
  /** The URL that failed. */
  readonly url: string;
  /** The HTTP status, when a response came back. */
  readonly status: number | undefined;

  constructor(
    options: { url: string; status?: number; message: string },
    errorOptions?: ErrorOptions,
  ) {
    super(`Cannot fetch ${options.url}: ${options.message}`, errorOptions);
    this.name = "WeightsFetchError";
    this.url = options.url;
    this.status = options.status;
  }
}
