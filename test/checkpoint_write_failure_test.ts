/**
 * A checkpoint write that the file system refuses (full disk, read-only
 * mount, a folder where the temporary file goes, a cross-device rename)
 * throws a CheckpointWriteError with the OS code, leaves the previous
 * checkpoint byte for byte as it was and no temporary file behind; and a
 * cut-short or damaged checkpoint is refused on read, never loaded.
 *
 * The faults are real: we run as root, so a chmod would not stop a write.
 * A symlink to /dev/full gives ENOSPC; tiny and read-only tmpfs mounts give
 * ENOSPC and EROFS (skipped, with the reason logged, where mount is not
 * permitted).
 */
import assert from "node:assert/strict";
import { Packr } from "msgpackr";
import {
  type Checkpoint,
  CheckpointError,
  type CheckpointOnDisk,
  CheckpointWriteError,
  readCheckpoint,
  writeCheckpoint,
} from "../src/train/checkpoint.ts";
import type { AtomicWriteStage } from "../src/train/atomic_file.ts";

const NAME = "checkpoint.msgpack";

function sampleCheckpoint(step: number, floats = 1000): Checkpoint {
  const weights = new Float32Array(floats);
  for (let i = 0; i < floats; i++) weights[i] = Math.sin(i + step);
  return {
    runId: "ckpt-test",
    fingerprint: "f".repeat(16),
    step,
    epoch: Math.floor(step / 10),
    layout: ["dense/kernel", "dense/bias"],
    weights,
    optimizer: { step, moments: new Float32Array([step, 1, 2]) },
    workers: 2,
    wallSeconds: step * 0.5,
  };
}

/** Runs a command; returns null on success, else why it failed. */
async function run(cmd: string, args: string[]): Promise<string | null> {
  try {
    const out = await new Deno.Command(cmd, { args, stderr: "piped" })
      .output();
    if (out.success) return null;
    const err = new TextDecoder().decode(out.stderr).trim();
    return `${cmd} ${args.join(" ")}: exit ${out.code}: ${err}`;
  } catch (error) {
    return `${cmd}: ${error}`;
  }
}

async function mountTmpfs(dir: string, sizeBytes: number): Promise<void> {
  const why = await run("mount", [
    "-t",
    "tmpfs",
    "-o",
    `size=${sizeBytes},mode=0700`,
    "dptrain-ckpt-test",
    dir,
  ]);
  if (why !== null) throw new Error(why);
}

async function unmount(dir: string): Promise<void> {
  // A lazy unmount still detaches the tree if something holds it open.
  if (await run("umount", [dir]) !== null) await run("umount", ["-l", dir]);
}

/** Why tmpfs mounts cannot be used here, or null when they can. */
async function probeMount(): Promise<string | null> {
  const dir = await Deno.makeTempDir({ prefix: "dptrain-mount-probe-" });
  try {
    const why = await run("mount", [
      "-t",
      "tmpfs",
      "-o",
      "size=64k",
      "dptrain-ckpt-probe",
      dir,
    ]);
    if (why === null) await unmount(dir);
    return why;
  } finally {
    await Deno.remove(dir);
  }
}

const mountUnavailable = Deno.build.os === "linux"
  ? await probeMount()
  : "tmpfs mounts are Linux only";
if (mountUnavailable !== null) {
  console.log(`skipping the tmpfs fault tests: ${mountUnavailable}`);
}

