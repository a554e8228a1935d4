/**
 * The nats-server configuration dptrain writes: `max_payload`, an
 * `authorization` block (users with subject permissions, or one token)
 * and a `tls` block. Rendered as text in the server's config syntax.
 *
 * @module
 */

/**
 * The subjects one user may publish to and subscribe to; NATS wildcards
 * (`*`, `>`) allowed. Everything else is denied to that user.
 */
export interface NatsPermissions {
  /** Subjects the user may publish on. */
  readonly publish: readonly string[];
  /** Subjects the user may subscribe to. */
  readonly subscribe: readonly string[];
}

/** A user who logs in with a name and a password. */
export interface NatsPasswordUser {
  /** The user name. */
  readonly user: string;
  /** The password, written in clear to the 0600 config file. */
  readonly password: string;
  /** What the user may do. @default everything */
  readonly permissions?: NatsPermissions;
}

/** A user who proves who it is by signing the server's nonce. */
export interface NatsNkeyUser {
  /** The user's public NKey (`U...`, 56 characters). */
  readonly nkey: string;
  /** What the user may do. @default everything */
  readonly permissions?: NatsPermissions;
}

/** A user of {@linkcode NatsServerAuthorization}. */
export type NatsServerUser = NatsPasswordUser | NatsNkeyUser;

/**
 * Who may connect: a list of users, or any client presenting one token
 * (nats-server refuses both in one block).
 */
export type NatsServerAuthorization =
  | { readonly users: readonly NatsServerUser[] }
  | { readonly token: string };

/** TLS of the server's client port. */
export interface NatsServerTls {
  /** The server's certificate chain (PEM). */
  readonly certFile: string;
  /** The server's private key (PEM). */
  readonly keyFile: string;
  /**
   * CA certificates (PEM) that client certificates must chain to.
   * Required when `verifyClients` is true.
   */
  readonly caFile?: string;
  /** Whether clients must present a certificate. @default false */
  readonly verifyClients?: boolean;
}

/**
 * Decentralized auth (operator mode): the server trusts one operator and
 * admits users whose JWT (in their creds file) an account of that operator
 * signed; the account JWTs are preloaded in memory.
 */
export interface NatsServerOperator {
  /** The operator's JWT. */
  readonly jwt: string;
  /** Account JWTs by the account's public NKey (`A...`). */
  readonly accounts: Readonly<Record<string, string>>;
}

/** What {@linkcode renderNatsServerConfig} writes. */
export interface NatsServerConfig {
  /** The server's `max_payload`, in bytes. @default the server's (1 MiB) */
  maxPayloadBytes?: number;
  /** Who may connect and what each user may do. @default anyone, anything */
  authorization?: NatsServerAuthorization;
  /** TLS on the client port; plain TCP is then refused. @default none */
  tls?: NatsServerTls;
  /**
   * Operator mode, for users with creds files; excludes `authorization`.
   * @default none
   */
  operator?: NatsServerOperator;
}

