import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SHARD_HASH_NAME } from "../src/domain/shard_hash.js";
import {
  ensureManifest,
  MANIFEST_FILE,
  ManifestError,
  ManifestMismatchError,
  readManifest,
  writeManifestAtomic,
} from "../src/store/manifest.js";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

const file = () => path.join(dir, MANIFEST_FILE);

describe("manifest", () => {
  it("creates the manifest on first start and accepts the same count later", () => {
    expect(readManifest(dir)).toBeNull();
    const first = ensureManifest(dir, 4, 1234);
    expect(first.created).toBe(true);
    expect(first.manifest).toEqual({
      format_version: 1,
      shard_count: 4,
      shard_hash: SHARD_HASH_NAME,
      created_at_ms: 1234,
    });
    expect(JSON.parse(fs.readFileSync(file(), "utf8"))).toEqual(first.manifest);
    const again = ensureManifest(dir, 4, 9999);
    expect(again).toEqual({ manifest: first.manifest, created: false });
    expect(fs.readdirSync(dir)).toEqual([MANIFEST_FILE]);
  });

  it("refuses a different shard count with a message that says what to do", () => {
    ensureManifest(dir, 4);
    let err: unknown;
    try {
      ensureManifest(dir, 8);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ManifestMismatchError);
    const e = err as ManifestMismatchError;
    expect(e.existingShardCount).toBe(4);
    expect(e.requestedShardCount).toBe(8);
    expect(e.message).toContain("4 shards");
    expect(e.message).toContain("8 were requested");
    expect(e.message).toContain("STEMEDB_SHARDS=4");
    expect(e.message).toContain("not supported yet");
    // The manifest is untouched.
    expect(readManifest(dir)?.shard_count).toBe(4);
  });

  it("refuses unknown format versions, hash names and corrupt files", () => {
    const write = (obj: unknown) => fs.writeFileSync(file(), JSON.stringify(obj));
    const base = {
      format_version: 1,
      shard_count: 2,
      shard_hash: SHARD_HASH_NAME,
      created_at_ms: 1,
    };
    write({ ...base, format_version: 2 });
    expect(() => ensureManifest(dir, 2)).toThrow(/format_version 2/);
    write({ ...base, shard_hash: "murmur3-mod" });
    expect(() => ensureManifest(dir, 2)).toThrow(/murmur3-mod/);
    write({ ...base, shard_count: 0 });
    expect(() => readManifest(dir)).toThrow(ManifestError);
    write({ ...base, created_at_ms: "yesterday" });
    expect(() => readManifest(dir)).toThrow(/created_at_ms/);
    fs.writeFileSync(file(), '{"format_version":1,');
    expect(() => readManifest(dir)).toThrow(/not valid JSON/);
    fs.writeFileSync(file(), "[]");
    expect(() => readManifest(dir)).toThrow(/not a JSON object/);
  });

  it("writes atomically: replaces the file, leaves no temp files, cleans stale ones", () => {
    writeManifestAtomic(dir, {
      format_version: 1,
      shard_count: 2,
      shard_hash: SHARD_HASH_NAME,
      created_at_ms: 5,
    });
    const inodeBefore = fs.statSync(file()).ino;
    writeManifestAtomic(dir, {
      format_version: 1,
      shard_count: 2,
      shard_hash: SHARD_HASH_NAME,
      created_at_ms: 6,
    });
    // A rename, not an in-place rewrite: a reader never sees a half-written file.
    expect(fs.statSync(file()).ino).not.toBe(inodeBefore);
    expect(readManifest(dir)?.created_at_ms).toBe(6);
    expect(fs.readdirSync(dir)).toEqual([MANIFEST_FILE]);
    // A crash between temp write and rename leaves a temp file: the old manifest still rules.
    fs.writeFileSync(path.join(dir, `${MANIFEST_FILE}.tmp-1-2`), "{garbage");
    expect(ensureManifest(dir, 2).manifest.created_at_ms).toBe(6);
    expect(fs.readdirSync(dir)).toEqual([MANIFEST_FILE]);
  });

  it("creates a missing data directory", () => {
    const nested = path.join(dir, "a", "b");
    expect(ensureManifest(nested, 1).created).toBe(true);
    expect(readManifest(nested)?.shard_count).toBe(1);
  });

  it("validates the requested shard count", () => {
    expect(() => ensureManifest(dir, 0)).toThrow(RangeError);
    expect(() => ensureManifest(dir, 257)).toThrow(RangeError);
  });
});
