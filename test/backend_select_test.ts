/**
 * Backend selection: `auto` falls through to the best backend present and
 * reports why it skipped the others; explicit choices either start or fail
 * with every reason; GPU binding env for worker processes.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import {
  BackendUnavailableError,
  deviceEnvForGpu,
  selectBackend,
} from "../src/backend/mod.ts";
import { tryTensorflow } from "../src/backend/tensorflow_backend.ts";

const hasTfjsNode = await import("@tensorflow/tfjs-node-gpu").then(
  () => true,
  () => false,
);

Deno.test(
  "backend selection - auto logs each skipped backend and activates the chosen one",
  async () => {
    const lines: string[] = [];
    const report = await selectBackend("auto", { log: (m) => lines.push(m) });

    assert.equal(tf.getBackend(), report.name);
    assert.notEqual(report.name, "cpu", "wasm is always available");
    assert.equal(lines.length, report.skipped.length + 1);
    assert.match(
      lines[lines.length - 1],
      new RegExp(`^backend ${report.name}: `),
    );
    if (!hasTfjsNode) {
      assert.deepEqual(
        report.skipped.slice(0, 2).map((s) => s.backend),
        ["tensorflow (tfjs-node-gpu)", "tensorflow (tfjs-node)"],
      );
      assert.match(
        report.skipped[0].reason,
        /not a dependency|not in import map/,
      );
    }
    if (report.name === "wasm") {
      assert.equal(report.threads, 1);
      assert.match(report.detail, /SIMD/);
    }
    await tf.setBackend("cpu");
  },
);

Deno.test("backend selection - cpu and wasm start when asked for", async () => {
  for (const choice of ["cpu", "wasm"] as const) {
    const report = await selectBackend(choice);
    assert.equal(report.name, choice);
    assert.equal(tf.getBackend(), choice);
    assert.deepEqual(report.skipped, []);
  }
  await tf.setBackend("cpu");
});

Deno.test({
  name:
    "backend selection - tensorflow without tfjs-node fails with both reasons",
  ignore: hasTfjsNode,
  fn: async () => {
    const error = await selectBackend("tensorflow").then(
      () => assert.fail("tensorflow must not start without tfjs-node"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof BackendUnavailableError);
    assert.equal(error.choice, "tensorflow");
    assert.equal(error.skipped.length, 2);
    assert.match(error.message, /@tensorflow\/tfjs-node-gpu/);
    assert.match(error.message, /@tensorflow\/tfjs-node:/);
  },
});

Deno.test("backend selection - an unknown choice is a RangeError", async () => {
  await assert.rejects(
    selectBackend("tpu" as "cpu"),
    { name: "RangeError", message: /Cannot select backend 'tpu'/ },
  );
});

Deno.test(
  "backend selection - a tfjs-node invisible to our tfjs-core is rejected",
  async () => {
    // Stands in for a tfjs-node that brought its own tfjs-core: the import
    // succeeds but no 'tensorflow' backend reaches this engine.
    const result = await tryTensorflow("tfjs-node", {
      importer: async () => {},
    });
    assert.equal(result.ok, false);
    assert.match(
      (result as { reason: string }).reason,
      /registered no 'tensorflow' backend/,
    );
  },
);

Deno.test("backend selection - the gpu option binds CUDA_VISIBLE_DEVICES unless set", async () => {
  const saved = Deno.env.get("CUDA_VISIBLE_DEVICES");
  try {
    Deno.env.delete("CUDA_VISIBLE_DEVICES");
    await tryTensorflow("tfjs-node-gpu", {
      gpu: "3",
      importer: async () => {},
    });
    assert.equal(Deno.env.get("CUDA_VISIBLE_DEVICES"), "3");
    await tryTensorflow("tfjs-node-gpu", {
      gpu: "5",
      importer: async () => {},
    });
    assert.equal(Deno.env.get("CUDA_VISIBLE_DEVICES"), "3");
  } finally {
    if (saved === undefined) Deno.env.delete("CUDA_VISIBLE_DEVICES");
    else Deno.env.set("CUDA_VISIBLE_DEVICES", saved);
  }
});

Deno.test(
  "backend selection - deviceEnvForGpu binds tensorflow workers by CUDA_VISIBLE_DEVICES",
  () => {
    assert.deepEqual(deviceEnvForGpu("tensorflow", 1), {
      CUDA_VISIBLE_DEVICES: "1",
    });
    assert.deepEqual(
      deviceEnvForGpu("tensorflow", "GPU-5f8c2a"),
      { CUDA_VISIBLE_DEVICES: "GPU-5f8c2a" },
    );
    assert.deepEqual(deviceEnvForGpu("auto", 2), { CUDA_VISIBLE_DEVICES: "2" });
    assert.deepEqual(deviceEnvForGpu("webgpu", 1), {});
    assert.deepEqual(deviceEnvForGpu("wasm", 0), {});
    assert.throws(() => deviceEnvForGpu("tensorflow", "1,2"), RangeError);
  },
);
