import assert from "node:assert/strict";
import { join } from "node:path";
import { ImageDecodeError } from "../src/data/decode_image.ts";
import {
  ImageFolderError,
  type ImageFolderEvent,
  type ImageSplit,
  loadImageFolder,
} from "../src/data/image_folder.ts";

const FIXTURES = new URL("./fixtures/images/", import.meta.url).pathname;
const FLOWERS5 = new URL("../assets/data/flowers5/", import.meta.url).pathname;
const DAISIES = join(FLOWERS5, "train", "daisy");
const ROSES = join(FLOWERS5, "train", "roses");

const GOOD_FIXTURES = [
  "grayscale.jpg",
  "png-named-as.jpg",
  "progressive.jpg",
  "rgba.png",
  "tiny-1x1.jpg",
];
const BAD_FIXTURES = ["empty.jpg", "text-named-as.jpg", "truncated.jpg"];

function firstFiles(dir: string, count: number): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort().slice(0, count);
}

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "dptrain_data_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** `<dir>/a`: 2 daisies plus every fixture; `<dir>/b`: 2 roses. */
async function fixtureDataset(dir: string): Promise<string> {
  const root = join(dir, "data");
  await Deno.mkdir(join(root, "a"), { recursive: true });
  await Deno.mkdir(join(root, "b"), { recursive: true });
  for (const name of firstFiles(DAISIES, 2)) {
    await Deno.copyFile(join(DAISIES, name), join(root, "a", name));
  }
  for (const name of [...GOOD_FIXTURES, ...BAD_FIXTURES]) {
    await Deno.copyFile(join(FIXTURES, name), join(root, "a", name));
  }
  for (const name of firstFiles(ROSES, 2)) {
    await Deno.copyFile(join(ROSES, name), join(root, "b", name));
  }
  return root;
}

function imageOf(split: ImageSplit, file: string): Uint8Array {
  const i = split.files.indexOf(file);
  assert.ok(i >= 0, `${file} not in split`);
  const bytes = split.imageSize * split.imageSize * 3;
  return split.images.subarray(i * bytes, (i + 1) * bytes);
}

Deno.test("loadImageFolder - fixture cases: decoded, or skipped and counted", async () => {
  await withTempDir(async (dir) => {
    const root = await fixtureDataset(dir);
    const data = await loadImageFolder(root, {
      imageSize: 16,
      valFraction: 0,
      onCorrupt: "skip",
      cacheDir: join(dir, "cache"),
    });

    assert.deepEqual(data.classes, ["a", "b"]);
    assert.equal(data.layout, "seeded_split");
    assert.deepEqual(
      data.skipped.map((s) => s.file),
      BAD_FIXTURES.map((f) => join(root, "a", f)),
    );
    const reasons = data.skipped.map((s) => s.reason);
    assert.match(reasons[0]!, /empty/);
    assert.match(reasons[1]!, /text/);
    assert.match(reasons[2]!, /truncated/);

    const train = data.train;
    assert.equal(train.count, 2 + GOOD_FIXTURES.length + 2);
    assert.equal(train.images.length, train.count * 16 * 16 * 3);
    for (const f of GOOD_FIXTURES) assert.ok(train.files.includes(`a/${f}`));
    assert.equal(data.val.count, 0);

    const gray = imageOf(train, "a/grayscale.jpg");
    for (let p = 0; p < gray.length; p += 3) {
      assert.ok(gray[p] === gray[p + 1] && gray[p] === gray[p + 2]);
    }
    const tiny = imageOf(train, "a/tiny-1x1.jpg");
    for (let p = 0; p < tiny.length; p += 3) {
      assert.deepEqual([...tiny.subarray(p, p + 3)], [...tiny.subarray(0, 3)]);
    }
    // rgba.png is png-named-as.jpg plus an alpha channel: dropping alpha
    // must give identical pixels.
    assert.deepEqual(
      imageOf(train, "a/rgba.png"),
      imageOf(train, "a/png-named-as.jpg"),
    );
    for (let i = 0; i < train.count; i++) {
      const image = train.images.subarray(i * 768, (i + 1) * 768);
      assert.ok(image.some((v) => v > 0), `${train.files[i]} is all black`);
    }
    assert.deepEqual(
      [...train.labels],
      train.files.map((f) => (f.startsWith("a/") ? 0 : 1)),
    );
  });
});

