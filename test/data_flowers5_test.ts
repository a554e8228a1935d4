import assert from "node:assert/strict";
import {
  type ImageFolderEvent,
  loadImageFolder,
} from "../src/data/image_folder.ts";

const FLOWERS5 = new URL("../assets/data/flowers5/", import.meta.url).pathname;

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "dptrain_data_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("loadImageFolder - flowers5: 1,400 train, 300 val, 5 sorted classes", async () => {
  await withTempDir(async (dir) => {
    const events: ImageFolderEvent[] = [];
    const options = {
      imageSize: 32,
      cacheDir: dir,
      log: (e: ImageFolderEvent) => events.push(e),
    };
    const data = await loadImageFolder(FLOWERS5, options);
    assert.equal(data.layout, "split_folders");
    assert.deepEqual(data.classes, [
      "daisy",
      "dandelion",
      "roses",
      "sunflowers",
      "tulips",
    ]);
    assert.equal(data.train.count, 1400);
    assert.equal(data.val.count, 300);
    assert.equal(data.train.images.length, 1400 * 32 * 32 * 3);
    assert.equal(data.skipped.length, 0);
    for (let label = 0; label < 5; label++) {
      assert.equal(data.train.labels.filter((l) => l === label).length, 280);
      assert.equal(data.val.labels.filter((l) => l === label).length, 60);
    }
    assert.ok(data.train.files.every((f) => f.startsWith("train/")));
    assert.equal(data.train.files[0], "train/daisy/10172567486_2748826a8b.jpg");

    assert.equal(events[0]?.kind, "listed");
    assert.equal(events.at(-1)?.kind, "loaded");
    const progress = events.filter((e) => e.kind === "decode_progress");
    assert.ok(progress.length >= 10);
    assert.deepEqual(progress.at(-1), {
      ...progress.at(-1),
      done: 1700,
      total: 1700,
    });

    const cached = await loadImageFolder(FLOWERS5, options);
    assert.equal(cached.cache.hit, true);
    assert.deepEqual(cached.val.images, data.val.images);
  });
});
