// The data directory manifest, `<data>/manifest.json`:
//   {"format_version":1,"shard_count":N,"shard_hash":"fnv1a64-jump-v1","created_at_ms":…}
// It pins the facts that decide where data lives on disk. Starting with a different shard
// count or an unknown hash/format would silently route concepts to the wrong shard, so it is
// refused with a message that says what to do.
//
// Written crash-safely (ALICE, OSDI 2014: renames are not durable until the directory is
// synced): write a temp file in the same directory, fsync it, rename over the target,
// fsync the directory.

import fs from "node:fs";
import path from "node:path";
import { MAX_MANIFEST_BYTES, MAX_SHARDS } from "../domain/limits.js";
import { SHARD_HASH_NAME } from "../domain/shard_hash.js";

export const MANIFEST_FILE = "manifest.json";
export const MANIFEST_FORMAT_VERSION = 1;
const TEMP_PREFIX = `${MANIFEST_FILE}.tmp-`;

export interface Manifest {
  format_version: number;
  shard_count: number;
  shard_hash: string;
  created_at_ms: number;
}

/** The manifest exists but is unreadable, corrupt, or of a format/hash we do not know. */
export class ManifestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ManifestError";
  }
}

/** The directory was created with a different shard count than requested. */
export class ManifestMismatchError extends ManifestError {
  readonly existingShardCount: number;
  readonly requestedShardCount: number;
  constructor(dir: string, existing: number, requested: number) {
    super(
      `data directory ${dir} was created with ${existing} shards, but ${requested} were requested. ` +
        `The shard count is fixed when a data directory is created: start with STEMEDB_SHARDS=${existing} ` +
        `(resharding an existing directory is not supported yet).`,
    );
    this.name = "ManifestMismatchError";
    this.existingShardCount = existing;
    this.requestedShardCount = requested;
  }
}

function assertShardCount(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_SHARDS) {
    throw new RangeError(`shard count must be an integer in [1, ${MAX_SHARDS}], got ${n}`);
  }
}

/** fsync a directory so a create/rename/unlink inside it is durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Write `data` to `dir/name` atomically and durably: temp file + fsync + rename + fsync(dir).
 * After a crash the target holds either the old or the new content, never a mix.
 */
export function writeFileAtomic(
  dir: string,
  name: string,
  data: string | Uint8Array,
  mode = 0o644,
): void {
  const target = path.join(dir, name);
  const temp = path.join(dir, `${name}.tmp-${process.pid}-${Date.now()}`);
  const fd = fs.openSync(temp, "wx", mode);
  try {
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, target);
  } catch (e) {
    fs.rmSync(temp, { force: true });
    throw e;
  }
  fsyncDir(dir);
}

function validateManifest(dir: string, raw: unknown): Manifest {
  const file = path.join(dir, MANIFEST_FILE);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ManifestError(`${file} is not a JSON object`);
  }
  const m = raw as Record<string, unknown>;
  if (m.format_version !== MANIFEST_FORMAT_VERSION) {
    throw new ManifestError(
      `${file} has format_version ${JSON.stringify(m.format_version)}; this version of StemeDB ` +
        `only understands format_version ${MANIFEST_FORMAT_VERSION}. Use the StemeDB release that created this directory.`,
    );
  }
  if (m.shard_hash !== SHARD_HASH_NAME) {
    throw new ManifestError(
      `${file} uses shard hash ${JSON.stringify(m.shard_hash)}; this version of StemeDB routes ` +
        `with ${JSON.stringify(SHARD_HASH_NAME)} and would put concepts on the wrong shards. Refusing to start.`,
    );
  }
  const shardCount = m.shard_count;
  if (
    typeof shardCount !== "number" ||
    !Number.isInteger(shardCount) ||
    shardCount < 1 ||
    shardCount > MAX_SHARDS
  ) {
    throw new ManifestError(`${file} has an invalid shard_count ${JSON.stringify(shardCount)}`);
  }
  const createdAt = m.created_at_ms;
  if (typeof createdAt !== "number" || !Number.isSafeInteger(createdAt) || createdAt < 0) {
    throw new ManifestError(`${file} has an invalid created_at_ms ${JSON.stringify(createdAt)}`);
  }
  return {
    format_version: MANIFEST_FORMAT_VERSION,
    shard_count: shardCount,
    shard_hash: SHARD_HASH_NAME,
    created_at_ms: createdAt,
  };
}

/** Write the manifest atomically (see writeFileAtomic). Creates `dir` if needed. */
export function writeManifestAtomic(dir: string, manifest: Manifest): void {
  assertShardCount(manifest.shard_count);
  fs.mkdirSync(dir, { recursive: true });
  const text = `${JSON.stringify({
    format_version: manifest.format_version,
    shard_count: manifest.shard_count,
    shard_hash: manifest.shard_hash,
    created_at_ms: manifest.created_at_ms,
  })}\n`;
  writeFileAtomic(dir, MANIFEST_FILE, text);
}

/** The manifest of `dir`, or null if it has none. Throws ManifestError if it is invalid. */
export function readManifest(dir: string): Manifest | null {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    const st = fs.statSync(file);
    if (st.size > MAX_MANIFEST_BYTES) {
      throw new ManifestError(
        `${file} is ${st.size} bytes; a manifest is at most ${MAX_MANIFEST_BYTES}`,
      );
    }
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ManifestError(
      `${file} is not valid JSON (${(e as Error).message}); restore it from a backup`,
    );
  }
  return validateManifest(dir, raw);
}

/** Remove temp files left by a crash during writeManifestAtomic. */
function removeStaleTemps(dir: string): void {
  let removed = false;
  for (const name of fs.readdirSync(dir)) {
    if (name.startsWith(TEMP_PREFIX)) {
      fs.rmSync(path.join(dir, name), { force: true });
      removed = true;
    }
  }
  if (removed) fsyncDir(dir);
}

/**
 * Create the manifest on first start, or check the existing one. Throws
 * ManifestMismatchError if the directory has a different shard count, ManifestError if the
 * manifest is invalid or from an unknown format/hash.
 */
export function ensureManifest(
  dir: string,
  shardCount: number,
  nowMs: number = Date.now(),
): { manifest: Manifest; created: boolean } {
  assertShardCount(shardCount);
  fs.mkdirSync(dir, { recursive: true });
  removeStaleTemps(dir);
  const existing = readManifest(dir);
  if (existing !== null) {
    if (existing.shard_count !== shardCount) {
      throw new ManifestMismatchError(dir, existing.shard_count, shardCount);
    }
    return { manifest: existing, created: false };
  }
  const manifest: Manifest = {
    format_version: MANIFEST_FORMAT_VERSION,
    shard_count: shardCount,
    shard_hash: SHARD_HASH_NAME,
    created_at_ms: nowMs,
  };
  writeManifestAtomic(dir, manifest);
  return { manifest, created: true };
}
