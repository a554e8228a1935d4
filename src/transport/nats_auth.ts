/**
 * How a dptrain process gets into a NATS server: credentials (user and
 * password, token, NKey seed or creds file) and TLS (CA, client
 * certificate), loaded from files or environment variables so that no
 * secret has to appear on a command line, where `ps` shows it to every
 * user of the machine.
 *
 * @module
 */

import {
  type ConnectionOptions,
  credsAuthenticator,
  nkeyAuthenticator,
  nkeys,
} from "nats";

/**
 * How a client proves who it is; nats-server checks one method per
 * connection.
 */
export type NatsAuth =
  | {
    /** A user name and its password. */
    readonly method: "password";
    readonly user: string;
    readonly password: string;
  }
  | {
    /** One shared token. */
    readonly method: "token";
    readonly token: string;
  }
  | {
    /** An NKey seed (`SU...`) that signs the server's nonce. */
    readonly method: "nkey";
    readonly seed: Uint8Array;
  }
  | {
    /** A creds file: a user JWT and its NKey seed (operator mode). */
    readonly method: "creds";
    readonly creds: Uint8Array;
  };

/** TLS towards the server; certificates and key as PEM text. */
export interface NatsTls {
  /**
   * CA certificates the server's certificate must chain to.
   * @default the system's trusted roots
   */
  readonly ca?: string;
  /** The client's certificate chain, for servers that verify clients. */
  readonly cert?: string;
  /** The client certificate's private key; required with `cert`. */
  readonly key?: string;
}

/**
 * What a client presents to the server. With `tls` set, the connection is
 * TLS or nothing: a server that offers no TLS is refused. Without it, the
 * client still upgrades when the server requires TLS, trusting the
 * system's roots.
 */
export interface NatsAccess {
  /** The credentials. @default none */
  readonly auth?: NatsAuth;
  /** TLS settings. @default TLS only if the server requires it */
  readonly tls?: NatsTls;
}

/**
 * Where `ps` and `worker` read their NATS access from: file paths and the
 * user name, as the command-line flags give them. Each secret that no flag
 * gives is read from its environment variable ({@linkcode NATS_ACCESS_ENV}).
 */
export interface NatsAccessSources {
  /** `--nats-user`: the user name. */
  readonly user?: string;
  /** `--nats-password-file`: a file holding the password. */
  readonly passwordFile?: string;
  /** `--nats-token-file`: a file holding the token. */
  readonly tokenFile?: string;
  /** `--nats-nkey-file`: a file holding an NKey user seed (`SU...`). */
  readonly nkeyFile?: string;
  /** `--nats-creds-file`: a creds file (user JWT and seed). */
  readonly credsFile?: string;
  /** `--nats-tls`: require TLS even with no other TLS option. */
  readonly tls?: boolean;
  /** `--nats-tls-ca`: CA certificates (PEM) for the server's certificate. */
  readonly tlsCaFile?: string;
  /** `--nats-tls-cert`: the client certificate (PEM). */
  readonly tlsCertFile?: string;
  /** `--nats-tls-key`: the client certificate's private key (PEM). */
  readonly tlsKeyFile?: string;
}

/**
 * The environment variables that hold NATS secrets when no flag names a
 * file for them. The local launcher passes each child its per-run user and
 * password through `user` and `password`.
 */
export const NATS_ACCESS_ENV = {
  /** The user name, when `--nats-user` is absent. */
  user: "DPTRAIN_NATS_USER",
  /** The password, when `--nats-password-file` is absent. */
  password: "DPTRAIN_NATS_PASSWORD",
  /** The token, when `--nats-token-file` is absent. */
  token: "DPTRAIN_NATS_TOKEN",
  /** The NKey user seed itself, when `--nats-nkey-file` is absent. */
  nkeySeed: "DPTRAIN_NATS_NKEY_SEED",
} as const;

