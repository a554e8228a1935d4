/**
 * Atomic file writes: write a temporary file next to the target, fsync it,
 * rename it over the target, then fsync the folder, so a reader sees the
 * old file or the new one, never a torn one, even across a power cut.
 *
 * @module
 */

/** Writes `bytes` to `path` atomically. */
export async function writeFileAtomic(
  path: string,
  bytes: Uint8Array,
): Promise<void> {
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const file = await Deno.open(tmp, {
    write: true,
    create: true,
    truncate: true,
  });

  try {
    let written = 0;
    while (written < bytes.length) {
      written += await file.write(bytes.subarray(written));
    }
    await file.sync();
  } finally {
    file.close();
  }

  try {
    await Deno.rename(tmp, path);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
  await syncDir(path);
}

/** Makes the rename durable; not every platform can open a folder. */
async function syncDir(path: string): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash > 0 ? path.slice(0, slash) : ".";
  let handle: Deno.FsFile | null = null;
  try {
    handle = await Deno.open(dir, { read: true });
    await handle.sync();
  } catch (error) {
    // Folders cannot be opened or synced on Windows; the rename stands.
    if (Deno.build.os !== "windows") throw error;
  } finally {
    handle?.close();
  }
}