async function withTempDir(body: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "dptrain-ckpt-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A tmpfs at `dir/mnt`, unmounted whatever the body does. */
async function withTmpfs(
  sizeBytes: number,
  body: (root: string, mnt: string) => Promise<void>,
) {
  await withTempDir(async (root) => {
    const mnt = `${root}/mnt`;
    await Deno.mkdir(mnt);
    await mountTmpfs(mnt, sizeBytes);
    try {
      await body(root, mnt);
    } finally {
      await unmount(mnt);
    }
  });
}

interface Expected {
  path: string;
  step: number;
  code: string;
  stage: AtomicWriteStage;
  onDisk: CheckpointOnDisk;
  previousStep: number | null;
  tempLeft?: boolean;
}

async function expectWriteFailure(
  checkpoint: Checkpoint,
  tempPath: string | undefined,
  expected: Expected,
): Promise<CheckpointWriteError> {
  const options = tempPath === undefined ? {} : { tempPath };
  const error = await writeCheckpoint(expected.path, checkpoint, options)
    .then(
      () => assert.fail("writeCheckpoint succeeded"),
      (e: unknown) => e,
    );
  assert.ok(error instanceof CheckpointWriteError, `got ${error}`);
  assert.equal(error.name, "CheckpointWriteError");
  assert.equal(error.path, expected.path);
  assert.equal(error.step, expected.step);
  assert.equal(error.code, expected.code);
  assert.equal(error.stage, expected.stage);
  assert.equal(error.onDisk, expected.onDisk);
  assert.equal(error.previousStep, expected.previousStep);
  assert.equal(error.tempLeft, expected.tempLeft ?? false);
  assert.match(
    error.message,
    new RegExp(`^Cannot write the checkpoint of step ${expected.step} `),
  );
  assert.ok(error.message.includes(expected.path), error.message);
  assert.ok(error.message.includes(expected.code), error.message);
  if (expected.previousStep !== null) {
    assert.ok(
      error.message.includes(
        `the previous checkpoint (step ${expected.previousStep}) is intact`,
      ),
      error.message,
    );
  }
  return error;
}

async function assertPreviousIntact(
  path: string,
  before: Uint8Array,
  step: number,
) {
  assert.deepEqual(await Deno.readFile(path), before);
  const read = await readCheckpoint(path);
  assert.equal(read.step, step);
  assert.deepEqual(read.weights, sampleCheckpoint(step).weights);
}

/** readCheckpoint must throw a CheckpointError whose message starts so. */
async function assertRefused(path: string, prefix: string) {
  const error = await readCheckpoint(path).then(
    () => assert.fail(`readCheckpoint accepted ${path}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof CheckpointError, `got ${error}`);
  assert.equal(error.file, path);
  assert.ok(error.message.startsWith(prefix), error.message);
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

Deno.test("writeCheckpoint round-trips every field", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/${NAME}`;
    const original = sampleCheckpoint(7);
    await writeCheckpoint(path, original);
    assert.deepEqual(await readCheckpoint(path), original);
    assert.deepEqual(await listDir(dir), [NAME]);

    const bytes = await Deno.readFile(path);
    assert.equal(new TextDecoder().decode(bytes.subarray(0, 8)), "DPTRCKPT");
  });
});

Deno.test("readCheckpoint refuses a file cut short", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/${NAME}`;
    await writeCheckpoint(path, sampleCheckpoint(3));
    const whole = await Deno.readFile(path);
    const cuts = [0, 1, 8, 31, 32, 33, 100, whole.length / 2, whole.length - 1];
    for (const cut of cuts.map(Math.floor)) {
      await Deno.writeFile(path, whole.subarray(0, cut));
      await assert.rejects(readCheckpoint(path), (error: unknown) => {
        assert.ok(error instanceof CheckpointError, `cut ${cut}: ${error}`);
        assert.equal(error.file, path);
        assert.match(error.message, /truncated: .*a write was cut short/);
        assert.ok(error.message.startsWith(`${path}: `), error.message);
        return true;
      });
    }
  });
});

Deno.test("readCheckpoint refuses a damaged file", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/${NAME}`;
    await writeCheckpoint(path, sampleCheckpoint(3));
    const whole = await Deno.readFile(path);

    // One flipped bit in the weights: msgpack still decodes, the CRC not.
    const flipped = whole.slice();
    flipped[whole.length - 40]! ^= 0x01;
    await Deno.writeFile(path, flipped);
    await assertRefused(
      path,
      `${path}: corrupt: checksum mismatch`,
    );

    const longer = new Uint8Array(whole.length + 1);
    longer.set(whole);
    await Deno.writeFile(path, longer);
    await assertRefused(
      path,
      `${path}: corrupt: 1 bytes after the`,
    );

    const wrongStep = whole.slice();
    wrongStep[16] = 9;
    await Deno.writeFile(path, wrongStep);
    await assertRefused(
      path,
      `${path}: corrupt: the header says step 9, the data says step 3`,
    );
  });
});