Deno.test("loadImageFolder - by default a corrupt file is an error naming it", async () => {
  await withTempDir(async (dir) => {
    const root = await fixtureDataset(dir);
    await assert.rejects(
      loadImageFolder(root, { imageSize: 16, cache: false }),
      (error: unknown) => {
        assert.ok(error instanceof ImageDecodeError);
        assert.equal(error.file, join(root, "a", "empty.jpg"));
        assert.match(error.message, /a\/empty\.jpg': the file is empty/);
        return true;
      },
    );
  });
});

Deno.test("loadImageFolder - the first bad file is found on 1 thread and on 2", async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, "data");
    await Deno.mkdir(join(root, "c"), { recursive: true });
    const flowers = firstFiles(DAISIES, 40);
    for (const [i, name] of flowers.entries()) {
      const target = `f${String(i).padStart(3, "0")}.jpg`;
      await Deno.copyFile(join(DAISIES, name), join(root, "c", target));
    }
    // Sorted: ... f017.jpg, f017_bad.jpg, f018.jpg ... f030.jpg, f030_text.jpg
    await Deno.copyFile(
      join(FIXTURES, "truncated.jpg"),
      join(root, "c", "f017_bad.jpg"),
    );
    await Deno.copyFile(
      join(FIXTURES, "text-named-as.jpg"),
      join(root, "c", "f030_text.jpg"),
    );

    for (const decodeThreads of [1, 2]) {
      const events: ImageFolderEvent[] = [];
      await assert.rejects(
        loadImageFolder(root, {
          imageSize: 8,
          cache: false,
          decodeThreads,
          log: (e) => events.push(e),
        }),
        (error: unknown) => {
          assert.ok(error instanceof ImageDecodeError);
          assert.equal(error.file, join(root, "c", "f017_bad.jpg"));
          assert.match(error.reason, /truncated JPEG/);
          return true;
        },
      );
      const start = events.find((e) => e.kind === "decode_start");
      assert.deepEqual(start, {
        kind: "decode_start",
        files: 42,
        threads: decodeThreads,
      });
    }

    const skipped = await loadImageFolder(root, {
      imageSize: 8,
      cache: false,
      onCorrupt: "skip",
      valFraction: 0.25,
      decodeThreads: 2,
    });
    assert.equal(skipped.skipped.length, 2);
    assert.equal(skipped.train.count + skipped.val.count, 40);

    // A throwing log callback fails the load instead of crashing the process.
    await assert.rejects(
      loadImageFolder(root, {
        imageSize: 8,
        cache: false,
        onCorrupt: "skip",
        decodeThreads: 2,
        log: (e) => {
          if (e.kind === "decode_progress") throw new Error("log broke");
        },
      }),
      { message: "log broke" },
    );
  });
});

Deno.test("loadImageFolder - cache round trip gives identical bytes", async () => {
  await withTempDir(async (dir) => {
    const root = await fixtureDataset(dir);
    const cacheDir = join(dir, "cache");
    const options = {
      imageSize: 24,
      valFraction: 0.3,
      seed: 5,
      onCorrupt: "skip" as const,
      cacheDir,
    };
    const first = await loadImageFolder(root, options);
    const second = await loadImageFolder(root, options);
    const uncached = await loadImageFolder(root, {
      ...options,
      cache: false,
      decodeThreads: 1,
    });

    assert.equal(first.cache.hit, false);
    assert.equal(second.cache.hit, true);
    assert.equal(second.cache.path, first.cache.path);
    assert.ok(first.cache.path?.startsWith(cacheDir));
    for (const other of [second, uncached]) {
      for (const split of ["train", "val"] as const) {
        assert.deepEqual(other[split].images, first[split].images);
        assert.deepEqual(other[split].labels, first[split].labels);
        assert.deepEqual(other[split].files, first[split].files);
      }
      assert.deepEqual(other.skipped, first.skipped);
      assert.deepEqual(other.classes, first.classes);
    }

    // The cache remembers what was skipped: the default policy still fails.
    await assert.rejects(
      loadImageFolder(root, { ...options, onCorrupt: "error" }),
      { name: "ImageDecodeError", message: /empty\.jpg/ },
    );
  });
});

Deno.test("loadImageFolder - a changed file or a damaged cache decodes again", async () => {
  await withTempDir(async (dir) => {
    const root = await fixtureDataset(dir);
    const cacheDir = join(dir, "cache");
    const options = { imageSize: 8, onCorrupt: "skip" as const, cacheDir };
    const first = await loadImageFolder(root, options);

    await Deno.utime(join(root, "b", firstFiles(join(root, "b"), 1)[0]!), 1, 1);
    const touched = await loadImageFolder(root, options);
    assert.equal(touched.cache.hit, false);
    assert.notEqual(touched.cache.key, first.cache.key);

    const path = touched.cache.path!;
    const size = (await Deno.stat(path)).size;
    await Deno.truncate(path, size - 10);
    const events: ImageFolderEvent[] = [];
    const repaired = await loadImageFolder(root, {
      ...options,
      log: (e) => events.push(e),
    });
    assert.equal(repaired.cache.hit, false);
    assert.ok(events.some((e) => e.kind === "cache_invalid"));
    assert.deepEqual(repaired.train.images, touched.train.images);
    assert.equal((await loadImageFolder(root, options)).cache.hit, true);
  });
});

