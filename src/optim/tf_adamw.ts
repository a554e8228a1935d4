/**
 * AdamW as a tfjs `Optimizer`, for `model.compile({ optimizer })` and
 * `model.fit` in a single process. Same config, rules, schedule and
 * arithmetic as `FlatAdamW`: the element operations run in the same order
 * (see `_wasm_kernel.ts`), so on the cpu backend both forms produce the same
 * bits, and elsewhere they agree to float32 rounding.
 *
 * The schedule's step is this optimizer's `iterations`.
 *
 * Guarding against non-finite gradients needs the gradient norm before the
 * update. On backends that read synchronously (cpu, wasm, tensorflow) each
 * call reads one small float32 vector back, skips a bad step outright and
 * reports it at once. Elsewhere (webgpu, whose synchronous read needs an
 * OffscreenCanvas that Deno lacks) the guard runs on the device: every
 * tensor update is a `where(finite, new, old)`, so a bad step still changes
 * nothing, but `iterations` and the bias-correction counts advance, and the
 * outcome is reported once the norm has been read asynchronously.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import type { ConfigDict, NamedTensorMap, Tensor } from "../_tfjs_types.ts";
import { configForSave, globalNorm, refreshCount } from "./_tf_helpers.ts";
import { stepCoefficients } from "./coefficients.ts";
import { parseOptimizerConfig } from "./config.ts";
import { OptimizerStateError } from "./errors.ts";
import { resolveVariables, type VariablePlan } from "./rules.ts";
import { makeSchedule, type Schedule } from "./schedule.ts";
import type { StepOutcome } from "./flat_adamw.ts";
import type { OptimizerConfig } from "./types.ts";

/** A named tensor, as tfjs optimizers exchange their weights. */
export interface NamedTensor {
  /** Variable name, or a state key such as `<var>/m` or `iter`. */
  name: string;
  /** The value, e.g. a gradient or a moment. */
  tensor: Tensor;
}

/** A tfjs-layers weight: its unique variable name and its original one. */
export interface NamedWeight {
  /** The registered tf.Variable name (may carry a `_1` suffix). */
  name: string;
  /** The name rules match, e.g. `block_1_expand/kernel`. */
  originalName: string;
}

/** Options of {@linkcode AdamW}. */
export interface AdamWOptions {
  /** A parsed config (`parseOptimizerConfig`). */
  config: OptimizerConfig;
  /** Workers; scale the schedule's peak when asked. @default 1 */
  workers?: number;
  /** Optimizer steps (batches) per epoch. */
  stepsPerEpoch: number;
  /** Optimizer steps in the run. */
  totalSteps: number;
  /**
   * The model's weights (`model.weights`), so that rules and saved moments
   * use original names; without it, variable names are used as they are.
   */
  weights?: readonly NamedWeight[];
  /** Called after every step, applied or skipped. */
  onStep?: (outcome: StepOutcome & { step: number }) => void;
  /**
   * How the gradient norm reaches the guard: `sync` reads it back, `device`
   * keeps the guard on the device. @default "sync" on the cpu, wasm and
   * tensorflow backends, "device" elsewhere
   */
  guard?: "sync" | "device";
}

/** Backends whose synchronous reads work in Deno. */
const SYNC_BACKENDS = ["cpu", "wasm", "tensorflow"];

interface TfSlot {
  plan: VariablePlan;
  firstMoment: tf.Variable;
  secondMoment: tf.Variable;
  count: number;
  /** Created on the first `getWeights`, so saving allocates nothing new. */
  countTensor: tf.Variable | null;
}

interface SavedMoments {
  m: tf.Variable;
  v: tf.Variable;
  count: number;
  countTensor: tf.Variable | null;
}

// tfjs's `Optimizer` under a local name: `deno doc --lint` flags every npm
// type as private (denoland/deno#27364), and `@internal` must sit on the
// binding itself for the linter to skip it.
const /** @internal */ OptimizerBase = tf.Optimizer;

/**
 * AdamW with per-variable rates, decoupled decay and a schedule, as a tfjs
 * optimizer. `getWeights`/`setWeights` carry the step and the moments keyed
 * by original name (`<var>/m`, `<var>/v`, `<var>/t`); the returned moment
 * tensors belong to the optimizer, do not dispose them.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import "@tensorflow/tfjs-backend-cpu";
 * import { buildMobileNetV2 } from "../model/mobilenet_v2.ts";
 * import { AdamW } from "./tf_adamw.ts";
 * import { parseOptimizerConfig } from "./config.ts";
 *
 * await tf.setBackend("cpu");
 * const model = buildMobileNetV2({ alpha: 0.35, imageSize: 96 });
 * const optimizer = new AdamW({
 *   config: parseOptimizerConfig({ preset: "reference" }),
 *   stepsPerEpoch: 175, totalSteps: 13 * 175, weights: model.weights,
 * });
 * model.compile({ optimizer, loss: "categoricalCrossentropy" });
 * optimizer.dispose();
 * model.dispose();
 * ```
 */
