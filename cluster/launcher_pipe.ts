/**
 * Ties a child's life to the launcher's: the launcher starts each PS and
 * worker with a pipe on stdin and keeps the write end; the child reads
 * stdin and exits at end of file. The kernel closes the write end when the
 * launcher exits for any reason, SIGKILL included, which no signal handler
 * in the launcher could catch.
 *
 * @module
 */

/**
 * Set (to `1`) in a child's environment when its stdin is the launcher's
 * pipe; a child started by hand leaves its stdin alone.
 */
export const LAUNCHER_PIPE_ENV = "DPTRAIN_LAUNCHER_PIPE";

/**
 * Calls `onGone` once stdin reaches end of file (or fails), that is, once
 * the launcher is gone. Whatever the launcher writes is ignored.
 *
 * @example
 * ```ts ignore
 * if (Deno.env.get(LAUNCHER_PIPE_ENV) === "1") {
 *   watchLauncherPipe((why) => {
 *     console.error(`launcher gone (${why}); exiting`);
 *     Deno.exit(1);
 *   });
 * }
 * ```
 */
export function watchLauncherPipe(
  onGone: (why: string) => void,
  stdin: { read(buffer: Uint8Array): Promise<number | null> } = Deno.stdin,
): void {
  const buffer = new Uint8Array(256);

  const loop = async (): Promise<string> => {
    while (await stdin.read(buffer) !== null) {
      // Nothing is sent on the pipe; only its end matters.
    }
    return "its pipe on stdin closed";
  };
  loop().then(
    onGone,
    (error: unknown) =>
      onGone(`reading its pipe on stdin failed: ${(error as Error).message}`),
  );
}
