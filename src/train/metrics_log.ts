/**
 * `metrics.jsonl`: one JSON object per line, per step and per epoch, flushed
 * as it is written so a long run can be followed with `tail -f`.
 *
 * @module
 */

/** A step's record. */
export interface StepRecord {
  type: "step";
  epoch: number;
  step: number;
  loss: number;
  accuracy: number;
  lr: number;
  imagesPerSecond: number;
  examples: number;
  applied: boolean;
  /** Ranks whose gradients made the step, ascending. */
  ranks: number[];
  /**
   * Ranks that dropped out of the step and why (`dead`: no heartbeat;
   * `late`: past the step deadline with `stragglerPolicy: "drop"`); their
   * examples went to a later step.
   */
  lost: { rank: number; reason: "dead" | "late" }[];
  /** Plans of this step: 1, or more when every assigned rank dropped out. */
  attempts: number;
  /** Chunk re-sends: weights re-published, gradient chunks asked for. */
  resends: { weights: number; grads: number };
  /** Messages dropped so far, by reason (cumulative). */
  rejected: Record<string, number>;
  wallSeconds: number;
}

/** An epoch's record; validation figures when the epoch was evaluated. */
export interface EpochRecord {
  type: "epoch";
  epoch: number;
  step: number;
  loss: number;
  accuracy: number;
  lr: number;
  imagesPerSecond: number;
  valAccuracy: number | null;
  valLoss: number | null;
  valMacroF1: number | null;
  /** Messages dropped so far, by reason (cumulative). */
  rejected: Record<string, number>;
  /** Ranks that died, came back or joined during the epoch. */
  membership: { rank: number; event: string; step: number }[];
  wallSeconds: number;
}

/** Appends records to a JSON-lines file. */
export class MetricsLog {
  #file: Deno.FsFile;
  #encoder = new TextEncoder();

  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /**
   * Opens (creating or truncating) `path`. With `keepBeforeStep`, a resumed
   * run keeps its predecessor's records of the steps before it and drops
   * the later ones, which it is about to write again.
   */
  static async create(
    path: string,
    options: { keepBeforeStep?: number } = {},
  ): Promise<MetricsLog> {
    const kept = options.keepBeforeStep === undefined
      ? []
      : await readRecordsBefore(path, options.keepBeforeStep);
    const file = await Deno.open(path, {
      write: true,
      create: true,
      truncate: true,
    });
    const log = new MetricsLog(file);
    for (const line of kept) await log.#write(line);
    return log;
  }

  /** Appends one record. */
  async append(record: StepRecord | EpochRecord): Promise<void> {
    await this.#write(JSON.stringify(record));
  }

  async #write(line: string): Promise<void> {
    const bytes = this.#encoder.encode(line + "\n");
    let written = 0;
    while (written < bytes.length) {
      written += await this.#file.write(bytes.subarray(written));
    }
  }

  /** Flushes to disk and closes. */
  async close(): Promise<void> {
    await this.#file.sync();
    this.#file.close();
  }
}

/** The lines of an earlier log whose `step` is below `step`. */
async function readRecordsBefore(
  path: string,
  step: number,
): Promise<string[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }

  // A line cut short by a crash does not parse; it is dropped.
  return text.split("\n").filter((line) => {
    try {
      const record = JSON.parse(line);
      return typeof record?.step === "number" && record.step < step;
    } catch (error) {
      if (error instanceof SyntaxError) return false;
      throw error;
    }
  });
}