Deno.test("loadImageFolder - seeded split is stratified and seed-determined", async () => {
  await withTempDir(async (dir) => {
    const root = join(dir, "data");
    for (
      const [cls, source, count] of [["x", DAISIES, 10], [
        "y",
        ROSES,
        7,
      ]] as const
    ) {
      await Deno.mkdir(join(root, cls), { recursive: true });
      for (const name of firstFiles(source, count)) {
        await Deno.copyFile(join(source, name), join(root, cls, name));
      }
    }
    const load = (seed: number) =>
      loadImageFolder(root, {
        imageSize: 4,
        valFraction: 0.3,
        seed,
        cache: false,
      });
    const a = await load(1);
    const b = await load(1);
    const c = await load(2);

    // round(10 * 0.3) = 3 and round(7 * 0.3) = 2 in val.
    assert.equal(a.val.files.filter((f) => f.startsWith("x/")).length, 3);
    assert.equal(a.val.files.filter((f) => f.startsWith("y/")).length, 2);
    assert.equal(a.train.count, 12);
    assert.deepEqual(a.val.files, b.val.files);
    assert.notDeepEqual(a.val.files, c.val.files);
    const all = [...a.train.files, ...a.val.files].sort();
    assert.equal(new Set(all).size, 17);
  });
});

Deno.test("loadImageFolder - bad folders are errors naming the path", async () => {
  await withTempDir(async (dir) => {
    const missing = join(dir, "nope");
    await assert.rejects(loadImageFolder(missing, { cache: false }), {
      name: "ImageFolderError",
      message: `Cannot load image folder '${missing}': no such folder`,
    });

    const noClasses = join(dir, "no_classes");
    await Deno.mkdir(noClasses);
    await Deno.writeTextFile(join(noClasses, "readme.txt"), "hi");
    await assert.rejects(loadImageFolder(noClasses, { cache: false }), {
      name: "ImageFolderError",
      message: /no_classes': it has no class folders/,
    });

    const emptyClass = join(dir, "empty_class");
    await Deno.mkdir(join(emptyClass, "full"), { recursive: true });
    await Deno.mkdir(join(emptyClass, "hollow"), { recursive: true });
    await Deno.copyFile(
      join(FIXTURES, "grayscale.jpg"),
      join(emptyClass, "full", "g.jpg"),
    );
    await Deno.writeTextFile(join(emptyClass, "hollow", "notes.txt"), "x");
    await assert.rejects(
      loadImageFolder(emptyClass, { cache: false }),
      (error: unknown) => {
        assert.ok(error instanceof ImageFolderError);
        assert.equal(error.path, join(emptyClass, "hollow"));
        assert.match(error.message, /holds no \.jpg, \.jpeg or \.png files/);
        return true;
      },
    );

    const allBad = join(dir, "all_bad");
    await Deno.mkdir(join(allBad, "ok"), { recursive: true });
    await Deno.mkdir(join(allBad, "broken"), { recursive: true });
    await Deno.copyFile(
      join(FIXTURES, "grayscale.jpg"),
      join(allBad, "ok", "g.jpg"),
    );
    await Deno.copyFile(
      join(FIXTURES, "truncated.jpg"),
      join(allBad, "broken", "t.jpg"),
    );
    await assert.rejects(
      loadImageFolder(allBad, { cache: false, onCorrupt: "skip" }),
      {
        name: "ImageFolderError",
        message: /all_bad\/broken': none of its 1 images could be decoded/,
      },
    );

    const mismatch = join(dir, "mismatch");
    for (const sub of ["train/a", "train/b", "val/a"]) {
      await Deno.mkdir(join(mismatch, sub), { recursive: true });
      await Deno.copyFile(
        join(FIXTURES, "grayscale.jpg"),
        join(mismatch, sub, "g.jpg"),
      );
    }
    await assert.rejects(loadImageFolder(mismatch, { cache: false }), {
      name: "ImageFolderError",
      message: /train has \[a, b\], val has \[a\]/,
    });

    await assert.rejects(loadImageFolder(mismatch, { imageSize: 0 }), {
      name: "RangeError",
      message: /imageSize must be an integer in \[1, 4096\], received 0/,
    });
  });
});
