/**
 * Atomic file writes: write a temporary file next to the target, fsync it,
 * rename it over the target, then fsync the folder, so a reader sees the
 * old file or the new one, never a torn one, even across a power cut.
 *
 * The target is never opened for writing: until the rename succeeds, the
 * old file is byte for byte what it was. A failure removes the temporary
 * file it created and throws an {@linkcode AtomicWriteError} that says which
 * stage failed, with the OS error code.
 *
 * @module
 */

/**
 * The stage of {@linkcode writeFileAtomic} that failed, in the order they
 * run. Only a `syncDir` failure happens after the target was replaced.
 */
export type AtomicWriteStage =
  | "open"
  | "write"
  | "sync"
  | "rename"
  | "syncDir";

/** Options for {@linkcode writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /**
   * Where the temporary file is written before the rename. It must be on
   * the target's filesystem, or the rename fails with `EXDEV`.
   *
   * @default `${path}.${Deno.pid}.${8 random hex digits}.tmp`
   */
  tempPath?: string;
}

/** Fields of an {@linkcode AtomicWriteError}. */
export interface AtomicWriteErrorInit {
  path: string;
  tempPath: string;
  stage: AtomicWriteStage;
  cause: unknown;
  /** Why the temporary file could not be removed; null when it was. */
  tempRemoveError: unknown;
}

const STAGE_TEXT: Record<AtomicWriteStage, string> = {
  open: "creating the temporary file",
  write: "writing the temporary file",
  sync: "syncing the temporary file",
  rename: "renaming the temporary file over the target",
  syncDir: "syncing the folder after the rename",
};

/**
 * Says what a stage does, for messages ("writing the temporary file").
 *
 * @param stage The stage that failed.
 * @returns A phrase in lower case.
 */
export function describeStage(stage: AtomicWriteStage): string {
  return STAGE_TEXT[stage];
}

/**
 * A failed {@linkcode writeFileAtomic}. Unless `replaced` is true, the
 * target still holds its previous bytes (or still does not exist).
 */
export class AtomicWriteError extends Error {
  /** The file that was to be written. */
  readonly path: string;
  /** The temporary file used for the write. */
  readonly tempPath: string;
  /** The stage that failed. */
  readonly stage: AtomicWriteStage;
  /** The OS error code (`ENOSPC`, `EROFS`, `EISDIR`, ...), null if none. */
  readonly code: string | null;
  /**
   * True when the new bytes are already at `path` (only when the folder
   * sync after the rename failed): the write may not survive a power cut.
   */
  readonly replaced: boolean;
  /** True when the temporary file is still on disk (its removal failed). */
  readonly tempLeft: boolean;
  /** Why the temporary file could not be removed; null when it was. */
  readonly tempRemoveError: unknown;

  constructor(init: AtomicWriteErrorInit) {
    const code = osErrorCode(init.cause);
    const tempLeft = init.tempRemoveError !== null;
    const reason = init.cause instanceof Error
      ? init.cause.message
      : String(init.cause);
    let message = `Cannot write ${init.path}: ${describeStage(init.stage)} ` +
      `failed with ${code ?? "an error"} (${reason})`;
    if (tempLeft) {
      message += `; the temporary file ${init.tempPath} could not be ` +
        `removed either (${describe(init.tempRemoveError)}): delete it`;
    }
    super(message, { cause: init.cause });
    this.name = "AtomicWriteError";
    this.path = init.path;
    this.tempPath = init.tempPath;
    this.stage = init.stage;
    this.code = code;
    this.replaced = init.stage === "syncDir";
    this.tempLeft = tempLeft;
    this.tempRemoveError = init.tempRemoveError;
  }
}

/**
 * Writes `bytes` to `path` atomically.
 *
 * @param path The target file; its folder must exist.
 * @param bytes The new contents.
 * @param options Where the temporary file goes.
 * @throws {AtomicWriteError} When any stage fails; the temporary file has
 * been removed unless `tempLeft` says otherwise.
 *
 * @example Write a small file
 * ```ts
 * import { writeFileAtomic } from "./atomic_file.ts";
 *
 * const path = await Deno.makeTempFile();
 * await writeFileAtomic(path, new TextEncoder().encode("hello\n"));
 * ```
 */
export async function writeFileAtomic(
  path: string,
  bytes: Uint8Array,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const tempPath = options.tempPath ??
    `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const fail = (stage: AtomicWriteStage, cause: unknown, removal: unknown) =>
    new AtomicWriteError({
      path,
      tempPath,
      stage,
      cause,
      tempRemoveError: removal,
    });

  let file: Deno.FsFile;
  try {
    file = await Deno.open(tempPath, {
      write: true,
      create: true,
      truncate: true,
    });
  } catch (error) {
    // Nothing was created, and whatever stands at tempPath (a folder, say)
    // is not ours to delete.
    throw fail("open", error, null);
  }

  let stage: AtomicWriteStage = "write";
  try {
    let written = 0;
    while (written < bytes.length) {
      written += await file.write(bytes.subarray(written));
    }
    stage = "sync";
    await file.sync();
  } catch (error) {
    file.close();
    throw fail(stage, error, await removeTemp(tempPath));
  }
  file.close();

  try {
    await Deno.rename(tempPath, path);
  } catch (error) {
    throw fail("rename", error, await removeTemp(tempPath));
  }

  try {
    await syncDir(path);
  } catch (error) {
    throw fail("syncDir", error, null);
  }
}

/** Removes a partly written file; returns the error, or null if gone. */
async function removeTemp(tempPath: string): Promise<unknown> {
  try {
    await Deno.remove(tempPath);
    return null;
  } catch (error) {
    return error instanceof Deno.errors.NotFound ? null : error;
  }
}

/** Makes the rename durable; not every platform can open a folder. */
async function syncDir(path: string): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash > 0 ? path.slice(0, slash) : slash === 0 ? "/" : ".";
  if (Deno.build.os === "windows") {
    // Folders cannot be opened or synced on Windows; the rename stands.
    return;
  }
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

/** The OS error code Deno attaches to file-system errors (`ENOSPC`). */
function osErrorCode(error: unknown): string | null {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : null;
}

function describe(error: unknown): string {
  const code = osErrorCode(error);
  const text = error instanceof Error ? error.message : String(error);
  return code === null ? text : `${code}: ${text}`;
}