/** The flag of each file source, for messages. */
const FLAGS = {
  user: "--nats-user",
  passwordFile: "--nats-password-file",
  tokenFile: "--nats-token-file",
  nkeyFile: "--nats-nkey-file",
  credsFile: "--nats-creds-file",
  tls: "--nats-tls",
  tlsCaFile: "--nats-tls-ca",
  tlsCertFile: "--nats-tls-cert",
  tlsKeyFile: "--nats-tls-key",
} as const;

/** A NATS access setting is missing, unreadable or malformed. */
export class NatsAccessError extends Error {
  /** Always `"NatsAccessError"`. */
  override readonly name = "NatsAccessError";
  /** The flag or environment variable at fault, e.g. `--nats-tls-ca`. */
  readonly source: string;

  /** Builds the error from its message and the source at fault. */
  constructor(message: string, options: { source: string; cause?: unknown }) {
    super(message, { cause: options.cause });
    this.source = options.source;
  }
}

/** Options of {@linkcode loadNatsAccess}. */
export interface LoadNatsAccessOptions {
  /** The environment to read secrets from. @default Deno.env.toObject() */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * Receives a warning when a secret file is readable by other users.
   * @default ignore
   */
  warn?: (message: string) => void;
}

/**
 * Reads the credentials and TLS files that `sources` names, and the
 * secrets no flag gives from the environment ({@linkcode NATS_ACCESS_ENV}).
 * A secret file's final newline is dropped.
 *
 * @throws {NatsAccessError} For a missing or empty file, a file that is
 *   not what its flag expects (PEM, NKey seed, creds), a password without
 *   a user or the reverse, a client certificate without its key, or two
 *   login methods at once; the message names the flag or variable.
 *
 * @example
 * ```ts ignore
 * const access = await loadNatsAccess(
 *   { user: "w0", passwordFile: "secrets/w0.password" },
 *   { warn: (message) => console.warn(message) },
 * );
 * ```
 */
export async function loadNatsAccess(
  sources: NatsAccessSources,
  options: LoadNatsAccessOptions = {},
): Promise<NatsAccess> {
  const { env = Deno.env.toObject(), warn = () => {} } = options;
  const fromEnv = (name: string) => {
    const value = env[name];
    return value === undefined || value === "" ? undefined : value;
  };
  const readSecret = async (
    flag: keyof typeof FLAGS,
    envName: string,
  ): Promise<{ value: string; source: string } | undefined> => {
    const path = sources[flag];
    if (typeof path === "string") {
      const text = await readText(path, FLAGS[flag], { secret: true, warn });
      return { value: text.replace(/\r?\n$/, ""), source: FLAGS[flag] };
    }
    const value = fromEnv(envName);
    return value === undefined ? undefined : { value, source: envName };
  };

  const envUser = fromEnv(NATS_ACCESS_ENV.user);
  const user = sources.user !== undefined
    ? { value: sources.user, source: FLAGS.user }
    : envUser === undefined
    ? undefined
    : { value: envUser, source: NATS_ACCESS_ENV.user };
  const password = await readSecret("passwordFile", NATS_ACCESS_ENV.password);
  const token = await readSecret("tokenFile", NATS_ACCESS_ENV.token);
  const nkeySeed = await readSecret("nkeyFile", NATS_ACCESS_ENV.nkeySeed);
  const credsPath = sources.credsFile;

  const methods = [
    user ?? password,
    token,
    nkeySeed,
    credsPath === undefined ? undefined : { source: FLAGS.credsFile },
  ].filter((method) => method !== undefined);
  if (methods.length > 1) {
    throw new NatsAccessError(
      "Cannot choose how to log in to NATS: " +
        `${methods.map((m) => m.source).join(" and ")} give different ` +
        "methods; keep one",
      { source: methods[1]!.source },
    );
  }

  let auth: NatsAuth | undefined;
  if (user !== undefined || password !== undefined) {
    auth = passwordAuth(user, password);
  } else if (token !== undefined) {
    checkNonEmpty(token.value, token.source);
    auth = { method: "token", token: token.value };
  } else if (nkeySeed !== undefined) {
    auth = { method: "nkey", seed: checkNkeySeed(nkeySeed) };
  } else if (credsPath !== undefined) {
    const text = await readText(credsPath, FLAGS.credsFile, {
      secret: true,
      warn,
    });
    auth = { method: "creds", creds: checkCreds(text, credsPath) };
  }

  const tls = await loadTls(sources, warn);
  return {
    ...(auth === undefined ? {} : { auth }),
    ...(tls === undefined ? {} : { tls }),
  };
}

