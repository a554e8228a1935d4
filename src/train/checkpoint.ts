/**
 * Checkpoints of the parameter server's authoritative state: weights and
 * moving statistics, optimizer moments and step, counters, membership and
 * the job fingerprint. Randomness is a pure function of the seed and the
 * position in the data (DESIGN.md), so the step counter IS the RNG position.
 *
 * Written atomically (temporary file, fsync, rename); a resumed run
 * continues from exactly this state.
 *
 * @module
 */
import { Packr } from "msgpackr";
import { writeFileAtomic } from "./atomic_file.ts";

/** Version of the checkpoint schema. */
export const CHECKPOINT_VERSION = 1;

/** What a checkpoint holds. */
export interface Checkpoint {
  runId: string;
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
  /** Ranks taking part when it was written. */
  workers: number;
  /** Seconds of training done before this checkpoint. */
  wallSeconds: number;
}

/** A checkpoint that cannot be read or does not fit the job. */
export class CheckpointError extends Error {
  readonly file: string;

  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = "CheckpointError";
    this.file = file;
  }
}

const packr = new Packr({ useRecords: false, moreTypes: true });

/** Writes a checkpoint atomically. */
export async function writeCheckpoint(
  path: string,
  checkpoint: Checkpoint,
): Promise<void> {
  const bytes = packr.pack({
    format: "dptrain-checkpoint",
    version: CHECKPOINT_VERSION,
    ...checkpoint,
  });
  await writeFileAtomic(path, bytes);
}

/** Reads and checks a checkpoint written by {@linkcode writeCheckpoint}. */
export async function readCheckpoint(path: string): Promise<Checkpoint> {
  let raw: Record<string, unknown>;
  try {
    raw = packr.unpack(await Deno.readFile(path));
  } catch (error) {
    throw new CheckpointError(path, `cannot read: ${error}`);
  }

  if (raw?.format !== "dptrain-checkpoint") {
    throw new CheckpointError(path, "not a dptrain checkpoint");
  }
  if (raw.version !== CHECKPOINT_VERSION) {
    throw new CheckpointError(
      path,
      `schema version ${raw.version}, this build reads ${CHECKPOINT_VERSION}`,
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

  // Copy so the weights never alias the decoder's buffer at an odd offset.
  const weights = new Float32Array(raw.weights);
  return { ...(raw as unknown as Checkpoint), weights };
}
