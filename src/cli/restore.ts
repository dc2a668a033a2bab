// `stemedb restore --from DIR --data-dir D`: checks the whole backup (sizes, SHA-256, paths)
// before writing anything, refuses a non-empty target unless --force, then copies the files
// into the data directory layout with fsync. The next start replays each shard's WAL copy
// on top of its LMDB snapshot.
import fs from "node:fs";
import path from "node:path";
import { BackupError, verifyBackup } from "../store/backup_manifest.js";
import { fsyncDir } from "../store/manifest.js";
import { parseCommand } from "./args.js";

const USAGE = `usage: stemedb restore --from DIR [--data-dir D] [--force] [--json]
  Restores a backup made by 'stemedb backup' into D (default STEMEDB_DATA_DIR or ./data).
  The server must be stopped. A non-empty D is refused unless --force (which empties it).`;

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
  const from = path.resolve(values.from);
  const target = path.resolve(
    (values["data-dir"] as string | undefined) ?? process.env.STEMEDB_DATA_DIR ?? "./data",
  );
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
  if (fs.existsSync(target) && fs.readdirSync(target).length > 0) {
    if (values.force !== true) {
      process.stderr.write(
        `restore refused: ${target} is not empty (use --force to replace its contents)\n`,
      );
      return 1;
    }
    for (const entry of fs.readdirSync(target))
      fs.rmSync(path.join(target, entry), { recursive: true, force: true });
  }
  fs.mkdirSync(target, { recursive: true });
  const dirs = new Set<string>([target]);
  let bytes = 0;
  for (const f of manifest.files) {
    const to = path.join(target, f.path);
    copyDurably(path.join(from, f.path), to);
    bytes += f.size_bytes;
    for (let d = path.dirname(to); d.startsWith(target); d = path.dirname(d)) dirs.add(d);
  }
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) fsyncDir(d);
  const ms = Date.now() - started;
  const summary = {
    to: target,
    files: manifest.files.length,
    bytes,
    duration_ms: ms,
    shards: manifest.shards,
  };
  if (values.json === true) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else {
    process.stdout.write(
      `restored ${manifest.files.length} files (${(bytes / 1e6).toFixed(1)} MB) into ${target} in ${ms} ms; ` +
        "start the server to replay each shard's WAL\n",
    );
  }
  return 0;
}
