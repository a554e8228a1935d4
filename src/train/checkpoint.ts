/**
 * Checkpoints of the parameter server's authoritative state: weights and
 * moving statistics, optimizer moments and step, counters, membership and
 * the job fingerprint. Randomness is a pure function of the seed and the
 * position in the data (DESIGN.md), so the step counter IS the RNG position.
 *
 * Written atomically (temporary file, fsync, rename, folder fsync); a
 * resumed run continues from exactly this state. A failed write throws a
 * {@linkcode CheckpointWriteError} and leaves the previous checkpoint as it
 * was.
 *
 * File layout (version 2), little-endian:
 *
 * | bytes | field                                    |
 * | ----- | ---------------------------------------- |
 * | 0-7   | magic `DPTRCKPT`                         |
 * | 8-11  | u32 format version (2)                   |
 * | 12-15 | u32 CRC-32 of the data                   |
 * | 16-23 | u64 step (also inside the data)          |
 * | 24-31 | u64 length of the data in bytes          |
 * | 32-   | the data: msgpack of {@linkcode Checkpoint} |
 *
 * The length and checksum mean a cut-short or damaged file is refused, never
 * loaded. Version 1 files (bare msgpack, no header) are still read.
 *
 * @module
 */
import { Packr } from "msgpackr";
import { crc32 } from "../wire/crc32.ts";
import {
  AtomicWriteError,
  type AtomicWriteStage,
  describeStage,
  writeFileAtomic,
} from "./atomic_file.ts";

/** Version of the checkpoint format this build writes. */
export const CHECKPOINT_VERSION = 2;

/** The version 1 format: bare msgpack, no length and no checksum. */
const LEGACY_VERSION = 1;
const MAGIC = new TextEncoder().encode("DPTRCKPT");
const HEADER_BYTES = 32;

/** What a checkpoint holds. */
export interface Checkpoint {
  /** Id of the run that wrote it. */
  runId: string;
  /** Config fingerprint of the job; a resumed job must have the same. */
  fingerprint: string;
  /** Steps completed; the next step to run. */
  step: number;
  /** Epoch of the next step. */
  epoch: number;
  /** Layout names in order, so a resumed job checks it matches. */
  layout: string[];
  /** The flat weights vector (trainable + moving statistics). */
  weights: Float32Array;
  /** The optimizer's serialisable state. */
  optimizer: unknown;
  /** The run's `train.workers` (ranks of the job). */
  workers: number;
  /** Seconds of training done before this checkpoint. */
  wallSeconds: number;
  /**
   * Where the epoch stands: its permutation cursor and the examples handed
   * back by ranks that dropped out (absent in older checkpoints).
   */
  plan?: { epoch: number; cursor: number; requeued: number[] };
  /** Ranks live when it was written; a resumed PS waits for them. */
  live?: number[];
  /** The moving average of the weights, with `train.emaDecay`. */
  ema?: { average: Float32Array; updates: number };
}

/** A checkpoint that cannot be read or does not fit the job. */
export class CheckpointError extends Error {
  /**
   * The checkpoint file at fault, or `(resume)` for a mismatch with the job.
   */
  readonly file: string;

  /** Makes the error; the message starts with `file`. */
  constructor(file: string, message: string, options?: ErrorOptions) {
    super(`${file}: ${message}`, options);
    this.name = "CheckpointError";
    this.file = file;
  }
}

/**
 * What is at the checkpoint path after a failed write:
 * - `previous`: the earlier checkpoint, byte for byte as it was;
 * - `none`: nothing (no checkpoint had been written there yet);
 * - `new`: the new checkpoint (only the folder sync after the rename
 *   failed, so it may not survive a power cut).
 */
export type CheckpointOnDisk = "previous" | "none" | "new";

/**
 * A checkpoint that could not be written. The caller decides whether to
 * stop or train on (`train.onCheckpointError`); either way the file at
 * `path` is whole: see `onDisk`.
 */
