import assert from "node:assert/strict";
import { join } from "node:path";
import { createHash } from "node:crypto";
import {
  ChecksumMismatchError,
  DownloadError,
  downloadTfFlowers,
} from "../src/data/tf_flowers.ts";
import { loadImageFolder } from "../src/data/image_folder.ts";
import { buildTar, gzip, type TarEntry } from "./data_tar_writer.ts";

const TRAIN = new URL("../assets/data/flowers5/train/", import.meta.url)
  .pathname;

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function flowerEntries(cls: string, count: number): TarEntry[] {
  const folder = join(TRAIN, cls);
  const names = [...Deno.readDirSync(folder)].map((e) => e.name).sort()
    .slice(0, count);
  return [
    { name: `flower_photos/${cls}/`, type: "5" },
    ...names.map((name) => ({
      name: `flower_photos/${cls}/${name}`,
      data: Deno.readFileSync(join(folder, name)),
    })),
  ];
}

/** A loopback server counting requests per path. */
function serve(files: Record<string, Uint8Array>) {
  const requests = new Map<string, number>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => {
      const path = new URL(request.url).pathname;
      requests.set(path, (requests.get(path) ?? 0) + 1);
      const body = files[path];
      if (body === undefined) return new Response("no", { status: 404 });
      return new Response(body as Uint8Array<ArrayBuffer>, {
        headers: { "content-length": String(body.length) },
      });
    },
  );
  const url = (path: string) => `http://127.0.0.1:${server.addr.port}${path}`;
  return { server, requests, url };
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

const archive = await gzip(buildTar([
  { name: "flower_photos/", type: "5" },
  { name: "flower_photos/LICENSE.txt", data: "CC-BY 2.0 attributions" },
  ...flowerEntries("daisy", 3),
  ...flowerEntries("roses", 3),
]));
const evil = await gzip(buildTar([
  { name: "flower_photos/daisy/a.txt", data: "fine" },
  { name: "flower_photos/../../evil.txt", data: "pwned" },
]));

Deno.test("downloadTfFlowers - download, verify, extract, then cache hit", async () => {
  const { server, requests, url } = serve({ "/flower_photos.tgz": archive });
  const cacheDir = await Deno.makeTempDir({ prefix: "dptrain_tff_" });
  try {
    const options = {
      url: url("/flower_photos.tgz"),
      sha256: sha256(archive),
      cacheDir,
    };
    const first = await downloadTfFlowers(options);
    assert.equal(first.downloaded, true);
    assert.equal(first.extracted, true);
    assert.equal(first.root, join(cacheDir, "flower_photos"));
    assert.equal(requests.get("/flower_photos.tgz"), 1);
    assert.equal(
      sha256(await Deno.readFile(first.archivePath)),
      sha256(archive),
    );

    const data = await loadImageFolder(first.root, {
      imageSize: 8,
      valFraction: 1 / 3,
      seed: 1,
      cache: false,
    });
    assert.deepEqual(data.classes, ["daisy", "roses"]);
    assert.equal(data.train.count, 4);
    assert.equal(data.val.count, 2);

    const second = await downloadTfFlowers(options);
    assert.equal(second.downloaded, false);
    assert.equal(second.extracted, false);
    assert.equal(requests.get("/flower_photos.tgz"), 1, "no second request");

    // Archive kept but extraction gone: extract again, still no request.
    await Deno.remove(first.root, { recursive: true });
    const third = await downloadTfFlowers(options);
    assert.deepEqual([third.downloaded, third.extracted], [false, true]);
    assert.equal(requests.get("/flower_photos.tgz"), 1);
  } finally {
    await server.shutdown();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("downloadTfFlowers - a checksum mismatch throws and keeps nothing", async () => {
  const { server, url } = serve({ "/flower_photos.tgz": archive });
  const cacheDir = await Deno.makeTempDir({ prefix: "dptrain_tff_" });
  try {
    const wrong = "0".repeat(64);
    await assert.rejects(
      downloadTfFlowers({
        url: url("/flower_photos.tgz"),
        sha256: wrong,
        cacheDir,
      }),
      (error: unknown) => {
        assert.ok(error instanceof ChecksumMismatchError);
        assert.equal(error.expected, wrong);
        assert.equal(error.actual, sha256(archive));
        assert.match(
          error.message,
          /SHA-256 mismatch, expected 0{64}, received/,
        );
        return true;
      },
    );
    assert.deepEqual([...Deno.readDirSync(cacheDir)], []);
  } finally {
    await server.shutdown();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("downloadTfFlowers - an archive escaping its folder is refused", async () => {
  const { server, url } = serve({ "/evil.tgz": evil });
  const parent = await Deno.makeTempDir({ prefix: "dptrain_tff_" });
  const cacheDir = join(parent, "cache");
  try {
    await assert.rejects(
      downloadTfFlowers({
        url: url("/evil.tgz"),
        sha256: sha256(evil),
        cacheDir,
      }),
      { name: "TarError", message: /flower_photos\/\.\.\/\.\.\/evil\.txt/ },
    );
    assert.equal(await exists(join(parent, "evil.txt")), false);
    assert.equal(await exists(join(cacheDir, "evil.txt")), false);
    assert.equal(await exists(join(cacheDir, "flower_photos")), false);
    assert.equal(await exists(join(cacheDir, "flower_photos.complete")), false);
    const leftovers = [...Deno.readDirSync(cacheDir)].map((e) => e.name);
    assert.deepEqual(leftovers, ["flower_photos.tgz"]);
  } finally {
    await server.shutdown();
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("downloadTfFlowers - an HTTP error is a DownloadError with the status", async () => {
  const { server, url } = serve({});
  const cacheDir = await Deno.makeTempDir({ prefix: "dptrain_tff_" });
  try {
    await assert.rejects(
      downloadTfFlowers({
        url: url("/missing.tgz"),
        sha256: sha256(archive),
        cacheDir,
      }),
      (error: unknown) => {
        assert.ok(error instanceof DownloadError);
        assert.equal(error.status, 404);
        assert.match(
          error.message,
          /127\.0\.0\.1:\d+\/missing\.tgz': HTTP 404/,
        );
        return true;
      },
    );
    await assert.rejects(
      downloadTfFlowers({ url: url("/x.tgz"), sha256: "abc", cacheDir }),
      {
        name: "RangeError",
        message: /sha256 must be 64 lowercase hex digits, received 'abc'/,
      },
    );
  } finally {
    await server.shutdown();
    await Deno.remove(cacheDir, { recursive: true });
  }
});
