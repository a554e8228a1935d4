/**
 * Leveled log lines tagged with the run id, the role/rank and the step, for
 * the entry points (PS, workers, launcher). Library modules do not print;
 * they take a `log` callback or return data.
 *
 * @module
 */

/** Severity, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const ORDER: Record<LogLevel, number> = {
  debug: 0,
  info: 1,
  warn: 2,
  error: 3,
};

/** Where a line comes from. */
export interface LogContext {
  /** The run id, shown as `run=<id>` on every line. */
  runId: string;
  /** `ps`, `worker 0`, `launcher`. */
  role: string;
}

/** A tagged logger. */
export interface Logger {
  /** Writes a debug line, tagged `step=N` when `step` is given. */
  debug(message: string, step?: number): void;
  /** Writes an info line, tagged `step=N` when `step` is given. */
  info(message: string, step?: number): void;
  /** Writes a warning line, tagged `step=N` when `step` is given. */
  warn(message: string, step?: number): void;
  /** Writes an error line, tagged `step=N` when `step` is given. */
  error(message: string, step?: number): void;
  /** The same logger with a different role tag. */
  child(role: string): Logger;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lines below this level are dropped. @default `DPTRAIN_LOG`, else "info" */
  level?: LogLevel;
  /** Receives each formatted line. @default writes to stderr */
  sink?: (line: string) => void;
}

function stderrSink(line: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(line + "\n"));
}

/** Reads the level from `DPTRAIN_LOG` (debug/info/warn/error). */
export function levelFromEnv(): LogLevel {
  const value = Deno.env.get("DPTRAIN_LOG");
  return value && value in ORDER ? value as LogLevel : "info";
}

/** A logger writing `time LEVEL [run=... role step=N] message` lines. */
export function createLogger(
  context: LogContext,
  options: LoggerOptions = {},
): Logger {
  const { level = levelFromEnv(), sink = stderrSink } = options;

  const write = (at: LogLevel, message: string, step?: number) => {
    if (ORDER[at] < ORDER[level]) return;
    const where = step === undefined ? "" : ` step=${step}`;
    sink(
      `${new Date().toISOString()} ${at.toUpperCase().padEnd(5)} ` +
        `[run=${context.runId} ${context.role}${where}] ${message}`,
    );
  };

  return {
    debug: (m, s) => write("debug", m, s),
    info: (m, s) => write("info", m, s),
    warn: (m, s) => write("warn", m, s),
    error: (m, s) => write("error", m, s),
    child: (role) => createLogger({ ...context, role }, options),
  };
}