export class AdamW extends OptimizerBase {
  /**
   * The name tfjs's serialization registry knows the class by.
   *
   * @nocollapse
   */
  static get className(): string {
    return "AdamW";
  }

  /** The parsed optimizer config it was built with. */
  readonly config: OptimizerConfig;
  /** The learning-rate schedule bound to this run's workers and steps. */
  readonly schedule: Schedule;
  /** Data-parallel workers the schedule's peak may scale with. */
  readonly workers: number;
  /** Optimizer steps (batches) per epoch. */
  readonly stepsPerEpoch: number;
  /** Optimizer steps in the run. */
  readonly totalSteps: number;
  #originalNames = new Map<string, string>();
  #plans = new Map<string, VariablePlan>();
  #slots = new Map<string, TfSlot>();
  #saved = new Map<string, SavedMoments>();
  #onStep: AdamWOptions["onStep"];
  #guard: AdamWOptions["guard"];
  #lastOutcome: StepOutcome | null = null;

  /**
   * Binds the schedule to the run and records the weights' original names;
   * the moments are created on each variable's first gradient.
   *
   * @throws {RangeError} for a bad `workers`, `stepsPerEpoch` or
   * `totalSteps`.
   */
  constructor(options: AdamWOptions) {
    super();
    const { config, workers = 1, stepsPerEpoch, totalSteps, weights = [] } =
      options;
    this.config = config;
    this.workers = workers;
    this.stepsPerEpoch = stepsPerEpoch;
    this.totalSteps = totalSteps;
    this.schedule = makeSchedule(config.schedule, {
      workers,
      stepsPerEpoch,
      totalSteps,
    });
    this.#onStep = options.onStep;
    this.#guard = options.guard;
    this.bindNames(weights);
  }

  /** Maps registered variable names to original names (e.g. after load). */
  bindNames(weights: readonly NamedWeight[]): void {
    for (const { name, originalName } of weights) {
      this.#originalNames.set(name, originalName);
    }
  }

  /** What the last `applyGradients` did, or null before the first. */
  get lastOutcome(): StepOutcome | null {
    return this.#lastOutcome;
  }

