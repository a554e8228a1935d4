/**
 * Test helper: a throwaway NATS operator, account and user as JWTs signed
 * with fresh NKeys (the format `nsc` writes, v2 claims), and the user's
 * creds file. Enough for nats-server's operator mode with a memory
 * resolver; no expiry, no revocations, no system account.
 *
 * @module
 */
import { nkeys } from "nats";

/** Signs with an NKey: the part of the `nats` client's KeyPair used here. */
interface Signer {
  getPublicKey(): string;
  getSeed(): Uint8Array;
  sign(data: Uint8Array): Uint8Array;
}

/** What {@linkcode makeOperatorSetup} made. */
export interface OperatorSetup {
  /** For `startNatsServer({ operator })`. */
  operator: { jwt: string; accounts: Record<string, string> };
  /** The user's public NKey. */
  userKey: string;
  /** The user's creds file contents (JWT and seed blocks). */
  creds: string;
}

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function signJwt(claims: Record<string, unknown>, issuer: Signer): string {
  const encode = (value: unknown) =>
    base64url(new TextEncoder().encode(JSON.stringify(value)));
  const body = `${encode({ typ: "JWT", alg: "ed25519-nkey" })}.${
    encode(claims)
  }`;
  return `${body}.${base64url(issuer.sign(new TextEncoder().encode(body)))}`;
}

/**
 * An operator, one account it signed, and one user of that account whose
 * JWT allows publishing only on `publish` and subscribing only to
 * `subscribe`.
 */
export function makeOperatorSetup(
  permissions: { publish: string[]; subscribe: string[] },
): OperatorSetup {
  const operator = nkeys.createOperator() as Signer;
  const account = nkeys.createAccount() as Signer;
  const user = nkeys.createUser() as Signer;
  const iat = Math.floor(Date.now() / 1000);
  const claims = (name: string, issuer: Signer, subject: Signer) => ({
    jti: crypto.randomUUID().replace(/-/g, "").toUpperCase(),
    iat,
    iss: issuer.getPublicKey(),
    name,
    sub: subject.getPublicKey(),
  });
  const unlimited = { subs: -1, data: -1, payload: -1 };

  const operatorJwt = signJwt({
    ...claims("test operator", operator, operator),
    nats: { type: "operator", version: 2 },
  }, operator);
  const accountJwt = signJwt({
    ...claims("test account", operator, account),
    nats: {
      limits: {
        ...unlimited,
        imports: -1,
        exports: -1,
        wildcards: true,
        conn: -1,
        leaf: -1,
      },
      default_permissions: { pub: {}, sub: {} },
      type: "account",
      version: 2,
    },
  }, operator);
  const userJwt = signJwt({
    ...claims("test user", account, user),
    nats: {
      pub: { allow: permissions.publish },
      sub: { allow: permissions.subscribe },
      ...unlimited,
      type: "user",
      version: 2,
    },
  }, account);

  const seed = new TextDecoder().decode(user.getSeed());
  return {
    operator: {
      jwt: operatorJwt,
      accounts: { [account.getPublicKey()]: accountJwt },
    },
    userKey: user.getPublicKey(),
    creds: "-----BEGIN NATS USER JWT-----\n" +
      `${userJwt}\n------END NATS USER JWT------\n\n` +
      "-----BEGIN USER NKEY SEED-----\n" +
      `${seed}\n------END USER NKEY SEED------\n`,
  };
}
