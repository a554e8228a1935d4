/**
 * `deno task lr`, run as a subprocess on temporary config files.
 */
import assert from "node:assert/strict";

const CLI = new URL("../src/cli/lr.ts", import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function lr(args: string[]): Promise<Run> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

async function withConfig(
  config: unknown,
  body: (file: string, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lr_cli_test_" });
  try {
    const file = `${dir}/job.json`;
    await Deno.writeTextFile(file, JSON.stringify(config));
    await body(file, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SMALL_JOB = {
  model: { alpha: 0.35, imageSize: 96, numClasses: 5 },
  data: { trainExamples: 100 },
  train: { workers: 2, perRankBatch: 8, epochs: 6 },
  optimizer: { preset: "reference" },
};

/** The book's lrfn with max scaled by replicas. */
function lrfn(epoch: number, replicas: number): number {
  const max = 1e-4 * replicas;
  if (epoch < 3) return (max - 1e-5) / 3 * epoch + 1e-5;
  return (max - 1e-5) * 0.8 ** (epoch - 3) + 1e-5;
}

Deno.test("lr CLI - --json rows name rule, multiplier, decay and rate", async () => {
  await withConfig(SMALL_JOB, async (file) => {
    const run = await lr(["--config", file, "--json", "--epoch", "4"]);
    assert.equal(run.code, 0, run.stderr);
    assert.doesNotMatch(run.stderr, /warning:/);

    const rows = JSON.parse(run.stdout) as Array<Record<string, unknown>>;
    assert.ok(Array.isArray(rows));
    // 52 conv kernels (stem, 2 in block 0, 3 in blocks 1-16, top), a BN
    // gamma and beta after each, 2 dense kernels and biases: 52*3 + 4.
    assert.equal(rows.length, 160);
    for (const row of rows) {
      assert.equal(typeof row.name, "string");
      assert.ok(Array.isArray(row.shape));
      assert.ok(row.rule === null || typeof row.rule === "string");
      assert.equal(typeof row.multiplier, "number");
      assert.equal(typeof row.decayed, "boolean");
      assert.equal(typeof row.lr, "number");
    }

    // 100 examples / (8 * 2 workers) -> 7 steps per epoch; epoch 4 with
    // max = 2e-4: (2e-4 - 1e-5) * 0.8 + 1e-5 = 1.62e-4.
    const byName = new Map(rows.map((r) => [r.name, r]));
    const block1 = byName.get("block_1_expand/kernel")!;
    assert.equal(block1.rule, "block_1_");
    assert.equal(block1.multiplier, 0.008);
    assert.equal(block1.decayed, false);
    assert.ok(Math.abs((block1.lr as number) - 1.62e-4 * 0.008) < 1e-15);
    assert.ok(Math.abs((block1.lr as number) - lrfn(4, 2) * 0.008) < 1e-15);

    const head = byName.get("flower_prob/bias")!;
    assert.equal(head.rule, null);
    assert.equal(head.multiplier, 1);
    assert.deepEqual(head.shape, [5]);
    assert.equal(byName.get("bn_Conv1/gamma")!.rule, "Conv");
    assert.equal(byName.get("expanded_conv_project/kernel")!.rule, "conv");
  });
});

Deno.test("lr CLI - warns about run-on keys and unused rules", async () => {
  const job = {
    ...SMALL_JOB,
    optimizer: {
      convention: "keras",
      multipliers: [["block_1", 0.01], ["nothing_matches", 2]],
    },
  };
  await withConfig(job, async (file) => {
    const run = await lr(["--config", file, "--step", "3"]);
    assert.equal(run.code, 0, run.stderr);
    const caught = Array.from({ length: 7 }, (_, i) => `block_${10 + i}`);
    assert.ok(
      run.stderr.includes(
        `warning: rule multipliers[0] "block_1" also catches ` +
          `${caught.join(", ")} (63 variables)`,
      ),
      run.stderr,
    );
    assert.match(
      run.stderr,
      /warning: rule multipliers\[1\] "nothing_matches" matches no variable/,
    );
    assert.match(
      run.stdout,
      /block_12_expand\/kernel\s+\[1,1,32,192\]\s+multipliers\[0\] "block_1"/,
    );
  });
});

Deno.test("lr CLI - --plot writes the schedule and multipliers as SVG", async () => {
  await withConfig(SMALL_JOB, async (file, dir) => {
    const svg = `${dir}/recipe.svg`;
    const run = await lr(["--config", file, "--plot", svg]);
    assert.equal(run.code, 0, run.stderr);
    const text = await Deno.readTextFile(svg);
    assert.match(text, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.match(text, /learning rate schedule/);
    assert.match(text, />block 16</);
    assert.match(text, />0.36</);
    assert.match(text, />flower_prob</);
  });
});

Deno.test("lr CLI - a bad config fails naming the file and field", async () => {
  const job = {
    ...SMALL_JOB,
    optimizer: { preset: "reference", schedule: { decay: 1.5 } },
  };
  await withConfig(job, async (file) => {
    const run = await lr(["--config", file]);
    assert.equal(run.code, 1);
    assert.ok(run.stderr.includes(`in ${file}`), run.stderr);
    assert.match(
      run.stderr,
      /"optimizer.schedule.decay" must be a finite number in \(0, 1\], received 1.5/,
    );
  });
});

Deno.test("lr CLI - usage errors and --help", async () => {
  const help = await lr(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: deno task lr/);

  const both = await lr(["--epoch", "1", "--step", "2"]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /Give --epoch or --step, not both/);

  const unknown = await lr(["--epochs", "1"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /--epochs/);
});

Deno.test("lr CLI - takes the job's defaults and refuses a typo'd key", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lr_cli_defaults_" });
  try {
    // No optimizer section: the job trains with the demo's optimizer (the
    // reference preset with a 1-epoch ramp per step), and the explain must
    // show that, with the job's 2 workers and 3 epochs.
    const plain = `${dir}/plain.json`;
    await Deno.writeTextFile(plain, JSON.stringify({ model: {} }));
    const shown = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "src/cli/lr.ts", "--config", plain, "--epoch", "3"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(shown.stdout);
    assert.equal(shown.code, 0);
    assert.match(text, /3 epochs x 88 steps, 2 worker\(s\)/);
    assert.match(text, /"rampEpochs":1,.*"per":"step"/);
    assert.match(text, /at step 264 \(epoch 3\): schedule 1\.3160e-4/);

    const typo = `${dir}/typo.json`;
    await Deno.writeTextFile(typo, JSON.stringify({ model: { alpah: 1 } }));
    const refused = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "src/cli/lr.ts", "--config", typo],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(refused.code, 1);
    assert.match(new TextDecoder().decode(refused.stderr), /model\.alpah/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