export class CheckpointWriteError extends Error {
  /** The checkpoint file that was to be written. */
  readonly path: string;
  /** The step of the checkpoint that failed to be written. */
  readonly step: number;
  /** The OS error code (`ENOSPC`, `EROFS`, `EISDIR`, ...), null if none. */
  readonly code: string | null;
  /** The stage of the atomic write that failed. */
  readonly stage: AtomicWriteStage;
  /** What is at `path` now. */
  readonly onDisk: CheckpointOnDisk;
  /** The step of the checkpoint at `path`, when it could be read. */
  readonly previousStep: number | null;
  /** The temporary file used for the write. */
  readonly tempPath: string;
  /** True when the temporary file could not be removed either. */
  readonly tempLeft: boolean;

  /**
   * Wraps the failed atomic write of step `step`; `previous` says what is at
   * the path now.
   */
  constructor(
    step: number,
    cause: AtomicWriteError,
    previous: { onDisk: CheckpointOnDisk; step: number | null },
  ) {
    const reason = cause.cause instanceof Error
      ? cause.cause.message
      : String(cause.cause);
    const parts = [
      `Cannot write the checkpoint of step ${step} to ${cause.path}: ` +
      `${describeStage(cause.stage)} failed with ${
        cause.code ?? "an error"
      } (${reason})`,
      describeOnDisk(cause.path, previous),
    ];
    if (cause.tempLeft) {
      parts.push(
        `the temporary file ${cause.tempPath} could not be removed ` +
          `(${errorText(cause.tempRemoveError)}): delete it by hand`,
      );
    } else if (cause.stage !== "open" && cause.stage !== "syncDir") {
      parts.push(`the temporary file ${cause.tempPath} was removed`);
    }
    super(parts.join("; "), { cause });
    this.name = "CheckpointWriteError";
    this.path = cause.path;
    this.step = step;
    this.code = cause.code;
    this.stage = cause.stage;
    this.onDisk = previous.onDisk;
    this.previousStep = previous.step;
    this.tempPath = cause.tempPath;
    this.tempLeft = cause.tempLeft;
  }
}

/** Options for {@linkcode writeCheckpoint}. */
export interface WriteCheckpointOptions {
  /**
   * Where the temporary file is written before the rename; it must be on
   * the same filesystem as the checkpoint.
   *
   * @default `${path}.${Deno.pid}.${8 random hex digits}.tmp`
   */
  tempPath?: string;
}

const packr = new Packr({ useRecords: false, moreTypes: true });

/**
 * Writes a checkpoint atomically, with a length and a CRC-32 so a torn or
 * damaged file is never loaded.
 *
 * @param path The checkpoint file; its folder must exist.
 * @param checkpoint The state to save.
 * @param options Where the temporary file goes.
 * @throws {RangeError} When `checkpoint.step` is not a whole number >= 0.
 * @throws {CheckpointWriteError} When the file system refuses the write;
 * the previous checkpoint is left as it was (see `onDisk`).
 */
export async function writeCheckpoint(
  path: string,
  checkpoint: Checkpoint,
  options: WriteCheckpointOptions = {},
): Promise<void> {
  const { step } = checkpoint;
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new RangeError(
      `Cannot write checkpoint ${path}: step must be a whole number >= 0, ` +
        `received ${step}`,
    );
  }

  const data = packr.pack({
    format: "dptrain-checkpoint",
    version: CHECKPOINT_VERSION,
    ...checkpoint,
  });
  const bytes = new Uint8Array(HEADER_BYTES + data.length);
  const header = new DataView(bytes.buffer, 0, HEADER_BYTES);
  bytes.set(MAGIC, 0);
  header.setUint32(8, CHECKPOINT_VERSION, true);
  header.setUint32(12, crc32(data), true);
  header.setBigUint64(16, BigInt(step), true);
  header.setBigUint64(24, BigInt(data.length), true);
  bytes.set(data, HEADER_BYTES);

  try {
    await writeFileAtomic(path, bytes, options);
  } catch (error) {
    if (!(error instanceof AtomicWriteError)) throw error;
    const previous = error.replaced
      ? { onDisk: "new" as const, step }
      : await peekPrevious(path);
    throw new CheckpointWriteError(step, error, previous);
  }
}