/**
 * The options of the `nats` client's `connect` that carry `access`.
 *
 * @example
 * ```ts
 * import { natsConnectOptions } from "./nats_auth.ts";
 *
 * const options = natsConnectOptions({
 *   auth: { method: "token", token: "t0ken" },
 * });
 * console.assert(options.token === "t0ken");
 * ```
 */
export function natsConnectOptions(
  access: NatsAccess,
): Partial<ConnectionOptions> {
  const { auth, tls } = access;
  const options: Partial<ConnectionOptions> = {};

  switch (auth?.method) {
    case "password":
      options.user = auth.user;
      options.pass = auth.password;
      break;
    case "token":
      options.token = auth.token;
      break;
    case "nkey":
      options.authenticator = nkeyAuthenticator(auth.seed);
      break;
    case "creds":
      options.authenticator = credsAuthenticator(auth.creds);
      break;
  }
  if (tls !== undefined) {
    // An object, even empty, makes the client refuse a server without TLS.
    options.tls = {
      ...(tls.ca === undefined ? {} : { ca: tls.ca }),
      ...(tls.cert === undefined ? {} : { cert: tls.cert }),
      ...(tls.key === undefined ? {} : { key: tls.key }),
    };
  }
  return options;
}

/**
 * `access` in words, without secrets: `user "ps" with a password`,
 * `NKey UA...`, `no credentials`, plus the TLS settings.
 */
export function describeNatsAccess(access: NatsAccess): string {
  const { auth, tls } = access;
  let text: string;

  switch (auth?.method) {
    case undefined:
      text = "no credentials";
      break;
    case "password":
      text = `user ${JSON.stringify(auth.user)} with a password`;
      break;
    case "token":
      text = "a token";
      break;
    case "nkey":
      text = `NKey ${nkeyPublicKey(auth.seed)}`;
      break;
    case "creds":
      text = "a creds file";
      break;
  }
  if (tls !== undefined) {
    const parts = [
      tls.ca === undefined ? "system CAs" : "a given CA",
      ...(tls.cert === undefined ? [] : ["a client certificate"]),
    ];
    text += `, TLS required (${parts.join(", ")})`;
  }
  return text;
}

function passwordAuth(
  user: { value: string; source: string } | undefined,
  password: { value: string; source: string } | undefined,
): NatsAuth {
  if (user === undefined) {
    throw new NatsAccessError(
      `Cannot log in to NATS: a password (from ${password!.source}) ` +
        `needs a user name: ${FLAGS.user} or ${NATS_ACCESS_ENV.user}`,
      { source: password!.source },
    );
  }
  if (password === undefined) {
    throw new NatsAccessError(
      `Cannot log in to NATS as ${JSON.stringify(user.value)}: no ` +
        `password; give ${FLAGS.passwordFile} or set ` +
        NATS_ACCESS_ENV.password,
      { source: user.source },
    );
  }
  checkNonEmpty(user.value, user.source);
  checkNonEmpty(password.value, password.source);
  return { method: "password", user: user.value, password: password.value };
}

