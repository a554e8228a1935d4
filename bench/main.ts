/**
 * `deno task bench`: MobileNetV2 images/s per available tfjs backend,
 * forward only and full training step, with the ratios the wasm kernels
 * are judged by, plus the flat AdamW step time.
 *
 * Usage:
 *   deno task bench [--json] [--quick] [--backends wasm,cpu,webgpu,tensorflow]
 *                   [--sizes 128,224] [--batch 8] [--iterations 3]
 *   deno task bench --kernels [--json]   (gradient formulations on wasm)
 *
 * Fast backends (tensorflow, wasm, webgpu on a hardware adapter) run alpha
 * 1.0 at every size; the slow ones (cpu, webgpu on a software adapter)
 * run one small case (64 px, batch 4, one timed iteration), which wasm
 * also runs so that their ratio compares equal work. wasm also runs
 * alpha 0.35 at 96/128/160 px, the demo's likely sizes.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { parseArgs } from "node:util";
import { selectBackend } from "../src/backend/mod.ts";
import { probeWebGpu } from "../src/backend/webgpu_backend.ts";
import {
  type BenchCase,
  type BenchResult,
  runCase,
  runKernelComparison,
} from "./backends.ts";

const SMALL = { imageSize: 64, batch: 4, iterations: 1 } as const;
const DEMO_SIZES = [96, 128, 160] as const;

interface Ratio {
  name: string;
  /** From median wall times. */
  value: number;
  /** The same ratio from median CPU times (robust to a busy machine). */
  cpuValue?: number;
  target: string;
  met: boolean;
}

interface OptimizerFigure {
  name: string;
  params: number;
  msPerStep: number;
}

function parseList(text: string): string[] {
  return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

async function availableBackends(
  wanted: string[],
  log: (line: string) => void,
): Promise<{ name: string; slow: boolean; detail: string }[]> {
  const found: { name: string; slow: boolean; detail: string }[] = [];
  for (const name of wanted) {
    if (name === "webgpu") {
      const probe = await probeWebGpu();
      if (!probe.ok) {
        log(`webgpu: not available (${probe.reason})`);
        continue;
      }
    }
    try {
      const report = await selectBackend(name as "wasm");
      const probe = name === "webgpu" ? await probeWebGpu() : null;
      const slow = name === "cpu" ||
        (probe !== null && probe.ok && probe.isFallbackAdapter);
      found.push({ name, slow, detail: report.detail });
      log(`${name}: ${report.detail}${slow ? " (small case only)" : ""}`);
    } catch (error) {
      log(`${name}: not available (${(error as Error).message})`);
    }
  }
  return found;
}

function planCases(
  backends: { name: string; slow: boolean }[],
  options: { sizes: number[]; batch: number; iterations: number },
): BenchCase[] {
  const cases: BenchCase[] = [];
  const anySlow = backends.some((b) => b.slow);
  for (const backend of backends) {
    for (const mode of ["forward", "train"] as const) {
      if (backend.slow || (backend.name === "wasm" && anySlow)) {
        cases.push({ backend: backend.name, mode, alpha: 1.0, ...SMALL });
      }
      if (backend.slow) continue;
      for (const imageSize of options.sizes) {
        cases.push({
          backend: backend.name,
          mode,
          alpha: 1.0,
          imageSize,
          batch: options.batch,
          iterations: options.iterations,
        });
      }
    }
  }
  if (backends.some((b) => b.name === "wasm")) {
    for (const imageSize of DEMO_SIZES) {
      for (const mode of ["forward", "train"] as const) {
        cases.push({
          backend: "wasm",
          mode,
          alpha: 0.35,
          imageSize,
          batch: options.batch,
          iterations: options.iterations,
        });
      }
    }
  }
  return cases;
}

function find(
  results: BenchResult[],
  query: Partial<BenchCase>,
): BenchResult | undefined {
  return results.find((r) =>
    Object.entries(query).every(([k, v]) => r[k as keyof BenchCase] === v)
  );
}

function computeRatios(results: BenchResult[], sizes: number[]): Ratio[] {
  const ratios: Ratio[] = [];
  const cpuTrain = find(results, { backend: "cpu", mode: "train" });
  if (cpuTrain !== undefined) {
    const wasmTrain = find(results, {
      backend: "wasm",
      mode: "train",
      alpha: 1.0,
      imageSize: cpuTrain.imageSize,
      batch: cpuTrain.batch,
    });
    if (wasmTrain !== undefined) {
      const value = cpuTrain.msPerStep / wasmTrain.msPerStep;
      ratios.push({
        cpuValue: cpuTrain.cpuMsPerStep / wasmTrain.cpuMsPerStep,
        name: `wasm train vs cpu train speed-up (alpha 1.0, ` +
          `${cpuTrain.imageSize} px, batch ${cpuTrain.batch})`,
        value,
        target: ">= 50",
        met: value >= 50,
      });
    }
  }
  for (const imageSize of [...sizes, SMALL.imageSize]) {
    const forward = find(results, {
      backend: "wasm",
      mode: "forward",
      alpha: 1.0,
      imageSize,
    });
    const train = find(results, {
      backend: "wasm",
      mode: "train",
      alpha: 1.0,
      imageSize,
    });
    if (forward === undefined || train === undefined) continue;
    const value = train.msPerStep / forward.msPerStep;
    ratios.push({
      cpuValue: train.cpuMsPerStep / forward.cpuMsPerStep,
      name: `wasm train step / wasm forward (alpha 1.0, ${imageSize} px, ` +
        `batch ${train.batch})`,
      value,
      target: "<= 4",
      met: value <= 4,
    });
  }
  const leaks = results.filter((r) => r.tensorsLeaked !== 0);
  ratios.push({
    name: "tensors leaked per run, all backends",
    value: leaks.reduce((sum, r) => sum + r.tensorsLeaked, 0),
    target: "0",
    met: leaks.length === 0,
  });
  return ratios;
}

async function optimizerFigures(
  log: (line: string) => void,
): Promise<OptimizerFigure[] | null> {
  try {
    const { benchFlatAdamW } = await import("./optimizer.ts");
    return await benchFlatAdamW();
  } catch (error) {
    log(`flat AdamW: skipped (${(error as Error).message})`);
    return null;
  }
}

function machine(): Record<string, string | number> {
  let cpuModel = "unknown";
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    cpuModel = info.match(/model name\s*:\s*(.+)/)?.[1] ?? cpuModel;
  } catch {
    // Not Linux: the model name stays unknown.
  }
  return {
    cpu: cpuModel,
    cores: navigator.hardwareConcurrency,
    os: `${Deno.build.os} ${Deno.build.arch}`,
    deno: Deno.version.deno,
    tfjs: tf.version_core,
  };
}