/**
 * Reads and checks a checkpoint written by {@linkcode writeCheckpoint}
 * (format version 2, or the headerless version 1).
 *
 * @param path The checkpoint file.
 * @returns The checkpoint, with weights in a fresh aligned array.
 * @throws {CheckpointError} Naming the file, when it cannot be read, is cut
 * short, fails its checksum, or has a missing or mistyped field.
 */
export async function readCheckpoint(path: string): Promise<Checkpoint> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    throw new CheckpointError(path, `cannot read: ${errorText(error)}`, {
      cause: error,
    });
  }
  if (!startsWithMagic(bytes)) return decodeLegacy(path, bytes);
  if (bytes.length < HEADER_BYTES) {
    throw new CheckpointError(
      path,
      `truncated: ${bytes.length} bytes, shorter than the ` +
        `${HEADER_BYTES}-byte header (a write was cut short)`,
    );
  }
  const header = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const version = header.getUint32(8, true);
  if (version !== CHECKPOINT_VERSION) {
    throw new CheckpointError(
      path,
      `format version ${version}, this build reads ` +
        `${LEGACY_VERSION} and ${CHECKPOINT_VERSION}`,
    );
  }
  const dataBytes = Number(header.getBigUint64(24, true));
  const held = bytes.length - HEADER_BYTES;
  if (held < dataBytes) {
    throw new CheckpointError(
      path,
      `truncated: the header announces ${dataBytes} bytes of data, the ` +
        `file holds ${held} (a write was cut short)`,
    );
  }
  if (held > dataBytes) {
    throw new CheckpointError(
      path,
      `corrupt: ${held - dataBytes} bytes after the ${dataBytes} bytes ` +
        `of data the header announces`,
    );
  }
  const data = bytes.subarray(HEADER_BYTES);
  const expected = header.getUint32(12, true);
  const actual = crc32(data);
  if (actual !== expected) {
    throw new CheckpointError(
      path,
      `corrupt: checksum mismatch, the header says ${hex(expected)}, the ` +
        `data hashes to ${hex(actual)}`,
    );
  }

  const checkpoint = decodeData(path, data, CHECKPOINT_VERSION);
  const headerStep = Number(header.getBigUint64(16, true));
  if (checkpoint.step !== headerStep) {
    throw new CheckpointError(
      path,
      `corrupt: the header says step ${headerStep}, the data says ` +
        `step ${checkpoint.step}`,
    );
  }
  return checkpoint;
}

/** Reads a version 1 checkpoint, which has no header or checksum. */
function decodeLegacy(path: string, bytes: Uint8Array): Checkpoint {
  return decodeData(path, bytes, LEGACY_VERSION);
}

function decodeData(
  path: string,
  data: Uint8Array,
  version: number,
): Checkpoint {
  let raw: Record<string, unknown>;
  try {
    raw = packr.unpack(data);
  } catch (error) {
    const what = version === LEGACY_VERSION
      ? "not a dptrain checkpoint, or a truncated or corrupt version 1 one"
      : "corrupt: the data does not decode";
    throw new CheckpointError(path, `${what}: ${errorText(error)}`, {
      cause: error,
    });
  }

  if (raw?.format !== "dptrain-checkpoint") {
    throw new CheckpointError(path, "not a dptrain checkpoint");
  }
  if (raw.version !== version) {
    throw new CheckpointError(
      path,
      `format version ${raw.version} inside a version ${version} file`,
    );
  }
  if (!(raw.weights instanceof Float32Array)) {
    throw new CheckpointError(path, "field weights is not float32 data");
  }
  for (const field of ["step", "epoch", "workers", "wallSeconds"]) {
    if (typeof raw[field] !== "number") {
      throw new CheckpointError(path, `field ${field} is not a number`);
    }
  }
  for (const field of ["runId", "fingerprint"]) {
    if (typeof raw[field] !== "string") {
      throw new CheckpointError(path, `field ${field} is not a string`);
    }
  }
  if (!Array.isArray(raw.layout)) {
    throw new CheckpointError(path, "field layout is not a list");
  }

  checkOptionalFields(path, raw);

  // Copy so the weights never alias the decoder's buffer at an odd offset.
  const weights = new Float32Array(raw.weights);
  const { format: _format, version: _version, ...fields } = raw;
  const checkpoint = { ...(fields as unknown as Checkpoint), weights };
  if (checkpoint.ema) {
    checkpoint.ema = {
      average: new Float32Array(checkpoint.ema.average),
      updates: checkpoint.ema.updates,
    };
  }
  return checkpoint;
}

