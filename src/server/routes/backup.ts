// POST /v1/admin/backup: an online, consistent backup while writes continue. Each shard
// copies an LMDB snapshot and its live WAL segments (checkpoints paused meanwhile); the meta
// store and the data directory manifest are copied too, and backup.json lists every file
// with its size and SHA-256 and every shard's LSN cut.
import fs from "node:fs";
import path from "node:path";
import { Type } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { shardDirs } from "../../shard/shard_core.js";
import {
  BACKUP_FORMAT_VERSION,
  BACKUP_MANIFEST_FILE,
  type BackupManifest,
  describeFiles,
} from "../../store/backup_manifest.js";
import { MANIFEST_FILE, writeFileAtomic } from "../../store/manifest.js";
import type { ServerContext } from "../context.js";
import { conflict, unprocessable } from "../errors.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { parseJsonBody, validate } from "../schemas.js";

export const BackupRequest = Type.Object(
  {
    to: Type.String({
      minLength: 1,
      maxLength: 4096,
      description: "absolute directory path on the server; must not exist or be empty",
    }),
  },
  { additionalProperties: false },
);
const BackupRequestCheck = TypeCompiler.Compile(BackupRequest);

let backupRunning = false;

export async function runBackup(server: ServerContext, to: string): Promise<BackupManifest> {
  const { config, pool } = server;
  fs.mkdirSync(path.join(to, "meta"), { recursive: true });
  fs.copyFileSync(path.join(config.dataDir, MANIFEST_FILE), path.join(to, MANIFEST_FILE));
  await server.meta.root.backup(path.join(to, "meta"), false);
  const shards = await Promise.all(
    Array.from({ length: pool.shardCount }, async (_, shard) => {
      const dirs = shardDirs(path.join(to, "wal"), path.join(to, "db"), shard);
      const result = await pool.backup(shard, dirs.walDir, dirs.dbDir);
      return { shard, cut_lsn: result.cutLsn, snapshot_lsn: result.snapshotLsn };
    }),
  );
  const manifest: BackupManifest = {
    format_version: BACKUP_FORMAT_VERSION,
    created_at_ms: Date.now(),
    shard_count: pool.shardCount,
    shards,
    files: await describeFiles(to),
  };
  writeFileAtomic(to, BACKUP_MANIFEST_FILE, `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

async function backupHandler(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const checked = validate(BackupRequestCheck, parseJsonBody(ctx.body as Buffer));
  if (!checked.ok) throw unprocessable(checked.message);
  const to = checked.value.to;
  if (!path.isAbsolute(to))
    throw unprocessable(
      `Field /to must be an absolute path (got ${JSON.stringify(to)}).`,
      "invalid_path",
    );
  const resolved = path.resolve(to);
  const dataDir = path.resolve(server.config.dataDir);
  if (resolved === dataDir || resolved.startsWith(dataDir + path.sep)) {
    throw unprocessable("The backup directory must be outside the data directory.", "invalid_path");
  }
  if (fs.existsSync(resolved) && fs.readdirSync(resolved).length > 0) {
    throw conflict(`The backup directory ${resolved} is not empty.`, "backup_target_not_empty");
  }
  if (backupRunning) throw conflict("A backup is already running.", "backup_running");
  backupRunning = true;
  const started = Date.now();
  try {
    const manifest = await runBackup(server, resolved);
    const bytes = manifest.files.reduce((sum, f) => sum + f.size_bytes, 0);
    server.logger.info(
      { request_id: ctx.requestId, to: resolved, bytes, ms: Date.now() - started },
      "backup written",
    );
    return {
      status: 201,
      body: JSON.stringify({ to: resolved, duration_ms: Date.now() - started, bytes, ...manifest }),
    };
  } finally {
    backupRunning = false;
  }
}

export function backupRoutes(server: ServerContext): Route[] {
  return [
    {
      method: "post",
      pattern: "/v1/admin/backup",
      role: "admin",
      jsonBody: true,
      handler: (ctx) => backupHandler(server, ctx),
    },
  ];
}
