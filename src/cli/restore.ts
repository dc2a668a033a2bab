// `stemedb restore --from DIR --data-dir D`: checks the whole backup (sizes, SHA-256, paths)
// before writing anything, refuses a non-empty target unless --force, then copies the files
// into the data directory layout with fsync. The next start replays each shard's WAL copy
// on top of its LMDB snapshot.
import fs from "node:fs";
import path from "node:path";
import { BackupError, verifyBackup } from "../store/backup_manifest.js";
import { fsyncDir } from "../store/manifest.js";
import { type DataDirs, parseCommand, resolveDataDirs, UsageError } from "./args.js";

const USAGE = `usage: stemedb restore --from DIR [--data-dir D] [--wal-dir W] [--db-dir B] [--force] [--json]
  Restores a backup made by 'stemedb backup' into D (default STEMEDB_DATA_DIR or ./data), its
  WAL into W and its LMDB files into B (default D/wal and D/db; without --data-dir,
  STEMEDB_WAL_DIR / STEMEDB_DB_DIR as the server reads them). The server must be stopped. Non-empty targets are
  refused unless --force (which empties them). The backup may not lie inside a target.`;

/** A path with symlinks resolved as far as it exists. */
function realPath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

function within(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  if (rel === "") return true;
  return rel !== ".." && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/** Where a backup file goes: wal/… and db/… into their own directories, the rest into data. */
function targetOf(dirs: DataDirs, file: string): string {
  const [top, ...rest] = file.split("/");
  if (top === "wal") return path.join(dirs.walDir, ...rest);
  if (top === "db") return path.join(dirs.dbDir, ...rest);
  return path.join(dirs.dataDir, file);
}

function copyDurably(from: string, to: string): void {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
  const fd = fs.openSync(to, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export async function runRestore(argv: string[]): Promise<number> {
  const values = parseCommand(
    argv,
    {
      from: { type: "string" },
      "data-dir": { type: "string" },
      "wal-dir": { type: "string" },
      "db-dir": { type: "string" },
      force: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
    USAGE,
  );
  if (typeof values === "number") return values;
  if (typeof values.from !== "string") {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const from = realPath(values.from);
  const named = values as { "data-dir"?: string; "wal-dir"?: string; "db-dir"?: string };
  // A data directory named here takes D/wal and D/db unless those are named too: never the
  // STEMEDB_WAL_DIR / STEMEDB_DB_DIR of a production environment the shell has loaded.
  const dataDirNamed = (named["data-dir"] ?? "").trim() !== "";
  const dirs = resolveDataDirs(named, dataDirNamed ? {} : process.env);
  const targets = [...new Set([dirs.dataDir, dirs.walDir, dirs.dbDir])];
  for (const t of targets) {
    const real = realPath(t);
    if (within(from, real) || within(real, from)) {
      throw new UsageError(
        `the backup ${from} and the target ${t} overlap; restore from a copy outside the data directories`,
      );
    }
  }
  const started = Date.now();
  let manifest: Awaited<ReturnType<typeof verifyBackup>>;
  try {
    manifest = await verifyBackup(from);
  } catch (err) {
    if (err instanceof BackupError) {
      process.stderr.write(`restore refused, nothing was written: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  const filled = targets.filter((t) => fs.existsSync(t) && fs.readdirSync(t).length > 0);
  if (filled.length > 0 && values.force !== true) {
    process.stderr.write(
      `restore refused: ${filled.join(", ")} not empty (use --force to replace the contents)\n`,
    );
    return 1;
  }
  // Innermost first: D/wal is emptied as itself, not as part of D.
  for (const t of [...filled].sort((a, b) => b.length - a.length)) {
    if (!fs.existsSync(t)) continue;
    for (const entry of fs.readdirSync(t))
      fs.rmSync(path.join(t, entry), { recursive: true, force: true });
  }
  for (const t of targets) fs.mkdirSync(t, { recursive: true });
  const synced = new Set<string>(targets);
  let bytes = 0;
  for (const f of manifest.files) {
    const to = targetOf(dirs, f.path);
    copyDurably(path.join(from, f.path), to);
    bytes += f.size_bytes;
    const root = targets.find((t) => within(to, t)) ?? path.dirname(to);
    for (let d = path.dirname(to); within(d, root); d = path.dirname(d)) {
      synced.add(d);
      if (d === root) break;
    }
  }
  for (const d of [...synced].sort((a, b) => b.length - a.length)) fsyncDir(d);
  const ms = Date.now() - started;
  const summary = {
    to: dirs.dataDir,
    wal_dir: dirs.walDir,
    db_dir: dirs.dbDir,
    files: manifest.files.length,
    bytes,
    duration_ms: ms,
    shards: manifest.shards,
  };
  if (values.json === true) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    process.stdout.write(
      `restored ${manifest.files.length} files (${(bytes / 1e6).toFixed(1)} MB) into ${dirs.dataDir} in ${ms} ms; ` +
        "start the server to replay each shard's WAL\n",
    );
  }
  return 0;
}