Deno.test("readCheckpoint still reads a version 1 checkpoint", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/${NAME}`;
    const original = sampleCheckpoint(5);
    // Exactly what the version 1 writer produced: bare msgpack.
    const packr = new Packr({ useRecords: false, moreTypes: true });
    const v1 = { format: "dptrain-checkpoint", version: 1, ...original };
    const bytes = packr.pack(v1);
    await Deno.writeFile(path, bytes);
    assert.deepEqual(await readCheckpoint(path), original);

    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 7));
    await assertRefused(
      path,
      `${path}: not a dptrain checkpoint, or a truncated or corrupt ` +
        `version 1 one`,
    );
  });
});

Deno.test("writeCheckpoint to /dev/full: ENOSPC", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/${NAME}`;
    await writeCheckpoint(path, sampleCheckpoint(10));
    const before = await Deno.readFile(path);
    const tempPath = `${path}.full.tmp`;
    await Deno.symlink("/dev/full", tempPath);

    const error = await expectWriteFailure(sampleCheckpoint(20), tempPath, {
      path,
      step: 20,
      code: "ENOSPC",
      stage: "write",
      onDisk: "previous",
      previousStep: 10,
    });
    assert.ok(error.message.includes(`${tempPath} was removed`));
    await assertPreviousIntact(path, before, 10);
    assert.deepEqual(await listDir(dir), [NAME]);
  });
});

Deno.test({
  name: "writeCheckpoint on a full tmpfs: ENOSPC, previous intact",
  ignore: mountUnavailable !== null,
  fn: () =>
    withTmpfs(64 * 1024, async (_root, mnt) => {
      // 40 KB of weights fit once in 64 KB, not twice: the temporary file
      // fills the disk halfway through, next to the previous checkpoint.
      const floats = 10_000;
      const path = `${mnt}/${NAME}`;
      await writeCheckpoint(path, sampleCheckpoint(10, floats));
      const before = await Deno.readFile(path);

      await expectWriteFailure(sampleCheckpoint(20, floats), undefined, {
        path,
        step: 20,
        code: "ENOSPC",
        stage: "write",
        onDisk: "previous",
        previousStep: 10,
      });
      assert.deepEqual(await Deno.readFile(path), before);
      assert.equal((await readCheckpoint(path)).step, 10);
      assert.deepEqual(await listDir(mnt), [NAME]);
    }),
});

Deno.test("writeCheckpoint, folder at temp path: EISDIR", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/${NAME}`;
    await writeCheckpoint(path, sampleCheckpoint(10));
    const before = await Deno.readFile(path);
    const tempPath = `${path}.blocked.tmp`;
    await Deno.mkdir(tempPath);

    await expectWriteFailure(sampleCheckpoint(20), tempPath, {
      path,
      step: 20,
      code: "EISDIR",
      stage: "open",
      onDisk: "previous",
      previousStep: 10,
    });
    await assertPreviousIntact(path, before, 10);
    // The folder is not ours: it stays, and nothing else was created.
    assert.deepEqual(await listDir(dir), [
      NAME,
      "checkpoint.msgpack.blocked.tmp",
    ]);
    assert.ok((await Deno.stat(tempPath)).isDirectory);
  });
});

Deno.test("writeCheckpoint, out dir is a file: ENOTDIR", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/out`, "not a folder\n");
    const path = `${dir}/out/${NAME}`;

    const error = await expectWriteFailure(sampleCheckpoint(20), undefined, {
      path,
      step: 20,
      code: "ENOTDIR",
      stage: "open",
      onDisk: "none",
      previousStep: null,
    });
    assert.ok(
      error.message.includes(`no earlier checkpoint exists at ${path}`),
    );
    assert.equal(await Deno.readTextFile(`${dir}/out`), "not a folder\n");
  });
});