/** The fields older checkpoints lack: absent, or well formed. */
function checkOptionalFields(path: string, raw: Record<string, unknown>) {
  const isIntList = (v: unknown) =>
    Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0);
  const plan = raw.plan as Record<string, unknown> | undefined;
  if (
    plan !== undefined &&
    !(typeof plan === "object" && plan !== null &&
      Number.isInteger(plan.epoch) && Number.isInteger(plan.cursor) &&
      isIntList(plan.requeued))
  ) {
    throw new CheckpointError(
      path,
      "field plan is not {epoch, cursor, requeued}",
    );
  }
  if (raw.live !== undefined && !isIntList(raw.live)) {
    throw new CheckpointError(path, "field live is not a list of ranks");
  }
  const ema = raw.ema as Record<string, unknown> | undefined;
  if (
    ema !== undefined &&
    !(typeof ema === "object" && ema !== null &&
      ema.average instanceof Float32Array &&
      ema.average.length === (raw.weights as Float32Array).length &&
      Number.isInteger(ema.updates))
  ) {
    throw new CheckpointError(
      path,
      "field ema is not {average: float32 data as long as the weights, " +
        "updates}",
    );
  }
}

/**
 * What a failed write left at `path`: the previous checkpoint (with its
 * step when its header reads), or nothing. Reads only the header.
 */
async function peekPrevious(
  path: string,
): Promise<{ onDisk: CheckpointOnDisk; step: number | null }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error) {
    const absent = error instanceof Deno.errors.NotFound ||
      error instanceof Deno.errors.NotADirectory;
    return { onDisk: absent ? "none" : "previous", step: null };
  }
  try {
    const header = new Uint8Array(HEADER_BYTES);
    let got = 0;
    while (got < HEADER_BYTES) {
      const n = await file.read(header.subarray(got));
      if (n === null) break;
      got += n;
    }
    const view = new DataView(header.buffer);
    const readable = got === HEADER_BYTES && startsWithMagic(header) &&
      view.getUint32(8, true) === CHECKPOINT_VERSION;
    const step = readable ? Number(view.getBigUint64(16, true)) : null;
    return { onDisk: "previous", step };
  } catch {
    // The message only loses the previous step; the write error stands.
    return { onDisk: "previous", step: null };
  } finally {
    file.close();
  }
}

function describeOnDisk(
  path: string,
  previous: { onDisk: CheckpointOnDisk; step: number | null },
): string {
  switch (previous.onDisk) {
    case "none":
      return `no earlier checkpoint exists at ${path}`;
    case "new":
      return "the new checkpoint is in place but may not survive a power cut";
    case "previous":
      return previous.step === null
        ? `the previous checkpoint at ${path} is untouched`
        : `the previous checkpoint (step ${previous.step}) is intact`;
  }
}

/**
 * True when `bytes` begin with the magic, or are a cut-short prefix of it
 * (an empty file included), which the length check then reports.
 */
function startsWithMagic(bytes: Uint8Array): boolean {
  return MAGIC.every((byte, i) => i >= bytes.length || bytes[i] === byte);
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, "0")}`;
}

function errorText(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  const text = error instanceof Error ? error.message : String(error);
  return typeof code === "string" && !text.includes(code)
    ? `${code}: ${text}`
    : text;
}