// nats-server's parser takes `$NAME` as a variable even in some quoted
// contexts; refusing `$`, quotes, backslashes and control characters
// keeps every value a literal without an escaping scheme to get wrong.
const SAFE_STRING = /^[^\s"'\\$\p{Cc}]+$/u;
const SAFE_PATH = /^[^"'\\$\p{Cc}]+$/u;
const NKEY_USER = /^U[A-Z2-7]{55}$/;

/**
 * Renders `config` in nats-server's config syntax, or `undefined` when
 * there is nothing to write (the server's defaults apply).
 *
 * @throws {RangeError} For a value that cannot be written as a literal
 *   (quotes, `$`, backslashes, control characters), a malformed NKey, a
 *   token and users at once, or `verifyClients` without `caFile`; the
 *   message names the field.
 *
 * @example
 * ```ts
 * import { renderNatsServerConfig } from "./nats_server_config.ts";
 *
 * const text = renderNatsServerConfig({
 *   authorization: { users: [{ user: "ps", password: "s3cret" }] },
 * });
 * console.assert(text?.includes('user: "ps"'));
 * ```
 */
export function renderNatsServerConfig(
  config: NatsServerConfig,
): string | undefined {
  const { maxPayloadBytes, authorization, tls, operator } = config;
  const lines: string[] = [];

  if (maxPayloadBytes !== undefined) {
    if (!Number.isInteger(maxPayloadBytes) || maxPayloadBytes < 1) {
      throw new RangeError(
        "Cannot write nats-server config: maxPayloadBytes must be a " +
          `positive integer, received ${maxPayloadBytes}`,
      );
    }
    lines.push(`max_payload: ${maxPayloadBytes}`);
  }
  if (authorization !== undefined) {
    lines.push(...renderAuthorization(authorization));
  }
  if (tls !== undefined) lines.push(...renderTls(tls));
  if (operator !== undefined) {
    if (authorization !== undefined) {
      throw new RangeError(
        "Cannot write nats-server config: operator mode takes its users " +
          "from JWTs; drop authorization",
      );
    }
    lines.push(...renderOperator(operator));
  }

  return lines.length === 0 ? undefined : lines.join("\n") + "\n";
}

function renderAuthorization(
  authorization: NatsServerAuthorization,
): string[] {
  if ("token" in authorization) {
    if ("users" in authorization) {
      throw new RangeError(
        "Cannot write nats-server config: authorization takes users or a " +
          "token, not both",
      );
    }
    return [
      "authorization {",
      `  token: ${literal(authorization.token, "authorization.token")}`,
      "}",
    ];
  }

  if (authorization.users.length === 0) {
    throw new RangeError(
      "Cannot write nats-server config: authorization.users is empty, " +
        "which would let no client in",
    );
  }
  const users = authorization.users.map((user, index) =>
    renderUser(user, `authorization.users[${index}]`)
  );
  return ["authorization {", "  users = [", ...users, "  ]", "}"];
}

function renderUser(user: NatsServerUser, field: string): string {
  const fields: string[] = [];

  if ("nkey" in user) {
    if (!NKEY_USER.test(user.nkey)) {
      throw new RangeError(
        `Cannot write nats-server config: ${field}.nkey must be a public ` +
          `user NKey (U followed by 55 base32 characters), received ` +
          JSON.stringify(user.nkey),
      );
    }
    fields.push(`nkey: ${user.nkey}`);
  } else {
    fields.push(`user: ${literal(user.user, `${field}.user`)}`);
    fields.push(`password: ${literal(user.password, `${field}.password`)}`);
  }
  if (user.permissions !== undefined) {
    const { publish, subscribe } = user.permissions;
    fields.push(
      "permissions: { " +
        `publish: { allow: ${subjectList(publish, `${field}.publish`)} }, ` +
        `subscribe: { allow: ${
          subjectList(subscribe, `${field}.subscribe`)
        } }` +
        " }",
    );
  }
  return `    { ${fields.join(", ")} }`;
}

// An empty allow list would mean "no restriction" to nats-server, the
// opposite of what an empty list says here, so deny everything instead.
function subjectList(subjects: readonly string[], field: string): string {
  if (subjects.length === 0) return `[], deny: [">"]`;
  return `[${subjects.map((s, i) => literal(s, `${field}[${i}]`)).join(", ")}]`;
}

function renderTls(tls: NatsServerTls): string[] {
  const { certFile, keyFile, caFile, verifyClients = false } = tls;

  if (verifyClients && caFile === undefined) {
    throw new RangeError(
      "Cannot write nats-server config: tls.verifyClients needs " +
        "tls.caFile, the CA that client certificates chain to",
    );
  }
  return [
    "tls {",
    `  cert_file: ${pathLiteral(certFile, "tls.certFile")}`,
    `  key_file: ${pathLiteral(keyFile, "tls.keyFile")}`,
    ...(caFile === undefined
      ? []
      : [`  ca_file: ${pathLiteral(caFile, "tls.caFile")}`]),
    `  verify: ${verifyClients}`,
    "}",
  ];
}

function renderOperator(operator: NatsServerOperator): string[] {
  const preload = Object.entries(operator.accounts).map(([key, jwt]) => {
    if (!/^A[A-Z2-7]{55}$/.test(key)) {
      throw new RangeError(
        "Cannot write nats-server config: operator.accounts keys must be " +
          `public account NKeys, received ${JSON.stringify(key)}`,
      );
    }
    return `  ${key}: ${jwtLiteral(jwt, `operator.accounts.${key}`)}`;
  });
  return [
    `operator: ${jwtLiteral(operator.jwt, "operator.jwt")}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    ...preload,
    "}",
  ];
}

function jwtLiteral(value: string, field: string): string {
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(value)) {
    throw new RangeError(
      `Cannot write nats-server config: ${field} is not a JWT ` +
        "(three base64url parts)",
    );
  }
  return `"${value}"`;
}

function literal(value: string, field: string): string {
  if (!SAFE_STRING.test(value)) {
    throw new RangeError(
      `Cannot write nats-server config: ${field} must be non-empty ` +
        "without whitespace, quotes, backslashes, $ or control characters",
    );
  }
  return `"${value}"`;
}

function pathLiteral(value: string, field: string): string {
  if (!SAFE_PATH.test(value)) {
    throw new RangeError(
      `Cannot write nats-server config: ${field} must be a non-empty path ` +
        "without quotes, backslashes, $ or control characters, received " +
        JSON.stringify(value),
    );
  }
  return `"${value}"`;
}
