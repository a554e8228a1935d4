/**
 * Command-line flags shared by `demo`, `cluster`, `ps` and `worker`. Flags
 * override the config file, which overrides the defaults.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { ConfigOverrides } from "../src/config.ts";
import type { NatsAccessSources } from "../src/transport/nats_auth.ts";

/** The parsed command line. */
export interface CommandLine {
  help: boolean;
  config: string | null;
  overrides: ConfigOverrides;
  /** NATS server URL (`ps`, `worker`); the launcher starts its own. */
  nats: string | null;
  runId: string | null;
  rank: number | null;
  /** Device ids for one worker each, e.g. `0,1,2,3`. */
  gpus: string[] | null;
  /** Checkpoint to resume from (`ps`, `cluster`). */
  resume: string | null;
  /** Debug-level logs. */
  verbose: boolean;
  /**
   * Where `ps` and `worker` find their NATS credentials and TLS files;
   * secrets no flag names come from `DPTRAIN_NATS_*` variables.
   */
  natsAccess: NatsAccessSources;
  /** `cluster`/`demo`: run the local nats-server without authorization. */
  noAuth: boolean;
}

/** A flag that is unknown or has a bad value. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  config: { type: "string" },
  workers: { type: "string" },
  epochs: { type: "string" },
  "max-steps": { type: "string" },
  "image-size": { type: "string" },
  alpha: { type: "string" },
  weights: { type: "string" },
  seed: { type: "string" },
  backend: { type: "string" },
  out: { type: "string" },
  batch: { type: "string" },
  "batch-norm": { type: "string" },
  data: { type: "string" },
  nats: { type: "string" },
  "run-id": { type: "string" },
  rank: { type: "string" },
  gpus: { type: "string" },
  resume: { type: "string" },
  verbose: { type: "boolean", short: "v" },
  "nats-user": { type: "string" },
  "nats-password-file": { type: "string" },
  "nats-token-file": { type: "string" },
  "nats-nkey-file": { type: "string" },
  "nats-creds-file": { type: "string" },
  "nats-tls": { type: "boolean" },
  "nats-tls-ca": { type: "string" },
  "nats-tls-cert": { type: "string" },
  "nats-tls-key": { type: "string" },
  "no-auth": { type: "boolean" },
} as const;

function toNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`--${flag} expects a number, got "${value}"`);
  }
  return n;
}

/** Parses flags; unknown flags and bad numbers throw {@linkcode UsageError}. */
export function parseCommandLine(args: string[]): CommandLine {
  let values;
  try {
    ({ values } = parseArgs({ args, options: OPTIONS, strict: true }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }

  const overrides: ConfigOverrides = {
    workers: toNumber("workers", values.workers),
    epochs: toNumber("epochs", values.epochs),
    maxSteps: toNumber("max-steps", values["max-steps"]),
    imageSize: toNumber("image-size", values["image-size"]),
    alpha: toNumber("alpha", values.alpha),
    weights: values.weights,
    seed: toNumber("seed", values.seed),
    backend: values.backend,
    out: values.out,
    batch: toNumber("batch", values.batch),
    batchNorm: values["batch-norm"],
    data: values.data,
  };
  for (const key of Object.keys(overrides) as (keyof ConfigOverrides)[]) {
    if (overrides[key] === undefined) delete overrides[key];
  }

  const gpus = values.gpus === undefined
    ? null
    : values.gpus.split(",").map((g) => g.trim()).filter((g) => g !== "");
  if (gpus !== null && gpus.length === 0) {
    throw new UsageError("--gpus expects a list of device ids, e.g. 0,1");
  }

  return {
    help: values.help ?? false,
    config: values.config ?? null,
    overrides,
    nats: values.nats ?? null,
    runId: values["run-id"] ?? null,
    rank: toNumber("rank", values.rank) ?? null,
    gpus,
    resume: values.resume ?? null,
    verbose: values.verbose ?? false,
    natsAccess: natsAccessSources(values),
    noAuth: values["no-auth"] ?? false,
  };
}

function natsAccessSources(
  values: Partial<Record<keyof typeof OPTIONS, string | boolean>>,
): NatsAccessSources {
  const pick = (flag: keyof typeof OPTIONS) => {
    const value = values[flag];
    return typeof value === "string" ? value : undefined;
  };
  const sources = {
    user: pick("nats-user"),
    passwordFile: pick("nats-password-file"),
    tokenFile: pick("nats-token-file"),
    nkeyFile: pick("nats-nkey-file"),
    credsFile: pick("nats-creds-file"),
    tls: values["nats-tls"] === true ? true : undefined,
    tlsCaFile: pick("nats-tls-ca"),
    tlsCertFile: pick("nats-tls-cert"),
    tlsKeyFile: pick("nats-tls-key"),
  };
  return Object.fromEntries(
    Object.entries(sources).filter(([, value]) => value !== undefined),
  ) as NatsAccessSources;
}

/** Whether `sources` names any NATS credential or TLS setting. */
export function hasNatsAccessFlags(sources: NatsAccessSources): boolean {
  return Object.keys(sources).length > 0;
}

/** Flags every command takes, for `--help`. */
export const COMMON_FLAGS =
  `Flags (they override --config, which overrides the defaults):
  --config FILE        job config (JSON: model, data, train, optimizer)
  --workers N          worker processes (ranks)             [2]
  --epochs N           epochs to train                      [3]
  --max-steps N        stop after N steps, still writing all results
  --batch N            examples per worker per step         [8]
  --image-size PX      square input size, 32..224           [224]
  --alpha A            width: 0.35, 0.5, 0.75, 1.0          [1.0]
  --weights SRC        bundled | nsfwjs | imagenet | none | PATH  [bundled]
  --batch-norm MODE    train | frozen                       [frozen]
  --data DIR           image folder                 [assets/data/flowers5]
  --seed N             seed of shuffling, flips, init       [42]
  --backend NAME       auto | tensorflow | webgpu | wasm | cpu   [auto]
  --out DIR            results folder                  [runs/<run id>]
  --run-id ID          run id (subject prefix on NATS)   [generated]
  -v, --verbose        debug logs (also DPTRAIN_LOG=debug)
  -h, --help           this help`;

/** NATS access flags of `ps` and `worker`, for `--help`. */
export const NATS_ACCESS_FLAGS =
  `NATS access (ps, worker; secrets from files or the environment, never
flags, which other users see in ps):
  --nats-user NAME           user name       [env DPTRAIN_NATS_USER]
  --nats-password-file FILE  its password    [env DPTRAIN_NATS_PASSWORD]
  --nats-token-file FILE     a token         [env DPTRAIN_NATS_TOKEN]
  --nats-nkey-file FILE      an NKey user seed (SU...)
                                             [env DPTRAIN_NATS_NKEY_SEED]
  --nats-creds-file FILE     a creds file (user JWT + seed, from nsc)
  --nats-tls                 refuse a server without TLS
  --nats-tls-ca FILE         CA (PEM) of the server's certificate
  --nats-tls-cert FILE       client certificate (PEM), with --nats-tls-key
  --nats-tls-key FILE        its private key (PEM)
See docs/security.md.`;
