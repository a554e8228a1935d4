import assert from "node:assert/strict";
import {
  applyOverrides,
  canonicalJson,
  ConfigError,
  DEFAULTS,
  fingerprint,
  loadJobConfig,
  parseJobConfig,
} from "../src/config.ts";

const extra = { classes: ["a", "b"], layout: ["w:1x2"] };

Deno.test("config - configs/demo.json spells out exactly the defaults", async () => {
  const demo = await loadJobConfig(
    new URL("../configs/demo.json", import.meta.url).pathname,
  );
  assert.deepEqual(demo, parseJobConfig({}));
  assert.deepEqual(demo.model, DEFAULTS.model);
});

Deno.test("config - an unknown key names its dotted path", () => {
  assert.throws(
    () => parseJobConfig({ train: { wokers: 2 } }),
    (e) => e instanceof ConfigError && e.field === "train.wokers",
  );
  assert.throws(
    () => parseJobConfig({ trian: {} }),
    (e) => e instanceof ConfigError && e.field === "trian",
  );
});

Deno.test("config - out-of-range values name the field and the value", () => {
  const cases: [unknown, string][] = [
    [{ model: { alpha: 0.6 } }, "model.alpha"],
    [{ model: { imageSize: 16 } }, "model.imageSize"],
    [{ model: { batchNorm: "sync" } }, "model.batchNorm"],
    [{ data: { cropMinArea: 1.5 } }, "data.cropMinArea"],
    [{ data: { valFraction: 0 } }, "data.valFraction"],
    [{ train: { workers: 0 } }, "train.workers"],
    [{ train: { perRankBatch: 2.5 } }, "train.perRankBatch"],
    [{ train: { backend: "gpu" } }, "train.backend"],
  ];
  for (const [raw, field] of cases) {
    assert.throws(
      () => parseJobConfig(raw),
      (e) => e instanceof ConfigError && e.field === field,
      field,
    );
  }
});

Deno.test("config - a file's errors name the file", async () => {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(path, '{"model": {"alpha": 2}}');
    await assert.rejects(
      () => loadJobConfig(path),
      (e) =>
        e instanceof ConfigError && e.file === path &&
        e.message.includes(path),
    );
    await Deno.writeTextFile(path, "{not json");
    await assert.rejects(() => loadJobConfig(path), /invalid JSON/);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("config - command-line overrides win and are validated", () => {
  const job = applyOverrides(parseJobConfig({ train: { workers: 3 } }), {
    workers: 4,
    imageSize: 96,
  });
  assert.equal(job.train.workers, 4);
  assert.equal(job.model.imageSize, 96);
  assert.throws(
    () => applyOverrides(job, { epochs: -1 }),
    (e) => e instanceof ConfigError && e.field === "train.epochs",
  );
});

Deno.test("config - the fingerprint ignores backend and output, not the model", async () => {
  const base = parseJobConfig({});
  const elsewhere = parseJobConfig({
    train: { backend: "cpu", out: "/tmp/x" },
  });
  const otherModel = parseJobConfig({ model: { imageSize: 160 } });
  const otherSeed = parseJobConfig({ train: { seed: 1 } });

  const f = await fingerprint(base, extra);
  assert.equal(await fingerprint(elsewhere, extra), f);
  assert.notEqual(await fingerprint(otherModel, extra), f);
  assert.notEqual(await fingerprint(otherSeed, extra), f);
  assert.notEqual(
    await fingerprint(base, { ...extra, classes: ["b", "a"] }),
    f,
  );
});

Deno.test("config - canonical JSON sorts keys at every level", () => {
  assert.equal(
    canonicalJson({ b: 1, a: { d: [2, { f: 1, e: 0 }], c: null } }),
    '{"a":{"c":null,"d":[2,{"e":0,"f":1}]},"b":1}',
  );
});
