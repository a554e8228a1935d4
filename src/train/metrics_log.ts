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
  wallSeconds: number;
}

/** Appends records to a JSON-lines file. */
export class MetricsLog {
  #file: Deno.FsFile;
  #encoder = new TextEncoder();

  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /** Opens (creating or truncating) `path`. */
  static async create(path: string): Promise<MetricsLog> {
    const file = await Deno.open(path, {
      write: true,
      create: true,
      truncate: true,
    });
    return new MetricsLog(file);
  }

  /** Appends one record. */
  async append(record: StepRecord | EpochRecord): Promise<void> {
    const bytes = this.#encoder.encode(JSON.stringify(record) + "\n");
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