Deno.test({
  name: "writeCheckpoint on a read-only mount: EROFS, previous intact",
  ignore: mountUnavailable !== null,
  fn: () =>
    withTmpfs(1024 * 1024, async (_root, mnt) => {
      const path = `${mnt}/${NAME}`;
      await writeCheckpoint(path, sampleCheckpoint(10));
      const before = await Deno.readFile(path);
      const why = await run("mount", ["-o", "remount,ro", mnt]);
      assert.equal(why, null);

      await expectWriteFailure(sampleCheckpoint(20), undefined, {
        path,
        step: 20,
        code: "EROFS",
        stage: "open",
        onDisk: "previous",
        previousStep: 10,
      });
      await assertPreviousIntact(path, before, 10);
      assert.deepEqual(await listDir(mnt), [NAME]);
    }),
});

Deno.test({
  name: "writeCheckpoint says when the temporary file stays",
  ignore: mountUnavailable !== null,
  fn: () =>
    withTmpfs(1024 * 1024, async (root, mnt) => {
      // The temporary file is a link to /dev/full on a mount made
      // read-only afterwards: the write fails, and so does the removal.
      const path = `${root}/${NAME}`;
      await writeCheckpoint(path, sampleCheckpoint(10));
      const before = await Deno.readFile(path);
      const tempPath = `${mnt}/stuck.tmp`;
      await Deno.symlink("/dev/full", tempPath);
      assert.equal(await run("mount", ["-o", "remount,ro", mnt]), null);

      const error = await expectWriteFailure(sampleCheckpoint(20), tempPath, {
        path,
        step: 20,
        code: "ENOSPC",
        stage: "write",
        onDisk: "previous",
        previousStep: 10,
        tempLeft: true,
      });
      assert.ok(
        error.message.includes(
          `the temporary file ${tempPath} could not be removed (EROFS`,
        ),
        error.message,
      );
      await assertPreviousIntact(path, before, 10);
    }),
});

const shmOnOtherDevice = await (async () => {
  try {
    const shm = await Deno.stat("/dev/shm");
    const tmp = await Deno.stat(
      await Deno.realPath(Deno.env.get("TMPDIR") ?? "/tmp"),
    );
    return shm.dev !== tmp.dev;
  } catch {
    return false;
  }
})();
if (!shmOnOtherDevice) {
  console.log(
    "skipping the EXDEV test: /dev/shm is missing or on the temp dir's device",
  );
}

Deno.test({
  name: "writeCheckpoint whose rename fails (EXDEV) removes the temp file",
  ignore: !shmOnOtherDevice,
  fn: () =>
    withTempDir(async (dir) => {
      const path = `${dir}/${NAME}`;
      await writeCheckpoint(path, sampleCheckpoint(10));
      const before = await Deno.readFile(path);
      const tempPath = `/dev/shm/dptrain-ckpt-${crypto.randomUUID()}.tmp`;

      await expectWriteFailure(sampleCheckpoint(20), tempPath, {
        path,
        step: 20,
        code: "EXDEV",
        stage: "rename",
        onDisk: "previous",
        previousStep: 10,
      });
      await assert.rejects(Deno.lstat(tempPath), Deno.errors.NotFound);
      await assertPreviousIntact(path, before, 10);
      assert.deepEqual(await listDir(dir), [NAME]);
    }),
});
