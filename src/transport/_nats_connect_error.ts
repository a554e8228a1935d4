/**
 * Says in words why a connection to nats-server failed, naming what the
 * client presented: the `nats` client's codes (`AUTHORIZATION_VIOLATION`,
 * `TIMEOUT`) and node:tls's certificate codes are terse.
 *
 * @module
 */

import { describeNatsAccess, type NatsAccess } from "./nats_auth.ts";

// node:tls codes for a server certificate no trusted CA signed.
const UNTRUSTED_CERT_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);

/** Why connecting with `access` failed, as a clause after a colon. */
export function explainConnectError(
  error: unknown,
  options: { access: NatsAccess; timeoutMs: number },
): string {
  const { access, timeoutMs } = options;
  const code = (error as { code?: unknown } | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  const presented = describeNatsAccess(access);

  switch (code) {
    case "AUTHORIZATION_VIOLATION":
      return access.auth === undefined
        ? "authorization violation: the server requires credentials and " +
          "none were given"
        : `authorization violation: the server refused ${presented}`;
    case "AUTHENTICATION_EXPIRED":
    case "ACCOUNT_EXPIRED":
      return `the server says the credentials have expired (${presented})`;
    case "AUTHENTICATION_TIMEOUT":
      return "the server timed out waiting for credentials";
    case "BAD_CREDS":
    case "BAD_AUTHENTICATION":
      return `the credentials could not be used (${presented}): ${message}`;
    case "SERVER_OPT_NA":
      return message === "tls"
        ? "TLS is required by this client but the server does not offer it"
        : `the server lacks an option this client needs: ${message}`;
    case "CONNECTION_REFUSED":
      return "connection refused: no server listens there";
    case "ERR_TLS_CERT_ALTNAME_INVALID":
      return "TLS: the server's certificate does not name this host " +
        `(${message})`;
    case "CERT_HAS_EXPIRED":
      return `TLS: the server's certificate has expired (${message})`;
    case "TLS_ALERT":
      return access.tls?.cert === undefined
        ? `TLS: the server requires a client certificate and none was ` +
          `given (${message})`
        : `TLS: the server refused this client's certificate (${message})`;
    case "TIMEOUT":
      if (access.tls === undefined) return `timed out after ${timeoutMs} ms`;
      return `timed out after ${timeoutMs} ms; a TLS server that verifies ` +
        "clients also turns away in this way " +
        (access.tls.cert === undefined
          ? "one without a client certificate, and none was given"
          : "one whose certificate no CA it trusts signed");
  }
  if (typeof code === "string" && UNTRUSTED_CERT_CODES.has(code)) {
    return `TLS: the server's certificate is not signed by a trusted CA ` +
      `(${message}); give the CA that signed it`;
  }
  return typeof code === "string" ? `${message} (${code})` : message;
}