  /** Applies one step; skips it (reported) on a non-finite gradient. */
  applyGradients(
    variableGradients: NamedTensorMap | NamedTensor[],
  ): void {
    const step = this.iterations;
    const lr = this.schedule.at(step);
    const trained = this.#trained(variableGradients);
    const guard = this.#guard ??
      (SYNC_BACKENDS.includes(tf.getBackend()) ? "sync" : "device");
    if (guard === "device") {
      this.#applyWithDeviceGuard({ trained, step, lr });
      return;
    }

    const gradNorm = globalNorm(trained.map(({ grad }) => grad));
    if (!Number.isFinite(gradNorm)) {
      const bad = trained
        .filter(({ grad }) =>
          !tf.tidy(() => tf.all(tf.isFinite(grad)).dataSync()[0])
        )
        .map(({ plan }) => `"${plan.name}"`);
      this.#report({
        applied: false,
        reason: `non-finite gradient in ${bad.slice(0, 3).join(", ")}` +
          `${bad.length > 3 ? ` and ${bad.length - 3} more` : ""}; ` +
          "step skipped",
        lr,
        gradNorm,
        clipped: false,
      }, step);
      return;
    }

    const clip = this.config.clipGlobalNorm;
    const clipped = clip !== null && gradNorm > clip;
    const gradScale = clipped ? clip / gradNorm : 1;

    tf.tidy(() => {
      for (const { plan, variable, grad } of trained) {
        this.#update({ plan, variable, grad, lr, gradScale });
      }
    });
    this.incrementIterations();
    this.#report({ applied: true, lr, gradNorm, clipped }, step);
  }

  /** The same step with the norm, clip and skip computed on the device. */
  #applyWithDeviceGuard(args: {
    trained: Array<
      { plan: VariablePlan; variable: tf.Variable; grad: tf.Tensor }
    >;
    step: number;
    lr: number;
  }): void {
    const { trained, step, lr } = args;
    const clip = this.config.clipGlobalNorm;
    const norm = tf.tidy(() => {
      const squares = trained.map(({ grad }) => tf.sum(tf.mul(grad, grad)));
      const gradNorm = tf.sqrt(
        squares.length === 0 ? tf.scalar(0) : tf.addN(squares),
      );
      const finite = tf.isFinite(gradNorm);
      const gradScale = clip === null
        ? tf.scalar(1)
        : tf.div(clip, tf.maximum(gradNorm, clip));
      for (const { plan, variable, grad } of trained) {
        this.#update({ plan, variable, grad, lr, gradScale, finite });
      }
      return gradNorm;
    });
    this.incrementIterations();

    norm.data().then(
      (values) => {
        const gradNorm = values[0]!;
        const applied = Number.isFinite(gradNorm);
        this.#report({
          applied,
          ...(applied ? {} : {
            reason: "non-finite gradient norm; step skipped on the device",
          }),
          lr,
          gradNorm,
          clipped: applied && clip !== null && gradNorm > clip,
        }, step);
      },
      (error: unknown) =>
        this.#report({
          applied: false,
          reason: `could not read the gradient norm back: ${error}`,
          lr,
          gradNorm: Number.NaN,
          clipped: false,
        }, step),
    ).finally(() => norm.dispose());
  }

  #report(outcome: StepOutcome, step: number): void {
    this.#lastOutcome = outcome;
    this.#onStep?.({ ...outcome, step });
  }

  /** The gradients of variables that are trained, with their plans. */
  #trained(
    variableGradients: NamedTensorMap | NamedTensor[],
  ): Array<{ plan: VariablePlan; variable: tf.Variable; grad: tf.Tensor }> {
    const entries: Array<[string, tf.Tensor | null | undefined]> =
      Array.isArray(variableGradients)
        ? variableGradients.map((v) => [v.name, v.tensor])
        : Object.entries(variableGradients);

    const trained = [];
    for (const [name, grad] of entries) {
      if (grad == null) continue;
      const variable = tf.engine().registeredVariables[name];
      if (variable === undefined) {
        throw new OptimizerStateError(
          `Cannot apply gradients: no registered variable "${name}"`,
          { variable: name },
        );
      }
      const plan = this.#plan(name, variable.shape);
      if (!plan.frozen) trained.push({ plan, variable, grad });
    }
    return trained;
  }

  #plan(variableName: string, shape: number[]): VariablePlan {
    const name = this.#originalNames.get(variableName) ?? variableName;
    let plan = this.#plans.get(name);
    if (plan === undefined) {
      plan = resolveVariables([{ name, shape }], this.config)[0]!;
      this.#plans.set(name, plan);
    }
    return plan;
  }

  #update(args: {
    plan: VariablePlan;
    variable: tf.Variable;
    grad: tf.Tensor;
    lr: number;
    gradScale: number | tf.Tensor;
    /** Device guard: keep the old values unless this is true. */
    finite?: tf.Tensor;
  }): void {
    const { plan, variable, grad, lr, gradScale, finite } = args;
    const slot = this.#slot(plan, variable);
    const c = stepCoefficients({
      config: this.config,
      rate: lr,
      peak: this.schedule.peak,
      multiplier: plan.multiplier,
      decayed: plan.decayed,
      t: slot.count + 1,
      totalSteps: this.totalSteps,
    });

    // Same operations, same order as the flat kernel (float32 each).
    const gradient = tf.mul(grad, gradScale);
    const firstMoment = tf.add(
      tf.mul(slot.firstMoment, c.beta1),
      tf.mul(gradient, c.oneMinusBeta1),
    );
    const secondMoment = tf.add(
      tf.mul(slot.secondMoment, c.beta2),
      tf.mul(tf.mul(gradient, gradient), c.oneMinusBeta2),
    );
    const denominator = tf.add(
      tf.mul(tf.sqrt(secondMoment), c.denomScale),
      c.epsilon,
    );
    const update = tf.add(
      tf.mul(tf.div(firstMoment, denominator), c.stepSize),
      tf.mul(variable, c.decay),
    );

    const guarded = (next: tf.Tensor, old: tf.Tensor) =>
      finite === undefined ? next : tf.where(finite, next, old);
    slot.firstMoment.assign(guarded(firstMoment, slot.firstMoment));
    slot.secondMoment.assign(guarded(secondMoment, slot.secondMoment));
    variable.assign(guarded(tf.sub(variable, update), variable));
    slot.count += 1;
  }

  #slot(plan: VariablePlan, variable: tf.Variable): TfSlot {
    const existing = this.#slots.get(plan.name);
    if (existing !== undefined) return existing;

    const saved = this.#saved.get(plan.name);
    if (
      saved !== undefined && !tf.util.arraysEqual(saved.m.shape, plan.shape)
    ) {
      throw new OptimizerStateError(
        `Cannot restore optimizer state: "${plan.name}/m" has shape ` +
          `${JSON.stringify(saved.m.shape)}, and the variable has ` +
          `${JSON.stringify(plan.shape)}`,
        { variable: plan.name },
      );
    }
    this.#saved.delete(plan.name);
    const slot: TfSlot = {
      countTensor: saved?.countTensor ?? null,
      plan,
      firstMoment: saved?.m ??
        tf.tidy(() => tf.zerosLike(variable).variable(false)),
      secondMoment: saved?.v ??
        tf.tidy(() => tf.zerosLike(variable).variable(false)),
      count: saved?.count ?? 0,
    };
    this.#slots.set(plan.name, slot);
    return slot;
  }

  /** `iter`, then `<var>/m`, `<var>/v`, `<var>/t` for each variable. */
  override async getWeights(): Promise<NamedTensor[]> {
    const weights: NamedTensor[] = [await this.saveIterations()];
    for (const slot of this.#slots.values()) {
      slot.countTensor = refreshCount(slot.countTensor, slot.count);
      weights.push(
        { name: `${slot.plan.name}/m`, tensor: slot.firstMoment },
        { name: `${slot.plan.name}/v`, tensor: slot.secondMoment },
        { name: `${slot.plan.name}/t`, tensor: slot.countTensor },
      );
    }
    for (const [name, saved] of this.#saved) {
      saved.countTensor = refreshCount(saved.countTensor, saved.count);
      weights.push(
        { name: `${name}/m`, tensor: saved.m },
        { name: `${name}/v`, tensor: saved.v },
        { name: `${name}/t`, tensor: saved.countTensor },
      );
    }
    return weights;
  }

  /**
   * Restores `iter` and moments by name. Moments of variables not seen yet
   * are kept and adopted when their first gradient arrives (shape checked).
   */
  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const rest = await this.extractIterations(weightValues);
    const groups = new Map<
      string,
      { m?: tf.Tensor; v?: tf.Tensor; t?: number }
    >();
    for (const { name, tensor } of rest) {
      const match = /^(.+)\/([mvt])$/.exec(name);
      if (match === null) {
        throw new OptimizerStateError(
          `Cannot restore optimizer weights: "${name}" must end in ` +
            `"/m", "/v" or "/t"`,
          { variable: name },
        );
      }
      const [, variable, part] = match;
      const group = groups.get(variable!) ?? {};
      if (part === "t") group.t = (await tensor.data())[0]!;
      else group[part as "m" | "v"] = tensor;
      groups.set(variable!, group);
    }

    for (const [name, group] of groups) {
      if (group.m === undefined || group.v === undefined) {
        throw new OptimizerStateError(
          `Cannot restore optimizer weights: "${name}" needs both "/m" and ` +
            `"/v"`,
          { variable: name },
        );
      }
    }

    this.#disposeMoments();
    for (const [name, { m, v, t }] of groups) {
      this.#saved.set(name, {
        m: m!.variable(false),
        v: v!.variable(false),
        count: t ?? this.iterations,
        countTensor: null,
      });
    }
  }

  /** Frees the moment and count tensors the optimizer holds. */
  override dispose(): void {
    this.#disposeMoments();
    super.dispose();
  }

  #disposeMoments(): void {
    for (const slot of this.#slots.values()) {
      tf.dispose([slot.firstMoment, slot.secondMoment]);
      if (slot.countTensor !== null) slot.countTensor.dispose();
    }
    for (const saved of this.#saved.values()) {
      tf.dispose([saved.m, saved.v]);
      if (saved.countTensor !== null) saved.countTensor.dispose();
    }
    this.#slots.clear();
    this.#saved.clear();
  }

  /** The config, workers and step counts; what `fromConfig` rebuilds from. */
  getConfig(): ConfigDict {
    return {
      config: configForSave(this.config),
      workers: this.workers,
      stepsPerEpoch: this.stepsPerEpoch,
      totalSteps: this.totalSteps,
    };
  }

  /**
   * Rebuilds an optimizer from {@linkcode AdamW.getConfig}'s output; moments
   * and the step come back separately, through `setWeights`.
   *
   * @nocollapse
   */
  static override fromConfig<T extends tf.serialization.Serializable>(
    cls: tf.serialization.SerializableConstructor<T>,
    config: ConfigDict,
  ): T {
    const options: AdamWOptions = {
      config: parseOptimizerConfig(config.config, "AdamW.fromConfig"),
      workers: config.workers as number,
      stepsPerEpoch: config.stepsPerEpoch as number,
      totalSteps: config.totalSteps as number,
    };
    return new (cls as unknown as new (o: AdamWOptions) => T)(options);
  }
}

tf.serialization.registerClass(AdamW);
