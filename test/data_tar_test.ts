import assert from "node:assert/strict";
import { join } from "node:path";
import { extractTar, extractTarGz, TarError } from "../src/data/tar.ts";
import { buildTar, gzip, paxPathRecord } from "./data_tar_writer.ts";

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "dptrain_tar_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function streamOf(bytes: Uint8Array, chunkBytes = 777) {
  // Odd-sized chunks so headers and data straddle chunk boundaries.
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + chunkBytes));
      offset += chunkBytes;
    },
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test("extractTar - writes files and folders with their bytes", async () => {
  await withTempDir(async (dir) => {
    const big = Uint8Array.from({ length: 3000 }, (_, i) => (i * 13) % 256);
    const tar = buildTar([
      { name: "top/", type: "5" },
      { name: "top/a/", type: "5" },
      { name: "top/a/big.bin", data: big },
      { name: "top/empty.txt", data: "" },
      { name: "./top/b/c.txt", data: "hello" },
    ]);
    const dest = join(dir, "out");
    const result = await extractTar(streamOf(tar), { destDir: dest });

    assert.deepEqual(result.files, [
      "top/a/big.bin",
      "top/empty.txt",
      "top/b/c.txt",
    ]);
    assert.deepEqual(result.dirs, ["top", "top/a"]);
    assert.deepEqual(await Deno.readFile(join(dest, "top/a/big.bin")), big);
    assert.equal(await Deno.readTextFile(join(dest, "top/b/c.txt")), "hello");
    assert.equal((await Deno.stat(join(dest, "top/empty.txt"))).size, 0);
  });
});

Deno.test("extractTar - long names from GNU L, pax path and the ustar prefix", async () => {
  await withTempDir(async (dir) => {
    const longName = `deep/${"d".repeat(120)}/file.txt`;
    const paxName = `pax/${"p".repeat(150)}.txt`;
    const prefixed = `${"q".repeat(90)}/r.txt`;
    const tar = buildTar([
      { name: "././@LongLink", type: "L", data: `${longName}\0` },
      { name: longName.slice(0, 100), data: "gnu" },
      { name: "PaxHeader/x", type: "x", data: paxPathRecord(paxName) },
      { name: paxName.slice(0, 100), data: "pax" },
      { name: prefixed, data: "prefix", usePrefix: true },
    ]);
    const dest = join(dir, "out");
    await extractTar(streamOf(tar, 100), { destDir: dest });
    assert.equal(await Deno.readTextFile(join(dest, longName)), "gnu");
    assert.equal(await Deno.readTextFile(join(dest, paxName)), "pax");
    assert.equal(await Deno.readTextFile(join(dest, prefixed)), "prefix");
  });
});

Deno.test("extractTar - symlinks are listed as ignored, never created", async () => {
  await withTempDir(async (dir) => {
    const tar = buildTar([
      { name: "link", type: "2", linkName: "/etc/passwd" },
      { name: "ok.txt", data: "fine" },
    ]);
    const dest = join(dir, "out");
    const result = await extractTar(streamOf(tar), { destDir: dest });
    assert.deepEqual(result.ignored, [{ entry: "link", type: "2" }]);
    assert.equal(await exists(join(dest, "link")), false);
    assert.equal(await Deno.readTextFile(join(dest, "ok.txt")), "fine");
  });
});

Deno.test("extractTar - path traversal and absolute paths reject the archive", async () => {
  const unsafe = [
    ["../evil.txt", /'\.\.' segment/],
    ["safe/../../evil.txt", /'\.\.' segment/],
    ["/tmp/evil.txt", /absolute path/],
    ["C:/evil.txt", /drive-letter path/],
    ["a\\..\\evil.txt", /backslash/],
  ] as const;
  for (const [name, why] of unsafe) {
    await withTempDir(async (dir) => {
      const dest = join(dir, "out");
      const tar = buildTar([{ name, data: "pwned" }]);
      await assert.rejects(
        extractTar(streamOf(tar), { destDir: dest }),
        (error: unknown) => {
          assert.ok(error instanceof TarError);
          assert.equal(error.name, "TarError");
          assert.equal(error.entry, name);
          assert.equal(error.offset, 0);
          assert.match(error.message, why);
          return true;
        },
      );
      assert.equal(await exists(join(dir, "evil.txt")), false);
      assert.deepEqual([...Deno.readDirSync(dest)], []);
    });
  }
});

Deno.test("extractTar - a bad checksum or a cut archive is a TarError", async () => {
  await withTempDir(async (dir) => {
    const tar = buildTar([{ name: "a.txt", data: "x".repeat(2000) }]);
    const corrupt = tar.slice();
    corrupt[0] = 0x62;
    await assert.rejects(
      extractTar(streamOf(corrupt), { destDir: join(dir, "bad") }),
      { name: "TarError", message: /bad header checksum at offset 0/ },
    );
    await assert.rejects(
      extractTar(streamOf(tar.subarray(0, 1500)), {
        destDir: join(dir, "cut"),
      }),
      { name: "TarError", message: /ends inside/ },
    );
  });
});

const hasGnuTar = (() => {
  try {
    return new Deno.Command("tar", { args: ["--version"], stdout: "null" })
      .outputSync().success;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
})();

Deno.test({
  name: "extractTarGz - reads a .tgz made by the system tar",
  ignore: !hasGnuTar,
  fn: async () => {
    await withTempDir(async (dir) => {
      const src = join(dir, "src");
      const longDir = "n".repeat(110);
      await Deno.mkdir(join(src, "flower_photos", longDir), {
        recursive: true,
      });
      await Deno.writeTextFile(
        join(src, "flower_photos", "LICENSE.txt"),
        "cc-by",
      );
      await Deno.writeTextFile(
        join(src, "flower_photos", longDir, "x.txt"),
        "long",
      );
      const archive = join(dir, "a.tgz");
      const made = await new Deno.Command("tar", {
        args: ["-czf", archive, "-C", src, "flower_photos"],
      }).output();
      assert.ok(made.success, new TextDecoder().decode(made.stderr));

      const dest = join(dir, "out");
      const result = await extractTarGz(archive, { destDir: dest });
      assert.deepEqual(result.files.sort(), [
        "flower_photos/LICENSE.txt",
        `flower_photos/${longDir}/x.txt`,
      ]);
      assert.equal(
        await Deno.readTextFile(join(dest, "flower_photos", longDir, "x.txt")),
        "long",
      );
    });
  },
});

Deno.test("extractTarGz - gzip made with CompressionStream round-trips", async () => {
  await withTempDir(async (dir) => {
    const archive = join(dir, "a.tgz");
    await Deno.writeFile(
      archive,
      await gzip(buildTar([{ name: "z/y.txt", data: "zy" }])),
    );
    const result = await extractTarGz(archive, { destDir: join(dir, "out") });
    assert.deepEqual(result.files, ["z/y.txt"]);
    assert.equal(await Deno.readTextFile(join(dir, "out", "z", "y.txt")), "zy");
  });
});
