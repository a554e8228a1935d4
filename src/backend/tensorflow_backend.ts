/**
 * The native `tensorflow` backend from `@tensorflow/tfjs-node-gpu` or
 * `@tensorflow/tfjs-node` (see docs/gpu.md for installing them under Deno).
 *
 * The packages are imported by bare specifier, so only an install that
 * the project's import map knows about is used (`deno add
 * npm:@tensorflow/tfjs-node-gpu@4.22.0`, then allowing its install
 * script). A missing package fails at once with "not a dependency and not
 * in import map", instead of `auto` fetching ~1 MB of npm packages and
 * rewriting deno.lock on every machine without a GPU (which an `npm:`
 * specifier would do; its install script would not run, so it would then
 * fail anyway on the absent native addon).
 *
 * tfjs-node depends on `@tensorflow/tfjs` 4.22.0, whose tfjs-core resolves
 * to the same npm package (one copy, loaded once) as the project's
 * "@tensorflow/tfjs-core"; the backend it registers is checked to be
 * visible from this module's tfjs-core, so two tfjs engines cannot pass
 * unnoticed.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { describeError } from "./errors.ts";

/** Which native package. */
export type TensorflowPackage = "tfjs-node-gpu" | "tfjs-node";

/** The outcome of trying one native package. */
export type TensorflowAttempt =
  | { ok: true; detail: string; device?: string }
  | { ok: false; reason: string };

type Importer = (specifier: string) => Promise<unknown>;

const defaultImporter: Importer = (specifier) => import(specifier);

/**
 * Imports `@tensorflow/<pkg>` and makes `tensorflow` the active backend.
 * `gpu` (tfjs-node-gpu only) sets CUDA_VISIBLE_DEVICES before the import,
 * when the environment does not set it already.
 */
export async function tryTensorflow(
  pkg: TensorflowPackage,
  options: { gpu?: string; importer?: Importer } = {},
): Promise<TensorflowAttempt> {
  const { gpu, importer = defaultImporter } = options;
  const specifier = `@tensorflow/${pkg}`;
  if (pkg === "tfjs-node-gpu" && gpu !== undefined) {
    if (Deno.env.get("CUDA_VISIBLE_DEVICES") === undefined) {
      Deno.env.set("CUDA_VISIBLE_DEVICES", gpu);
    }
  }

  try {
    await importer(specifier);
  } catch (error) {
    return { ok: false, reason: `${specifier}: ${describeError(error)}` };
  }

  if (tf.findBackendFactory("tensorflow") == null) {
    return {
      ok: false,
      reason: `${specifier} loaded but registered no 'tensorflow' backend ` +
        `with this process's @tensorflow/tfjs-core (a second tfjs-core copy?)`,
    };
  }
  try {
    if (!await tf.setBackend("tensorflow")) {
      return { ok: false, reason: `${specifier}: backend failed to start` };
    }
  } catch (error) {
    return { ok: false, reason: `${specifier}: ${describeError(error)}` };
  }

  const visible = Deno.env.get("CUDA_VISIBLE_DEVICES");
  return {
    ok: true,
    detail: `${specifier} (libtensorflow, native)`,
    device: pkg === "tfjs-node-gpu"
      ? `CUDA_VISIBLE_DEVICES=${visible ?? "(all)"}`
      : "host CPU",
  };
}