function formatRow(r: BenchResult): string {
  return [
    r.backend.padEnd(10),
    r.mode.padEnd(8),
    `a${r.alpha}`.padEnd(6),
    `${r.imageSize}px`.padStart(6),
    `b${r.batch}`.padStart(4),
    `${r.msPerStep.toFixed(0)} ms`.padStart(10),
    `(cpu ${r.cpuMsPerStep.toFixed(0)} ms)`.padStart(16),
    `${r.imagesPerSecond.toFixed(2)} img/s`.padStart(14),
    r.tensorsLeaked === 0 ? "" : `  LEAK ${r.tensorsLeaked}`,
  ].join(" ");
}

const USAGE = `Usage: deno task bench [options]

MobileNetV2 images/s per available backend (forward and full training step),
side by side in one run, with the ratios of issue #4 and the flat AdamW step.

Options:
  --json            one JSON object: machine, backends, results, ratios
  --quick           128 px only, one timed iteration, no optimizer figures
  --backends LIST   backends to try         [tensorflow,webgpu,wasm,cpu]
  --sizes LIST      image sizes in pixels   [128,224]
  --batch N         batch size              [8]
  --iterations N    timed iterations        [5]
  --kernels         compare gradient-kernel formulations on wasm
  -h, --help        this help`;

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        help: { type: "boolean", short: "h", default: false },
        json: { type: "boolean", default: false },
        quick: { type: "boolean", default: false },
        backends: { type: "string", default: "tensorflow,webgpu,wasm,cpu" },
        sizes: { type: "string" },
        batch: { type: "string", default: "8" },
        iterations: { type: "string" },
        kernels: { type: "boolean", default: false },
      },
    }));
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (values.kernels) {
    await selectBackend("wasm");
    const figures = await runKernelComparison();
    if (values.json) {
      console.log(JSON.stringify({ machine: machine(), kernels: figures }));
      return;
    }
    for (const f of figures) {
      console.log(
        `${f.name.padEnd(56)} ${f.cpuMs.toFixed(1).padStart(7)} ms CPU ` +
          `${f.wallMs.toFixed(1).padStart(7)} ms wall`,
      );
    }
    return;
  }
  const quick = values.quick;
  const sizes = parseList(values.sizes ?? (quick ? "128" : "128,224"))
    .map(Number);
  const batch = Number(values.batch);
  const iterations = Number(values.iterations ?? (quick ? "1" : "5"));
  if (sizes.some((s) => !Number.isInteger(s)) || !(batch >= 1)) {
    throw new RangeError(
      `Cannot run the bench: --sizes and --batch must be integers, ` +
        `received '${values.sizes}' and '${values.batch}'`,
    );
  }
  const log = values.json
    ? (line: string) => console.error(line)
    : (line: string) => console.log(line);

  const backends = await availableBackends(parseList(values.backends), log);
  const cases = planCases(backends, { sizes, batch, iterations });
  const results: BenchResult[] = [];
  for (const c of cases) {
    const result = await runCase(c);
    results.push(result);
    log(formatRow(result));
  }

  const ratios = computeRatios(results, sizes);
  const optimizer = quick ? null : await optimizerFigures(log);
  const report = { machine: machine(), backends, results, ratios, optimizer };

  if (values.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  console.log("\nratios:");
  for (const r of ratios) {
    const mark = r.met ? "ok" : "MISSED";
    const cpu = r.cpuValue === undefined
      ? ""
      : `, by CPU time ${r.cpuValue.toFixed(2)}`;
    console.log(
      `  ${r.name}: ${r.value.toFixed(2)}${cpu} (target ${r.target}) ${mark}`,
    );
  }
  if (optimizer !== null) {
    console.log("\nflat AdamW step:");
    for (const o of optimizer) {
      console.log(
        `  ${o.name}: ${o.msPerStep.toFixed(2)} ms (${o.params} params)`,
      );
    }
  }
}

if (import.meta.main) await main();