async function loadTls(
  sources: NatsAccessSources,
  warn: (message: string) => void,
): Promise<NatsTls | undefined> {
  const { tls = false, tlsCaFile, tlsCertFile, tlsKeyFile } = sources;

  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    const [given, missing] = tlsCertFile === undefined
      ? [FLAGS.tlsKeyFile, FLAGS.tlsCertFile]
      : [FLAGS.tlsCertFile, FLAGS.tlsKeyFile];
    throw new NatsAccessError(
      `Cannot set up TLS for NATS: ${given} needs ${missing} too`,
      { source: given },
    );
  }
  if (!tls && [tlsCaFile, tlsCertFile].every((f) => f === undefined)) {
    return undefined;
  }

  const pem = async (
    path: string | undefined,
    flag: "tlsCaFile" | "tlsCertFile" | "tlsKeyFile",
    field: keyof NatsTls,
  ): Promise<Partial<Record<keyof NatsTls, string>>> => {
    if (path === undefined) return {};
    const text = await readText(path, FLAGS[flag], {
      secret: field === "key",
      warn,
    });
    if (!text.includes("-----BEGIN ")) {
      throw new NatsAccessError(
        `Cannot set up TLS for NATS: ${FLAGS[flag]} ${path} is not a PEM ` +
          'file (no "-----BEGIN" line)',
        { source: FLAGS[flag] },
      );
    }
    return { [field]: text };
  };
  return {
    ...await pem(tlsCaFile, "tlsCaFile", "ca"),
    ...await pem(tlsCertFile, "tlsCertFile", "cert"),
    ...await pem(tlsKeyFile, "tlsKeyFile", "key"),
  };
}

async function readText(
  path: string,
  flag: string,
  options: { secret: boolean; warn: (message: string) => void },
): Promise<string> {
  let text: string;
  let mode: number | null;
  try {
    text = await Deno.readTextFile(path);
    mode = (await Deno.stat(path)).mode;
  } catch (error) {
    throw new NatsAccessError(
      `Cannot read ${flag} ${path}: ${(error as Error).message}`,
      { source: flag, cause: error },
    );
  }

  if (text.trim() === "") {
    throw new NatsAccessError(`Cannot use ${flag} ${path}: it is empty`, {
      source: flag,
    });
  }
  if (options.secret && mode !== null && (mode & 0o077) !== 0) {
    options.warn(
      `${flag} ${path} is readable by other users (mode ` +
        `${(mode & 0o777).toString(8)}); chmod 600 it`,
    );
  }
  return text;
}

function checkNonEmpty(value: string, source: string): void {
  if (value === "") {
    throw new NatsAccessError(`Cannot log in to NATS: ${source} is empty`, {
      source,
    });
  }
}

function checkNkeySeed(seed: { value: string; source: string }): Uint8Array {
  const bytes = new TextEncoder().encode(seed.value.trim());
  try {
    nkeyPublicKey(bytes);
  } catch (error) {
    throw new NatsAccessError(
      `Cannot log in to NATS: ${seed.source} is not an NKey user seed ` +
        `(one line starting "SU"): ${(error as Error).message}`,
      { source: seed.source, cause: error },
    );
  }
  return bytes;
}

function nkeyPublicKey(seed: Uint8Array): string {
  const pair = nkeys.fromSeed(seed) as { getPublicKey(): string };
  const publicKey = pair.getPublicKey();
  if (!publicKey.startsWith("U")) {
    throw new TypeError(
      `it is the seed of ${publicKey.slice(0, 1)}... key, not of a user`,
    );
  }
  return publicKey;
}

// The shape nsc writes: a JWT block, then a seed block.
function checkCreds(text: string, path: string): Uint8Array {
  const hasJwt = /-----BEGIN NATS USER JWT-----\s*\n\s*\S+/.test(text);
  const hasSeed = /-----BEGIN USER NKEY SEED-----\s*\n\s*SU\S+/.test(text);
  if (!hasJwt || !hasSeed) {
    throw new NatsAccessError(
      `Cannot log in to NATS: ${FLAGS.credsFile} ${path} is not a creds ` +
        `file (it needs a "BEGIN NATS USER JWT" block and a "BEGIN USER ` +
        `NKEY SEED" block, as nsc writes)`,
      { source: FLAGS.credsFile },
    );
  }
  return new TextEncoder().encode(text);
}
