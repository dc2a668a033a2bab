// The backup format: a directory laid out like a data directory (manifest.json, meta/,
// db/shard-NNN/data.mdb, wal/shard-NNN/wal-*.seg) plus `backup.json`, which lists every
// file with its size and SHA-256, the per-shard LSN cut, and the format version. Restore
// checks all of it before writing anything.
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

export const BACKUP_MANIFEST_FILE = "backup.json";
export const BACKUP_FORMAT_VERSION = 1;
/** Bound on a manifest read back from disk (a backup lists a few files per shard). */
const MAX_BACKUP_MANIFEST_BYTES = 4 * 1024 * 1024;

export interface BackupFile {
  /** Relative to the backup directory, `/`-separated. */
  path: string;
  size_bytes: number;
  sha256: string;
}

export interface BackupShard {
  shard: number;
  /** Every write acknowledged before the backup started has an LSN at or below this. */
  cut_lsn: number;
  /** The applied LSN of the LMDB snapshot; the WAL copy replays everything after it. */
  snapshot_lsn: number;
}

export interface BackupManifest {
  format_version: number;
  created_at_ms: number;
  shard_count: number;
  shards: BackupShard[];
  files: BackupFile[];
}

export class BackupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackupError";
  }
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}

/** Every regular file below dir (relative, `/`-separated), skipping LMDB lock files. */
export function listFiles(dir: string, base = dir): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(full, base));
    else if (entry.isFile() && entry.name !== "lock.mdb" && entry.name !== BACKUP_MANIFEST_FILE) {
      out.push(path.relative(base, full).split(path.sep).join("/"));
    }
  }
  return out.sort();
}

export async function describeFiles(dir: string): Promise<BackupFile[]> {
  const files: BackupFile[] = [];
  for (const rel of listFiles(dir)) {
    const full = path.join(dir, rel);
    files.push({ path: rel, size_bytes: fs.statSync(full).size, sha256: await sha256File(full) });
  }
  return files;
}

export function readBackupManifest(dir: string): BackupManifest {
  const file = path.join(dir, BACKUP_MANIFEST_FILE);
  let text: string;
  try {
    if (fs.statSync(file).size > MAX_BACKUP_MANIFEST_BYTES)
      throw new BackupError(`${file} is too large to be a backup manifest`);
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw new BackupError(
      `${dir} is not a StemeDB backup: cannot read ${BACKUP_MANIFEST_FILE} (${(err as Error).message})`,
    );
  }
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(text) as BackupManifest;
  } catch {
    throw new BackupError(`${file} is not valid JSON`);
  }
  if (manifest.format_version !== BACKUP_FORMAT_VERSION) {
    throw new BackupError(
      `${file} has format version ${String(manifest.format_version)}; this build reads ${BACKUP_FORMAT_VERSION}`,
    );
  }
  if (!Array.isArray(manifest.files) || !Array.isArray(manifest.shards)) {
    throw new BackupError(`${file} lacks its file or shard list`);
  }
  return manifest;
}

/** Checks that every listed file exists with its size and SHA-256, and that no path escapes. */
export async function verifyBackup(dir: string): Promise<BackupManifest> {
  const manifest = readBackupManifest(dir);
  const root = path.resolve(dir);
  for (const f of manifest.files) {
    const full = path.resolve(root, f.path);
    if (!full.startsWith(root + path.sep))
      throw new BackupError(`backup file path ${f.path} leaves the backup directory`);
    let size: number;
    try {
      size = fs.statSync(full).size;
    } catch {
      throw new BackupError(`backup file ${f.path} is missing`);
    }
    if (size !== f.size_bytes)
      throw new BackupError(
        `backup file ${f.path} is ${size} bytes, the manifest says ${f.size_bytes}`,
      );
    const digest = await sha256File(full);
    if (digest !== f.sha256)
      throw new BackupError(
        `backup file ${f.path} does not match its SHA-256 (corrupted or changed)`,
      );
  }
  return manifest;
}
