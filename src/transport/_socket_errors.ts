/**
 * Errors that Deno's node:net and node:tls (2.x) raise on sockets the
 * `nats` client has already let go of. With no listener left they would
 * become uncaught errors and end the process, though the client has
 * already dealt with the connection, or will time out on it.
 *
 * - A read error (`ECONNRESET`) on a socket the client destroyed after
 *   removing its listeners, typically when the server closed a connection
 *   it refused (about 1 in 100 refused logins on loopback).
 * - The fatal alert a TLS server that verifies clients sends right after
 *   the handshake to a client without an acceptable certificate, emitted
 *   on the plain socket underneath, which the client stopped listening to
 *   after dialing.
 *
 * @module
 */

const ALERT = /^received fatal alert: (\w+)$/;
// Errors of node's stream internals, as Deno's compat layer raises them.
const NODE_STREAM_FRAME = /ext:deno_node\/internal\/stream_base_commons/;

/** A watch started by {@linkcode watchTlsAlerts}. */
export interface TlsAlertWatch {
  /** Resolves with the alert's name (`BadCertificate`) if one arrives. */
  readonly alert: Promise<string>;
  /** Stops watching. */
  stop(): void;
}

/**
 * Watches uncaught errors for a TLS fatal alert until `stop()`, so that a
 * connect can fail at once with the reason instead of timing out.
 */
export function watchTlsAlerts(): TlsAlertWatch {
  let resolveAlert: (name: string) => void = () => {};
  const alert = new Promise<string>((resolve) => resolveAlert = resolve);
  const onError = (event: ErrorEvent) => {
    const match = tlsAlertOf(event.error);
    if (match !== undefined) {
      event.preventDefault();
      resolveAlert(match);
    }
  };

  globalThis.addEventListener("error", onError);
  return {
    alert,
    stop: () => globalThis.removeEventListener("error", onError),
  };
}

let dropping = false;

/**
 * Makes the errors above, and only those, not end the process from now
 * on; every other uncaught error still does. Idempotent.
 */
export function dropOrphanSocketErrors(): void {
  if (dropping) return;
  dropping = true;
  globalThis.addEventListener("error", (event: ErrorEvent) => {
    if (isOrphanSocketError(event.error)) event.preventDefault();
  });
}

function isOrphanSocketError(error: unknown): boolean {
  if (tlsAlertOf(error) !== undefined) return true;
  const { code, syscall, stack } = (error ?? {}) as {
    code?: unknown;
    syscall?: unknown;
    stack?: unknown;
  };
  return code === "ECONNRESET" && syscall === "read" &&
    typeof stack === "string" && NODE_STREAM_FRAME.test(stack);
}

function tlsAlertOf(error: unknown): string | undefined {
  const message = (error as { message?: unknown } | null)?.message;
  const match = typeof message === "string" ? ALERT.exec(message) : null;
  return match?.[1];
}
